"""Training: one :class:`Trainer` for every experiment, its validated configuration and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import (
    REGULARIZERS,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    load_config,
    parse_config,
    register_regularizer,
)
from .trainer import (
    Callback,
    NonFiniteLossError,
    Trainer,
    build_optimizer,
    build_scheduler,
    epoch_permutation,
    lr_factor,
    param_groups,
    train,
)

__all__ = ["Trainer", "Callback", "NonFiniteLossError", "train", "RunConfig", "ModelConfig", "DataConfig",
           "OptimConfig", "TrainConfig", "ConfigError", "load_config", "parse_config", "apply_overrides",
           "REGULARIZERS", "register_regularizer", "save_checkpoint", "load_checkpoint", "build_optimizer",
           "build_scheduler", "lr_factor", "epoch_permutation",
           "param_groups"]
