"""Haber & Ruthotto, "Stable Architectures for Deep Neural Networks" (arXiv 1705.03341): Figures 1–6 and Table 1.

* Figure 1 — Example 1: forward-Euler ResNet (Eq. 2.1), N = 10, h = 0.1, constant K₊, K₋, K₀ (Eq. 3.10);
* Figure 2 — Example 2: leapfrog (K₋, h = 1) and Verlet (h = 0.1) at N = 500 and 5000. The paper's Verlet
  matrix K_v was not recovered (notes §5); we use K₋ for it too;
* Figure 3 — best validation accuracy per multilevel level for ResNet, antisymmetric and Verlet networks on
  ellipses, swiss roll and peaks (settings of notes §10: widths, T, α, tanh, logistic/softmax);
* Figures 4–6 — data, propagated features y_N and decision regions of the Verlet network at the last level;
* Table 1 — training/validation error at N = 4, 8, 16 on MNIST-format images (Fashion-MNIST; MNIST too when its
  files are found), 3×3 convolutions, T = 6, time smoothness 0.005, Laplacian smoothness 0.01 on the classifier.

Each (data set, architecture, optimiser) is trained level by level (``orthojac.train.multilevel``) by Adam and
by the paper's block coordinate descent (``orthojac.train.newton_cg``). **Quick** (default): levels N = 4 … 32,
Adam on all three 2-D sets (leapfrog too on ellipses), Newton-CG on ellipses and for Verlet on the swiss roll;
Table 1 on a 14×14 average-pooled subset (2000 train / 1000 validation, 4 channels, Adam only). **Full**:
N = 4 … 1024, both optimisers on every set and architecture (leapfrog included), Table 1 at 28×28 with 6
channels on the 50 000 / 10 000 split with both optimisers. Filters (``--datasets``, ``--archs``,
``--max-layers``, ``--epochs``, ``--image-*``, …) run a part. Writes ``results/haber_ruthotto.csv`` (one row per
level, saved as each level ends; accuracies are fractions), a Markdown table generated from it, and the figures
under ``docs/figures/``.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import load_splits, make_toy2d
from ..models import create_stable_model
from ..nn import create_dynamics
from ..regularizers import grid_operator, spatial_smoothness
from ..train.multilevel import fit_adam, train_multilevel
from ..train.newton_cg import NewtonCGConfig, fit_newton_cg
from . import common

COLUMNS = ["dataset", "arch", "layers", "optimizer", "train_acc", "val_acc", "seconds", "val_acc_prolonged",
           "train_err", "val_err", "width", "T", "h", "alpha", "iterations", "n_train", "n_val", "mode", "device",
           "pool"]
TOY = ("ellipses", "swiss_roll", "peaks")
IMAGES = ("fmnist", "mnist")
OPTIMIZERS = ("adam", "newton_cg")


@dataclass(frozen=True)
class ToySetting:
    """Notes §10: width per architecture (Verlet: 2), final time T, time-smoothness α. The rest is ours (the paper
    gives neither batch sizes nor iteration counts per level): Adam with ``adam_batch`` points per step and a
    cosine decay of its learning rate from ``adam_lr`` to ``adam_lr_final`` within each level, ``*_epochs``
    epochs per level; Newton-CG ``*_iterations`` outer iterations per level (batch 500, notes §8 inner counts).

    Measured on ellipses, Verlet, N = 4 … 32 (``docs/stable.md``): minibatches of 64 at a constant lr 0.01 reach
    validation accuracy 0.99 and then oscillate; the full batch with the cosine decay reaches 1.0 at N = 32 in
    fewer CPU seconds. Newton-CG needs its trust radius (``NewtonCGConfig.max_step``) after prolongation, and 40
    iterations per level."""

    width: int
    opening: str
    T: float
    alpha: float
    adam_lr: float
    adam_lr_final: float
    adam_batch: int
    quick_epochs: int
    full_epochs: int
    quick_iterations: int
    full_iterations: int


TOY_SETTINGS = {
    "ellipses": ToySetting(2, "identity", 20.0, 1e-3, 0.05, 5e-4, 1000, 400, 1000, 40, 100),
    "swiss_roll": ToySetting(4, "pad", 20.0, 5e-3, 0.05, 5e-4, 513, 400, 1000, 40, 100),
    "peaks": ToySetting(8, "repeat", 5.0, 5e-6, 0.05, 5e-4, 1000, 100, 300, 40, 100),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", nargs="+", choices=(*TOY, "fmnist"), default=None,
                   help="restrict to these data sets (fmnist = Table 1, which adds mnist when its files exist)")
    p.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=None, help="restrict the optimisers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--figures-dir", type=Path, default=Path("docs/figures"))
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--progress", action="store_true", help="progress bars for every fit")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--archs", nargs="+", choices=("resnet", "antisymmetric", "leapfrog", "verlet"), default=None,
                   help="restrict the Figure-3 architectures (2-D sets)")
    p.add_argument("--max-layers", type=int, default=None,
                   help="last multilevel level N on the 2-D sets (a power of two ≥ 4; default 32 quick, 1024 full)")
    p.add_argument("--epochs", type=int, default=None, help="Adam epochs per level on the 2-D sets (default: mode's)")
    p.add_argument("--iterations", type=int, default=None,
                   help="Newton-CG outer iterations per level on the 2-D sets (default: mode's)")
    p.add_argument("--image-train", type=int, default=None,
                   help="Table 1: training images (validation: max(1000, n/5); default 2000 quick, 50 000 full)")
    p.add_argument("--image-pool", type=int, default=None, help="Table 1: average pooling (default 2 quick, 1 full)")
    p.add_argument("--image-channels", type=int, default=None, help="Table 1: channels (default 4 quick, 6 full)")
    p.add_argument("--image-epochs", type=int, default=None, help="Table 1: Adam epochs per level (default 5/30)")
    p.add_argument("--image-cosine", action=argparse.BooleanOptionalAction, default=None,
                   help="Table 1: cosine decay of Adam's learning rate to lr/100 within each level (default: on; "
                        "--no-image-cosine: constant)")


# ---------------------------------------------------------------------------------------------- plans
def toy_plan(mode: str) -> list[tuple[str, str, str]]:
    """(dataset, arch, optimizer) runs of Figure 3 in this mode. Quick: Adam everywhere (leapfrog on ellipses
    only); Newton-CG on ellipses (ResNet, antisymmetric, Verlet) and for the Verlet network on the swiss roll
    (the paper's N = 32 claim)."""
    archs = ("resnet", "antisymmetric", "verlet")
    runs = []
    for ds in TOY:
        extra = ("leapfrog",) if mode == "full" or ds == "ellipses" else ()
        for arch in (*archs, *extra):
            runs.append((ds, arch, "adam"))
            if mode == "full" or (ds == "ellipses" and arch != "leapfrog") or (ds, arch) == ("swiss_roll", "verlet"):
                runs.append((ds, arch, "newton_cg"))
    return runs


def levels(mode: str, images: bool = False, max_layers: int | None = None) -> list[int]:
    """Multilevel schedule: images N = 4, 8, 16; 2-D sets N = 4 … 32 (quick) or 4 … 1024 (full, notes §7), or
    4 … ``max_layers``."""
    if images:
        return [4, 8, 16]
    last = max_layers or (32 if mode == "quick" else 1024)
    if last < 4 or last & (last - 1):
        raise ValueError(f"max_layers must be a power of two ≥ 4, got {last}")
    return [2 ** k for k in range(2, last.bit_length())]


def _dynamics_kw(arch: str, seed: int) -> dict[str, Any]:
    """Initial weights at the coarsest level (not in the paper): Verlet K = I, b = 0 (Meganet); the others
    K ~ N(0, 1/fan_in) — zero weights are a saddle point where the Gauss–Newton step does not move (measured)."""
    if arch == "verlet":
        return {"init": "identity"}
    return {"init": "random", "init_scale": 1.0, "generator": torch.Generator().manual_seed(seed)}


# ---------------------------------------------------------------------------------------------- 2-D runs
def level_epochs(base: int, layers: int) -> int:
    """Adam epochs at level N: ``base`` up to N = 32; beyond, base·32/N but at least min(base, 10), so that every
    finer level costs about as much as N = 32 (an epoch costs ∝ N) while the prolonged weights, already close to
    the ODE limit there, only need refining. Ours, not the paper's (it gives no iteration counts)."""
    if layers <= 32:
        return base
    return max(min(base, 10), round(base * 32 / layers))


def run_toy(ds: str, arch: str, opt: str, mode: str, seed: int, progress: bool,
            device: torch.device | str = "cpu", epochs: int | None = None, iterations: int | None = None,
            max_layers: int | None = None, on_row: Callable[[dict], Any] | None = None) -> tuple[list[dict], Any]:
    """Multilevel training of one (data set, architecture, optimiser) on a 2-D set; ``on_row`` receives each
    level's row as soon as the level is done (so a run stopped at N = 256 keeps its levels 4 … 128)."""
    st = TOY_SETTINGS[ds]
    xt, yt, xv, yv = (t.to(device) for t in make_toy2d(ds, seed=seed))
    classes = int(yt.max()) + 1
    width = 2 if arch == "verlet" else st.width
    opening = "identity" if width == 2 else st.opening
    lv = levels(mode, max_layers=max_layers)
    model = create_stable_model(arch, 2, classes, width, lv[0], st.T, opening=opening, dtype=torch.float64,
                                **_dynamics_kw(arch, seed)).to(device)
    g = torch.Generator().manual_seed(seed)
    if opt == "adam":
        iters = epochs or (st.quick_epochs if mode == "quick" else st.full_epochs)
        bs = min(st.adam_batch, len(yt))

        def fit(m, n):
            return fit_adam(m, (xt, yt, xv, yv), epochs=level_epochs(iters, n), lr=st.adam_lr,
                            lr_final=st.adam_lr_final,
                            batch_size=bs, alpha=st.alpha, generator=g, progress=progress,
                            desc=f"{ds}/{arch}/adam N={n}")
    else:
        iters = iterations or (st.quick_iterations if mode == "quick" else st.full_iterations)
        cfg = NewtonCGConfig(iterations=iters, batch_size=500, alpha=st.alpha)

        def fit(m, n):
            return fit_newton_cg(m, (xt, yt, xv, yv), cfg, generator=g, progress=progress,
                                 desc=f"{ds}/{arch}/ncg N={n}")
    kept: dict[str, Any] = {}
    rows: list[dict] = []

    def on_level(lr) -> None:  # keep a copy of the network at its best level (the model itself is prolonged on)
        if "level" not in kept or lr.fit.val_acc > kept["level"].fit.val_acc:
            kept["level"], kept["model"] = lr, copy.deepcopy(model)
        its = level_epochs(iters, lr.layers) if opt == "adam" else iters
        rows.append(_row(ds, arch, opt, lr, width, st.T, st.alpha, its, len(yt), len(yv), mode, device))
        if on_row is not None:
            on_row(rows[-1])

    res = train_multilevel(model, lv, fit, xv, yv, on_level=on_level)
    return rows, (kept["model"], res, kept["level"], (xt, yt, xv, yv))


def _row(ds, arch, opt, r, width, T, alpha, iters, n_train, n_val, mode, device) -> dict[str, Any]:
    return {"dataset": ds, "arch": arch, "layers": r.layers, "optimizer": opt, "train_acc": round(r.fit.train_acc, 5),
            "val_acc": round(r.fit.val_acc, 5), "seconds": round(r.fit.seconds, 2),
            "val_acc_prolonged": round(r.val_acc_prolonged, 5), "train_err": round(1 - r.fit.train_acc, 5),
            "val_err": round(1 - r.fit.val_acc, 5), "width": width, "T": T, "h": r.h, "alpha": alpha,
            "iterations": iters, "n_train": n_train, "n_val": n_val, "mode": mode, "device": common.device_name(device)}


# ---------------------------------------------------------------------------------------------- Table 1
def image_runs(mode: str) -> list[str]:
    """fmnist always; mnist when its files are found (never downloaded)."""
    out = ["fmnist"]
    try:
        from ..data import locate

        locate("mnist", "train")
        out.append("mnist")
    except FileNotFoundError:
        pass
    return out


@dataclass(frozen=True)
class ImageSetting:
    """Table 1 (notes §11): T = 6, α = 0.005, Laplacian weight 0.01 on the classifier, N = 4, 8, 16. The rest is
    the mode's: ``n_train`` training images (None: the paper's 50 000 / 10 000 split), ``pool``×``pool`` average
    pooling, ``channels`` (the paper: 6), Adam epochs per level with learning rate ``lr`` decayed by a cosine to
    lr/100 within each level (``lr_final``; None: constant), Newton-CG outer iterations per level."""

    n_train: int | None
    n_val: int
    pool: int
    channels: int
    epochs: int
    lr: float
    lr_final: float | None
    iterations: int


IMAGE_SETTINGS = {"quick": ImageSetting(2000, 1000, 2, 4, 5, 0.01, 1e-4, 10),
                  "full": ImageSetting(None, 10000, 1, 6, 30, 0.01, 1e-4, 40)}


def image_setting(mode: str, n_train: int | None = None, pool: int | None = None, channels: int | None = None,
                  epochs: int | None = None, cosine: bool | None = None) -> ImageSetting:
    """The mode's :data:`IMAGE_SETTINGS` with the given fields replaced (``--image-*`` options)."""
    st = IMAGE_SETTINGS[mode]
    for name, v in (("n_train", n_train), ("pool", pool), ("channels", channels), ("epochs", epochs)):
        if v is not None and v < 1:
            raise ValueError(f"--image-{name.replace('_', '-')} must be ≥ 1, got {v}")
    lr_final = st.lr_final if cosine is None else (st.lr / 100 if cosine else None)
    return ImageSetting(n_train or st.n_train, st.n_val if not n_train else max(1000, n_train // 5),
                        pool or st.pool, channels or st.channels, epochs or st.epochs, st.lr, lr_final, st.iterations)


def run_images(ds: str, arch: str, opt: str, mode: str, seed: int, progress: bool,
               device: torch.device | str = "cpu", setting: ImageSetting | None = None) -> list[dict]:
    name = "fashion-mnist" if ds == "fmnist" else "mnist"
    st = setting or IMAGE_SETTINGS[mode]
    if st.n_train is None:
        d = load_splits(name, val_fraction=1 / 6, n_test=1, seed=seed, progress=False)  # 50 000 / 10 000
    else:
        d = load_splits(name, n_train=st.n_train, n_val=st.n_val, n_test=1, val_fraction=1 / 6, seed=seed,
                        progress=False)
    pool, channels, epochs = st.pool, st.channels, st.epochs
    xt, yt = d.train
    xv, yv = d.val
    if pool > 1:
        xt, xv = F.avg_pool2d(xt, pool), F.avg_pool2d(xv, pool)
    xt, yt, xv, yv = xt.to(device), yt.to(device), xv.to(device), yv.to(device)
    hh, ww = xt.shape[-2:]
    T, alpha, alpha_w = 6.0, 5e-3, 1e-2
    lap = grid_operator(hh, ww, "laplacian").float().to(device)
    lv = levels(mode, images=True)
    model = create_stable_model(arch, 1, 10, channels, lv[0], T, opening="repeat", spatial=(hh, ww),
                                **_dynamics_kw(arch, seed)).to(device)
    g = torch.Generator().manual_seed(seed)
    data = (xt, yt, xv, yv)
    if opt == "adam":
        def fit(m, n):
            return fit_adam(m, data, epochs=epochs, lr=st.lr, lr_final=st.lr_final, batch_size=100, alpha=alpha,
                            generator=g, progress=progress, desc=f"{ds}/{arch}/adam N={n}",
                            penalty=lambda mm: alpha_w * spatial_smoothness(mm.classifier.weight, lap, channels))
        iters = epochs
    else:
        cfg = NewtonCGConfig(iterations=st.iterations, batch_size=len(yt), curvature_fraction=min(
            1.0, 5000 / len(yt)), newton_its=5, newton_cg_its=10, gn_cg_its=20, alpha=alpha, alpha_w=alpha_w)

        def fit(m, n):
            return fit_newton_cg(m, data, cfg, classifier_operator=lap, generator=g, progress=progress,
                                 desc=f"{ds}/{arch}/ncg N={n}")
        iters = cfg.iterations
    res = train_multilevel(model, lv, fit, xv, yv)
    return [{**_row(ds, arch, opt, r, channels, T, alpha, iters, len(yt), len(yv), mode, device), "pool": pool}
            for r in res]


# ---------------------------------------------------------------------------------------------- figures
K_PLUS = [[2.0, -2.0], [0.0, 2.0]]
K_MINUS = [[-2.0, 0.0], [2.0, -2.0]]
K_ZERO = [[0.0, -1.0], [1.0, 0.0]]


def _constant_net(arch: str, k: list[list[float]], n: int, h: float):
    m = create_dynamics(arch, 2, n, n * h, dtype=torch.float64)
    with torch.no_grad():
        m.K.copy_(torch.tensor(k, dtype=torch.float64).expand_as(m.K))
    return m


def figure1(path: Path) -> Path:
    """Example 1: ResNet (row form Y K, Eq. 2.1), N = 10, h = 0.1, over the field σ(yᵀK)."""
    plt = common.plt()
    y0 = torch.tensor([[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]], dtype=torch.float64)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, (name, k) in zip(axes, (("K₊", K_PLUS), ("K₋", K_MINUS), ("K₀", K_ZERO))):
        net = _constant_net("resnet", k, 10, 0.1)
        with torch.no_grad():
            tr = torch.stack(net.trajectory(y0))  # (N+1, 3, 2)
        lim = max(0.6, float(tr.abs().max()) * 1.1)
        g = torch.linspace(-lim, lim, 15, dtype=torch.float64)
        gx, gy = torch.meshgrid(g, g, indexing="xy")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        field = torch.tanh(pts @ torch.tensor(k, dtype=torch.float64))
        ax.quiver(pts[:, 0], pts[:, 1], field[:, 0], field[:, 1], color="k", alpha=0.5)
        for i, c in enumerate(("tab:blue", "tab:red", "tab:green")):
            ax.plot(tr[:, i, 0], tr[:, i, 1], "o-", color=c, ms=3)
        ax.set_title(f"ResNet, {name}, N = 10, h = 0.1")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    return common.save_figure(fig, path, dpi=110)


def figure2(path: Path) -> Path:
    """Example 2: leapfrog (K₋, h = 1) and Verlet (K₋ standing in for K_v, h = 0.1), N = 500 and 5000."""
    plt = common.plt()
    y0 = torch.tensor([[0.1, 0.1], [-0.1, -0.1]], dtype=torch.float64)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, (arch, h, n) in zip(axes, (("leapfrog", 1.0, 500), ("leapfrog", 1.0, 5000), ("verlet", 0.1, 500),
                                       ("verlet", 0.1, 5000))):
        with torch.no_grad():
            tr = torch.stack(_constant_net(arch, K_MINUS, n, h).trajectory(y0))
        for i, c in enumerate(("tab:blue", "tab:red")):  # leapfrog at h = 1 jumps: points, not lines
            ax.plot(tr[:, i, 0], tr[:, i, 1], "." if arch == "leapfrog" else "-", color=c, lw=0.6, ms=1.5)
        ax.set_title(f"{arch}, K₋, h = {h:g}, N = {n}")
    return common.save_figure(fig, path, dpi=110)


def example2_norms(path: Path) -> Path:
    """Example 2 in numbers: the largest feature norm of the two inputs in each window of 500 layers (N = 5000),
    for leapfrog with K₋ (h = 1), leapfrog with K = −CᵀC, C = [[1, 0.5], [0, 1]] (h = 1), Verlet with K₋
    (h = 0.1). Written to a CSV (Markdown generated from it)."""
    y0 = torch.tensor([[0.1, 0.1], [-0.1, -0.1]], dtype=torch.float64)
    rows = []
    cases = (("leapfrog K-", _constant_net("leapfrog", K_MINUS, 5000, 1.0)),
             ("leapfrog -C^T C", create_dynamics("leapfrog", 2, 5000, 5000.0, negdef=True, dtype=torch.float64)),
             ("verlet K-", _constant_net("verlet", K_MINUS, 5000, 0.1)))
    with torch.no_grad():
        cases[1][1].C.copy_(torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64).expand_as(cases[1][1].C))
        for name, net in cases:
            norms = torch.stack([t.norm(dim=1).max() for t in net.trajectory(y0)])[1:].reshape(10, 500)
            for i, w in enumerate(norms):
                rows.append({"network": name, "h": net.h, "layers_from": 500 * i + 1, "layers_to": 500 * (i + 1),
                             "max_norm": float(w.max()), "min_norm": float(w.min())})
    common.write_csv(rows, path)
    common.csv_to_markdown(path, path.with_suffix(".md"), ["network", "h", "layers_from", "layers_to"],
                           ["max_norm", "min_norm"], title="Example 2: feature norms over N = 5000 layers",
                           note="Command: `orthojac reproduce haber-ruthotto` (any mode). Input norm 0.1414.")
    return path


ARCH_COLORS = {"resnet": "tab:blue", "antisymmetric": "tab:orange", "verlet": "tab:green", "leapfrog": "tab:red"}


def figure3(rows: list[dict], path: Path) -> Path:
    """Best validation accuracy per level, one panel per 2-D data set. ``rows`` may hold both modes: per
    (data set, architecture, optimiser) the full-mode rows are drawn when there are any (they reach N = 1024),
    otherwise the quick ones."""
    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, ds in zip(axes, TOY):
        for key in sorted({(r["arch"], r["optimizer"]) for r in rows if r["dataset"] == ds}):
            mine = [r for r in rows if r["dataset"] == ds and (r["arch"], r["optimizer"]) == key]
            mode = "full" if any(r["mode"] == "full" for r in mine) else "quick"
            rs = sorted((r for r in mine if r["mode"] == mode), key=lambda r: int(r["layers"]))
            ax.plot([int(r["layers"]) for r in rs], [float(r["val_acc"]) for r in rs],
                    "o-" if key[1] == "adam" else "s--", color=ARCH_COLORS.get(key[0], "k"),
                    label=f"{key[0]} ({key[1]}, {mode})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("layers N (level)")
        ax.set_ylabel("best validation accuracy")
        ax.set_title(ds)
        ax.legend(fontsize=7)
    return common.save_figure(fig, path, dpi=110)


def figure_regions(ds: str, run: Any, path: Path) -> Path:
    """Data, propagated features y_N (first two coordinates) and decision regions of a trained network."""
    plt = common.plt()
    model, _, best, (xt, yt, _, _) = run
    model, xt, yt = model.cpu(), xt.cpu(), yt.cpu()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].scatter(xt[:, 0], xt[:, 1], c=yt, cmap="coolwarm", s=4)
    axes[0].set_title(f"{ds}: training data")
    with torch.no_grad():
        feats = model.propagation(model.open(xt))
    axes[1].scatter(feats[:, 0], feats[:, 1], c=yt, cmap="coolwarm", s=4)
    axes[1].set_title(f"propagated features y_N (N = {best.layers})")
    lo, hi = xt.min(0).values - 0.2, xt.max(0).values + 0.2
    gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 200, dtype=torch.float64),
                            torch.linspace(float(lo[1]), float(hi[1]), 200, dtype=torch.float64), indexing="xy")
    with torch.no_grad():
        logits = model(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
    lab = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
    axes[2].contourf(gx, gy, lab.reshape(gx.shape), alpha=0.4, cmap="coolwarm")
    axes[2].scatter(xt[:, 0], xt[:, 1], c=yt, cmap="coolwarm", s=2)
    axes[2].set_title(f"decision regions ({model.propagation.arch}, val acc {best.fit.val_acc:.3f})")
    return common.save_figure(fig, path, dpi=110)



# ---------------------------------------------------------------------------------------------- main
def _save_rows(rows: list[dict], csv_path: Path, mode: str, dataset: str, arch: str, optimizer: str) -> None:
    """Write one finished (data set, architecture, optimiser) run at once, replacing only that run's earlier
    rows of this mode: a killed or filtered (``--datasets``/``--optimizers``) run keeps every other row."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    common.append_csv(rows, csv_path, COLUMNS, replace_where={"mode": mode, "dataset": dataset, "arch": arch,
                                                              "optimizer": optimizer})


def _level_saver(csv_path: Path, mode: str, dataset: str, arch: str, optimizer: str) -> Callable[[dict], None]:
    """Save a multilevel run level by level: the first level's row replaces every earlier row of this run (this
    mode, data set, architecture, optimiser), each later one only the row of its own level."""
    first = [True]

    def save(row: dict) -> None:
        print(f"  {dataset} {arch} {optimizer} N = {row['layers']}: val acc {row['val_acc']:.4f} "
              f"({row['seconds']:.1f} s)", flush=True)
        if first[0]:
            _save_rows([row], csv_path, mode, dataset, arch, optimizer)
            first[0] = False
        else:
            common.append_csv([row], csv_path, COLUMNS, replace_where={
                "mode": mode, "dataset": dataset, "arch": arch, "optimizer": optimizer, "layers": row["layers"]})

    return save


def run(args: argparse.Namespace) -> int:
    mode = args.mode
    if mode == "quick":
        torch.set_num_threads(1)
    datasets = args.datasets or (*TOY, "fmnist")
    opts = args.optimizers or OPTIMIZERS
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    csv_path = Path(args.results_dir) / "haber_ruthotto.csv"
    figs = Path(args.figures_dir)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    rows: list[dict] = []
    regions: dict[str, Any] = {}
    levels(mode, max_layers=args.max_layers)  # a bad --max-layers fails here, before any training
    for ds, arch, opt in toy_plan(mode):
        if ds not in datasets or opt not in opts or (args.archs and arch not in args.archs):
            continue
        t0 = time.perf_counter()
        r, run_out = run_toy(ds, arch, opt, mode, args.seed, args.progress, device, epochs=args.epochs,
                             iterations=args.iterations, max_layers=args.max_layers,
                             on_row=_level_saver(csv_path, mode, ds, arch, opt))
        rows += r
        print(f"{ds:10s} {arch:13s} {opt:9s} best val acc {max(x['val_acc'] for x in r):.4f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        if arch == "verlet" and opt == "adam":
            regions[ds] = run_out
    image_st = image_setting(mode, args.image_train, args.image_pool, args.image_channels, args.image_epochs,
                             args.image_cosine)
    if "fmnist" in datasets:
        for ds in image_runs(mode):
            for arch in ("resnet", "antisymmetric", "verlet"):
                if args.archs and arch not in args.archs:
                    continue
                for opt in opts if mode == "full" else ("adam",):
                    t0 = time.perf_counter()
                    r = run_images(ds, arch, opt, mode, args.seed, args.progress, device, image_st)
                    rows += r
                    _save_rows(r, csv_path, mode, ds, arch, opt)
                    print(f"{ds:10s} {arch:13s} {opt:9s} val err by level "
                          f"{[x['val_err'] for x in r]} ({time.perf_counter() - t0:.1f} s)", flush=True)
    common.csv_to_markdown(csv_path, csv_path.with_suffix(".md"), ["mode", "dataset", "arch", "optimizer", "layers"],
                           ["train_acc", "val_acc", "val_acc_prolonged", "seconds"],
                           title="Haber & Ruthotto: stable architectures, multilevel training",
                           note="Command: `orthojac reproduce haber-ruthotto --quick` (rows of mode quick) or "
                                "`--full`, possibly filtered (mode full; the commands run are in docs/stable.md; the "
                                "CSV's iterations, n_train and width columns say what each run did). Accuracies are "
                                "fractions (best validation per level; train_acc at those parameters); seconds = wall "
                                "time of the level's fit.")
    img = Path(args.results_dir) / "haber_ruthotto_table1.md"
    if any(r["dataset"] in IMAGES for r in common.read_csv(csv_path)):
        tmp = Path(args.results_dir) / "haber_ruthotto_table1.csv"
        common.write_csv([r for r in common.read_csv(csv_path) if r["dataset"] in IMAGES], tmp, COLUMNS)
        common.csv_to_markdown(tmp, img, ["mode", "dataset", "n_train", "pool", "width", "iterations", "arch",
                                          "optimizer", "layers"], ["train_err", "val_err"],
                               title="Table 1 (MNIST-format images): training and validation error",
                               note="Rows of results/haber_ruthotto.csv with dataset fmnist/mnist (errors = 1 − "
                                    "accuracy, fractions).")
    example2_norms(Path(args.results_dir) / "haber_ruthotto_example2.csv")
    if not args.no_figures:
        figure1(figs / "haber_ruthotto_fig1.png")
        figure2(figs / "haber_ruthotto_fig2.png")
        figure3(common.read_csv(csv_path), figs / "haber_ruthotto_fig3.png")
        for i, ds in enumerate(TOY):
            if ds in regions:
                figure_regions(ds, regions[ds], figs / f"haber_ruthotto_fig{4 + i}.png")
    print(f"wrote {csv_path} ({len(rows)} rows); wall {time.perf_counter() - t_wall:.1f} s, "
          f"CPU {time.process_time() - t_cpu:.1f} s on {common.device_name(device)}")
    return 0
