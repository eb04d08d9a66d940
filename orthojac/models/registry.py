"""Name → builder registry for whole networks (timm-style ``create_model``).

Every MLP family is ``Classifier(stem, body, head)``; a family is a function
``block(width, policy, generator, **kw) -> nn.Module`` that builds one body layer. Register new families
with :func:`register_family`. The names are the ``arch`` column of the experiments' CSV files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..nn import LimitLayer, OrthoFeedforward, OrthoResidual, PersistentSubspace
from .mlp import Classifier, PlainLayer, ResidualBlock

__all__ = ["FAMILIES", "BODIES", "register_family", "register_body", "create_model", "create_body", "family_names",
           "build_model"]

BlockBuilder = Callable[..., nn.Module]
FAMILIES: dict[str, BlockBuilder] = {}


def register_family(name: str, block: BlockBuilder) -> None:
    if name in FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    FAMILIES[name] = block


def family_names() -> list[str]:
    return sorted(FAMILIES)



register_family("ortho_residual_relu",
                lambda n, policy, g, **kw: OrthoResidual(n, activation="relu", orthogonal=policy, generator=g, **kw))
register_family("ortho_residual_relu_k",
                lambda n, policy, g, **kw: OrthoResidual(n, activation="relu_k", orthogonal=policy, generator=g, **kw))
register_family("ortho_feedforward_abs",
                lambda n, policy, g, **kw: OrthoFeedforward(n, activation="abs", orthogonal=policy, generator=g, **kw))
register_family("ortho_feedforward_sigma_k",
                lambda n, policy, g, **kw: OrthoFeedforward(n, activation="sigma_k", orthogonal=policy, generator=g,
                                                            **kw))
register_family("limit", lambda n, policy, g, eps=0.1, **kw: LimitLayer(n, eps, orthogonal=policy, generator=g, **kw))
register_family("pso", lambda n, policy, g, r=None, strategy="channels", **kw: PersistentSubspace(
    n, max(1, n // 8) if r is None else r, strategy, orthogonal=policy, generator=g, **kw))
register_family("partial_relu", lambda n, policy, g, **kw: OrthoFeedforward(
    n, "relu", partial=True, tied=False, orthogonal=policy, generator=g, **kw))
register_family("plain_relu", lambda n, policy, g, **kw: PlainLayer(n, "relu", init="he", generator=g, **kw))
register_family("plain_relu_orth", lambda n, policy, g, **kw: PlainLayer(n, "relu", init="orthogonal", generator=g,
                                                                         **kw))
register_family("plain_tanh_orth", lambda n, policy, g, **kw: PlainLayer(n, "tanh", init="orthogonal", generator=g,
                                                                         **kw))
register_family("resnet", lambda n, policy, g, **kw: ResidualBlock(n, generator=g, **kw))


def create_body(family: str, width: int, depth: int, policy: str = "init", seed: int | None = 0,
                generator: torch.Generator | None = None, **layer_kwargs: Any) -> nn.Sequential:
    """A stack of ``depth`` layers of one family (the part of the network whose Jacobian is claimed)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(family_names())}")
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
    if generator is None:
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    return nn.Sequential(*[FAMILIES[family](width, policy, generator, **layer_kwargs) for _ in range(depth)])


def create_model(family: str, in_features: int, num_classes: int, width: int = 128, depth: int = 16,
                 policy: str = "init", seed: int | None = 0, stem_norm: bool = True,
                 **layer_kwargs: Any) -> Classifier:
    """MLP classifier: Linear(d_in → n) [+ LayerNorm, no affine] → body of ``depth`` layers → Linear(n → classes).

    ``stem_norm`` (default on) gives the body unit-scale features, which the identity-at-init biases assume;
    turn it off for very low-dimensional inputs (e.g. 2-D toy data), where per-sample normalisation of a
    rank-2 embedding discards the input's scale. ``seed`` makes construction deterministic (the whole model,
    stem and head included)."""
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        norm = [nn.LayerNorm(width, elementwise_affine=False)] if stem_norm else []
        stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), *norm)
        head = nn.Linear(width, num_classes)
    body = create_body(family, width, depth, policy, generator=generator, **layer_kwargs)
    return Classifier(stem, body, head)


# body type → builder(arch, in_shape, num_classes, width, depth, policy, seed, **kw) -> nn.Module
BODIES: dict[str, Callable[..., nn.Module]] = {}


def register_body(name: str, builder: Callable[..., nn.Module]) -> None:
    """Register a body type (``"mlp"`` here; ``"conv"`` by :mod:`orthojac.models.convnet`)."""
    if name in BODIES:
        raise ValueError(f"body type {name!r} is already registered")
    BODIES[name] = builder


def build_model(body: str, arch: str, in_shape: tuple[int, ...], num_classes: int, width: int = 128,
                depth: int = 16, policy: str = "init", seed: int | None = 0, **kw: Any) -> nn.Module:
    """One entry point for configs and experiments: ``body`` is ``"mlp"`` or ``"conv"``, ``arch`` a family
    name (the CSV ``arch`` column), ``in_shape`` one sample's shape, e.g. (1, 28, 28)."""
    if body not in BODIES:
        raise ValueError(f"unknown body type {body!r}; choose one of {sorted(BODIES)}")
    return BODIES[body](arch, tuple(in_shape), num_classes, width, depth, policy, seed, **kw)


register_body("mlp", lambda arch, in_shape, num_classes, width, depth, policy, seed, **kw: create_model(
    arch, math.prod(in_shape), num_classes, width, depth, policy, seed, **kw))


def _register_conv_body() -> None:
    from .convnet import create_convnet

    register_body("conv", lambda arch, in_shape, num_classes, width, depth, policy, seed, **kw: create_convnet(
        arch, in_shape, num_classes, width, depth, policy, seed, **kw))


_register_conv_body()


# Persistent subspace orthogonality (docs/pso.md): one family per enforcement strategy, the subspace
# dimension r a keyword (model.kwargs.r in configs; default n // 8, at least 1).
def _pso(strategy: str) -> BlockBuilder:
    def block(n: int, policy: str, g: torch.Generator, r: int | None = None, **kw: Any) -> nn.Module:
        return PersistentSubspace(n, max(1, n // 8) if r is None else r, strategy, orthogonal=policy, generator=g,
                                  **kw)
    return block


register_family("pso_channels", _pso("channels"))
register_family("pso_bias", _pso("bias"))


# The untied feedforward form Aᵀ|Bx + b| + c with two free weights A, B (notes §2.3; A starts equal to B, so
# the layer is the identity at initialisation like the tied form). DF = Aᵀ·diag(±1)·B is orthogonal whenever
# A, B ∈ O(n): always under the "exact" policy, only at initialisation under "init" (where A and B then drift
# apart, so AᵀB ≠ I and the identity-at-init offset c no longer cancels). Twice the body parameters of the
# tied form; MLP only (the conv feedforward layer is tied). fmnist-depth: the tying ablation (docs/fmnist_depth.md).
register_family("ortho_feedforward_abs_untied", lambda n, policy, g, **kw: OrthoFeedforward(
    n, activation="abs", tied=False, orthogonal=policy, generator=g, **kw))
