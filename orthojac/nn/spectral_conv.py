r"""An exact orthogonal convolution at the price of an FFT convolution: the frequency response itself is the
parameter, kept unitary by the ``"riemannian"`` retraction of :mod:`orthojac.nn.orthogonal`.

A circular convolution on an H×W grid is diagonalised by the 2-D DFT (see :mod:`orthojac.nn.conv`):
(𝓑x)^(u, v) = M(u, v)·x̂(u, v) with M(u, v) ∈ ℂ^{C×C}; 𝓑 is orthogonal iff every M(u, v) is unitary, and
real iff M(−u, −v) = conj M(u, v). :class:`SpectralOrthogonalConv2d` stores M on the one-sided grid
(H, W//2 + 1) as its (complex) ``weight`` and computes

    𝓑x = irfft2(M ⊙ rfft2(x)),      𝓑ᵀy = irfft2(Mᴴ ⊙ rfft2(y)),

O(C²HW) for the products plus O(CHW log HW) for the FFTs, with no matrix function in the forward pass (the
exact policy of :class:`orthojac.nn.conv.OrthogonalConv2d` evaluates a Cayley map — H(W/2 + 1) linear solves
of size C — in every forward pass; Trockman & Kolter 2021). After every optimiser step each M(u, v) is replaced
by its unitary polar factor (batched complex Newton–Schulz, the same code as the dense weights). The
real-operator symmetry M(−u, v) = conj M(u, v) on the self-conjugate columns v = 0 and v = W/2 is preserved
exactly in exact arithmetic: the gradient has it, Adam's element-wise update keeps it, and the polar factor
commutes with conjugation; irfft2 discards any rounding-level remainder. Like the Cayley operator, 𝓑 has full
H×W support (it is not a k×k kernel); it starts as a 1×1 convolution by a random orthogonal matrix
(delta-orthogonal).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import claims
from .base import ClaimedModule
from .orthogonal import INIT_METHODS, _register_riemannian, orthogonal_init_

__all__ = ["SpectralOrthogonalConv2d"]


class SpectralOrthogonalConv2d(ClaimedModule):
    """𝓑: (N, C, H, W) → (N, C, H, W), an exactly orthogonal circular convolution parametrised by its frequency
    response (module docstring). ``forward`` is 𝓑x, :meth:`adjoint` is 𝓑ᵀ = 𝓑⁻¹.

    Args:
        channels: C.  image_size: (H, W) or an int (the operator is defined on that grid).
        orthogonal_init: the starting 1×1 map, ``"qr"`` (Haar), ``"cayley"`` or ``"identity"``.
        dtype: ``torch.complex64`` (default) or ``torch.complex128``.
        generator: a ``torch.Generator``.
    """

    def __init__(self, channels: int, image_size: int | tuple[int, int], *, orthogonal_init: str = "qr",
                 dtype: torch.dtype = torch.complex64, generator: torch.Generator | None = None) -> None:
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if channels < 1 or h < 1 or w < 1:
            raise ValueError(f"SpectralOrthogonalConv2d: channels and image_size must be positive, got {channels}, "
                             f"{(h, w)}")
        if orthogonal_init not in INIT_METHODS:
            raise ValueError(f"orthogonal_init={orthogonal_init!r} is unknown; choose one of {INIT_METHODS}")
        if dtype not in (torch.complex64, torch.complex128):
            raise ValueError(f"dtype={dtype}: choose torch.complex64 or torch.complex128")
        self.channels, self.size = channels, (h, w)
        q = orthogonal_init_(torch.empty(channels, channels, dtype=torch.float64), orthogonal_init, generator)
        self.weight = nn.Parameter(q.to(dtype).expand(h, w // 2 + 1, channels, channels).clone())
        _register_riemannian(self, "weight")

    @property
    def jacobian_claim(self) -> claims.JacobianClaim:
        return claims.orthogonal()

    def _apply_response(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels or tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"SpectralOrthogonalConv2d expects (N, {self.channels}, {self.size[0]}, {self.size[1]}) "
                             f"inputs, got {tuple(x.shape)}")
        real = torch.float64 if m.dtype == torch.complex128 else torch.float32
        xh = torch.fft.rfft2(x.to(real))  # (N, C, H, W//2+1)
        yh = torch.einsum("uvoc,ncuv->nouv", m, xh)
        return torch.fft.irfft2(yh, s=self.size).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """𝓑x."""
        return self._apply_response(x, self.weight)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """𝓑ᵀy (response Mᴴ)."""
        return self._apply_response(y, self.weight.mH)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, image_size={self.size}, orthogonal='exact' (riemannian, spectral)"
