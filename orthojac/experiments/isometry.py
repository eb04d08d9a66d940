"""``orthojac reproduce isometry``: dynamical isometry versus depth, at initialisation.

For each family — a plain ReLU MLP (He init), a ReLU MLP with orthogonal init (gain √2), a tanh MLP with
orthogonal init (gain 1), OrthoFeedforward(|x|), OrthoResidual(ReLU), a limit layer (ε = 0.1) and a
persistent-subspace stack (r = n/8) — and each depth L ∈ {10, 50, 200, 1000} at width 128, build the
classifier ``head ∘ body ∘ stem`` (:func:`orthojac.models.create_model`, policy ``init``, float64) and
measure, on a batch of Fashion-MNIST test images (Gaussian inputs when the files are not found):

* the singular values of the body's input-to-output Jacobian J = ∂x_L/∂x_0 at the stem's features
  (exact: ``jacobian_spectrum(method="exact")``, forward mode), per sample: σ_min, median, σ_max over
  the batch, the worst condition number κ = σ_max/σ_min, and the mean number of σ within 1e-6 of 1;
* the gradient-norm ratio ‖∂L/∂x_0‖ / ‖∂L/∂x_L‖ under cross-entropy with the true labels
  (:func:`orthojac.diagnostics.gradient_norms`), 1 for perfect gradient flow.

Writes ``results/isometry_vs_depth.csv`` (rows of this mode replaced on re-run),
``results/isometry_vs_depth.md`` (generated from the CSV) and ``docs/figures/isometry_vs_depth.png``.
``--quick``: batch 8, one seed (a few minutes on 2 CPU cores). ``--full``: batch 32, seeds 0, 1, 2.
In float64, singular values below ≈ 1e-16·σ_max are round-off: the true value may be anything smaller,
including 0.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..models import create_model
from .common import RESULTS_DIR, append_csv, csv_to_markdown, device_name, plt, read_csv, save_figure
from .diagnose import diagnose, load_batch

# (registry family, label in the table/figure)
FAMILIES: tuple[tuple[str, str], ...] = (
    ("plain_relu", "ReLU MLP, He init"),
    ("plain_relu_orth", "ReLU MLP, orthogonal init"),
    ("plain_tanh_orth", "tanh MLP, orthogonal init"),
    ("ortho_feedforward_abs", "OrthoFeedforward(|x|)"),
    ("ortho_residual_relu", "OrthoResidual(ReLU)"),
    ("limit", "limit layer (ε = 0.1)"),
    ("pso", "persistent subspace (r = n/8)"),
)
DEPTHS = (10, 50, 200, 1000)
MODES = {"quick": {"batch": 8, "seeds": (0,)}, "full": {"batch": 32, "seeds": (0, 1, 2)}}
COLUMNS = ["mode", "family", "label", "depth", "width", "seed", "batch", "sigma_min", "sigma_median", "sigma_max",
           "condition_number", "n_unit", "grad_ratio", "orthogonality_defect", "method", "dtype", "data",
           "cpu_seconds", "wall_seconds", "device"]
CSV = RESULTS_DIR / "isometry_vs_depth.csv"
FIGURE = Path("docs/figures/isometry_vs_depth.png")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--families", nargs="+", default=[f for f, _ in FAMILIES], choices=[f for f, _ in FAMILIES],
                   metavar="FAMILY", help="subset of families (default: all seven)")
    p.add_argument("--depths", nargs="+", type=int, default=list(DEPTHS))
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch", type=int, default=None, help="samples per measurement (default: 8 quick, 32 full)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="model seeds (default: 0 quick, 0 1 2 full)")
    p.add_argument("--data", default="auto", choices=("auto", "fashion-mnist", "gaussian"))
    p.add_argument("--csv", type=Path, default=CSV)
    p.add_argument("--figure", type=Path, default=FIGURE)
    p.add_argument("--device", default="cpu", help="torch device for the measurements (e.g. cuda)")
    p.add_argument("--plot-only", action="store_true", help="redraw the figure from the CSV without measuring")


def measure(family: str, depth: int, width: int, seed: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """One row: spectrum of the body and gradient ratio of the whole classifier at initialisation, measured
    on the device of ``x`` and ``y``."""
    t0, w0 = time.process_time(), time.time()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # built in float64 (orthogonal to float64 precision; no cast)
    try:
        model = create_model(family, x[0].numel(), 10, width=width, depth=depth, policy="init", seed=seed)
    finally:
        torch.set_default_dtype(default)
    rep = diagnose(model.to(x.device), x, y, method="exact")
    s = rep.pop("_spectrum").singular_values.double()
    rep.pop("_gradients")
    return {
        "family": family, "depth": depth, "width": width, "seed": seed, "batch": x.shape[0],
        "sigma_min": s.min().item(), "sigma_median": s.median().item(), "sigma_max": s.max().item(),
        "condition_number": rep["summary"]["condition_number"],
        "n_unit": ((s - 1).abs() <= 1e-6).sum(dim=-1).double().mean().item(),
        "grad_ratio": rep["gradients"]["ratio"], "orthogonality_defect": rep["orthogonality_defect"]["max"],
        "method": rep["method"], "dtype": "float64",
        "cpu_seconds": round(time.process_time() - t0, 2), "wall_seconds": round(time.time() - w0, 2),
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """2×2 panels versus depth (log–log): σ_max, median σ, σ_min, gradient ratio; one line per family.
    Exact zeros (σ_min of rank-deficient Jacobians) are drawn as crosses on the panel's bottom edge."""
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 2, figsize=(12, 8.5))
    panels = [("sigma_max", "σ_max of J = ∂x_L/∂x_0"), ("sigma_median", "median σ of J"),
              ("sigma_min", "σ_min of J"), ("grad_ratio", "gradient ratio ‖∂L/∂x_0‖ / ‖∂L/∂x_L‖")]
    labels = dict(FAMILIES)
    markers = "osD^v<>p"
    fams = [f for f, _ in FAMILIES if any(r["family"] == f for r in rows)]
    for ax, (key, name) in zip(axes.flat, panels):
        positive = [float(r[key]) for r in rows if 0 < float(r[key]) < math.inf]
        floor = min(positive) / 10 if positive else 1e-300
        for i, fam in enumerate(fams):
            by_depth: dict[int, list[float]] = {}
            for r in rows:
                if r["family"] == fam:
                    by_depth.setdefault(int(r["depth"]), []).append(float(r[key]))
            ds = sorted(by_depth)
            vals = [sum(by_depth[d]) / len(by_depth[d]) for d in ds]
            shown = [v if v > 0 else math.nan for v in vals]
            line, = ax.plot(ds, shown, marker=markers[i % len(markers)], ms=5, label=labels[fam])
            zeros = [d for d, v in zip(ds, vals) if v <= 0]
            if zeros:
                ax.plot(zeros, [floor] * len(zeros), "x", ms=9, mew=2, color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        depths = sorted({int(r["depth"]) for r in rows})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.set(xlabel="depth L (layers in the body)", ylabel=name.split(" of ")[0].split(" ‖")[0], title=name)
        ax.grid(alpha=0.3, which="major")
        if key == "sigma_min" and any(float(r[key]) <= 0 for r in rows):
            ax.set_title(name + "  (× = exactly 0: rank-deficient J)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=110, rect=(0, 0.06, 1, 1))


def _title(width: int, batch: int, source: str, mode: str) -> str:
    return (f"Jacobian spectrum of the body and gradient flow at initialisation versus depth (width {width}, "
            f"float64, {batch} {source} samples, {mode} mode)")


def run(args: argparse.Namespace) -> int:
    if args.mode == "quick":
        torch.set_num_threads(1)  # the quick mode's budget is stated for one thread per process
    mode = MODES[args.mode]
    batch = args.batch or mode["batch"]
    seeds = args.seeds or list(mode["seeds"])
    if batch < 1 or args.width < 2 or any(d < 1 for d in args.depths):
        raise ValueError("--batch ≥ 1, --width ≥ 2 and every depth ≥ 1 are required")
    if args.plot_only:
        this = [r for r in read_csv(args.csv) if r["mode"] == args.mode]
        if not this:
            raise ValueError(f"{args.csv} has no rows of mode {args.mode!r}; run without --plot-only first")
        plot(this, args.figure, _title(args.width, int(this[0]["batch"]), this[0]["data"], args.mode))
        print(f"wrote {args.figure}")
        return 0
    x, y, source = load_batch(args.data, (1, 28, 28), 10, batch, seed=0)
    x, y = x.to(device=args.device, dtype=torch.float64), y.to(args.device)
    dev = device_name(args.device)
    cpu0, wall0 = time.process_time(), time.time()
    labels = dict(FAMILIES)
    rows = []
    grid = [(f, d, s) for f in args.families for d in args.depths for s in seeds]
    for fam, depth, seed in tqdm(grid, desc="isometry", unit="model"):
        r = measure(fam, depth, args.width, seed, x, y)
        r.update(mode=args.mode, label=labels[fam].replace("|x|", "abs x"), data=source, device=dev)  # no | in tables
        rows.append(r)
        # saved at once, replacing only this (mode, family, depth, width, seed): a killed run keeps what it measured
        key = ("mode", "family", "depth", "width", "seed")
        append_csv([r], args.csv, COLUMNS, replace_where={k: r[k] for k in key})
        tqdm.write(f"  {labels[fam]:>30} L={depth:<5} σ ∈ [{r['sigma_min']:.3g}, {r['sigma_max']:.3g}], "
                   f"median {r['sigma_median']:.3g}, grad ratio {r['grad_ratio']:.3g} ({r['cpu_seconds']} s CPU)")
    md = args.csv.with_suffix(".md")
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    csv_to_markdown(args.csv, md, ["mode", "label", "depth"],
                    ["sigma_min", "sigma_median", "sigma_max", "condition_number", "n_unit", "grad_ratio"],
                    title="Dynamical isometry versus depth at initialisation",
                    note=("Produced by `orthojac reproduce isometry` (see `orthojac/experiments/isometry.py`): "
                          f"width {args.width}, float64, exact Jacobian of the body J = ∂x_L/∂x_0 on a batch of "
                          f"{batch} {source} inputs; σ over all samples; n_unit = mean number of σ within 1e-6 of "
                          "1; grad_ratio = ‖∂L/∂x_0‖/‖∂L/∂x_L‖ (cross-entropy). Values below ≈1e-16·σ_max are "
                          f"float64 round-off. Device of the last run: {dev}; it took {cpu:.0f} s CPU, "
                          f"{wall:.0f} s wall."))
    this = [r for r in read_csv(args.csv) if r["mode"] == args.mode]
    plot(this, args.figure, _title(args.width, batch, source, args.mode))
    print(f"wrote {args.csv}, {md}, {args.figure}  ({cpu:.0f} s CPU, {wall:.0f} s wall, {dev})")
    return 0
