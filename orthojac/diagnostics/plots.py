"""Pictures of a Jacobian spectrum and of gradient flow (matplotlib, Agg backend, imported lazily).

* :func:`plot_spectrum`: histogram of log₁₀ σ (left) and the empirical CDF of σ on a log axis (right), all
  samples pooled, with σ_min, σ_max and the condition number κ = σ_max/σ_min in the title; exact zeros are
  counted in the legend (a log axis cannot show them).
* :func:`plot_gradient_norms`: ‖∂L/∂x_ℓ‖ versus block index ℓ (log scale when the values span more than a
  decade), with the per-block parameter-gradient norms ‖∂L/∂θ_ℓ‖ on the same axes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .gradients import GradientNorms
from .spectrum import SpectrumResult

__all__ = ["plot_spectrum", "plot_gradient_norms", "pyplot", "save_figure"]


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend, imported on first use (every figure of the
    package — diagnostics, experiments, hj — goes through here and :func:`save_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (``tight_layout``, within ``rect`` if given), write ``path`` (creating its folder), close the
    figure; returns the path."""
    fig.tight_layout(**({"rect": rect} if rect else {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def plot_spectrum(result: SpectrumResult, path: str | Path, title: str = "") -> Path:
    """Histogram and ECDF of the singular values in ``result`` (all samples pooled) saved to ``path``."""
    plt = pyplot()
    s = result.singular_values.detach().double().cpu().reshape(-1)
    zeros = int((s <= 0).sum())
    pos = s[s > 0]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(pos):
        logs = pos.log10()
        span = (logs.max() - logs.min()).item()
        bins = 40 if span > 1e-9 else 1
        lo, hi = (logs.min().item(), logs.max().item()) if span > 1e-9 else (logs.min().item() - 0.5,
                                                                                 logs.max().item() + 0.5)
        a1.hist(logs.numpy(), bins=bins, range=(lo, hi), color="tab:blue", alpha=0.8)
        xs = pos.sort().values
        ecdf = torch.arange(1, len(xs) + 1, dtype=torch.float64) / len(s) + zeros / len(s)
        a2.step(xs.numpy(), ecdf.numpy(), where="post", color="tab:blue")
        if span > 1e-9:
            a2.set_xscale("log")
        a2.axvline(1.0, color="grey", ls=":", lw=1, label="σ = 1 (isometry)")
    a1.set(xlabel="log₁₀ σ (singular value)", ylabel="count", title="histogram")
    a2.set(xlabel="singular value σ", ylabel="fraction ≤ σ", title="empirical CDF", ylim=(0, 1.02))
    if zeros:
        a2.plot([], [], " ", label=f"{zeros} exact zeros (off the log axis)")
    a2.legend(loc="upper left", fontsize=8)
    kappa = result.condition_number().max().item()
    what = "" if result.complete else f" (k = {result.k} largest and smallest, {result.method})"
    fig.suptitle(f"{title + ': ' if title else ''}σ_min = {s.min().item():.3g}, σ_max = {s.max().item():.3g}, "
                 f"κ = {kappa:.3g}{what}; {result.singular_values.shape[0]} samples, "
                 f"J is {result.out_dim}×{result.in_dim}", fontsize=10)
    return save_figure(fig, path)


def plot_gradient_norms(g: GradientNorms, path: str | Path, title: str = "") -> Path:
    """‖∂L/∂x_ℓ‖ (ℓ = 0 … L) and ‖∂L/∂θ_ℓ‖ (ℓ = 1 … L) versus block index, saved to ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    act = [float(v) for v in g.activation]
    par = [float(v) for v in g.parameter]
    ax.plot(range(len(act)), act, "o-", ms=3, label="‖∂L/∂x_ℓ‖ activations (mean over batch)")
    if any(p > 0 for p in par):
        ax.plot(range(1, len(par) + 1), par, "s--", ms=3, label="‖∂L/∂θ_ℓ‖ parameters of block ℓ")
    vals = [v for v in act + par if v > 0 and math.isfinite(v)]
    if vals and max(vals) / min(vals) > 10:
        ax.set_yscale("log")
    ax.set(xlabel="block index ℓ (0 = input of the first block)", ylabel="gradient norm",
           title=f"{title + ': ' if title else ''}first/last ratio ‖∂L/∂x₀‖/‖∂L/∂x_L‖ = {g.ratio:.3g}")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
