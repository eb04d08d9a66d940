"""Penalties added to a training loss.

* :func:`orthogonality` — α·Σ_W ‖WWᵀ − I‖²_F over every constrained weight (WᵀW for tall W): the soft
  constraint of arXiv 2508.02882 (notes §0b "Recipe", §5), usable with the ``"init"`` policy (it pulls
  weights back to the manifold) and harmless under ``"exact"`` (it is then ≈ 0). A module that is an operator
  rather than a matrix (:class:`orthojac.nn.OrthogonalConv2d`) contributes its ``orthogonality_defect()``,
  ‖𝓑𝓑ᵀ − I‖²_F/(HW), which for a 1×1 (delta) kernel Q is ‖QQᵀ − I‖²_F.
* :func:`time_smoothness` — Haber & Ruthotto Eq. 5.23: (1/(2h)) Σ_j ‖θ_j − θ_{j−1}‖² over the time-series
  weights θ = (K, b) of every stable network (:mod:`orthojac.nn.stable`).
* :func:`spatial_smoothness` — Haber & Ruthotto Eq. 5.25: ½ Σ_k ‖L w_k‖² for classifier weights whose columns
  are images, L a discrete Laplacian or gradient on the image grid (:func:`grid_operator`).
"""

from __future__ import annotations

import torch
from torch import nn

from .nn.orthogonal import constrained_weights, orthogonality_error

__all__ = ["orthogonality", "time_smoothness", "spatial_smoothness", "grid_operator", "time_laplacian"]


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


def time_smoothness(model: nn.Module) -> torch.Tensor:
    """Σ over every :class:`~orthojac.nn.stable.StableDynamics` in ``model`` of

        R(θ) = 1/(2h) Σ_{j=1}^{N−1} ‖θ_j − θ_{j−1}‖²_F,   θ_j = (K_j, b_j)   (Haber & Ruthotto Eq. 5.23, notes §6.1)

    a discretisation of ½∫‖∂_t θ‖² dt. It uses each network's current h = T/N, so after prolongation to 2N
    layers (h halved) the weight is rescaled exactly as Meganet's ``tikhonovReg(opTimeDer, h·α)``: a smooth
    time series has the same R at every level. Multiply by α yourself."""
    from .nn.stable import StableDynamics

    total: torch.Tensor | None = None
    for m in model.modules():
        if isinstance(m, StableDynamics):
            for _, p in m.time_parameters():
                r = (p[1:] - p[:-1]).pow(2).sum() / (2 * m.h)
                total = r if total is None else total + r
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return total


def time_laplacian(n: int, h: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The N×N matrix DᵀD/h of the time-smoothness regulariser (D the forward difference, Neumann ends):
    ∇²R = time_laplacian ⊗ I, so R(θ) = ½ θᵀ (DᵀD/h) θ per weight entry. Used as the GN-CG preconditioner."""
    d = torch.zeros(max(n - 1, 0), n, dtype=dtype)
    idx = torch.arange(n - 1)
    d[idx, idx], d[idx, idx + 1] = -1.0, 1.0
    return d.T @ d / h


def grid_operator(height: int, width: int, kind: str = "laplacian", spacing: float = 1.0,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A discrete differential operator on a height×width image grid (row-major pixels), as a dense matrix:

    * ``"laplacian"``: L = D2(height) ⊗ I_w + I_h ⊗ D2(width) with D2 = tridiag(1, −2, 1)/spacing²
      (NumDL-MATLAB ``getLaplacian``; homogeneous Dirichlet ends), shape (HW, HW);
    * ``"gradient"``: the stacked forward differences [D_x; D_y]/spacing, shape ((H(W−1) + (H−1)W), HW).
    """
    if height < 2 or width < 2:
        raise ValueError(f"grid_operator needs a grid of at least 2×2, got {height}×{width}")

    def d1(n: int) -> torch.Tensor:
        d = torch.zeros(n - 1, n, dtype=dtype)
        i = torch.arange(n - 1)
        d[i, i], d[i, i + 1] = -1.0, 1.0
        return d / spacing

    def d2(n: int) -> torch.Tensor:
        return (torch.diag(torch.full((n - 1,), 1.0, dtype=dtype), -1) + torch.diag(torch.full((n,), -2.0, dtype=dtype))
                + torch.diag(torch.full((n - 1,), 1.0, dtype=dtype), 1)) / spacing ** 2

    eye_h, eye_w = torch.eye(height, dtype=dtype), torch.eye(width, dtype=dtype)
    if kind == "laplacian":  # pixel index p = r·width + c
        return torch.kron(d2(height), eye_w) + torch.kron(eye_h, d2(width))
    if kind == "gradient":
        return torch.cat([torch.kron(eye_h, d1(width)), torch.kron(d1(height), eye_w)], dim=0)
    raise ValueError(f"kind must be 'laplacian' or 'gradient', got {kind!r}")


def spatial_smoothness(weight: torch.Tensor, operator: torch.Tensor, channels: int = 1) -> torch.Tensor:
    """R(W) = ½ Σ_k ‖L w_k‖² (Haber & Ruthotto Eq. 5.25, notes §6.2) for a classifier weight of shape
    (classes, channels·HW) (``nn.Linear`` layout: row k is the image w_k, channel-major) and L of shape (·, HW)
    from :func:`grid_operator`, applied to each channel of each w_k."""
    hw = operator.shape[1]
    if weight.ndim != 2 or weight.shape[1] != channels * hw:
        raise ValueError(f"weight must have shape (classes, {channels}·{hw}), got {tuple(weight.shape)}")
    w = weight.reshape(weight.shape[0] * channels, hw)
    return 0.5 * (w @ operator.to(w).T).pow(2).sum()
