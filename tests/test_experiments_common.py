"""orthojac.experiments.common: the results-CSV plumbing every reproduction shares."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from orthojac.experiments.common import append_csv, csv_to_markdown, file_lock, read_csv


def _append_many(path: str, tag: str, n: int) -> None:
    for i in range(n):  # one row per call, each replacing only its own (tag, i) row, as the runners save
        append_csv([{"tag": tag, "i": i, "value": 0.5}], path, ["tag", "i", "value"],
                   replace_where={"tag": tag, "i": i})


def test_append_replaces_only_matching_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    append_csv([{"mode": "quick", "x": 1}, {"mode": "full", "x": 2}], path, ["mode", "x"])
    append_csv([{"mode": "quick", "x": 3}], path, ["mode", "x"], replace_where={"mode": "quick"})
    assert sorted((r["mode"], r["x"]) for r in read_csv(path)) == [("full", "2"), ("quick", "3")]


def test_concurrent_appends_keep_every_row(tmp_path: Path) -> None:
    """Two processes appending to one CSV (two filtered runs side by side) lose nothing: the lock serialises
    each read-modify-write. Without it, rows written between another process's read and write vanish."""
    path = str(tmp_path / "shared.csv")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, tag, 40)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = read_csv(path)
    assert sorted((r["tag"], int(r["i"])) for r in rows) == [(t, i) for t in ("a", "b") for i in range(40)]


def test_file_lock_is_reentrant(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    with file_lock(path), file_lock(path):  # nested in one process: must not deadlock
        append_csv([{"x": 1}], path, ["x"])
        csv_to_markdown(path, tmp_path / "r.md", ["x"], [])
    assert read_csv(path) == [{"x": "1"}]
