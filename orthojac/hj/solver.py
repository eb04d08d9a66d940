r"""The least-squares Lax–Friedrichs solver (arXiv 2406.10758, Sec. 2; notes §2.3–2.5).

Loss, with interior points x_k and boundary (or t = 0) points y_l re-sampled at EVERY step:

    L(θ) = (1/N) Σ_k R_δ[u_θ](x_k)²  +  λ (1/N_b) Σ_l w_l (u_θ(y_l) − g(y_l))²

(R_δ the scheme residual of :mod:`orthojac.hj.schemes`, w_l per-point boundary weights, e.g. 2 on the
Reeds–Shepp target). With uniform x_k this is an unbiased estimate of the mean-square residual over Ω, i.e.
the average of the grid least-squares functionals over all shifted grids x₀ + δZ^d — no grid is ever built.
Training runs in rounds of fixed (δ, α, N, N_b, iterations), the network carried over while δ and α shrink
(continuation). The optimiser (SGD with momentum as the authors, or Adam) persists across rounds.

``target="exact"`` (a diagnostic, for problems with a closed form u*) replaces R_δ[u_θ](x_k) by u_θ(x_k) −
u*(x_k): plain regression of the known solution with the same ansatz, points, rounds, steps and optimiser.
Its error is the *ceiling* of that ansatz and budget — what the scheme's loss could reach at best if it
pointed straight at u* — so a solver error near it is the ansatz's limit, not the scheme's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .problems import Problem
from .schemes import SCHEMES, check_monotonicity, stencil_values

__all__ = ["TARGETS", "Round", "RoundResult", "SolveResult", "solve", "evaluate", "loss_terms"]

TARGETS = ("scheme", "exact")  # what the interior term fits: R_δ[u] = 0 (the method) or u = u* (the ceiling)


@dataclass
class Round:
    """One continuation round: stencil δ, viscosity α, interior/boundary points per step, steps; δ_t for
    time-dependent problems; an optional learning rate for this round (else the solver's) and an optional
    ``lr_end``: the rate then decays geometrically, lr_k = lr·(lr_end/lr)^{k/(n−1)} at step k of n, so the
    round ends on a small step and the SGD noise floor of the re-sampled loss drops with it. ``scheme``: the
    paper's global Lax–Friedrichs viscosity (``"lxf"``) or the local one (``"llf"``, :mod:`orthojac.hj.schemes`;
    use it after an ``"lxf"`` round — from a flat start it can select a non-viscosity solution)."""

    delta: float
    alpha: float
    points: int
    boundary_points: int
    iterations: int
    delta_t: float | None = None
    lr: float | None = None
    lr_end: float | None = None
    scheme: str = "lxf"  # "lxf" (the paper's) or "llf" (local viscosity, orthojac.hj.schemes)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"round scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if not self.delta > 0:
            raise ValueError(f"round delta must be > 0, got {self.delta}")
        if self.alpha < 0:
            raise ValueError(f"round alpha must be ≥ 0, got {self.alpha}")
        if self.points < 1 or self.boundary_points < 0 or self.iterations < 0:
            raise ValueError(f"round needs points ≥ 1, boundary_points ≥ 0, iterations ≥ 0; got {self}")
        for k in ("lr", "lr_end"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ValueError(f"round {k} must be > 0 when given, got {v}")


@dataclass
class RoundResult:
    round: int
    delta: float
    alpha: float
    iterations: int
    loss: float          # mean total loss over the last 10% of the round's steps
    residual: float      # mean-square scheme residual over those steps
    boundary: float      # mean-square boundary misfit over those steps
    lipschitz: float     # max_i |∂H/∂p_i| on the sampled range at the round's start (monotone iff α ≥ it)
    # mean-square residual R_δ[u*] of the exact solution on the round's first sample (nan without one): when it
    # is not small against ``residual``, the scheme's own solution at this (δ, α) is far from u*
    exact_residual: float = float("nan")
    mse: float = float("nan")
    max_err: float = float("nan")
    seconds: float = 0.0


@dataclass
class SolveResult:
    rounds: list[RoundResult] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    mse: float = float("nan")
    max_err: float = float("nan")
    stopped: str = ""

    def as_dict(self) -> dict:
        return {"mse": self.mse, "max_err": self.max_err, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "stopped": self.stopped, "rounds": [asdict(r) for r in self.rounds]}


def loss_terms(problem: Problem, net: nn.Module, rnd: Round, lam: float, g: torch.Generator,
               device: torch.device | str = "cpu", target: str = "scheme"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(loss, mean R², mean boundary misfit, interior points, central differences p) for one fresh sample
    (drawn on the CPU by ``g``, so a seed gives the same points on every device, then moved to ``device``).
    ``target="exact"``: R = u_θ − u* instead, and p is None (module docstring)."""
    x = problem.sample_interior(rnd.points, rnd.delta, g, rnd.delta_t).to(device)
    if target == "exact":
        r, p = net(x) - problem.exact(x), None
    else:
        r, p = problem.residual(net, x, rnd.delta, rnd.alpha, rnd.delta_t, rnd.scheme)
    res = (r * r).mean()
    if rnd.boundary_points and lam:
        y, gv, w = (t.to(device) for t in problem.sample_boundary(rnd.boundary_points, g))
        bnd = (w * (net(y) - gv) ** 2).mean()
    else:
        bnd = torch.zeros((), dtype=res.dtype, device=res.device)
    return res + lam * bnd, res, bnd, x, p


def _test_points(problem: Problem, points: int, seed: int) -> torch.Tensor:
    """The held-out test sample of run ``seed`` (its own generator, apart from the training samples)."""
    return problem.sample_test(points, torch.Generator().manual_seed(10_000 + seed))


@torch.no_grad()
def evaluate(problem: Problem, net: nn.Module, points: int = 100_000, seed: int = 0,
             chunk: int = 65_536) -> tuple[float, float]:
    """(MSE, E_∞) = (mean (u − u_θ)², max |u − u_θ|) over ``points`` held-out volume-uniform test points
    (the origin included), as the authors' ``error_test``. (nan, nan) without a closed-form solution."""
    if not problem.has_exact:
        return float("nan"), float("nan")
    x = _test_points(problem, points, seed)
    device = next(net.parameters()).device
    se, mx = 0.0, 0.0
    for xc in x.split(chunk):
        xc = xc.to(device)
        e = net(xc).double() - problem.exact(xc.double())
        se += float((e * e).sum())
        mx = max(mx, float(e.abs().max()))
    return se / len(x), mx


@torch.no_grad()
def zero_mse(problem: Problem, points: int = 100_000, seed: int = 0) -> float:
    """mean u*² over the test sample of :func:`evaluate`: the MSE of the trivial answer u ≡ 0, the scale to read
    an MSE against (nan without a closed form). In high dimension volume-uniform points crowd at the boundary,
    where u* is small: for the d-ball of radius R and the cube of half-side R it is 2R²/((d + 1)(d + 2)), e.g.
    0.039 for the d = 20 cube and 0.0068 for d = 50, against 0.20 for d = 8 (plus the origin's R²/points)."""
    if not problem.has_exact:
        return float("nan")
    u = problem.exact(_test_points(problem, points, seed).double())
    return float((u * u).mean())


def _sampled_lipschitz(problem: Problem, rnd: Round, x: torch.Tensor, p: torch.Tensor,
                       on_violation: str, context: str) -> float:
    """Monotonicity check on the sampled range: the network's central differences at the round's first
    sample, joined by the exact solution's (same stencil) when one is known."""
    xs, ps = [x], [p]
    if problem.has_exact:
        dims = problem.stencil_dims
        d = torch.full((len(dims),), rnd.delta, dtype=x.dtype, device=x.device)
        _, up, dn, _ = stencil_values(problem.exact, x, d, dims, problem.periodic)
        xs.append(x)
        ps.append((up - dn) / (2 * d))
    xs, ps = [t.cpu() for t in xs], [t.cpu() for t in ps]
    return check_monotonicity(problem.hamiltonian, rnd.alpha, torch.cat(xs), torch.cat(ps).detach(), on_violation,
                              context)


@torch.no_grad()
def _exact_residual(problem: Problem, rnd: Round, x: torch.Tensor) -> float:
    """mean R_δ[u*]² of the closed-form solution u* at the sample x, in float64 (nan without one)."""
    if not problem.has_exact:
        return float("nan")
    xd = x.detach().cpu().double()
    r, _ = problem.residual(problem.exact, xd, rnd.delta, rnd.alpha, rnd.delta_t, rnd.scheme)
    return float((r * r).mean())


def solve(problem: Problem, net: nn.Module, rounds: Sequence[Round], *, optimizer: str = "sgd", lr: float = 0.02,
          momentum: float = 0.2, lam: float = 1.0, seed: int = 0, monotonicity: str = "warn",
          eval_points: int = 100_000, eval_rounds: bool = True, progress: bool = True,
          desc: str | None = None, device: torch.device | str | None = None, target: str = "scheme") -> SolveResult:
    """Train ``net`` on ``problem`` through the continuation ``rounds`` (module docstring). The sampling is
    driven by a generator seeded with ``seed``; the network's initialisation is the caller's. Errors against
    the exact solution are measured after each round (``eval_rounds``) and at the end. ``device``: where
    to train (default: where the network's parameters are; the network is moved there). ``target``:
    ``"scheme"`` (the method) or ``"exact"`` (regression of the closed form: the ansatz's ceiling)."""
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "exact" and not problem.has_exact:
        raise ValueError(f"target 'exact' needs a closed-form solution; {problem.name!r} has none")
    if not rounds:
        raise ValueError("need at least one round")
    g = torch.Generator().manual_seed(seed)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net.to(device)
    params = [q for q in net.parameters() if q.requires_grad]
    opt = (torch.optim.SGD(params, lr=lr, momentum=momentum) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr))
    out = SolveResult()
    t0, c0 = time.perf_counter(), time.process_time()
    total = sum(r.iterations for r in rounds)
    bar = tqdm(total=total, desc=desc or problem.describe(), disable=not progress, leave=False, mininterval=1.0)
    net.train()
    for i, rnd in enumerate(rounds, 1):
        lr0 = rnd.lr if rnd.lr is not None else lr
        decay = (rnd.lr_end / lr0) ** (1.0 / max(1, rnd.iterations - 1)) if rnd.lr_end is not None else 1.0
        for group in opt.param_groups:
            group["lr"] = lr0
        tr = time.perf_counter()
        tail = max(1, rnd.iterations // 10)
        acc = torch.zeros(3, dtype=torch.float64)
        lip = exact_res = float("nan")
        for it in range(rnd.iterations):
            loss, res, bnd, x, p = loss_terms(problem, net, rnd, lam, g, device, target)
            if it == 0 and p is not None:
                lip = _sampled_lipschitz(problem, rnd, x, p, monotonicity,
                                         f"{problem.name} round {i} (δ = {rnd.delta:g})")
                exact_res = _exact_residual(problem, rnd, x)
            if not torch.isfinite(loss):
                out.stopped = f"non-finite loss in round {i}, step {it}"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if decay != 1.0:
                for group in opt.param_groups:
                    group["lr"] *= decay
            if it >= rnd.iterations - tail:
                acc += torch.stack([loss.detach(), res.detach(), bnd.detach()]).double().cpu()
            if it % 50 == 0:
                bar.set_postfix(round=i, loss=f"{loss.item():.2e}", refresh=False)
            bar.update(1)
        acc /= tail
        rr = RoundResult(i, rnd.delta, rnd.alpha, rnd.iterations, *acc.tolist(), lipschitz=lip,
                         exact_residual=exact_res)
        if eval_rounds or i == len(rounds):
            net.eval()
            rr.mse, rr.max_err = evaluate(problem, net, eval_points, seed)
            net.train()
        rr.seconds = time.perf_counter() - tr
        out.rounds.append(rr)
        if out.stopped:
            break
    bar.close()
    net.eval()
    out.seconds, out.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    out.mse, out.max_err = out.rounds[-1].mse, out.rounds[-1].max_err
    if not math.isfinite(out.rounds[-1].loss) and not out.stopped:
        out.stopped = "non-finite loss"
    return out
