"""Figures for a solved problem: level sets of u_θ on a 2-D slice, the error map |u − u_θ| where the exact
solution is known, and optimal feedback trajectories for the control problems (:mod:`orthojac.hj.control`)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..diagnostics.plots import pyplot as _pyplot
from ..diagnostics.plots import save_figure
from .control import trajectory
from .problems import Problem, ReedsSheppCar, TimeDependentLQR, TwoCarGame

__all__ = ["plot_solution", "default_starts", "plot_settings_mse"]


def default_starts(problem: Problem) -> list[torch.Tensor]:
    """Start points of the trajectories drawn (the authors' examples for the cars)."""
    if isinstance(problem, ReedsSheppCar):
        return [torch.tensor([3.5, 2.0, math.pi / 2]), torch.tensor([-2.0, -3.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])]
    if isinstance(problem, TwoCarGame):
        return [torch.tensor([0.0, 0.5, 0.0, 0.0, -1.0, math.pi / 2])]
    if isinstance(problem, TimeDependentLQR):
        return []
    lo, hi = problem.extent()
    base = problem.slice_base().reshape(-1)
    starts = []
    for a, b in [(0.55, 0.2), (-0.3, 0.6), (-0.7, -0.45), (0.15, -0.8)]:
        s = base.clone()
        s[problem.plot_axes[0]], s[problem.plot_axes[1]] = a * hi, b * hi
        if bool(problem.inside(s.reshape(1, -1))[0]):
            starts.append(s)
    return starts


@torch.no_grad()
def plot_solution(problem: Problem, net: nn.Module, path: str | Path, n: int = 161, title: str = "",
                  trajectories: bool = True) -> Path:
    """Save a figure: level sets of u_θ (with feedback trajectories) and, when the exact solution is known,
    the error map on the same slice. Returns the path."""
    plt = _pyplot()
    net = net.to("cpu")
    pts, ext = problem.plot_slice(n)
    mask = problem.inside(pts)
    u = net(pts)
    u[~mask] = float("nan")
    game = isinstance(problem, TwoCarGame)
    panels = 2 if (problem.has_exact or game) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), squeeze=False)
    ax = axes[0, 0]
    img = u.reshape(n, n).numpy()
    cs = ax.contourf(img, levels=20, extent=ext, origin="lower", cmap="viridis")
    ax.contour(img, levels=10, extent=ext, origin="lower", colors="k", linewidths=0.4)
    fig.colorbar(cs, ax=ax, shrink=0.85)
    ax.set_title("level sets of $u_\\theta$" + (" (slice)" if problem.in_dim > 2 else ""))
    ax.set_xlabel(problem.plot_labels[0])
    ax.set_ylabel(problem.plot_labels[1])
    ax.set_aspect("equal")
    if trajectories:
        for s in default_starts(problem):
            tr = trajectory(net, problem, s)
            a, b = problem.plot_axes
            if "path" in tr:
                p = tr["path"].numpy()
                ax.plot(p[:, a], p[:, b], "r-", lw=1.2)
                ax.plot(p[0, a], p[0, b], "ro", ms=3)
            else:  # the game: both cars in absolute coordinates, on their own panel
                axg = axes[0, 1]
                for key, col in (("pursuer", "r"), ("evader", "b")):
                    p = tr[key].numpy()
                    axg.plot(p[:, 0], p[:, 1], col + "-", lw=1.2, label=key)
                    axg.plot(p[0, 0], p[0, 1], col + "o", ms=3)
                end = "captured" if tr["captured"] else "not captured"
                axg.set_title(f"feedback play: {end} after {tr['time']:.2f} (u = {tr['value']:.2f})", fontsize=9)
                axg.set_aspect("equal")
                axg.legend(fontsize=7)
    if problem.has_exact:
        err = (u.double() - problem.exact(pts.double())).abs()
        err[~mask] = float("nan")
        ax2 = axes[0, 1]
        im = ax2.imshow(err.reshape(n, n).numpy(), extent=ext, origin="lower", cmap="magma")
        fig.colorbar(im, ax=ax2, shrink=0.85)
        ax2.set_title("$|u - u_\\theta|$")
        ax2.set_xlabel(problem.plot_labels[0])
        ax2.set_aspect("equal")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110, rect=(0, 0, 1, 0.94) if title else None)


def plot_settings_mse(rows: list[dict], zero: dict[tuple[str, int], float], path: str | Path, title: str = "") -> Path:
    """A grouped bar chart of MSE (log scale) per (problem, dim) group, one bar per setting, each group's
    u ≡ 0 MSE (``zero``) drawn as a dashed line across it: an MSE means something only well below that line.
    ``rows``: CSV rows of :mod:`orthojac.experiments.hj_reproduce` with a ``label`` key (the bar's legend
    entry); rows without an MSE are skipped."""
    plt = _pyplot()
    rows = [r for r in rows if r.get("mse") not in ("", None, "nan")]
    groups = sorted({(r["problem"], int(r["dim"])) for r in rows}, key=lambda k: (k[1], k[0]))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(3.2 + 1.5 * len(groups), 4.2))
    colors = plt.get_cmap("tab10")
    for j, lab in enumerate(labels):
        xs, ys = [], []
        for i, key in enumerate(groups):
            v = [float(r["mse"]) for r in rows if r["label"] == lab and (r["problem"], int(r["dim"])) == key]
            if v:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(v[0])
        ax.bar(xs, ys, width, label=lab, color=colors(j % 10))
    for i, key in enumerate(groups):
        if key in zero:
            ax.hlines(zero[key], i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1.2,
                      label="u ≡ 0" if i == 0 else None)
    ax.set_xticks(range(len(groups)), [f"{p.removeprefix('eikonal_')}\nd = {d}" for p, d in groups])
    ax.set_yscale("log")
    ax.set_ylabel("test MSE")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path, dpi=110)
