"""Generated classification data that needs no download."""

from __future__ import annotations

import math

import torch

__all__ = ["make_spirals"]


def make_spirals(n: int, classes: int = 3, noise: float = 0.15, turns: float = 1.5, dim: int = 2,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``classes`` interleaved spiral arms in the plane: arm c is r ↦ r·(cos θ, sin θ) with
    θ = 2π(turns·r + c/classes), r ~ U(0, 1), plus Gaussian noise of std ``noise``. With ``dim`` > 2 the
    points are embedded by a fixed random rotation of ℝ^dim (the extra coordinates are zero before
    rotation). Returns (x of shape (n, dim), labels of shape (n,))."""
    if classes < 2 or n < classes:
        raise ValueError(f"make_spirals needs classes ≥ 2 and n ≥ classes, got n={n}, classes={classes}")
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    r = torch.rand(n, generator=g)
    theta = 2 * math.pi * (turns * r + y / classes)
    x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], 1) + noise * torch.randn(n, 2, generator=g)
    if dim > 2:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
        x = torch.cat([x, torch.zeros(n, dim - 2)], 1) @ q.T
    perm = torch.randperm(n, generator=g)
    return x[perm].float(), y[perm]
