r"""Ansatz networks u_θ: R^{n_in} → R for the Hamilton–Jacobi solver.

* ``"mlp"`` — the authors' ``FCFF_*L`` (notes §2.1): Linear layers of the given hidden ``widths`` with ReLU,
  PyTorch default initialisation, a scalar linear output.
* any family of :func:`orthojac.models.create_model` (``"ortho_residual_relu"``, ``"resnet"``, ``"plain_relu"``, …)
  — a stem Linear(n_in → width), a body of ``depth`` layers whose Jacobian is orthogonal (or controlled), a
  Linear head; without the stem's LayerNorm, which would discard the scale of low-dimensional inputs.
* ``"stable_resnet"``, ``"stable_antisymmetric"``, ``"stable_leapfrog"``, ``"stable_verlet"`` — the
  Haber–Ruthotto stable bodies (:mod:`orthojac.nn.stable`, ReLU, T = 1, ``depth`` layers of ``width``,
  random initial weights) between a Linear stem and a Linear head.
* :class:`FourierPeriodic` — periodicity in angle coordinates built in (the authors' ``FCFF_3L_vec`` and
  ``periodic_3L_two_players``): a base network of the non-angle coordinates z outputs coefficients c_m(z) of
  the tensor-product Fourier basis of the angles,

      u(z, θ) = Σ_m c_m(z) φ_m(θ),  φ ∈ {1, cos kθ, sin kθ : 1 ≤ k ≤ K} per angle,

  so u is exactly 2π-periodic in every angle.
* :class:`InvariantAnsatz` (``model.symmetry``: the problem's symmetry group, :attr:`Problem.symmetry
  <orthojac.hj.problems.Problem.symmetry>`) — u(x) = U(w(x)) with a base network U of the problem's invariant
  features w (:meth:`orthojac.hj.problems.Problem.invariant_features`), so u is exactly invariant:
  ``rotation`` for the car problems (the game: the evader's position in the pursuer's frame and the relative
  heading; u is then exactly periodic in the angles, with no Fourier truncation, and U has one input less)
  and for the d-ball and annulus (w = |x|); ``signed_permutation`` for the cube (w = the |x_i| sorted in
  decreasing order). The eikonals' u* is then a function of one feature with at most one kink, which a
  generic MLP of x must instead build from d-dimensional ridges (docs/hj.md, "Beyond the authors").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..models import create_model, family_names
from ..nn import STABLE_ARCHS, create_dynamics

__all__ = ["MLP", "ScalarOutput", "FourierPeriodic", "InvariantAnsatz", "build_ansatz", "arch_label", "arch_names"]


def arch_names() -> list[str]:
    """Every ``arch`` the solver accepts."""
    return ["mlp", *family_names(), *(f"stable_{k}" for k in STABLE_ARCHS)]


class MLP(nn.Module):
    """Fully connected ReLU network [n_in, *widths, n_out] (the authors' FCFF baseline)."""

    def __init__(self, in_dim: int, widths: Sequence[int], out_dim: int = 1) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"mlp widths must be a non-empty list of positive integers, got {list(widths)}")
        layers: list[nn.Module] = []
        prev = in_dim
        for w in widths:
            layers += [nn.Linear(prev, w), nn.ReLU()]
            prev = w
        layers.append(nn.Linear(prev, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ScalarOutput(nn.Module):
    """Wraps a (N, n_in) → (N, 1) network as (N, n_in) → (N,)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class FourierPeriodic(nn.Module):
    """u(z, θ) = Σ_m c_m(z) φ_m(θ) over the tensor-product basis of ``n_freq`` modes per angle (module
    docstring). ``base`` maps (N, len(space_dims)) → (N, (2K + 1)^{#angles})."""

    def __init__(self, base: nn.Module, space_dims: Sequence[int], angle_dims: Sequence[int], n_freq: int) -> None:
        super().__init__()
        if n_freq < 0:
            raise ValueError(f"n_freq must be ≥ 0, got {n_freq}")
        self.base, self.n_freq = base, n_freq
        self.space_dims, self.angle_dims = list(space_dims), list(angle_dims)
        self.register_buffer("k", torch.arange(1, n_freq + 1, dtype=torch.float32), persistent=False)

    @property
    def n_basis(self) -> int:
        return (2 * self.n_freq + 1) ** len(self.angle_dims)

    def basis(self, theta: torch.Tensor) -> torch.Tensor:
        """φ_m(θ) for every row: (N, (2K + 1)^{#angles})."""
        out = None
        for j in range(theta.shape[1]):
            kt = theta[:, j:j + 1] * self.k.to(theta.dtype)
            phi = torch.cat([torch.ones_like(theta[:, j:j + 1]), torch.cos(kt), torch.sin(kt)], 1)
            out = phi if out is None else (out.unsqueeze(2) * phi.unsqueeze(1)).reshape(len(theta), -1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coeff = self.base(x[:, self.space_dims])
        return (coeff * self.basis(x[:, self.angle_dims])).sum(-1)


class InvariantAnsatz(nn.Module):
    """u(x) = U(w(x)): ``features`` maps (N, n_in) → (N, k) invariant coordinates, ``base`` maps (N, k) →
    (N, 1) (module docstring)."""

    def __init__(self, base: nn.Module, features: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.base, self.features = base, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(self.features(x)).squeeze(-1)


def _body(arch: str, in_dim: int, out_dim: int, widths: Sequence[int], width: int, depth: int, policy: str,
          seed: int) -> nn.Module:
    if arch == "mlp":
        return MLP(in_dim, widths, out_dim)
    if arch.startswith("stable_") and arch[len("stable_"):] in STABLE_ARCHS:
        g = torch.Generator().manual_seed(seed)
        body = create_dynamics(arch[len("stable_"):], width, depth, 1.0, activation="relu", init="random", generator=g)
        return nn.Sequential(nn.Linear(in_dim, width), body, nn.Linear(width, out_dim))
    if arch not in family_names():
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(arch_names())}")
    return create_model(arch, in_dim, out_dim, width=width, depth=depth, policy=policy, seed=seed, stem_norm=False)


def build_ansatz(in_dim: int, arch: str = "mlp", widths: Sequence[int] = (20,), width: int = 32, depth: int = 4,
                 policy: str = "init", periodic: Sequence[int] = (), n_freq: int = 4, seed: int = 0,
                 features: Callable[[torch.Tensor], torch.Tensor] | None = None, n_features: int = 0) -> nn.Module:
    """u_θ: (N, in_dim) → (N,). ``periodic``: angle coordinates (then a :class:`FourierPeriodic` network of
    ``n_freq`` modes per angle around the chosen base). ``features`` (with their number ``n_features``):
    an :class:`InvariantAnsatz` around the chosen base instead (``periodic`` and ``n_freq`` are then unused:
    the features carry the periodicity). ``seed`` fixes the initialisation."""
    if features is not None and n_features < 1:
        raise ValueError(f"an invariant ansatz needs n_features ≥ 1, got {n_features}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if features is not None:
            return InvariantAnsatz(_body(arch, n_features, 1, widths, width, depth, policy, seed), features)
        if periodic:
            space = [i for i in range(in_dim) if i not in set(periodic)]
            n_basis = (2 * n_freq + 1) ** len(periodic)
            base = _body(arch, len(space), n_basis, widths, width, depth, policy, seed)
            return FourierPeriodic(base, space, list(periodic), n_freq)
        return ScalarOutput(_body(arch, in_dim, 1, widths, width, depth, policy, seed))


def arch_label(arch: str, widths: Sequence[int] = (), width: int = 0, depth: int = 0, policy: str = "init",
               periodic: bool = False, n_freq: int = 0, symmetry: str = "none") -> str:
    """The ``arch`` column: ``mlp[30,20,10]``, ``ortho_residual_relu(w32xL4)``, with ``+fourier{K}`` when
    periodic, ``+rot-invariant`` / ``+signed-perm-invariant`` with a ``symmetry`` (:class:`InvariantAnsatz`)."""
    name = (f"mlp[{','.join(map(str, widths))}]" if arch == "mlp"
            else f"{arch}(w{width}xL{depth}{'' if policy == 'init' else ',' + policy})")
    if symmetry != "none":
        return name + {"rotation": "+rot-invariant", "signed_permutation": "+signed-perm-invariant"}[symmetry]
    return name + (f"+fourier{n_freq}" if periodic else "")


