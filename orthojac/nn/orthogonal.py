"""How a layer gets an orthogonal weight: one policy argument, the same for every layer.

A layer asks for "an orthogonal n×n matrix" (or an h×n matrix with orthonormal rows, h ≤ n, BBᵀ = I_h)
through :func:`register_orthogonal`. The ``policy`` decides what happens next:

``"init"``
    A free ``nn.Parameter`` initialised on the manifold (``init``: QR of a Gaussian matrix with the signs
    fixed — Haar measure —, the Cayley transform Q = (I − A)⁻¹(I + A) of a random skew matrix A, or the
    identity). Training may move it away; pull it back with
    :func:`orthojac.regularizers.orthogonality` (α·Σ‖BBᵀ − I‖²_F) if wanted.
``"exact"``
    The weight is kept on O(n) (or on the Stiefel manifold of orthonormal rows). Two kinds of map:

    * ``map="riemannian"`` (the default): the weight is a plain ``nn.Parameter`` used as is by the forward
      pass — a plain layer's cost — and is put back on the manifold by a *retraction* after every optimiser
      step, W ← R(W + ΔW), batched over all constrained weights of the same shape (one ``bmm`` chain per
      shape, not one call per layer). This is retraction-based Riemannian optimisation (Absil, Mahony &
      Sepulchre, *Optimization Algorithms on Matrix Manifolds*, 2008, §4.1): any optimiser's step is a
      step in the ambient space, and R maps it back. The retraction is the **polar factor**
      R(X) = X(XᵀX)^{-1/2}, the nearest orthogonal matrix, computed by Newton–Schulz iterations
      X ← X(3I − XᵀX)/2 (Björck & Bowie 1971; Higham, *Functions of Matrices*, §8.3) until the error bound
      says machine precision is reached, or by QR (``method="qr"``: R(X) = qf(X), signs fixed). It runs
      from a global optimiser step hook (``torch.optim.optimizer.register_optimizer_step_post_hook``), so it
      works with every ``torch.optim`` optimiser and the unchanged trainer; a forward pre-hook retracts any
      weight changed since its last retraction some other way (``load_state_dict``, manual edits), so the
      forward pass always sees an orthogonal matrix. ``orthojac.optim`` configures it (``every``, ``method``).
    * ``map="cayley"``, ``"matrix_exp"`` or ``"householder"``: PyTorch's own ``parametrizations.orthogonal``
      (dynamic trivialisation) registered with :mod:`torch.nn.utils.parametrize`; the map is evaluated at
      every forward pass (3–30× a plain layer's cost, see benchmarks/RESULTS.md).

Every module that owns constrained weights lists their names in ``orthogonal_weight_names``; the
regulariser and :func:`orthojac.diagnostics.orthogonality_defect` find them that way (duck typing, so the
diagnostics need not import this package).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrizations
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..claims import constrained_weights  # the one declaration walk, shared with diagnostics

__all__ = [
    "POLICIES",
    "INIT_METHODS",
    "EXACT_MAPS",
    "orthogonal_init_",
    "register_orthogonal",
    "constrained_weights",
    "orthogonality_error",
    "check_policy",
    "RETRACTIONS",
    "retract_",
    "configure_retraction",
    "riemannian_weights",
]

POLICIES = ("init", "exact")
INIT_METHODS = ("qr", "cayley", "identity")
RETRACTIONS = ("polar", "qr")
EXACT_MAPS: dict[str, Callable[[nn.Module, str], None]] = {
    "riemannian": lambda m, name: _register_riemannian(m, name),
    "cayley": lambda m, name: parametrizations.orthogonal(m, name, orthogonal_map="cayley"),
    "matrix_exp": lambda m, name: parametrizations.orthogonal(m, name, orthogonal_map="matrix_exp"),
    "householder": lambda m, name: parametrizations.orthogonal(m, name, orthogonal_map="householder"),
}


def check_policy(policy: str, exact_map: str = "riemannian", init: str = "qr") -> None:
    """Raise ``ValueError`` naming the allowed values when a policy/map/init name is unknown."""
    if policy not in POLICIES:
        raise ValueError(f"orthogonal={policy!r} is not a policy; choose one of {POLICIES}")
    if exact_map not in EXACT_MAPS:
        raise ValueError(f"orthogonal_map={exact_map!r} is unknown; choose one of {tuple(EXACT_MAPS)}")
    if init not in INIT_METHODS:
        raise ValueError(f"orthogonal_init={init!r} is unknown; choose one of {INIT_METHODS}")


def _fix_shape(rows: int, cols: int) -> tuple[int, int, bool]:
    """Work with a tall-or-square n×k (n ≥ k) matrix and remember whether to transpose back."""
    return (cols, rows, True) if rows < cols else (rows, cols, False)


@torch.no_grad()
def orthogonal_init_(
    weight: torch.Tensor, method: str = "qr", generator: torch.Generator | None = None, scale: float = 1.0
) -> torch.Tensor:
    """Fill a (…, rows, cols) tensor in place with orthonormal rows (rows ≤ cols) or columns (rows > cols).

    * ``"qr"``: Q of the QR factorisation of a standard Gaussian matrix, columns multiplied by
      sign(diag R) — Haar-distributed;
    * ``"cayley"``: Q = (I − A)⁻¹(I + A) with A = (G − Gᵀ)·scale/√(2n), G Gaussian (then the first k columns);
    * ``"identity"``: the (rectangular) identity.
    """
    if weight.ndim < 2:
        raise ValueError(f"an orthogonal weight needs at least 2 dimensions, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape[-2:]
    n, k, transpose = _fix_shape(rows, cols)
    batch = weight.shape[:-2]
    dtype = weight.dtype if weight.dtype.is_floating_point else torch.get_default_dtype()
    if method == "identity":
        q = torch.eye(n, k, dtype=torch.float64).expand(*batch, n, k)
    elif method == "qr":
        g = torch.randn(*batch, n, k, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        d = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
        d[d == 0] = 1.0
        q = q * d.unsqueeze(-2)
    elif method == "cayley":
        g = torch.randn(*batch, n, n, generator=generator, dtype=torch.float64)
        a = (g - g.mT) * (scale / (2.0 * n) ** 0.5)
        eye = torch.eye(n, dtype=torch.float64)
        q = torch.linalg.solve(eye - a, eye + a)[..., :k]
    else:
        raise ValueError(f"orthogonal_init={method!r} is unknown; choose one of {INIT_METHODS}")
    if transpose:
        q = q.mT
    weight.copy_(q.to(dtype))
    return weight


def register_orthogonal(
    module: nn.Module,
    name: str,
    rows: int,
    cols: int,
    policy: str = "init",
    init: str = "qr",
    exact_map: str = "riemannian",
    generator: torch.Generator | None = None,
    value: torch.Tensor | None = None,
) -> None:
    """Give ``module`` a weight ``name`` of shape (rows, cols) with orthonormal rows (rows ≤ cols) or
    columns, initialised by ``init`` (or set to ``value``), and kept so under ``policy="exact"``."""
    check_policy(policy, exact_map, init)
    w = torch.empty(rows, cols)
    if value is not None:
        w.copy_(value)
    else:
        orthogonal_init_(w, init, generator)
    module.register_parameter(name, nn.Parameter(w))
    if policy == "exact":
        EXACT_MAPS[exact_map](module, name)
    names = tuple(getattr(module, "orthogonal_weight_names", ()))
    module.orthogonal_weight_names = (*names, name)


def orthogonality_error(w: torch.Tensor) -> torch.Tensor:
    """‖WWᵀ − I‖_F for rows ≤ cols, ‖WᵀW − I‖_F otherwise (batched over leading dimensions)."""
    rows, cols = w.shape[-2:]
    g = w @ w.mT if rows <= cols else w.mT @ w
    eye = torch.eye(g.shape[-1], dtype=w.dtype, device=w.device)
    return torch.linalg.matrix_norm(g - eye)


# ---------------------------------------------------------------- the "riemannian" map: retract after each step
#
# State lives in attributes of the Parameter object (cheap to read in the step hook):
#   _oj_manifold  True for a weight kept on the manifold by retraction
#   _oj_version   the tensor's ``_version`` right after its last retraction (or accepted skipped step)
#   _oj_every, _oj_method, _oj_tol, _oj_steps   the retraction schedule (see configure_retraction)
# ``copy.deepcopy`` drops Parameter attributes; the owning module keeps the schedule in ``_riemannian_cfg`` and
# its forward pre-hook re-tags (and retracts) a weight it finds untagged, so a copy is still exact.

_DEFAULT_CFG: dict = {"every": 1, "method": "polar", "tol": None}


def _tall(w: torch.Tensor) -> torch.Tensor:
    """A view with at least as many rows as columns (the transpose of a wide matrix)."""
    return w.mT if w.shape[-2] < w.shape[-1] else w


def _qr_retraction(x: torch.Tensor) -> torch.Tensor:
    """R(X) = qf(X): the Q factor of X = QR with diag R > 0 (batched, tall X; real or complex)."""
    q, r = torch.linalg.qr(x)
    s = torch.sgn(torch.diagonal(r, dim1=-2, dim2=-1))
    s = torch.where(s == 0, torch.ones_like(s), s)
    return q * s.unsqueeze(-2)


_WORKSPACE = threading.local()
_WORKSPACE_ENTRIES = 32


def _buffer(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A reusable uninitialised buffer of ``shape`` for the retraction's temporaries (one per name, matrix
    shape, dtype and device, per thread; grown to the largest batch asked for, at most one chunk).

    Why: a retraction step allocates its iterates and Gram matrices afresh, and on a CPU each new multi-MiB
    tensor is fresh memory from the OS whose first touch page-faults; measured on 2 CPU cores at width 64,
    depth 100, that was 2–3 ms of a 6–8 ms retraction. Reused buffers cost five chunks (``_CHUNK_BYTES``
    each, or one matrix when it is larger: the stacked weights, two iterates, the Gram matrix and E²) per
    distinct weight shape. At most ``_WORKSPACE_ENTRIES`` buffers are kept per thread; past that, buffers
    for new shapes are allocated afresh each time (slower, never wrong), so a model with many weight shapes
    can neither make the cache thrash nor grow it without bound."""
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (name, shape[1:], like.dtype, like.device)
    buf = cache.get(key)
    if buf is None or buf.shape[0] < shape[0]:
        buf = torch.empty(shape, dtype=like.dtype, device=like.device)
        if key in cache or len(cache) < _WORKSPACE_ENTRIES:
            cache[key] = buf
    return buf[:shape[0]]


def _frobenius(e: torch.Tensor) -> torch.Tensor:
    """‖E‖_F per matrix of a batch. A complex batch goes through its real view, (…, n, n, 2): one real
    reduction. ``vector_norm`` on the complex tensor itself took 40 ms for 544 complex 64×64 matrices on one
    CPU thread, about as long as the three products of a quintic step together."""
    if e.is_complex():
        return torch.linalg.vector_norm(torch.view_as_real(e), dim=(-3, -2, -1))
    return torch.linalg.vector_norm(e, dim=(-2, -1))


def _gram_error(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E = YᴴY − I and d = ‖E‖_F per matrix of a batch. Since E is Hermitian,
    ‖E‖₂ ≤ ‖E‖_F ≤ ‖E‖_∞ (‖E‖_F² ≤ ‖E‖₁‖E‖_∞ = ‖E‖_∞²), so d bounds the spectral error and is never looser
    than the largest absolute row sum; it is also one reduction kernel instead of three."""
    e = torch.matmul(y.mH, y, out=_buffer("gram", (y.shape[0], y.shape[-1], y.shape[-1]), y))
    e.diagonal(dim1=-2, dim2=-1).sub_(1)
    return e, _frobenius(e)


def _refine_diagonal_(e: torch.Tensor, y: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Recompute E's diagonal, ‖yᵢ‖² − 1, by an elementwise square (into ``scratch``, shaped like y) and a
    sum reduction. The matrix product sums the n squares with an error of up to 9e-7 at n = 256 in float32
    (measured against float64), which the last Newton–Schulz step would copy into the result; the reduction's
    error is ≤ 2.4e-7 for n = 64–1024. Used before the last step only (an O(n²) pass per matrix, ≈ 1/6 of
    the product at n = 256)."""
    squares = torch.mul(y, y.conj(), out=scratch).sum(-2)
    e.diagonal(dim1=-2, dim2=-1).copy_(squares.sub_(1))
    return e


def _square(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E² and the bound ‖E‖₂ ≤ ‖E²‖_F^{1/2} per matrix (‖E‖₂² = ‖E²‖₂ ≤ ‖E²‖_F, E Hermitian).

    Why: ‖E‖_F over-estimates ‖E‖₂ by up to √n; for the nearly random E that an Adam step leaves
    (eigenvalues spread like a semicircle) by about √n/2 — 8× at n = 256 —, while ‖E²‖_F^{1/2} does by
    about (2n)^{1/4}/2 — 2.4× at n = 256. The quintic step needs E² anyway."""
    e2 = torch.matmul(e, e, out=_buffer("scratch", e.shape, e))
    return e2, _frobenius(e2).sqrt_()


def _newton_schulz(y: torch.Tensor, e: torch.Tensor, e2: torch.Tensor | None = None,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """Y + Y·C with C = −½E (cubic step) or, given E², C = −½(E − ¾E²) (quintic step), i.e. Y·P with
    P = I − ½E (+ ⅜E²). Adding the small correction Y·C to Y, rather than multiplying by P (whose diagonal,
    ≈ 1, would round away E's low bits), keeps the result's ‖YᵀY − I‖₂ at the rounding level (measured 4e-7
    against 7e-7 at n = 64, float32, both without :func:`_refine_diagonal_`). The factor −½ is the product's
    own ``alpha`` (no pass over C), and −¾, ½ are exact in binary. E is overwritten by the quintic step;
    ``out`` (not Y) receives the result."""
    c = e if e2 is None else e.add_(e2, alpha=-0.75)
    return torch.baddbmm(y, y, c, alpha=-0.5, out=out)


def _rounding_level(x: torch.Tensor) -> float:
    """A bound on ‖WᵀW − I‖_F of a retraction's own output in x's dtype: its ‖·‖_∞, which is ≥ ‖·‖_F for
    a symmetric matrix, measured ≤ 0.5·eps·n (n = columns, 8 ≤ n ≤ 256, float32 and float64); a matrix
    within eps·n counts as a retraction's output."""
    return torch.finfo(x.dtype).eps * x.shape[-1]


def _cubic_bound(d: float) -> float:
    """Bound on |δ′| after Y ← Y(I − ½E) when |δ| ≤ d: δ′ = (1 + δ)(1 − δ/2)² − 1 = −¾δ² + ¼δ³."""
    return 0.75 * d**2 + 0.25 * d**3


def _quintic_bound(d: float) -> float:
    """Bound on |δ′| after Y ← Y(I − ½E + ⅜E²) when |δ| ≤ d:
    δ′ = (1 + δ)(1 − δ/2 + 3δ²/8)² − 1 = ⅝δ³ − (15/64)δ⁴ + (9/64)δ⁵."""
    return 0.625 * d**3 + 15 / 64 * d**4 + 9 / 64 * d**5


CUBIC_BELOW = 0.06
"""Below this ‖E‖_F the polar retraction takes a cubic step (2 products) and expects the next one to be the
last: measured after Adam steps at widths 64–256, a cubic step maps ‖E‖_F = d to 0.1–0.2·d², whose cubic
bound is ≤ 4·eps (float32) when d ≲ 0.06. Above it, E² (a tighter bound, and a quintic step) pays for
itself. Only the number of products depends on it, never the accuracy."""


def _polar_retraction(x: torch.Tensor, tol: float, keep_exact: bool = False, max_iter: int = 10) -> torch.Tensor:
    r"""R(X) = X(XᵀX)^{-1/2}, the polar factor of a batch of tall matrices, by Newton–Schulz iterations.

    With E = YᵀY − I and the squared singular values of Y written 1 + δᵢ (so ‖E‖₂ = maxᵢ|δᵢ|):

    * the cubic iteration Y ← Y(3I − YᵀY)/2 = Y − ½·Y·E maps δ to −¾δ² + ¼δ³ (two products: the Gram
      matrix and Y·E);
    * the quintic one Y ← Y(I − ½E + ⅜E²) (the degree-2 Taylor polynomial of (I + E)^{-1/2}) maps δ to
      ⅝δ³ − (15/64)δ⁴ + (9/64)δ⁵ (three products: the Gram matrix, E², Y·P).

    The error after a step is bounded by :func:`_cubic_bound` / :func:`_quintic_bound` of any d ≥ ‖E‖₂:
    d = ‖E‖_F from the Gram matrix, or the tighter d = ‖E²‖_F^{1/2} once E² is computed (:func:`_square`).
    Each iteration, with d = ‖E‖_F: if the cubic bound is ≤ ``tol``, a cubic step ends it; if d is below
    :data:`CUBIC_BELOW`, a quintic step ends it when its bound allows, else a cubic step is taken; otherwise
    E² tightens d, and a quintic step is taken (the last one if its bound allows). Before the last step E's
    diagonal is recomputed accurately (:func:`_refine_diagonal_`). Bounds hold in exact arithmetic;
    rounding adds 2–4e-7 to ‖E‖₂ in float32 (n = 64–256). With ``keep_exact``, matrices already within
    rounding of the manifold (:func:`_rounding_level`) are returned unchanged (not used after optimiser
    steps: tiny steps would accumulate up to that level). Matrices with d ≥ ½ (the tighter d; far from the
    manifold, e.g. after many skipped retractions) are retracted by QR instead (then one iteration polishes
    QR's rounding).
    """
    e, d = _gram_error(x)
    keep = d <= (max(tol, _rounding_level(x)) if keep_exact else tol)
    if bool(keep.all()):
        return x
    far = torch.zeros_like(keep)
    y = x
    iterates = (_buffer("iterate0", x.shape, x), _buffer("iterate1", x.shape, x))  # ping-pong, never x

    def worst() -> float:
        return float(torch.where(keep | far, torch.zeros_like(d), d).max())

    for it in range(max_iter):
        out = iterates[it % 2]
        if it > 0:
            e, d = _gram_error(y)
        dmax = worst()
        if dmax <= tol:
            break
        if _cubic_bound(dmax) <= tol:
            y = _newton_schulz(y, _refine_diagonal_(e, y, out), out=out)
            break
        if dmax < CUBIC_BELOW and _quintic_bound(dmax) > tol:
            y = _newton_schulz(y, e, out=out)
            continue
        e2, d2 = _square(e)
        d = torch.minimum(d, d2)
        if it == 0:
            far = (d >= 0.5) & ~keep
        dmax = worst()
        if dmax <= tol:  # E² showed ‖E‖₂ ≤ tol (or every matrix left is far: QR below)
            break
        last = _quintic_bound(dmax) <= tol
        y = _newton_schulz(y, _refine_diagonal_(e, y, out) if last else e, e2, out=out)
        if last:
            break
    if bool(keep.any()):
        y = torch.where(keep[:, None, None], x, y)
    if bool(far.any()):  # QR, then one Newton–Schulz step to polish QR's rounding (≈ 5x polar's in float32)
        q = _qr_retraction(x[far])
        y = y.clone() if y is x else y  # x itself is returned only when nothing changed
        y[far] = _newton_schulz(q, _gram_error(q)[0])
    return y


@torch.no_grad()
def retract_(tensors: Iterable[torch.Tensor], method: str = "polar", tol: float | None = None,
             keep_exact: bool = False) -> None:
    r"""Put every tensor (a (rows, cols) matrix, or a batch (…, rows, cols) of them; real, or complex for the
    unitary case with ᵀ read as ᴴ) back on its manifold in place: orthonormal columns
    (rows ≥ cols) or rows (rows < cols) by the polar factor (``method="polar"``, Newton–Schulz, the nearest
    orthogonal matrix in every unitarily invariant norm) or QR (``"qr"``). Tensors of the same shape, dtype
    and device are retracted together in one batched call. ``tol`` bounds ‖WᵀW − I‖₂ in exact arithmetic for
    the polar method; the default, :data:`DEFAULT_TOL_EPS`·eps (eps the dtype's machine epsilon; 4.8e-7 in
    float32), is about the rounding error the computed result has anyway (‖WᵀW − I‖₂ = 2–4e-7 measured in
    float32 at n = 64–256), so iterating further would not be seen, and the two together stay below 1e-6.
    ``keep_exact``: leave tensors already within rounding of the manifold (‖WᵀW − I‖_F ≤ eps·n, what a
    retraction outputs) bit-for-bit unchanged — used for weights changed outside an optimiser step (a
    checkpoint loaded on resume must not move)."""
    if method not in RETRACTIONS:
        raise ValueError(f"retraction method={method!r} is unknown; choose one of {RETRACTIONS}")
    groups: dict[tuple, list[torch.Tensor]] = {}
    for w in tensors:
        if w.ndim < 2:
            raise ValueError(f"retract_ expects matrices (at least 2-D), got shape {tuple(w.shape)}")
        groups.setdefault((w.shape, w.dtype, w.device), []).append(w)
    for (shape, dtype, _), group in groups.items():
        # chunks of about _CHUNK_BYTES bound the temporaries (Gram, iterates) whatever the number of layers
        per = max(1, _CHUNK_BYTES // (math.prod(shape) * group[0].element_size()))
        for i in range(0, len(group), per):
            _retract_chunk(group[i:i + per], shape, dtype, method, tol, keep_exact)


_CHUNK_BYTES = 4 * 2**20
DEFAULT_TOL_EPS = 4  # the polar retraction's default tol, in units of the dtype's machine epsilon


def _retract_chunk(ws: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype, method: str,
                   tol: float | None, keep_exact: bool) -> None:
    """Retract tensors of one shape/dtype/device together (one batched chain of products)."""
    rows, cols = shape[-2:]
    if len(shape) == 2 and rows >= cols:  # the common case: tall or square matrices, stacked as they are
        dst = ws
        x = torch.stack(ws, out=_buffer("stack", (len(ws), rows, cols), ws[0]))
    else:
        dst = [_tall(w) for w in ws]
        n, k = max(rows, cols), min(rows, cols)
        batch = len(ws) * math.prod(shape[:-2])
        x = torch.cat([d.reshape(-1, n, k) for d in dst], out=_buffer("stack", (batch, n, k), ws[0]))
    if method == "qr":
        keep = _gram_error(x)[1] <= _rounding_level(x) if keep_exact else torch.zeros(x.shape[0], dtype=torch.bool)
        y = x if bool(keep.all()) else torch.where(keep[:, None, None].to(x.device), x, _qr_retraction(x))
    else:
        y = _polar_retraction(x, DEFAULT_TOL_EPS * torch.finfo(dtype).eps if tol is None else tol, keep_exact)
    if y is not x:
        src = y.unbind(0) if dst is ws else [yi.reshape(d.shape) for d, yi in zip(dst, y.split(x.shape[0] // len(ws)))]
        torch._foreach_copy_(dst, src)
    for w in ws:
        w._oj_manifold = True
        w._oj_version = w._version


def _cfg_of(p: torch.Tensor) -> tuple[int, str, float | None]:
    return getattr(p, "_oj_every", 1), getattr(p, "_oj_method", "polar"), getattr(p, "_oj_tol", None)


def _retract_params(params: list[torch.Tensor], keep_exact: bool = False) -> None:
    """Retract params grouped by their (method, tol) configuration."""
    by_cfg: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        _, method, tol = _cfg_of(p)
        by_cfg.setdefault((method, tol), []).append(p)
    for (method, tol), ps in by_cfg.items():
        retract_(ps, method, tol, keep_exact)


def _after_optimizer_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Global optimiser step post-hook: retract the manifold weights that this step changed, batched.

    A weight whose schedule says ``every=k > 1`` is retracted on every k-th step that changed it; on the
    other steps its change is accepted as is (it then drifts off the manifold, see configure_retraction)."""
    due: list[torch.Tensor] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not getattr(p, "_oj_manifold", False) or p._version == p._oj_version:
                continue
            every = _cfg_of(p)[0]
            if every == 1:
                due.append(p)
                continue
            p._oj_steps = getattr(p, "_oj_steps", 0) + 1
            if p._oj_steps % every == 0:
                due.append(p)
            else:
                p._oj_version = p._version
    if due:
        _retract_params(due)


_STEP_HOOK = register_optimizer_step_post_hook(_after_optimizer_step)


def _tag(p: torch.Tensor, cfg: dict) -> None:
    p._oj_manifold = True
    p._oj_every, p._oj_method, p._oj_tol = cfg["every"], cfg["method"], cfg["tol"]


def _retract_changed(module: nn.Module, args) -> None:
    """Forward pre-hook: retract any of the module's manifold weights changed since its last retraction by
    something other than an optimiser step (``load_state_dict``, ``copy_``, a deep copy), so the forward pass
    always sees an orthogonal weight. Costs two attribute reads per weight when nothing changed.

    Inside ``torch.compile`` and ``torch.func`` transforms (which forbid mutating captured tensors) the weight
    is used as it is; retract before entering them (``retract_``) if it was changed outside an optimiser."""
    if torch.compiler.is_compiling():
        return
    params = module._parameters
    stale = [p for name in module._riemannian_names
             if isinstance(p := params.get(name), nn.Parameter) and getattr(p, "_oj_version", None) != p._version]
    if not stale or torch._C._functorch.peek_interpreter_stack() is not None:
        return
    for p in stale:
        if not getattr(p, "_oj_manifold", False):  # e.g. a deep copy: restore the schedule
            _tag(p, module._riemannian_cfg)
    _retract_params(stale, keep_exact=True)


def _register_riemannian(module: nn.Module, name: str) -> None:
    """Mark ``module.<name>`` (a plain Parameter) as kept on the manifold by retraction."""
    p = module._parameters[name]
    cfg = dict(getattr(module, "_riemannian_cfg", _DEFAULT_CFG))
    module._riemannian_cfg = cfg
    _tag(p, cfg)
    p._oj_version = p._version  # initialised on the manifold (to the dtype's rounding)
    names = getattr(module, "_riemannian_names", ())
    if not names:
        module.register_forward_pre_hook(_retract_changed)
    module._riemannian_names = (*names, name)


def riemannian_weights(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Yield (qualified name, parameter) for every weight kept exact by the ``"riemannian"`` map."""
    for prefix, m in model.named_modules():
        for name in getattr(m, "_riemannian_names", ()):
            yield (f"{prefix}.{name}" if prefix else name), m._parameters[name]


def configure_retraction(model: nn.Module, every: int = 1, method: str = "polar", tol: float | None = None) -> None:
    r"""Set the retraction schedule of every ``"riemannian"`` weight in ``model``.

    Args:
        every: retract after every ``every``-th optimiser step that changes the weight. ``1`` (default) keeps
            ‖WᵀW − I‖₂ ≤ tol (plus rounding, 2–4e-7 in float32) at every forward pass. ``k > 1`` amortises the
            retraction's O(n³) cost over k steps; the guarantee then holds only right after every k-th step,
            and in between the weight drifts by the optimiser's steps: ‖WᵀW − I‖₂ ≤ 2‖D‖₂ + ‖D‖₂², with D the
            sum of the (at most k − 1) steps since the last retraction. That is first order in the step size,
            so it is *near*-orthogonality, not exactness; benchmarks/orthogonal_policy.py measures the largest
            error along a trajectory.
        method: ``"polar"`` (Newton–Schulz to the error bound; default) or ``"qr"``.
        tol: the polar method's bound on ‖WᵀW − I‖₂ in exact arithmetic (default: 4·eps, about the rounding level).
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every={every!r}: the retraction period must be an integer ≥ 1")
    if method not in RETRACTIONS:
        raise ValueError(f"retraction method={method!r} is unknown; choose one of {RETRACTIONS}")
    if tol is not None and not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol={tol!r}: must be a positive finite number (or None for the rounding level)")
    cfg = {"every": every, "method": method, "tol": tol}
    for m in model.modules():
        if getattr(m, "_riemannian_names", ()):
            m._riemannian_cfg = dict(cfg)
            for name in m._riemannian_names:
                _tag(m._parameters[name], cfg)
