"""One training loop for every experiment: :class:`Trainer`.

The objective at step t, for a global batch 𝓑_t of size B, is

    L_t(θ) = (1/B) Σ_{i∈𝓑_t} ℓ(f_θ(x_i), y_i)  +  Σ_r w_r · R_r(θ)

with ℓ the cross-entropy and R_r the configured regularizers (e.g. ``orthogonality``: Σ‖WWᵀ − I‖²_F, notes
§0b/§5 of arXiv 2508.02882). The optimiser (Adam, AdamW or SGD) takes one step per batch with learning
rate η_t = η·s(t): linear warm-up s(t) = (t+1)/W for t < W, then cosine decay
s(t) = r + (1 − r)·½(1 + cos(π (t − W)/(T − W))) to the floor ratio r at the last step T (or s ≡ 1 after
warm-up with ``schedule: constant``). Gradients are clipped to ‖g‖₂ ≤ ``grad_clip`` when set.

Determinism and exact resume. The order of the training samples in epoch e is the permutation drawn from
a generator seeded with (``train.seed``, e) alone, so the batch at any (epoch, step) is known without
replaying earlier epochs; a checkpoint stores the model, optimiser, scheduler, gradient scaler, all RNG
states and the position (epoch, step within epoch, global step). Resuming rebuilds everything from the
config, loads that state and skips the batches already done: on CPU the continued run performs exactly the
same floating-point operations as an uninterrupted one, so the final weights agree bit for bit.

Distributed data parallel (``torchrun --nproc_per_node=P``). Every rank draws the same permutation and takes
the samples ``𝓑_t[rank::P]`` of each global batch. Rank r minimises (P/B)·Σ_{i∈its share} ℓ_i, and DDP
averages gradients over ranks, so the update is that of (1/B)·Σ_{i∈𝓑_t} ℓ_i — the single-process one with
the same global batch (up to the order of floating-point sums). Evaluation sums correct counts and losses
over the ranks' shards.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn

from ..data import DataSplits, load_splits
from ..models import build_model
from .checkpoint import atomic_write_text, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import REGULARIZERS, ConfigError, RunConfig, load_config, parse_config

__all__ = ["Trainer", "Callback", "NonFiniteLossError", "train", "build_optimizer", "build_scheduler", "lr_factor",
           "epoch_permutation", "param_groups"]

# keys that may differ between a checkpoint's config and the config given with --resume
RESUME_MAY_DIFFER = ("train.max_steps", "train.ckpt_every", "train.eval_train", "train.progress", "train.tensorboard",
                     "train.device", "train.log_every", "train.threads", "data.root", "data.download", "data.verify",
                     "output")


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient became NaN/Inf; training stopped, the last good checkpoint is kept."""


class Callback:
    """Hooks into :class:`Trainer`. Each may return a dict of numbers, which is written to ``metrics.jsonl``
    (``"kind": "extra"``, with the current step) — e.g. gradient norms per layer at chosen steps. Hooks run
    on every rank (so they may use collectives); only rank 0 writes. A hook that draws from the global RNG
    makes the run differ from one without it (resume stays exact: the RNG state is checkpointed)."""

    def on_train_start(self, trainer: Trainer) -> dict[str, Any] | None:  # before the first (or resumed) step
        return None

    def on_after_backward(self, trainer: Trainer) -> dict[str, Any] | None:  # gradients present, before clipping
        return None

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> dict[str, Any] | None:  # after optimiser step
        return None

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> dict[str, Any] | None:
        return None


class _ExtraMetrics(Callback):
    """Adapter for ``extra_metrics(trainer, step) -> dict | None``: called before training (step 0 or the
    resumed step) and after every optimiser step; the function decides at which steps it returns metrics."""

    def __init__(self, fn: Callable[[Trainer, int], dict[str, Any] | None]) -> None:
        self.fn = fn

    def on_train_start(self, trainer: Trainer) -> dict[str, Any] | None:
        return self.fn(trainer, trainer.global_step)

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> dict[str, Any] | None:
        return self.fn(trainer, trainer.global_step)


def lr_factor(step: int, total: int, warmup: int, schedule: str = "cosine", min_ratio: float = 0.0) -> float:
    """s(t) of the module docstring: the learning rate at optimiser step ``step`` (0-based) is η·s(t)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    p = min(1.0, (step - warmup) / (total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def build_optimizer(params: Iterable[nn.Parameter] | Iterable[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    """Adam (L2 weight decay), AdamW (decoupled) or SGD (momentum, Nesterov) from an ``OptimConfig``; ``params``
    are parameters or parameter groups (:func:`param_groups`)."""
    params = list(params)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    raise ConfigError(f"optim.name: {cfg.name!r} unknown; allowed: adam, adamw, sgd")


def param_groups(model: nn.Module, lr: float, body_scale: float = 1.0) -> list[nn.Parameter] | list[dict[str, Any]]:
    """The optimiser's parameters: all in one group when ``body_scale`` is 1; otherwise two groups, the
    parameters outside ``model.body`` first (learning rate ``lr``) and those of ``model.body`` (``lr·body_scale``).
    The schedule multiplies each group's learning rate by the same factor s(t)."""
    if body_scale == 1.0:
        return list(model.parameters())
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise ConfigError(f"optim.body_lr_scale: the model ({type(model).__name__}) has no `body` submodule to "
                          "scale; allowed for such models: 1.0")
    ids = {id(p) for p in body.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": list(body.parameters()), "lr": lr * body_scale}]


def build_scheduler(opt: torch.optim.Optimizer, cfg: Any, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR`` with factor :func:`lr_factor` (its state dict holds only numbers)."""
    def factor(t: int) -> float:
        return lr_factor(t, total_steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The order of the n training samples in ``epoch``: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63 - 1))
    return torch.randperm(n, generator=g).to(device)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "kwargs" and k != "regularizers":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Trainer:
    """Train one model as configured; everything the run produces goes to ``config.run_dir``:
    ``config.yaml`` (resolved), ``metrics.jsonl``, ``last.pt``, ``best.pt``, ``summary.json`` (and TensorBoard
    event files when ``tensorboard`` is installed).

    Parameters
    ----------
    config:
        a :class:`RunConfig`, a mapping (validated), or a path to a YAML file.
    model:
        use this model instead of ``build_model(config.model…)`` (must be built deterministically for
        ``--resume`` to be exact; its parameters must be those saved in a resumed checkpoint).
    data:
        use these tensors instead of ``load_splits(config.data…)``.
    callbacks:
        :class:`Callback` instances.
    extra_metrics:
        ``fn(trainer, step) -> dict | None``, called before training and after every step; returned
        numbers are logged (``kind: "extra"``).
    """

    def __init__(self, config: RunConfig | dict[str, Any] | str | Path, *, model: nn.Module | None = None,
                 data: DataSplits | None = None, callbacks: Sequence[Callback] = (),
                 extra_metrics: Callable[[Trainer, int], dict[str, Any] | None] | None = None) -> None:
        if isinstance(config, (str, Path)):
            config = load_config(config)
        elif isinstance(config, dict):
            config = parse_config(config)
        self.config: RunConfig = config
        self.run_dir = config.run_dir
        self.callbacks: list[Callback] = list(callbacks)
        if extra_metrics is not None:
            self.callbacks.append(_ExtraMetrics(extra_metrics))
        if config.train.threads is not None:
            torch.set_num_threads(config.train.threads)
        self._setup_distributed()
        c = config
        self.data = data if data is not None else self._load_data()
        if model is None:
            try:
                model = build_model(c.model.body, c.model.arch, self.data.in_shape, self.data.num_classes,
                                    c.model.width, c.model.depth, c.model.policy, c.model.seed, **c.model.kwargs)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"model: {e}") from e
        self.model = model.to(self.device)
        self.net: nn.Module = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                           find_unused_parameters=c.train.ddp_find_unused)
        self.train_x, self.train_y = (t.to(self.device) for t in self.data.train)
        self.batch_size = c.data.batch_size
        if self.batch_size < self.world_size:
            raise ConfigError(f"data.batch_size: {self.batch_size} is the global batch and must be at least the "
                              f"number of processes ({self.world_size})")
        n = len(self.train_y)
        # the last, partial batch is kept unless it has fewer samples than ranks
        self.steps_per_epoch = n // self.batch_size + (1 if n % self.batch_size >= self.world_size else 0)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data.batch_size: {self.batch_size} with {n} training samples and "
                              f"{self.world_size} processes gives no batch")
        self.total_steps = self.steps_per_epoch * c.train.epochs
        self.body_lr_scale = c.optim.body_scale(c.model.depth)
        self.optimizer = build_optimizer(param_groups(self.model, c.optim.lr, self.body_lr_scale), c.optim)
        self.scheduler = build_scheduler(self.optimizer, c.optim, self.total_steps)
        self._setup_amp()
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best: dict[str, Any] = {"metric": c.train.best_metric, "value": None, "step": None}
        self.last_eval: dict[str, Any] = {}
        self._metrics_file: Any = None
        self._tb: Any = None
        self._t0 = time.time()
        self._elapsed_before = 0.0
        self._acc_loss = torch.zeros((), dtype=torch.float64, device=self.device)  # Σ data loss since last log
        self._acc_n = 0

    # ---------------------------------------------------------------- set-up
    def _setup_distributed(self) -> None:
        if dist.is_available() and dist.is_initialized():  # a process group set up by the caller
            self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
        else:  # torchrun's environment (or a single process)
            self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
            self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        want = self.config.train.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"train.device: {want!r} requested but CUDA is not available; allowed here: cpu, auto")
        if want == "cuda":
            want = f"cuda:{local_rank}" if self.world_size > 1 else "cuda"
        self.device = torch.device(want)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._owns_pg = False
        if self.world_size > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self._owns_pg = True
        self.is_main = self.rank == 0

    def _load_data(self) -> DataSplits:
        """``load_splits`` as configured; with several processes only rank 0 downloads, the others wait."""
        d = self.config.data

        def load(download: bool) -> DataSplits:
            return load_splits(d.dataset, d.root, n_train=d.n_train, n_val=d.n_val, n_test=d.n_test,
                               val_fraction=d.val_fraction, seed=d.seed, normalize_inputs=d.normalize,
                               download=download, verify=d.verify, progress=self.is_main)

        if self.world_size == 1 or not d.download:
            return load(d.download)
        data = load(True) if self.is_main else None
        dist.barrier()
        return data if data is not None else load(False)

    def _setup_amp(self) -> None:
        amp = self.config.train.amp
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        if amp == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"train.amp: 'fp16' needs a CUDA device (running on {self.device}); allowed here: "
                              "off, bf16")
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (tensors and plain values only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "best": dict(self.best),
            "log_window": [float(self._acc_loss), self._acc_n],  # the running train-loss average being logged
            "elapsed": self._elapsed(),
            "config": self.config.to_dict(),
            "torch_version": str(torch.__version__),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.epoch, self.step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        self.global_step = int(ckpt["global_step"])
        self.best = dict(ckpt["best"])
        self._acc_loss.fill_(ckpt["log_window"][0])
        self._acc_n = int(ckpt["log_window"][1])
        self._elapsed_before = float(ckpt.get("elapsed", 0.0))

    def save(self, which: str = "last") -> Path:
        """Write ``<which>.pt`` atomically (rank 0 only; returns its path on every rank)."""
        path = self.run_dir / f"{which}.pt"
        if self.is_main and self.config.train.checkpoints:
            save_checkpoint(path, self.state_dict())
        return path

    def _elapsed(self) -> float:
        return self._elapsed_before + time.time() - self._t0

    # ---------------------------------------------------------------- logging
    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (and scalars to TensorBoard); rank 0 only."""
        if not self.is_main:
            return
        rec = {"step": self.global_step, "epoch": self.epoch, **record, "time": round(self._elapsed(), 3)}
        if self._metrics_file is None:
            self._metrics_file = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115 — closed in fit()
        self._metrics_file.write(json.dumps(rec) + "\n")
        self._metrics_file.flush()
        if self._tb is not None:
            kind = rec.get("kind", "")
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "time"):
                    self._tb.add_scalar(f"{kind}/{k}", v, self.global_step)

    def _callbacks(self, hook: str, *args: Any) -> None:
        extra: dict[str, Any] = {}
        for cb in self.callbacks:
            out = getattr(cb, hook)(self, *args)
            if out:
                extra.update(out)
        if extra:
            self.log({"kind": "extra", "hook": hook, **extra})

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Mean loss and accuracy on ``"train"``, ``"val"`` or ``"test"`` (summed over ranks' shards)."""
        pair = {"train": self.data.train, "val": self.data.val, "test": self.data.test}.get(split)
        if pair is None:
            raise ValueError(f"split {split!r} is not available; allowed: train, test" +
                             (", val" if self.data.val is not None else ""))
        x, y = pair
        idx = torch.arange(self.rank, len(y), self.world_size)
        was_training = self.model.training
        self.model.eval()
        tot = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, count
        eb = self.config.data.eval_batch_size
        for k in range(0, len(idx), eb):
            j = idx[k:k + eb]
            xb, yb = x[j].to(self.device), y[j].to(self.device)
            with self._autocast():
                logits = self.model(xb)
            tot[0] += F.cross_entropy(logits.float(), yb, reduction="sum").double()
            tot[1] += (logits.argmax(-1) == yb).sum()
            tot[2] += len(j)
        if self.world_size > 1:
            dist.all_reduce(tot)
        self.model.train(was_training)
        n = max(float(tot[2]), 1.0)
        return {f"{split}_loss": float(tot[0]) / n, f"{split}_acc": float(tot[1]) / n}

    def _eval_and_track(self) -> None:
        metrics: dict[str, Any] = {}
        if self.data.val is not None:
            metrics.update(self.evaluate("val"))
        metrics.update(self.evaluate("test"))
        self.last_eval = metrics
        self.log({"kind": "eval", **metrics})
        self._callbacks("on_eval_end", metrics)
        key = self.best["metric"]
        v = metrics.get(key)
        if v is not None and math.isfinite(v):
            better = self.best["value"] is None or (v > self.best["value"] if key.endswith("acc")
                                                     else v < self.best["value"])
            if better:
                self.best.update(value=v, step=self.global_step)
                self.save("best")

    # ---------------------------------------------------------------- training
    def _regularization(self) -> torch.Tensor | None:
        total = None
        for name, w in self.config.regularizers.items():
            if w > 0:
                term = w * REGULARIZERS[name](self.model)
                total = term if total is None else total + term
        return total

    def _train_step(self, idx: torch.Tensor) -> dict[str, Any]:
        """One optimiser step on the global batch ``idx`` (this rank uses idx[rank::P])."""
        local = idx[self.rank::self.world_size]
        xb, yb = self.train_x[local], self.train_y[local]
        with self._autocast():
            logits = self.net(xb)
            data_sum = F.cross_entropy(logits.float(), yb, reduction="sum")
        loss = data_sum * (self.world_size / len(idx))
        reg = self._regularization()
        if reg is not None:
            loss = loss + reg
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        self._callbacks("on_after_backward")
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.config.train.grad_clip
        if clip is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            gnorm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
        finite = bool(torch.isfinite(loss)) if self.world_size == 1 else True
        if self.scaler is None and not (finite and bool(torch.isfinite(gnorm))):
            self._diverged(float(loss.detach()), float(gnorm))
        if self.scaler is not None:
            if not finite:
                self._diverged(float(loss.detach()), float(gnorm))
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return {"data_loss_sum": data_sum.detach(), "n": len(local), "loss": loss.detach(),
                "reg": None if reg is None else reg.detach(), "grad_norm": gnorm.detach(), "lr": lr}

    def _diverged(self, loss: float, gnorm: float) -> None:
        last = self.run_dir / "last.pt"
        where = (f"the last good checkpoint {last} is kept" if last.exists()
                 else "no checkpoint had been written yet")
        msg = (f"loss {loss} / gradient norm {gnorm} is not finite at epoch {self.epoch}, step {self.global_step}; "
               f"training stopped, {where}. Try a lower optim.lr, train.grad_clip, optim.warmup_steps, or amp off")
        self.log({"kind": "diverged", "loss": loss if math.isfinite(loss) else str(loss),
                  "grad_norm": gnorm if math.isfinite(gnorm) else str(gnorm)})
        self._write_summary("diverged", message=msg)
        raise NonFiniteLossError(msg)

    def _prepare_run_dir(self, resume: bool) -> bool:
        """Create the run dir; load the checkpoint when resuming. Returns whether a checkpoint was loaded."""
        last = self.run_dir / "last.pt"
        if not resume and last.exists():
            raise ConfigError(f"output: {self.run_dir} already holds a run (last.pt); pass --resume to continue it, "
                              "or choose another output directory")
        loaded = False
        if resume and last.exists():
            ckpt = load_checkpoint(last, map_location=self.device)
            self._check_resume_config(ckpt["config"], last)
            self.load_state_dict(ckpt)
            loaded = True
        elif resume and self.is_main:
            print(f"orthojac train: no checkpoint in {self.run_dir}; starting from scratch", file=sys.stderr)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_metrics(self.global_step if loaded else 0, keep=loaded)
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        return loaded

    def _check_resume_config(self, saved: dict[str, Any], path: Path) -> None:
        a, b = _flatten(saved), _flatten(self.config.to_dict())
        diff = [f"{k} ({a.get(k)!r} → {b.get(k)!r})" for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k) and k not in RESUME_MAY_DIFFER]
        if diff:
            raise ConfigError(f"--resume: the config differs from the one in {path}: {'; '.join(diff)}. A resumed run "
                              f"must use the same settings (only {', '.join(RESUME_MAY_DIFFER)} may change)")

    def _truncate_metrics(self, step: int, keep: bool) -> None:
        """On resume keep the records up to the checkpoint's step (later ones are redone); else start empty."""
        path = self.run_dir / "metrics.jsonl"
        lines: list[str] = []
        if keep and path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line torn by the kill
                    continue
                if rec.get("step", 0) <= step and rec.get("kind") != "summary":
                    lines.append(line)
        atomic_write_text(path, "".join(line + "\n" for line in lines))

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train (or continue with ``resume=True``) until ``train.epochs`` / ``train.max_steps``; returns the
        summary (also written to ``summary.json``). Raises :class:`NonFiniteLossError` on NaN/Inf."""
        c = self.config.train
        self._t0 = time.time()
        try:
            resumed = self._prepare_run_dir(resume)
            if self.is_main and c.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.run_dir / "tb"))
                except ImportError:
                    self._tb = None
            if resumed:
                self.log({"kind": "resume"})
            else:
                torch.manual_seed(c.seed)
                self.log({"kind": "start", "n_params": sum(p.numel() for p in self.model.parameters()),
                          "world_size": self.world_size, "device": str(self.device), **self.data.sizes()})
            self._callbacks("on_train_start")
            self._loop()
            if not self.last_eval:  # resumed a run that had already finished: nothing was evaluated here
                self.last_eval = {**(self.evaluate("val") if self.data.val is not None else {}),
                                  **self.evaluate("test")}
            summary = self._write_summary("completed")
            self._callbacks("on_train_end", summary)
            return summary
        finally:
            if self._metrics_file is not None:
                self._metrics_file.close()
                self._metrics_file = None
            if self._tb is not None:
                self._tb.close()
            if self._owns_pg and dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()

    def _loop(self) -> None:
        from tqdm import tqdm

        c = self.config.train
        stop = min(self.total_steps, c.max_steps or self.total_steps)
        bar = tqdm(total=stop, initial=self.global_step, disable=not (c.progress and self.is_main),
                   desc=self.config.name, mininterval=1.0, dynamic_ncols=True)
        self.model.train()
        while self.global_step < stop and self.epoch < c.epochs:
            perm = epoch_permutation(len(self.train_y), c.seed, self.epoch, self.device)
            while self.step_in_epoch < self.steps_per_epoch and self.global_step < stop:
                k = self.step_in_epoch * self.batch_size
                out = self._train_step(perm[k:k + self.batch_size])
                self.step_in_epoch += 1
                self.global_step += 1
                self._acc_loss += out["data_loss_sum"].double()
                self._acc_n += out["n"]
                end_of_epoch = self.step_in_epoch == self.steps_per_epoch
                if self.global_step % c.log_every == 0 or end_of_epoch or self.global_step == stop:
                    stats = torch.stack([self._acc_loss, torch.tensor(float(self._acc_n), dtype=torch.float64,
                                                                      device=self.device)])
                    if self.world_size > 1:
                        dist.all_reduce(stats)
                    rec = {"kind": "train", "loss": float(stats[0] / stats[1]), "lr": out["lr"],
                           "grad_norm": float(out["grad_norm"])}
                    if out["reg"] is not None:
                        rec["reg"] = float(out["reg"])
                    self.log(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{out['lr']:.2e}", refresh=False)
                    self._acc_loss.zero_()
                    self._acc_n = 0
                self._callbacks("on_step_end", out)
                bar.update()
                if end_of_epoch:
                    self.epoch += 1
                    self.step_in_epoch = 0
                if end_of_epoch or self.global_step == stop or (c.eval_every and self.global_step % c.eval_every == 0):
                    self._eval_and_track()
                if end_of_epoch or self.global_step == stop or (c.ckpt_every and self.global_step % c.ckpt_every == 0):
                    self.save("last")
                if end_of_epoch:
                    break  # the next epoch draws its own permutation
        bar.close()

    def _write_summary(self, status: str, message: str | None = None) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "status": status, "name": self.config.name, "epochs": self.epoch, "steps": self.global_step,
            "steps_per_epoch": self.steps_per_epoch, **self.last_eval,
        }
        if status == "completed" and self.config.train.eval_train:
            summary.update(self.evaluate("train"))
        summary.update({
            "best_metric": self.best["metric"], "best_value": self.best["value"], "best_step": self.best["step"],
            "body_lr_scale": self.body_lr_scale,
            "seconds": round(self._elapsed(), 2), "device": _device_name(self.device),
            "world_size": self.world_size, "n_params": sum(p.numel() for p in self.model.parameters()),
            **{f"n_{k}": v for k, v in self.data.sizes().items()},
            "normalization": {"mean": self.data.mean, "std": self.data.std}, "data_files": self.data.files,
        })
        if message:
            summary["message"] = message
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
        return summary


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return str(device)


def train(config: RunConfig | dict[str, Any] | str | Path, resume: bool = False, **kwargs: Any) -> dict[str, Any]:
    """``Trainer(config, **kwargs).fit(resume)``: the summary dict."""
    return Trainer(config, **kwargs).fit(resume=resume)
