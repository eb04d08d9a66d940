"""The base class of every layer that states a Jacobian claim.

:class:`ClaimedModule` adds two things to ``nn.Module``:

* the ``jacobian_claim`` property (see :mod:`orthojac.claims`), which subclasses must define;
* **precision-aware casting.** An orthogonal weight created in float32 is orthogonal only to float32
  precision (‖WWᵀ − I‖ ≈ 1e-7); after ``.double()`` that error would be carried into float64 arithmetic
  and compound over depth (≈ 5e-7 for 200 layers). So when a cast raises a constrained weight's
  precision, a weight that was orthogonal *to the precision of its old dtype* is re-projected onto the
  manifold at the new precision by the polar factor W ← UVᵀ (W = UΣVᵀ), the nearest matrix with
  orthonormal rows (columns). Weights that have drifted off the manifold in training (``"init"`` policy,
  error far above rounding) are left exactly as they are: a cast never changes a trained model's function
  beyond rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import claims
from .orthogonal import orthogonality_error

__all__ = ["ClaimedModule", "polar_"]


def _on_manifold(w: torch.Tensor) -> bool:
    """Is ‖WWᵀ − I‖_F within rounding of w's dtype (50·eps·n)?"""
    n = min(w.shape[-2:])
    return bool(orthogonality_error(w.detach().double()).max() <= 50 * torch.finfo(w.dtype).eps * n)


@torch.no_grad()
def polar_(module: nn.Module, name: str) -> None:
    """Replace ``module.<name>`` by its polar factor UVᵀ, computed in float64 (through ``right_inverse``
    when the weight is parametrised)."""
    w = getattr(module, name)
    u, _, vh = torch.linalg.svd(w.detach().double(), full_matrices=False)
    q = (u @ vh).to(w.dtype)
    if parametrize.is_parametrized(module, name):
        setattr(module, name, q)
    else:
        w.copy_(q)


class ClaimedModule(nn.Module):
    """Base class: a layer with a ``jacobian_claim`` and precision-aware casting of its orthogonal weights
    (the names in ``orthogonal_weight_names``)."""

    orthogonal_weight_names: tuple[str, ...] = ()

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, fn, recurse: bool = True):
        before = {}
        for name in self.orthogonal_weight_names:
            w = getattr(self, name)
            if w.is_floating_point():
                before[name] = (torch.finfo(w.dtype).eps, _on_manifold(w))
        out = super()._apply(fn, recurse)
        for name, (old_eps, was_orthogonal) in before.items():
            w = getattr(self, name)
            if was_orthogonal and w.is_floating_point() and torch.finfo(w.dtype).eps < old_eps:
                polar_(self, name)
        return out
