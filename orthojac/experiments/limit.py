"""``orthojac reproduce limit``: limit layers keep every Jacobian singular value within [1 − ε, 1 + ε].

A limit layer (``orthojac.nn.LimitLayer``, docs/limit.md; the paper's limit models, arXiv 2508.02882 v1,
notes §3) is F(x) = G(x) + ε·M(x) with G an exact orthogonal-Jacobian residual layer and Lip(M) ≤ 1, so by
Weyl's inequality every singular value of DF lies in [1 − ε, 1 + ε] and those of an L-layer body in
[(1 − ε)^L, (1 + ε)^L] — *as long as G's weight stays orthogonal*.

For ε ∈ {0, 0.01, 0.05, 0.1, 0.3}, depths L, and both orthogonality policies of G (``exact``: a
parametrisation keeps B orthogonal; ``init``: B only initialised orthogonal, free in training), MLP classifiers
(Linear stem + LayerNorm → L limit layers → Linear head) are trained on Fashion-MNIST. At initialisation and
after training, at many test images, in float64 with ``torch.func.jacrev``:

* ``sv_min``/``sv_max``: the extreme singular values of every layer Jacobian DF_ℓ(x_{ℓ−1}) over all layers
  and inputs (x_{ℓ−1} the layer's actual input), against ``bound_lo``/``bound_hi`` = 1 ∓ ε;
  ``violation`` = how far the worst one lies outside (0 when the bound holds);
* ``body_sv_min``/``body_sv_max``: the same for the body Jacobian, against (1 ∓ ε)^L;
* ``weight_defect``: max ‖BBᵀ − I‖_F over the constrained weights (why the ``init`` policy can break the
  bound after training);
* ``test_acc`` (fraction in [0, 1]) of the model at that stage.

Writes ``results/limit.csv`` (+ ``limit.md``) and ``docs/figures/limit.png``. ``--quick`` (default): width
64, depths {10, 50}, 4 000 training images, 2 epochs, 128 measured inputs. ``--full``: width 128, depths
{10, 50, 200}, the full training set, 10 epochs, 1 024 inputs, three seeds (meant for an accelerator).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from tqdm import tqdm

from ..diagnostics import jacobian_spectrum, orthogonality_defect
from ..models import create_model
from . import common
from .jacobians import Timer, accuracy, layer_inputs, load_image_data, train_classifier

EPS = (0.0, 0.01, 0.05, 0.1, 0.3)
MODES = {
    "quick": dict(width=64, depths=(10, 50), n_train=4000, n_test=2000, epochs=2, n_inputs=128, seeds=(0,)),
    "full": dict(width=128, depths=(10, 50, 200), n_train=None, n_test=None, epochs=10, n_inputs=1024,
                 seeds=(0, 1, 2)),
}
COLUMNS = ["eps", "depth", "sv_min", "sv_max", "body_sv_min", "body_sv_max", "test_acc", "policy", "stage",
           "bound_lo", "bound_hi", "body_bound_lo", "body_bound_hi", "violation", "body_violation", "weight_defect",
           "width", "seed", "n_inputs", "n_train", "epochs", "mode", "device", "run_wall_s", "run_cpu_s"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR, help="results directory (default: results/)")
    p.add_argument("--figures", type=Path, default=Path("docs/figures"), help="figure directory")
    p.add_argument("--policies", nargs="+", choices=("exact", "init"), default=["exact", "init"],
                   help="orthogonality policies of the base layers G (default: both)")
    p.add_argument("--device", default="auto", help="training device: auto (cuda when available), cpu, cuda")


def measure(model, x: torch.Tensor) -> dict[str, float]:
    """Per-layer and body singular-value ranges of ``model.body`` at the body inputs ``stem(x)``, float64
    (:func:`orthojac.diagnostics.jacobian_spectrum`, exact), and the weights' orthogonality defect."""
    m = copy.deepcopy(model).cpu().double()
    with torch.no_grad():
        h = m.stem(x.double())
    per_layer = [jacobian_spectrum(layer, xi, method="exact", mode="rev").singular_values
                 for layer, xi in zip(m.body, layer_inputs(list(m.body), h), strict=True)]
    body = jacobian_spectrum(m.body, h, method="exact", mode="rev").singular_values
    defect = orthogonality_defect(m)
    return {"sv_min": min(s.min().item() for s in per_layer), "sv_max": max(s.max().item() for s in per_layer),
            "body_sv_min": body.min().item(), "body_sv_max": body.max().item(),
            "weight_defect": defect.max if defect.count else 0.0}


def run_limit(mode: str, policies: list[str], device: torch.device, label: str) -> list[dict]:
    cfg = MODES[mode]
    width = cfg["width"]
    xs, ys, xt, yt, d_in, classes = load_image_data("fashion-mnist", cfg["n_train"], cfg["n_test"], seed=0)
    probe = xt[: cfg["n_inputs"]]
    jobs = [(s, p, d, e) for s in cfg["seeds"] for p in policies for d in cfg["depths"] for e in EPS]
    rows = []
    for seed, policy, depth, eps in tqdm(jobs, desc="limit"):
        model = create_model("limit", d_in, classes, width, depth, policy=policy, seed=seed, eps=eps)
        base = {"eps": eps, "depth": depth, "policy": policy, "bound_lo": 1 - eps, "bound_hi": 1 + eps,
                "body_bound_lo": (1 - eps) ** depth, "body_bound_hi": (1 + eps) ** depth, "width": width,
                "seed": seed, "n_inputs": len(probe), "n_train": len(xs), "epochs": cfg["epochs"], "mode": mode,
                "device": label}
        for stage in ("init", "trained"):
            if stage == "trained":
                acc = train_classifier(model, (xs, ys), (xt, yt), epochs=cfg["epochs"], seed=seed,
                                       device=device)["test_acc"]
            else:
                acc = accuracy(model, xt, yt)
            row = {**base, "stage": stage, "test_acc": acc, **measure(model, probe)}
            row["violation"] = max(0.0, row["bound_lo"] - row["sv_min"], row["sv_max"] - row["bound_hi"])
            row["body_violation"] = max(0.0, row["body_bound_lo"] - row["body_sv_min"],
                                        row["body_sv_max"] - row["body_bound_hi"])
            rows.append(row)
    return rows


def plot(csv_path: Path, fig_path: Path) -> Path:
    plt = common.plt()
    rows = common.read_csv(csv_path)
    policies = sorted({r["policy"] for r in rows})
    depths = sorted({int(r["depth"]) for r in rows})
    fig, axes = plt.subplots(1, len(policies) + 1, figsize=(5 * (len(policies) + 1), 4.2), squeeze=False)
    for ax, policy in zip(axes[0], policies, strict=False):
        eps = sorted({float(r["eps"]) for r in rows})
        ax.fill_between(eps, [1 - e for e in eps], [1 + e for e in eps], color="tab:green", alpha=0.15,
                        label="bound [1−ε, 1+ε]")
        for k, depth in enumerate(depths):
            for stage, marker in (("init", "o"), ("trained", "x")):
                sel = sorted((float(r["eps"]), float(r["sv_min"]), float(r["sv_max"])) for r in rows
                             if r["policy"] == policy and int(r["depth"]) == depth and r["stage"] == stage)
                if not sel:
                    continue
                e, lo, hi = zip(*sel, strict=True)
                off = [v + 0.004 * (2 * k + (stage == "trained")) for v in e]
                ax.vlines(off, lo, hi, color=f"C{k}", alpha=0.8)
                ax.plot(off, lo, marker, color=f"C{k}", label=f"L={depth} {stage}")
                ax.plot(off, hi, marker, color=f"C{k}")
        ax.set(xlabel="ε", ylabel="per-layer singular values (min…max)", title=f"policy {policy}")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for policy in policies:
        for k, depth in enumerate(depths):
            sel = sorted((float(r["eps"]), float(r["test_acc"])) for r in rows
                         if r["policy"] == policy and int(r["depth"]) == depth and r["stage"] == "trained")
            if sel:
                ax.plot(*zip(*sel, strict=True), "-" if policy == "exact" else "--", marker="o", color=f"C{k}",
                        label=f"{policy}, L={depth}")
    ax.set(xlabel="ε", ylabel="test accuracy", title="Fashion-MNIST after training", ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.suptitle(f"Limit layers, width {rows[0]['width']}, {rows[0]['mode']} mode (results/limit.csv)")
    return common.save_figure(fig, fig_path)


def run(args: argparse.Namespace) -> int:
    if args.mode == "quick":
        torch.set_num_threads(1)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    label = common.device_name(device)
    t = Timer()
    out, rows = Path(args.out), []
    path = out / "limit.csv"
    for policy in args.policies:  # saved per policy: a killed run keeps the finished ones; others' rows are kept
        tp = Timer()
        prow = run_limit(args.mode, [policy], device, label)
        wall, cpu = tp.seconds()
        for r in prow:
            r["run_wall_s"], r["run_cpu_s"] = round(wall, 1), round(cpu, 1)
        common.append_csv(prow, path, COLUMNS, replace_where={"mode": args.mode, "policy": policy})
        rows += prow
    common.csv_to_markdown(path, out / "limit.md", ["mode", "policy", "stage", "depth", "eps"],
                           ["sv_min", "sv_max", "violation", "body_sv_min", "body_sv_max", "body_violation",
                            "weight_defect", "test_acc"],
                           title="Limit layers: measured singular values against [1 − ε, 1 + ε]",
                           note="`orthojac reproduce limit`: float64 Jacobians at test images; per-layer range over "
                           "all layers and inputs; test accuracy as a fraction. See docs/limit.md.")
    plot(path, Path(args.figures) / "limit.png")
    wall, cpu = t.seconds()
    worst = max((r["violation"] for r in rows if r["policy"] == "exact"), default=0.0)
    print(f"limit: {len(rows)} rows → {path} ({wall:.0f} s wall, {cpu:.0f} s CPU, {label}); "
          f"worst per-layer violation under the exact policy: {worst:.2e}")
    return 0
