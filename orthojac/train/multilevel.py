"""Multilevel training (Haber & Ruthotto §5.3, notes §7): train a shallow network, prolong its weights to twice
as many layers (piecewise-linear in time, T fixed so h halves), use them as the initial guess, repeat.

* :func:`prolong_model_` prolongs every :class:`~orthojac.nn.stable.StableDynamics` inside any model; the
  time-smoothness weight is rescaled with the new h automatically (:func:`orthojac.regularizers.time_smoothness`
  divides by the current h).
* :func:`train_multilevel` runs ``fit(model, level)`` at each level, loads the best-validation parameters that
  the fit returns, records them, and prolongs.
* :func:`fit_adam` is the first-order baseline used against :func:`orthojac.train.newton_cg.fit_newton_cg`:
  Adam on the same objective (1/s)ΣS + α R(θ), minibatches, best-validation selection.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..models.stable import hypothesis_loss, predict_labels
from ..nn.stable import StableDynamics
from ..regularizers import time_smoothness

__all__ = ["FitResult", "LevelResult", "accuracy", "prolong_model_", "train_multilevel", "fit_adam", "Data"]

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x_train, y_train, x_val, y_val


@dataclass
class FitResult:
    """The best-validation parameters of one fit and how they were reached."""

    best_state: dict[str, torch.Tensor]
    val_acc: float
    train_acc: float
    iterations: int
    seconds: float
    history: list[float] = field(default_factory=list)  # validation accuracy per iteration/epoch


@dataclass
class LevelResult:
    layers: int
    h: float
    val_acc_prolonged: float  # validation accuracy of the initial guess (prolonged weights) before training
    fit: FitResult
    state: dict[str, torch.Tensor]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Fraction of correctly classified rows (hypothesis of :func:`~orthojac.models.stable.predict_labels`)."""
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((predict_labels(model(x[i:i + batch_size])) == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def prolong_model_(model: nn.Module) -> nn.Module:
    """In place: every StableDynamics in ``model`` goes from N to 2N layers (see
    :meth:`~orthojac.nn.stable.StableDynamics.prolong_`). Raises ValueError if there is none."""
    found = False
    for m in model.modules():
        if isinstance(m, StableDynamics):
            m.prolong_()
            found = True
    if not found:
        raise ValueError("prolong_model_: the model contains no StableDynamics (nothing to prolong)")
    return model


def _layers(model: nn.Module) -> StableDynamics:
    for m in model.modules():
        if isinstance(m, StableDynamics):
            return m
    raise ValueError("the model contains no StableDynamics")


def train_multilevel(model: nn.Module, levels: Sequence[int], fit: Callable[[nn.Module, int], FitResult],
                     x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                     on_level: Callable[[LevelResult], Any] | None = None) -> list[LevelResult]:
    """Train level by level. ``levels`` are the layer counts, each twice the previous, the first equal to the
    model's N. After ``fit`` the model holds its best-validation parameters; it is then prolonged. Returns one
    :class:`LevelResult` per level (``state`` is a copy of the best parameters at that level)."""
    levels = list(levels)
    if not levels:
        raise ValueError("levels must not be empty")
    prop = _layers(model)
    if prop.layers != levels[0]:
        raise ValueError(f"the model has N = {prop.layers} layers but the first level is {levels[0]}")
    for a, b in zip(levels, levels[1:]):
        if b != 2 * a:
            raise ValueError(f"each level must double the previous one, got {a} → {b}")
    out: list[LevelResult] = []
    for i, n in enumerate(levels):
        if i:
            prolong_model_(model)
        init_acc = accuracy(model, x_val, y_val) if x_val is not None else float("nan")
        res = fit(model, n)
        model.load_state_dict(res.best_state)
        lr = LevelResult(n, _layers(model).h, init_acc, res, _snapshot(model))
        out.append(lr)
        if on_level is not None:
            on_level(lr)
    return out


def fit_adam(model: nn.Module, data: Data, epochs: int = 50, lr: float = 1e-2, batch_size: int = 64,
             alpha: float = 0.0, generator: torch.Generator | None = None, progress: bool = False,
             desc: str = "adam", penalty: Callable[[nn.Module], torch.Tensor] | None = None,
             lr_final: float | None = None) -> FitResult:
    """Adam on (1/|batch|) Σ S(h(Y_N W + µ), c) + α·R_time(θ) (+ ``penalty(model)``, e.g. the classifier's
    spatial smoothness), one validation evaluation per epoch; returns the best-validation parameters (ties: the
    earliest). ``lr_final``: cosine decay of the learning rate per epoch, lr_e = lr_final + ½(lr − lr_final)
    (1 + cos(π e/epochs)), e = 0 … epochs−1 (None: constant ``lr``)."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1, got {epochs}, {batch_size}")
    if lr <= 0 or (lr_final is not None and not 0 <= lr_final <= lr):
        raise ValueError(f"need lr > 0 and 0 ≤ lr_final ≤ lr, got lr={lr}, lr_final={lr_final}")
    xt, yt, xv, yv = data
    g = generator or torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    best = (accuracy(model, xv, yv), _snapshot(model))
    history = []
    for e in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        if lr_final is not None:
            for group in opt.param_groups:
                group["lr"] = lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * e / epochs))
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = hypothesis_loss(model(xt[idx]), yt[idx])
            if alpha:
                loss = loss + alpha * time_smoothness(model)
            if penalty is not None:
                loss = loss + penalty(model)
            loss.backward()
            opt.step()
        acc = accuracy(model, xv, yv)
        history.append(acc)
        if acc > best[0]:
            best = (acc, _snapshot(model))
    return best_validation_result(model, best, xt, yt, epochs, t0, history)


def best_validation_result(model: nn.Module, best: tuple[float, dict[str, torch.Tensor]], xt: torch.Tensor,
                           yt: torch.Tensor, iterations: int, t0: float, history: list[float]) -> FitResult:
    """FitResult of the best-validation parameters ``best = (val_acc, state)``: their training accuracy is
    measured, and the model is left at its *current* (last) parameters."""
    current = _snapshot(model)
    model.load_state_dict(best[1])
    train_acc = accuracy(model, xt, yt)
    model.load_state_dict(current)
    return FitResult(best[1], best[0], train_acc, iterations, time.perf_counter() - t0, history)


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy (convenience for comparing optimisers from the same initial guess)."""
    return copy.deepcopy(model)
