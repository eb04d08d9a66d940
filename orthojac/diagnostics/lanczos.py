"""Matrix-free extreme singular values: Golub–Kahan–Lanczos bidiagonalisation with full
reorthogonalisation, using only Jacobian–vector products (JVP, J v) and vector–Jacobian products (VJP, Jᵀu).

Let A be the per-sample Jacobian oriented tall (A = J when m_out ≥ n_in, else A = Jᵀ), of size M × N,
M ≥ N. From a random unit q₁ ∈ ℝᴺ the recurrences (Golub & Kahan 1965; Golub & Van Loan, *Matrix
Computations*, §10.4)

    α_j p_j = A q_j − β_{j−1} p_{j−1},          β_j q_{j+1} = Aᵀ p_j − α_j q_j

build orthonormal P_j = [p₁ … p_j], Q_j = [q₁ … q_j] and an upper-bidiagonal B_j (diagonal α, superdiagonal
β) with

    A Q_j = P_j B_j,      Aᵀ P_j = Q_j B_jᵀ + β_j q_{j+1} e_jᵀ.

This is the Lanczos process on AᵀA (Q_j spans the Krylov space 𝒦_j(AᵀA, q₁) and B_jᵀB_j is its Lanczos
tridiagonal matrix), but the singular values θ_i of B_j approximate those of A *without squaring*, so
small singular values keep absolute accuracy ≈ eps·σ_max instead of eps·σ_max²/σ_min. For a Ritz
triplet B_j y = θ x, Bᵀ_j x = θ y, the pair (u, v) = (P_j x, Q_j y) satisfies A v = θ u exactly and
‖Aᵀu − θ v‖ = |β_j · x_j|: that residual r bounds the distance from θ to the nearest singular value of
A (|σ − θ| ≤ r). We iterate until the k largest and the k smallest Ritz values each have r ≤ tol·θ_max,
or until j = N (then B_N has exactly A's singular values). Krylov methods find extreme singular values
first; a Ritz value with a small residual is a singular value, but in pathological cases (a starting
vector nearly orthogonal to a singular vector) a smaller one may be found only later.

Every vector is orthogonalised twice against all previous ones (classical Gram–Schmidt, twice), which
costs O(jN) per step and stores P and Q (memory ≈ 2·j·max(M, N) numbers per sample). A breakdown
(β_j or α_j ≈ 0: an invariant subspace, e.g. at every step for an orthogonal J) continues with a fresh
random vector orthogonal to the basis, so the process never stalls. The whole batch runs together; one
forward pass of ``fn`` serves every product (:func:`jvp_vjp`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .spectrum import SpectrumResult, check_input, frozen_parametrizations, math_attention

__all__ = ["lanczos_singular_values", "jvp_vjp"]


def jvp_vjp(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
            ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor], torch.Size]:
    """Linearise ``fn`` at the batch ``x`` with one forward pass and return (jv, vj, output shape):
    ``jv(v)`` maps flattened tangents (B, n_in) to (B, m_out) = per-sample J_b v_b, ``vj(u)`` maps (B, m_out)
    to (B, n_in) = J_bᵀ u_b (samples are independent, so batched products are the per-sample ones).

    VJPs are reverse passes through the stored graph. JVPs use the double-backward identity: g(w) = Jᵀw is
    linear in w, so ∂⟨g(w), v⟩/∂w = J v — one more reverse pass through the graph of g (built once with
    ``create_graph=True``), much cheaper here than ``torch.func.jvp`` (which re-runs the forward) or
    ``torch.func.linearize`` (which traces it). Attention runs on its MATH backend (twice differentiable).
    Functions whose ops lack double backward fall back to ``torch.func.jvp``; functions with neither raise
    ``ValueError``."""
    x = x.detach()
    b = x.shape[0]
    with frozen_parametrizations(fn), torch.enable_grad(), math_attention():
        xr = x.requires_grad_(True)
        y = fn(xr)
        w = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, xr, w, create_graph=True)
    out_shape = y.shape
    double_backward = g.requires_grad

    def jv(v: torch.Tensor) -> torch.Tensor:
        t = v.reshape(x.shape)
        if double_backward:
            try:
                (r,) = torch.autograd.grad(g, w, t, retain_graph=True, allow_unused=True)
                return (torch.zeros(out_shape, dtype=x.dtype, device=x.device) if r is None else r).reshape(b, -1)
            except RuntimeError:  # an op without double backward: fall through to forward mode
                pass
        try:
            with frozen_parametrizations(fn), torch.enable_grad(), math_attention():
                return torch.func.jvp(fn, (x.detach(),), (t,))[1].reshape(b, -1)
        except (RuntimeError, NotImplementedError) as e:
            raise ValueError(f"lanczos needs Jacobian-vector products, but fn supports neither double backward nor "
                             f"forward-mode AD ({e}); use method='exact'") from e

    def vj(u: torch.Tensor) -> torch.Tensor:
        (r,) = torch.autograd.grad(y, xr, u.reshape(out_shape), retain_graph=True)
        return r.reshape(b, -1)

    return jv, vj, out_shape


def _orthogonalise(r: torch.Tensor, basis: torch.Tensor, j: int) -> torch.Tensor:
    """Remove from r (B, N) its components along the first j rows of basis (B, J, N); twice (CGS2)."""
    if j == 0:
        return r
    v = basis[:, :j]
    for _ in range(2):
        r = r - torch.einsum("bjn,bj->bn", v, torch.einsum("bjn,bn->bj", v, r))
    return r


def _next_vector(r: torch.Tensor, basis: torch.Tensor, j: int, scale: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthogonalise r against basis[:, :j], return (unit vector, norm). Where the norm is at round-off
    level (≤ 100·eps·scale: breakdown) the norm is set to 0 and the vector replaced by a random unit vector
    orthogonal to the basis."""
    r = _orthogonalise(r, basis, j)
    nrm = r.norm(dim=-1)
    eps = torch.finfo(r.dtype).eps
    broke = nrm <= 100 * eps * scale
    if broke.any():
        fresh = torch.randn(r.shape, generator=gen, dtype=r.dtype).to(r.device)
        r = torch.where(broke[:, None], fresh, r)
        nrm = torch.where(broke, torch.zeros_like(nrm), nrm)
    # normalise, then one more pass (a small norm amplifies the round-off left along the basis)
    r = r / r.norm(dim=-1, keepdim=True)
    r = _orthogonalise(r, basis, j)
    return r / r.norm(dim=-1, keepdim=True), nrm


def _ritz(alpha: torch.Tensor, beta: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values θ (B, j) descending of the upper-bidiagonal B_j (float64) and the residual bounds
    |β_j x_j| of each Ritz triplet."""
    bmat = torch.diag_embed(alpha[:, :j].double())
    if j > 1:
        bmat = bmat + torch.diag_embed(beta[:, : j - 1].double(), offset=1)
    x, theta, _ = torch.linalg.svd(bmat)
    res = (beta[:, j - 1].double()[:, None] * x[:, -1, :]).abs()
    return theta, res


def lanczos_singular_values(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    k: int,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> SpectrumResult:
    """The k largest and k smallest singular values of every per-sample Jacobian of ``fn`` at ``x``
    (see the module docstring for the method and the meaning of ``tol``).

    Returns a :class:`~orthojac.diagnostics.spectrum.SpectrumResult` whose ``singular_values`` (B, 2k) are
    the k largest followed by the k smallest Ritz values (descending; the whole spectrum, ``complete``, when
    2k ≥ N or the Krylov space filled ℝᴺ), with ``info``: ``iterations``, ``residuals`` (B, 2k) bounds on
    |σ − θ|, ``converged`` (B,) and ``tol``."""
    with frozen_parametrizations(fn):  # parametrised weights computed once for the whole call
        return _lanczos(fn, x, k, tol, max_iter, seed, progress)


def _lanczos(fn, x, k, tol, max_iter, seed, progress) -> SpectrumResult:
    n_in, m_out, _ = check_input(fn, x)
    big_n = min(n_in, m_out)
    if not isinstance(k, int) or k < 1 or k > big_n:
        raise ValueError(f"k must be an integer in [1, min(n_in, m_out)] = [1, {big_n}], got {k!r}")
    dtype, dev, b = x.dtype, x.device, x.shape[0]
    if tol is None:
        tol = 1e-10 if dtype == torch.float64 else 1e-5
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if max_iter is None:
        max_iter = min(big_n, max(20 * k, 300))
    max_iter = max(1, min(max_iter, big_n))
    jv, vj, _ = jvp_vjp(fn, x)
    tall_is_j = m_out >= n_in
    a_mul, at_mul = (jv, vj) if tall_is_j else (vj, jv)
    big_m = max(n_in, m_out)

    gen = torch.Generator().manual_seed(seed)
    qs = torch.zeros(b, max_iter + 1, big_n, dtype=dtype, device=dev)
    ps = torch.zeros(b, max_iter, big_m, dtype=dtype, device=dev)
    alpha = torch.zeros(b, max_iter, dtype=dtype, device=dev)
    beta = torch.zeros(b, max_iter, dtype=dtype, device=dev)
    scale = torch.zeros(b, dtype=dtype, device=dev)
    q = torch.randn(b, big_n, generator=gen, dtype=dtype).to(dev)
    qs[:, 0] = q / q.norm(dim=-1, keepdim=True)

    theta = res = None
    converged = torch.zeros(b, dtype=torch.bool, device=dev)
    check_at = max(2 * k, 4)
    iterator = range(max_iter)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="lanczos", leave=False)
    j = 0
    with torch.no_grad():
        for j in iterator:
            p = a_mul(qs[:, j])
            if j > 0:
                p = p - beta[:, j - 1, None] * ps[:, j - 1]
            scale = torch.maximum(scale, p.norm(dim=-1))
            ps[:, j], alpha[:, j] = _next_vector(p, ps, j, scale, gen)
            r = at_mul(ps[:, j]) - alpha[:, j, None] * qs[:, j]
            scale = torch.maximum(scale, r.norm(dim=-1))
            if j + 1 < big_n:
                qs[:, j + 1], beta[:, j] = _next_vector(r, qs, j + 1, scale, gen)
            else:  # the Krylov space is all of ℝᴺ: B_N carries A's exact singular values
                beta[:, j] = 0
            steps = j + 1
            if steps == max_iter or steps >= check_at:
                theta, res = _ritz(alpha, beta, steps)
                kk = min(k, steps)
                ext = torch.cat([res[:, :kk], res[:, -kk:]], dim=-1)
                converged = (ext <= tol * theta[:, :1]).all(dim=-1) & (steps >= min(2 * k, big_n))
                if converged.all():
                    break
                check_at = steps + max(2, steps // 10)
    steps = j + 1
    if theta is None:  # pragma: no cover - the loop always computes Ritz values at its last step
        theta, res = _ritz(alpha, beta, steps)
    complete = steps == big_n  # B_N has exactly the singular values of A
    if 2 * k >= steps:
        s, r = theta, res
    else:
        s = torch.cat([theta[:, :k], theta[:, -k:]], dim=-1)
        r = torch.cat([res[:, :k], res[:, -k:]], dim=-1)
    if not converged.all() and steps < big_n:
        worst = (r / theta[:, :1]).max().item()
        warnings.warn(f"lanczos: not converged after {steps} iterations (worst relative residual {worst:.2e} > "
                      f"tol {tol:.1e}); raise max_iter", RuntimeWarning, stacklevel=2)
    info = {"iterations": steps, "residuals": r.to(dtype), "converged": converged | complete, "tol": tol}
    return SpectrumResult(s.to(dtype), "lanczos", n_in, m_out, k, complete and 2 * k >= big_n, info)
