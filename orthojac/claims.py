"""The claim vocabulary: what a layer promises about the singular values of its Jacobian.

A claim is *data*. Every layer class of :mod:`orthojac.nn` states one through its ``jacobian_claim``
property, and one generic test checks every registered layer against it with ``torch.func.jacrev``
in float64. :mod:`orthojac.diagnostics` imports this module (and nothing else of ours) so that it can
check a measured spectrum against a claim for any model.

A claim says, for the Jacobian J of the map at almost every input:

* every singular value lies in ``[lo, hi]`` (``discrete is None``), or every singular value lies in the
  finite set ``discrete`` (e.g. ``(0, 1)`` for a partial isometry, where JᵀJ is a projector);
* at least ``min_unit`` singular values equal 1 (a persistent isometric subspace of that dimension).

Composition follows the sub-multiplicativity of singular values: for J = J₂J₁,
σ_min(J₂)σ_min(J₁) ≤ σ(J) ≤ σ_max(J₂)σ_max(J₁). Products of orthogonal matrices stay orthogonal; products
of partial isometries are only contractions, unless they share an isometric subspace (``min_unit``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = [
    "JacobianClaim",
    "orthogonal",
    "partial_isometry",
    "near_orthogonal",
    "persistent_subspace",
    "contraction",
    "no_claim",
    "compose",
]


@dataclass(frozen=True)
class JacobianClaim:
    """A statement about the singular values of a Jacobian (see module docstring)."""

    name: str
    lo: float = 1.0
    hi: float = 1.0
    discrete: tuple[float, ...] | None = None
    min_unit: int = 0

    @property
    def checkable(self) -> bool:
        """False for :func:`no_claim`: there is nothing to verify."""
        return self.name != "none"

    def violations(self, singular_values: torch.Tensor, atol: float = 1e-9) -> list[str]:
        """Return human-readable violations of this claim by ``singular_values`` (any shape; an empty
        list means the claim holds). ``atol`` is the tolerance on each singular value."""
        if not self.checkable:
            return []
        s = singular_values.detach().reshape(-1, singular_values.shape[-1]).double()
        out: list[str] = []
        if self.discrete is not None:
            targets = torch.tensor(self.discrete, dtype=s.dtype, device=s.device)
            dist = (s.unsqueeze(-1) - targets).abs().min(dim=-1).values
            worst = dist.max().item()
            if worst > atol:
                out.append(f"{self.name}: a singular value is {worst:.3e} away from {self.discrete}")
        else:
            if s.min().item() < self.lo - atol:
                out.append(f"{self.name}: min singular value {s.min().item():.12g} < {self.lo}")
            if s.max().item() > self.hi + atol:
                out.append(f"{self.name}: max singular value {s.max().item():.12g} > {self.hi}")
        if self.min_unit > 0:
            n_unit = ((s - 1).abs() <= atol).sum(dim=-1)
            if n_unit.min().item() < self.min_unit:
                out.append(
                    f"{self.name}: only {n_unit.min().item()} unit singular values, claimed ≥ {self.min_unit}"
                )
        return out

    def holds(self, singular_values: torch.Tensor, atol: float = 1e-9) -> bool:
        return not self.violations(singular_values, atol)

    def __str__(self) -> str:  # e.g. "near_orthogonal[0.9, 1.1]"
        if self.name == "none":
            return "none"
        body = f"{set(self.discrete)}" if self.discrete is not None else f"[{self.lo:g}, {self.hi:g}]"
        extra = f", ≥{self.min_unit} unit" if self.min_unit else ""
        return f"{self.name}{body}{extra}"


def orthogonal() -> JacobianClaim:
    """JᵀJ = I: every singular value is exactly 1."""
    return JacobianClaim("orthogonal", 1.0, 1.0)


def partial_isometry() -> JacobianClaim:
    """JᵀJ is an orthogonal projector: every singular value is 0 or 1."""
    return JacobianClaim("partial_isometry", 0.0, 1.0, discrete=(0.0, 1.0))


def near_orthogonal(eps: float) -> JacobianClaim:
    """Every singular value in [1 − ε, 1 + ε] (Weyl's bound for J = Q + E with Q orthogonal, ‖E‖₂ ≤ ε)."""
    if not (0.0 <= eps < 1.0):
        raise ValueError(f"eps must lie in [0, 1), got {eps}")
    return JacobianClaim("near_orthogonal", 1.0 - eps, 1.0 + eps)


def persistent_subspace(r: int) -> JacobianClaim:
    """A partial isometry with at least ``r`` unit singular values whose isometric subspace is shared by
    every layer of the stack (so the claim survives composition)."""
    return JacobianClaim("persistent_subspace", 0.0, 1.0, discrete=(0.0, 1.0), min_unit=r)


def contraction() -> JacobianClaim:
    """Every singular value in [0, 1] (1-Lipschitz)."""
    return JacobianClaim("contraction", 0.0, 1.0)


def no_claim() -> JacobianClaim:
    """The layer promises nothing about its Jacobian's singular values (e.g. a plain ReLU layer)."""
    return JacobianClaim("none", 0.0, math.inf)


def compose(claims: Iterable[JacobianClaim]) -> JacobianClaim:
    """The claim of a composition F_L ∘ … ∘ F_1 given each layer's claim.

    * all orthogonal → orthogonal;
    * interval claims multiply: [∏ lo_ℓ, ∏ hi_ℓ] (named ``near_orthogonal`` when it contains 1);
    * partial isometries that all declare a shared persistent subspace of dimension ≥ r → a contraction with
      ≥ r unit singular values (``persistent_subspace``; the composition is no longer a partial isometry in
      general, so the discrete set is dropped for depth > 1);
    * anything with ``no_claim`` → ``no_claim``.
    """
    claims = list(claims)
    if not claims:
        return orthogonal()  # the identity map
    if len(claims) == 1:
        return claims[0]
    if any(not c.checkable for c in claims):
        return no_claim()
    lo = math.prod(0.0 if c.discrete is not None else c.lo for c in claims)
    hi = math.prod(c.hi for c in claims)
    if all(c.name == "orthogonal" for c in claims):
        return orthogonal()
    if all(c.discrete is None for c in claims):
        name = "near_orthogonal" if lo <= 1.0 <= hi else "bounded"
        return JacobianClaim(name, lo, hi)
    # Some partial isometries: only a contraction survives, plus the shared unit subspace if every layer
    # declares one (orthogonal layers preserve every direction, so they don't limit it).
    units = [c.min_unit for c in claims if c.name != "orthogonal"]
    min_unit = min(units) if units else 0
    if hi > 1.0:
        return JacobianClaim("bounded", 0.0, hi)
    name = "persistent_subspace" if min_unit > 0 else "contraction"
    return JacobianClaim(name, 0.0, 1.0, min_unit=min_unit)


def constrained_weights(model: torch.nn.Module):
    """Yield (qualified name, current weight) for every weight of ``model`` declared orthogonal: those a
    submodule lists in ``orthogonal_weight_names`` (the declaration convention of orthojac layers, open to
    anyone's module) and those under PyTorch's ``parametrizations.orthogonal``. Duck-typed, so both the layers
    (:mod:`orthojac.nn.orthogonal`) and the model-agnostic :mod:`orthojac.diagnostics` use this one walk."""
    from torch.nn.utils import parametrize

    for prefix, m in model.named_modules():
        names = set(getattr(m, "orthogonal_weight_names", ()))
        if parametrize.is_parametrized(m):
            for pname, plist in m.parametrizations.items():
                if any(type(p).__name__ == "_Orthogonal" for p in plist):
                    names.add(pname)
        for name in sorted(names):
            yield (f"{prefix}.{name}" if prefix else name), getattr(m, name)
