import csv
import subprocess
import sys

import pytest

import orthojac
from orthojac.cli import main


def test_version_and_help(capsys) -> None:
    out = subprocess.run([sys.executable, "-m", "orthojac.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and orthojac.__version__ in out.stdout
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_small_run(tmp_path) -> None:
    rc = main(["demo", "--depth", "3", "--width", "8", "--epochs", "1", "--n-train", "256", "--n-test", "128",
               "--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "demo.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["arch"] for r in rows} == {"plain_relu", "resnet", "ortho_residual_relu", "ortho_feedforward_abs"}
    for r in rows:
        assert 0.0 <= float(r["test_acc"]) <= 1.0
    ratio = {r["arch"]: float(r["grad_ratio_init"]) for r in rows}
    assert abs(ratio["ortho_residual_relu"] - 1.0) < 1e-4  # orthogonal body: gradient norm preserved
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert "| arch |" in (tmp_path / "summary.md").read_text()


def test_user_errors_are_one_line(capsys) -> None:
    rc = main(["demo", "--depth", "0", "--out", "/tmp/orthojac-never"])
    assert rc == 2
    assert "error: depth and width must be positive" in capsys.readouterr().err


def test_demo_body_lr_rule() -> None:
    from orthojac.experiments.demo import body_lr_factor

    assert body_lr_factor("const", 200) == 1.0
    assert body_lr_factor("depth", 200) == pytest.approx(0.04)
    assert body_lr_factor("depth", 4) == 1.0
    with pytest.raises(ValueError, match="body learning-rate rule"):
        body_lr_factor("cosine", 10)
