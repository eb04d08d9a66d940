"""orthojac.train: config validation, schedule, checkpoints, exact resume after SIGKILL, NaN stop, DDP = 1 process.

Runs use generated spirals and tiny MLPs (a few dozen steps), so the whole file stays within seconds of
compute; the resume and DDP tests start subprocesses (the cost is mostly importing torch)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from orthojac.cli import main as cli_main
from orthojac.train import (
    Callback,
    ConfigError,
    NonFiniteLossError,
    Trainer,
    apply_overrides,
    load_checkpoint,
    load_config,
    lr_factor,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine more threads make these tiny runs ~50× slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(out: Path, **over: Any) -> dict[str, Any]:
    """Depth-4, width-16 orthogonal-residual MLP on 300 spirals points, batch 32 (10 steps/epoch)."""
    cfg: dict[str, Any] = {
        "name": "tiny", "output": str(out),
        "model": {"body": "mlp", "arch": "ortho_residual_relu", "width": 16, "depth": 4, "policy": "exact"},
        "data": {"dataset": "spirals", "n_train": 300, "n_test": 60, "val_fraction": 0.1, "batch_size": 32,
                 "eval_batch_size": 100},
        "optim": {"name": "adam", "lr": 0.01, "warmup_steps": 3},
        "regularizers": {"orthogonality": 1e-3},
        "train": {"epochs": 3, "seed": 0, "device": "cpu", "progress": False, "log_every": 5, "ckpt_every": 4,
                  "tensorboard": False},
    }
    for key, value in over.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- configuration

def test_config_defaults_and_resolution(tmp_path: Path) -> None:
    c = parse_config(tiny_config(tmp_path / "r"))
    assert c.model.seed == c.train.seed == 0  # model seed defaults to the training seed
    assert c.optim.betas == (0.9, 0.999) and c.train.best_metric == "val_acc"
    c0 = parse_config({**tiny_config(tmp_path), "data": {"dataset": "spirals", "val_fraction": 0}})
    assert c0.train.best_metric == "test_acc"  # no validation set: track the test accuracy
    assert parse_config({k: v for k, v in tiny_config(tmp_path).items() if k != "output"}).output == "runs/tiny"


@pytest.mark.parametrize(("patch", "expected"), [
    ({"model": {"arch": "x", "polcy": "init"}}, r"model\.polcy: unknown key; allowed keys: arch, body, depth"),
    ({"model": {"arch": "x", "policy": "orth"}}, r"model\.policy: Input should be 'init' or 'exact'"),
    ({"optim": {"name": "rmsprop"}}, r"optim\.name: Input should be 'adam', 'adamw' or 'sgd'"),
    ({"optim": {"lr": -1}}, r"optim\.lr: Input should be greater than 0"),
    ({"data": {"dataset": "imagenet"}}, r"data\.dataset: unknown data set 'imagenet'; allowed: .*fashion-mnist"),
    ({"regularizers": {"smoothness": 1.0}}, r"regularizers: unknown regularizer 'smoothness'; allowed: orthogonality"),
    ({"train": {"amp": "fp8"}}, r"train\.amp: Input should be 'off', 'bf16' or 'fp16'"),
    ({"train": {"device": "tpu"}}, r"train\.device: device 'tpu' unknown; allowed: auto, cpu, cuda"),
    ({"trian": {}}, r"trian: unknown key; allowed keys: data, model, name, optim, output, regularizers, train"),
])
def test_config_errors_name_key_and_allowed_values(tmp_path: Path, patch: dict, expected: str) -> None:
    cfg = tiny_config(tmp_path)
    for section, value in patch.items():
        cfg[section] = {**cfg.get(section, {}), **value} if section in cfg else value
    with pytest.raises(ConfigError, match=expected):
        parse_config(cfg)


def test_missing_section_and_overrides(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    del cfg["model"]
    with pytest.raises(ConfigError, match="model: required key is missing"):
        parse_config(cfg)
    d = apply_overrides(tiny_config(tmp_path), ["optim.lr=3e-4", "train.amp=bf16", "model.kwargs.bias=false"])
    assert d["optim"]["lr"] == 3e-4 and d["train"]["amp"] == "bf16" and d["model"]["kwargs"] == {"bias": False}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["optim.lr"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    with pytest.raises(ConfigError, match=r"c\.yaml:\n  train\.epochs: Input should be greater than or equal to 1"):
        load_config(path, ["train.epochs=0"])


def test_example_configs_validate() -> None:
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files, "no example configs"
    for f in files:
        load_config(f)


def test_lr_schedule() -> None:
    assert [lr_factor(t, 10, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, 4) == 1.0  # cosine starts at 1 …
    assert lr_factor(7, 10, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert lr_factor(9, 10, 4, min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert lr_factor(9, 10, 2, schedule="constant") == 1.0


# ---------------------------------------------------------------- a run, its files, callbacks

class GradNorms(Callback):
    """Logs ‖∇‖ of the head's weight after backward at steps 1 and 5."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_after_backward(self, trainer: Trainer) -> dict[str, Any] | None:
        step = trainer.global_step + 1
        if step in (1, 5):
            self.seen.append(step)
            return {"head_grad_norm": float(trainer.model.head.weight.grad.norm())}
        return None


def test_fit_writes_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cb = GradNorms()

    def weight_norm(tr: Trainer, step: int) -> dict[str, float] | None:
        return {"w_norm": float(tr.model.head.weight.detach().norm())} if step == 0 else None

    t = Trainer(tiny_config(run), callbacks=[cb], extra_metrics=weight_norm)
    s = t.fit()
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "summary.json"}
    assert s["status"] == "completed" and s["steps"] == 30 and s["epochs"] == 3
    assert json.loads((run / "summary.json").read_text())["test_acc"] == s["test_acc"]
    assert 0.0 <= s["train_acc"] <= 1.0 and s["n_train"] == 300
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["seed"] == 0
    recs = _records(run)
    assert [r["step"] for r in recs if r["kind"] == "eval"] == [10, 20, 30]
    assert cb.seen == [1, 5]
    extra = [r for r in recs if r["kind"] == "extra"]
    assert [(r["step"], r["hook"]) for r in extra] == [(0, "on_train_start"), (0, "on_after_backward"),
                                                      (4, "on_after_backward")]
    ck = load_checkpoint(run / "last.pt")  # weights_only=True
    assert ck["global_step"] == 30 and ck["epoch"] == 3 and ck["step_in_epoch"] == 0
    assert set(ck) >= {"model", "optimizer", "scheduler", "rng", "config", "best"}
    assert ck["config"]["model"]["arch"] == "ortho_residual_relu"
    best = load_checkpoint(run / "best.pt")
    assert best["global_step"] == s["best_step"]
    with pytest.raises(ConfigError, match="already holds a run"):  # never overwrite a run silently
        Trainer(tiny_config(run)).fit()
    again = Trainer(tiny_config(run)).fit(resume=True)  # resuming a finished run changes nothing
    assert again["steps"] == 30 and again["test_acc"] == s["test_acc"]
    assert torch.equal(load_checkpoint(run / "last.pt")["model"]["head.weight"], ck["model"]["head.weight"])


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(tiny_config(run, train__epochs=1)).fit()
    with pytest.raises(ConfigError, match=r"optim\.lr \(0\.01 → 0\.02\)"):
        Trainer(tiny_config(run, train__epochs=1, optim__lr=0.02)).fit(resume=True)


def test_bf16_autocast_and_no_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    s = Trainer(tiny_config(run, train__amp="bf16", train__checkpoints=False, train__epochs=1)).fit()
    assert s["status"] == "completed" and math.isfinite(s["test_loss"])
    assert not list(run.glob("*.pt")) and (run / "summary.json").exists()
    with pytest.raises(ConfigError, match="train.amp: 'fp16' needs a CUDA device"):
        Trainer(tiny_config(tmp_path / "fp16", train__amp="fp16"))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    class Poison(Callback):
        def on_after_backward(self, trainer: Trainer) -> None:
            if trainer.global_step == 6:  # the 7th step
                next(trainer.model.parameters()).grad.fill_(float("nan"))

    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"not finite at epoch 0, step 6.*last good checkpoint .*last\.pt"):
        Trainer(tiny_config(run), callbacks=[Poison()]).fit()
    ck = load_checkpoint(run / "last.pt")
    assert ck["global_step"] == 4  # ckpt_every 4: the step-4 checkpoint survives, untouched
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"
    assert _records(run)[-1]["kind"] == "diverged"


# ---------------------------------------------------------------- exact resume after SIGKILL

class KillAt(Callback):
    """SIGKILL the process running the trainer after step ``step`` (mid-epoch, a few steps after a checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _train_and_get_killed(cfg: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    Trainer(cfg, callbacks=[KillAt(15)]).fit()


def test_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    import multiprocessing

    full, killed = tmp_path / "full", tmp_path / "killed"
    cfg_killed = tiny_config(killed)
    # spawned, not forked: a fork of a pytest worker that earlier tests left with thread pools or held locks can hang
    child = multiprocessing.get_context("spawn").Process(target=_train_and_get_killed, args=(cfg_killed,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    ck = load_checkpoint(killed / "last.pt")
    assert (ck["global_step"], ck["epoch"], ck["step_in_epoch"]) == (12, 1, 2)  # mid-epoch checkpoint
    assert max(r["step"] for r in _records(killed)) == 15  # logged after the checkpoint, then lost
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(cfg_killed))
    # resume through the CLI's code path, and run the uninterrupted reference (one thread, like the child)
    assert cli_main(["train", str(tmp_path / "killed.yaml"), "--resume", "--set", "train.progress=false"]) == 0
    Trainer(tiny_config(full)).fit()
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["global_step"] == b["global_step"] == 30
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k  # bit for bit
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the metrics are the same too (the records after the checkpoint were dropped and redone)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs if r["kind"] in ("train", "eval")]  # noqa: E731
    assert strip(_records(full)) == strip(_records(killed))
    assert json.loads((full / "summary.json").read_text())["test_acc"] == \
        json.loads((killed / "summary.json").read_text())["test_acc"]


# ---------------------------------------------------------------- DDP: 2 processes = 1 process

DDP_OVERRIDES = {"data__n_train": 250, "train__epochs": 1, "train__ckpt_every": None}  # 8 steps, last batch 26


def _ddp_worker(rank: int, world: int, port: int, cfg: dict[str, Any]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(cfg).fit()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_ddp_equals_one_process(s1: dict[str, Any], one: Path, two: Path) -> None:
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["world_size"] == 1 and s1["steps"] == s2["steps"] == 8
    a, b = load_checkpoint(one / "last.pt")["model"], load_checkpoint(two / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    init = Trainer(tiny_config(one.parent / "init", **DDP_OVERRIDES)).model.state_dict()
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    assert moved > 1e-2  # the weights did move: the comparison is not trivially true
    assert s1["test_acc"] == s2["test_acc"] and s1["val_loss"] == pytest.approx(s2["val_loss"], rel=1e-4)


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    """2 ranks (gloo, CPU; spawned: a fork of a pytest worker that other tests left with thread pools or held
    locks hung the rendezvous once in CI) give the 1-process result."""
    import torch.multiprocessing as mp

    one, two = tmp_path / "one", tmp_path / "two"
    s1 = Trainer(tiny_config(one, **DDP_OVERRIDES)).fit()
    ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), tiny_config(two, **DDP_OVERRIDES)), nprocs=2,
                             start_method="spawn", join=False)
    deadline = time.monotonic() + 180  # a stuck rendezvous must fail the test, not hang the suite
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("DDP children did not finish within 180 s")
    _check_ddp_equals_one_process(s1, one, two)


@pytest.mark.slow
def test_torchrun_cli_matches_one_process(tmp_path: Path) -> None:
    """The documented path end to end: torchrun --nproc_per_node=2 -m orthojac.cli train CONFIG."""
    two = tmp_path / "two"
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(tiny_config(two, **DDP_OVERRIDES)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "orthojac.cli", "train", str(tmp_path / "two.yaml")]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    _check_ddp_equals_one_process(Trainer(tiny_config(tmp_path / "one", **DDP_OVERRIDES)).fit(), tmp_path / "one", two)
