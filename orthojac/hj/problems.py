r"""The test problems of arXiv 2406.10758 (notes §3), each with its domain, samplers and (where known) exact
solution. Build one by name with :func:`make_problem`; the names are the ``problem`` column of
``results/hj.csv``.

========================  ==================================================================================
name                      problem
========================  ==================================================================================
``eikonal_square``        |∇u|² = 1 in (−3, 3)², u = 0 on ∂Ω; u = 3 − ‖x‖_∞                          (P1)
``eikonal_cube``          the same in (−3, 3)^d                                                          (P2)
``eikonal_ball``          |∇u|² = 1 in |x| < 6, u = 0 on |x| = 6; u = 6 − |x|                            (P3)
``eikonal_annulus``       |∇u|² = 1 in 2 < |x| < 6, u = 0 on both spheres; u = min(|x| − 2, 6 − |x|)    (P4)
``nonhomogeneous``        |∇u|² = 1 − 0.8 cos x₁ in the square or the ball of radius 6, u = 0; no closed form (P5a,b)
``incompatible_boundary`` |∇u|² = 1 in (−3, 3)², g = 2(3 − |x₂|) on x₁ = −3, 3 − |x₂| on x₁ = 3, 0 elsewhere;
                          u(x) = min_{y∈∂Ω} (g(y) + |x − y|), the exit-time value, below g where g is steeper
                          than 1 (the boundary condition holds only in the viscosity sense)       (P5, script)
``time_dependent``        u_t + ½|∇u|² = −½|x|² on (0, T] × (−3, 3)^d, u(0, x) = ½(xᵀAx − 1),
                          A = diag(4/25, 1, …, 1), T = 0.5; u = ½(xᵀP(t)x − 1), P' = −P² − I, so
                          P_ii(t) = tan(arctan(a_i) − t) (Riccati closed form)                        (P6)
``reeds_shepp``           minimum time of a Reeds–Shepp car to the disk |x| ≤ 0.2, state (x, y, θ)        (P7)
``pursuit_evasion``       capture time of a two-car Reeds–Shepp game, state (z_x, z_y, θ_P, θ_E)           (P8)
========================  ==================================================================================

Samplers follow the authors (notes §2.4): interior points of balls/annuli lie in the shell shrunk by δ so
the stencil stays inside, cube points in the cube shrunk by δ (the authors' stored ``PointSampling/Cube.py``;
the notes' "full cube" is the ``sampling: full`` option); boundary points are uniform on ∂Ω (spheres
picked with probability ∝ radius). Test points for the errors are uniform in volume, plus the origin
(where the ball's kink is), as in the authors' ``error_test``.
"""

from __future__ import annotations

import math

import torch

from . import sampling
from .hamiltonians import Hamiltonian, PursuitEvasion, QuadraticEikonal, ReedsShepp
from .schemes import fd_residual

__all__ = ["Problem", "EikonalCube", "EikonalBall", "EikonalAnnulus", "NonHomogeneous", "IncompatibleBoundary",
           "TimeDependentLQR", "ReedsSheppCar", "TwoCarGame", "PROBLEMS", "make_problem"]

Boundary = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # points, values g, weights


class Problem:
    """A Hamilton–Jacobi problem ``H(x, ∇u) + βu = f`` (or ``u_t + H = f``) with boundary/initial data.

    Attributes: ``name``, ``dim`` (space dimension), ``in_dim`` (network input size), ``hamiltonian``,
    ``stencil_dims`` (coordinates with LxF stencils), ``periodic`` (angle coordinates, period 2π),
    ``time_dim`` (None for stationary problems), ``beta``, ``has_exact``."""

    name = "problem"
    dim = 2
    hamiltonian: Hamiltonian
    periodic: tuple[int, ...] = ()
    time_dim: int | None = None
    beta = 0.0
    has_exact = False
    plot_axes = (0, 1)
    plot_labels = ("$x_1$", "$x_2$")

    @property
    def in_dim(self) -> int:
        return self.dim + (1 if self.time_dim is not None else 0)

    @property
    def stencil_dims(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.in_dim) if i != self.time_dim)

    #: the problem's symmetry group, as ``model.symmetry`` names it: ``"rotation"`` (the cars: rotations of
    #: the plane; the ball and annulus: O(d)), ``"signed_permutation"`` (the cube: permutations and sign
    #: changes of the coordinates), or ``"none"``
    symmetry = "none"
    #: number of invariant features (:meth:`invariant_features`); 0 when the problem has none
    n_invariant = 0

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates of the state that the solution depends on alone, by the problem's :attr:`symmetry`
        (a maximal invariant: two states with equal features are images of each other). Only problems with
        ``n_invariant > 0`` define them."""
        raise ValueError(f"problem {self.name!r} has no invariant features (model.symmetry must be 'none')")

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x[:, 0])

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no closed-form solution")

    def sample_interior(self, n: int, delta: float, g: torch.Generator, delta_t: float | None = None) -> torch.Tensor:
        raise NotImplementedError

    def sample_boundary(self, n: int, g: torch.Generator) -> Boundary:
        raise NotImplementedError

    def sample_test(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n − 1 volume-uniform points of the domain and the origin."""
        raise NotImplementedError

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the rows of x that lie in the domain (for plots)."""
        return torch.ones(len(x), dtype=torch.bool)

    def residual(self, u, x: torch.Tensor, delta: float, alpha: float,
                 delta_t: float | None = None, scheme: str = "lxf") -> tuple[torch.Tensor, torch.Tensor]:
        """The (global or local, ``scheme``) Lax–Friedrichs residual R_δ[u] at the rows of x and the central
        differences p (:func:`orthojac.hj.schemes.fd_residual`)."""
        return fd_residual(u, x, self.hamiltonian, self.f, delta, alpha, self.stencil_dims, beta=self.beta,
                           periodic=self.periodic, time_dim=self.time_dim, delta_t=delta_t, scheme=scheme)

    def plot_slice(self, n: int) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
        """An n×n grid of the 2-D slice shown in plots (other coordinates at :meth:`slice_base`), as
        (points (n², in_dim), extent)."""
        lo, hi = self.extent()
        a, b = self.plot_axes
        s = torch.linspace(lo, hi, n)
        xx, yy = torch.meshgrid(s, s, indexing="xy")
        pts = self.slice_base().repeat(n * n, 1)
        pts[:, a], pts[:, b] = xx.reshape(-1), yy.reshape(-1)
        return pts, (lo, hi, lo, hi)

    def slice_base(self) -> torch.Tensor:
        return torch.zeros(1, self.in_dim)

    def extent(self) -> tuple[float, float]:
        return (-3.0, 3.0)

    def describe(self) -> str:
        return f"{self.name} (d = {self.dim})"


def _check_dim(dim: int, lo: int = 1) -> int:
    if not isinstance(dim, int) or dim < lo:
        raise ValueError(f"dim must be an integer ≥ {lo}, got {dim!r}")
    return dim


class EikonalCube(Problem):
    """|∇u|² = f in (−h, h)^d, u = 0 on the boundary; for f = 1, u = h − ‖x‖_∞ (notes P1, P2).

    ``sampling`` of the interior points: ``"full"`` — uniform in the whole cube (stencils may poke out by δ);
    ``"shrunk"`` — uniform in (−(h − δ), h − δ)^d, as the authors' ``data_gen_cube.rand_int_points``;
    ``"radial"`` — the cube's analogue of the ball's radial law: ‖x‖_∞ ~ U[0, h − δ] times a point uniform
    on the unit cube's surface, so the centre, where the 2d pyramid faces of u meet and the top value h sits,
    is visited as often as the rim (volume-uniform points reach ‖x‖_∞ < h/2 with probability 2^{−d});
    ``"mixed"``: half ``shrunk``, half ``radial``."""

    has_exact = True
    SAMPLINGS = ("full", "shrunk", "radial", "mixed")
    symmetry = "signed_permutation"

    def __init__(self, dim: int = 2, half: float = 3.0, sampling: str = "shrunk") -> None:
        if sampling not in self.SAMPLINGS:
            raise ValueError(f"cube sampling must be one of {self.SAMPLINGS}, got {sampling!r}")
        self.dim, self.half, self.sampling = _check_dim(dim), float(half), sampling
        self.name = "eikonal_square" if dim == 2 else "eikonal_cube"
        self.hamiltonian = QuadraticEikonal()

    @property
    def n_invariant(self) -> int:  # one sorted |x_i| per coordinate
        return self.dim

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        """|x_i| sorted in decreasing order: the orbit of x under the d!·2^d signed permutations, which map the
        cube, f = 1 and g = 0 to themselves. u* = h − (first feature) is linear in them."""
        return x.abs().sort(dim=-1, descending=True).values

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return self.half - x.abs().amax(1)

    def sample_interior(self, n, delta, g, delta_t=None):
        if self.sampling == "full":
            return sampling.cube(n, self.dim, self.half, g)
        inner = max(self.half - delta, 0.0)
        m = {"shrunk": 0, "radial": n, "mixed": n // 2}[self.sampling]
        x = sampling.cube(n - m, self.dim, inner, g)
        if m:
            r = torch.rand(m, 1, generator=g) * inner
            x = torch.cat([x, r * sampling.cube_faces(m, self.dim, 1.0, g)])
        return x

    def sample_boundary(self, n, g):
        y = sampling.cube_faces(n, self.dim, self.half, g)
        return y, torch.zeros(n), torch.ones(n)

    def sample_test(self, n, g):
        return torch.cat([torch.zeros(1, self.dim), sampling.cube(n - 1, self.dim, self.half, g)])

    def inside(self, x):
        return x.abs().amax(1) < self.half

    def extent(self):
        return (-self.half, self.half)


class EikonalBall(Problem):
    """|∇u|² = 1 in |x| < R, u = 0 on |x| = R; u = R − |x| (notes P3). ``sampling``: "radial" (authors'
    "Rad.") or "uniform" (in volume) for the interior points."""

    has_exact = True
    name = "eikonal_ball"

    def __init__(self, dim: int = 2, radius: float = 6.0, sampling: str = "radial") -> None:
        if sampling not in sampling_names():
            raise ValueError(f"sampling must be one of {sampling_names()}, got {sampling!r}")
        self.dim, self.radius, self.sampling = _check_dim(dim), float(radius), sampling
        self.hamiltonian = QuadraticEikonal()

    symmetry, n_invariant = "rotation", 1

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        """|x| (as a column): the orbit of x under O(d)."""
        return x.norm(dim=-1, keepdim=True)

    def exact(self, x):
        return self.radius - x.norm(dim=1)

    def sample_interior(self, n, delta, g, delta_t=None):
        return sampling.shell(n, self.dim, 0.0, self.radius - delta, g, self.sampling)

    def sample_boundary(self, n, g):
        return sampling.sphere(n, self.dim, self.radius, g), torch.zeros(n), torch.ones(n)

    def sample_test(self, n, g):
        return torch.cat([torch.zeros(1, self.dim), sampling.shell(n - 1, self.dim, 0.0, self.radius, g, "uniform")])

    def inside(self, x):
        return x.norm(dim=1) < self.radius

    def extent(self):
        return (-self.radius, self.radius)


class EikonalAnnulus(Problem):
    """|∇u|² = 1 in r₀ < |x| < r₁, u = 0 on both spheres; u = min(|x| − r₀, r₁ − |x|) (notes P4).

    ``near_boundary`` ∈ [0, 1): that fraction of the interior points is drawn within ``band`` of either
    sphere (an option for the d = 10 accuracy study; 0 = the authors' sampling)."""

    has_exact = True
    name = "eikonal_annulus"

    def __init__(self, dim: int = 2, r_in: float = 2.0, r_out: float = 6.0, sampling: str = "radial",
                 near_boundary: float = 0.0, band: float = 0.5) -> None:
        if sampling not in sampling_names():
            raise ValueError(f"sampling must be one of {sampling_names()}, got {sampling!r}")
        if not 0 <= near_boundary < 1:
            raise ValueError(f"near_boundary must be in [0, 1), got {near_boundary}")
        if not 0 < r_in < r_out:
            raise ValueError(f"need 0 < r_in < r_out, got r_in={r_in}, r_out={r_out}")
        self.dim, self.r_in, self.r_out, self.sampling = _check_dim(dim), float(r_in), float(r_out), sampling
        self.near_boundary, self.band = float(near_boundary), float(band)
        self.hamiltonian = QuadraticEikonal()

    symmetry, n_invariant = "rotation", 1
    invariant_features = EikonalBall.invariant_features

    def exact(self, x):
        r = x.norm(dim=1)
        return torch.minimum(r - self.r_in, self.r_out - r)

    def sample_interior(self, n, delta, g, delta_t=None):
        lo, hi = self.r_in + delta, self.r_out - delta
        m = int(round(n * self.near_boundary))
        x = sampling.shell(n - m, self.dim, lo, hi, g, self.sampling)
        if m:
            inner = sampling.shell(m, self.dim, lo, min(hi, lo + self.band), g, "radial")
            outer = sampling.shell(m, self.dim, max(lo, hi - self.band), hi, g, "radial")
            pick = torch.rand(m, 1, generator=g) < 0.5
            x = torch.cat([x, torch.where(pick, inner, outer)])
        return x

    def sample_boundary(self, n, g):
        y, _ = sampling.spheres(n, self.dim, (self.r_in, self.r_out), (self.r_in, self.r_out), g)
        return y, torch.zeros(n), torch.ones(n)

    def sample_test(self, n, g):
        pts = sampling.shell(n, self.dim, self.r_in, self.r_out, g, "uniform")
        return pts

    def inside(self, x):
        r = x.norm(dim=1)
        return (r > self.r_in) & (r < self.r_out)

    def extent(self):
        return (-self.r_out, self.r_out)


class NonHomogeneous(Problem):
    """|∇u|² = 1 − 0.8 cos x₁ in the square (−3, 3)² or the ball of radius 6, u = 0 (notes P5 a, b)."""

    name = "nonhomogeneous"

    def __init__(self, dim: int = 2, domain: str = "square") -> None:
        if domain not in ("square", "ball"):
            raise ValueError(f"nonhomogeneous: domain must be 'square' or 'ball', got {domain!r}")
        self.dim, self.domain = _check_dim(dim), domain
        self.inner = EikonalCube(dim) if domain == "square" else EikonalBall(dim)
        self.hamiltonian = QuadraticEikonal()

    def f(self, x):
        return 1.0 - 0.8 * torch.cos(x[:, 0])

    def sample_interior(self, n, delta, g, delta_t=None):
        return self.inner.sample_interior(n, delta, g)

    def sample_boundary(self, n, g):
        return self.inner.sample_boundary(n, g)

    def sample_test(self, n, g):
        return self.inner.sample_test(n, g)

    def inside(self, x):
        return self.inner.inside(x)

    def extent(self):
        return self.inner.extent()


class IncompatibleBoundary(Problem):
    """|∇u|² = 1 in (−3, 3)² with g = 2(3 − |x₂|) on x₁ = −3, g = 3 − |x₂| on x₁ = 3, g = 0 on x₂ = ±3 (the
    authors' ``main_incompatible_boundary.py``). The viscosity solution is the exit-time value
    u(x) = min_{y ∈ ∂Ω} (g(y) + |x − y|) (Ω is convex), computed here over 4·``n_ref`` boundary points; on the
    left side g is steeper than 1, so u < g there (the boundary condition holds in the viscosity sense)."""

    name = "incompatible_boundary"
    has_exact = True

    def __init__(self, dim: int = 2, n_ref: int = 2000) -> None:
        if dim != 2:
            raise ValueError(f"incompatible_boundary is 2-D only, got dim={dim}")
        self.dim, self.half = 2, 3.0
        self.hamiltonian = QuadraticEikonal()
        s = torch.linspace(-3.0, 3.0, n_ref, dtype=torch.float64)
        one = torch.ones_like(s)
        ys = torch.cat([torch.stack([-3 * one, s], 1), torch.stack([3 * one, s], 1),
                        torch.stack([s, -3 * one], 1), torch.stack([s, 3 * one], 1)])
        self._ref_y, self._ref_g = ys, self.g(ys)

    def g(self, y: torch.Tensor) -> torch.Tensor:
        left = 2 * (3 - y[:, 1].abs())
        right = 3 - y[:, 1].abs()
        out = torch.zeros_like(y[:, 0])
        out = torch.where(y[:, 0] <= -3 + 1e-9, left, out)
        out = torch.where(y[:, 0] >= 3 - 1e-9, right, out)
        return out

    def exact(self, x):
        out = []
        ref_y, ref_g = self._ref_y.to(x.device), self._ref_g.to(x.device)
        for chunk in x.to(torch.float64).split(4096):
            out.append((torch.cdist(chunk, ref_y) + ref_g).amin(1))
        return torch.cat(out).to(x.dtype)

    def sample_interior(self, n, delta, g, delta_t=None):
        return sampling.cube(n, 2, self.half, g)

    def sample_boundary(self, n, g):
        y = sampling.cube_faces(n, 2, self.half, g)
        return y, self.g(y), torch.ones(n)

    def sample_test(self, n, g):
        return sampling.cube(n, 2, self.half, g)

    def inside(self, x):
        return x.abs().amax(1) < self.half


class TimeDependentLQR(Problem):
    r"""u_t + ½|∇_x u|² = −½|x|² on (0, T] × (−h, h)^d, u(0, x) = ½(xᵀAx − 1) (notes P6). Input (t, x),
    time in column 0. Exact: u = ½(Σ_i P_i(t) x_i² − 1), P_i(t) = tan(arctan(a_i) − t), from
    P' = −P² − I (substitute u into the equation). Interior points: t ~ U[0, T − δ_t] (explicit Euler
    stencil t + δ_t stays ≤ T), x ~ U[−(h − δ), h − δ]^d; "boundary" points: t = 0, x ~ U[−h, h]^d."""

    name = "time_dependent"
    time_dim = 0
    has_exact = True
    plot_axes = (1, 2)

    def __init__(self, dim: int = 2, horizon: float = 0.5, half: float = 3.0) -> None:
        self.dim, self.horizon, self.half = _check_dim(dim), float(horizon), float(half)
        if self.horizon >= math.atan(4 / 25) + math.pi / 2:
            raise ValueError("horizon too long: the Riccati solution blows up")
        self.a = torch.tensor([4 / 25] + [1.0] * (dim - 1), dtype=torch.float64)
        self.hamiltonian = QuadraticEikonal(0.5)

    def f(self, x):
        return -0.5 * (x[:, 1:] ** 2).sum(1)

    def riccati(self, t: torch.Tensor) -> torch.Tensor:
        """P_i(t) = tan(arctan(a_i) − t), shape (len(t), d)."""
        return torch.tan(torch.atan(self.a).to(t) - t.reshape(-1, 1))

    def exact(self, x):
        p = self.riccati(x[:, 0])
        return 0.5 * ((p * x[:, 1:] ** 2).sum(1) - 1)

    def sample_interior(self, n, delta, g, delta_t=None):
        if delta_t is None:
            raise ValueError("time_dependent needs delta_t in every round")
        t = torch.rand(n, 1, generator=g) * (self.horizon - delta_t)
        return torch.cat([t, sampling.cube(n, self.dim, self.half - delta, g)], 1)

    def sample_boundary(self, n, g):
        x = sampling.cube(n, self.dim, self.half, g)
        y = torch.cat([torch.zeros(n, 1), x], 1)
        return y, self.exact(y), torch.ones(n)

    def sample_test(self, n, g):
        t = torch.rand(n, 1, generator=g) * self.horizon
        return torch.cat([t, sampling.cube(n, self.dim, self.half, g)], 1)

    def inside(self, x):
        return x[:, 1:].abs().amax(1) < self.half

    def slice_base(self):
        base = torch.zeros(1, self.in_dim)
        base[0, 0] = self.horizon
        return base


def _two_circle_boundary(n: int, m: int, r_inner: float, r_outer: float, outer_value: float, w_inner: float,
                         w_outer: float, angles: int, g: torch.Generator | None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boundary points of the car problems' planar annulus × angle torus: m on |z| = r_inner with u = 0 and
    n − m on |z| = r_outer with u = ``outer_value``, then ``angles`` periodic coordinates uniform in [0, 2π).
    Each circle's misfit is averaged on its own and weighted: per-point weights w_inner·n/m and w_outer·n/(n − m)
    in the solver's single mean over all n points (the authors' per-group means)."""
    r = torch.cat([torch.full((m,), r_inner), torch.full((n - m,), r_outer)])
    z = sampling.sphere(n, 2, r, g)
    th = torch.rand(n, angles, generator=g) * 2 * math.pi
    vals = torch.cat([torch.zeros(m), torch.full((n - m,), outer_value)])
    w = torch.cat([torch.full((m,), w_inner * n / max(m, 1)), torch.full((n - m,), w_outer * n / max(n - m, 1))])
    return torch.cat([z, th], 1), vals, w


class ReedsSheppCar(Problem):
    r"""Minimum time of a Reeds–Shepp car (turning radius ρ, unit speed forwards or backwards) to the disk
    |(x, y)| ≤ r_target (notes P7): H(x, ∇u) = 1 with :class:`~orthojac.hj.hamiltonians.ReedsShepp`, u = 0 on
    the target circle and u = ``outer_value`` on |(x, y)| = R (the authors' truncation of the domain). θ is
    periodic. Boundary points: ``target_fraction`` on the target, the rest on the outer circle; as in the
    authors' ``train_Car_target`` each group's misfit is averaged on its own and weighted by ``target_weight``
    (λ_target = 2) and ``outer_weight`` (λ_edges = 1): per-point weights λ_target·n/m and λ_edges·n/(n − m) in the
    solver's single mean over the n = m + (n − m) points (a plain mean with weights 2 and 1 would give the outer
    circle, 20% of the points, 5× less weight than the authors do). No closed form: validated by the time
    feedback trajectories take (:mod:`orthojac.hj.control`)."""

    name = "reeds_shepp"
    periodic = (2,)
    plot_labels = ("$x$", "$y$")
    symmetry, n_invariant = "rotation", 2

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        r"""The target in the car's frame, ``w = R(−θ)(x, y)`` (N, 2): rotating the plane by β maps
        (x, y, θ) to (R_β(x, y), θ + β) and leaves the dynamics, the two circles and so u unchanged, so
        u(x, y, θ) = U(R(−θ)(x, y)) for a function U of two variables (2π-periodic in θ by construction)."""
        return _rotate(x[:, :2], -x[:, 2])

    def __init__(self, dim: int = 3, rho: float = 1.0, r_target: float = 0.2, radius: float = 5.0,
                 outer_value: float = 4.0, target_fraction: float = 0.8, target_weight: float = 2.0,
                 outer_weight: float = 1.0) -> None:
        if dim != 3:
            raise ValueError(f"reeds_shepp has state (x, y, θ): dim must be 3, got {dim}")
        self.dim, self.r_target, self.radius, self.outer_value = 3, r_target, radius, outer_value
        if not 0 < target_fraction < 1:
            raise ValueError(f"target_fraction must be in (0, 1), got {target_fraction}")
        self.target_fraction, self.target_weight, self.outer_weight = target_fraction, target_weight, outer_weight
        self.hamiltonian = ReedsShepp(rho)

    def sample_interior(self, n, delta, g, delta_t=None):
        xy = sampling.shell(n, 2, self.r_target + delta, self.radius, g, "radial")
        th = torch.rand(n, 1, generator=g) * 2 * math.pi
        return torch.cat([xy, th], 1)

    def sample_boundary(self, n, g):
        return _two_circle_boundary(n, int(round(n * self.target_fraction)), self.r_target, self.radius,
                                    self.outer_value, self.target_weight, self.outer_weight, 1, g)

    def sample_test(self, n, g):
        xy = sampling.shell(n, 2, self.r_target, self.radius, g, "uniform")
        return torch.cat([xy, torch.rand(n, 1, generator=g) * 2 * math.pi], 1)

    def inside(self, x):
        r = x[:, :2].norm(dim=1)
        return (r > self.r_target) & (r < self.radius)

    def slice_base(self):
        return torch.tensor([[0.0, 0.0, math.pi / 2]])

    def extent(self):
        return (-self.radius, self.radius)


class TwoCarGame(Problem):
    r"""Two-car Reeds–Shepp pursuit–evasion (notes P8): state (z_x, z_y, θ_P, θ_E), z = evader − pursuer;
    H(x, ∇u) = 1 with :class:`~orthojac.hj.hamiltonians.PursuitEvasion`; u = 0 on the capture circle
    |z| = r_capture, u = ``escape_value`` on |z| = r_escape. Interior |z| radially uniform in
    [r_capture + δ, r_escape − δ], angles uniform; boundary points half on each circle, each half's misfit
    averaged on its own with weight 1 (the authors' ``train_two_car_game``)."""

    name = "pursuit_evasion"
    periodic = (2, 3)
    plot_labels = ("$z_x$", "$z_y$")
    symmetry, n_invariant = "rotation", 4

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        r"""The game in the pursuer's frame: (w, cos φ, sin φ) (N, 4) with ``w = R(−θ_P) z`` and
        ``φ = θ_E − θ_P``. Rotating the plane by β maps (z, θ_P, θ_E) to (R_β z, θ_P + β, θ_E + β) and leaves
        the dynamics ż = σ_E s_E e(θ_E) − σ_P s_P e(θ_P) (e(θ + β) = R_β e(θ)), the capture and escape circles
        and so the value unchanged: u(z, θ_P, θ_E) = U(R(−θ_P) z, θ_E − θ_P), a function of three variables,
        2π-periodic in both angles by construction."""
        phi = x[:, 3] - x[:, 2]
        return torch.cat([_rotate(x[:, :2], -x[:, 2]), torch.cos(phi)[:, None], torch.sin(phi)[:, None]], 1)

    def __init__(self, dim: int = 4, rho: tuple[float, float] = (0.8, 1.0), sigma: tuple[float, float] = (1.0, 0.8),
                 r_capture: float = 0.2, r_escape: float = 4.0, escape_value: float = 10.0) -> None:
        if dim != 4:
            raise ValueError(f"pursuit_evasion has state (z_x, z_y, θ_P, θ_E): dim must be 4, got {dim}")
        self.dim, self.r_capture, self.r_escape, self.escape_value = 4, r_capture, r_escape, escape_value
        self.hamiltonian = PursuitEvasion(rho, sigma)

    def sample_interior(self, n, delta, g, delta_t=None):
        z = sampling.shell(n, 2, self.r_capture + delta, self.r_escape - delta, g, "radial")
        return torch.cat([z, torch.rand(n, 2, generator=g) * 2 * math.pi], 1)

    def sample_boundary(self, n, g):
        # each circle's misfit averaged on its own, weight 1 each (the authors' train_two_car_game)
        return _two_circle_boundary(n, n // 2, self.r_capture, self.r_escape, self.escape_value, 1.0, 1.0, 2, g)

    def sample_test(self, n, g):
        z = sampling.shell(n, 2, self.r_capture, self.r_escape, g, "uniform")
        return torch.cat([z, torch.rand(n, 2, generator=g) * 2 * math.pi], 1)

    def inside(self, x):
        r = x[:, :2].norm(dim=1)
        return (r > self.r_capture) & (r < self.r_escape)

    def slice_base(self):
        return torch.tensor([[0.0, 0.0, 0.0, math.pi / 2]])

    def extent(self):
        return (-self.r_escape, self.r_escape)


def _rotate(v: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """R(angle) v for rows v (N, 2) and angles (N,)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], 1)


def sampling_names() -> tuple[str, ...]:
    return sampling.SAMPLINGS


PROBLEMS: dict[str, type[Problem]] = {
    "eikonal_square": EikonalCube,
    "eikonal_cube": EikonalCube,
    "eikonal_ball": EikonalBall,
    "eikonal_annulus": EikonalAnnulus,
    "nonhomogeneous": NonHomogeneous,
    "incompatible_boundary": IncompatibleBoundary,
    "time_dependent": TimeDependentLQR,
    "reeds_shepp": ReedsSheppCar,
    "pursuit_evasion": TwoCarGame,
}
DEFAULT_DIMS = {"eikonal_square": 2, "eikonal_cube": 5, "eikonal_ball": 10, "eikonal_annulus": 10,
                "nonhomogeneous": 2, "incompatible_boundary": 2, "time_dependent": 2, "reeds_shepp": 3,
                "pursuit_evasion": 4}


def make_problem(name: str, dim: int | None = None, **options) -> Problem:
    """The problem called ``name`` (a key of :data:`PROBLEMS`) in dimension ``dim`` (space dimension; the
    default is the authors' main setting), with problem-specific ``options`` (constructor keywords)."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}")
    dim = DEFAULT_DIMS[name] if dim is None else dim
    if name == "eikonal_square" and dim != 2:
        raise ValueError(f"eikonal_square is 2-D; use eikonal_cube for dim={dim}")
    try:
        return PROBLEMS[name](dim=dim, **options)
    except TypeError as e:
        raise ValueError(f"problem {name!r}: bad option ({e})") from None
