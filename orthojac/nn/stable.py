"""Stable architectures of Haber & Ruthotto, "Stable Architectures for Deep Neural Networks" (arXiv 1705.03341,
*Inverse Problems* 34, 2018): a network is the time discretisation of an ODE on [0, T] with N layers,
step h = T/N, and per-layer weights (K_j, b_j) held as **time series** — tensors whose first axis is the
layer index j — so that they can be regularised in time (:func:`orthojac.regularizers.time_smoothness`) and
prolonged to 2N layers (:meth:`StableDynamics.prolong_`).

Conventions (notes §0). Examples are rows, Y ∈ ℝ^{s×n}. ``op(Y, K)`` is the paper's row-form product Y K and
``opT(Y, K)`` its adjoint Y Kᵀ:

* dense: K_j ∈ ℝ^{n×m} stored as ``K[j]`` of shape (n, m); op(Y, K) = Y @ K, opT(Z, K) = Z @ Kᵀ;
* conv: K_j is a k×k convolution coupling all channels, stored as a torch conv weight ``K[j]`` of shape
  (m, n, k, k); op = ``conv2d`` (zero padding k//2), opT = ``conv_transpose2d`` with the same weight, which is
  exactly the adjoint of op (tested by the dot-product test ⟨op(Y), Z⟩ = ⟨Y, opT(Z)⟩).

Biases are scalars b_j ∈ ℝ, added to every entry (paper §2). The four families (each a forward-Euler,
leapfrog or Verlet step of the ODE named in its docstring):

======================  =====================================================================  ===========
class                   step j = 0 … N−1                                                       paper
======================  =====================================================================  ===========
:class:`ResNetODE`      Y_{j+1} = Y_j + h σ(Y_j K_j + b_j)                                     Eq. 2.1
:class:`AntisymmetricODE` Y_{j+1} = Y_j + h σ(½ Y_j (K_j − K_jᵀ − γI) + b_j)                    Eq. 4.12
:class:`LeapfrogODE`    y_{j+1} = 2y_j − y_{j−1} + h² σ(K_j y_j + b_j), y_{−1} = y_0           Eq. 4.16
                        (column form: Y @ K_jᵀ; option K_j = −C_jᵀC_j, Eq. 4.14)
:class:`VerletODE`      z_{j+½} = z_{j−½} − h σ(K_jᵀ y_j + b_j),  y_{j+1} = y_j + h σ(K_j z_{j+½} + b_j),  Eq. 4.17
                        z_{−½} = 0, K_j ∈ ℝ^{n×m} non-square allowed
======================  =====================================================================  ===========

Leapfrog start: the paper's literal j = 0 line amounts to y_{−1} = 0 (doubling the input); we follow Meganet's
``LeapFrogNN`` and the continuous model's ẏ(0) = 0, i.e. y_{−1} = y_0 (notes §2.3). ``literal_start=True``
gives the paper's literal form.

**Jacobian claims** (what holds for every weight value, σ′ ∈ [0, 1] as for tanh and ReLU). With a_j the
spectral-norm bound of the layer's linear operator (for a convolution Σ_taps ‖K_tap‖₂, which bounds the
zero-padded convolution because each tap is a channel mixing times a shift of norm ≤ 1):

* ResNet / antisymmetric: one step's Jacobian is I + h·D·Aᵀ with ‖D‖ ≤ 1, so its singular values lie in
  [1 − h a_j, 1 + h a_j]; the network's in [∏ max(0, 1 − h a_j), ∏ (1 + h a_j)].
* Leapfrog: the step (y_j, y_{j−1}) ↦ (y_{j+1}, y_j) has norm ≤ (1 + √2) + h² a_j (‖[[2,−1],[1,0]]‖ = 1 + √2),
  and y_0 ↦ (y_0, y_0) has norm √2: singular values of ∂y_N/∂y_0 lie in [0, √2 ∏ (1 + √2 + h² a_j)].
* Verlet: each half-step is a block shear [[I, 0], [A, I]] with ‖A‖ ≤ h a_j, of norm h a_j/2 + √(1 + h² a_j²/4);
  ∂y_N/∂y_0 is a block of the product, so its singular values lie in [0, ∏ (h a_j/2 + √(1 + h² a_j²/4))²].

These bounds are loose; the *stability* statements of the paper (no explosion or decay for K with eigenvalues of
zero real part, symplectic leapfrog/Verlet) are checked in ``tests/test_stable.py`` on the dynamics themselves.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import claims
from .base import ClaimedModule

__all__ = ["StableDynamics", "ResNetODE", "AntisymmetricODE", "LeapfrogODE", "VerletODE", "STABLE_ARCHS",
           "create_dynamics", "dense_op", "dense_opT", "conv_op", "conv_opT", "operator_norm_bound",
           "prolong_time_series"]

_ACTS = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x}


def dense_op(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Row form Y K, K of shape (n, m): (s, n) → (s, m)."""
    return y @ k


def dense_opT(z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Row form Z Kᵀ, the adjoint of :func:`dense_op`: (s, m) → (s, n)."""
    return z @ k.transpose(-1, -2)


def conv_op(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Convolution with weight K of shape (m, n, k, k), zero padding k//2: (s, n, H, W) → (s, m, H, W)."""
    return F.conv2d(y, k, padding=k.shape[-1] // 2)


def conv_opT(z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`conv_op` (transposed convolution, same weight and padding): (s, m, …) → (s, n, …)."""
    return F.conv_transpose2d(z, k, padding=k.shape[-1] // 2)


def operator_norm_bound(k: torch.Tensor, conv: bool) -> torch.Tensor:
    """Per layer, an upper bound a_j of the operator 2-norm: ‖K_j‖₂ for dense (exact), Σ_taps ‖K_j[:, :, p, q]‖₂
    for a zero-padded convolution. ``k`` has the layer index first; returns shape (N,)."""
    k = k.detach().double()
    if not conv:
        return torch.linalg.matrix_norm(k, ord=2)
    taps = k.permute(0, 3, 4, 1, 2)  # (N, kh, kw, m, n)
    return torch.linalg.matrix_norm(taps, ord=2).sum(dim=(1, 2))


def prolong_time_series(x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation in time from N to 2N layers with T fixed (notes §7, Meganet ``inter1D``).

    Coarse layer j sits at t_j = j h (j = 0 … N−1); fine layer k at t'_k = k h/2 (k = 0 … 2N−1). So fine
    layer 2j copies coarse layer j, fine layer 2j+1 is the mean of coarse layers j and j+1, and the last fine
    layer (beyond t_{N−1}) copies the last coarse layer (constant extrapolation)."""
    nxt = torch.cat([x[1:], x[-1:]], dim=0)
    mid = 0.5 * (x + nxt)
    return torch.stack([x, mid], dim=1).reshape(2 * x.shape[0], *x.shape[1:])


class StableDynamics(ClaimedModule):
    """Base class: N layers of a discretised ODE on [0, T], weights as time series (layer index first).

    ``width`` is n (features for dense, channels for conv); ``conv=True`` uses k×k convolutions on inputs of
    shape (s, n, H, W). Subclasses define :meth:`step` and :meth:`rhs`. ``time_parameter_names`` lists the
    parameters that are time series (all of them): the time-smoothness regulariser and prolongation act on them.
    """

    time_parameter_names: tuple[str, ...] = ("K", "b")
    arch: str = ""

    def __init__(self, width: int, layers: int, T: float, *, activation: str = "tanh", conv: bool = False,
                 kernel_size: int = 3, init: str = "zeros", init_scale: float = 0.1,
                 generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise ValueError(f"width and layers must be positive, got width={width}, layers={layers}")
        if not T > 0:
            raise ValueError(f"the final time T must be positive, got {T}")
        if activation not in _ACTS:
            raise ValueError(f"activation must be one of {sorted(_ACTS)} (σ′ ∈ [0, 1]), got {activation!r}")
        if conv and kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (so that the padded convolution keeps the size), "
                             f"got {kernel_size}")
        if init not in ("zeros", "identity", "random"):
            raise ValueError(f"init must be 'zeros', 'identity' or 'random', got {init!r}")
        self.width, self.layers, self.T = width, layers, float(T)
        self.activation, self.conv, self.kernel_size = activation, conv, kernel_size
        self.sigma = _ACTS[activation]
        self.op = conv_op if conv else dense_op
        self.opT = conv_opT if conv else dense_opT
        self._dtype = dtype or torch.get_default_dtype()
        self._init, self._init_scale, self._gen = init, init_scale, generator

    # -- weights ---------------------------------------------------------------------------------------
    def _kernel_shape(self, n_in: int, n_out: int) -> tuple[int, ...]:
        if self.conv:
            return (n_out, n_in, self.kernel_size, self.kernel_size)
        return (n_in, n_out)

    def _new_kernel(self, n_in: int, n_out: int) -> nn.Parameter:
        shape = (self.layers, *self._kernel_shape(n_in, n_out))
        k = torch.zeros(shape, dtype=self._dtype)
        if self._init == "random":
            fan = n_in * (self.kernel_size ** 2 if self.conv else 1)
            k = torch.randn(shape, generator=self._gen, dtype=self._dtype) * (self._init_scale / math.sqrt(fan))
        elif self._init == "identity":
            m = min(n_in, n_out)
            if self.conv:
                c = self.kernel_size // 2
                k[:, torch.arange(m), torch.arange(m), c, c] = 1.0
            else:
                k[:, torch.arange(m), torch.arange(m)] = 1.0
        return nn.Parameter(k)

    @property
    def h(self) -> float:
        """The step size T/N."""
        return self.T / self.layers

    def time_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of every time-series parameter (layer index first)."""
        for name in self.time_parameter_names:
            yield name, getattr(self, name)

    def kernel(self, j: int) -> torch.Tensor:
        """The operator K_j of layer j used by the step (for leapfrog with ``negdef`` the product −CCᵀ)."""
        return self.K[j]

    @torch.no_grad()
    def prolong_(self) -> StableDynamics:
        """In place: N → 2N layers, T fixed (so h halves), every time-series parameter interpolated piecewise
        linearly in time (:func:`prolong_time_series`). Returns self."""
        for name, p in list(self.time_parameters()):
            setattr(self, name, nn.Parameter(prolong_time_series(p.detach().clone())))
        self.layers *= 2
        return self

    def prolonged(self) -> StableDynamics:
        """A prolonged copy (:meth:`prolong_` on a deep copy)."""
        return copy.deepcopy(self).prolong_()

    # -- dynamics --------------------------------------------------------------------------------------
    def init_state(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (y,)

    def step(self, j: int, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        raise NotImplementedError

    def rhs(self, j: int, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """The right-hand side of the continuous model at layer j's weights (for eigenvalue checks)."""
        raise NotImplementedError

    def _check_input(self, y: torch.Tensor) -> None:
        want = 4 if self.conv else 2
        if y.ndim != want or y.shape[1] != self.width:
            shape = "(s, n, H, W)" if self.conv else "(s, n)"
            raise ValueError(f"{type(self).__name__} expects input of shape {shape} with n = {self.width}, "
                             f"got {tuple(y.shape)}")

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y_N for input y_0."""
        self._check_input(y)
        state = self.init_state(y)
        for j in range(self.layers):
            state = self.step(j, state)
        return state[0]

    def trajectory(self, y: torch.Tensor) -> list[torch.Tensor]:
        """[y_0, y_1, …, y_N] (the propagated features of every layer)."""
        self._check_input(y)
        state = self.init_state(y)
        out = [y]
        for j in range(self.layers):
            state = self.step(j, state)
            out.append(state[0])
        return out

    def extra_repr(self) -> str:
        return (f"width={self.width}, layers={self.layers}, T={self.T:g}, h={self.h:g}, "
                f"activation={self.activation}, conv={self.conv}")

    def _bias(self, j: int) -> torch.Tensor:
        return self.b[j]


class ResNetODE(StableDynamics):
    """Forward-Euler ResNet, Haber & Ruthotto Eq. 2.1: Y_{j+1} = Y_j + h σ(Y_j K_j + b_j), the forward-Euler
    discretisation of ẏ = σ(K(t)ᵀ y + b(t)) (Eq. 3.5). K_j ∈ ℝ^{n×n} (or an n→n convolution)."""

    arch = "resnet"

    def __init__(self, width: int, layers: int, T: float, **kw) -> None:
        super().__init__(width, layers, T, **kw)
        self.K = self._new_kernel(width, width)
        self.b = nn.Parameter(torch.zeros(layers, dtype=self._dtype))

    def rhs(self, j: int, y: torch.Tensor) -> torch.Tensor:
        return self.sigma(self.op(y, self.kernel(j)) + self._bias(j))

    def step(self, j: int, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        (y,) = state
        return (y + self.h * self.rhs(j, y),)

    def _norms(self) -> torch.Tensor:
        return operator_norm_bound(self.K, self.conv)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        a = self.h * self._norms()
        return claims.JacobianClaim("bounded", float(torch.clamp(1 - a, min=0).prod()), float((1 + a).prod()))


class AntisymmetricODE(ResNetODE):
    """Antisymmetric ResNet, Eq. 4.12: Y_{j+1} = Y_j + h σ(½ Y_j (K_j − K_jᵀ − γI) + b_j). For γ = 0 the operator
    A_j = ½(K_j − K_jᵀ) is skew, so the ODE Jacobian diag(σ′)·A_j is similar to the skew matrix
    D^{½} A_j D^{½} and has purely imaginary eigenvalues; γ > 0 adds the small damping that forward Euler needs
    (|1 + hiλ| > 1). For a convolution, K_jᵀ is the adjoint (transposed) convolution."""

    arch = "antisymmetric"

    def __init__(self, width: int, layers: int, T: float, gamma: float = 1e-4, **kw) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be ≥ 0, got {gamma}")
        super().__init__(width, layers, T, **kw)
        self.gamma = float(gamma)

    def rhs(self, j: int, y: torch.Tensor) -> torch.Tensor:
        k = self.kernel(j)
        return self.sigma(0.5 * (self.op(y, k) - self.opT(y, k) - self.gamma * y) + self._bias(j))

    def _norms(self) -> torch.Tensor:
        k = self.K.detach().double()
        if self.conv:
            adj = k.transpose(1, 2).flip(-1, -2)  # the transposed convolution as a convolution weight
            eye = torch.zeros_like(k)
            c = self.kernel_size // 2
            eye[:, torch.arange(self.width), torch.arange(self.width), c, c] = 1.0
            return operator_norm_bound(0.5 * (k - adj - self.gamma * eye), True)
        eye = torch.eye(self.width, dtype=k.dtype)
        return operator_norm_bound(0.5 * (k - k.transpose(-1, -2) - self.gamma * eye), False)


class LeapfrogODE(StableDynamics):
    """Second-order network with leapfrog steps, Eq. 4.16 (column form K_j y_j, i.e. Y @ K_jᵀ in rows)::

        y_{j+1} = 2 y_j − y_{j−1} + h² σ(K_j y_j + b_j),   y_{−1} = y_0   (ẏ(0) = 0; ``literal_start``: y_{−1} = 0)

    the discretisation of ÿ = σ(K(t)ᵀ y + b(t)) (Eq. 4.13). ``negdef=True`` uses K_j = −C_jᵀ C_j (Eq. 4.14),
    whose eigenvalues are real and ≤ 0 (stable); C_j is then the stored parameter ``C`` (a kernel n → ``rank``
    for dense, a convolution for conv: K_j y = −opT(op(y, C_j), C_j))."""

    arch = "leapfrog"

    def __init__(self, width: int, layers: int, T: float, negdef: bool = False, rank: int | None = None,
                 literal_start: bool = False, **kw) -> None:
        super().__init__(width, layers, T, **kw)
        self.negdef, self.literal_start = negdef, literal_start
        self.rank = rank or width
        if negdef:
            self.time_parameter_names = ("C", "b")
            self.C = self._new_kernel(width, self.rank)
        else:
            self.K = self._new_kernel(width, width)
        self.b = nn.Parameter(torch.zeros(layers, dtype=self._dtype))

    def _apply_k(self, j: int, y: torch.Tensor) -> torch.Tensor:
        """Column-form K_j y for every row y of Y."""
        if self.negdef:
            c = self.C[j]
            return -self.opT(self.op(y, c), c)
        return self.opT(y, self.K[j])

    def rhs(self, j: int, y: torch.Tensor) -> torch.Tensor:
        return self.sigma(self._apply_k(j, y) + self._bias(j))

    def init_state(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (y, torch.zeros_like(y) if self.literal_start else y)

    def step(self, j: int, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        y, y_old = state
        return (2 * y - y_old + self.h ** 2 * self.rhs(j, y), y)

    def kernel(self, j: int) -> torch.Tensor:
        if self.negdef and not self.conv:
            c = self.C[j]
            return -c @ c.transpose(-1, -2)
        if self.negdef:
            raise ValueError("kernel(j) of a convolutional −CᵀC leapfrog is an operator, not a weight; use rhs")
        return self.K[j]

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        a = operator_norm_bound(self.C, self.conv) ** 2 if self.negdef else operator_norm_bound(self.K, self.conv)
        scale = 1.0 if self.literal_start else math.sqrt(2)
        return claims.JacobianClaim("bounded", 0.0, float(scale * (1 + math.sqrt(2) + self.h ** 2 * a).prod()))


class VerletODE(StableDynamics):
    """First-order two-variable Hamiltonian network with Verlet steps, Eq. 4.17 (K_j ∈ ℝ^{n×m}, non-square
    allowed; ``hidden`` = m, default n)::

        z_{j+½} = z_{j−½} − h σ(K_jᵀ y_j + b_j)      (rows: Y @ K_j)
        y_{j+1} = y_j     + h σ(K_j z_{j+½} + b_j)    (rows: Z @ K_jᵀ),      z_{−½} = 0

    the discretisation of ẏ = σ(K z + b), ż = −σ(Kᵀ y + b) (Eq. 4.15), whose augmented matrix
    [[0, K], [−Kᵀ, 0]] is antisymmetric. The same scalar b_j enters both half-steps. The classifier sees y_N."""

    arch = "verlet"

    def __init__(self, width: int, layers: int, T: float, hidden: int | None = None, **kw) -> None:
        super().__init__(width, layers, T, **kw)
        self.hidden = hidden or width
        self.K = self._new_kernel(width, self.hidden)
        self.b = nn.Parameter(torch.zeros(layers, dtype=self._dtype))

    def init_state(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zshape = (y.shape[0], self.hidden, *y.shape[2:])
        return (y, y.new_zeros(zshape))

    def step(self, j: int, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        y, z = state
        k, b = self.K[j], self._bias(j)
        z = z - self.h * self.sigma(self.op(y, k) + b)
        y = y + self.h * self.sigma(self.opT(z, k) + b)
        return (y, z)

    def rhs(self, j: int, yz: torch.Tensor) -> torch.Tensor:
        """Augmented right-hand side for rows [y, z] (dense only): [σ(z K_jᵀ + b), −σ(y K_j + b)]."""
        if self.conv:
            raise ValueError("rhs of the augmented system is defined for the dense Verlet network only")
        y, z = yz[:, :self.width], yz[:, self.width:]
        k, b = self.K[j], self._bias(j)
        return torch.cat([self.sigma(self.opT(z, k) + b), -self.sigma(self.op(y, k) + b)], dim=1)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        a = self.h * operator_norm_bound(self.K, self.conv)
        shear = a / 2 + torch.sqrt(1 + a ** 2 / 4)
        return claims.JacobianClaim("bounded", 0.0, float((shear ** 2).prod()))


STABLE_ARCHS: dict[str, type[StableDynamics]] = {
    "resnet": ResNetODE, "antisymmetric": AntisymmetricODE, "leapfrog": LeapfrogODE, "verlet": VerletODE,
}


def create_dynamics(arch: str, width: int, layers: int, T: float, **kw) -> StableDynamics:
    """Build one of :data:`STABLE_ARCHS` by name (``resnet``, ``antisymmetric``, ``leapfrog``, ``verlet``)."""
    if arch not in STABLE_ARCHS:
        raise ValueError(f"unknown stable architecture {arch!r}; choose one of {', '.join(STABLE_ARCHS)}")
    return STABLE_ARCHS[arch](width, layers, T, **kw)
