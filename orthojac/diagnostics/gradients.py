"""Gradient flow through the blocks of any model, and how far constrained weights are from orthogonal.

For a model whose body is a chain of blocks x_ℓ = f_ℓ(x_{ℓ−1}), ℓ = 1 … L, backpropagation gives
∂L/∂x_{ℓ−1} = J_ℓᵀ ∂L/∂x_ℓ with J_ℓ = ∂f_ℓ/∂x_{ℓ−1}. If every J_ℓ is orthogonal (orthogonal-Jacobian
paper, v1 §3) then ‖∂L/∂x_ℓ‖ is the same at every ℓ; vanishing/exploding gradients show up as a ratio
‖∂L/∂x_0‖ / ‖∂L/∂x_L‖ far from 1 (≪ 1: vanishing towards the input, ≫ 1: exploding).
:func:`gradient_norms` measures both activation and parameter gradients per block with forward hooks,
for any ``nn.Module``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..claims import constrained_weights

__all__ = ["GradientNorms", "gradient_norms", "default_blocks", "OrthogonalityDefect", "orthogonality_defect"]


@dataclass
class GradientNorms:
    """Per-block gradient norms of one loss evaluation.

    ``activation[ℓ]`` = ‖∂L/∂x_ℓ‖ for ℓ = 0 … L (x_0 the input of the first block, x_ℓ the output of block ℓ),
    the Euclidean norm per sample averaged over the batch (``activation_per_sample`` keeps them all,
    shape (L+1, batch)); ``parameter[ℓ−1]`` = ‖∂L/∂θ_ℓ‖ (Frobenius, all parameters of block ℓ together;
    0 for a block without parameters). ``names`` are the blocks' qualified names."""

    activation: list[float]
    parameter: list[float]
    names: list[str]
    loss: float
    activation_per_sample: torch.Tensor = field(repr=False, default_factory=lambda: torch.empty(0))

    @property
    def ratio(self) -> float:
        """‖∂L/∂x_0‖ / ‖∂L/∂x_L‖: first over last (1 for perfect gradient flow)."""
        return self.activation[0] / self.activation[-1] if self.activation[-1] != 0 else math.inf

    @property
    def parameter_ratio(self) -> float:
        """‖∂L/∂θ_1‖ / ‖∂L/∂θ_L‖ (NaN if either block has no parameters)."""
        first, last = self.parameter[0], self.parameter[-1]
        return first / last if last != 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {"activation": self.activation, "parameter": self.parameter, "names": self.names,
                "loss": self.loss, "ratio": self.ratio, "parameter_ratio": self.parameter_ratio}


def default_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children of ``model.body`` when it exists and is an ``nn.Sequential``, else the model's
    top-level children (flattening a top-level ``nn.Sequential`` model into its children)."""
    body = getattr(model, "body", None)
    if isinstance(body, nn.Sequential):
        prefix = next((n for n, m in model.named_modules() if m is body), "body")
        return [(f"{prefix}.{n}", m) for n, m in body.named_children()]
    return list(model.named_children())


def _select_blocks(model: nn.Module, blocks: Sequence[nn.Module] | Callable[[nn.Module], bool] | None
                   ) -> list[tuple[str, nn.Module]]:
    if blocks is None:
        chosen = default_blocks(model)
    elif callable(blocks) and not isinstance(blocks, nn.Module):
        chosen, inside = [], set()
        for name, m in model.named_modules():
            if any(name.startswith(p + ".") for p in inside):
                continue  # nested inside an already selected block
            if m is not model and blocks(m):
                chosen.append((name, m))
                inside.add(name)
    else:
        names = {id(m): n for n, m in model.named_modules()}
        mods = list(blocks)
        missing = [type(m).__name__ for m in mods if id(m) not in names]
        if missing:
            raise ValueError(f"blocks must be submodules of the model; not found: {missing}")
        chosen = [(names[id(m)], m) for m in mods]
    if not chosen:
        raise ValueError("no blocks selected: the model has no children (pass blocks= a list of modules or a "
                         "predicate module -> bool)")
    return chosen


def gradient_norms(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    batch: Any,
    blocks: Sequence[nn.Module] | Callable[[nn.Module], bool] | None = None,
) -> GradientNorms:
    """‖∂L/∂x_ℓ‖ (ℓ = 0 … L) and ‖∂L/∂θ_ℓ‖ (ℓ = 1 … L) for the blocks of ``model`` (see module docstring).

    Args:
        model: any module; it is called once as ``model(inputs)``.
        loss_fn: ``loss_fn(output, target)`` when ``batch`` is a pair ``(inputs, target)``, else
            ``loss_fn(output)``; must return a scalar.
        batch: ``(inputs, target)`` or ``inputs`` alone.
        blocks: which modules are the blocks, in forward order: ``None`` (:func:`default_blocks`), a list of
            submodules, or a predicate ``module -> bool`` (the outermost matching modules, in
            ``named_modules`` order).

    Gradients are computed with ``torch.autograd.grad``: the ``.grad`` fields of the model are untouched.
    Each block must be called exactly once per forward and return one tensor."""
    chosen = _select_blocks(model, blocks)
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"batch must be inputs or a pair (inputs, target), got a sequence of {len(batch)}")
        inputs, target = batch
        args: tuple = (target,)
    else:
        inputs, args = batch, ()
    acts: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(chosen) + 1)}

    def pre_hook(_m: nn.Module, a: tuple) -> tuple | None:
        if not a or not isinstance(a[0], torch.Tensor):
            return None
        if a[0].requires_grad or not a[0].is_floating_point():
            acts[0].append(a[0])
            return None
        x0 = a[0].detach().requires_grad_(True)  # raw data enters the first block: differentiate w.r.t. it
        acts[0].append(x0)
        return (x0, *a[1:])

    def make_hook(i: int) -> Callable:
        def hook(_m: nn.Module, _a: tuple, out: Any) -> None:
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"block {chosen[i - 1][0]!r} returned {type(out).__name__}, not a tensor")
            acts[i].append(out)
        return hook

    handles = [chosen[0][1].register_forward_pre_hook(pre_hook)]
    handles += [m.register_forward_hook(make_hook(i + 1)) for i, (_, m) in enumerate(chosen)]
    try:
        with torch.enable_grad(), parametrize.cached():
            out = model(inputs)
            loss = loss_fn(out, *args)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor")
    for i, a in acts.items():
        if len(a) != 1:
            what = "the input of the first block" if i == 0 else f"block {chosen[i - 1][0]!r}"
            raise ValueError(f"{what} was seen {len(a)} times in one forward; blocks must be called exactly once "
                             "(pass blocks= explicitly)")
    xs = [acts[i][0] for i in range(len(chosen) + 1)]
    if not xs[0].is_floating_point():
        raise ValueError(f"the input of the first block is {xs[0].dtype}, not floating point: choose blocks after "
                         "the embedding (blocks=...)")
    params = [[p for p in m.parameters() if p.requires_grad] for _, m in chosen]
    flat_params = [p for ps in params for p in ps]
    grads = torch.autograd.grad(loss, xs + flat_params, allow_unused=True)
    gx, gp = grads[: len(xs)], grads[len(xs):]
    per_sample = torch.stack([
        (g.detach().reshape(g.shape[0], -1).norm(dim=-1) if g is not None else torch.zeros(xs[0].shape[0]))
        .to(torch.float64).cpu() for g in gx])
    pnorms, pos = [], 0
    for ps in params:
        sq = sum((gp[pos + i].detach().double().pow(2).sum().item() for i in range(len(ps))
                  if gp[pos + i] is not None), 0.0)
        pnorms.append(math.sqrt(sq))
        pos += len(ps)
    return GradientNorms(per_sample.mean(dim=1).tolist(), pnorms, [n for n, _ in chosen], loss.item(), per_sample)


@dataclass
class OrthogonalityDefect:
    """‖WWᵀ − I‖_F (‖WᵀW − I‖_F for tall W) of every constrained weight: ``max``, ``mean`` over them and
    the ``per_weight`` values by qualified name (``count == 0``: max and mean are NaN)."""

    max: float
    mean: float
    count: int
    per_weight: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"max": self.max, "mean": self.mean, "count": self.count, "per_weight": self.per_weight}


@torch.no_grad()
def orthogonality_defect(model: nn.Module) -> OrthogonalityDefect:
    """max and mean of ‖WWᵀ − I‖_F over the constrained weights W of ``model`` (rows ≤ cols; ‖WᵀW − I‖_F
    otherwise). Weights with more than two dimensions (e.g. convolution kernels) are flattened to
    (out, rest) first. A submodule with an ``orthogonality_defect()`` method and no listed weights (an operator
    such as an orthogonal convolution) contributes the square root of what that method returns. 0 means
    exactly orthogonal (rows or columns orthonormal)."""
    vals: dict[str, float] = {}
    with parametrize.cached():
        for name, w in constrained_weights(model):
            w = w.detach().double()
            w = w.reshape(w.shape[0], -1) if w.ndim > 2 else w
            if w.ndim < 2:
                continue
            rows, cols = w.shape
            g = w @ w.T if rows <= cols else w.T @ w
            vals[name] = torch.linalg.matrix_norm(g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device)).item()
        # operators that are not a single matrix (orthojac's OrthogonalConv2d, or a user's module following the
        # convention) report ‖𝓑𝓑ᵀ − I‖²_F normalised per frequency through a method of that name
        for prefix, m in model.named_modules():
            fn = getattr(m, "orthogonality_defect", None)
            if callable(fn) and m is not model and not getattr(m, "orthogonal_weight_names", ()):
                vals[prefix] = math.sqrt(max(float(fn()), 0.0))
    if not vals:
        return OrthogonalityDefect(math.nan, math.nan, 0, {})
    v = list(vals.values())
    return OrthogonalityDefect(max(v), sum(v) / len(v), len(v), vals)
