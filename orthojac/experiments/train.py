"""``orthojac train CONFIG [--resume] [--set key=value ...]``: run one configured training.

Everything goes to the run directory (``output`` in the config, default ``runs/<config name>``):
``config.yaml`` (resolved), ``metrics.jsonl``, ``last.pt``/``best.pt`` checkpoints, ``summary.json``.
Multi-process: ``torchrun --nproc_per_node=P -m orthojac.cli train CONFIG`` (DistributedDataParallel;
``data.batch_size`` is the global batch). Exit codes: 0 done, 2 bad config/data, 3 loss became NaN/Inf.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config (resumable, multi-process with torchrun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML file, e.g. configs/fmnist_mlp_ortho_residual.yaml")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output directory from its last checkpoint (exactly)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=3e-4 --set train.epochs=2 (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import NonFiniteLossError, Trainer, load_config

    config = load_config(args.config, args.overrides)
    trainer = Trainer(config)
    try:
        summary = trainer.fit(resume=args.resume)
    except NonFiniteLossError as e:
        print(f"orthojac train: stopped: {e}", file=sys.stderr)
        return 3
    if trainer.is_main:
        keys = [k for k in ("test_acc", "val_acc", "train_acc", "best_value", "epochs", "steps", "seconds")
                if summary.get(k) is not None]
        print(json.dumps({k: summary[k] for k in keys}))
        print(f"run directory: {config.run_dir}")
    return 0
