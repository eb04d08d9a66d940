"""Measure dynamical isometry of any model: Jacobian spectra (exact or matrix-free), per-block gradient
norms, and the orthogonality defect of constrained weights. Imports nothing of orthojac but
:mod:`orthojac.claims`, so it works on any ``nn.Module`` or callable.

>>> import torch
>>> from orthojac.diagnostics import jacobian_spectrum
>>> res = jacobian_spectrum(torch.nn.Linear(4, 4).double(), torch.randn(2, 4, dtype=torch.float64))
>>> res.singular_values.shape
torch.Size([2, 4])
"""

from .gradients import (
    GradientNorms,
    OrthogonalityDefect,
    default_blocks,
    gradient_norms,
    orthogonality_defect,
)
from .lanczos import lanczos_singular_values
from .plots import plot_gradient_norms, plot_spectrum
from .spectrum import DEFAULT_K, METHODS, SpectrumResult, choose_method, dense_jacobian, jacobian_spectrum

__all__ = [
    "jacobian_spectrum", "SpectrumResult", "dense_jacobian", "lanczos_singular_values", "METHODS", "DEFAULT_K",
    "choose_method",
    "gradient_norms", "GradientNorms", "default_blocks", "orthogonality_defect", "OrthogonalityDefect",
    "plot_spectrum", "plot_gradient_norms",
]
