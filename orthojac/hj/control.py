r"""Optimal feedback trajectories read off a trained value function (notes P5, P7, P8).

* Eikonal (minimum time to ∂Ω at unit speed): ``ẋ = −∇u/|∇u|``.
* Reeds–Shepp car (state (x, y, θ), speed s ∈ {±1}, turning |θ̇| ≤ 1/ρ): the minimiser of
  ``s(cos θ u_x + sin θ u_y) + ω u_θ`` is ``s = −sign(∇_x u·(cos θ, sin θ))``, ``ω = −sign(u_θ)/ρ``.
* Two-car game (z = x_E − x_P, ż = σ_E s_E e(θ_E) − σ_P s_P e(θ_P), e(θ) = (cos θ, sin θ)): the pursuer
  minimises and the evader maximises ∇u·(ż, θ̇_P, θ̇_E), so ``s_P = sign(∇_z u·e(θ_P))``,
  ``θ̇_P = −sign(u_{θP})/ρ_P``, ``s_E = sign(∇_z u·e(θ_E))``, ``θ̇_E = sign(u_{θE})/ρ_E``.

The eikonal path is integrated by explicit Euler with step ``dt``, the cars by a mid-heading step
(:func:`_car_step`); the time to reach the target is compared with the
value u(x₀) the network predicts (a consistency check when there is no closed form).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .hamiltonians import PursuitEvasion, ReedsShepp
from .problems import Problem, ReedsSheppCar, TwoCarGame

__all__ = ["value_gradient", "reeds_shepp_control", "pursuit_evasion_controls", "eikonal_trajectory",
           "reeds_shepp_trajectory", "pursuit_evasion_trajectory", "trajectory"]


def value_gradient(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u(x), ∇u(x)) by autograd, for a batch x (N, n_in)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        u = net(x)
        (grad,) = torch.autograd.grad(u.sum(), x)
    return u.detach(), grad.detach()


def _sign(v: torch.Tensor) -> torch.Tensor:
    """sign(v) with sign(0) = +1: the speed is bang-bang, s ∈ {±1} (s = 0 would stop the car). Turning rates
    use torch.sign, whose ω = 0 at u_θ = 0 is one of the (then equally good) minimisers."""
    return torch.where(v >= 0, 1.0, -1.0).to(v.dtype)


def reeds_shepp_control(grad: torch.Tensor, theta: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The Reeds–Shepp car's optimal feedback (speed s, turning rate ω) for value gradients ``grad`` (N, 3)
    at headings ``theta`` (N,): the minimiser over s ∈ {±1}, |ω| ≤ 1/ρ of

        s (cos θ u_x + sin θ u_y) + ω u_θ,   i.e.  s = −sign(∇_x u·e(θ)),  ω = −sign(u_θ)/ρ,

    whose minimum is −H(x, ∇u) (:class:`~orthojac.hj.hamiltonians.ReedsShepp`): the value decreases at rate
    H = 1 along the optimal motion, so the time to the target equals u(x₀)."""
    e = torch.stack([torch.cos(theta), torch.sin(theta)], -1)
    s = -_sign((grad[..., :2] * e).sum(-1))
    w = -torch.sign(grad[..., 2]) / rho
    return s, w


def pursuit_evasion_controls(grad: torch.Tensor, theta_p: torch.Tensor, theta_e: torch.Tensor,
                             ham: PursuitEvasion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""(s_P, ω_P, s_E, ω_E) of the two-car game for value gradients ``grad`` (N, 4) with respect to
    (z_x, z_y, θ_P, θ_E), z = x_E − x_P. The state moves by ż = σ_E s_E e(θ_E) − σ_P s_P e(θ_P),
    θ̇_P = ω_P, θ̇_E = ω_E; the pursuer minimises and the evader maximises ∇u·(ż, ω_P, ω_E):

        s_P = sign(∇_z u·e(θ_P)),  ω_P = −sign(u_{θP})/ρ_P,   s_E = sign(∇_z u·e(θ_E)),  ω_E = sign(u_{θE})/ρ_E,

    and the saddle value of ∇u·(state velocity) is −H(x, ∇u) (:class:`~orthojac.hj.hamiltonians.PursuitEvasion`)."""
    ep = torch.stack([torch.cos(theta_p), torch.sin(theta_p)], -1)
    ee = torch.stack([torch.cos(theta_e), torch.sin(theta_e)], -1)
    sp = _sign((grad[..., :2] * ep).sum(-1))
    se = _sign((grad[..., :2] * ee).sum(-1))
    return sp, -torch.sign(grad[..., 2]) / ham.rho[0], se, torch.sign(grad[..., 3]) / ham.rho[1]


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


def _car_step(xy: torch.Tensor, th: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
              dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a car at speed v (signed) and turning rate w held for dt: the heading advances by w·dt and
    the position moves by v·dt along the heading at mid-step (second order, exact on straight lines)."""
    mid = th + 0.5 * dt * w
    return xy + dt * v * torch.stack([torch.cos(mid), torch.sin(mid)]), th + dt * w


def reeds_shepp_trajectory(net: nn.Module, problem: ReedsSheppCar, x0: torch.Tensor, dt: float = 0.01,
                           t_max: float = 12.0) -> dict:
    """Feedback trajectory of the Reeds–Shepp car from x0 = (x, y, θ) (:func:`reeds_shepp_control` at every
    step) until |(x, y)| ≤ r_target (``reached``), |(x, y)| ≥ R (``exited``: the authors' truncated domain
    charges u = outer_value there) or t_max."""
    ham: ReedsShepp = problem.hamiltonian  # type: ignore[assignment]
    x = x0.reshape(1, 3).clone().float()
    path, t = [x.clone()], 0.0
    u0 = float(net(x).detach())
    while t < t_max and problem.r_target < float(x[0, :2].norm()) < problem.radius:
        _, gr = value_gradient(net, x)
        s, w = reeds_shepp_control(gr[0], x[0, 2], ham.rho)
        xy, th = _car_step(x[0, :2], x[0, 2], s, w, dt)
        x = torch.cat([xy, torch.remainder(th, 2 * math.pi).reshape(1)]).reshape(1, 3)
        t += dt
        path.append(x.clone())
    r = float(x[0, :2].norm())
    return {"path": torch.cat(path), "time": t, "value": u0, "reached": r <= problem.r_target,
            "exited": r >= problem.radius}


def pursuit_evasion_trajectory(net: nn.Module, problem: TwoCarGame, pursuer: torch.Tensor, evader: torch.Tensor,
                               dt: float = 0.01, t_max: float | None = None) -> dict:
    """Both cars follow their feedback strategies (:func:`pursuit_evasion_controls`); positions in absolute
    coordinates. ``pursuer`` and ``evader`` are (x, y, θ). Stops at capture (|z| ≤ r_capture), escape
    (|z| ≥ r_escape) or t_max (default 3 × escape_value = 30: the game's value from the authors' start is
    ≈ 8–10 by a grid reference, ``benchmarks/hj_game_reference.py``, so the cars' t_max = 12 could cut an
    optimal play short)."""
    ham: PursuitEvasion = problem.hamiltonian  # type: ignore[assignment]
    t_max = 3.0 * problem.escape_value if t_max is None else t_max
    xp, xe = pursuer.clone().float(), evader.clone().float()

    def state() -> torch.Tensor:
        return torch.cat([xe[:2] - xp[:2], xp[2:3], xe[2:3]]).reshape(1, 4)

    pp, pe, t = [xp.clone()], [xe.clone()], 0.0
    u0 = float(net(state()).detach())
    while t < t_max and problem.r_capture < float((xe[:2] - xp[:2]).norm()) < problem.r_escape:
        _, gr = value_gradient(net, state())
        sp, wp, se, we = pursuit_evasion_controls(gr[0], xp[2], xe[2], ham)
        xyp, thp = _car_step(xp[:2], xp[2], ham.sigma[0] * sp, wp, dt)
        xye, the = _car_step(xe[:2], xe[2], ham.sigma[1] * se, we, dt)
        xp, xe = torch.cat([xyp, thp.reshape(1)]), torch.cat([xye, the.reshape(1)])
        t += dt
        pp.append(xp.clone())
        pe.append(xe.clone())
    dist = float((xe[:2] - xp[:2]).norm())
    return {"pursuer": torch.stack(pp), "evader": torch.stack(pe), "time": t, "value": u0,
            "captured": dist <= problem.r_capture, "escaped": dist >= problem.r_escape}


def trajectory(net: nn.Module, problem: Problem, start: torch.Tensor, **kw) -> dict:
    """The feedback trajectory appropriate to the problem (two-car game: start = (pursuer, evader), 6 numbers)."""
    if isinstance(problem, ReedsSheppCar):
        return reeds_shepp_trajectory(net, problem, start, **kw)
    if isinstance(problem, TwoCarGame):
        s = start.reshape(-1)
        return pursuit_evasion_trajectory(net, problem, s[:3], s[3:6], **kw)
    return eikonal_trajectory(net, problem, start, **kw)
