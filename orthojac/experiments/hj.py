"""``orthojac hj solve CONFIG [--set key=value ...]``: solve one Hamilton–Jacobi problem (arXiv 2406.10758)
with the least-squares Lax–Friedrichs solver, from a YAML configuration (``configs/hj/*.yaml``).

Writes to the run directory (``output`` in the config, default ``runs/hj/<config name>``): ``config.yaml``
(resolved), ``summary.json`` (per run: MSE, E_∞, seconds, per-round losses, the sampled Lipschitz bound
of H against α), ``model.pt`` (first run's weights) and ``solution.png`` (level sets, error map,
feedback trajectories).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import warnings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hj", help="Hamilton–Jacobi viscosity solutions (least-squares Lax–Friedrichs solver)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    hs = p.add_subparsers(dest="hj_command", metavar="ACTION")
    s = hs.add_parser("solve", help="solve the problem of a YAML config", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("config", help="YAML file, e.g. configs/hj/eikonal_square.yaml")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set runs=3 --set optim.name=adam (repeatable)")
    s.add_argument("--no-plots", action="store_true", help="skip the figure")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_solve)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])


def _finite(obj):
    """NaN/inf → None (JSON null), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def run_solve(args: argparse.Namespace) -> int:
    import torch
    import yaml

    from ..hj.config import load_hj_config, solve_config
    from ..hj.plots import plot_solution
    from ..hj.schemes import MonotonicityWarning

    cfg = load_hj_config(args.config, args.overrides)
    out = cfg.run_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    runs = []
    for r in range(cfg.runs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MonotonicityWarning)
            problem, net, res = solve_config(cfg, r, progress=not args.quiet)
        notes = sorted({str(w.message) for w in caught if issubclass(w.category, MonotonicityWarning)})
        for n in notes:
            print(f"warning: {n}")
        runs.append({**res.as_dict(), "monotonicity_warnings": notes})
        stop = f" stopped: {res.stopped}" if res.stopped else ""
        print(f"run {r + 1}/{cfg.runs}: mse={res.mse:.3e} max_err={res.max_err:.4f} "
              f"final residual={res.rounds[-1].residual:.3e} ({res.seconds:.1f} s){stop}")
        if r == 0:
            torch.save(net.state_dict(), out / "model.pt")
            if cfg.plots and not args.no_plots:
                title = problem.describe() if cfg.name == problem.name else f"{cfg.name}: {problem.describe()}"
                fig = plot_solution(problem, net, out / "solution.png", title=title)
                print(f"figure: {fig}")
    mse, mse_std = _mean_std([r["mse"] for r in runs])
    mx, mx_std = _mean_std([r["max_err"] for r in runs])
    summary = {"name": cfg.name, "problem": cfg.problem.name, "dim": cfg.dim, "runs": cfg.runs,
               "mse": mse, "mse_std": mse_std, "max_err": mx, "max_err_std": mx_std, "per_run": runs}
    summary = _finite(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("problem", "dim", "runs", "mse", "mse_std", "max_err", "max_err_std")}))
    print(f"run directory: {out}")
    return 0
