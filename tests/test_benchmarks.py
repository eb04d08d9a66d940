"""Smoke tests of the benchmark scripts: each runs end to end on a tiny grid (``--no-write``: RESULTS.md and
benchmarks/results/ stay untouched) and prints the rows and ratios it exists to produce."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--quick", "--no-write",
                          "--repeats", "1", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def table_rows(text: str, first: str) -> list[list[str]]:
    """The Markdown table rows (cells) whose first cell is ``first``."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first} |")]


def test_orthogonal_policy_reports_exact_and_floor_ratios() -> None:
    out = run_bench("orthogonal_policy", "--archs", "tanh", "--widths", "8", "--depths", "3",
                    "--variants", "init,exact,floor", "--batch-ablation", "", "--threads", "2")
    rows = {r[4]: r for r in table_rows(out, "tanh")}  # variant → cells
    assert set(rows) == {"init", "exact", "floor"}
    assert float(rows["init"][6]) == 1.0
    assert float(rows["exact"][6]) > 0 and float(rows["floor"][6]) > 0
    assert float(rows["exact"][7]) < 1e-5  # the exact variant's weights stayed orthogonal
    assert rows["floor"][7] == "–"  # the floor is not a method: no error column
    assert "2 threads" in out


def test_setup_flushes_denormals_on_cpu() -> None:
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _bench

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert float(torch.tensor([1e-39]) * 1.0) != 0.0  # a float32 denormal, kept by default
        _bench.setup("cpu", threads=torch.get_num_threads())
        assert float(torch.tensor([1e-39]) * 1.0) == 0.0  # flushed
        assert float(torch.tensor([1e-30]) * 1.0) != 0.0  # a normal number kept
    finally:
        torch.set_flush_denormal(False)


def test_orthogonal_policy_skips_row_groups_too_large_for_memory() -> None:
    out = run_bench("orthogonal_policy", "--archs", "tanh", "--widths", "8,16", "--depths", "3",
                    "--variants", "init,exact", "--batch-ablation", "", "--max-gib", "1e-5")
    assert "skipped tanh n=16 L=3" in out and "Skipped for memory" in out
    assert {r[1] for r in table_rows(out, "tanh")} == {"8"}  # the small group ran, the large one did not


def test_orthogonal_policy_rejects_variant_lists_without_baseline() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "orthogonal_policy.py"), "--no-write",
                          "--variants", "exact"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0 and "must include 'init'" in out.stderr


def test_orthogonal_conv_compares_with_plain() -> None:
    out = run_bench("orthogonal_conv", "--channels", "4", "--sizes", "8", "--batch", "2")
    rows = {r[3]: r for r in table_rows(out, "4")}
    assert {"plain", "orthoconv_exact", "spectral_exact"} <= set(rows)
    assert float(rows["plain"][5]) == 1.0
    assert float(rows["spectral_exact"][7]) < 1e-5


@pytest.mark.parametrize("bad", [["--threads", "0"]])
def test_bench_rejects_bad_arguments(bad: list[str]) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "orthogonal_policy.py"), "--no-write", *bad],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and re.search(r"--threads must be ≥ 1", out.stderr)


def test_retraction_parts_compares_with_and_without_each_part() -> None:
    out = run_bench("retraction_parts", "--width", "8", "--depth", "3", "--sizes", "64", "--bound-sizes", "96")
    rows = {(r[0], r[2]): float(r[3]) for r in table_rows(out, "step / init") + table_rows(out, "‖WᵀW − I‖₂ after")
            + table_rows(out, "diagonal error") + table_rows(out, "retraction / product")}
    assert rows[("retraction / product", "E² bound")] > 1 and rows[("retraction / product", "‖E‖_F only")] > 1
    norms = {r[2]: float(r[3]) for r in table_rows(out, "norm of the step's E")}
    assert norms["‖E‖₂"] <= norms["‖E²‖_F^½"] <= norms["‖E‖_F"]  # the bound is valid and tighter
    assert rows[("step / init", "workspace")] > 0 and rows[("step / init", "fresh buffers")] > 0
    assert rows[("‖WᵀW − I‖₂ after", "refined diagonal")] < 1e-6
    assert rows[("‖WᵀW − I‖₂ after", "refined diagonal")] <= rows[("‖WᵀW − I‖₂ after", "no refinement")]
    assert rows[("diagonal error", "square + sum(-2)")] < rows[("diagonal error", "matrix product")]


def test_memory_measures_each_variant_in_its_own_process() -> None:
    out = run_bench("memory", "--archs", "tanh", "--width", "8", "--depth", "3", "--variants", "init,exact")
    rows = {r[4]: r for r in table_rows(out, "tanh")}
    assert set(rows) == {"init", "exact"}
    assert float(rows["init"][8]) == 1.0 and float(rows["exact"][6]) > 0  # step peak ratio, peak MiB


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed")
def test_training_throughput_times_steps_and_accuracy() -> None:
    out = run_bench("training_throughput", "--width", "8", "--depth", "3", "--budget", "1", "--eval-every", "5",
                    "--variants", "init,exact")
    rows = {r[1]: r for r in table_rows(out, "ortho_residual_relu w8 L3")}
    assert set(rows) == {"init", "exact"}
    assert float(rows["init"][2]) > 0 and float(rows["init"][3]) == 1.0  # samples/s, step ratio
    assert 0.0 <= float(rows["exact"][7]) <= 1.0  # final test accuracy is a fraction


def test_hj_study_names_the_known_configs_on_a_bad_one() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hj_study.py"), "no_such_problem"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0 and "eikonal_square" in out.stderr and "no_such_problem" in out.stderr


def test_hj_game_reference_is_symmetric_and_above_the_straight_flight_bound(tmp_path) -> None:
    """The coarse grid reference of the two-car game runs, keeps the game's mirror symmetry and gives tail-chase
    values at least the evader's straight-flight lower bound (both printed by the script)."""
    pytest.importorskip("scipy")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hj_game_reference.py"), "--h", "0.5",
                          "--nphi", "8", "--out", str(tmp_path / "ref.npz")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    m = re.search(r"symmetry defect ([0-9.e+-]+); tail chase at d = [^:]+: ([^(]+)\(straight-flight bound ([^)]+)\)",
                  line)
    assert m, line
    assert float(m.group(1)) < 1e-9
    values = [float(v) for v in m.group(2).split(",")]
    bounds = [float(v) for v in m.group(3).split(",")]
    assert len(values) == len(bounds) and all(v >= b for v, b in zip(values, bounds))
    assert (tmp_path / "ref.npz").exists()
