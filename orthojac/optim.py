"""Optimiser helpers for weights kept exactly orthogonal by the ``"riemannian"`` map.

With ``orthogonal="exact"`` (map ``"riemannian"``) nothing is needed here: every ``torch.optim`` optimiser's
step is followed by a batched retraction (see :mod:`orthojac.nn.orthogonal`). :func:`orthogonal` only
changes the schedule for the weights one optimiser updates — e.g. ``orthogonal(opt, every=4)`` amortises
the retraction over four steps at the price of exactness in between — and returns the optimiser.
"""

from __future__ import annotations

import torch

from .nn.orthogonal import RETRACTIONS, _tag, configure_retraction

__all__ = ["orthogonal", "RETRACTIONS"]


def orthogonal(optimizer: torch.optim.Optimizer, every: int = 1, method: str = "polar",
               tol: float | None = None) -> torch.optim.Optimizer:
    """Set the retraction schedule (``every``, ``method``, ``tol``: see
    :func:`orthojac.nn.orthogonal.configure_retraction`) of the manifold weights in ``optimizer``'s
    parameter groups; returns ``optimizer``. Parameters that are not manifold weights are untouched."""
    configure_retraction(torch.nn.Module(), every, method, tol)  # validates the arguments
    cfg = {"every": every, "method": method, "tol": tol}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if getattr(p, "_oj_manifold", False):
                _tag(p, cfg)
    return optimizer
