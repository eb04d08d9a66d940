"""Stable networks of Haber & Ruthotto (arXiv 1705.03341 §2, §6): opening → propagation → classifier.

* **opening** (fixed, no parameters): raises the input to the propagation width n. ``"pad"`` appends zero
  features (the swiss roll's n = 4, notes §9.2), ``"repeat"`` duplicates the features (peaks' n = 8, §9.3; the
  single image channel to 6 channels for MNIST, §11 — an assumption, the paper does not say), ``"identity"``.
* **propagation**: one :class:`~orthojac.nn.stable.StableDynamics` (ResNet, antisymmetric, leapfrog, Verlet).
* **classifier**: the hypothesis h(Y_N W + e_s µᵀ) of Eq. 2.4 — logistic regression (Eq. 2.2, one output, for two
  classes) or softmax (Eq. 2.3); W is an ``nn.Linear`` over the flattened features Y_N.

:func:`hypothesis_loss` is the matching cross-entropy S (averaged over the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.stable import StableDynamics, create_dynamics

__all__ = ["StableNet", "create_stable_model", "hypothesis_loss", "predict_labels", "OPENINGS"]

OPENINGS = ("pad", "repeat", "identity")


def hypothesis_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/s) Σ_i S(h(y_iᵀW + µ), c_i): logistic cross-entropy when ``logits`` has one column (labels 0/1),
    softmax cross-entropy otherwise."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per row (logistic: logit > 0 ↔ class 1)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


class StableNet(nn.Module):
    """opening → propagation → classifier (see module docstring). ``in_channels`` is the input's feature
    count (dense) or channel count (conv); ``feature_shape`` the per-example shape after the opening."""

    def __init__(self, propagation: StableDynamics, in_channels: int, num_classes: int, opening: str = "identity",
                 spatial: tuple[int, int] | None = None, hypothesis: str = "auto") -> None:
        super().__init__()
        if opening not in OPENINGS:
            raise ValueError(f"opening must be one of {OPENINGS}, got {opening!r}")
        n = propagation.width
        if opening == "identity" and in_channels != n:
            raise ValueError(f"opening 'identity' needs in_channels == width ({in_channels} ≠ {n}); use 'pad' or "
                             "'repeat'")
        if opening == "repeat" and n % in_channels:
            raise ValueError(f"opening 'repeat' needs width to be a multiple of in_channels ({n}, {in_channels})")
        if opening == "pad" and n < in_channels:
            raise ValueError(f"opening 'pad' needs width ≥ in_channels ({n} < {in_channels})")
        if propagation.conv != (spatial is not None):
            raise ValueError("a convolutional propagation needs spatial=(H, W); a dense one must not have it")
        if hypothesis not in ("auto", "logistic", "softmax"):
            raise ValueError(f"hypothesis must be 'auto', 'logistic' or 'softmax', got {hypothesis!r}")
        if hypothesis == "logistic" and num_classes != 2:
            raise ValueError("the logistic hypothesis (Eq. 2.2) is for two classes")
        logistic = hypothesis == "logistic" or (hypothesis == "auto" and num_classes == 2)
        self.opening, self.in_channels, self.num_classes, self.spatial = opening, in_channels, num_classes, spatial
        self.propagation = propagation
        n_feat = n * (spatial[0] * spatial[1] if spatial else 1)
        self.classifier = nn.Linear(n_feat, 1 if logistic else num_classes, dtype=next(propagation.parameters()).dtype)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def open(self, x: torch.Tensor) -> torch.Tensor:
        """The opening layer (no parameters)."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input features/channels, got shape {tuple(x.shape)}")
        n = self.propagation.width
        if self.opening == "repeat":
            return x.repeat(1, n // self.in_channels, *([1] * (x.ndim - 2)))
        if self.opening == "pad":
            pad = x.new_zeros(x.shape[0], n - self.in_channels, *x.shape[2:])
            return torch.cat([x, pad], dim=1)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Y_N, flattened per example: the classifier's input."""
        return self.propagation(self.open(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def classifier_parameters(self) -> list[nn.Parameter]:
        """(W, µ): the block updated by Newton-CG."""
        return list(self.classifier.parameters())

    def propagation_parameters(self) -> list[nn.Parameter]:
        """(K_j, b_j)_j: the block updated by Gauss–Newton-CG."""
        return list(self.propagation.parameters())


def create_stable_model(arch: str, in_channels: int, num_classes: int, width: int, layers: int, T: float,
                        opening: str = "identity", spatial: tuple[int, int] | None = None,
                        hypothesis: str = "auto", **dynamics_kw) -> StableNet:
    """A :class:`StableNet` with propagation ``create_dynamics(arch, width, layers, T, **dynamics_kw)``
    (``conv=True`` is implied by ``spatial``)."""
    if spatial is not None:
        dynamics_kw["conv"] = True
    prop = create_dynamics(arch, width, layers, T, **dynamics_kw)
    return StableNet(prop, in_channels, num_classes, opening=opening, spatial=spatial, hypothesis=hypothesis)
