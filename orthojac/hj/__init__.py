"""Hamilton–Jacobi viscosity solutions with deep networks: the least-squares Lax–Friedrichs solver of
arXiv 2406.10758 (Esteve-Yagüe, Tsai, Massucco). See ``docs/hj.md``.

``problems`` (test problems, exact solutions, samplers) → ``schemes`` (the off-grid Lax–Friedrichs residual
and its monotonicity check) → ``solver`` (least-squares loss, re-sampling, δ/α continuation) →
``config`` (validated YAML) → ``plots``/``control`` (level sets, error maps, feedback trajectories).
"""

from .hamiltonians import Hamiltonian, NormEikonal, PursuitEvasion, QuadraticEikonal, ReedsShepp
from .networks import MLP, FourierPeriodic, arch_label, build_ansatz
from .problems import PROBLEMS, Problem, make_problem
from .schemes import SCHEMES, MonotonicityWarning, check_monotonicity, fd_residual, lax_friedrichs, stencil_values
from .solver import Round, RoundResult, SolveResult, evaluate, solve, zero_mse

__all__ = [
    "Hamiltonian", "QuadraticEikonal", "NormEikonal", "ReedsShepp", "PursuitEvasion",
    "MLP", "FourierPeriodic", "build_ansatz", "arch_label",
    "PROBLEMS", "Problem", "make_problem",
    "MonotonicityWarning", "SCHEMES", "check_monotonicity", "fd_residual", "lax_friedrichs", "stencil_values",
    "Round", "RoundResult", "SolveResult", "evaluate", "solve", "zero_mse",
]
