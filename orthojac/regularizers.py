"""Penalties added to a training loss.

* :func:`orthogonality` — α·Σ_W ‖WWᵀ − I‖²_F over every constrained weight (WᵀW for tall W): the soft
  constraint of arXiv 2508.02882 (notes §0b "Recipe", §5), usable with the ``"init"`` policy (it pulls
  weights back to the manifold) and harmless under ``"exact"`` (it is then ≈ 0).
"""

from __future__ import annotations

import torch
from torch import nn

from .nn.orthogonal import constrained_weights, orthogonality_error

__all__ = ["orthogonality"]


def orthogonality(model: nn.Module) -> torch.Tensor:
    """Σ over constrained weights W of ‖WWᵀ − I‖²_F (a scalar tensor; zero if there are none)."""
    total: torch.Tensor | None = None
    for _, w in constrained_weights(model):
        e = orthogonality_error(w).pow(2).sum()
        total = e if total is None else total + e
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return total
