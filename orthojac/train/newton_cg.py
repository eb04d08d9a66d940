"""The optimiser of Haber & Ruthotto §6 (notes §8): block coordinate descent (BCD) on

    min_{W, µ, θ}  (1/s) Σ_i S(h(y_N,iᵀ W + µ), c_i) + α R(θ) (+ α_W R(W)),      θ = (K_j, b_j)_j

Each outer iteration draws a random batch of the training data and

1. **classification step** — holds Y_N fixed and updates (W, µ) by inexact Newton-PCG (≤ ``newton_its`` Newton
   iterations, each direction from ≤ ``newton_cg_its`` CG iterations). The problem is convex and the logits are
   linear in (W, µ), so the Gauss–Newton product used below is the exact Hessian product;
2. **propagation step** — holds (W, µ) fixed and takes one Gauss–Newton-PCG step on θ: the GN matrix
   Jᵀ H_S J + α ∇²R with J = ∂logits/∂θ applied matrix-free by ``torch.func.jvp`` / ``torch.func.vjp`` on a
   further random sub-sample of the batch (``curvature_fraction``), H_S the Hessian of the cross-entropy in the
   logits; ≤ ``gn_cg_its`` PCG iterations (relative tolerance ``cg_tol``), preconditioned by the regulariser
   (α DᵀD/h + shift·I)⁻¹ along the time axis (diagonalised once per level, D the forward difference);
3. evaluates the validation accuracy and keeps the best parameters.

Both steps end with an Armijo backtracking line search on the batch objective. Defaults are the 2-D settings
of the paper (Newton ≤ 2 × CG ≤ 2; GN-PCG ≤ 20); the MNIST settings are Newton ≤ 5 × CG ≤ 10. The number of
outer iterations per level and the batch size are not in the paper (notes §8: NOT FOUND); they are arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import functional_call, jvp, vjp
from tqdm import tqdm

from ..models.stable import StableNet, hypothesis_loss
from ..regularizers import time_laplacian
from .multilevel import Data, FitResult, _snapshot, accuracy, best_validation_result

__all__ = ["NewtonCGConfig", "pcg", "loss_hessian_product", "newton_cg_classifier_step", "gauss_newton_cg_step",
           "fit_newton_cg"]

Params = dict[str, torch.Tensor]


@dataclass
class NewtonCGConfig:
    """Settings of :func:`fit_newton_cg` (defaults: the paper's 2-D inner iteration counts)."""

    iterations: int = 20
    batch_size: int = 512
    curvature_fraction: float = 0.5
    newton_its: int = 2
    newton_cg_its: int = 2
    gn_cg_its: int = 20
    cg_tol: float = 1e-2
    alpha: float = 0.0            # time-smoothness weight α (Eq. 5.23)
    alpha_w: float = 0.0          # classifier weight: ½α_W‖L W‖² (L = ``classifier_operator``) or ½α_W‖W‖²
    classifier_shift: float = 1e-6
    precond_shift: float = 1e-3   # shift g of the propagation preconditioner (α DᵀD/h + g I)⁻¹
    armijo_its: int = 30
    max_step: float | None = 1.0  # trust radius of a step, relative to max(1, ‖x‖) (see ``_armijo``); None: no cap

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "newton_its", "newton_cg_its", "gn_cg_its"):
            if getattr(self, name) < 1:
                raise ValueError(f"NewtonCGConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 < self.curvature_fraction <= 1:
            raise ValueError(f"curvature_fraction must be in (0, 1], got {self.curvature_fraction}")
        if self.alpha < 0 or self.alpha_w < 0 or self.precond_shift <= 0 or self.classifier_shift <= 0:
            raise ValueError("alpha and alpha_w must be ≥ 0, the shifts > 0")
        if self.max_step is not None and self.max_step <= 0:
            raise ValueError(f"max_step must be > 0 or None, got {self.max_step}")


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def _axpy(alpha: float | torch.Tensor, x: Params, y: Params) -> Params:
    return {k: y[k] + alpha * x[k] for k in y}


def pcg(matvec: Callable[[Params], Params], rhs: Params, precond: Callable[[Params], Params] | None = None,
        maxit: int = 20, tol: float = 1e-2) -> tuple[Params, int]:
    """Preconditioned conjugate gradients for A x = rhs (A symmetric positive semi-definite, given by
    ``matvec``) from x = 0; stops after ``maxit`` iterations or when ‖r‖ ≤ tol·‖rhs‖. Returns (x, iterations)."""
    x = {k: torch.zeros_like(v) for k, v in rhs.items()}
    r = {k: v.clone() for k, v in rhs.items()}
    z = precond(r) if precond else r
    p = {k: v.clone() for k, v in z.items()}
    rz = _dot(r, z)
    norm0 = torch.sqrt(_dot(rhs, rhs))
    it = 0
    for it in range(1, maxit + 1):  # noqa: B007
        ap = matvec(p)
        pap = _dot(p, ap)
        if pap <= 0:  # no curvature along p: stop with what we have (p = rhs on the first iteration)
            if it == 1:
                x = z
            break
        a = rz / pap
        x = _axpy(a, p, x)
        r = _axpy(-a, ap, r)
        if torch.sqrt(_dot(r, r)) <= tol * norm0:
            break
        z = precond(r) if precond else r
        rz_new = _dot(r, z)
        p = _axpy(rz_new / rz, p, z)
        rz = rz_new
    return x, it


def loss_hessian_product(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """H_S u for the mean cross-entropy S of :func:`~orthojac.models.stable.hypothesis_loss` in the logits:
    logistic (one column) p(1−p)u/s, softmax (p ⊙ u − p (pᵀu))/s row by row."""
    s = logits.shape[0]
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return p * (1 - p) * u / s
    p = torch.softmax(logits, dim=1)
    return (p * u - p * (p * u).sum(dim=1, keepdim=True)) / s


def _armijo(objective: Callable[[Params], torch.Tensor], params: Params, direction: Params, grad: Params,
            f0: torch.Tensor, its: int, max_step: float | None = None) -> tuple[Params, float]:
    """Backtracking from t = 1 (halving, ≤ ``its`` times) until f(x + t d) ≤ f(x) + 10⁻⁴ t ∇fᵀd. With
    ``max_step`` the direction is first shortened to ‖d‖ ≤ max_step·max(1, ‖x‖), a trust radius as in Meganet's
    Steihaug-CG: when the curvature vanishes (a saturated sigmoid, p(1 − p) ≈ 0 while the loss is large) the
    Newton/GN direction is ~1/curvature long and no halving would reach an acceptable step."""
    slope = float(_dot(grad, direction))
    if slope >= 0:  # not a descent direction (should not happen with SPD GN): take the gradient
        direction = {k: -v for k, v in grad.items()}
        slope = float(-_dot(grad, grad))
    if max_step is not None:
        radius = max_step * max(1.0, float(torch.sqrt(_dot(params, params))))
        norm = float(torch.sqrt(_dot(direction, direction)))
        if norm > radius:
            direction = {k: v * (radius / norm) for k, v in direction.items()}
            slope *= radius / norm
    t = 1.0
    for _ in range(its):
        trial = _axpy(t, direction, params)
        if float(objective(trial)) <= float(f0) + 1e-4 * t * slope:
            return trial, t
        t *= 0.5
    return params, 0.0


def newton_cg_classifier_step(model: StableNet, feats: torch.Tensor, labels: torch.Tensor, newton_its: int = 2,
                              cg_its: int = 2, alpha_w: float = 0.0, operator: torch.Tensor | None = None,
                              shift: float = 1e-6, armijo_its: int = 30, tol: float = 1e-2,
                              max_step: float | None = 1.0) -> int:
    """Inexact Newton-PCG on (W, µ) with features Y_N fixed; objective (1/s)ΣS + ½α_W‖L W‖² (‖W‖² without an
    ``operator`` L of shape (·, HW), applied per channel image). Preconditioned by (α_W LᵀL + shift·I)⁻¹ on W.
    Updates ``model.classifier`` in place; returns the number of Newton iterations that moved."""
    lin = model.classifier
    params = {"weight": lin.weight.detach(), "bias": lin.bias.detach()}
    hw = operator.shape[1] if operator is not None else None
    lap = (operator.T @ operator).to(feats) if operator is not None else None
    if lap is not None:
        evals, evecs = torch.linalg.eigh(lap.to(feats))

    def w_op(w: torch.Tensor) -> torch.Tensor:  # ∇²R_W w = α_W LᵀL w per channel image (or α_W w)
        if lap is None:
            return alpha_w * w
        return alpha_w * (w.reshape(-1, hw) @ lap.to(w)).reshape(w.shape)

    def objective(p: Params) -> torch.Tensor:
        out = hypothesis_loss(feats @ p["weight"].T + p["bias"], labels)
        return out + 0.5 * (p["weight"] * w_op(p["weight"])).sum() if alpha_w else out

    def precond(r: Params) -> Params:
        if lap is None:
            return {"weight": r["weight"] / (alpha_w + shift), "bias": r["bias"] / shift}
        w = r["weight"].reshape(-1, hw) @ evecs
        w = (w / (alpha_w * evals + shift)) @ evecs.T
        return {"weight": w.reshape(r["weight"].shape), "bias": r["bias"] / shift}

    moved = 0
    for _ in range(newton_its):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        f0 = objective(p)
        grad = dict(zip(p, torch.autograd.grad(f0, list(p.values()))))
        logits = (feats @ params["weight"].T + params["bias"]).detach()

        def matvec(v: Params, logits: torch.Tensor = logits) -> Params:
            u = feats @ v["weight"].T + v["bias"]
            hu = loss_hessian_product(logits, u)
            return {"weight": hu.T @ feats + w_op(v["weight"]), "bias": hu.sum(0)}

        d, _ = pcg(matvec, {k: -v for k, v in grad.items()}, precond if alpha_w or lap is not None else None,
                   maxit=cg_its, tol=tol)
        new, t = _armijo(objective, params, d, grad, f0.detach(), armijo_its, max_step)
        if t == 0.0:
            break
        params, moved = new, moved + 1
    with torch.no_grad():
        lin.weight.copy_(params["weight"])
        lin.bias.copy_(params["bias"])
    return moved


class _TimePreconditioner:
    """(α DᵀD/h + g I)⁻¹ applied along the time axis (dim 0) of every time-series parameter, by one
    eigendecomposition of the N×N time Laplacian."""

    def __init__(self, n: int, h: float, alpha: float, shift: float, dtype: torch.dtype,
                 device: torch.device | str | None = None) -> None:
        lap = time_laplacian(n, h, torch.float64)
        evals, evecs = torch.linalg.eigh(lap)
        self.lap = lap.to(dtype=dtype, device=device)
        self.evecs = evecs.to(dtype=dtype, device=device)
        self.inv = (1.0 / (alpha * evals + shift)).to(dtype=dtype, device=device)
        self.alpha = alpha

    def _along_time(self, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (m @ v.reshape(v.shape[0], -1)).reshape(v.shape)

    def __call__(self, r: Params) -> Params:
        out = {}
        for k, v in r.items():
            c = self._along_time(self.evecs.T, v)
            c = c * self.inv.reshape(-1, *([1] * (v.ndim - 1)))
            out[k] = self._along_time(self.evecs, c)
        return out

    def reg_hvp(self, v: Params) -> Params:
        """α ∇²R v = α (DᵀD/h) v along time."""
        return {k: self.alpha * self._along_time(self.lap, x) for k, x in v.items()}

    def reg(self, p: Params) -> torch.Tensor:
        return 0.5 * _dot(p, self.reg_hvp(p))


def gauss_newton_cg_step(model: StableNet, x: torch.Tensor, labels: torch.Tensor, alpha: float = 0.0,
                         cg_its: int = 20, tol: float = 1e-2, curvature_fraction: float = 0.5,
                         precond: _TimePreconditioner | None = None, armijo_its: int = 30,
                         generator: torch.Generator | None = None, max_step: float | None = 1.0) -> tuple[int, float]:
    """One Gauss–Newton-PCG step on the propagation weights θ with (W, µ) fixed; objective
    (1/s)ΣS(h(Y_N(θ)W + µ), c) + α R(θ). The gradient uses the whole batch ``x``; the GN products
    v ↦ Jᵀ H_S J v + α∇²R v use a random ``curvature_fraction`` of it (jvp, then vjp through the propagation).
    Updates the model in place; returns (CG iterations, accepted step length)."""
    prop = model.propagation
    params = {k: v.detach() for k, v in prop.named_parameters()}
    pre = precond or _TimePreconditioner(prop.layers, prop.h, alpha, 1e-3, x.dtype, x.device)
    w, mu = model.classifier.weight.detach(), model.classifier.bias.detach()
    y0 = model.open(x).detach()

    def logits_fn(p: Params, y: torch.Tensor) -> torch.Tensor:
        return functional_call(prop, p, (y,)).flatten(1) @ w.T + mu

    def objective(p: Params) -> torch.Tensor:
        with torch.no_grad():
            return hypothesis_loss(logits_fn(p, y0), labels) + (pre.reg(p) if alpha else 0.0)

    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    f0 = hypothesis_loss(logits_fn(p, y0), labels) + (pre.reg(p) if alpha else 0.0)
    grad = dict(zip(p, torch.autograd.grad(f0, list(p.values()))))

    n_c = max(1, round(curvature_fraction * len(labels)))
    idx = torch.randperm(len(labels), generator=generator)[:n_c]
    yc = y0[idx]
    logits_c, vjp_fn = vjp(lambda q: logits_fn(q, yc), params)
    logits_c = logits_c.detach()

    def matvec(v: Params) -> Params:
        _, jv = jvp(lambda q: logits_fn(q, yc), (params,), (v,))
        (out,) = vjp_fn(loss_hessian_product(logits_c, jv))  # H_S: mean over the sub-sample
        return _axpy(1.0, pre.reg_hvp(v), out) if alpha else out

    d, its = pcg(matvec, {k: -v for k, v in grad.items()}, pre, maxit=cg_its, tol=tol)
    new, t = _armijo(objective, params, d, grad, f0.detach(), armijo_its, max_step)
    with torch.no_grad():
        for k, v in prop.named_parameters():
            v.copy_(new[k])
    return its, t


def fit_newton_cg(model: StableNet, data: Data, config: NewtonCGConfig | None = None,
                  classifier_operator: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  progress: bool = False, desc: str = "newton-cg") -> FitResult:
    """Block coordinate descent (module docstring) for ``config.iterations`` outer iterations; returns the
    best-validation parameters (validation accuracy evaluated after every iteration)."""
    cfg = config or NewtonCGConfig()
    xt, yt, xv, yv = data
    g = generator or torch.Generator().manual_seed(0)
    prop = model.propagation
    p0 = next(prop.parameters())
    pre = _TimePreconditioner(prop.layers, prop.h, cfg.alpha, cfg.precond_shift, p0.dtype, p0.device)
    t0 = time.perf_counter()
    best = (accuracy(model, xv, yv), _snapshot(model))
    history: list[float] = []
    for _ in tqdm(range(cfg.iterations), desc=desc, disable=not progress, leave=False):
        idx = torch.randperm(len(yt), generator=g)[:cfg.batch_size]
        xb, yb = xt[idx], yt[idx]
        with torch.no_grad():
            feats = model.features(xb)
        newton_cg_classifier_step(model, feats, yb, cfg.newton_its, cfg.newton_cg_its, cfg.alpha_w,
                                  classifier_operator, cfg.classifier_shift, cfg.armijo_its, cfg.cg_tol,
                                  cfg.max_step)
        gauss_newton_cg_step(model, xb, yb, cfg.alpha, cfg.gn_cg_its, cfg.cg_tol, cfg.curvature_fraction, pre,
                             cfg.armijo_its, g, cfg.max_step)
        acc = accuracy(model, xv, yv)
        history.append(acc)
        if acc > best[0]:
            best = (acc, _snapshot(model))
    return best_validation_result(model, best, xt, yt, cfg.iterations, t0, history)
