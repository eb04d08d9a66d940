"""Shared helpers of the benchmark scripts: fair timing under load, the machine description, and writing
each script's table into benchmarks/RESULTS.md (one section per script × device × mode, replaced on rerun)
and its rows into benchmarks/results/<script>.csv.

Timing: baseline and candidates are timed *interleaved* (round r runs every variant once, in alternating
order), and each variant's median over the rounds is reported, so a load change on the shared machine hits
all variants alike and ratios stay fair. CPU runs use one intra-op thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmark the checkout these scripts belong to

from orthojac.experiments.common import append_csv, device_name  # noqa: E402

RESULTS_MD = HERE / "RESULTS.md"
HEADER = ("# Benchmark results\n\n_Every table below is written by the script named in its heading "
          "(`python benchmarks/<script>.py`); do not edit by hand. CPU timings are meaningful as ratios only "
          "(the machine is shared); each ratio compares variants timed interleaved in the same process._\n")


def parse_args(doc: str, add: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """--quick (default) / --full, --device, --repeats, --no-write, plus script-specific options."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small grid, a few minutes on 2 CPU cores (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the full grid (meant for an accelerator)")
    p.set_defaults(mode="quick")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per variant (median reported)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and the CSV alone")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (default 1: least noise on a shared machine; the thread count is "
                        "part of the machine string, so each count gets its own RESULTS.md section)")
    if add:
        add(p)
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads < 1:
        p.error(f"--threads must be ≥ 1, got {args.threads}")
    return args


def setup(device: str, seed: int = 0, threads: int = 1) -> torch.device:
    """Seed, and on a CPU set the thread count and flush denormal numbers to zero: the gradients of a deep
    tanh MLP underflow into the denormal range (|x| < 1.2e-38 in float32), where x86 arithmetic is up to
    ~100× slower, and a depth-1000 step jumped from 0.6 s to 2.6–4.6 s at a random step of training
    (2026-11-30, 2-core CPU): a property of the test network's vanishing gradients, not of any method."""
    if device == "cpu":
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    return torch.device(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_median(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: int = 1,
                       after: Callable[[str], None] | None = None) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin (order reversed every other round).
    ``after(name)`` runs untimed after each call (e.g. to measure the orthogonality error)."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
            if after:
                after(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            if after:
                after(name)
    return {n: statistics.median(v) for n, v in times.items()}


def machine(device: torch.device) -> str:
    n = torch.get_num_threads()
    threads = f", {n} thread{'s' if n > 1 else ''}" if device.type == "cpu" else ""
    return f"{device_name(device)}{threads}"


class Clock:
    """Wall and CPU seconds of the whole script, reported with its table."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __str__(self) -> str:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - self.cpu + ru.ru_utime + ru.ru_stime
        return f"{time.perf_counter() - self.wall:.0f} s wall, {cpu:.0f} s CPU"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "–"
            return f"{v:.3g}" if (abs(v) < 1e-2 and v != 0) or abs(v) >= 1e4 else f"{v:.3f}".rstrip("0").rstrip(".")
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(script: str, title: str, rows: list[dict[str, Any]], columns: Sequence[str], device: torch.device,
                  mode: str, notes: str, clock: Clock, no_write: bool = False) -> None:
    """Print the table; unless ``no_write``, put it into RESULTS.md (replacing this script × device × mode's
    previous section) and merge the rows into benchmarks/results/<script>.csv."""
    dev = machine(device)
    argv = " ".join(sys.argv[1:]) or f"--{mode}"  # the command as run, filters included
    body = (f"## {title}\n\n`python benchmarks/{script}.py {argv}` on **{dev}**, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({clock})"
            f"{', denormals flushed to zero' if device.type == 'cpu' else ''}.\n\n{notes.strip()}\n\n"
            f"{markdown_table(rows, columns)}\n")
    print(body)
    if no_write:
        return
    for r in rows:
        r.update(device=dev, mode=mode)
    append_csv(rows, HERE / "results" / f"{script}.csv", [*columns, "device", "mode"],
               replace_where={"device": dev, "mode": mode})
    key = f"{script} | {dev} | {mode}"
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else HEADER
    block = f"{begin}\n{body}{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text)
    print(f"wrote {RESULTS_MD.relative_to(HERE.parent)} and benchmarks/results/{script}.csv", file=sys.stderr)
