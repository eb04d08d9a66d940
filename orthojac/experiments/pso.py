"""``orthojac reproduce pso``: persistent subspace orthogonality (PSO) keeps gradients alive through depth.

Two parts (definitions and proof sketch: docs/pso.md; the paper's v2, arXiv 2508.02882, notes §4):

1. **Gradient flow** (no data). Stacks of partial-isometry layers ``PersistentSubspace(n, r, strategy)``
   (orthogonal weights, ReLU) with a persistent subspace of dimension r ∈ {0, 1, 4, 16, n/2} — r = 0 is the
   plain partial-isometry stack without one —, the same layers each followed by a fixed random rotation
   (``strategy="rotated"``: an r-dimensional isometric subspace in every layer that does *not* persist), and
   the exact orthogonal-Jacobian ``OrthoResidual`` as a reference, at depths {10, 50, 200, 1000}, in float64
   at Gaussian inputs. For each input, the body Jacobian J (built layer by layer with ``torch.func.jacrev``)
   gives

   * ``grad_norm_ratio`` = ‖∂L/∂x₀‖ / ‖∂L/∂x_L‖ = ‖Jᵀg‖ / ‖g‖ for a loss with output gradient g, for two
     losses: ``loss="aligned"`` (g a random direction in the persistent subspace V — the task reads the
     features the network keeps; for r = 0, g in span(e₁)) and ``loss="random"`` (g uniform on the sphere,
     for which PSO predicts ‖Jᵀg‖/‖g‖ → ‖P_V g‖/‖g‖ ≈ √(r/n), column ``sqrt_r_over_n``);
   * ``n_unit_sv``, the number of singular values of J within 1e-6 of 1 (PSO: exactly r), and
     ``sv_complement_max``, the largest of the others (collapse: → 0 with depth).

   Written to ``results/pso.csv`` (mean over inputs; min/max columns too), figure
   ``docs/figures/pso_gradient_flow.png``.
2. **Training** (Fashion-MNIST, MLP: Linear stem + LayerNorm → body → Linear head). Test accuracy versus
   depth for PSO bodies of both strategies and several r, next to the exact orthogonal-Jacobian residual body
   (``ortho_residual_relu``), the r = 0 partial-isometry body, and the plain He-initialised ReLU body; plus
   the gradient-norm ratio between the body's first and last layer under the real cross-entropy loss, at
   initialisation and after training. Written to ``results/pso_train.csv``, figure
   ``docs/figures/pso_train.png``.

``--quick`` (default): width 64, 8 inputs, one seed; training on 4 000 images for 2 epochs at depths
{10, 50, 200}, orthogonality policy ``init`` (plus ``exact`` for the PSO arms at depth 200, r = 8).
``--full``: width 128, 32 inputs, three seeds; the full training set, 10 epochs, depths {10, 50, 200, 500},
policies ``init`` and ``exact`` (meant for an accelerator).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..diagnostics import gradient_norms, orthogonality_defect
from ..models import create_model
from ..nn import OrthoResidual, PersistentSubspace, orthogonal_init_
from . import common
from .jacobians import Timer, gradient_norm_ratio, load_image_data, prefix_jacobians, train_classifier, unit_count

MODES = {
    "quick": dict(width=64, depths=(10, 50, 200, 1000), n_inputs=8, seeds=(0,),
                  train_depths=(10, 50, 200), train_rs=(1, 8, 32), n_train=4000, n_test=2000, epochs=2,
                  train_seeds=(0,), policies=("init", "exact"), subsets={"exact": dict(depths=(200,), rs=(8,))}),
    "full": dict(width=128, depths=(10, 50, 200, 1000), n_inputs=32, seeds=(0, 1, 2),
                 train_depths=(10, 50, 200, 500), train_rs=(1, 4, 16, 64), n_train=None, n_test=None, epochs=10,
                 train_seeds=(0, 1, 2), policies=("init", "exact"), subsets={}),
}
FLOW_COLUMNS = ["strategy", "r", "depth", "width", "loss", "grad_norm_ratio", "n_unit_sv", "seed",
                "grad_norm_ratio_min", "grad_norm_ratio_max", "sqrt_r_over_n", "n_unit_sv_min", "sv_complement_max",
                "reserved_active_frac", "n_inputs", "mode", "device", "part_wall_s", "part_cpu_s"]
TRAIN_COLUMNS = ["arch", "strategy", "r", "depth", "width", "policy", "test_acc", "seed", "train_loss",
                 "grad_ratio_init", "grad_ratio_trained", "weight_defect", "reserved_active_frac", "diverged",
                 "n_train", "epochs", "seconds", "mode", "device", "part_wall_s", "part_cpu_s"]
UNIT_TOL = 1e-6


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR, help="results directory (default: results/)")
    p.add_argument("--figures", type=Path, default=Path("docs/figures"), help="figure directory")
    p.add_argument("--part", choices=("all", "flow", "train"), default="all", help="run only one part")
    p.add_argument("--policy", choices=("init", "exact"), nargs="+", default=None,
                   help="orthogonality policies of the trained PSO/orthogonal bodies (default: init and exact; "
                        "in quick mode exact only for the PSO arms at depth 200 with r = 8)")
    p.add_argument("--device", default="auto", help="training device: auto (cuda when available), cpu, cuda")


def _rs(width: int) -> tuple[int, ...]:
    """The subspace dimensions of the gradient-flow part: {0, 1, 4, 16, n/2} ∩ [0, n]."""
    return tuple(sorted(r for r in {0, 1, 4, 16, width // 2} if r <= width))


class RotatedLayer(nn.Module):
    """x ↦ Q·F(x) with Q a fixed Haar-random orthogonal matrix: F's isometric subspace V is carried to QV,
    which the next layer does not keep — every layer has an r-dimensional isometric subspace, but it does
    not *persist* (the control for the necessity claim, docs/pso.md)."""

    def __init__(self, layer: nn.Module, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("q", orthogonal_init_(torch.empty(width, width), "qr", generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) @ self.q.T


def build_stack(strategy: str, width: int, r: int, depth: int, seed: int) -> nn.Sequential:
    """A float64 stack of ``depth`` layers: ``PersistentSubspace(width, r, strategy)``; for
    ``strategy="orthogonal"`` the exact orthogonal-Jacobian ``OrthoResidual(width)`` (reference); for
    ``strategy="rotated"`` channel-strategy layers each followed by a fixed random rotation (r-dimensional
    isometric subspaces that do not persist)."""
    g = torch.Generator().manual_seed(seed)
    if strategy == "orthogonal":
        layers = [OrthoResidual(width, generator=g) for _ in range(depth)]
    elif strategy == "rotated":
        layers = [RotatedLayer(PersistentSubspace(width, r, "channels", generator=g), width, g) for _ in range(depth)]
    else:
        layers = [PersistentSubspace(width, r, strategy, generator=g) for _ in range(depth)]
    return nn.Sequential(*layers).double()


def loss_gradients(width: int, r: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Output gradients g (n, width) of the two losses: 'aligned' (random in span(e₁…e_max(r,1))) and
    'random' (uniform directions)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    k = max(r, 1)
    aligned = torch.zeros(n, width, dtype=torch.float64)
    aligned[:, :k] = torch.randn(n, k, generator=g, dtype=torch.float64)
    rand = torch.randn(n, width, generator=g, dtype=torch.float64)
    return {"aligned": aligned, "random": rand}


def gradient_flow(mode: str, device_label: str) -> list[dict]:
    cfg = MODES[mode]
    width, depths = cfg["width"], cfg["depths"]
    jobs = [("orthogonal", width)] + [(s, r) for s in PersistentSubspace.STRATEGIES for r in _rs(width)]
    jobs += [("rotated", r) for r in _rs(width) if r > 0]
    rows = []
    for seed in cfg["seeds"]:
        x0 = torch.randn(cfg["n_inputs"], width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        for strategy, r in tqdm(jobs, desc=f"pso flow (seed {seed})"):
            stack = build_stack(strategy, width, r, max(depths), seed)
            jacs = prefix_jacobians(list(stack), x0, depths)
            active = None
            if strategy == "bias":  # inputs at which every layer's reserved units are active
                h, active = x0, torch.ones(len(x0), dtype=torch.bool)
                with torch.no_grad():
                    for layer in stack:
                        active &= layer.reserved_active(h)
                        h = layer(h)
            for depth, j in jacs.items():
                sv = torch.linalg.svdvals(j)  # descending
                units = unit_count(sv, UNIT_TOL)
                k = r if strategy != "orthogonal" else width
                comp = sv[:, k:] if k < width else sv.new_zeros(len(sv), 1)
                for loss, g in loss_gradients(width, r, len(x0), seed).items():
                    ratio = gradient_norm_ratio(j, g)
                    rows.append({
                        "strategy": strategy, "r": k, "depth": depth, "width": width, "loss": loss,
                        "grad_norm_ratio": ratio.mean().item(), "n_unit_sv": units.double().mean().item(),
                        "seed": seed, "grad_norm_ratio_min": ratio.min().item(),
                        "grad_norm_ratio_max": ratio.max().item(), "sqrt_r_over_n": math.sqrt(k / width),
                        "n_unit_sv_min": int(units.min()), "sv_complement_max": comp.max().item(),
                        "reserved_active_frac": "" if active is None else active.double().mean().item(),
                        "n_inputs": len(x0), "mode": mode, "device": device_label,
                    })
    return rows


def body_gradient_ratio(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """‖∂L/∂x₀‖ / ‖∂L/∂x_L‖ for the cross-entropy loss, x₀ the body's input and x_L its output, per-sample
    norms averaged over the batch (:func:`orthojac.diagnostics.gradient_norms`, blocks = ``model.body``)."""
    return gradient_norms(model, F.cross_entropy, (x, y)).ratio


@torch.no_grad()
def reserved_active_fraction(model, x: torch.Tensor) -> float:
    """Fraction of inputs at which every reserved unit of every ``"bias"``-strategy layer is active (where
    the body keeps its persistent subspace)."""
    h = model.stem(x)
    ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for layer in model.body:
        ok &= layer.reserved_active(h)
        h = layer(h)
    return ok.double().mean().item()


def _defect(model) -> float | str:
    """max ‖WWᵀ − I‖_F over the constrained weights ('' for a model without any)."""
    d = orthogonality_defect(model)
    return d.max if d.count else ""


def train_arms(width: int, rs: tuple[int, ...]) -> list[tuple[str, str, int, dict]]:
    """(arch, strategy label, r, layer kwargs) for every trained body."""
    arms = [("plain_relu", "plain", 0, {}), ("ortho_residual_relu", "orthogonal", width, {}),
            ("pso_channels", "none", 0, {"r": 0})]
    for strategy in PersistentSubspace.STRATEGIES:
        arms += [(f"pso_{strategy}", strategy, r, {"r": r}) for r in rs]
    return arms


def _selected(cfg: dict, policy: str, depth: int, arm: tuple) -> bool:
    """Whether an arm runs under a policy: the plain ReLU baseline has no orthogonality policy (run once, under
    ``init``); ``cfg["subsets"][policy]`` restricts a policy to some depths and r (quick mode runs ``exact`` only
    for the PSO arms at depth 200, r = 8: the exact parametrisation costs ~3× the CPU)."""
    arch, _, r, _ = arm
    if not arch.startswith(("pso", "ortho")):
        return policy == "init"
    sub = cfg.get("subsets", {}).get(policy)
    if sub is None:
        return True
    return depth in sub["depths"] and arch.startswith("pso") and r in sub["rs"]


def training(mode: str, policies: tuple[str, ...] | None, device: torch.device, device_label: str) -> list[dict]:
    cfg = MODES[mode]
    policies = tuple(policies or cfg["policies"])
    width = cfg["width"]
    xs, ys, xt, yt, d_in, classes = load_image_data("fashion-mnist", cfg["n_train"], cfg["n_test"], seed=0)
    rows = []
    arms = train_arms(width, cfg["train_rs"])
    jobs = [(seed, depth, policy, arm) for seed in cfg["train_seeds"] for depth in cfg["train_depths"]
            for policy in policies for arm in arms if _selected(cfg, policy, depth, arm)]
    for seed, depth, policy, (arch, strategy, r, kw) in tqdm(jobs, desc="pso train"):
        arm_policy = policy if arch.startswith(("pso", "ortho")) else "init"
        model = create_model(arch, d_in, classes, width, depth, policy=arm_policy, seed=seed, **kw)
        probe = (xt[:256].to(device), yt[:256].to(device))
        model.to(device)
        ratio0 = body_gradient_ratio(model, *probe)
        res = train_classifier(model, (xs, ys), (xt, yt), epochs=cfg["epochs"], seed=seed, device=device)
        rows.append({
            "arch": arch, "strategy": strategy, "r": r, "depth": depth, "width": width, "policy": arm_policy,
            "test_acc": res["test_acc"], "seed": seed, "train_loss": res["train_loss"],
            "grad_ratio_init": ratio0, "grad_ratio_trained": body_gradient_ratio(model, *probe),
            "weight_defect": _defect(model),
            "reserved_active_frac": reserved_active_fraction(model, probe[0]) if strategy == "bias" else "",
            "diverged": res["diverged"], "n_train": len(xs), "epochs": cfg["epochs"],
            "seconds": round(res["seconds"], 2), "mode": mode, "device": device_label,
        })
    return rows


def plot_flow(csv_path: Path, fig_path: Path, floor: float = 1e-35) -> Path:
    """Ratio vs depth for both losses (values below ``floor`` drawn at the floor as ▼) and the number of unit
    singular values vs depth."""
    plt = common.plt()
    rows = common.read_csv(csv_path)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    styles = {"channels": "-", "bias": "--", "orthogonal": ":", "rotated": "-."}
    keys = sorted({(r["strategy"], int(r["r"])) for r in rows})
    cmap = plt.get_cmap("viridis")
    rs = sorted({int(r["r"]) for r in rows})

    def color(strategy: str, r: int):
        return "k" if strategy == "orthogonal" else cmap(0.9 * rs.index(r) / max(1, len(rs) - 1))

    def series(strategy: str, r: int, loss: str, col: str) -> list[tuple[int, float]]:
        by: dict[int, list[float]] = {}
        for x in rows:
            if x["strategy"] == strategy and int(x["r"]) == r and x["loss"] == loss:
                by.setdefault(int(x["depth"]), []).append(float(x[col]))
        return [(d, sum(v) / len(v)) for d, v in sorted(by.items())]

    for ax, loss in zip(axes[:2], ("aligned", "random"), strict=True):
        for strategy, r in keys:
            pts = series(strategy, r, loss, "grad_norm_ratio")
            d, v = zip(*pts, strict=True)
            ax.plot(d, [max(y, floor) for y in v], styles[strategy], color=color(strategy, r),
                    label=f"{strategy} r={r}")
            ax.scatter(d, [max(y, floor) for y in v], marker="o", s=14, color=color(strategy, r),
                       edgecolors=["none" if y >= floor else "red" for y in v])
        ax.axhspan(0.5, 2, color="tab:green", alpha=0.15, label="[0.5, 2]")
        ax.set(xscale="log", yscale="log", ylim=(floor / 3, 10), xlabel="depth L",
               ylabel="‖∂L/∂x₀‖ / ‖∂L/∂x_L‖ (mean over inputs)",
               title=f"{loss} loss (red edge: below {floor:g}, drawn at it)")
    ax = axes[2]
    for strategy, r in keys:
        pts = series(strategy, r, "aligned", "n_unit_sv")
        ax.plot(*zip(*pts, strict=True), styles[strategy], marker="o", color=color(strategy, r))
    ax.set(xscale="log", yscale="symlog", ylim=(-0.2, 1.3 * max(rs)), xlabel="depth L",
           ylabel="# singular values within 1e-6 of 1",
           title="unit singular values of the body Jacobian")
    ax.set_yticks(rs, [str(r) for r in rs])
    axes[0].legend(fontsize=7, ncol=2, loc="lower left")
    fig.suptitle(f"PSO gradient flow (width {rows[0]['width']}, {rows[0]['mode']} mode; results/pso.csv)")
    return common.save_figure(fig, fig_path)


def plot_train(csv_path: Path, fig_path: Path) -> Path:
    plt = common.plt()
    rows = common.read_csv(csv_path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    arms = sorted({(r["arch"], r["strategy"], int(r["r"]), r["policy"]) for r in rows})
    cmap = plt.get_cmap("tab20")
    for i, (arch, strategy, r, policy) in enumerate(arms):
        by_depth: dict[int, list[float]] = {}
        for x in rows:
            if (x["arch"], x["strategy"], int(x["r"]), x["policy"]) == (arch, strategy, r, policy):
                by_depth.setdefault(int(x["depth"]), []).append(float(x["test_acc"]))
        d = sorted(by_depth)
        style = {"channels": "-", "bias": "--"}.get(strategy, ":")
        name = f"{strategy} r={r}" if arch.startswith("pso") else arch
        ax.plot(d, [sum(by_depth[k]) / len(by_depth[k]) for k in d], style, marker="s" if policy == "exact" else "o",
                color=cmap(i % 20), label=f"{name} ({policy})" if len({a[3] for a in arms}) > 1 else name)
    ax.set(xscale="log", xlabel="depth L", ylabel="test accuracy", ylim=(0, 1),
           title=f"Fashion-MNIST, width {rows[0]['width']}, {rows[0]['mode']} mode (results/pso_train.csv)")
    ax.legend(fontsize=7, ncol=2)
    return common.save_figure(fig, fig_path)


def _stamp(rows: list[dict], timer: Timer) -> None:
    """Record the part's total wall and CPU seconds in every row (``part_wall_s``, ``part_cpu_s``)."""
    wall, cpu = timer.seconds()
    for r in rows:
        r["part_wall_s"], r["part_cpu_s"] = round(wall, 1), round(cpu, 1)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()) if args.mode == "full" else 1)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    label = common.device_name(device)
    out, figs = Path(args.out), Path(args.figures)
    if args.part in ("all", "flow"):
        t = Timer()
        rows = gradient_flow(args.mode, common.device_name("cpu"))
        _stamp(rows, t)
        path = common.append_csv(rows, out / "pso.csv", FLOW_COLUMNS, replace_where={"mode": args.mode})
        common.csv_to_markdown(path, out / "pso.md", ["mode", "strategy", "r", "loss", "depth"],
                               ["grad_norm_ratio", "grad_norm_ratio_min", "sqrt_r_over_n", "n_unit_sv",
                                "sv_complement_max"],
                               title="PSO gradient flow", note="`orthojac reproduce pso` (part 1): float64, "
                               "mean over inputs and seeds; see docs/pso.md.")
        plot_flow(path, figs / "pso_gradient_flow.png")
        wall, cpu = t.seconds()
        print(f"pso gradient flow: {len(rows)} rows → {path} ({wall:.0f} s wall, {cpu:.0f} s CPU)")
    if args.part in ("all", "train"):
        path = out / "pso_train.csv"
        # saved per policy: re-running a (mode, policy) replaces its rows and keeps the others, and a killed
        # run keeps the policies it finished
        t, n_rows = Timer(), 0
        for policy in args.policy or MODES[args.mode]["policies"]:
            rows = training(args.mode, (policy,), device, label)
            _stamp(rows, t)  # seconds since the part started
            common.append_csv(rows, path, TRAIN_COLUMNS, replace_where={"mode": args.mode, "policy": policy})
            n_rows += len(rows)
        common.csv_to_markdown(path, out / "pso_train.md", ["mode", "policy", "arch", "strategy", "r", "depth"],
                               ["test_acc", "grad_ratio_init", "grad_ratio_trained", "weight_defect",
                                "reserved_active_frac", "diverged"],
                               title="PSO training on Fashion-MNIST",
                               note="`orthojac reproduce pso` (part 2): test accuracy (fraction), mean ± std over "
                               "seeds; gradient ratios ‖∂L/∂x₀‖/‖∂L/∂x_L‖ of the body under cross-entropy at "
                               "initialisation and after training; weight_defect = max ‖WWᵀ − I‖_F after training; "
                               "reserved_active_frac = share of test inputs keeping every reserved unit active "
                               "(bias strategy).")
        plot_train(path, figs / "pso_train.png")
        wall, cpu = t.seconds()
        print(f"pso training: {n_rows} rows → {path} ({wall:.0f} s wall, {cpu:.0f} s CPU, {label})")
    return 0
