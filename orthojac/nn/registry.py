"""The layer registry: every layer family that states a Jacobian claim, with a way to build it.

A new layer is tested by being registered: ``tests/test_claims.py`` walks :data:`LAYERS`, builds each
entry at several widths under both orthogonality policies, moves its parameters to random non-initial
values with :func:`randomize_`, and checks ``module.jacobian_claim`` (and the claim of deep compositions,
:func:`orthojac.claims.compose`) with ``torch.func.jacrev`` in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .orthogonal import orthogonal_init_

__all__ = ["LayerSpec", "LAYERS", "register_layer", "randomize_"]

Builder = Callable[[int, str, torch.Generator], nn.Module]


@dataclass(frozen=True)
class LayerSpec:
    """``build(width, policy, generator)`` returns a layer of that width under that policy.
    ``min_width`` is the smallest width at which the construction makes sense; ``input_shape(width)`` is
    the shape of one input sample (``(width,)`` for dense layers, e.g. ``(channels, h, w)`` for conv)."""

    name: str
    build: Builder
    min_width: int = 1
    input_shape: Callable[[int], tuple[int, ...]] = lambda n: (n,)


LAYERS: dict[str, LayerSpec] = {}


def register_layer(name: str, build: Builder, min_width: int = 1,
                   input_shape: Callable[[int], tuple[int, ...]] | None = None) -> LayerSpec:
    if name in LAYERS:
        raise ValueError(f"layer {name!r} is already registered")
    spec = LayerSpec(name, build, min_width, input_shape or (lambda n: (n,)))
    LAYERS[name] = spec
    return spec


@torch.no_grad()
def randomize_(module: nn.Module, generator: torch.Generator | None = None, scale: float = 1.0) -> nn.Module:
    """Move every parameter of ``module`` to a random value *that keeps each layer's constraints*:

    * constrained (orthogonal) weights are set to fresh Haar-random orthogonal matrices — through
      ``right_inverse`` under the exact policy — and then, under the exact policy, the unconstrained
      parametrisation tensor is perturbed too (so the parametrisation itself is exercised);
    * a module with a ``randomize_constrained_(generator)`` method (e.g. :class:`orthojac.nn.OrthogonalConv2d`)
      moves its own constrained parameters and returns their names;
    * every other floating parameter (biases, breakpoint offsets, scales) gets N(0, scale²) noise added.
    """
    for m in module.modules():
        names = set(getattr(m, "orthogonal_weight_names", ()))
        hook = getattr(m, "randomize_constrained_", None)  # a module with its own constraint (e.g. a conv)
        handled = set(hook(generator)) if callable(hook) else set()
        for name in names:
            w = getattr(m, name)
            q = orthogonal_init_(torch.empty_like(w), "qr", generator)
            if parametrize.is_parametrized(m, name):
                setattr(m, name, q)
                orig = m.parametrizations[name].original
                orig.add_(0.3 * torch.randn(orig.shape, generator=generator, dtype=orig.dtype).to(orig.device))
            else:
                w.copy_(q)
        for pname, p in m.named_parameters(recurse=False):
            if pname in names or pname in handled:
                continue
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device))
    return module
