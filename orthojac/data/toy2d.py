"""The three 2-D data sets of Haber & Ruthotto §6.1–6.3, exactly as in the notes (§9): concentric ellipses,
swiss roll, peaks. Each returns ``(x_train, y_train, x_val, y_val)`` with x of shape (s, 2) (float64) and
integer labels of shape (s,). Seeds decide every random choice.

* :func:`make_ellipses` — 600 points per class; inner class 1: r ~ U[0, 1], θ ~ U[0, 2π],
  x = (r cos θ, 0.4 r sin θ); outer class 0: r ~ 1 + U[0, 1], same θ and squash (NumDL ``setupEllipses``).
  A random split into 1000 training and 200 validation points.
* :func:`make_swiss_roll` — f1(r, θ) = r(cos θ, sin θ), f2 = (r + 0.2)(cos θ, sin θ) with θ_k = 4πk/512,
  r_k = k/512, k = 0 … 512 (Meganet ``setupSwissRoll(256)``); class 0 = f1, class 1 = f2, concatenated;
  1-based odd indices train (513 points), even indices validate (513). Deterministic: no seed.
* :func:`make_peaks` — MATLAB ``peaks`` on a 256×256 grid over [−3, 3]², five classes from equal-width value
  bins (the minimum grid point stays in class 0), the same number of points per class drawn uniformly with
  replacement from each class's grid points (1000 each, s = 5000), then 20% random validation.
"""

from __future__ import annotations

import math

import torch

__all__ = ["make_ellipses", "make_swiss_roll", "make_peaks", "peaks", "TOY2D", "make_toy2d"]

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _split(x: torch.Tensor, y: torch.Tensor, n_val: int, g: torch.Generator) -> Split:
    perm = torch.randperm(len(y), generator=g)
    v, t = perm[:n_val], perm[n_val:]
    return x[t], y[t], x[v], y[v]


def make_ellipses(per_class: int = 600, n_val: int = 200, seed: int = 0) -> Split:
    """Concentric ellipses (Haber & Ruthotto §6.1): see the module docstring. Label 1 = inner ellipse."""
    if per_class < 1 or not 0 <= n_val < 2 * per_class:
        raise ValueError(f"need per_class ≥ 1 and 0 ≤ n_val < 2·per_class, got {per_class}, {n_val}")
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for label, r0 in ((1, 0.0), (0, 1.0)):
        r = r0 + torch.rand(per_class, generator=g, dtype=torch.float64)
        th = 2 * math.pi * torch.rand(per_class, generator=g, dtype=torch.float64)
        xs.append(torch.stack([r * torch.cos(th), 0.4 * r * torch.sin(th)], 1))
        ys.append(torch.full((per_class,), label))
    return _split(torch.cat(xs), torch.cat(ys), n_val, g)


def make_swiss_roll(n: int = 512) -> Split:
    """Swiss roll (Haber & Ruthotto §6.2, Meganet ``setupSwissRoll``): n + 1 samples per curve (default 513),
    every other point to validation (1-based odd indices train). Deterministic."""
    if n < 2:
        raise ValueError(f"n must be ≥ 2, got {n}")
    k = torch.arange(n + 1, dtype=torch.float64)
    th, r = 4 * math.pi * k / n, k / n
    f1 = torch.stack([r * torch.cos(th), r * torch.sin(th)], 1)
    f2 = torch.stack([(r + 0.2) * torch.cos(th), (r + 0.2) * torch.sin(th)], 1)
    x = torch.cat([f1, f2])
    y = torch.cat([torch.zeros(n + 1, dtype=torch.long), torch.ones(n + 1, dtype=torch.long)])
    train = torch.arange(0, len(y), 2)  # 1-based 1, 3, 5, …
    val = torch.arange(1, len(y), 2)
    return x[train], y[train], x[val], y[val]


def peaks(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MATLAB ``peaks``: 3(1−x)² e^{−x²−(y+1)²} − 10(x/5 − x³ − y⁵) e^{−x²−y²} − ⅓ e^{−(x+1)²−y²}."""
    return (3 * (1 - x) ** 2 * torch.exp(-x ** 2 - (y + 1) ** 2)
            - 10 * (x / 5 - x ** 3 - y ** 5) * torch.exp(-x ** 2 - y ** 2)
            - torch.exp(-(x + 1) ** 2 - y ** 2) / 3)


def make_peaks(per_class: int = 1000, classes: int = 5, grid: int = 256, val_fraction: float = 0.2,
               seed: int = 0) -> Split:
    """Peaks (Haber & Ruthotto §6.3, Meganet ``setupPeaks``): see the module docstring."""
    if per_class < 1 or classes < 2 or grid < 2 or not 0 <= val_fraction < 1:
        raise ValueError("make_peaks needs per_class ≥ 1, classes ≥ 2, grid ≥ 2, 0 ≤ val_fraction < 1")
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-3, 3, grid, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="xy")
    z = peaks(xx, yy).reshape(-1)
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    lo, hc = z.min(), (z.max() - z.min()) / classes
    label = torch.zeros_like(z, dtype=torch.long)
    for i in range(1, classes + 1):
        label[(z > lo + (i - 1) * hc) & (z <= lo + i * hc)] = i - 1
    xs, ys = [], []
    for c in range(classes):
        idx = torch.nonzero(label == c).reshape(-1)
        pick = idx[torch.randint(len(idx), (per_class,), generator=g)]
        xs.append(pts[pick])
        ys.append(torch.full((per_class,), c))
    n_val = round(val_fraction * classes * per_class)
    return _split(torch.cat(xs), torch.cat(ys), n_val, g)


TOY2D = {"ellipses": make_ellipses, "swiss_roll": make_swiss_roll, "peaks": make_peaks}


def make_toy2d(name: str, seed: int = 0) -> Split:
    """One of :data:`TOY2D` by name, with the paper's sizes (the swiss roll is deterministic)."""
    if name not in TOY2D:
        raise ValueError(f"unknown 2-D data set {name!r}; choose one of {', '.join(TOY2D)}")
    return make_swiss_roll() if name == "swiss_roll" else TOY2D[name](seed=seed)
