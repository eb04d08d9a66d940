"""The run configuration: YAML → validated, fully resolved :class:`RunConfig` (pydantic v2, unknown keys
forbidden).

Every problem — an unknown key, a value of the wrong type or outside its range, a name that is not one of
the allowed choices — becomes one :class:`ConfigError` (a ``ValueError``) whose message names each bad key
by its dotted path and what is allowed there. ``--set key=value`` overrides (:func:`apply_overrides`) are
parsed as YAML scalars, so ``--set optim.lr=3e-4 --set train.amp=bf16`` work as expected.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..data import DATASET_NAMES

__all__ = ["ConfigError", "ModelConfig", "DataConfig", "OptimConfig", "TrainConfig", "RunConfig", "load_config",
           "parse_config", "apply_overrides", "REGULARIZERS", "register_regularizer"]


class ConfigError(ValueError):
    """A configuration is invalid; the message names every bad key and what is allowed."""


# name → penalty(model) -> scalar tensor; the config's ``regularizers: {name: weight}`` adds weight·penalty
REGULARIZERS: dict[str, Any] = {}


def register_regularizer(name: str, penalty: Any) -> None:
    """Make ``regularizers: {name: weight}`` available in configs (``penalty(model) -> scalar tensor``)."""
    if name in REGULARIZERS:
        raise ValueError(f"regularizer {name!r} is already registered")
    REGULARIZERS[name] = penalty


def _register_builtin() -> None:
    from ..regularizers import orthogonality

    if "orthogonality" not in REGULARIZERS:
        register_regularizer("orthogonality", orthogonality)


_register_builtin()


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, not the string "1e-3"."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``3e-4`` → 0.0003)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 — a SafeLoader subclass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    """Passed to ``orthojac.models.build_model(body, arch, in_shape, num_classes, width, depth, policy, seed,
    **kwargs)``; ``seed`` None means ``train.seed``."""

    body: str = "mlp"
    arch: str
    width: int = Field(128, ge=1)
    depth: int = Field(16, ge=1)
    policy: Literal["init", "exact"] = "init"
    seed: int | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Strict):
    """Which data, how much, how it is split and batched (see :func:`orthojac.data.load_splits`)."""

    dataset: str
    root: str | None = None
    download: bool = False
    verify: bool = True
    n_train: int | None = Field(None, ge=1)
    n_val: int | None = Field(None, ge=0)
    n_test: int | None = Field(None, ge=1)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    seed: int = 0
    normalize: bool = True

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASET_NAMES:
            raise ValueError(f"unknown data set {v!r}; allowed: {', '.join(DATASET_NAMES)}")
        return v


class OptimConfig(_Strict):
    """Optimiser and learning-rate schedule: linear warm-up over ``warmup_steps`` then cosine decay to
    ``lr·min_lr_ratio`` at the last step (``schedule: constant`` keeps lr after warm-up). The parameters of
    ``model.body`` (where depth lives) get ``lr·body_scale(depth)`` (:meth:`body_scale`), the stem and head
    ``lr``."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    body_lr_scale: float | Literal["depth"] = 1.0
    body_lr_ref_depth: int = Field(8, ge=1)

    @field_validator("body_lr_scale")
    @classmethod
    def _body_scale(cls, v: float | str) -> float | str:
        if v != "depth" and not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"must be a positive number or 'depth' (lr·min(1, body_lr_ref_depth/model.depth) "
                             f"for the body), got {v!r}")
        return v

    def body_scale(self, depth: int) -> float:
        """The factor applied to ``lr`` for the parameters of ``model.body``: ``body_lr_scale``, or for
        ``"depth"`` min(1, body_lr_ref_depth / depth) — the learning-rate scaling with depth that makes deep
        feedforward orthogonal-Jacobian bodies train (docs/fmnist_depth.md)."""
        if self.body_lr_scale == "depth":
            return min(1.0, self.body_lr_ref_depth / depth)
        return float(self.body_lr_scale)


class TrainConfig(_Strict):
    """The loop. Steps are optimiser steps; ``eval_every``/``ckpt_every`` in steps (None: at each epoch's end;
    an epoch's end always evaluates and checkpoints). ``max_steps`` stops early (the schedule still spans
    ``epochs``). ``checkpoints: false`` writes no ``last.pt``/``best.pt`` (for sweeps; no resume then).
    ``threads`` sets ``torch.set_num_threads`` (on a shared CPU, 1 is often much faster)."""

    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(None, gt=0.0)
    amp: Literal["off", "bf16", "fp16"] = "off"
    seed: int = 0
    device: str = "auto"
    eval_every: int | None = Field(None, ge=1)
    ckpt_every: int | None = Field(None, ge=1)
    log_every: int = Field(50, ge=1)
    eval_train: bool = True
    progress: bool = True
    tensorboard: bool = True
    best_metric: Literal["val_acc", "test_acc", "val_loss", "test_loss"] = "val_acc"
    checkpoints: bool = True
    threads: int | None = Field(None, ge=1)
    ddp_find_unused: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"):
            return v
        raise ValueError(f"device {v!r} unknown; allowed: auto, cpu, cuda, cuda:N, mps")


class RunConfig(_Strict):
    """A whole run. ``output`` is the run directory (default ``runs/<name>``)."""

    name: str = "run"
    output: str | None = None
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    regularizers: dict[str, float] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("regularizers")
    @classmethod
    def _regs(cls, v: dict[str, float]) -> dict[str, float]:
        for k, w in v.items():
            if k not in REGULARIZERS:
                raise ValueError(f"unknown regularizer {k!r}; allowed: {', '.join(sorted(REGULARIZERS))}")
            if w < 0:
                raise ValueError(f"regularizer weight for {k!r} must be ≥ 0, got {w}")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> RunConfig:
        if self.output is None:
            self.output = str(Path("runs") / self.name)
        if self.model.seed is None:
            self.model.seed = self.train.seed
        if self.train.best_metric.startswith("val") and self.data.val_fraction == 0:
            self.train.best_metric = "test_acc" if self.train.best_metric == "val_acc" else "test_loss"
        return self

    @property
    def run_dir(self) -> Path:
        return Path(str(self.output))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the sub-model at ``loc[:-1]`` (for 'unknown key' messages)."""
    cur: Any = model
    for part in loc[:-1]:
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return None
        cur = fields[part].annotation
    fields = getattr(cur, "model_fields", None)
    return sorted(fields) if fields else None


def _format(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(RunConfig, loc)
            lines.append(f"{key}: unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
        elif err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg} (got {err.get('input')!r})")
    return f"invalid configuration {source}:\n  " + "\n  ".join(lines)


def parse_config(data: dict[str, Any], source: str = "") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`; raise :class:`ConfigError` naming every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration {source}: expected a mapping at the top level, got "
                          f"{type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``data`` with each ``"a.b.c=value"`` applied (value parsed as YAML)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. optim.lr=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        cur = out
        for p in parts[:-1]:
            nxt = cur.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p!r} is a value, not a section")
            cur = nxt
        cur[parts[-1]] = yaml_load(raw) if raw.strip() else None
    return out


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML file, apply ``--set`` overrides, validate. ``name`` defaults to the file's stem."""
    path = Path(path)
    try:
        data = yaml_load(path.read_text()) or {}
    except OSError as e:
        raise FileNotFoundError(f"cannot read config {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return parse_config(apply_overrides(data, overrides), str(path))
