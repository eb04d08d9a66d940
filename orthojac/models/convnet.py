"""Convolutional classifiers: ``head ∘ body ∘ stem`` with a body of orthogonal-Jacobian conv layers.

Layout (registered as body type ``"conv"``, so ``build_model("conv", arch, (C₀, H, W), classes, width,
depth, policy)`` and ``model.body: conv`` in a training config build it):

* **stem** (ordinary): pixel-unshuffle by 2 (C₀×H×W → 4C₀×H/2×W/2, a permutation), a 3×3 convolution to
  ``width`` channels, and a per-sample normalisation without parameters (``GroupNorm(1, ·, affine=False)``)
  so the body sees unit-scale features, which the identity-at-init biases assume (as the MLP's LayerNorm);
* **body**: ``stages`` stages (default 2) of equal-width layers of the family ``arch``; between two stages an
  :class:`orthojac.nn.OrthoDownsample` (pixel-unshuffle: channels ×4, each side /2, orthogonal). The
  ``depth`` layers are split as evenly as possible over the stages (earlier stages get the remainder);
  ``depth`` counts the family's layers only. The body of an orthogonal family is orthogonal end to end;
* **head** (ordinary): ``"linear"`` (default) flattens and applies one linear layer — so at initialisation,
  when the body is the identity, the network is a linear classifier of the stem's features — or ``"pool"``
  (global average pool, then linear).

Families (the ``arch`` column of the experiments): ``ortho_residual_relu``, ``ortho_residual_relu_k``,
``ortho_feedforward_abs``, ``ortho_feedforward_sigma_k`` (the layers of :mod:`orthojac.nn.conv`, circular
k×k convolutions, ``policy`` "init" or "exact"); ``resnet`` (standard residual block
x + conv(ReLU(conv(x) + b₁)) + b₂, He init, second conv zero-initialised) and ``plain_relu``
(ReLU(conv(x) + b), He init, zero bias: no skip connections). The baselines use zero padding and ignore
``policy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..nn.conv import OrthoDownsample, conv_layer
from .mlp import Classifier

__all__ = ["CONV_FAMILIES", "register_conv_family", "create_convnet", "ConvPlainLayer", "ConvResidualBlock"]

# name → block(channels, image_size, policy, generator, **kw) -> nn.Module
CONV_FAMILIES: dict[str, Callable[..., nn.Module]] = {}


def register_conv_family(name: str, block: Callable[..., nn.Module]) -> None:
    if name in CONV_FAMILIES:
        raise ValueError(f"conv family {name!r} is already registered")
    CONV_FAMILIES[name] = block


class ConvPlainLayer(nn.Module):
    """ReLU(conv(x) + b): 3×3, zero padding, He (Kaiming-normal, gain √2) init, zero bias."""

    def __init__(self, channels: int, kernel_size: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.conv.weight.normal_(0.0, math.sqrt(2.0 / (channels * kernel_size ** 2)), generator=generator)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class ConvResidualBlock(nn.Module):
    """The standard residual block x + conv₂(ReLU(conv₁(x))) (biases included), conv₁ He-initialised, conv₂
    zero-initialised, so the block starts as the identity."""

    def __init__(self, channels: int, kernel_size: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.conv1.weight.normal_(0.0, math.sqrt(2.0 / (channels * kernel_size ** 2)), generator=generator)
            for t in (self.conv1.bias, self.conv2.weight, self.conv2.bias):
                t.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


for _kind in ("residual_relu", "residual_relu_k", "feedforward_abs", "feedforward_sigma_k"):
    register_conv_family(f"ortho_{_kind}", lambda c, size, policy, g, _k=_kind, **kw: conv_layer(
        _k, c, size, policy, g, **kw))
register_conv_family("resnet", lambda c, size, policy, g, **kw: ConvResidualBlock(c, generator=g, **kw))
register_conv_family("plain_relu", lambda c, size, policy, g, **kw: ConvPlainLayer(c, generator=g, **kw))

HEADS = ("linear", "pool")


def create_convnet(arch: str, in_shape: tuple[int, ...], num_classes: int, width: int = 16, depth: int = 8,
                   policy: str = "init", seed: int | None = 0, stages: int = 2, head: str = "linear",
                   **layer_kwargs: Any) -> Classifier:
    """The conv classifier of the module docstring. ``width`` is the first stage's channel count (stage s has
    4ˢ·width channels); ``in_shape`` is (C₀, H, W) with H, W divisible by 2·2^(stages−1)."""
    if arch not in CONV_FAMILIES:
        raise ValueError(f"unknown conv family {arch!r}; choose one of {', '.join(sorted(CONV_FAMILIES))}")
    if len(in_shape) != 3:
        raise ValueError(f"the conv body needs image inputs (C, H, W), got in_shape={tuple(in_shape)}")
    if depth < 1 or width < 1 or stages < 1:
        raise ValueError(f"depth, width and stages must be positive, got depth={depth}, width={width}, "
                         f"stages={stages}")
    if head not in HEADS:
        raise ValueError(f"head={head!r} is unknown; choose one of {HEADS}")
    c0, h, w = in_shape
    f = 2 ** stages
    if h % f or w % f:
        raise ValueError(f"the conv body with {stages} stages needs H and W divisible by {f} (stem /2 and "
                         f"/2 per downsampling), got {h}×{w}")
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        stem = nn.Sequential(OrthoDownsample(2), nn.Conv2d(4 * c0, width, 3, padding=1),
                             nn.GroupNorm(1, width, affine=False))
    per_stage = [depth // stages + (1 if s < depth % stages else 0) for s in range(stages)]
    layers: list[nn.Module] = []
    c, size = width, (h // 2, w // 2)
    for s, n in enumerate(per_stage):
        if s > 0:
            layers.append(OrthoDownsample(2))
            c, size = 4 * c, (size[0] // 2, size[1] // 2)
        layers += [CONV_FAMILIES[arch](c, size, policy, generator, **layer_kwargs) for _ in range(n)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        if head == "linear":
            head_mod: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(c * size[0] * size[1], num_classes))
        else:
            head_mod = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
    return Classifier(stem, nn.Sequential(*layers), head_mod)
