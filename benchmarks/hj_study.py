"""One Hamilton–Jacobi solve with overrides, one line of results: the command behind the sampling/optimizer
comparisons quoted in docs/hj.md.

    python benchmarks/hj_study.py CONFIG [iters=a,b,c,d] [key=value ...]

CONFIG names a file of configs/hj/ (without .yaml); ``iters`` replaces the per-round step counts;
``round.KEY=v1,v2,...`` sets a round field per round (e.g. ``round.lr_end=,,,1e-4``: empty keeps the config's;
``round.scheme=lxf,llf,llf,llf``; fewer values than rounds drop the remaining rounds); the other arguments are
``--set`` overrides (e.g. optim.name=adam optim.lr=0.001 problem.options.sampling=mixed).
Errors are measured on 2·10⁵ held-out volume-uniform points plus the origin. One thread.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from orthojac.hj.config import HJConfig, load_hj_config, solve_config

_ROUND_FIELDS = {"iterations": int, "points": int, "boundary_points": int, "scheme": str}  # the rest are floats


def study_config(name: str, args: list[str]) -> HJConfig:
    """configs/hj/NAME.yaml with the study's arguments applied: ``iters=a,b,…`` (per-round steps),
    ``round.KEY=v1,v2,…`` (per-round fields; fewer values drop the remaining rounds, empty keeps the config's)
    and the rest as ``--set`` overrides."""
    iters = None
    overrides = []
    per_round: dict[str, list[str]] = {}
    for o in args:
        if o.startswith("iters="):
            iters = [int(v) for v in o[len("iters="):].split(",")]
        elif o.startswith("round."):
            k, v = o[len("round."):].split("=", 1)
            per_round[k] = v.split(",")
        else:
            overrides.append(o)
    cfg = load_hj_config(f"configs/hj/{name}.yaml", overrides)
    if iters:
        if len(iters) != len(cfg.solver.rounds):
            raise SystemExit(f"iters: {len(iters)} values for {len(cfg.solver.rounds)} rounds")
        for r, n in zip(cfg.solver.rounds, iters):
            r.iterations = n
    for k, vals in per_round.items():
        del cfg.solver.rounds[len(vals):]
        for r, v in zip(cfg.solver.rounds, vals):
            if v:
                setattr(r, k, _ROUND_FIELDS.get(k, float)(v))
    return cfg


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(__doc__)
    name, *rest = argv
    if not (Path("configs/hj") / f"{name}.yaml").exists():
        known = sorted(p.stem for p in Path("configs/hj").glob("*.yaml"))
        raise SystemExit(f"hj_study: no config configs/hj/{name}.yaml; choose one of {known}")
    cfg = study_config(name, rest)
    cfg.eval.points = 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, res = solve_config(cfg, progress=False)
    print(name, " ".join(rest), f"MSE {res.mse:.4g} max {res.max_err:.4g} cpu {res.cpu_seconds:.0f}s "
          f"wall {res.seconds:.0f}s", "per round (MSE/E∞/residual/boundary misfit/exact solution's residual):",
          [f"{r.mse:.3g}/{r.max_err:.3g}/{r.residual:.3g}/{r.boundary:.3g}/{r.exact_residual:.3g}" for r in res.rounds],
          flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1:])
