r"""The Lax–Friedrichs (LxF) finite-difference residual evaluated off-grid, and its monotonicity check
(arXiv 2406.10758, Sec. 2; notes §2.2).

For a stencil step δ_i in coordinate i and unit vectors e_i, at any point x (not a grid node):

    D_i^c u(x) = (u(x + δ_i e_i) − u(x − δ_i e_i)) / (2δ_i)            central difference
    A_i u(x)   = (u(x + δ_i e_i) + u(x − δ_i e_i) − 2u(x)) / (2δ_i)     = (δ_i/2)·D_i² u, LxF diffusion
    Ĥ_δ[u](x)  = H(x, D^c u(x)) − α Σ_i A_i u(x)

which is the textbook LxF numerical Hamiltonian ``H((p⁺ + p⁻)/2) − (α/2)Σ_i(p_i⁺ − p_i⁻)`` of the one-sided
differences ``p_i^± = ±(u(x ± δ_i e_i) − u(x))/δ_i``.

``scheme="llf"`` (local Lax–Friedrichs, Shu & Osher 1988; not in the paper, an orthojac option) replaces the
one viscosity α by one per point and coordinate,

    a_i(x) = min(α, max(|∂H/∂p_i(x, p⁺)|, |∂H/∂p_i(x, p⁻)|)),      Ĥ_δ[u](x) = H(x, D^c u) − Σ_i a_i A_i u,

the local speed in direction i capped by the round's α (so it is never more diffusive than LxF; with the
coefficients a_i frozen, the monotonicity condition below holds coordinate by coordinate wherever α is at
least the local speed, which is the same check as for LxF). The global α
must dominate the largest |∂H/∂p_i| anywhere, and LxF adds that much diffusion in *every* one of the d
directions; for |∇u|² = 1 the speed 2|p_i| is about 2/√d in most directions (the ball) or 0 in all but one
(the cube's faces), so in high dimension LLF's numerical diffusion is a fraction of LxF's: at δ = 0.7,
α = 2.5 the exact d = 50 annulus solution has mean R² 126 under LxF and 3.4 under LLF (2000 radial points).
The speeds are differentiated through (the loss is the residual of the scheme as written).

The scheme residual of a stationary problem is

    R_δ[u](x) = Ĥ_δ[u](x) + β u(x) − f(x),

and of a time-dependent one (time in column ``time_dim``, explicit Euler)

    R_δ[u](t, x) = (u(t + δ_t, x) − u(t, x))/δ_t + Ĥ_δ[u](t, x) + β u − f.

Monotonicity. R is non-increasing in each neighbour value u(x ± δ_i e_i) iff
``∂R/∂u(x ± δe_i) = (±∂H/∂p_i − α)/(2δ_i) ≤ 0``, i.e. ``α ≥ |∂H/∂p_i|`` on the gradients met, and
non-decreasing in u(x) (``α Σ 1/δ_i + β ≥ 0``, always). Monotone + consistent + stable gives convergence to
the viscosity solution as δ → 0 (Barles–Souganidis), and makes the linearised least-squares residual
non-degenerate, so critical points of the loss solve the scheme (the paper's Sec. 3). The authors' schedules
anneal α below the bound in late rounds (e.g. α = 0.5 for |∇u|² = 1 where the bound is 2); that is a
deliberate trade (less numerical diffusion) which :func:`check_monotonicity` reports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch

from .hamiltonians import Hamiltonian

__all__ = ["SCHEMES", "MonotonicityWarning", "stencil_values", "lax_friedrichs", "fd_residual",
           "check_monotonicity"]

TWO_PI = 2.0 * math.pi
SCHEMES = ("lxf", "llf")  # global and local Lax–Friedrichs viscosity (module docstring)


class MonotonicityWarning(UserWarning):
    """α is below the Lipschitz bound of H in p on the sampled range: the scheme is not monotone there."""


def _as_deltas(delta: float | Sequence[float] | torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
    d = torch.as_tensor(delta, dtype=like.dtype, device=like.device).reshape(-1)
    if d.numel() == 1:
        d = d.expand(k)
    if d.numel() != k:
        raise ValueError(f"delta has {d.numel()} entries but there are {k} stencil coordinates")
    if (d <= 0).any():
        raise ValueError(f"delta must be > 0, got {d.tolist()}")
    return d


def stencil_values(u: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, delta: torch.Tensor,
                   dims: Sequence[int], periodic: Sequence[int] = (), time_dim: int | None = None,
                   delta_t: float | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """u(x), u(x + δ_i e_i), u(x − δ_i e_i) for i in ``dims`` (and u(x + δ_t e_t) when ``time_dim`` is set),
    from ONE forward pass over the (B·(2k + 1 [+1]), n_in) stacked stencil. Coordinates in ``periodic`` are
    wrapped into [0, 2π). Returns (u0 (B,), up (B, k), dn (B, k), ut (B,) or None)."""
    b, n = x.shape
    k = len(dims)
    shift = torch.zeros(k, n, dtype=x.dtype, device=x.device)
    shift[torch.arange(k, device=x.device), torch.as_tensor(list(dims), device=x.device)] = delta
    pts = [x.unsqueeze(1), x.unsqueeze(1) + shift, x.unsqueeze(1) - shift]
    if time_dim is not None:
        e_t = torch.zeros(1, 1, n, dtype=x.dtype, device=x.device)
        e_t[..., time_dim] = float(delta_t)
        pts.append(x.unsqueeze(1) + e_t)
    stacked = torch.cat(pts, dim=1)  # (B, 2k + 1 [+1], n)
    if periodic:
        idx = list(periodic)
        stacked[..., idx] = torch.remainder(stacked[..., idx], TWO_PI)
    vals = u(stacked.reshape(-1, n)).reshape(b, -1)
    ut = vals[:, 2 * k + 1] if time_dim is not None else None
    return vals[:, 0], vals[:, 1:k + 1], vals[:, k + 1:2 * k + 1], ut


def lax_friedrichs(hamiltonian: Hamiltonian, x: torch.Tensor, u0: torch.Tensor, up: torch.Tensor,
                   dn: torch.Tensor, delta: torch.Tensor, alpha: float, scheme: str = "lxf"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ĥ_δ[u](x) = H(x, D^c u) − Σ_i a_i A_i u with a_i = α (``"lxf"``) or the capped local speed (``"llf"``),
    and the central differences p = D^c u (module docstring)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    p = (up - dn) / (2 * delta)
    c = u0.unsqueeze(1)
    second = (up + dn - 2 * c) / (2 * delta)
    if scheme == "lxf":
        return hamiltonian(x, p) - alpha * second.sum(1), p
    speed = torch.maximum(hamiltonian.speeds(x, (up - c) / delta), hamiltonian.speeds(x, (c - dn) / delta))
    return hamiltonian(x, p) - (speed.clamp(max=alpha) * second).sum(1), p


def fd_residual(u: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, hamiltonian: Hamiltonian,
                f: Callable[[torch.Tensor], torch.Tensor], delta: float | Sequence[float], alpha: float,
                dims: Sequence[int], *, beta: float = 0.0, periodic: Sequence[int] = (),
                time_dim: int | None = None, delta_t: float | None = None, scheme: str = "lxf"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """R_δ[u](x) of the module docstring at the rows of x, and p = D^c u (for the monotonicity check).

    ``u`` maps (N, n_in) → (N,); ``dims`` are the coordinates with LxF stencils (all but time); ``scheme``:
    ``"lxf"`` or ``"llf"`` (checked by :func:`lax_friedrichs`)."""
    if alpha < 0:
        raise ValueError(f"alpha must be ≥ 0, got {alpha}")
    if time_dim is not None and (delta_t is None or delta_t <= 0):
        raise ValueError(f"a time-dependent residual needs delta_t > 0, got {delta_t}")
    d = _as_deltas(delta, len(dims), x)
    u0, up, dn, ut = stencil_values(u, x, d, dims, periodic, time_dim, delta_t)
    h, p = lax_friedrichs(hamiltonian, x, u0, up, dn, d, alpha, scheme)
    r = h - f(x)
    if beta:
        r = r + beta * u0
    if ut is not None:
        r = r + (ut - u0) / delta_t
    return r, p


def check_monotonicity(hamiltonian: Hamiltonian, alpha: float, x: torch.Tensor, p: torch.Tensor,
                       on_violation: str = "warn", context: str = "") -> float:
    """L = max over the sampled rows and coordinates of |∂H/∂p_i(x, p)|; the scheme is monotone on that
    range iff α ≥ L. ``on_violation``: ``"warn"`` (a :class:`MonotonicityWarning`), ``"error"`` (ValueError)
    or ``"off"``. A non-finite L (gradients that blew up) means the condition cannot hold for any α.
    Returns L."""
    if on_violation not in ("warn", "error", "off"):
        raise ValueError(f"on_violation must be 'warn', 'error' or 'off', got {on_violation!r}")
    if on_violation == "off":
        return float("nan")
    lip = float(hamiltonian.p_derivatives(x, p).max()) if len(x) else 0.0
    where = f"{context}: " if context else ""
    if not math.isfinite(lip):
        msg = (f"{where}|∂H/∂p| is not finite on the sampled range (the solution's finite differences blew up), "
               f"so no viscosity α makes the Lax–Friedrichs scheme monotone; lower the learning rate or δ")
    elif alpha + 1e-12 < lip:
        msg = (f"{where}α = {alpha:g} < {lip:.5g} = max_i |∂H/∂p_i| on the sampled range: the Lax–Friedrichs "
               f"scheme is not monotone there (convergence to the viscosity solution is not guaranteed); "
               f"use α ≥ {lip:.5g} for a monotone scheme")
    else:
        return lip
    if on_violation == "error":
        raise ValueError(msg)
    warnings.warn(msg, MonotonicityWarning, stacklevel=2)
    return lip
