r"""Optimal feedback trajectories read off a trained value function (notes P5, P7, P8).

* Eikonal (minimum time to ∂Ω at unit speed): ``ẋ = −∇u/|∇u|``.
* Reeds–Shepp car (state (x, y, θ), speed s ∈ {±1}, turning |θ̇| ≤ 1/ρ): the minimiser of
  ``s(cos θ u_x + sin θ u_y) + ω u_θ`` is ``s = −sign(∇_x u·(cos θ, sin θ))``, ``ω = −sign(u_θ)/ρ``.
* Two-car game (z = x_E − x_P, ż = σ_E s_E e(θ_E) − σ_P s_P e(θ_P), e(θ) = (cos θ, sin θ)): the pursuer
  minimises and the evader maximises ∇u·(ż, θ̇_P, θ̇_E), so ``s_P = sign(∇_z u·e(θ_P))``,
  ``θ̇_P = −sign(u_{θP})/ρ_P``, ``s_E = sign(∇_z u·e(θ_E))``, ``θ̇_E = sign(u_{θE})/ρ_E``.

All are integrated by explicit Euler with step ``dt``; the time to reach the target is compared with the
value u(x₀) the network predicts (a consistency check when there is no closed form).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .hamiltonians import PursuitEvasion, ReedsShepp
from .problems import Problem, ReedsSheppCar, TwoCarGame

__all__ = ["value_gradient", "eikonal_trajectory", "reeds_shepp_trajectory", "pursuit_evasion_trajectory",
           "trajectory"]


def value_gradient(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u(x), ∇u(x)) by autograd, for a batch x (N, n_in)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        u = net(x)
        (grad,) = torch.autograd.grad(u.sum(), x)
    return u.detach(), grad.detach()


def eikonal_trajectory(net: nn.Module, problem: Problem, x0: torch.Tensor, dt: float = 0.01,
                       t_max: float = 10.0) -> dict:
    """Follow ẋ = −∇u/|∇u| from x0 until it leaves the domain (reaches the boundary) or t_max."""
    x = x0.reshape(1, -1).clone()
    path, t = [x.clone()], 0.0
    u0 = float(net(x).detach())
    while t < t_max and bool(problem.inside(x)[0]):
        _, gr = value_gradient(net, x)
        x = x - dt * gr / gr.norm().clamp_min(1e-12)
        t += dt
        path.append(x.clone())
    return {"path": torch.cat(path), "time": t, "value": u0, "reached": not bool(problem.inside(x)[0])}


def reeds_shepp_trajectory(net: nn.Module, problem: ReedsSheppCar, x0: torch.Tensor, dt: float = 0.01,
                           t_max: float = 12.0) -> dict:
    """Feedback trajectory of the Reeds–Shepp car from x0 = (x, y, θ) until |(x, y)| ≤ r_target."""
    ham: ReedsShepp = problem.hamiltonian  # type: ignore[assignment]
    x = x0.reshape(1, 3).clone()
    path, t = [x.clone()], 0.0
    u0 = float(net(x).detach())
    while t < t_max and float(x[0, :2].norm()) > problem.r_target:
        _, gr = value_gradient(net, x)
        th = x[0, 2]
        e = torch.stack([torch.cos(th), torch.sin(th)])
        s = -torch.sign(gr[0, :2] @ e)
        s = s if s != 0 else torch.tensor(1.0)
        w = -torch.sign(gr[0, 2]) / ham.rho
        x = x + dt * torch.cat([s * e, w.reshape(1)]).reshape(1, 3)
        x[0, 2] = torch.remainder(x[0, 2], 2 * math.pi)
        t += dt
        path.append(x.clone())
    return {"path": torch.cat(path), "time": t, "value": u0,
            "reached": float(x[0, :2].norm()) <= problem.r_target}


def pursuit_evasion_trajectory(net: nn.Module, problem: TwoCarGame, pursuer: torch.Tensor, evader: torch.Tensor,
                               dt: float = 0.01, t_max: float = 12.0) -> dict:
    """Both cars follow their feedback strategies; positions in absolute coordinates. ``pursuer`` and
    ``evader`` are (x, y, θ). Stops at capture (|z| ≤ r_capture), escape (|z| ≥ r_escape) or t_max."""
    ham: PursuitEvasion = problem.hamiltonian  # type: ignore[assignment]
    xp, xe = pursuer.clone().float(), evader.clone().float()

    def state() -> torch.Tensor:
        return torch.cat([xe[:2] - xp[:2], xp[2:3], xe[2:3]]).reshape(1, 4)

    pp, pe, t = [xp.clone()], [xe.clone()], 0.0
    u0 = float(net(state()).detach())
    while t < t_max and problem.r_capture < float((xe[:2] - xp[:2]).norm()) < problem.r_escape:
        _, gr = value_gradient(net, state())
        ep = torch.stack([torch.cos(xp[2]), torch.sin(xp[2])])
        ee = torch.stack([torch.cos(xe[2]), torch.sin(xe[2])])
        sp, se = torch.sign(gr[0, :2] @ ep), torch.sign(gr[0, :2] @ ee)
        wp, we = -torch.sign(gr[0, 2]) / ham.rho[0], torch.sign(gr[0, 3]) / ham.rho[1]
        xp = xp + dt * torch.cat([ham.sigma[0] * sp * ep, wp.reshape(1)])
        xe = xe + dt * torch.cat([ham.sigma[1] * se * ee, we.reshape(1)])
        t += dt
        pp.append(xp.clone())
        pe.append(xe.clone())
    dist = float((xe[:2] - xp[:2]).norm())
    return {"pursuer": torch.stack(pp), "evader": torch.stack(pe), "time": t, "value": u0,
            "captured": dist <= problem.r_capture}


def trajectory(net: nn.Module, problem: Problem, start: torch.Tensor, **kw) -> dict:
    """The feedback trajectory appropriate to the problem (two-car game: start = (pursuer, evader), 6 numbers)."""
    if isinstance(problem, ReedsSheppCar):
        return reeds_shepp_trajectory(net, problem, start, **kw)
    if isinstance(problem, TwoCarGame):
        s = start.reshape(-1)
        return pursuit_evasion_trajectory(net, problem, s[:3], s[3:6], **kw)
    return eikonal_trajectory(net, problem, start, **kw)
