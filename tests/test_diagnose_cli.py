"""`orthojac diagnose` (registry spec and checkpoint) and `orthojac reproduce isometry` on tiny settings."""

from __future__ import annotations

import json

import torch

from orthojac.cli import main
from orthojac.diagnostics import jacobian_spectrum
from orthojac.experiments.common import read_csv
from orthojac.experiments.diagnose import load_batch
from orthojac.models import build_model
from orthojac.nn import randomize_
from orthojac.train.checkpoint import save_checkpoint


def test_diagnose_registry_spec(tmp_path, capsys) -> None:
    rc = main(["diagnose", "--family", "ortho_feedforward_abs", "--width", "8", "--depth", "6", "--data", "gaussian",
               "--batch", "3", "--out", str(tmp_path)])
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["method"] == "exact" and rep["jacobian_shape"] == [8, 8] and rep["data"] == "gaussian"
    assert abs(rep["summary"]["sigma_min"] - 1) < 1e-10 and abs(rep["summary"]["sigma_max"] - 1) < 1e-10
    assert abs(rep["gradients"]["ratio"] - 1) < 1e-10 and len(rep["gradients"]["activation"]) == 7
    assert rep["orthogonality_defect"]["count"] == 6 and rep["orthogonality_defect"]["max"] < 1e-12
    assert len(rep["singular_values"]) == 3
    for png in ("spectrum.png", "gradients.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert "σ_min" in capsys.readouterr().out


def test_diagnose_checkpoint_uses_the_stored_weights(tmp_path) -> None:
    model = build_model("mlp", "ortho_residual_relu", (2,), 3, width=8, depth=4, seed=5, stem_norm=False)
    randomize_(model.body, torch.Generator().manual_seed(0))  # away from the identity-at-init weights
    cfg = {"model": {"body": "mlp", "arch": "ortho_residual_relu", "width": 8, "depth": 4, "policy": "init",
                     "seed": 5, "kwargs": {"stem_norm": False}},
           "data": {"dataset": "spirals"}, "train": {"seed": 0}}
    save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), "config": cfg})
    out = tmp_path / "diag"
    assert main(["diagnose", "--checkpoint", str(tmp_path / "last.pt"), "--batch", "2", "--method", "exact",
                 "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    x, _, source = load_batch("auto", (2,), 3, 2, 0)
    model = model.double()
    expected = jacobian_spectrum(model.body, model.stem(x.double()).detach(), "exact").singular_values
    assert source == "gaussian" and rep["model"]["checkpoint"].endswith("last.pt")
    assert torch.allclose(torch.tensor(rep["singular_values"], dtype=torch.float64), expected, rtol=1e-10)


def test_diagnose_errors(capsys) -> None:
    assert main(["diagnose"]) == 2
    assert "give --family" in capsys.readouterr().err
    assert main(["diagnose", "--family", "nope", "--out", "/tmp/orthojac-never"]) == 2
    assert "unknown model family" in capsys.readouterr().err


def test_reproduce_isometry_tiny(tmp_path) -> None:
    csv_path, fig = tmp_path / "iso.csv", tmp_path / "iso.png"
    args = ["reproduce", "isometry", "--families", "plain_relu", "ortho_feedforward_abs", "--depths", "2", "5",
            "--width", "8", "--batch", "2", "--data", "gaussian", "--csv", str(csv_path), "--figure", str(fig)]
    assert main(args) == 0
    rows = read_csv(csv_path)
    assert len(rows) == 4 and {r["mode"] for r in rows} == {"quick"}
    for r in rows:
        assert float(r["sigma_min"]) <= float(r["sigma_median"]) <= float(r["sigma_max"])
        if r["family"] == "ortho_feedforward_abs":
            assert abs(float(r["sigma_min"]) - 1) < 1e-10 and abs(float(r["grad_ratio"]) - 1) < 1e-10
            assert float(r["n_unit"]) == 8
    assert "| quick | OrthoFeedforward(abs x) | 5 |" in csv_path.with_suffix(".md").read_text()
    assert fig.stat().st_size > 20_000
    fig.unlink()
    assert main([*args, "--plot-only"]) == 0 and fig.exists()
    assert len(read_csv(csv_path)) == 4  # re-plotting does not touch the CSV
