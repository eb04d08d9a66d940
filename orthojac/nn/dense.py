"""Dense layers whose Jacobian is orthogonal, a partial isometry, or near-orthogonal (arXiv 2508.02882).

Each class states its guarantee as ``jacobian_claim`` (see :mod:`orthojac.claims`); the generic test
``tests/test_claims.py`` checks every registered layer with ``torch.func.jacrev`` in float64.

Formulas (notes §2.3–§4; x ∈ ℝⁿ, applied to the last dimension of any tensor):

* :class:`OrthoResidual` — ``F(x) = x − τ·Bᵀρ(Bx + b)``, BBᵀ = I_h (h ≤ n), ρ′ ∈ {0, 1}.
  DF = I − τBᵀDB with D = diag(ρ′) a 0/1 diagonal, so for τ = 2 (the default)
  (I − 2BᵀDB)ᵀ(I − 2BᵀDB) = I − 4BᵀDB + 4BᵀD(BBᵀ)DB = I: an orthogonal (and symmetric) Jacobian.
  τ = 1 gives a projector (a partial isometry) — only with ``partial=True``.
* :class:`OrthoFeedforward` — ``F(x) = Aᵀσ(Bx + b) + c``, A, B ∈ O(n), σ′ ∈ {−1, +1}:
  DF = Aᵀ·diag(±1)·B, a product of orthogonal matrices. With σ′ ∈ {0, 1} (e.g. ReLU) DF is only a
  partial isometry — only with ``partial=True``.
* :class:`LimitLayer` — ``F(x) = G(x) + ε·M(x)`` with G an orthogonal-Jacobian layer and
  ``M(x) = Uᵀ diag(s) tanh(Vx + d)``, U, V with orthonormal rows, |sᵢ| < 1, so Lip(M) ≤ 1 and by Weyl's
  inequality every singular value of DF = DG + εDM lies in [1 − ε, 1 + ε].
* :class:`PersistentSubspace` — a partial-isometry feedforward layer that keeps r directions isometric
  through any depth (persistent subspace orthogonality, notes §4), by one of two strategies:
  ``"channels"`` (reserve r channels with block-orthogonal weights and the identity activation) or
  ``"bias"`` (block-orthogonal weights, ReLU everywhere, and a bias that keeps the r reserved units active).

**Identity at initialisation** (the default, ``bias_init="identity"``): the bias puts every
pre-activation in a region where the layer is the identity map — the flat (slope-0) region of ρ for the
residual form, the slope +1 region of σ with A = B (and ``c = −Aᵀσ(b)``) for the feedforward form —
provided the pre-activation Bx stays within ``±bias_margin``. Zero-bias deep stacks of these layers do not
train (measured: chance accuracy at depth 200); identity-initialised ones do.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import claims
from .activations import get_activation, slopes_of
from .base import ClaimedModule
from .orthogonal import register_orthogonal

__all__ = ["OrthoResidual", "OrthoFeedforward", "LimitLayer", "PersistentSubspace", "BIAS_INITS"]

BIAS_INITS = ("identity", "zero")
_ZERO_ONE = frozenset({0.0, 1.0})
_PLUS_MINUS = frozenset({-1.0, 1.0})


def _init_bias(
    bias: torch.Tensor, spec: str | float, act: nn.Module, slope: float, margin: float, generator=None
) -> None:
    with torch.no_grad():
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            bias.fill_(float(spec))
        elif spec == "zero":
            bias.zero_()
        elif spec == "identity":
            bias.fill_(act.init_bias(slope, margin))
        else:
            raise ValueError(f"bias_init={spec!r} is unknown; choose one of {BIAS_INITS} or a number")


def _check_slopes(act: nn.Module, allowed: frozenset[float], layer: str, name: Any) -> frozenset[float]:
    s = slopes_of(act)
    if s is None or not s <= allowed:
        raise ValueError(f"{layer}: activation {name!r} has slopes {sorted(s) if s else 'undeclared'}, "
                         f"but this form needs slopes in {sorted(allowed)}")
    return s


class OrthoResidual(ClaimedModule):
    r"""Orthogonal-Jacobian residual layer ``F(x) = x − τ·Bᵀρ(Bx + b)`` (notes §2.4).

    Args:
        dim: n, the width of x.
        hidden: h ≤ n, the number of rows of B (orthonormal rows); default n (square orthogonal B).
        activation: ρ with slopes in {0, 1}: ``"relu"``, ``"relu_k"`` or a :class:`ReLUk` module.
        orthogonal: the policy for B, ``"init"`` or ``"exact"`` (:mod:`orthojac.nn.orthogonal`).
        orthogonal_init: ``"qr"``, ``"cayley"`` or ``"identity"``.
        orthogonal_map: the exact policy's map, ``"riemannian"`` (default: a plain weight retracted after every
            optimiser step, see :mod:`orthojac.nn.orthogonal`), ``"cayley"``, ``"matrix_exp"`` or ``"householder"``.
        bias_init: ``"identity"`` (default: ρ's flat region, F = id while |Bx| ≤ bias_margin), ``"zero"``
            or a number.
        bias_margin: half-width of the pre-activation range that ``bias_init="identity"`` keeps flat.
        partial: allow τ = 1, a partial isometry (projector Jacobian) instead of an orthogonal one.
        step: τ; 2 (orthogonal) by default, 1 when ``partial=True``.
        generator: a ``torch.Generator`` for the random initialisation.
        activation_kwargs: passed to :func:`get_activation` (e.g. ``breakpoints``, ``learnable``).
    """

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        activation: str | nn.Module = "relu",
        *,
        orthogonal: str = "init",
        orthogonal_init: str = "qr",
        orthogonal_map: str = "riemannian",
        bias_init: str | float = "identity",
        bias_margin: float = 3.0,
        partial: bool = False,
        step: float | None = None,
        generator: torch.Generator | None = None,
        activation_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        hidden = dim if hidden is None else hidden
        if dim < 1 or hidden < 1:
            raise ValueError(f"OrthoResidual: dim and hidden must be positive, got dim={dim}, hidden={hidden}")
        if hidden > dim:
            raise ValueError(
                f"OrthoResidual: hidden={hidden} > dim={dim}; B must have orthonormal rows (BBᵀ = I), "
                "which needs hidden ≤ dim. Use hidden ≤ dim."
            )
        self.act = get_activation(activation, **(activation_kwargs or {}))
        _check_slopes(self.act, _ZERO_ONE, "OrthoResidual", activation)
        tau = (1.0 if partial else 2.0) if step is None else float(step)
        if not partial and tau != 2.0:
            raise ValueError(
                f"OrthoResidual: step τ={tau} gives Jacobian singular values {{1, |1 − τ|}}, which is orthogonal "
                "only for τ = 2. Use step=2, or partial=True with step=1 for a partial isometry."
            )
        if partial and tau != 1.0:
            raise ValueError(f"OrthoResidual(partial=True) needs step=1 (a projector Jacobian), got step={tau}")
        self.dim, self.hidden, self.step, self.partial = dim, hidden, tau, partial
        self.policy = orthogonal
        register_orthogonal(self, "weight", hidden, dim, orthogonal, orthogonal_init, orthogonal_map, generator)
        self.bias = nn.Parameter(torch.empty(hidden))
        _init_bias(self.bias, bias_init, self.act, 0.0, bias_margin)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.partial_isometry() if self.partial else claims.orthogonal()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight  # computed once per call under the exact policy
        return x - self.step * F.linear(self.act(F.linear(x, w, self.bias)), w.mT)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, step={self.step}, orthogonal={self.policy!r}"


class OrthoFeedforward(ClaimedModule):
    r"""Orthogonal-Jacobian feedforward layer (no skip connection) ``F(x) = Aᵀσ(Bx + b) + c`` (notes §2.3).

    Args:
        dim: n; A and B are square n×n orthogonal matrices.
        activation: σ with slopes ±1: ``"abs"`` (default), ``"sigma_k"`` or a module. A {0, 1}-slope
            activation (``"relu"``) is refused unless ``partial=True``.
        tied: use one matrix for A and B (A = B, so AᵀB = I at every step; DF = Bᵀ·diag(±1)·B). Tying is the
            default: half the parameters, and the identity at initialisation cannot come apart. ``tied=False``
            gives two matrices, A initialised equal to B; DF = Aᵀ·diag(±1)·B is still orthogonal while A, B ∈
            O(n) (always under ``"exact"``, only at initialisation under ``"init"``). On Fashion-MNIST at depth
            200 (``orthojac reproduce fmnist-depth --archs ortho_feedforward_abs_untied``, docs/fmnist_depth.md)
            the untied form trains as well as the tied one with the depth-scaled learning rate and stays at
            chance with a depth-independent one.
        output_bias: learn the offset c (initialised to −Aᵀσ(b), so F(x) = x at initialisation with
            ``bias_init="identity"``).
        orthogonal, orthogonal_init, orthogonal_map, bias_init, bias_margin, generator,
        activation_kwargs: as in :class:`OrthoResidual`.
        partial: accept a {0, 1}-slope activation; the Jacobian is then a partial isometry.
        hidden: must equal ``dim`` (accepted only to give a clear error).
    """

    def __init__(
        self,
        dim: int,
        activation: str | nn.Module = "abs",
        *,
        tied: bool = True,
        output_bias: bool = True,
        orthogonal: str = "init",
        orthogonal_init: str = "qr",
        orthogonal_map: str = "riemannian",
        bias_init: str | float = "identity",
        bias_margin: float = 3.0,
        partial: bool = False,
        hidden: int | None = None,
        generator: torch.Generator | None = None,
        activation_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if hidden is not None and hidden != dim:
            raise ValueError(
                f"OrthoFeedforward: hidden={hidden} ≠ dim={dim}. Aᵀσ(Bx + b) is orthogonal only for square "
                "orthogonal A, B; use OrthoResidual(dim, hidden=...) for a narrow B with orthonormal rows."
            )
        if dim < 1:
            raise ValueError(f"OrthoFeedforward: dim must be positive, got {dim}")
        self.act = get_activation(activation, **(activation_kwargs or {}))
        s = slopes_of(self.act)
        if partial:
            _check_slopes(self.act, _ZERO_ONE | _PLUS_MINUS, "OrthoFeedforward(partial=True)", activation)
        elif s is not None and s <= _ZERO_ONE and 0.0 in s:
            raise ValueError(
                f"OrthoFeedforward: activation {activation!r} has slopes {{0, 1}}, so Aᵀσ(Bx + b) is only a "
                "partial isometry (singular values 0 and 1) and gradients vanish with depth. Use 'abs' or "
                "'sigma_k' (slopes ±1), OrthoResidual(..., activation='relu'), or pass partial=True."
            )
        else:
            _check_slopes(self.act, _PLUS_MINUS, "OrthoFeedforward", activation)
        self.dim, self.tied, self.partial, self.policy = dim, tied, partial, orthogonal
        register_orthogonal(self, "weight_b", dim, dim, orthogonal, orthogonal_init, orthogonal_map, generator)
        if not tied:
            register_orthogonal(self, "weight_a", dim, dim, orthogonal, orthogonal_init, orthogonal_map,
                                value=self.weight_b.detach())
        self.bias = nn.Parameter(torch.empty(dim))
        # identity at init: pre-activations in σ's slope +1 region (any slope-1 region for partial ReLU)
        _init_bias(self.bias, bias_init, self.act, 1.0, bias_margin)
        if output_bias:
            with torch.no_grad():
                c = -F.linear(self.act(self.bias), self._a().mT)
            self.out_bias = nn.Parameter(c)
        else:
            self.register_parameter("out_bias", None)

    def _a(self) -> torch.Tensor:
        return self.weight_b if self.tied else self.weight_a

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        s = slopes_of(self.act) or frozenset()
        return claims.partial_isometry() if (self.partial and 0.0 in s) else claims.orthogonal()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.weight_b
        a = b if self.tied else self.weight_a
        return F.linear(self.act(F.linear(x, b, self.bias)), a.mT, self.out_bias)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, tied={self.tied}, partial={self.partial}, orthogonal={self.policy!r}"


class LimitLayer(ClaimedModule):
    r"""Limit layer ``F(x) = G(x) + ε·Uᵀ diag(s) tanh(Vx + d)``: singular values in [1 − ε, 1 + ε].

    G is an exact orthogonal-Jacobian layer (``base="residual"``: :class:`OrthoResidual` with ReLU;
    ``base="feedforward"``: :class:`OrthoFeedforward` with |·|). The modulation M has orthonormal-row U, V
    (h×n) that are *always* kept exact by a parametrisation, whatever ``orthogonal`` says for G, and
    s = tanh(r) ∈ (−1, 1)ʰ; tanh is 1-Lipschitz, so Lip(M) ≤ 1 and ‖ε DM‖₂ ≤ ε. Weyl's inequality
    (σᵢ(Q + E) ∈ [σᵢ(Q) − ‖E‖, σᵢ(Q) + ‖E‖]) then puts every singular value of DF in [1 − ε, 1 + ε] whenever
    DG is orthogonal (always under G's exact policy). This is the project's construction of the paper's
    limit models (its Theorem 4.2 is not available); see docs/concepts.md.

    Args:
        dim: n.  eps: ε ∈ [0, 1).  hidden: h ≤ n rows of U, V (default n).
        base: ``"residual"`` or ``"feedforward"``.  **kwargs: passed to G's constructor.
    """

    def __init__(
        self,
        dim: int,
        eps: float = 0.1,
        *,
        hidden: int | None = None,
        base: str = "residual",
        generator: torch.Generator | None = None,
        modulation_map: str = "cayley",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        claims.near_orthogonal(eps)  # validates eps
        hidden = dim if hidden is None else hidden
        if hidden > dim:
            raise ValueError(f"LimitLayer: hidden={hidden} > dim={dim}; U, V need orthonormal rows (hidden ≤ dim)")
        if base == "residual":
            self.base = OrthoResidual(dim, generator=generator, **kwargs)
        elif base == "feedforward":
            self.base = OrthoFeedforward(dim, generator=generator, **kwargs)
        else:
            raise ValueError(f"LimitLayer: base={base!r} is unknown; choose 'residual' or 'feedforward'")
        if getattr(self.base, "partial", False):
            raise ValueError("LimitLayer needs an orthogonal base layer, not a partial isometry")
        self.eps, self.dim, self.hidden = float(eps), dim, hidden
        register_orthogonal(self, "mod_u", hidden, dim, "exact", "qr", modulation_map, generator)
        register_orthogonal(self, "mod_v", hidden, dim, "exact", "qr", modulation_map, generator)
        self.mod_bias = nn.Parameter(torch.zeros(hidden))
        self.mod_scale = nn.Parameter(0.5 * torch.randn(hidden, generator=generator))

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.near_orthogonal(self.eps)

    def modulation(self, x: torch.Tensor) -> torch.Tensor:
        """M(x) = Uᵀ diag(tanh r) tanh(Vx + d), Lip(M) ≤ 1."""
        z = torch.tanh(F.linear(x, self.mod_v, self.mod_bias)) * torch.tanh(self.mod_scale)
        return F.linear(z, self.mod_u.mT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.eps * self.modulation(x)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, hidden={self.hidden}"


class PersistentSubspace(ClaimedModule):
    r"""Partial-isometry layer with a persistent isometric subspace of dimension r (PSO; notes §4, docs/pso.md).

    **Persistent subspace orthogonality (the project's definition).** A stack F_L ∘ … ∘ F_1 has PSO of
    dimension r when there are r-dimensional subspaces V₀, …, V_L of ℝⁿ such that for every layer ℓ and a.e.
    input, the layer Jacobian J_ℓ maps V_{ℓ−1} *isometrically onto* V_ℓ and its transpose maps V_ℓ back
    isometrically onto V_{ℓ−1} (J_ℓ P_{V_{ℓ−1}} = P_{V_ℓ} J_ℓ, with J_ℓ|V_{ℓ−1} an isometry). Then for every
    loss L, ‖∂L/∂x₀‖ ≥ ‖P_{V_L} ∂L/∂x_L‖: the component of the gradient in V_L reaches the input unshrunk,
    at any depth. For partial isometries the converse holds too — the set of gradients whose norm survives
    the whole stack is exactly such a persistent chain (docs/pso.md), so PSO is *necessary* for norm
    preservation.

    **This layer.** ``F(x) = Aᵀρ(Bx + b) + c`` with block-diagonal A = diag(A_r, A_c), B = diag(B_r, B_c)
    (orthogonal blocks of sizes r and n − r), so DF = diag(A_rᵀ D_r B_r, A_cᵀ D_c B_c) and
    V_ℓ = span(e₁, …, e_r) for every ℓ (:meth:`persistent_basis`); on V the layer acts by the r×r matrix
    :meth:`subspace_map`. Two strategies keep D_r = I (so that map is A_rᵀB_r, orthogonal):

    * ``strategy="channels"``: ρ is the identity on the r reserved channels, ``activation`` (ReLU) on the
      rest. The isometry on V holds at every input and, under ``orthogonal="exact"``, at every parameter
      value; under ``"init"`` while A_r, B_r stay orthogonal.
    * ``strategy="bias"``: the same activation on *every* channel; the reserved blocks start at A_r = B_r = I
      with bias +bias_margin, so the reserved units are active (D_r = I) wherever x_r > −bias_margin
      componentwise (:meth:`reserved_active`). An initialisation property: the layer is always a partial
      isometry (``jacobian_claim``); the isometry on V holds where the reserved units are active
      (``conditional_claim``).

    The complement block (A_c, B_c untied, Haar-random by default, bias ``complement_bias``) is a plain
    partial isometry whose stack collapses with depth; r = 0 is exactly that collapsing stack (the baseline).
    At initialisation F(x) = x on V (c_r = −A_rᵀρ(b_r)).

    Args:
        dim: n.  r: 0 ≤ r ≤ n, the persistent dimension.  strategy: ``"channels"`` or ``"bias"``.
        activation: the activation of the complement (and of the reserved units under ``"bias"``); slopes
            must lie in {0, 1} (``"relu"``, ``"relu_k"``).
        orthogonal, orthogonal_init, orthogonal_map, bias_margin, generator: as in :class:`OrthoResidual`
            (``orthogonal_init`` applies to the complement, and to the reserved blocks under ``"channels"``).
        complement_bias: initial bias of the n − r complement units (default 0).
    """

    STRATEGIES = ("channels", "bias")

    def __init__(
        self,
        dim: int,
        r: int,
        strategy: str = "channels",
        *,
        activation: str | nn.Module = "relu",
        orthogonal: str = "init",
        orthogonal_init: str = "qr",
        orthogonal_map: str = "riemannian",
        bias_margin: float = 3.0,
        complement_bias: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= dim:
            raise ValueError(f"PersistentSubspace: need 0 ≤ r ≤ dim (an integer), got r={r!r}, dim={dim}")
        if strategy not in self.STRATEGIES:
            raise ValueError(f"PersistentSubspace: strategy={strategy!r} is unknown; choose one of {self.STRATEGIES}")
        if strategy == "bias" and bias_margin <= 0:
            raise ValueError(f"PersistentSubspace(strategy='bias'): bias_margin must be > 0, got {bias_margin}")
        self.act = get_activation(activation)
        _check_slopes(self.act, _ZERO_ONE, "PersistentSubspace", activation)
        if strategy == "bias" and 1.0 not in (slopes_of(self.act) or ()):
            raise ValueError(f"PersistentSubspace(strategy='bias'): activation {activation!r} has no slope-1 region")
        self.dim, self.r, self.strategy, self.policy = dim, r, strategy, orthogonal
        c = dim - r
        r_init = "identity" if strategy == "bias" else orthogonal_init
        for name, size, init in (("b_r", r, r_init), ("a_r", r, r_init), ("b_c", c, orthogonal_init),
                                 ("a_c", c, orthogonal_init)):
            if size > 0:
                register_orthogonal(self, f"weight_{name}", size, size, orthogonal, init, orthogonal_map, generator)
        bias = torch.full((dim,), float(complement_bias))
        if strategy == "bias" and r > 0:
            bias[:r] = self.act.init_bias(1.0, bias_margin)  # +margin for ReLU: reserved units active
        self.bias = nn.Parameter(bias)
        self.out_bias = nn.Parameter(torch.zeros(dim))
        with torch.no_grad():  # F = id on V at initialisation
            if r > 0:
                self.out_bias[:r] = -F.linear(self._rho_r(self.bias[:r]), self.weight_a_r.mT)

    def _rho_r(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.strategy == "channels" else self.act(z)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        if self.strategy == "channels" and self.r > 0:
            return claims.persistent_subspace(self.r)
        return claims.partial_isometry()

    @property
    def conditional_claim(self) -> claims.JacobianClaim:
        """The claim that holds where the reserved units are active (``strategy="bias"``)."""
        return claims.persistent_subspace(self.r) if self.r > 0 else claims.partial_isometry()

    def persistent_basis(self) -> torch.Tensor:
        """An n×r matrix E with orthonormal columns spanning V = span(e₁, …, e_r), the subspace shared by
        every layer (input and output side); n×0 when r = 0."""
        ref = self.bias
        return torch.eye(self.dim, self.r, dtype=ref.dtype, device=ref.device)

    def subspace_map(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The r×r matrix M with DF(x)·E = E·M (how the layer acts on V in the basis E): A_rᵀ D_r B_r, with
        D_r = I under ``"channels"`` and D_r = diag(ρ′(B_r x_r + b_r)) under ``"bias"`` (needs ``x`` of shape
        (n,) then; without it D_r = I is assumed, the initialisation regime). Orthogonal while the layer has
        PSO."""
        if self.r == 0:
            return self.bias.new_zeros(0, 0)
        a, b = self.weight_a_r, self.weight_b_r
        if self.strategy == "bias" and x is not None:
            return a.mT @ (self._reserved_slopes(x).unsqueeze(-1) * b)
        return a.mT @ b

    def reserved_active(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean (...,): whether every reserved unit is in ρ's slope-1 region at input x (always True under
        ``"channels"``; under ``"bias"`` the isometry on V holds exactly at these inputs)."""
        if self.strategy == "channels" or self.r == 0:
            return torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        return (self._reserved_slopes(x) == 1).all(dim=-1)

    def _reserved_slopes(self, x: torch.Tensor) -> torch.Tensor:
        """ρ′(B_r x_r + b_r) for the reserved units (elementwise activation: one backward pass)."""
        with torch.enable_grad():
            z = F.linear(x[..., : self.r], self.weight_b_r, self.bias[: self.r]).detach().requires_grad_(True)
            return torch.autograd.grad(self.act(z).sum(), z)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.r
        parts = []
        if r > 0:
            z = F.linear(x[..., :r], self.weight_b_r, self.bias[:r])
            parts.append(F.linear(self._rho_r(z), self.weight_a_r.mT, self.out_bias[:r]))
        if r < self.dim:
            z = F.linear(x[..., r:], self.weight_b_c, self.bias[r:])
            parts.append(F.linear(self.act(z), self.weight_a_c.mT, self.out_bias[r:]))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, r={self.r}, strategy={self.strategy!r}, orthogonal={self.policy!r}"
