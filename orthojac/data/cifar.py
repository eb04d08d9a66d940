"""CIFAR-10 "python version" batches (``cifar-10-batches-py/data_batch_1`` … ``test_batch``).

Each batch is a pickled dict with ``data`` — a uint8 array of shape (N, 3072), each row one 32×32 colour
image stored channel-major (1024 red, then 1024 green, then 1024 blue values, rows in order) — and
``labels``, N integers in 0…9 (Krizhevsky 2009, the data set's own page). The files were pickled by
Python 2, so keys are byte strings.

Unpickling can run arbitrary code, so these files are read with a restricted unpickler that accepts only
the few numpy names an array needs; anything else is refused (the same stance as
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["read_cifar_batch", "parse_cifar_batch", "write_cifar_batch", "CIFARError"]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class CIFARError(ValueError):
    """A file is not a valid CIFAR-10 python batch."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)")


def _get(d: dict, key: str) -> Any:
    return d[key] if key in d else d.get(key.encode())


def read_cifar_batch(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 of shape (N, 3, 32, 32), labels int64 of shape (N,)) from one python batch file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CIFARError(f"{path}: cannot read ({e})") from e
    return parse_cifar_batch(raw, path)


def parse_cifar_batch(raw: bytes, path: str | Path = "<bytes>") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the bytes of one python batch file; ``path`` names it in error messages."""
    try:
        d = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise CIFARError(f"{path}: cannot read as a CIFAR-10 python batch ({e}); the file is truncated or "
                         "corrupt — delete it and fetch it again") from e
    if not isinstance(d, dict):
        raise CIFARError(f"{path}: not a CIFAR-10 python batch (a {type(d).__name__}, expected a dict)")
    data, labels = _get(d, "data"), _get(d, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise CIFARError(f"{path}: not a CIFAR-10 python batch (no 'data' array or no 'labels')")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != data.shape[0]:
        raise CIFARError(f"{path}: 'data' has shape {data.shape} and dtype {data.dtype} with {len(labels)} labels; "
                         "expected uint8 (N, 3072) with N labels — the file is corrupt")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 9):
        raise CIFARError(f"{path}: labels outside 0…9 — the file is corrupt")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), y


def write_cifar_batch(path: str | Path, images: torch.Tensor | np.ndarray, labels: torch.Tensor | list[int]) -> None:
    """Write a batch in the same format (protocol 2, byte-string keys); the inverse of
    :func:`read_cifar_batch`, used by tests to make small files."""
    x = np.asarray(images, dtype=np.uint8).reshape(len(images), 3072)
    d = {b"batch_label": b"orthojac test batch", b"labels": [int(v) for v in labels], b"data": x,
         b"filenames": [f"{i}.png".encode() for i in range(len(x))]}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
