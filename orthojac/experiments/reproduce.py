"""``orthojac reproduce NAME [--quick|--full]``: one runner per published figure/table.

Each runner module provides ``add_arguments(parser)`` and ``run(args) -> int``; register it in
:data:`RUNNERS` (name → (module, help)). ``--quick`` (default) fits in ≤ 15 minutes on 2 CPU cores;
``--full`` is for an accelerator. Every runner writes CSV under ``results/`` (Markdown generated from it)
and figures under ``docs/figures/`` unless told otherwise.
"""

from __future__ import annotations

import argparse
import importlib

RUNNERS: dict[str, tuple[str, str]] = {
    "isometry": ("orthojac.experiments.isometry", "Jacobian spectrum and gradient ratio vs depth at init"),
    "fmnist-depth": ("orthojac.experiments.fmnist_depth",
                     "Fashion-MNIST accuracy vs depth (8…200; 500, 1000 with --full): orthogonal-Jacobian "
                     "MLP and conv bodies against ResNet and plain ReLU"),
    "pso": ("orthojac.experiments.pso", "persistent subspace orthogonality: gradient flow and training"),
    "limit": ("orthojac.experiments.limit", "limit layers: singular values within [1−ε, 1+ε], accuracy"),
    "haber-ruthotto": ("orthojac.experiments.haber_ruthotto",
                       "Haber & Ruthotto stable architectures: Figs. 1-6, Table 1"),
    "hj": ("orthojac.experiments.hj_reproduce",
           "Hamilton–Jacobi viscosity solutions (arXiv 2406.10758): eikonal, time-dependent, car problems"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce a published figure or table (quick or full mode)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runners = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for name, (module, help_line) in RUNNERS.items():
        mod = importlib.import_module(module)
        rp = runners.add_parser(name, help=help_line, description=mod.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        mode = rp.add_mutually_exclusive_group()
        mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                          help="small version: ≤ 15 minutes on 2 CPU cores (default)")
        mode.add_argument("--full", dest="mode", action="store_const", const="full",
                          help="the full experiment (meant for an accelerator)")
        rp.set_defaults(mode="quick")
        mod.add_arguments(rp)
        rp.set_defaults(func=mod.run)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])
