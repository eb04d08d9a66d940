"""``orthojac diagnose``: Jacobian spectrum, gradient flow and orthogonality defect of one model.

The model is either built from the registry (``--family``, ``--width``, ``--depth``, ``--policy``,
``--seed``; ``--body conv`` when that body type is registered) or loaded from a training checkpoint
(``--checkpoint run/checkpoints/last.pt``: the model is rebuilt from the config stored in it). The data
batch is Fashion-MNIST test images when found (``--data fashion-mnist``), otherwise Gaussian inputs
(``--data gaussian``) with random labels.

Written to ``--out`` (default ``runs/diagnose/<name>``): ``report.json`` (spectrum summary and the
singular values, gradient norms per block, orthogonality defect, settings, device, seconds),
``spectrum.png`` (histogram + ECDF with condition number) and ``gradients.png`` (gradient norm versus
block index). The spectrum is that of the body (the blocks whose Jacobian the layers claim) at the
features the stem produces; ``--whole`` measures the whole network instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..diagnostics import (
    gradient_norms,
    jacobian_spectrum,
    orthogonality_defect,
    plot_gradient_norms,
    plot_spectrum,
)
from ..models import BODIES, build_model, family_names
from .common import device_name

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="Jacobian spectrum, gradient flow and orthogonality of a model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("model (registry spec or checkpoint)")
    src.add_argument("--family", help=f"registry family, one of: {', '.join(family_names())}")
    src.add_argument("--body", default="mlp", help="body type (default mlp)")
    src.add_argument("--width", type=int, default=128)
    src.add_argument("--depth", type=int, default=16)
    src.add_argument("--policy", default="init", choices=("init", "exact"))
    src.add_argument("--seed", type=int, default=0)
    src.add_argument("--checkpoint", type=Path, help="a training checkpoint (.pt) instead of --family")
    p.add_argument("--data", default="auto", choices=("auto", "fashion-mnist", "gaussian"),
                   help="input batch: Fashion-MNIST test images, Gaussian, or auto (the first that works)")
    p.add_argument("--batch", type=int, default=8, help="samples in the batch (default 8)")
    p.add_argument("--method", default="auto", choices=("auto", "exact", "lanczos"))
    p.add_argument("-k", type=int, default=None, help="k largest and k smallest singular values (Lanczos)")
    p.add_argument("--dtype", default="float64", choices=tuple(DTYPES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--whole", action="store_true", help="spectrum of the whole network, not only the body")
    p.add_argument("--out", type=Path, default=None, help="output directory (default runs/diagnose/<name>)")
    p.set_defaults(func=run)


def load_batch(data: str, in_shape: tuple[int, ...], num_classes: int, n: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(x, y, source): ``n`` Fashion-MNIST test images (normalised) if asked for / found, else N(0, 1)."""
    if data in ("auto", "fashion-mnist") and tuple(in_shape) == (1, 28, 28) and num_classes == 10:
        try:
            from ..data import load_splits

            d = load_splits("fashion-mnist", n_train=1, n_test=n, val_fraction=0.0, seed=seed, progress=False)
            xt, yt = d.test
            return xt.reshape(n, *in_shape), yt, "fashion-mnist"
        except FileNotFoundError:
            if data == "fashion-mnist":
                raise
    elif data == "fashion-mnist":
        raise ValueError(f"--data fashion-mnist needs in_shape (1, 28, 28) and 10 classes, got {in_shape}")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *in_shape, generator=g), torch.randint(0, num_classes, (n,), generator=g), "gaussian"


def model_from_args(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any], tuple[int, ...], int]:
    """(model, spec, in_shape, num_classes) from a checkpoint or a registry spec."""
    if args.checkpoint is not None:
        from ..train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        cfg = ckpt.get("config") or {}
        mc, dc = cfg.get("model"), cfg.get("data", {})
        if not mc:
            raise ValueError(f"{args.checkpoint}: no model config stored in the checkpoint")
        from ..data.datasets import DATASETS

        name = dc.get("dataset", "fashion-mnist")
        if name in DATASETS:
            in_shape, classes = tuple(DATASETS[name].in_shape), DATASETS[name].num_classes
        else:  # generated data (spirals): 2-D points, 3 classes
            in_shape, classes = (2,), 3
        seed = mc.get("seed")
        seed = cfg.get("train", {}).get("seed", 0) if seed is None else seed
        model = build_model(mc.get("body", "mlp"), mc["arch"], in_shape, classes, mc.get("width", 128),
                            mc.get("depth", 16), mc.get("policy", "init"), seed, **mc.get("kwargs", {}))
        model.load_state_dict(ckpt["model"])
        spec = {"checkpoint": str(args.checkpoint), **{k: mc.get(k) for k in ("body", "arch", "width", "depth",
                                                                              "policy")}}
        return model, spec, in_shape, classes
    if not args.family:
        raise ValueError("give --family (a registry spec) or --checkpoint")
    if args.body not in BODIES:
        raise ValueError(f"unknown body type {args.body!r}; choose one of {sorted(BODIES)}")
    in_shape, classes = (1, 28, 28), 10
    model = build_model(args.body, args.family, in_shape, classes, args.width, args.depth, args.policy, args.seed)
    spec = {"body": args.body, "arch": args.family, "width": args.width, "depth": args.depth,
            "policy": args.policy, "seed": args.seed}
    return model, spec, in_shape, classes


def diagnose(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str = "auto", k: int | None = None,
             whole: bool = False) -> dict[str, Any]:
    """Spectrum of the body (at the stem's features) or of the whole model, gradient norms per block under
    cross-entropy, and the orthogonality defect. Returns the JSON-ready report and keeps the raw results
    under the keys ``_spectrum`` and ``_gradients``."""
    model.eval()
    t0 = time.process_time()
    stem, body = getattr(model, "stem", None), getattr(model, "body", None)
    if not whole and isinstance(body, nn.Module) and isinstance(stem, nn.Module):
        with torch.no_grad():
            feats = stem(x)
        fn, at, where = body, feats, "body"
    else:
        fn, at, where = model, x, "model"
    spec = jacobian_spectrum(fn, at, method=method, k=k)
    t1 = time.process_time()
    grads = gradient_norms(model, F.cross_entropy, (x, y))
    t2 = time.process_time()
    defect = orthogonality_defect(model)
    s = spec.singular_values.detach().double().cpu()
    return {
        "spectrum_of": where, "method": spec.method, "k": spec.k, "complete": spec.complete,
        "jacobian_shape": [spec.out_dim, spec.in_dim], "summary": spec.summary(),
        "condition_number_per_sample": spec.condition_number().double().cpu().tolist(),
        "singular_values": s.tolist(),
        "lanczos": {"iterations": spec.info["iterations"], "tol": spec.info["tol"]} if spec.info else None,
        "gradients": grads.as_dict(),
        "orthogonality_defect": defect.as_dict(),
        "cpu_seconds": {"spectrum": round(t1 - t0, 3), "gradients": round(t2 - t1, 3)},
        "_spectrum": spec, "_gradients": grads,
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    if args.batch < 1:
        raise ValueError(f"--batch must be ≥ 1, got {args.batch}")
    dtype, dev = DTYPES[args.dtype], torch.device(args.device)
    model, spec, in_shape, classes = model_from_args(args)
    model = model.to(device=dev, dtype=dtype)
    x, y, source = load_batch(args.data, in_shape, classes, args.batch, args.seed)
    x, y = x.to(device=dev, dtype=dtype), y.to(dev)
    name = f"{spec.get('arch')}_w{spec.get('width')}_d{spec.get('depth')}_{spec.get('policy')}"
    out = args.out or Path("runs/diagnose") / name
    out.mkdir(parents=True, exist_ok=True)
    wall = time.time()
    rep = diagnose(model, x, y, args.method, args.k, args.whole)
    res, grads = rep.pop("_spectrum"), rep.pop("_gradients")
    rep = {"model": spec, "data": source, "batch": args.batch, "dtype": args.dtype, "device": device_name(dev),
           **rep, "wall_seconds": round(time.time() - wall, 3)}
    (out / "report.json").write_text(json.dumps(_jsonable(rep), indent=1))
    plot_spectrum(res, out / "spectrum.png", title=name)
    plot_gradient_norms(grads, out / "gradients.png", title=name)
    sm, gd = rep["summary"], rep["gradients"]
    print(f"{name}: J ({rep['spectrum_of']}) {rep['jacobian_shape'][0]}×{rep['jacobian_shape'][1]}, {res.method}: "
          f"σ_min {sm['sigma_min']:.4g}, median {sm['sigma_median']:.4g}, σ_max {sm['sigma_max']:.4g}, "
          f"κ {sm['condition_number']:.4g}; gradient ratio first/last {gd['ratio']:.4g}; "
          f"orthogonality defect max {rep['orthogonality_defect']['max']:.3g}")
    print(f"wrote {out}/report.json, spectrum.png, gradients.png")
    return 0
