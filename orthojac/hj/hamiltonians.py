r"""Hamiltonians ``H(x, p)`` of the test problems of arXiv 2406.10758 (Esteve-Yagüe, Tsai, Massucco), Sec. 1.

Every stationary problem has the form ``H(x, ∇u(x)) + β u(x) = f(x)`` in Ω with ``u = g`` on ∂Ω; the
time-dependent one ``u_t + H(x, ∇_x u) = f``. The Hamiltonian here is only the gradient part ``H(x, p)``;
``f`` and ``β`` belong to the problem (:mod:`orthojac.hj.problems`).

The Lax–Friedrichs scheme (:mod:`orthojac.hj.schemes`) is monotone iff its viscosity α dominates the
partial derivatives of H in p on the range of gradients met (notes §2.2):

    α ≥ L := sup_{x, p} max_i |∂H/∂p_i (x, p)|.

:meth:`Hamiltonian.p_derivatives` returns ``|∂H/∂p_i|`` at given (x, p) by automatic differentiation, so
the check in :func:`orthojac.hj.schemes.check_monotonicity` works for any Hamiltonian written here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["Hamiltonian", "QuadraticEikonal", "NormEikonal", "ReedsShepp", "PursuitEvasion"]

Field = Callable[[torch.Tensor], torch.Tensor]


class Hamiltonian:
    """``H(x, p)``: x of shape (B, n_in) (all input coordinates, time included), p of shape (B, k) (the
    gradient in the k stencil coordinates). Subclasses implement :meth:`__call__`."""

    name = "hamiltonian"

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def p_derivatives(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``|∂H/∂p_i(x, p)|`` of shape (B, k), by autograd (H acts row by row, so the gradient of the sum
        is the per-row gradient). At a kink of H (|p| = 0 for |p|, a sign change for the car problems) this
        is one of the one-sided derivatives."""
        with torch.enable_grad():
            q = p.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x.detach(), q).sum(), q)
        return grad.abs()

    def speeds(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``|∂H/∂p_i(x, p)|`` of shape (B, k), differentiable in p (the local Lax–Friedrichs viscosity of
        :func:`orthojac.hj.schemes.lax_friedrichs`): autograd with ``create_graph`` here, in closed form in
        the eikonal subclasses."""
        if not (torch.is_grad_enabled() and p.requires_grad):
            return self.p_derivatives(x, p)
        (grad,) = torch.autograd.grad(self(x, p).sum(), p, create_graph=True)
        return grad.abs()


def _coefficient(c: float | Field, x: torch.Tensor, column: bool = False) -> float | torch.Tensor:
    """c(x) for a callable c, else c; ``column``: a tensor as (B, 1), to scale per-coordinate speeds (B, k)."""
    v = c(x) if callable(c) else c
    return v.unsqueeze(-1) if column and isinstance(v, torch.Tensor) else v


class QuadraticEikonal(Hamiltonian):
    r"""``H(x, p) = c(x)·|p|²`` (the authors' ``Eikonal_sq_LF_multiD``); with f = 1 it is the eikonal
    equation ``|∇u|² = 1``. ``|∂H/∂p_i| = 2c|p_i|``, so for |∇u| = 1 monotonicity needs α ≥ 2·max c."""

    name = "quadratic_eikonal"

    def __init__(self, c: float | Field = 1.0) -> None:
        self.c = c

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return _coefficient(self.c, x) * (p * p).sum(-1)

    def speeds(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return 2 * _coefficient(self.c, x, column=True) * p.abs()


class NormEikonal(Hamiltonian):
    r"""``H(x, p) = c(x)·|p|``; ``|∂H/∂p_i| = c|p_i|/|p| ≤ c``."""

    name = "norm_eikonal"

    def __init__(self, c: float | Field = 1.0) -> None:
        self.c = c

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return _coefficient(self.c, x) * torch.sqrt((p * p).sum(-1) + 1e-30)

    def speeds(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return _coefficient(self.c, x, column=True) * p.abs() / torch.sqrt((p * p).sum(-1, keepdim=True) + 1e-30)


class ReedsShepp(Hamiltonian):
    r"""Reeds–Shepp car, minimum time to a target (notes P7), state (x, y, θ):

        H(x, p) = |cos θ·p_x + sin θ·p_y| + |p_θ|/ρ,     H = 1 in Ω.

    Controls: speed s ∈ {−1, +1} (forward/backward), turning rate |θ̇| ≤ 1/ρ. ``|∂H/∂p_{x,y}| ≤ 1`` and
    ``|∂H/∂p_θ| = 1/ρ``."""

    name = "reeds_shepp"

    def __init__(self, rho: float = 1.0) -> None:
        if rho <= 0:
            raise ValueError(f"ReedsShepp: turning radius rho must be > 0, got {rho}")
        self.rho = rho

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        th = x[:, 2]
        return (torch.cos(th) * p[:, 0] + torch.sin(th) * p[:, 1]).abs() + p[:, 2].abs() / self.rho


class PursuitEvasion(Hamiltonian):
    r"""Two Reeds–Shepp cars, pursuer P and evader E (notes P8); state (z_x, z_y, θ_P, θ_E) with z the
    evader's position relative to the pursuer. The Hamilton–Jacobi–Isaacs Hamiltonian of the capture time:

        H = σ_P|cos θ_P p_x + sin θ_P p_y| + |p_{θP}|/ρ_P − σ_E|cos θ_E p_x + sin θ_E p_y| − |p_{θE}|/ρ_E,

    and H = 1 in Ω. Defaults ρ = (0.8, 1.0), σ = (1.0, 0.8) are the authors'."""

    name = "pursuit_evasion"

    def __init__(self, rho: tuple[float, float] = (0.8, 1.0), sigma: tuple[float, float] = (1.0, 0.8)) -> None:
        if min(rho) <= 0 or min(sigma) <= 0:
            raise ValueError(f"PursuitEvasion: rho and sigma must be > 0, got rho={rho}, sigma={sigma}")
        self.rho, self.sigma = tuple(rho), tuple(sigma)

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        tp, te = x[:, 2], x[:, 3]
        vp = (torch.cos(tp) * p[:, 0] + torch.sin(tp) * p[:, 1]).abs()
        ve = (torch.cos(te) * p[:, 0] + torch.sin(te) * p[:, 1]).abs()
        return (self.sigma[0] * vp + p[:, 2].abs() / self.rho[0]
                - self.sigma[1] * ve - p[:, 3].abs() / self.rho[1])
