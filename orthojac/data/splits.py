"""Train / validation / test tensors for an experiment: seeded subsets and split, per-channel normalisation,
and (optionally) DataLoaders.

For a data set of N training samples, a permutation π of {0…N−1} drawn from ``seed`` decides everything:
the first ⌊val_fraction·N⌉ indices of π are the validation set, the next ``n_train`` (default: all the
rest) the training set. The test subset is the first ``n_test`` indices of a second permutation drawn from
the same generator. Normalisation is x ↦ (x − μ_c)/s_c with μ_c, s_c the mean and standard deviation of
channel c over the *training* part only (so validation and test statistics never leak into training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from .datasets import DATASETS, load_dataset, locate
from .synthetic import make_spirals

__all__ = ["DataSplits", "load_splits", "normalize", "channel_stats", "train_val_indices", "make_loaders",
           "DATASET_NAMES"]

Pair = tuple[torch.Tensor, torch.Tensor]
DATASET_NAMES = (*sorted(DATASETS), "spirals")


@dataclass
class DataSplits:
    """Tensors of one experiment. ``val`` is None when ``val_fraction`` is 0."""

    name: str
    train: Pair
    val: Pair | None
    test: Pair
    in_shape: tuple[int, ...]
    num_classes: int
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the files read (empty for generated data)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train[1]), "val": 0 if self.val is None else len(self.val[1]),
                "test": len(self.test[1])}


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of x of shape (N, C, …) (or (N, D): one "channel" per feature
    is not wanted there, so a 2-D x gets a single mean/std)."""
    if x.ndim <= 2:
        return x.mean().reshape(1), x.std().reshape(1)
    dims = [0, *range(2, x.ndim)]
    return x.mean(dim=dims), x.std(dim=dims)


def normalize(x: torch.Tensor, mean: torch.Tensor | list[float], std: torch.Tensor | list[float]) -> torch.Tensor:
    """(x − μ_c)/s_c broadcast over channel dimension 1 (a single μ, s for 2-D x)."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if (std <= 0).any():
        raise ValueError("normalize: std must be positive (is a channel constant?)")
    shape = (1, -1) + (1,) * (x.ndim - 2) if x.ndim > 2 else (1, -1)
    if x.ndim <= 2 and mean.numel() == 1:
        return (x - mean) / std
    return (x - mean.reshape(shape)) / std.reshape(shape)


def train_val_indices(n: int, val_fraction: float, seed: int,
                      n_train: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): a seeded permutation of range(n) cut after round(val_fraction·n)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(val_fraction * n)
    train = perm[n_val:]
    if n_train is not None:
        if n_train < 1 or n_train > len(train):
            raise ValueError(f"n_train={n_train} must be in [1, {len(train)}] (the {n} samples minus {n_val} "
                             "for validation)")
        train = train[:n_train]
    return train, perm[:n_val]


def load_splits(name: str, root: str | Path | None = None, *, n_train: int | None = None,
                n_val: int | None = None, n_test: int | None = None, val_fraction: float = 0.1, seed: int = 0,
                normalize_inputs: bool = True,
                download: bool = False, verify: bool = True, progress: bool = True) -> DataSplits:
    """Train/validation/test tensors of data set ``name`` (one of :data:`DATASET_NAMES`; ``"spirals"`` is
    generated: 3 arms in the plane, ``n_train`` (default 2000) + ``n_test`` (default 1000) points).
    ``n_train``, ``n_val``, ``n_test`` cap the sizes of the three parts (None: all there is)."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASET_NAMES}")
    g = torch.Generator().manual_seed(seed + 1)
    if name == "spirals":
        n_tr = n_train if n_train is not None else 2000
        n_te = n_test if n_test is not None else 1000
        n_val = round(val_fraction * n_tr / (1 - val_fraction)) if val_fraction > 0 else 0
        x, y = make_spirals(n_tr + n_val + n_te, classes=3, seed=seed)
        xs, ys, xt, yt = x[:n_tr + n_val], y[:n_tr + n_val], x[n_tr + n_val:], y[n_tr + n_val:]
        in_shape, classes = (2,), 3
        files = []
    else:
        xs, ys = load_dataset(name, root, "train", download=download, verify=verify, progress=progress)
        xt, yt = load_dataset(name, root, "test", download=download, verify=verify, progress=progress)
        in_shape, classes = DATASETS[name].in_shape, DATASETS[name].num_classes
        files = [str(p) for split in ("train", "test") for p in locate(name, split, root)]
        if n_test is not None:
            if not 1 <= n_test <= len(xt):
                raise ValueError(f"n_test={n_test} must be in [1, {len(xt)}]")
            j = torch.randperm(len(xt), generator=g)[:n_test]
            xt, yt = xt[j], yt[j]
    i_tr, i_val = train_val_indices(len(xs), val_fraction, seed, n_train if name != "spirals" else None)
    if n_val is not None:
        if n_val < 0:
            raise ValueError(f"n_val must be ≥ 0, got {n_val}")
        i_val = i_val[:n_val]
    train = (xs[i_tr], ys[i_tr])
    val = (xs[i_val], ys[i_val]) if len(i_val) else None
    test = (xt, yt)
    mean_l: list[float] = []
    std_l: list[float] = []
    if normalize_inputs:
        mean, std = channel_stats(train[0])
        mean_l, std_l = mean.tolist(), std.tolist()
        train = (normalize(train[0], mean, std), train[1])
        val = None if val is None else (normalize(val[0], mean, std), val[1])
        test = (normalize(test[0], mean, std), test[1])
    return DataSplits(name, train, val, test, in_shape, classes, mean_l, std_l, files)


def make_loaders(splits: DataSplits, batch_size: int, seed: int = 0,
                 eval_batch_size: int | None = None) -> dict[str, DataLoader]:
    """DataLoaders over the tensors: ``"train"`` shuffled by a generator seeded with ``seed``, ``"val"``
    (when present) and ``"test"`` in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    eb = eval_batch_size or batch_size
    out = {"train": DataLoader(TensorDataset(*splits.train), batch_size=batch_size, shuffle=True,
                               generator=torch.Generator().manual_seed(seed))}
    if splits.val is not None:
        out["val"] = DataLoader(TensorDataset(*splits.val), batch_size=eb)
    out["test"] = DataLoader(TensorDataset(*splits.test), batch_size=eb)
    return out
