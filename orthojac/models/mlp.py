"""MLP classifiers: ``head ∘ body ∘ stem`` with the body a stack of L equal-width layers.

The stem maps d_in → n (a linear layer followed by a parameter-free LayerNorm, so the body sees
unit-scale features and the identity-at-init biases of :mod:`orthojac.nn.dense` are meaningful); the head
maps n → classes. Only the body carries the Jacobian claim. ``model.blocks`` lists the body's layers in
order, which is what :func:`orthojac.diagnostics.gradient_norms` hooks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.orthogonal import orthogonal_init_

__all__ = ["Classifier", "PlainLayer", "ResidualBlock"]


class Classifier(nn.Module):
    """stem → body (``nn.Sequential`` of blocks) → head."""

    def __init__(self, stem: nn.Module, body: nn.Sequential, head: nn.Module) -> None:
        super().__init__()
        self.stem, self.body, self.head = stem, body, head

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


class PlainLayer(nn.Module):
    """σ(Wx + b), the baseline deep feedforward layer: He (Kaiming-normal, gain √2) or orthogonal init
    (scaled by ``gain``), zero bias."""

    def __init__(self, dim: int, activation: str = "relu", init: str = "he", gain: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        acts = {"relu": nn.ReLU(), "tanh": nn.Tanh()}
        if activation not in acts:
            raise ValueError(f"PlainLayer: activation {activation!r} unknown; choose one of {tuple(acts)}")
        self.act = acts[activation]
        with torch.no_grad():
            if init == "he":
                self.linear.weight.normal_(0.0, math.sqrt(2.0 / dim), generator=generator)
            elif init == "orthogonal":
                orthogonal_init_(self.linear.weight, "qr", generator)
                g = gain if gain is not None else (math.sqrt(2.0) if activation == "relu" else 1.0)
                self.linear.weight.mul_(g)
            else:
                raise ValueError(f"PlainLayer: init {init!r} unknown; choose 'he' or 'orthogonal'")
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class ResidualBlock(nn.Module):
    """The standard residual MLP block x + W₂ ReLU(W₁x + b₁) + b₂, with W₂ initialised at zero
    ("zero-init residual"), so the stack starts as the identity."""

    def __init__(self, dim: int, hidden: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        with torch.no_grad():
            self.fc1.weight.normal_(0.0, math.sqrt(2.0 / dim), generator=generator)
            self.fc1.bias.zero_()
            self.fc2.weight.zero_()
            self.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))
