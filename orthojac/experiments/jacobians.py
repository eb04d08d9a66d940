"""Small shared helpers of the PSO and limit-model runners: layer-by-layer Jacobians and their products
(every prefix depth of a stack from one pass), input-gradient norm ratios for a given output gradient, and a
compact training loop. Per-sample Jacobians come from :func:`orthojac.diagnostics.dense_jacobian` (exact,
``torch.func``), so this is meant for the widths of the reproduction runners (n ≤ a few hundred). Formulas:

* body Jacobian J(x₀) = J_L(x_{L−1}) ⋯ J_1(x₀) with x_ℓ = F_ℓ(x_{ℓ−1}) (chain rule, built layer by layer so
  every prefix depth is available from one pass);
* for a loss L with ∂L/∂x_L = g, backpropagation gives ∂L/∂x₀ = Jᵀg, and the gradient-norm ratio is
  ‖Jᵀg‖ / ‖g‖ (1 for an orthogonal J, for any g).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..diagnostics import dense_jacobian

__all__ = ["layer_jacobians", "prefix_jacobians", "gradient_norm_ratio", "unit_count",
           "layer_inputs", "accuracy", "train_classifier", "load_image_data", "Timer"]


@torch.no_grad()
def layer_inputs(layers: Sequence[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """[x₀, x₁, …, x_{L−1}]: the input of every layer of a stack, for the batch x = x₀."""
    out = []
    for layer in layers:
        out.append(x)
        x = layer(x)
    return out


def layer_jacobians(layers: Sequence[nn.Module], x: torch.Tensor, progress: str | None = None):
    """Yield (ℓ, J_ℓ(x_{ℓ−1})) for ℓ = 1 … L, each a (N, n, n) tensor, walking the stack once."""
    h = x.detach()
    for i, layer in enumerate(tqdm(layers, desc=progress, leave=False, disable=progress is None), start=1):
        yield i, dense_jacobian(layer, h, mode="rev").detach()  # reverse mode: ~15× faster here than jacfwd
        with torch.no_grad():
            h = layer(h)


def prefix_jacobians(layers: Sequence[nn.Module], x: torch.Tensor, depths: Sequence[int],
                     progress: str | None = None) -> dict[int, torch.Tensor]:
    """{d: J_d ⋯ J_1 at x} for each d in ``depths`` (≤ len(layers)): one pass, products accumulated."""
    want = set(depths)
    if not want or max(want) > len(layers) or min(want) < 1:
        raise ValueError(f"depths must lie in [1, {len(layers)}], got {sorted(want)}")
    out: dict[int, torch.Tensor] = {}
    j = None
    for i, jl in layer_jacobians(list(layers)[: max(want)], x, progress):
        j = jl if j is None else jl @ j
        if i in want:
            out[i] = j.clone()
    return out


def gradient_norm_ratio(jac: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """‖Jᵀg‖ / ‖g‖ per sample: jac (N, m, n), g (N, m) the loss gradient at the output."""
    return (jac.mT @ g.unsqueeze(-1)).squeeze(-1).norm(dim=-1) / g.norm(dim=-1)


def unit_count(sv: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """Number of singular values within ``tol`` of 1, per sample (sv of shape (N, k))."""
    return ((sv - 1).abs() <= tol).sum(dim=-1)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Fraction of correct argmax predictions (model put in eval mode, then restored)."""
    was = model.training
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    model.train(was)
    return correct / len(x)


def train_classifier(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                     test: tuple[torch.Tensor, torch.Tensor], *, epochs: int, lr: float = 1e-3,
                     batch_size: int = 128, grad_clip: float = 5.0, seed: int = 0, desc: str | None = None,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Adam with a cosine learning-rate decay to 0 over all steps, cross-entropy, gradient clipping.
    Returns {"test_acc", "train_loss" (mean over the last epoch), "diverged" (0/1), "seconds"}.
    A non-finite loss stops training (``diverged`` = 1, test accuracy measured on the last weights)."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    xs, ys = train
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(xs) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    diverged, last = False, float("nan")
    bar = tqdm(total=steps, desc=desc, leave=False, disable=desc is None)
    for _ in range(epochs):
        perm = torch.randperm(len(xs), generator=g)
        losses = []
        for i in range(0, len(xs), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(xs[idx].to(device)), ys[idx].to(device))
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
        if diverged:
            break
        last = sum(losses) / max(1, len(losses))
    bar.close()
    xt, yt = test
    acc = accuracy(model, xt.to(device), yt.to(device))
    return {"test_acc": acc, "train_loss": last, "diverged": int(diverged), "seconds": time.perf_counter() - t0}


def load_image_data(name: str, n_train: int | None, n_test: int | None, seed: int = 0):
    """(x_train, y_train, x_test, y_test, in_features, classes), images flattened, normalised with the
    training mean/std (:func:`orthojac.data.load_splits`, no validation split). Raises FileNotFoundError
    (with where to put the files) when the data set is absent — never downloads."""
    from ..data import load_splits

    d = load_splits(name, n_train=n_train, n_test=n_test, val_fraction=0.0, seed=seed, progress=False)
    (xs, ys), (xt, yt) = d.train, d.test
    return xs.reshape(len(xs), -1), ys, xt.reshape(len(xt), -1), yt, math.prod(d.in_shape), d.num_classes


class Timer:
    """Wall and CPU (process) seconds since construction: ``Timer().seconds() -> (wall, cpu)``."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0
