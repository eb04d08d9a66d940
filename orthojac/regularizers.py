"""Penalties added to a training loss.

* :func:`orthogonality` — α·Σ_W ‖WWᵀ − I‖²_F over every constrained weight (WᵀW for tall W): the soft
  constraint of arXiv 2508.02882 (notes §0b "Recipe", §5), usable with the ``"init"`` policy (it pulls
  weights back to the manifold) and harmless under ``"exact"`` (it is then ≈ 0). A module that is an operator
  rather than a matrix (:class:`orthojac.nn.OrthogonalConv2d`) contributes its ``orthogonality_defect()``,
  ‖𝓑𝓑ᵀ − I‖²_F/(HW), which for a 1×1 (delta) kernel Q is ‖QQᵀ − I‖²_F.
"""

from __future__ import annotations

import torch
from torch import nn

from .nn.orthogonal import constrained_weights, orthogonality_error

__all__ = ["orthogonality"]


def orthogonality(model: nn.Module) -> torch.Tensor:
    """Σ over constrained weights W of ‖WWᵀ − I‖²_F, plus each module's ``orthogonality_defect()`` (a scalar
    tensor; zero if there are none)."""
    total: torch.Tensor | None = None
    for _, w in constrained_weights(model):
        e = orthogonality_error(w).pow(2).sum()
        total = e if total is None else total + e
    for m in model.modules():  # operators that measure their own defect (conv: ‖𝓑𝓑ᵀ − I‖²_F / HW)
        defect = getattr(m, "orthogonality_defect", None)
        if callable(defect):
            e = defect()
            total = e if total is None else total + e
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return total
