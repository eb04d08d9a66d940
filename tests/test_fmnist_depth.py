"""`orthojac reproduce fmnist-depth` end to end on tiny IDX files written here, its grids, resuming, and the
trainer's body learning-rate scaling that it relies on."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from orthojac.cli import main
from orthojac.data.datasets import DATASETS, DatasetInfo, FileSpec
from orthojac.data.idx import write_idx
from orthojac.experiments import fmnist_depth
from orthojac.experiments.common import read_csv
from orthojac.train import Trainer, parse_config

REQUIRED = ["mode", "body", "arch", "policy", "alpha", "depth", "seed", "test_acc", "train_acc", "epochs", "seconds",
            "device"]


@pytest.fixture
def tiny_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fashion-MNIST-shaped IDX files (28×28, 10 classes; the class is the brightness of a square), 96 train and
    48 test images, registered in place of the real data set (no hashes known: format-checked only)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "fmnist"
    d.mkdir()
    sizes = {"train": 96, "t10k": 48}
    for prefix, n in sizes.items():
        y = np.arange(n) % 10
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        x[:, 10:18, 10:18] += (20 * y).astype(np.uint8)[:, None, None]
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    real = DATASETS["fashion-mnist"]
    splits = {s: (FileSpec(f"{p}-images-idx3-ubyte", (sizes[p], 28, 28)), FileSpec(f"{p}-labels-idx1-ubyte",
                                                                                     (sizes[p],)))
              for s, p in (("train", "train"), ("test", "t10k"))}
    monkeypatch.setitem(DATASETS, "fashion-mnist", DatasetInfo("fashion-mnist", "idx", splits, real.in_shape,
                                                               real.classes))
    return d


def test_quick_mode_end_to_end(tmp_path: Path, tiny_fashion: Path) -> None:
    res, figs = tmp_path / "results", tmp_path / "figs"
    common = ["--data-root", str(tiny_fashion), "--conv-width", "2", "--n-train", "64", "--n-test", "32",
              "--epochs", "1",
              "--results", str(res), "--figures", str(figs), "--runs-dir", str(tmp_path / "runs"), "--threads", "1"]
    assert main(["reproduce", "fmnist-depth", "--quick", "--depths", "8", *common]) == 0
    rows = read_csv(res / "fmnist_depth.csv")
    assert list(rows[0])[:len(REQUIRED)] == REQUIRED
    assert {r["mode"] for r in rows} == {"quick"}
    assert {(r["body"], r["arch"]) for r in rows} >= {(b, a) for b in ("mlp", "conv") for a in fmnist_depth.ARCHS}
    for r in rows:
        assert 0.0 <= float(r["test_acc"]) <= 1.0 and 0.0 <= float(r["train_acc"]) <= 1.0
        assert r["policy"] == ("none" if r["arch"] in ("resnet", "plain_relu") else r["policy"])
        assert r["body_lr_scale"] == "1" and r["lr"] == "0.002"  # depth 8: min(1, 8/8); quick η
    ortho = [r for r in rows if r["arch"] in fmnist_depth.ORTHO_ARCHS]
    assert all(abs(float(r["grad_ratio_init"]) - 1) < 1e-3 for r in ortho)  # orthogonal body: no vanishing
    md = (res / "fmnist_depth.md").read_text()
    assert "| mode | body | depth | arch |" in md and "fmnist_depth.csv" in md
    for name in ("accuracy", "gradnorms", "spectra", "feedforward_ablation"):
        assert (figs / f"fmnist_depth_{name}.png").stat().st_size > 5000
    # a full-mode slice is added next to the quick rows, and is skipped when run again (resume)
    full = ["reproduce", "fmnist-depth", "--full", "--bodies", "mlp", "--archs", "resnet", "--depths", "8",
            "--seeds", "0", "--width", "8", *common]
    assert main(full) == 0
    rows = read_csv(res / "fmnist_depth.csv")
    assert {r["mode"] for r in rows} == {"quick", "full"} and sum(r["mode"] == "full" for r in rows) == 1
    assert [r["lr"] for r in rows if r["mode"] == "full"] == ["0.0005"]  # the full MLP's η
    assert main(full) == 0
    assert len(read_csv(res / "fmnist_depth.csv")) == len(rows)
    # a filtered quick run redoes only its own runs
    before = {(r["mode"], r["body"], r["arch"]): r["seconds"] for r in rows}
    assert main(["reproduce", "fmnist-depth", "--quick", "--bodies", "mlp", "--archs", "plain_relu", "--depths", "8",
                 "--lr", "1e-3", *common]) == 0
    after = read_csv(res / "fmnist_depth.csv")
    assert len(after) == len(rows) and {(r["mode"], r["body"], r["arch"]) for r in after} == set(before)
    assert {(r["arch"], r["lr"]) for r in after if r["mode"] == "quick" and r["body"] == "mlp"} >= {
        ("plain_relu", "0.001"), ("resnet", "0.002")}  # --lr reaches the redone run only


def test_grids() -> None:
    quick = fmnist_depth.grid("quick")
    assert {r.depth for r in quick if r.body == "mlp"} == {8, 32, 200}
    assert any(r.lr_scaling == "constant" for r in quick) and any(r.policy == "exact" for r in quick)
    full = fmnist_depth.grid("full")
    assert {r.depth for r in full} == {8, 16, 32, 64, 128, 200, 500, 1000}
    assert {r.seed for r in full} == {0, 1, 2} and {r.alpha for r in full} == {0.0, 1e-3}
    assert {r.policy for r in full} == {"init", "exact", "none"} and {r.body for r in full} == {"mlp", "conv"}
    assert len({r.key() for r in full}) == len(full)
    with pytest.raises(ValueError, match="mode 'fast' is unknown"):
        fmnist_depth.grid("fast")
    # the opt-in untied form: only when asked, MLP only, next to the tied form's policy × lr-scaling cells
    untied = "ortho_feedforward_abs_untied"
    assert not any(r.arch == untied for r in quick + full)
    q = [r for r in fmnist_depth.grid("quick", (untied,)) if r.arch == untied]
    tied200 = {(r.policy, r.lr_scaling) for r in quick if r.arch == "ortho_feedforward_abs" and r.depth == 200
               and r.alpha == 0}
    assert {(r.policy, r.lr_scaling) for r in q if r.depth == 200} == tied200 == {
        (p, s) for p in ("init", "exact") for s in ("depth", "constant")}
    assert {r.depth for r in q} == {8, 32, 200} and {r.body for r in q} == {"mlp"}
    f = [r for r in fmnist_depth.grid("full", (untied,)) if r.arch == untied]
    assert {r.body for r in f} == {"mlp"} and len(f) == len([r for r in full if r.arch == "ortho_feedforward_abs"
                                                              and r.body == "mlp"])
    with pytest.raises(ValueError, match="opt-in architectures"):
        fmnist_depth.grid("quick", ("resnet",))


def test_update_profiles_keeps_other_writers(tmp_path: Path) -> None:
    """Two invocations (a long full sweep, a quick run) share the profiles file: each write re-reads it, so
    neither drops what the other wrote in the meantime."""
    path = tmp_path / "profiles.json"
    a = fmnist_depth.Run("mlp", "resnet", "none", 0.0, 200, 0)
    b = fmnist_depth.Run("mlp", "plain_relu", "none", 0.0, 200, 0)
    fmnist_depth.update_profiles(path, "full", drop={a.key()}, add={"run": asdict(a), "v": 1})
    fmnist_depth.update_profiles(path, "quick", drop={b.key()}, add={"run": asdict(b), "v": 2})
    fmnist_depth.update_profiles(path, "full", drop={a.key()}, add={"run": asdict(a), "v": 3})
    stored = json.loads(path.read_text())
    assert [p["v"] for p in stored["full"]] == [3] and [p["v"] for p in stored["quick"]] == [2]
    fmnist_depth.update_profiles(path, "quick", drop={b.key()})
    assert json.loads(path.read_text())["quick"] == [] and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("scale, expected", (("depth", 0.25), (0.5, 0.5), (1.0, None)))
def test_body_learning_rate_groups(tmp_path: Path, scale, expected) -> None:
    cfg = parse_config({
        "output": str(tmp_path / "run"), "model": {"arch": "ortho_feedforward_abs", "width": 8, "depth": 32},
        "data": {"dataset": "spirals", "n_train": 64, "n_test": 32, "batch_size": 32},
        "optim": {"lr": 1e-2, "body_lr_scale": scale},
        "train": {"progress": False, "checkpoints": False, "tensorboard": False, "max_steps": 1}})
    tr = Trainer(cfg)
    groups = tr.optimizer.param_groups
    if expected is None:
        assert len(groups) == 1
        return
    body = {id(p) for p in tr.model.body.parameters()}
    assert [len(g["params"]) for g in groups] == [len(list(tr.model.parameters())) - len(body), len(body)]
    assert all(id(p) in body for p in groups[1]["params"])
    assert groups[1]["lr"] == pytest.approx(expected * groups[0]["lr"])
    summary = tr.fit()
    assert summary["body_lr_scale"] == pytest.approx(expected)


def test_body_lr_scale_errors(tmp_path: Path) -> None:
    base = {"model": {"arch": "resnet"}, "data": {"dataset": "spirals"}}
    with pytest.raises(ValueError, match="body_lr_scale: must be a positive number or 'depth'"):
        parse_config({**base, "optim": {"body_lr_scale": -1}})
    cfg = parse_config({**base, "output": str(tmp_path / "r"), "optim": {"body_lr_scale": 0.5},
                        "train": {"progress": False}})
    with pytest.raises(ValueError, match="has no `body` submodule"):
        Trainer(cfg, model=torch.nn.Sequential(torch.nn.Linear(2, 3)))
