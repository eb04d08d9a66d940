"""``orthojac reproduce fmnist-depth [--quick|--full]``: accuracy of deep networks on Fashion-MNIST against depth.

The paper's headline claim (arXiv 2508.02882, notes §0b "Experiments"): orthogonal-Jacobian networks — the
feedforward form without skip connections included — train stably up to 200 layers on Fashion-MNIST, with
accuracy comparable to standard networks. This runner trains, with one :class:`orthojac.train.Trainer` per
run, the architectures

    ortho_feedforward_abs, ortho_feedforward_sigma_k, ortho_residual_relu_k   (orthogonal Jacobian)
    resnet (standard residual), plain_relu (no skip connections)              (baselines)

as MLP bodies (width 128 in full mode) and convolutional bodies (:mod:`orthojac.models.convnet`) at several
depths, orthogonality policies ("init", "exact") and regulariser weights α (α·Σ‖WWᵀ − I‖²_F,
:func:`orthojac.regularizers.orthogonality`; baselines have no orthogonal weights, so their policy is
``none`` and α = 0). The body's learning rate is scaled with depth by default (``lr_scaling=depth``:
η_body = η·min(1, 8/L), ``optim.body_lr_scale: depth``); rows with ``lr_scaling=constant`` are the ablation.

Writes ``results/fmnist_depth.csv`` (one row per run; rows of the other mode are kept),
``results/fmnist_depth.md`` (mean ± std over seeds, generated from the CSV), ``results/fmnist_depth_profiles.json``
(per-layer gradient norms and body Jacobian singular values at initialisation and after training) and the
figures ``docs/figures/fmnist_depth_{accuracy,gradnorms,spectra}.png``. ``--quick`` (default) is a subset
for 2 CPU cores; ``--full`` is the whole grid for an accelerator and resumes: runs already in the CSV are
skipped (``--restart`` redoes them). Quick mode always redoes the selected runs. Only the selected runs' rows are
ever replaced. See docs/fmnist_depth.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..diagnostics import gradient_norms, jacobian_spectrum
from .common import (
    RESULTS_DIR,
    append_csv,
    csv_to_markdown,
    device_name,
    file_lock,
    plt,
    read_csv,
    save_figure,
    write_csv,
)

__all__ = ["Run", "grid", "run_one", "run", "add_arguments", "COLUMNS", "ARCHS", "ORTHO_ARCHS", "OPT_IN_ARCHS",
           "make_figures", "MODES", "update_profiles"]

COLUMNS = ["mode", "body", "arch", "policy", "alpha", "depth", "seed", "test_acc", "train_acc", "epochs", "seconds",
           "device", "lr_scaling", "body_lr_scale", "width", "n_train", "status", "grad_ratio_init",
           "grad_ratio_trained", "lr"]
ORTHO_ARCHS = ("ortho_feedforward_abs", "ortho_feedforward_sigma_k", "ortho_residual_relu_k")
ARCHS = (*ORTHO_ARCHS, "resnet", "plain_relu")
# opt-in (only when named in --archs; MLP body only): the untied feedforward form Aᵀ|Bx + b| + c, the tying ablation
OPT_IN_ARCHS = ("ortho_feedforward_abs_untied",)
BODIES = ("mlp", "conv")
KEY = ("body", "arch", "policy", "alpha", "depth", "seed", "lr_scaling")


@dataclass(frozen=True)
class Run:
    """One training run of the grid (the CSV's key columns)."""

    body: str
    arch: str
    policy: str  # "init" | "exact" | "none" (baselines)
    alpha: float
    depth: int
    seed: int
    lr_scaling: str = "depth"  # "depth" | "constant"

    @property
    def name(self) -> str:
        return (f"{self.body}_{self.arch}_{self.policy}_a{self.alpha:g}_L{self.depth}_s{self.seed}"
                f"_{self.lr_scaling}")

    def key(self) -> tuple[str, ...]:
        return tuple(str(v) for v in (self.body, self.arch, self.policy, f"{self.alpha:g}", self.depth, self.seed,
                                      self.lr_scaling))


# mode → settings. Data: a seeded subset of the training file (no validation split: the test set is only
# reported, never used to choose anything) and of the test file.
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "mlp": {"width": 64, "n_train": 5000, "n_test": 2000, "epochs": 3},
        "conv": {"width": 4, "n_train": 2000, "n_test": 1000, "epochs": 2},
        "seeds": (0,), "lr": 2e-3, "batch_size": 128, "warmup_steps": 10, "profile_depth": 200,
    },
    "full": {
        # η = 5e-4 for the MLP: with η = 2e-3 (body 8e-5 at L = 200) the width-128 depth-200 feedforward MLP's
        # loss rose from 0.67 to 1.9 over the first 400 steps; η = 5e-4 (body 2e-5) kept it falling
        # (docs/fmnist_depth.md, "Full mode")
        "mlp": {"width": 128, "n_train": None, "n_test": None, "epochs": 20, "lr": 5e-4},
        "conv": {"width": 16, "n_train": None, "n_test": None, "epochs": 20},
        "seeds": (0, 1, 2), "lr": 2e-3, "batch_size": 128, "warmup_steps": 200, "profile_depth": 200,
    },
}


def grid(mode: str, opt_in: tuple[str, ...] = ()) -> list[Run]:
    """The runs of a mode, plus those of the opt-in architectures named in ``opt_in`` (:data:`OPT_IN_ARCHS`).

    quick: MLP at depths {8, 32, 200}, every architecture (policy init, α = 0, depth-scaled lr), plus at depth 200
    the feedforward |·| form under the exact policy, with α = 1e-3, and with a constant lr under both policies
    (the ablation);
    conv at depth 8, every architecture, plus the exact feedforward form; conv at depth 32 for the feedforward |·|
    form, resnet and plain ReLU. One seed.

    full: bodies {mlp, conv} × depths {8, 16, 32, 64, 128, 200, 500, 1000} × seeds {0, 1, 2}; every orthogonal
    architecture under policies {init, exact} × α {0, 1e-3}; the baselines once (policy none, α 0); and the
    constant-lr ablation for the orthogonal architectures (policy init, α 0).

    opt-in ``ortho_feedforward_abs_untied`` (MLP body only): in quick mode the runs of the tied
    ``ortho_feedforward_abs`` MLP (policy init, α 0, depth-scaled lr at {8, 32, 200}; at 200 also exact, and
    constant lr under both policies), in full mode the MLP runs of an orthogonal architecture."""
    unknown = [a for a in opt_in if a not in OPT_IN_ARCHS]
    if unknown:
        raise ValueError(f"opt-in architectures {unknown} are unknown; choose from {OPT_IN_ARCHS}")
    if mode == "quick":
        runs = [Run("mlp", a, "none" if a not in ORTHO_ARCHS else "init", 0.0, d, 0)
                for d in (8, 32, 200) for a in ARCHS]
        runs += [Run("mlp", "ortho_feedforward_abs", "exact", 0.0, 200, 0),
                 Run("mlp", "ortho_feedforward_abs", "init", 1e-3, 200, 0),
                 Run("mlp", "ortho_feedforward_abs", "init", 0.0, 200, 0, "constant"),
                 Run("mlp", "ortho_feedforward_abs", "exact", 0.0, 200, 0, "constant")]
        for arch in opt_in:
            runs += [Run("mlp", arch, "init", 0.0, d, 0) for d in (8, 32, 200)]
            runs += [Run("mlp", arch, "exact", 0.0, 200, 0), Run("mlp", arch, "init", 0.0, 200, 0, "constant"),
                     Run("mlp", arch, "exact", 0.0, 200, 0, "constant")]
        runs += [Run("conv", a, "none" if a not in ORTHO_ARCHS else "init", 0.0, 8, 0) for a in ARCHS]
        runs += [Run("conv", "ortho_feedforward_abs", "exact", 0.0, 8, 0)]
        runs += [Run("conv", a, "none" if a not in ORTHO_ARCHS else "init", 0.0, 32, 0)
                 for a in ("ortho_feedforward_abs", "resnet", "plain_relu")]
        return runs
    if mode != "full":
        raise ValueError(f"mode {mode!r} is unknown; choose one of {tuple(MODES)}")
    runs = []
    for body in BODIES:
        for depth in (8, 16, 32, 64, 128, 200, 500, 1000):
            for seed in MODES["full"]["seeds"]:
                for arch in (*ARCHS, *(opt_in if body == "mlp" else ())):
                    if arch not in ORTHO_ARCHS and arch not in OPT_IN_ARCHS:
                        runs.append(Run(body, arch, "none", 0.0, depth, seed))
                        continue
                    runs += [Run(body, arch, policy, alpha, depth, seed)
                             for policy in ("init", "exact") for alpha in (0.0, 1e-3)]
                    runs.append(Run(body, arch, "init", 0.0, depth, seed, "constant"))
    return runs


# ----------------------------------------------------------------------------- diagnostics
def gradient_profile(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """‖∂L/∂x_ℓ‖ for ℓ = 0 … L (x₀ the body's input, x_ℓ the output of body layer ℓ — downsampling layers
    included), mean over the batch, for the cross-entropy L of the batch (x, y)
    (:func:`orthojac.diagnostics.gradient_norms`)."""
    return [float(v) for v in gradient_norms(model, F.cross_entropy, (x, y)).activation]


def body_spectrum(model: torch.nn.Module, x: torch.Tensor, exact_dim: int = 2048, k: int = 8
                  ) -> tuple[list[list[float]], str]:
    """Singular values of the body's Jacobian ∂x_L/∂x₀ at the body inputs of the samples x, in float64
    (:func:`orthojac.diagnostics.jacobian_spectrum`), one descending list per sample, and the method: the
    whole spectrum (``"exact"``) when the body's input has at most ``exact_dim`` entries (MLP bodies, the quick
    conv body), otherwise the k largest and k smallest (``"lanczos"``)."""
    body = copy.deepcopy(model.body).double()  # a copy: casting the model itself would round its weights
    with torch.no_grad():
        h0 = model.stem(x).double()
    big = h0[0].numel() > exact_dim
    res = jacobian_spectrum(body, h0, method="lanczos" if big else "exact", k=k if big else None)
    return res.singular_values.tolist(), res.method


# ----------------------------------------------------------------------------- one run
def run_config(r: Run, mode: str, settings: dict[str, Any], device: str, runs_dir: Path,
               data_root: str | None) -> dict[str, Any]:
    """The validated-config mapping (docs/training.md) of run ``r``."""
    b = settings[r.body]
    return {
        "name": r.name, "output": str(runs_dir / mode / r.name),
        "model": {"body": r.body, "arch": r.arch, "width": b["width"], "depth": r.depth,
                  "policy": "init" if r.policy == "none" else r.policy, "seed": r.seed},
        "data": {"dataset": "fashion-mnist", "root": data_root, "n_train": b["n_train"], "n_test": b["n_test"],
                 "val_fraction": 0.0, "batch_size": settings["batch_size"], "seed": 0},
        "optim": {"name": "adam", "lr": b.get("lr", settings["lr"]), "warmup_steps": settings["warmup_steps"],
                  "schedule": "cosine", "body_lr_scale": "depth" if r.lr_scaling == "depth" else 1.0,
                  "body_lr_ref_depth": 8},
        "regularizers": {"orthogonality": r.alpha} if r.alpha > 0 else {},
        "train": {"epochs": b["epochs"], "seed": r.seed, "device": device, "progress": False, "checkpoints": False,
                  "tensorboard": False, "eval_train": True, "log_every": 50},
    }


def run_one(r: Run, mode: str, settings: dict[str, Any], data: Any, device: str, runs_dir: Path,
            data_root: str | None, profile: bool = False, spectra: bool = False
            ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train one run; return its CSV row and (when ``profile``) its gradient-norm profiles, with the body
    Jacobian's singular values on 4 training samples when ``spectra``."""
    from ..train import NonFiniteLossError, Trainer

    cfg = run_config(r, mode, settings, device, runs_dir, data_root)
    trainer = Trainer(cfg, data=data)
    model = trainer.model
    xb, yb = (t[:256].to(trainer.device) for t in data.train)
    g0 = gradient_profile(model, xb, yb)
    prof: dict[str, Any] | None = None
    if profile:
        prof = {"run": asdict(r), "grad_init": g0}
        if spectra:
            prof["spectrum_init"], prof["spectrum_method"] = body_spectrum(model, xb[:4])
    t0 = time.time()
    try:
        summary = trainer.fit()
        status = "completed"
        test_acc, train_acc = summary.get("test_acc"), summary.get("train_acc")
    except NonFiniteLossError:
        status = "diverged"
        test_acc = trainer.evaluate("test")["test_acc"]
        train_acc = trainer.evaluate("train")["train_acc"]
    seconds = time.time() - t0
    g1 = gradient_profile(model, xb, yb)
    if prof is not None:
        prof.update(grad_trained=g1, test_acc=test_acc)
        if spectra:
            prof["spectrum_trained"] = body_spectrum(model, xb[:4])[0]
    ratio = lambda g: g[0] / g[-1] if g[-1] > 0 and math.isfinite(g[0]) else float("nan")  # noqa: E731
    row = {
        "mode": mode, "body": r.body, "arch": r.arch, "policy": r.policy, "alpha": f"{r.alpha:g}", "depth": r.depth,
        "seed": r.seed, "test_acc": round(float(test_acc), 4), "train_acc": round(float(train_acc), 4),
        "epochs": trainer.epoch, "seconds": round(seconds, 1), "device": device_name(trainer.device),
        "lr_scaling": r.lr_scaling, "body_lr_scale": f"{trainer.body_lr_scale:.4g}",
        "width": settings[r.body]["width"], "n_train": len(data.train[1]), "status": status,
        "grad_ratio_init": f"{ratio(g0):.4g}", "grad_ratio_trained": f"{ratio(g1):.4g}",
        "lr": f"{settings[r.body].get('lr', settings['lr']):g}",
    }
    return row, prof


# ----------------------------------------------------------------------------- the runner
def _filter(runs: list[Run], args: argparse.Namespace) -> list[Run]:
    """The runs whose fields match every given filter (``--bodies`` → ``Run.body``, …)."""
    filters = {"bodies": "body", "archs": "arch", "depths": "depth", "seeds": "seed", "policies": "policy",
               "alphas": "alpha", "lr_scalings": "lr_scaling"}
    keep = runs
    for option, field_name in filters.items():
        wanted = getattr(args, option)
        if wanted:
            keep = [r for r in keep if getattr(r, field_name) in wanted]
    return keep


def update_profiles(prof_path: Path, mode: str, drop: set[tuple[str, ...]], add: dict[str, Any] | None = None
                    ) -> None:
    """Read ``prof_path`` now, drop ``mode``'s profiles of the runs with keys in ``drop``, append ``add`` and write
    it back atomically. Reading just before writing (not once per process) keeps the profiles that another
    invocation — e.g. a quick run next to a long full sweep — wrote in the meantime; the read-modify-write holds
    :func:`~orthojac.experiments.common.file_lock`."""
    with file_lock(prof_path):  # another invocation cannot write between this read and this write
        profiles = json.loads(prof_path.read_text()) if prof_path.exists() else {}
        mine = [p for p in profiles.get(mode, []) if Run(**p["run"]).key() not in drop]
        profiles[mode] = mine + ([add] if add is not None else [])
        prof_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = prof_path.with_name(f"{prof_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(profiles) + "\n")
        os.replace(tmp, prof_path)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``orthojac reproduce fmnist-depth``."""
    from tqdm import tqdm

    from ..data import load_splits

    mode = args.mode
    settings = json.loads(json.dumps(MODES[mode]))  # a deep copy
    for body in BODIES:
        if args.epochs is not None:
            settings[body]["epochs"] = args.epochs
        if args.n_train is not None:
            settings[body]["n_train"] = args.n_train
        if args.n_test is not None:
            settings[body]["n_test"] = args.n_test
        if args.lr is not None:
            settings[body]["lr"] = args.lr
    if args.width is not None:
        settings["mlp"]["width"] = args.width
    if args.conv_width is not None:
        settings["conv"]["width"] = args.conv_width
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.results)
    csv_path, md_path = out / "fmnist_depth.csv", out / "fmnist_depth.md"
    prof_path = out / "fmnist_depth_profiles.json"
    runs = _filter(grid(mode, tuple(a for a in (args.archs or ()) if a in OPT_IN_ARCHS)), args)
    if not runs:
        raise ValueError("the filters (--bodies/--archs/--depths/--seeds/--policies/--alphas/--lr-scalings) leave "
                         "no run")
    restart = mode == "quick" or args.restart
    selected = {r.key() for r in runs}
    if restart:  # the selected runs' old rows and profiles go; every other row stays
        with file_lock(csv_path):
            if csv_path.exists():
                write_csv([row for row in read_csv(csv_path) if row["mode"] != mode
                           or tuple(str(row[k]) for k in KEY) not in selected], csv_path, COLUMNS)
        update_profiles(prof_path, mode, drop=selected)
    done = {tuple(str(row[k]) for k in KEY) for row in read_csv(csv_path) if row["mode"] == mode} \
        if csv_path.exists() else set()
    todo = [r for r in runs if r.key() not in done]
    print(f"fmnist-depth --{mode}: {len(todo)} runs ({len(runs) - len(todo)} already in {csv_path}) on "
          f"{device_name(device)}")
    data_cache: dict[str, Any] = {}
    cpu0, wall0 = time.process_time(), time.time()
    bar = tqdm(todo, desc=f"fmnist-depth {mode}", unit="run", dynamic_ncols=True)
    for r in bar:
        bar.set_postfix_str(r.name, refresh=True)
        b = settings[r.body]
        dkey = f"{b['n_train']}_{b['n_test']}"
        if dkey not in data_cache:
            data_cache[dkey] = load_splits("fashion-mnist", args.data_root, n_train=b["n_train"], n_test=b["n_test"],
                                           val_fraction=0.0, seed=0, progress=False)
        profile = (r.depth == settings["profile_depth"] or r.depth == max(x.depth for x in runs if x.body == r.body)) \
            and r.seed == runs[0].seed and r.alpha == 0 and r.policy in ("init", "none") and r.lr_scaling == "depth"
        row, prof = run_one(r, mode, settings, data_cache[dkey], device, Path(args.runs_dir), args.data_root, profile,
                            spectra=not args.no_spectra)
        tqdm.write(f"  {r.name}: test {row['test_acc']:.4f} train {row['train_acc']:.4f} [{row['status']}, "
                   f"{row['seconds']} s]")
        append_csv([row], csv_path, COLUMNS)
        if prof is not None:
            update_profiles(prof_path, mode, drop={Run(**prof["run"]).key()}, add=prof)
    bar.close()
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    write_table(csv_path, md_path)
    figs = make_figures(csv_path, prof_path, Path(args.figures))
    print(f"wrote {csv_path}, {md_path}, {prof_path}, {', '.join(str(f) for f in figs)}")
    print(f"{mode} mode: {len(todo)} runs, {cpu:.0f} s CPU time (this process), {wall:.0f} s wall, "
          f"{os.cpu_count()} cores")
    return 0


def write_table(csv_path: Path, md_path: Path) -> Path:
    """results/fmnist_depth.md: mean ± std over seeds for each (mode, body, depth, arch, policy, α, lr scaling, η)."""
    rows = read_csv(csv_path)
    order = {a: i for i, a in enumerate((ARCHS[0], *OPT_IN_ARCHS, *ARCHS[1:]))}  # untied next to tied
    rows.sort(key=lambda r: (r["mode"], r["body"], int(r["depth"]), order.get(r["arch"], 99), r["policy"],
                             float(r["alpha"]), r["lr_scaling"], int(r["seed"])))
    tmp = csv_path.with_name(csv_path.stem + ".sorted.csv")
    write_csv(rows, tmp, COLUMNS)
    try:
        csv_to_markdown(tmp, md_path, ["mode", "body", "depth", "arch", "policy", "alpha", "lr_scaling", "lr"],
                        ["test_acc", "train_acc", "grad_ratio_init", "grad_ratio_trained", "seconds"],
                        title="Fashion-MNIST: accuracy against depth",
                        note="Written by `orthojac reproduce fmnist-depth` (see docs/fmnist_depth.md). "
                             "Accuracies are fractions; grad_ratio = ‖∂L/∂x₀‖ / ‖∂L/∂x_L‖ over the body "
                             "(1 = no vanishing or exploding); lr = Adam's η (the body's: η·body_lr_scale); mean ± std "
                             "over seeds; n = runs. Device: "
                             + ", ".join(sorted({r["device"] for r in rows})) + ".")
    finally:
        tmp.unlink(missing_ok=True)
    text = md_path.read_text().replace(f"`{tmp.as_posix()}`", f"`{csv_path.as_posix()}`")
    md_path.write_text(text)
    return md_path


def ablation_figure(rows: list[dict[str, str]], path: Path) -> Path | None:
    """What makes the feedforward (no skip) MLP train at its deepest depth: test accuracy of Aᵀ|Bx + b| + c, tied
    (A = B) and untied, under policy init / exact, with the depth-scaled and the constant body lr (α = 0; mean
    over seeds, the seeds as dots), one panel per mode. None when no mode has these rows."""
    archs = ("ortho_feedforward_abs", "ortho_feedforward_abs_untied")
    sel = [r for r in rows if r["body"] == "mlp" and r["arch"] in archs and float(r["alpha"]) == 0]
    panels = []
    for mode in MODES:
        mine = [r for r in sel if r["mode"] == mode]
        if mine:
            panels.append((mode, max(int(r["depth"]) for r in mine)))
    if not panels:
        return None
    pyplot = plt()
    cells = [(p, s) for p in ("init", "exact") for s in ("depth", "constant")]
    fig, axes = pyplot.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (mode, depth) in zip(axes[0], panels, strict=True):
        for j, arch in enumerate(archs):
            for i, (policy, scaling) in enumerate(cells):
                accs = [float(r["test_acc"]) for r in sel if r["mode"] == mode and int(r["depth"]) == depth
                        and r["arch"] == arch and r["policy"] == policy and r["lr_scaling"] == scaling]
                x = i + (j - 0.5) * 0.38
                if accs:
                    ax.bar(x, sum(accs) / len(accs), width=0.36, color=f"C{j}", alpha=0.85,
                           label=("tied A = B" if j == 0 else "untied A, B") if i == 0 else None)
                    ax.plot([x] * len(accs), accs, "k.", ms=4)
                    ax.text(x, sum(accs) / len(accs) + 0.01, f"{sum(accs) / len(accs):.3f}", ha="center", fontsize=7)
                else:
                    ax.text(x, 0.02, "not run", ha="center", rotation=90, fontsize=7, color="grey")
        ax.axhline(0.1, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(len(cells)), [f"{p}\n{'η·8/L' if s == 'depth' else 'η (constant)'}" for p, s in cells])
        ax.set(ylim=(0, 1), ylabel="test accuracy", title=f"feedforward |·| MLP, L = {depth} ({mode} mode)")
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def make_figures(csv_path: Path, prof_path: Path, fig_dir: Path) -> list[Path]:
    """The figures, from every row of the CSV and every profile (both modes; one row of panels per mode present,
    quick above full): test accuracy vs depth (one panel per body), gradient norm vs layer (init / trained) and
    body Jacobian singular values (init / trained) of the profiled runs."""
    pyplot = plt()
    fig_dir.mkdir(parents=True, exist_ok=True)
    all_rows = read_csv(csv_path)
    modes = [m for m in MODES if any(r["mode"] == m for r in all_rows)]
    paths = []
    bodies = [b for b in BODIES if any(r["body"] == b for r in all_rows)]
    nr, nc = max(1, len(modes)), max(1, len(bodies))
    fig, axes = pyplot.subplots(nr, nc, figsize=(6.5 * nc, 4.5 * nr), squeeze=False)
    for i, mode in enumerate(modes):
        rows = [r for r in all_rows if r["mode"] == mode]
        for ax, body in zip(axes[i], bodies, strict=False):
            series: dict[str, dict[int, list[float]]] = {}
            for r in rows:
                if r["body"] != body:
                    continue
                label = r["arch"] + ("" if r["policy"] in ("init", "none") else f" [{r['policy']}]") + \
                    ("" if float(r["alpha"]) == 0 else f" α={r['alpha']}") + \
                    ("" if r["lr_scaling"] == "depth" else " [constant lr]")
                series.setdefault(label, {}).setdefault(int(r["depth"]), []).append(float(r["test_acc"]))
            ax.set_prop_cycle(color=[pyplot.get_cmap("tab20")(k % 20) for k in range(len(series))])
            for k, (label, pts) in enumerate(sorted(series.items())):
                ds = sorted(pts)
                mean = [sum(pts[d]) / len(pts[d]) for d in ds]
                std = [(sum((v - m) ** 2 for v in pts[d]) / max(1, len(pts[d]) - 1)) ** 0.5
                       for d, m in zip(ds, mean, strict=True)]
                style = "--" if ("[" in label or "α" in label) else "-"
                ax.errorbar(ds, mean, yerr=std, marker="osD^v<>"[k % 7], linestyle=style, capsize=3, label=label)
            ax.axhline(0.1, color="grey", lw=0.8, ls=":")
            ax.set(xscale="log", xlabel="depth L (body layers)", ylabel="test accuracy", ylim=(0, 1),
                   title=f"Fashion-MNIST, {body} body ({mode} mode)")
            if series:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, f"no {body} runs in {mode} mode yet", transform=ax.transAxes, ha="center",
                        color="grey")
    paths.append(save_figure(fig, fig_dir / "fmnist_depth_accuracy.png", dpi=110))
    ablation = ablation_figure(all_rows, fig_dir / "fmnist_depth_feedforward_ablation.png")
    if ablation is not None:
        paths.append(ablation)

    stored = json.loads(prof_path.read_text()) if prof_path.exists() else {}
    pmodes = [m for m in MODES if stored.get(m)]
    if not pmodes:
        return paths
    label = lambda p, m: f"{m} {p['run']['body']} {p['run']['arch']} L={p['run']['depth']}"  # noqa: E731
    fig, axes = pyplot.subplots(len(pmodes), 2, figsize=(12, 4.5 * len(pmodes)), sharey=True, squeeze=False)
    for (a0, a1), mode in zip(axes, pmodes, strict=True):
        for p in stored[mode]:
            a0.semilogy(p["grad_init"], label=label(p, mode))
            a1.semilogy(p["grad_trained"], label=label(p, mode))
        a0.set(xlabel="layer ℓ", ylabel="‖∂L/∂x_ℓ‖ (mean over 256 samples)", title=f"at initialisation ({mode})")
        a1.set(xlabel="layer ℓ", title=f"after training ({mode})")
        a0.legend(fontsize=7)
    paths.append(save_figure(fig, fig_dir / "fmnist_depth_gradnorms.png", dpi=110))

    fig, axes = pyplot.subplots(len(pmodes), 2, figsize=(12, 4.5 * len(pmodes)), sharey=True, squeeze=False)
    for (a0, a1), mode in zip(axes, pmodes, strict=True):
        for p in stored[mode]:
            if not p.get("spectrum_init"):
                continue
            for ax, key in ((a0, "spectrum_init"), (a1, "spectrum_trained")):
                sv = [max(v, 1e-30) for v in p[key][0]]
                lanczos = p.get("spectrum_method") == "lanczos"  # the k largest and k smallest only
                kw = {"marker": ".", "ls": ":"} if lanczos else {}
                shown = label(p, mode) + (" (extremes)" if lanczos else "")
                line, = ax.semilogy(range(1, len(sv) + 1), sv, label=shown, **kw)
                for other in p[key][1:]:
                    ax.semilogy(range(1, len(other) + 1), [max(v, 1e-30) for v in other], color=line.get_color(),
                                alpha=0.3, lw=0.8)
        a0.set(xlabel="index i (extremes: the 8 largest, then the 8 smallest)", ylabel="σ_i(∂x_L/∂x₀)",
               title=f"body Jacobian singular values at initialisation ({mode})")
        a1.set(xlabel="index i", title=f"after training ({mode})")
        a0.legend(fontsize=7)
    paths.append(save_figure(fig, fig_dir / "fmnist_depth_spectra.png", dpi=110))
    return paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="directory with the Fashion-MNIST files (default: searched)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--results", default=str(RESULTS_DIR), help="where the CSV/Markdown/JSON go (default results)")
    p.add_argument("--figures", default="docs/figures", help="where the figures go (default docs/figures)")
    p.add_argument("--runs-dir", default="runs/fmnist_depth", help="the runs' directories (metrics.jsonl, summary)")
    p.add_argument("--bodies", nargs="+", choices=BODIES, help="only these bodies")
    p.add_argument("--archs", nargs="+", choices=(*ARCHS, *OPT_IN_ARCHS),
                   help="only these architectures; an opt-in one (ortho_feedforward_abs_untied, MLP) adds its runs")
    p.add_argument("--depths", nargs="+", type=int, help="only these depths (of the mode's grid)")
    p.add_argument("--seeds", nargs="+", type=int, help="only these seeds (of the mode's grid)")
    p.add_argument("--policies", nargs="+", choices=("init", "exact", "none"), help="only these policies")
    p.add_argument("--alphas", nargs="+", type=float, help="only these regulariser weights α")
    p.add_argument("--lr-scalings", nargs="+", choices=("depth", "constant"), help="only these lr scalings")
    p.add_argument("--epochs", type=int, help="override the mode's epochs")
    p.add_argument("--n-train", type=int, help="override the mode's training-set size")
    p.add_argument("--n-test", type=int, help="override the mode's test-set size")
    p.add_argument("--width", type=int, help="override the MLP width")
    p.add_argument("--lr", type=float, help="override the mode's Adam learning rate η (the body's is η·min(1, 8/L))")
    p.add_argument("--conv-width", type=int, help="override the conv body's first-stage channels")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--restart", action="store_true", help="full mode: redo runs already in the CSV")
    p.add_argument("--no-spectra", action="store_true",
                   help="skip the body Jacobian spectra of the profiled runs (gradient norms are still measured)")
