"""Piecewise-linear activations with a declared slope set (arXiv 2508.02882, notes §0b and §2.3–2.4).

Whether a layer has an orthogonal Jacobian depends only on the *slopes* its activation can take:

* the residual form x − 2Bᵀρ(Bx + b) needs ρ′ ∈ {0, 1};
* the feedforward form Aᵀσ(Bx + b) needs σ′ ∈ {−1, +1}.

So every activation here declares ``slopes``, a frozenset of the values its derivative takes almost
everywhere, and the layers check it.

**ReLU_k, the definition chosen here.** The paper's exact ReLU_k is not available. We use the
piecewise-linear function with k breakpoints t₁ < … < t_k whose slopes alternate 0, 1, 0, 1, …::

    ReLU_k(x) = Σ_{i=1}^{k} (−1)^{i+1} ReLU(x − t_i)

so ReLU_1 with t₁ = 0 is the ReLU, and ReLU_2 with (t₁, t₂) = (0, 1) is the clipped ReLU min(max(x, 0), 1).
Then σ_k(x) = x − 2·ReLU_k(x) has slopes alternating +1, −1, +1, … (σ_1 with t₁ = 0 is −|x|).
Breakpoints are fixed buffers or learnable parameters; learnable ones are stored as t₁ plus positive
gaps, so their order can never be broken by an optimiser step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SlopedActivation",
    "ReLUk",
    "SigmaK",
    "Abs",
    "Identity",
    "Tanh",
    "get_activation",
    "ACTIVATION_NAMES",
]


class SlopedActivation(nn.Module):
    """Base class: an elementwise activation that declares the set of its slopes (a.e.)."""

    slopes: frozenset[float] = frozenset()

    def region_with_slope(self, slope: float) -> tuple[float, float]:
        """An interval (lo, hi), possibly unbounded, on which the derivative equals ``slope``.
        Used to place pre-activations so that a layer starts as (close to) the identity."""
        raise ValueError(f"{type(self).__name__} has no region with slope {slope}")

    def init_bias(self, slope: float, margin: float) -> float:
        """A bias b such that z = u + b has derivative ``slope`` whenever |u| ≤ margin, when such a
        bias exists (the region is at least 2·margin wide); the value is a python float."""
        lo, hi = self.region_with_slope(slope)
        if lo == -float("inf"):
            return hi - margin
        if hi == float("inf"):
            return lo + margin
        return 0.5 * (lo + hi)


class ReLUk(SlopedActivation):
    r"""ReLU_k(x) = Σᵢ (−1)^{i+1} ReLU(x − tᵢ): k breakpoints, slopes alternating 0, 1, 0, ….

    Args:
        breakpoints: the k breakpoints t₁ < … < t_k (default: ``(0,)``, the ReLU). An int k gives
            t = (0, 1, …, k − 1).
        learnable: make the breakpoints trainable (kept ordered: t₁ and softplus gaps).
    """

    slopes = frozenset({0.0, 1.0})

    def __init__(self, breakpoints: Sequence[float] | int = (0.0,), learnable: bool = False) -> None:
        super().__init__()
        if isinstance(breakpoints, int):
            if breakpoints < 1:
                raise ValueError(f"ReLUk needs k ≥ 1 breakpoints, got k={breakpoints}")
            breakpoints = [float(i) for i in range(breakpoints)]
        t = torch.as_tensor(list(breakpoints), dtype=torch.get_default_dtype())
        if t.ndim != 1 or t.numel() < 1:
            raise ValueError("ReLUk needs a non-empty 1-D sequence of breakpoints")
        if t.numel() > 1 and not bool((t[1:] > t[:-1]).all()):
            raise ValueError(f"ReLUk breakpoints must be strictly increasing, got {t.tolist()}")
        self.k = t.numel()
        self.learnable = learnable
        if learnable:
            gaps = t[1:] - t[:-1]
            # inverse softplus, so softplus(raw) == gap
            raw = gaps + torch.log(-torch.expm1(-gaps))
            self.t0 = nn.Parameter(t[:1].clone())
            self.raw_gaps = nn.Parameter(raw)
        else:
            self.register_buffer("_t", t)

    @property
    def breakpoints(self) -> torch.Tensor:
        if self.learnable:
            return torch.cat([self.t0, self.t0 + torch.cumsum(F.softplus(self.raw_gaps), 0)])
        return self._t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.breakpoints.to(x.dtype)
        signs = torch.ones_like(t)
        signs[1::2] = -1.0
        # Σᵢ sᵢ ReLU(x − tᵢ), broadcast over a trailing axis of size k
        return (F.relu(x.unsqueeze(-1) - t) * signs).sum(-1) if self.k > 1 else F.relu(x - t[0])

    def region_with_slope(self, slope: float) -> tuple[float, float]:
        t = [float(v) for v in self.breakpoints.detach()]
        if slope == 0.0:
            return (-float("inf"), t[0])
        if slope == 1.0:
            return (t[0], t[1] if self.k > 1 else float("inf"))
        return super().region_with_slope(slope)

    def extra_repr(self) -> str:
        return f"k={self.k}, breakpoints={[round(float(v), 4) for v in self.breakpoints]}, learnable={self.learnable}"


class SigmaK(ReLUk):
    r"""σ_k(x) = x − 2·ReLU_k(x): slopes alternating +1, −1, +1, … (all ±1), 1-Lipschitz.

    Same breakpoint arguments as :class:`ReLUk`. With the default t = (0,), σ₁(x) = −|x|.
    """

    slopes = frozenset({-1.0, 1.0})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 2.0 * super().forward(x)

    def region_with_slope(self, slope: float) -> tuple[float, float]:
        t = [float(v) for v in self.breakpoints.detach()]
        if slope == 1.0:
            return (-float("inf"), t[0])
        if slope == -1.0:
            return (t[0], t[1] if self.k > 1 else float("inf"))
        return SlopedActivation.region_with_slope(self, slope)


class Abs(SlopedActivation):
    """σ(x) = |x|: slopes ±1, the non-monotone activation of the feedforward form."""

    slopes = frozenset({-1.0, 1.0})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()

    def region_with_slope(self, slope: float) -> tuple[float, float]:
        if slope == 1.0:
            return (0.0, float("inf"))
        if slope == -1.0:
            return (-float("inf"), 0.0)
        return super().region_with_slope(slope)


class Identity(SlopedActivation):
    """The identity, slope {1}: used on reserved isometric channels (persistent subspaces)."""

    slopes = frozenset({1.0})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def region_with_slope(self, slope: float) -> tuple[float, float]:
        if slope == 1.0:
            return (-float("inf"), float("inf"))
        return super().region_with_slope(slope)


class Tanh(SlopedActivation):
    """tanh: slopes in (0, 1], declared as the empty set (not piecewise linear); for baselines only."""

    slopes = frozenset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


ACTIVATION_NAMES = ("relu", "relu_k", "sigma_k", "abs", "identity", "tanh")


def get_activation(spec: str | nn.Module, **kwargs) -> nn.Module:
    """Build an activation from a name or pass a module through.

    Names: ``"relu"`` (ReLU_1, t = 0), ``"relu_k"`` (default k = 2, t = (0, 1): the clipped ReLU),
    ``"sigma_k"`` (default k = 1, t = 0: x − 2ReLU(x)), ``"abs"``, ``"identity"``, ``"tanh"``. Keyword
    arguments (``breakpoints``, ``learnable``) go to ReLUk / SigmaK.
    """
    if isinstance(spec, nn.Module):
        if kwargs:
            raise ValueError("activation keyword arguments are only accepted with an activation name")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"activation must be a name or an nn.Module, got {type(spec).__name__}")
    name = spec.lower()
    if name == "relu":
        return ReLUk(kwargs.pop("breakpoints", (0.0,)), **kwargs)
    if name == "relu_k":
        return ReLUk(kwargs.pop("breakpoints", 2), **kwargs)
    if name == "sigma_k":
        return SigmaK(kwargs.pop("breakpoints", (0.0,)), **kwargs)
    if kwargs:
        raise ValueError(f"activation {name!r} takes no keyword arguments, got {sorted(kwargs)}")
    if name == "abs":
        return Abs()
    if name == "identity":
        return Identity()
    if name == "tanh":
        return Tanh()
    raise ValueError(f"unknown activation {spec!r}; choose one of {', '.join(ACTIVATION_NAMES)} or pass an nn.Module")


def slopes_of(act: nn.Module) -> frozenset[float] | None:
    """The declared slope set of an activation module, or None when it declares none."""
    s = getattr(act, "slopes", None)
    return frozenset(s) if s else None
