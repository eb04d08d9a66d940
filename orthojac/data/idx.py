"""The IDX file format (MNIST, Fashion-MNIST), gzip-compressed or raw.

Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, then each dimension as a big-endian uint32, then the data in
big-endian order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_idx", "parse_idx", "read_bytes", "write_idx", "IDXError"]

_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IDXError(ValueError):
    """A file is not a valid IDX file (bad magic, truncated, wrong size)."""


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed when the name ends in ``.gz``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # gzip raises these for truncated/corrupt archives
        raise IDXError(f"{path}: cannot read ({e}); the file is truncated or corrupt — "
                       "delete it and fetch it again") from e


def parse_idx(raw: bytes, source: str | Path = "<bytes>") -> torch.Tensor:
    """Decode the bytes of an (uncompressed) IDX file; ``source`` names it in error messages."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IDXError(f"{source}: not an IDX file (bad magic number {raw[:4].hex() if raw else 'empty'})")
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{source}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise IDXError(f"{source}: size {len(raw)} bytes, expected {expected} for shape {shape}: truncated or "
                       "corrupt — delete it and fetch it again")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("=")).copy())


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (``.gz`` or raw) into a tensor of its stored shape and dtype."""
    return parse_idx(read_bytes(path), path)


def write_idx(path: str | Path, data: torch.Tensor | np.ndarray) -> None:
    """Write ``data`` as an IDX file (gzip-compressed when the name ends in ``.gz``); the inverse of
    :func:`read_idx`, used by tests to make small files."""
    arr = np.asarray(data)
    codes = {v.newbyteorder("="): k for k, v in _DTYPES.items()}
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: dtype {arr.dtype} has no IDX code; use one of "
                         f"{sorted(str(v.newbyteorder('=')) for v in _DTYPES.values())}")
    raw = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    raw += arr.astype(_DTYPES[code]).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(raw)
