"""Shared plumbing for experiment runners: result CSVs, Markdown tables generated from them, the device
description recorded next to every number, and matplotlib set-up.

Results are CSV first (the columns an issue names are a contract); the Markdown next to each CSV is
generated from it by :func:`csv_to_markdown`, never typed.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..diagnostics.plots import pyplot as plt  # noqa: F401  (re-exported: runners call common.plt())
from ..diagnostics.plots import save_figure  # noqa: F401  (re-exported)

__all__ = ["write_csv", "append_csv", "file_lock", "read_csv", "csv_to_markdown", "device_name", "plt", "RESULTS_DIR"]

RESULTS_DIR = Path("results")


def device_name(device: torch.device | str | None = None) -> str:
    """'NVIDIA H100 80GB HBM3' for a CUDA device, else '<cpu model> (<n> cores)'."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path, columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` to ``path`` (atomically: a temporary file, then rename). ``columns`` fixes the
    order and must include every contract column; extra keys in rows are appended after them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(columns or [])
    for r in rows:
        cols += [k for k in r if k not in cols]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


_HELD: dict[str, int] = {}  # file path → how many nested file_lock blocks of this process hold its lock


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock for the results file at ``path`` (``flock`` on a lock file in the
    temporary directory named after the file's absolute path) around a read-modify-write, so that two runs
    sharing one results CSV or JSON (e.g. two filtered reproductions started side by side) cannot drop each
    other's rows.
    Re-entrant within a process; a no-op where ``fcntl`` does not exist (Windows)."""
    key = str(Path(path).resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    name = "orthojac_" + key.strip("/").replace("/", "_") + ".lock"
    with open(Path(tempfile.gettempdir()) / name, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            fcntl.flock(fh, fcntl.LOCK_UN)


def append_csv(rows: Iterable[dict[str, Any]], path: str | Path, columns: Sequence[str] | None = None,
               replace_where: dict[str, Any] | None = None) -> Path:
    """Merge ``rows`` into an existing CSV: existing rows matching every key of ``replace_where`` (e.g.
    ``{"mode": "quick"}``) are dropped first, so re-running a mode replaces its rows and keeps the others.
    The read-modify-write holds :func:`file_lock`, so concurrent runs appending to one CSV keep all rows."""
    rows = list(rows)
    with file_lock(path):
        old = read_csv(path) if Path(path).exists() else []
        if replace_where:
            old = [r for r in old if not all(str(r.get(k)) == str(v) for k, v in replace_where.items())]
        return write_csv([*old, *rows], path, columns)


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")


def csv_to_markdown(csv_path: str | Path, md_path: str | Path, group_by: Sequence[str], values: Sequence[str],
                    title: str = "", note: str = "") -> Path:
    """Generate a Markdown table from a CSV: one row per distinct ``group_by`` tuple, each of ``values``
    shown as mean ± std over the group's rows (just the value when the group has one row), plus n."""
    rows = read_csv(csv_path)
    groups: dict[tuple, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in group_by), []).append(r)
    lines = []
    if title:
        lines += [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines += [f"_Generated from `{Path(csv_path).as_posix()}` by orthojac; do not edit by hand._", ""]
    lines.append("| " + " | ".join([*group_by, *values, "n"]) + " |")
    lines.append("|" + "---|" * (len(group_by) + len(values) + 1))
    for key, rs in groups.items():
        cells = list(key)
        for v in values:
            xs = [float(r[v]) for r in rs if r.get(v) not in (None, "", "nan")]
            if not xs:
                cells.append("–")
            elif len(xs) == 1:
                cells.append(_fmt(xs[0]))
            else:
                cells.append(f"{_fmt(statistics.mean(xs))} ± {_fmt(statistics.stdev(xs))}")
        cells.append(str(len(rs)))
        lines.append("| " + " | ".join(cells) + " |")
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text("\n".join(lines) + "\n")
    return md_path


