"""``orthojac hj solve CONFIG``: the YAML configuration, validated (pydantic v2, unknown keys forbidden).

Example (``configs/hj/eikonal_square.yaml``)::

    problem: {name: eikonal_square, dim: 2}
    model: {arch: mlp, widths: [20]}
    optim: {name: sgd, lr: 0.02, momentum: 0.2}
    solver:
      lam: 1.0
      monotonicity: warn          # warn | error | off
      rounds:
        - {delta: 0.75, alpha: 2.5, points: 60, boundary_points: 20, iterations: 1000}
        - {delta: 0.05, alpha: 0.5, points: 60, boundary_points: 20, iterations: 1000}
    eval: {points: 100000}
    runs: 1
    seed: 0

Every problem becomes one :class:`~orthojac.train.config.ConfigError` (a ValueError) naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..train.config import ConfigError, read_config_mapping
from .problems import DEFAULT_DIMS, PROBLEMS, make_problem
from .solver import Round

__all__ = ["HJConfig", "load_hj_config", "parse_hj_config", "ConfigError", "build_from_config", "solve_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemSection(_Strict):
    name: str
    dim: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ProblemSection:
        if self.name not in PROBLEMS:
            raise ValueError(f"unknown problem {self.name!r}; choose one of {', '.join(PROBLEMS)}")
        make_problem(self.name, self.dim, **self.options)  # constructor checks dim and options
        return self


class ModelSection(_Strict):
    arch: str = "mlp"
    widths: list[int] = Field(default_factory=lambda: [20])
    width: int = Field(32, ge=1)
    depth: int = Field(4, ge=1)
    policy: Literal["init", "exact", "penalty"] = "init"
    n_freq: int = Field(4, ge=0)
    # u = U(the problem's invariant features) (networks.InvariantAnsatz): rotation (the cars, the ball and annulus),
    # signed_permutation (the cube); it must be the problem's own symmetry (Problem.symmetry)
    symmetry: Literal["none", "rotation", "signed_permutation"] = "none"

    @model_validator(mode="after")
    def _arch(self) -> ModelSection:
        from .networks import arch_names

        if self.arch not in arch_names():
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(arch_names())}")
        if self.arch == "mlp" and (not self.widths or min(self.widths) < 1):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {self.widths}")
        return self


class OptimSection(_Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.02, gt=0)
    momentum: float = Field(0.2, ge=0, lt=1)


class RoundSection(_Strict):
    delta: float = Field(gt=0)
    alpha: float = Field(ge=0)
    points: int = Field(ge=1)
    boundary_points: int = Field(ge=0)
    iterations: int = Field(ge=0)
    delta_t: float | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0)
    lr_end: float | None = Field(None, gt=0)
    scheme: Literal["lxf", "llf"] | None = None  # default: solver.scheme


class SolverSection(_Strict):
    lam: float = Field(1.0, ge=0)
    monotonicity: Literal["warn", "error", "off"] = "warn"
    # lxf: the paper's global Lax–Friedrichs viscosity α; llf: local, min(α, |∂H/∂p_i|) (orthojac.hj.schemes)
    scheme: Literal["lxf", "llf"] = "lxf"
    # scheme: fit R_δ[u] = 0 (the method); exact: regress the closed form u* instead (the ansatz's ceiling)
    target: Literal["scheme", "exact"] = "scheme"
    rounds: list[RoundSection] = Field(min_length=1)


class EvalSection(_Strict):
    points: int = Field(100_000, ge=2)


class HJConfig(_Strict):
    name: str = "hj"
    problem: ProblemSection
    model: ModelSection = Field(default_factory=ModelSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    solver: SolverSection
    eval: EvalSection = Field(default_factory=EvalSection)
    runs: int = Field(1, ge=1)
    seed: int = 0
    output: str | None = None
    plots: bool = True
    device: str = "cpu"

    @model_validator(mode="after")
    def _device(self) -> HJConfig:
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}")
        return self

    def torch_device(self) -> str:
        """``auto``: CUDA when available, else the CPU."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    @model_validator(mode="after")
    def _time(self) -> HJConfig:
        if self.problem.name == "time_dependent":
            missing = [i for i, r in enumerate(self.solver.rounds) if r.delta_t is None]
            if missing:
                raise ValueError(f"time_dependent needs delta_t in every round (missing in rounds {missing})")
        return self

    @model_validator(mode="after")
    def _target(self) -> HJConfig:
        p = self.problem
        if self.solver.target == "exact" and not make_problem(p.name, p.dim, **p.options).has_exact:
            raise ValueError(f"solver.target = 'exact' needs a closed-form solution; {p.name!r} has none")
        return self

    @property
    def dim(self) -> int:
        return self.problem.dim or DEFAULT_DIMS[self.problem.name]

    def rounds(self) -> list[Round]:
        return [Round(**{**r.model_dump(), "scheme": r.scheme or self.solver.scheme}) for r in self.solver.rounds]

    @property
    def run_dir(self) -> Path:
        return Path(self.output or f"runs/hj/{self.name}")


def _format(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return f"invalid hj configuration {source}:\n" + "\n".join(lines)


def parse_hj_config(data: dict[str, Any], source: str = "") -> HJConfig:
    """Validate a mapping into an :class:`HJConfig`; raise ConfigError naming each bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid hj configuration {source}: expected a mapping, got {type(data).__name__}")
    try:
        return HJConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source)) from None


def load_hj_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> HJConfig:
    """Read YAML, apply ``--set key=value`` overrides, validate. ``name`` defaults to the file's stem."""
    return parse_hj_config(read_config_mapping(path, overrides), str(path))


def build_from_config(cfg: HJConfig, run: int = 0):
    """(problem, network) of run number ``run`` (network seed = cfg.seed + run)."""
    from .networks import build_ansatz

    problem = make_problem(cfg.problem.name, cfg.problem.dim, **cfg.problem.options)
    m = cfg.model
    if m.symmetry != "none" and m.symmetry != problem.symmetry:
        raise ValueError(f"model.symmetry = {m.symmetry!r} is not a symmetry of {problem.name!r} (its symmetry: "
                         f"{problem.symmetry!r}; rotation: reeds_shepp, pursuit_evasion, eikonal_ball, "
                         f"eikonal_annulus; signed_permutation: eikonal_square, eikonal_cube)")
    features = problem.invariant_features if m.symmetry != "none" else None
    net = build_ansatz(problem.in_dim, m.arch, m.widths, m.width, m.depth, m.policy, problem.periodic, m.n_freq,
                       seed=cfg.seed + run, features=features, n_features=problem.n_invariant)
    return problem, net


def solve_config(cfg: HJConfig, run: int = 0, progress: bool = True, eval_rounds: bool = True):
    """Build and solve run number ``run`` of a configuration: (problem, network, SolveResult)."""
    from .solver import solve

    problem, net = build_from_config(cfg, run)
    result = solve(problem, net, cfg.rounds(), optimizer=cfg.optim.name, lr=cfg.optim.lr,
                   momentum=cfg.optim.momentum, lam=cfg.solver.lam, seed=cfg.seed + run,
                   monotonicity=cfg.solver.monotonicity, eval_points=cfg.eval.points, eval_rounds=eval_rounds,
                   progress=progress, desc=f"{cfg.name} run {run + 1}/{cfg.runs}", device=cfg.torch_device(),
                   target=cfg.solver.target)
    return problem, net, result
