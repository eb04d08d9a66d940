"""Convolutional layers whose Jacobian is orthogonal (arXiv 2508.02882, notes §0b "Experiments", §5).

The dense forms of :mod:`orthojac.nn.dense` carry over when the matrix B is replaced by a convolution
operator 𝓑 acting on images x ∈ ℝ^{C×H×W} and Bᵀ by its adjoint 𝓑ᵀ (the transposed convolution with the
same weights). Everything here is **circular** (periodic padding), because then 𝓑 is diagonalised by the
2-D discrete Fourier transform: with x̂ = DFT(x) (per channel),

    (𝓑x)^(u, v) = M(u, v) · x̂(u, v),      M(u, v) = Σ_{i,j} K[:, :, i, j] · e^{2πi(u(i−p)/H + v(j−p)/W)} ∈ ℂ^{C×C},

for a k×k kernel K with p = k // 2 (the centre tap has offset 0). The DFT (normalised) is unitary, so
𝓑 is orthogonal **iff every M(u, v) is unitary**, and 𝓑ᵀ has response M(u, v)ᴴ (Parseval). Hence:

* :class:`OrthogonalConv2d` — the operator 𝓑 (C → C channels, stride 1) under the two policies of
  :mod:`orthojac.nn.orthogonal`:

  ``"init"``: a free k×k kernel, **delta-orthogonal** at initialisation (Xiao et al. 2018, "Dynamical
  isometry and a mean field theory of CNNs"): K[:, :, p, p] = Q orthogonal, every other tap 0, so
  M(u, v) = Q at every frequency. 𝓑x = conv2d(pad_circ(x), K); 𝓑ᵀy = conv_transpose2d(pad_circ(y), K,
  padding=2p) (the transposed convolution with the same weights, i.e. the adjoint). Training may move K
  off the orthogonal convolutions; :meth:`OrthogonalConv2d.orthogonality_defect` measures how far
  (used by :func:`orthojac.regularizers.orthogonality`).

  ``"exact"``: the Cayley map in the Fourier domain (Trockman & Kolter 2021, "Orthogonalizing
  convolutional layers with the Cayley transform"). A real k×k kernel V defines Â(u, v) (the response
  above, of V), A = ½(Â − Âᴴ) is skew-Hermitian at every frequency, and M = (I − A)⁻¹(I + A) is unitary.
  Because V is real, A(−u, −v) = conj A(u, v), so M has the conjugate symmetry of a real operator and
  𝓑x = irfft2(M · rfft2(x)) is a real, **exactly orthogonal** convolution (with full H×W support) for any
  V. The image size (H, W) is fixed at construction.

* :class:`ConvOrthoResidual` — ``F(x) = x − 2𝓑ᵀρ(𝓑x + b)`` (b one bias per channel), ρ′ ∈ {0, 1}:
  DF = I − 2𝓑ᵀD𝓑, orthogonal because 𝓑𝓑ᵀ = I (the dense proof of notes §2.4, word for word).
* :class:`ConvOrthoFeedforward` — ``F(x) = 𝓑ᵀσ(𝓑x + b) + c`` (tied: A = B), σ′ ∈ {−1, +1}:
  DF = 𝓑ᵀ diag(±1) 𝓑, a product of orthogonal operators (notes §2.3). c = −𝓑ᵀσ(b) ("centred"), so with
  the identity-at-init bias F(x) = x at initialisation.
* :class:`OrthoDownsample` — pixel-unshuffle (C, H, W) → (r²C, H/r, W/r): it only moves entries, so its
  Jacobian is a permutation matrix. Between stages it keeps a conv body orthogonal end to end.

Every layer states ``jacobian_claim`` and is checked by ``tests/test_claims.py`` through the registry.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import claims
from .activations import get_activation, slopes_of
from .base import ClaimedModule
from .dense import _PLUS_MINUS, _ZERO_ONE, _check_slopes, _init_bias
from .orthogonal import check_policy, orthogonal_init_

__all__ = ["OrthogonalConv2d", "ConvOrthoResidual", "ConvOrthoFeedforward", "OrthoDownsample",
           "random_orthogonal_kernel"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def frequency_response(kernel: torch.Tensor, size: tuple[int, int], onesided: bool = True) -> torch.Tensor:
    """M(u, v) of the module docstring for a (C_out, C_in, k, k) kernel on an H×W circular grid, as a
    (H, W//2+1, C_out, C_in) complex tensor (``onesided``; all W frequencies otherwise).

    Computed as the DFT of the kernel zero-padded to H×W and rolled so the centre tap sits at (0, 0); the
    DFT's e^{−2πi…} convention gives conj M, so the result is conjugated."""
    c_out, c_in, k, k2 = kernel.shape
    h, w = size
    p = k // 2
    if k > h or k2 > w:
        raise ValueError(f"kernel {k}×{k2} is larger than the image {h}×{w}")
    padded = kernel.new_zeros(c_out, c_in, h, w)
    padded[..., :k, :k2] = kernel
    padded = torch.roll(padded, shifts=(-p, -(k2 // 2)), dims=(-2, -1))
    spec = torch.fft.rfft2(padded) if onesided else torch.fft.fft2(padded)
    return spec.conj().permute(2, 3, 0, 1)


@torch.no_grad()
def random_orthogonal_kernel(channels: int, kernel_size: int = 3, generator: torch.Generator | None = None,
                             dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random k×k kernel whose circular convolution is orthogonal and *not* a 1×1 map (k ≥ 2).

    Block-convolutional construction (Xiao et al. 2018; Li et al. 2019, BCOP): with Q orthogonal and P₁, P₂
    symmetric orthogonal projectors, the response M(z_h, z_w) = Q (P₁ + (I − P₁) z_h)(P₂ + (I − P₂) z_w)
    (z = e^{iθ}) is unitary at every frequency, since each factor P + (I − P)z is. Its taps sit at offsets
    {0, 1}² from the centre. For k = 1 (or C = 1, which has no proper projector) the kernel is
    delta-orthogonal."""
    q = orthogonal_init_(torch.empty(channels, channels, dtype=torch.float64), "qr", generator)
    kernel = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    p = kernel_size // 2
    if kernel_size < 2 or channels < 2:
        kernel[:, :, p, p] = q
        return kernel.to(dtype)

    def projector() -> torch.Tensor:
        r = int(torch.randint(1, channels, (1,), generator=generator))
        u = orthogonal_init_(torch.empty(channels, r, dtype=torch.float64), "qr", generator)
        return u @ u.T

    p1, p2 = projector(), projector()
    eye = torch.eye(channels, dtype=torch.float64)
    for dh, a in ((0, p1), (1, eye - p1)):
        for dw, b in ((0, p2), (1, eye - p2)):
            kernel[:, :, p + dh, p + dw] = q @ a @ b
    return kernel.to(dtype)


class OrthogonalConv2d(ClaimedModule):
    r"""The orthogonal convolution operator 𝓑: (N, C, H, W) → (N, C, H, W), circular padding, stride 1.

    See the module docstring for the two policies. ``forward(x)`` is 𝓑x, :meth:`adjoint` is 𝓑ᵀ.

    Args:
        channels: C (input and output channels).
        image_size: (H, W) — or an int for square images; needed by the exact policy (its operator is
            defined on that grid), and by :meth:`orthogonality_defect`.
        kernel_size: k (odd), the support of K (``"init"``) or of the generator V (``"exact"``).
        orthogonal: ``"init"`` or ``"exact"``.
        orthogonal_init: the centre tap: ``"qr"`` (Haar), ``"cayley"`` or ``"identity"``. Under ``"exact"`` the
            generator's centre tap is a random skew matrix S = (G − Gᵀ)/√(2C) (so M = Cayley(S), a random
            orthogonal 1×1 map) for ``"qr"``/``"cayley"``, and V = 0 (𝓑 = I) for ``"identity"``.
        generator: a ``torch.Generator``.
    """

    def __init__(self, channels: int, image_size: int | tuple[int, int], kernel_size: int = 3, *,
                 orthogonal: str = "init", orthogonal_init: str = "qr",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_policy(orthogonal, "cayley", orthogonal_init)
        if channels < 1:
            raise ValueError(f"OrthogonalConv2d: channels must be positive, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"OrthogonalConv2d: kernel_size must be a positive odd number (a centre tap), "
                             f"got {kernel_size}")
        h, w = _pair(image_size)
        if h < kernel_size or w < kernel_size:
            raise ValueError(f"OrthogonalConv2d: image_size {(h, w)} is smaller than kernel_size {kernel_size}")
        self.channels, self.size, self.kernel_size, self.policy = channels, (h, w), kernel_size, orthogonal
        p = kernel_size // 2
        weight = torch.zeros(channels, channels, kernel_size, kernel_size)
        if orthogonal == "init":
            orthogonal_init_(weight[:, :, p, p], orthogonal_init, generator)
        elif orthogonal_init != "identity":
            g = torch.randn(channels, channels, generator=generator)
            weight[:, :, p, p] = (g - g.T) / (2.0 * channels) ** 0.5
        self.weight = nn.Parameter(weight)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.orthogonal()

    # ------------------------------------------------------------- the exact policy's operator
    def response(self, onesided: bool = True) -> torch.Tensor | None:
        """M(u, v) on the one-sided frequency grid (H, W//2+1, C, C) under ``"exact"`` (the Cayley map of the
        skew-Hermitian part of V's response); None under ``"init"`` (the operator is the conv itself).
        Compute it once per forward pass and pass it to :meth:`forward`/:meth:`adjoint`."""
        if self.policy != "exact":
            return None
        weight = self.weight if self.weight.dtype == torch.float64 else self.weight.float()
        a_hat = frequency_response(weight, self.size, onesided)
        a = 0.5 * (a_hat - a_hat.mH)
        eye = torch.eye(self.channels, dtype=a.dtype, device=a.device)
        return torch.linalg.solve(eye - a, eye + a)

    def _spectral(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x if dtype == torch.float64 else x.float()
        xh = torch.fft.rfft2(xf)  # (N, C, H, W//2+1)
        yh = torch.einsum("uvoc,ncuv->nouv", m.to(xh.dtype), xh)
        return torch.fft.irfft2(yh, s=self.size).to(dtype)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.channels or tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"OrthogonalConv2d expects (N, {self.channels}, {self.size[0]}, {self.size[1]}) "
                             f"inputs, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, response: torch.Tensor | None = None) -> torch.Tensor:
        """𝓑x."""
        self._check(x)
        if self.policy == "exact":
            return self._spectral(x, self.response() if response is None else response)
        p = self.kernel_size // 2
        return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), self.weight.to(x.dtype))

    def adjoint(self, y: torch.Tensor, response: torch.Tensor | None = None) -> torch.Tensor:
        """𝓑ᵀy: the transposed convolution with the same weights (response M(u, v)ᴴ under ``"exact"``)."""
        self._check(y)
        if self.policy == "exact":
            m = self.response() if response is None else response
            return self._spectral(y, m.mH)
        p = self.kernel_size // 2
        return F.conv_transpose2d(F.pad(y, (p, p, p, p), mode="circular"), self.weight.to(y.dtype), padding=2 * p)

    def operator_response(self, onesided: bool = False) -> torch.Tensor:
        """M(u, v) of the operator as it stands (either policy), on the full (or one-sided) grid."""
        if self.policy == "exact":
            if onesided:
                return self.response()
            return self.response(onesided=False)
        return frequency_response(self.weight, self.size, onesided=onesided)

    def orthogonality_defect(self) -> torch.Tensor:
        """‖𝓑𝓑ᵀ − I‖²_F / (HW) = mean over the H·W frequencies of ‖M Mᴴ − I‖²_F (Parseval). For a
        delta kernel this is ‖QQᵀ − I‖²_F of its centre tap — the dense layers' penalty. Measured under both
        policies (≈ 1e-30 under ``"exact"``, where it is rounding only)."""
        m = self.operator_response(onesided=False)
        eye = torch.eye(self.channels, dtype=m.dtype, device=m.device)
        return (m @ m.mH - eye).abs().pow(2).sum() / (self.size[0] * self.size[1])

    @torch.no_grad()
    def randomize_constrained_(self, generator: torch.Generator | None = None) -> tuple[str, ...]:
        """Move to a random point that keeps the policy's constraint (used by :func:`orthojac.nn.randomize_`):
        ``"init"`` → :func:`random_orthogonal_kernel` (an orthogonal k×k convolution that is not 1×1);
        ``"exact"`` → every tap of the generator V ~ N(0, 0.5²). Returns the names of the parameters moved."""
        if self.policy == "exact":
            self.weight.copy_(0.5 * torch.randn(self.weight.shape, generator=generator, dtype=self.weight.dtype))
        else:
            self.weight.copy_(random_orthogonal_kernel(self.channels, self.kernel_size, generator, self.weight.dtype))
        return ("weight",)

    def _apply(self, fn, recurse: bool = True):
        """Precision-aware casting (as :class:`ClaimedModule` does for matrices): a delta kernel whose centre
        tap was orthogonal to the old precision is re-projected (polar factor) at the new one."""
        w = self.weight
        old_eps = torch.finfo(w.dtype).eps if w.is_floating_point() else None
        p = self.kernel_size // 2
        centre = w.detach()[:, :, p, p].double()
        off = w.detach().double().clone()
        off[:, :, p, p] = 0
        delta_orthogonal = (self.policy == "init" and bool(off.abs().max() == 0) and old_eps is not None
                            and float(torch.linalg.matrix_norm(centre @ centre.T - torch.eye(self.channels,
                                  dtype=torch.float64))) <= 50 * old_eps * self.channels)
        out = super()._apply(fn, recurse)
        w = self.weight
        if delta_orthogonal and w.is_floating_point() and torch.finfo(w.dtype).eps < old_eps:
            with torch.no_grad():
                u, _, vh = torch.linalg.svd(w[:, :, p, p].double())
                w[:, :, p, p] = (u @ vh).to(w.dtype)
        return out

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, image_size={self.size}, kernel_size={self.kernel_size}, "
                f"orthogonal={self.policy!r}, padding='circular'")


class ConvOrthoResidual(ClaimedModule):
    r"""Orthogonal-Jacobian convolutional residual layer ``F(x) = x − 2𝓑ᵀρ(𝓑x + b)`` (notes §2.4 with
    B → the orthogonal convolution 𝓑, Bᵀ → its adjoint, the transposed convolution).

    Args:
        channels, image_size, kernel_size, orthogonal, orthogonal_init, generator: as in
            :class:`OrthogonalConv2d`.
        activation: ρ with slopes in {0, 1}: ``"relu"``, ``"relu_k"`` or a :class:`ReLUk` module.
        bias_init: ``"identity"`` (ρ's flat region: F = id while |𝓑x| ≤ bias_margin), ``"zero"`` or a number.
        bias_margin: as in :class:`orthojac.nn.OrthoResidual`.
        activation_kwargs: passed to :func:`get_activation`.
    """

    def __init__(self, channels: int, image_size: int | tuple[int, int], activation: str | nn.Module = "relu",
                 kernel_size: int = 3, *, orthogonal: str = "init", orthogonal_init: str = "qr",
                 bias_init: str | float = "identity", bias_margin: float = 3.0,
                 generator: torch.Generator | None = None, activation_kwargs: dict | None = None) -> None:
        super().__init__()
        self.act = get_activation(activation, **(activation_kwargs or {}))
        _check_slopes(self.act, _ZERO_ONE, "ConvOrthoResidual", activation)
        self.conv = OrthogonalConv2d(channels, image_size, kernel_size, orthogonal=orthogonal,
                                     orthogonal_init=orthogonal_init, generator=generator)
        self.bias = nn.Parameter(torch.empty(channels))
        _init_bias(self.bias, bias_init, self.act, 0.0, bias_margin)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.orthogonal()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.conv.response()
        z = self.conv(x, m) + self.bias.to(x.dtype)[:, None, None]
        return x - 2.0 * self.conv.adjoint(self.act(z), m)


class ConvOrthoFeedforward(ClaimedModule):
    r"""Orthogonal-Jacobian convolutional feedforward layer (no skip) ``F(x) = 𝓑ᵀσ(𝓑x + b) + c`` (notes
    §2.3 with A = B tied, B → the orthogonal convolution 𝓑), σ′ ∈ {−1, +1}.

    Tied only (the untied dense form is ``OrthoFeedforward(tied=False)``; on Fashion-MNIST it did not beat
    the tied one, docs/fmnist_depth.md). c (per channel) starts at −𝓑ᵀσ(b) ("centred": F(x) = x at
    initialisation with ``bias_init="identity"``; for a constant image 𝓑ᵀ acts as M(0, 0)ᴴ per pixel).

    Args:
        activation: ``"abs"`` (default), ``"sigma_k"`` or a module with slopes ±1; a {0, 1}-slope
            activation is refused (the Jacobian would be a partial isometry).
        other arguments: as in :class:`ConvOrthoResidual`.
    """

    def __init__(self, channels: int, image_size: int | tuple[int, int], activation: str | nn.Module = "abs",
                 kernel_size: int = 3, *, orthogonal: str = "init", orthogonal_init: str = "qr",
                 bias_init: str | float = "identity", bias_margin: float = 3.0,
                 generator: torch.Generator | None = None, activation_kwargs: dict | None = None) -> None:
        super().__init__()
        self.act = get_activation(activation, **(activation_kwargs or {}))
        s = slopes_of(self.act)
        if s is not None and s <= _ZERO_ONE and 0.0 in s:
            raise ValueError(
                f"ConvOrthoFeedforward: activation {activation!r} has slopes {{0, 1}}, so 𝓑ᵀσ(𝓑x + b) is only a "
                "partial isometry and gradients vanish with depth. Use 'abs' or 'sigma_k' (slopes ±1), or "
                "ConvOrthoResidual(..., activation='relu').")
        _check_slopes(self.act, _PLUS_MINUS, "ConvOrthoFeedforward", activation)
        self.conv = OrthogonalConv2d(channels, image_size, kernel_size, orthogonal=orthogonal,
                                     orthogonal_init=orthogonal_init, generator=generator)
        self.bias = nn.Parameter(torch.empty(channels))
        _init_bias(self.bias, bias_init, self.act, 1.0, bias_margin)
        with torch.no_grad():
            h, w = self.conv.size
            const = self.act(self.bias).reshape(1, -1, 1, 1).expand(1, channels, h, w).contiguous()
            c = -self.conv.adjoint(const)[0, :, 0, 0]
        self.out_bias = nn.Parameter(c.clone())

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.orthogonal()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.conv.response()
        z = self.conv(x, m) + self.bias.to(x.dtype)[:, None, None]
        return self.conv.adjoint(self.act(z), m) + self.out_bias.to(x.dtype)[:, None, None]


class OrthoDownsample(ClaimedModule):
    """Invertible downsampling ``(N, C, H, W) → (N, r²C, H/r, W/r)`` by pixel-unshuffle (Jacobsen et al. 2018,
    i-RevNet): a permutation of the entries, hence an orthogonal Jacobian. ``inverse`` is pixel-shuffle."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"OrthoDownsample: factor must be a positive integer, got {factor}")
        self.factor = int(factor)

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.orthogonal()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.factor
        if x.ndim != 4 or x.shape[-1] % r or x.shape[-2] % r:
            raise ValueError(f"OrthoDownsample(factor={r}) needs (N, C, H, W) inputs with H and W divisible by "
                             f"{r}, got {tuple(x.shape)}")
        return F.pixel_unshuffle(x, r)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(y, self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def conv_layer(kind: str, channels: int, image_size: Any, policy: str, generator: torch.Generator | None,
               **kw: Any) -> nn.Module:
    """Build a conv layer by family name (used by the registry and :mod:`orthojac.models.convnet`)."""
    if kind == "orthogonal":
        return OrthogonalConv2d(channels, image_size, orthogonal=policy, generator=generator, **kw)
    if kind in ("residual_relu", "residual_relu_k"):
        return ConvOrthoResidual(channels, image_size, activation=kind.removeprefix("residual_"),
                                 orthogonal=policy, generator=generator, **kw)
    if kind == "feedforward_abs":
        return ConvOrthoFeedforward(channels, image_size, activation="abs", orthogonal=policy, generator=generator,
                                    **kw)
    if kind == "feedforward_sigma_k":
        kw.setdefault("activation_kwargs", {"breakpoints": (0.0, 1.0, 2.0)})
        return ConvOrthoFeedforward(channels, image_size, activation="sigma_k", orthogonal=policy,
                                    generator=generator, **kw)
    raise ValueError(f"unknown conv layer kind {kind!r}")
