"""Tests of orthojac.hj (arXiv 2406.10758): the scheme's consistency on exact solutions, its monotonicity
condition (checked against jacrev), samplers, ansatz networks, the solver, configs and the CLI."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from orthojac.hj import (
    Hamiltonian,
    MonotonicityWarning,
    NormEikonal,
    QuadraticEikonal,
    ReedsShepp,
    Round,
    build_ansatz,
    check_monotonicity,
    evaluate,
    fd_residual,
    lax_friedrichs,
    make_problem,
    solve,
    zero_mse,
)
from orthojac.hj import sampling as S
from orthojac.hj.config import ConfigError, build_from_config, parse_hj_config
from orthojac.hj.control import (
    eikonal_trajectory,
    pursuit_evasion_controls,
    reeds_shepp_control,
    reeds_shepp_trajectory,
    trajectory,
)
from orthojac.hj.solver import loss_terms

D64 = torch.float64


class Exact(nn.Module):
    """A problem's exact solution as a network."""

    def __init__(self, problem) -> None:
        super().__init__()
        self.problem = problem

    def forward(self, x):
        return self.problem.exact(x)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- consistency on exact solutions
def test_square_exact_solution_solves_scheme_away_from_kinks():
    """u = 3 − ‖x‖_∞ is piecewise linear: at points farther than δ from the kinks (|x₁| = |x₂|) every
    central difference is exact and the LxF diffusion vanishes, so R_δ[u] = 0 up to rounding."""
    p = make_problem("eikonal_square")
    x = S.cube(4000, 2, 2.9, _gen()).to(D64)
    delta = 0.05
    far = ((x[:, 0].abs() - x[:, 1].abs()).abs() > 2.5 * delta) & (x.abs().amax(1) > 2 * delta)
    r, pc = fd_residual(p.exact, x[far], p.hamiltonian, p.f, delta, 1.0, p.stencil_dims)
    assert far.sum() > 3000
    assert r.abs().max() < 1e-12
    assert torch.allclose(pc.abs().amax(1), torch.ones(len(pc), dtype=D64))
    # near the kinks the residual is O(1)·α: the diffusion is what selects the viscosity solution
    r_all, _ = fd_residual(p.exact, x, p.hamiltonian, p.f, delta, 1.0, p.stencil_dims)
    assert r_all.abs().max() > 0.1


@pytest.mark.parametrize("d", [3, 6])
def test_ball_exact_solution_residual_is_first_order_with_known_constant(d):
    """u = R − |x|: D^c u = −x/|x| + O(δ²) and Σ_i A_i u = −(δ/2)(d − 1)/|x| + O(δ³), so
    R_δ[u](x) = α δ (d − 1)/(2|x|) + O(δ²): first-order consistency with this leading coefficient."""
    p = make_problem("eikonal_ball", dim=d)
    x = S.shell(500, d, 1.0, 5.0, _gen(1), "uniform").to(D64)
    alpha = 2.0
    lead = alpha * (d - 1) / (2 * x.norm(dim=1))
    errs = []
    for delta in (0.04, 0.02, 0.01):
        r, _ = fd_residual(p.exact, x, p.hamiltonian, p.f, delta, alpha, p.stencil_dims)
        errs.append(float((r / delta - lead).abs().max()))
    assert errs[0] < 0.05
    assert errs[1] < errs[0] / 1.8 and errs[2] < errs[1] / 1.8  # the remainder is O(δ)


def test_annulus_and_time_dependent_exact_solutions_are_consistent():
    ann = make_problem("eikonal_annulus", dim=4)
    x = ann.sample_interior(400, 0.3, _gen(2)).to(D64)
    x = x[(x.norm(dim=1) - 4).abs() > 0.1]  # away from the kink at r = 4
    r1, _ = fd_residual(ann.exact, x, ann.hamiltonian, ann.f, 0.02, 2.0, ann.stencil_dims)
    r2, _ = fd_residual(ann.exact, x, ann.hamiltonian, ann.f, 0.01, 2.0, ann.stencil_dims)
    assert r1.abs().max() < 0.1 and r2.abs().max() < 0.55 * r1.abs().max()
    td = make_problem("time_dependent", dim=3)
    x = td.sample_interior(400, 0.1, _gen(3), delta_t=0.01).to(D64)
    res = []
    for k in (1, 2, 4):
        r, _ = td.residual(td.exact, x, 0.1 / k, 1.0, delta_t=0.01 / k)
        res.append(float(r.abs().max()))
    assert res[0] < 0.3 and res[1] < 0.55 * res[0] and res[2] < 0.55 * res[1]


def test_riccati_closed_form():
    """P_i(t) = tan(arctan a_i − t) solves P' = −P² − 1; the authors' check values at t = 0.5; and
    u = ½(xᵀPx − 1) solves u_t + ½|∇u|² = −½|x|² (autograd, float64)."""
    td = make_problem("time_dependent", dim=2)
    p = td.riccati(torch.tensor([0.5], dtype=D64))[0]
    assert abs(float(p[1]) - 0.2934) < 1e-4 and abs(float(p[0]) + 0.3553) < 1e-4
    x = td.sample_test(50, _gen(4)).to(D64)
    jac = torch.func.vmap(torch.func.jacrev(lambda z: td.exact(z.unsqueeze(0))[0]))(x)
    pde = jac[:, 0] + 0.5 * (jac[:, 1:] ** 2).sum(1) + 0.5 * (x[:, 1:] ** 2).sum(1)
    assert pde.abs().max() < 1e-10


def test_incompatible_boundary_value_function():
    p = make_problem("incompatible_boundary")
    u = p.exact(torch.tensor([[0.0, 0.0], [-2.9, 0.0], [2.9, 0.0]]))
    assert torch.allclose(u, torch.tensor([3.0, 3.0, 3.0]), atol=1e-3)
    y, g, _ = p.sample_boundary(200, _gen())
    assert (p.exact(y) <= g + 2e-3).all()  # never above the data (up to the reference spacing 6/2000)
    assert (p.exact(y) < g - 0.5).any()  # and is strictly below it where g is steeper than 1


# ---------------------------------------------------------------- monotonicity
@pytest.mark.parametrize("alpha,monotone", [(2.5, True), (2.0, True), (1.0, False)])
def test_monotonicity_condition_matches_jacobian_signs(alpha, monotone):
    """Ĥ is non-increasing in every neighbour value u(x ± δe_i) iff α ≥ max_i |∂H/∂p_i|; for |p|² with
    |p_i| ≤ 1 the bound is 2. Checked on the Jacobian of Ĥ w.r.t. the stencil values (jacrev, float64)."""
    H = QuadraticEikonal()
    x = torch.zeros(1, 2, dtype=D64)
    delta = torch.tensor([0.1, 0.1], dtype=D64)
    worst = torch.tensor([[1.0, 0.0]], dtype=D64)  # central difference p = (1, 0)
    u0 = torch.zeros(1, dtype=D64)
    up, dn = delta * worst, -delta * worst

    def hhat(v):
        return lax_friedrichs(H, x, u0, v[:2].unsqueeze(0), v[2:].unsqueeze(0), delta, alpha)[0][0]

    jac = torch.func.jacrev(hhat)(torch.cat([up[0], dn[0]]))
    assert bool((jac <= 1e-12).all()) == monotone
    lip = check_monotonicity(H, alpha, x, worst, on_violation="off" if not monotone else "error")
    assert math.isnan(lip) or lip == pytest.approx(2.0)


def test_check_monotonicity_warns_and_errors():
    H = QuadraticEikonal()
    x = torch.zeros(5, 2)
    p = torch.tensor([[1.0, 0.0]] * 5)
    assert check_monotonicity(H, 2.5, x, p, "error") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="not monotone"):
        check_monotonicity(H, 0.5, x, p, "error", context="round 4")
    with pytest.warns(MonotonicityWarning, match="α ≥ 2"):
        check_monotonicity(H, 0.5, x, p, "warn")
    with pytest.raises(ValueError, match="no viscosity"):
        check_monotonicity(H, 100.0, x, torch.full((5, 2), float("inf")), "error")
    with pytest.raises(ValueError, match="on_violation"):
        check_monotonicity(H, 1.0, x, p, "sometimes")


def test_hamiltonian_p_derivatives_analytic():
    p = torch.randn(20, 3, dtype=D64)
    x = torch.rand(20, 3, dtype=D64) * 6
    assert torch.allclose(QuadraticEikonal(0.5).p_derivatives(x, p), p.abs())
    rs = ReedsShepp(rho=0.5).p_derivatives(x, p)
    assert torch.allclose(rs[:, 0], x[:, 2].cos().abs()) and torch.allclose(rs[:, 2], torch.full((20,), 2.0, dtype=D64))
    with pytest.raises(ValueError, match="rho"):
        ReedsShepp(rho=0.0)


# ---------------------------------------------------------------- local Lax–Friedrichs
def test_local_lax_friedrichs_viscosity_is_the_capped_local_speed():
    """1-D u = x²/2 under |p|² = 1: p^± = x ± δ/2, the second difference is δ/2, so the LLF residual is
    ((x)² − 1) − min(α, 2 max|p^±|)·δ/2 — and LxF's is the same with α in place of the capped speed."""
    prob = make_problem("eikonal_square", 2)
    x = torch.tensor([[0.1, 0.0], [0.6, 0.0], [-0.9, 0.0]], dtype=D64)
    delta = 0.2

    def u(z):
        return 0.5 * z[:, 0] ** 2

    for alpha in (0.5, 2.5):
        speed = (2 * torch.maximum((x[:, 0] + delta / 2).abs(), (x[:, 0] - delta / 2).abs())).clamp(max=alpha)
        base = x[:, 0] ** 2 - 1.0
        r_llf, p = fd_residual(u, x, prob.hamiltonian, prob.f, delta, alpha, (0, 1), scheme="llf")
        r_lxf, _ = fd_residual(u, x, prob.hamiltonian, prob.f, delta, alpha, (0, 1), scheme="lxf")
        assert torch.allclose(p[:, 0], x[:, 0])
        assert torch.allclose(r_llf, base - speed * delta / 2)
        assert torch.allclose(r_lxf, base - alpha * delta / 2)
    # no viscosity, or an affine u (zero second differences): the two schemes agree
    r0 = [fd_residual(u, x, prob.hamiltonian, prob.f, delta, 0.0, (0, 1), scheme=s)[0] for s in ("lxf", "llf")]
    assert torch.equal(r0[0], r0[1])
    with pytest.raises(ValueError, match="scheme"):
        fd_residual(u, x, prob.hamiltonian, prob.f, delta, 1.0, (0, 1), scheme="godunov")


@pytest.mark.parametrize("H", [QuadraticEikonal(0.5), QuadraticEikonal(lambda x: 1 + x[:, 0] ** 2),
                               NormEikonal(2.0)])
def test_closed_form_speeds_match_autograd_and_are_differentiable(H):
    """The eikonals' closed-form |∂H/∂p_i| equal the base class's autograd ones, and carry gradients."""
    x = torch.rand(7, 3, dtype=D64)
    p = torch.randn(7, 3, dtype=D64, requires_grad=True)
    fast = H.speeds(x, p)
    slow = Hamiltonian.speeds(H, x, p)
    assert torch.allclose(fast, slow)
    assert torch.allclose(fast.detach(), H.p_derivatives(x, p))
    (g_fast,) = torch.autograd.grad(fast.sum(), p)
    (g_slow,) = torch.autograd.grad(slow.sum(), p)
    assert torch.allclose(g_fast, g_slow) and g_fast.abs().sum() > 0


def test_llf_is_less_diffusive_than_lxf_on_the_high_dimensional_exact_solutions():
    """Mean R_δ[u*]² at the first round (δ = 0.7, α = 2.5): LLF never adds more viscosity than LxF, and in
    d = 20 its residual on the exact annulus solution is several times smaller."""
    prob = make_problem("eikonal_annulus", 20, sampling="radial")
    x = prob.sample_interior(400, 0.7, _gen(3)).double()
    res = {s: float(prob.residual(prob.exact, x, 0.7, 2.5, scheme=s)[0].pow(2).mean()) for s in ("lxf", "llf")}
    assert res["llf"] < res["lxf"] / 3, res


def test_solver_scheme_reaches_every_round_and_the_loss():
    data = _cfg(solver={"scheme": "llf", "rounds": [
        {"delta": 0.5, "alpha": 2.5, "points": 8, "boundary_points": 4, "iterations": 1},
        {"delta": 0.2, "alpha": 1.0, "points": 8, "boundary_points": 4, "iterations": 1, "scheme": "lxf"}]})
    cfg = parse_hj_config(data)
    assert [r.scheme for r in cfg.rounds()] == ["llf", "lxf"]
    with pytest.raises(ConfigError, match="solver.scheme"):
        parse_hj_config(_cfg(solver={**data["solver"], "scheme": "upwind"}))
    with pytest.raises(ValueError, match="scheme"):
        Round(0.1, 1.0, 8, 4, 1, scheme="upwind")
    problem, net = build_from_config(cfg)
    losses = {}
    for rnd in cfg.rounds():
        for s in ("lxf", "llf"):
            rnd.scheme = s
            losses[s] = float(loss_terms(problem, net, rnd, 1.0, _gen(1))[1].detach())
        assert losses["llf"] != losses["lxf"]


# ---------------------------------------------------------------- sampling
def test_samplers_support_and_distributions():
    g = _gen(5)
    f = S.cube_faces(3000, 4, 3.0, g)
    assert torch.allclose(f.abs().amax(1), torch.full((3000,), 3.0))
    face_counts = torch.bincount(f.abs().argmax(1), minlength=4).float() / 3000
    assert (face_counts - 0.25).abs().max() < 0.04
    sph = S.sphere(2000, 5, 2.0, g)
    assert torch.allclose(sph.norm(dim=1), torch.full((2000,), 2.0), atol=1e-5) and sph.mean(0).abs().max() < 0.1
    n = 20000
    rad = S.shell(n, 10, 1.0, 5.0, g, "radial").norm(dim=1)
    assert rad.min() >= 1.0 and rad.max() <= 5.0 and abs(float(rad.mean()) - 3.0) < 0.05
    vol = S.shell(n, 10, 0.0, 6.0, g, "uniform").norm(dim=1).double()
    for q in (3.0, 5.0, 5.7):  # CDF (r/6)^10 of the volume-uniform radius
        assert abs(float((vol < q).double().mean()) - (q / 6) ** 10) < 0.012
    _, which = S.spheres(n, 3, (2.0, 6.0), (2.0, 6.0), g)
    assert abs(float(which.double().mean()) - 0.75) < 0.015
    with pytest.raises(ValueError, match="sampling"):
        S.shell(5, 2, 0.0, 1.0, g, "gaussian")


def test_problem_samples_keep_stencils_inside():
    delta = 0.3
    ann = make_problem("eikonal_annulus", dim=6)
    r = ann.sample_interior(2000, delta, _gen(6)).norm(dim=1)
    assert r.min() >= 2 + delta - 1e-5 and r.max() <= 6 - delta + 1e-5
    mixed = make_problem("eikonal_annulus", dim=6, near_boundary=0.5, band=0.5)
    r = mixed.sample_interior(2000, delta, _gen(6)).norm(dim=1)
    assert float(((r < 2.8) | (r > 5.2)).float().mean()) > 0.5
    ball = make_problem("eikonal_ball", dim=10)
    t = ball.sample_test(1000, _gen(7))
    assert float(t[0].norm()) == 0.0 and t.norm(dim=1).max() <= 6.0 + 1e-5
    td = make_problem("time_dependent", dim=2)
    x = td.sample_interior(1000, 0.2, _gen(8), delta_t=0.05)
    assert x[:, 0].max() <= 0.45 + 1e-6 and x[:, 1:].abs().max() <= 2.8 + 1e-6
    with pytest.raises(ValueError, match="unknown problem"):
        make_problem("eikonal_torus")
    with pytest.raises(ValueError, match="cube sampling"):
        make_problem("eikonal_cube", dim=3, sampling="radial_ball")


def test_car_boundary_weights_average_each_circle_on_its_own():
    """mean_l w_l e_l² = λ_target·mean_target e² + λ_edges·mean_outer e² (the authors' separate means), for any
    misfits e, on the Reeds–Shepp car; the game's two circles get weight 1 each."""
    e = torch.rand(100, generator=_gen(9), dtype=D64)
    rs = make_problem("reeds_shepp")
    y, _, w = rs.sample_boundary(100, _gen(9))
    target = y[:, :2].norm(dim=1) < 1
    want = 2.0 * (e[target] ** 2).mean() + 1.0 * (e[~target] ** 2).mean()
    assert int(target.sum()) == 80 and torch.allclose((w.double() * e ** 2).mean(), want)
    game = make_problem("pursuit_evasion")
    y, _, w = game.sample_boundary(100, _gen(9))
    cap = y[:, :2].norm(dim=1) < 1
    assert torch.allclose((w.double() * e ** 2).mean(), (e[cap] ** 2).mean() + (e[~cap] ** 2).mean())


def test_cube_samplings_support_and_centre_mass():
    """``shrunk``/``radial``/``mixed`` keep stencils inside (‖x‖_∞ ≤ h − δ), ``full`` fills the cube; the
    radial law has ‖x‖_∞ uniform on [0, h − δ] (mean (h − δ)/2), the volume-uniform one has mean
    (h − δ)·d/(d + 1)."""
    d, delta, n = 8, 0.5, 20000
    norms = {s: make_problem("eikonal_cube", dim=d, sampling=s).sample_interior(n, delta, _gen(5)).abs().amax(1)
             for s in ("full", "shrunk", "radial", "mixed")}
    assert norms["full"].max() > 3 - delta
    for s in ("shrunk", "radial", "mixed"):
        assert norms[s].max() <= 3 - delta + 1e-6
    assert abs(float(norms["radial"].mean()) - (3 - delta) / 2) < 0.03
    assert abs(float(norms["shrunk"].mean()) - (3 - delta) * d / (d + 1)) < 0.03
    assert abs(float(norms["mixed"].mean()) - (3 - delta) * (0.5 + d / (d + 1)) / 2) < 0.03
    with pytest.raises(ValueError, match="dim"):
        make_problem("reeds_shepp", dim=4)


# ---------------------------------------------------------------- networks
def test_fourier_network_is_periodic_and_families_build():
    net = build_ansatz(4, "mlp", [16], periodic=(2, 3), n_freq=3, seed=1)
    x = torch.rand(10, 4) * 6
    shifted = x.clone()
    shifted[:, 2] += 2 * math.pi
    shifted[:, 3] -= 4 * math.pi
    assert torch.allclose(net(x), net(shifted), atol=1e-4)
    assert net.n_basis == 49
    ortho = build_ansatz(3, "ortho_residual_relu", width=8, depth=3, seed=0)
    assert ortho(torch.rand(7, 3)).shape == (7,)
    stable = build_ansatz(3, "stable_verlet", width=8, depth=3, seed=0)
    assert stable(torch.rand(7, 3)).shape == (7,)
    assert torch.equal(stable(x[:, :3]), build_ansatz(3, "stable_verlet", width=8, depth=3, seed=0)(x[:, :3]))
    with pytest.raises(ValueError, match="unknown arch"):
        build_ansatz(2, "transformer")


@pytest.mark.parametrize("name", ["reeds_shepp", "pursuit_evasion"])
def test_rotation_invariant_ansatz_is_invariant_and_periodic(name):
    """``model.symmetry: rotation``: rotating the plane by β (positions by R_β, every heading by +β) leaves
    u unchanged, as it leaves the car problems unchanged; shifting any angle by 2π too. The features keep
    the distance to the origin (|w| = |z|), so they lose nothing but the rotation."""
    cfg = parse_hj_config({"problem": {"name": name}, "model": {"widths": [16, 16], "symmetry": "rotation"},
                           "solver": {"rounds": [{"delta": 0.5, "alpha": 2.0, "points": 8, "boundary_points": 4,
                                                  "iterations": 1}]}})
    problem, net = build_from_config(cfg)
    net = net.double()
    g = _gen(5)
    x = problem.sample_test(50, g).double()
    beta = torch.rand(50, generator=g, dtype=D64) * 12 - 6
    c, s = torch.cos(beta), torch.sin(beta)
    rot = torch.cat([torch.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]], 1),
                     x[:, 2:] + beta[:, None]], 1)
    wrapped = x.clone()
    wrapped[:, 2:] += 2 * math.pi * torch.tensor([3.0, -2.0][:x.shape[1] - 2], dtype=D64)
    u = net(x)
    assert torch.allclose(net(rot), u, atol=1e-12) and torch.allclose(net(wrapped), u, atol=1e-12)
    assert not torch.allclose(net(x[:, [1, 0, *range(2, x.shape[1])]]), u, atol=1e-3)  # not a constant net
    w = problem.invariant_features(x)
    assert w.shape == (50, problem.n_invariant)
    assert torch.allclose(w[:, :2].norm(dim=1), x[:, :2].norm(dim=1))
    with pytest.raises(ValueError, match="not a symmetry"):
        build_from_config(parse_hj_config({**_cfg(), "model": {"symmetry": "rotation"}}))


@pytest.mark.parametrize("name, dim", [("eikonal_cube", 5), ("eikonal_square", 2), ("eikonal_ball", 6),
                                       ("eikonal_annulus", 4)])
def test_eikonal_invariant_ansatz_is_invariant_under_the_problems_symmetry(name, dim):
    """``model.symmetry``: the cube's ansatz is unchanged by signed permutations of the coordinates, the ball's
    and annulus's by orthogonal maps; the features are maximal invariants on which u* depends (u* = h − w₁ for
    the cube, u*(|x|) for the others), and a symmetry the problem lacks is refused."""
    problem = make_problem(name, dim)
    sym = problem.symmetry
    cfg = parse_hj_config({**_cfg(), "problem": {"name": name, "dim": dim},
                           "model": {"widths": [16, 16], "symmetry": sym}})
    _, net = build_from_config(cfg)
    net = net.double()
    g = _gen(3)
    x = problem.sample_test(64, g).double()
    if sym == "signed_permutation":
        perm = torch.randperm(dim, generator=g)
        sign = torch.randint(0, 2, (dim,), generator=g).double() * 2 - 1
        y = x[:, perm] * sign
        assert torch.allclose(problem.exact(x), problem.half - problem.invariant_features(x)[:, 0])
        assert torch.all(problem.invariant_features(x)[:, :-1] >= problem.invariant_features(x)[:, 1:])
    else:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=D64))
        y = x @ q
        assert torch.allclose(problem.invariant_features(x)[:, 0], x.norm(dim=1))
    assert problem.invariant_features(x).shape == (64, problem.n_invariant)
    assert torch.allclose(net(y), net(x), atol=1e-12)
    assert torch.allclose(problem.exact(y), problem.exact(x), atol=1e-12)
    assert not torch.allclose(net(x), net(x).mean().expand(64), atol=1e-4)  # not a constant net
    other = "rotation" if sym == "signed_permutation" else "signed_permutation"
    with pytest.raises(ValueError, match="not a symmetry"):
        build_from_config(parse_hj_config({**_cfg(), "problem": {"name": name, "dim": dim},
                                           "model": {"symmetry": other}}))


def test_exact_target_regresses_the_closed_form_and_needs_one():
    """``target="exact"`` (the ansatz's ceiling): the interior term is (u_θ − u*)², so its mean is the sampled
    MSE against u*, training lowers the test error, and problems without a closed form are refused (by
    ``solve`` and by the config)."""
    p = make_problem("eikonal_ball", 3)
    net = build_ansatz(3, "mlp", [16], seed=0)
    rnd = Round(0.3, 2.0, 200, 50, 1)
    _, res, _, x, pv = loss_terms(p, net, rnd, 1.0, _gen(4), target="exact")
    with torch.no_grad():
        assert pv is None and float(res) == pytest.approx(float(((net(x) - p.exact(x)) ** 2).mean()), rel=1e-6)
    mse0, _ = evaluate(p, net, 4000)
    out = solve(p, net, [Round(0.3, 2.0, 100, 50, 300)], optimizer="adam", lr=1e-2, target="exact",
                eval_points=4000, progress=False)
    assert out.mse < 0.1 * mse0 and math.isnan(out.rounds[0].lipschitz)
    with pytest.raises(ValueError, match="closed-form"):
        solve(make_problem("nonhomogeneous"), build_ansatz(2, "mlp", [4]), [rnd], target="exact", progress=False)
    with pytest.raises(ValueError, match="target"):
        solve(p, net, [rnd], target="supervised", progress=False)
    with pytest.raises(ConfigError, match="closed-form"):
        parse_hj_config({**_cfg(), "problem": {"name": "nonhomogeneous"},
                         "solver": {**_cfg()["solver"], "target": "exact"}})


# ---------------------------------------------------------------- solver
def test_tiny_solve_decreases_loss_and_error():
    torch.manual_seed(0)
    p = make_problem("eikonal_square")
    net = build_ansatz(2, "mlp", [20], seed=0)
    rnd = Round(0.5, 2.0, 60, 20, 300)
    with torch.no_grad():
        before = float(loss_terms(p, net, Round(0.5, 2.0, 4000, 1000, 1), 1.0, _gen(99))[0])
    mse0, _ = evaluate(p, net, 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonotonicityWarning)
        out = solve(p, net, [Round(0.75, 2.5, 60, 20, 300), rnd], seed=0, eval_points=5000, progress=False)
    with torch.no_grad():
        after = float(loss_terms(p, net, Round(0.5, 2.0, 4000, 1000, 1), 1.0, _gen(99))[0])
    assert after < 0.3 * before
    assert out.mse < 0.2 * mse0 and len(out.rounds) == 2 and out.rounds[-1].mse == out.mse
    with pytest.raises(ValueError, match="monotone"):
        solve(p, net, [Round(0.5, 0.5, 60, 20, 2)], monotonicity="error", progress=False)


def test_exact_residual_flags_the_high_dimensional_cube_rounds():
    """The solver reports R_δ[u*]² of the closed form per round: small for the square at a fine stencil, large
    for the d = 20 cube at the authors' first round (the LxF diffusion sums over 20 directions), nan without
    a closed form."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonotonicityWarning)
        sq = solve(make_problem("eikonal_square"), build_ansatz(2, "mlp", [8], seed=0),
                   [Round(0.05, 2.0, 2000, 10, 1)], eval_rounds=False, progress=False)
        cube = solve(make_problem("eikonal_cube", dim=20), build_ansatz(20, "mlp", [8], seed=0),
                     [Round(0.7, 2.5, 2000, 10, 1), Round(0.05, 0.5, 2000, 10, 1)], eval_rounds=False,
                     progress=False)
        car = solve(make_problem("reeds_shepp"), build_ansatz(3, "mlp", [8], periodic=(2,), seed=0),
                    [Round(0.6, 2.5, 50, 10, 1)], eval_rounds=False, progress=False)
    assert sq.rounds[0].exact_residual < 0.05
    assert cube.rounds[0].exact_residual > 5.0 and cube.rounds[1].exact_residual < 0.05
    assert math.isnan(car.rounds[0].exact_residual)


@pytest.mark.parametrize("name,dim,radius", [("eikonal_cube", 20, 3.0), ("eikonal_cube", 8, 3.0),
                                             ("eikonal_ball", 50, 6.0)])
def test_zero_mse_is_the_mse_of_the_zero_function_and_matches_the_closed_form(name, dim, radius):
    """mean u*² over evaluate's test points is what evaluate reports for u ≡ 0, and for volume-uniform points
    in the d-ball / cube it is 2R²/((d + 1)(d + 2)) (up to sampling error; plus the origin's R²/n)."""
    p = make_problem(name, dim)
    z = zero_mse(p, 20_000)
    zero_net = nn.Linear(dim, 1)
    nn.init.zeros_(zero_net.weight)
    nn.init.zeros_(zero_net.bias)
    mse, _ = evaluate(p, _Squeeze(zero_net), 20_000)
    assert mse == pytest.approx(z, rel=1e-5)
    n = 20_000  # the origin (u* = R) is one of the n test points
    assert z == pytest.approx((radius ** 2 + (n - 1) * 2 * radius ** 2 / ((dim + 1) * (dim + 2))) / n, rel=0.04)
    assert math.isnan(zero_mse(make_problem("reeds_shepp"), 100))


class _Squeeze(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def test_feedback_trajectory_time_matches_value():
    """Along ẋ = −∇u/|∇u| for u = R − |x| the time to the boundary equals u(x₀)."""
    p = make_problem("eikonal_ball", dim=3)
    tr = eikonal_trajectory(Exact(p), p, torch.tensor([1.0, 2.0, -1.0]), dt=0.01)
    assert tr["reached"] and abs(tr["time"] - tr["value"]) < 0.02


def test_reeds_shepp_control_minimises_and_decreases_value_at_rate_H():
    """The feedback (s, ω) minimises s ∇_x u·e(θ) + ω u_θ over the extreme controls s = ±1, ω ∈ {±1/ρ, 0},
    and the minimum is −H(x, ∇u): the value falls at rate H = 1 along the feedback motion."""
    g = _gen(3)
    grad, th, rho = torch.randn(500, 3, generator=g, dtype=D64), torch.rand(500, generator=g, dtype=D64) * 7, 0.8
    s, w = reeds_shepp_control(grad, th, rho)
    e = torch.stack([torch.cos(th), torch.sin(th)], 1)
    gx, gt = (grad[:, :2] * e).sum(1), grad[:, 2]
    rate = s * gx + w * gt
    brute = torch.stack([a * gx + b * gt for a in (-1.0, 1.0) for b in (-1 / rho, 0.0, 1 / rho)]).amin(0)
    x = torch.cat([torch.zeros(500, 2, dtype=D64), th[:, None]], 1)
    assert torch.allclose(rate, brute) and torch.allclose(rate, -ReedsShepp(rho)(x, grad))
    assert set(s.tolist()) == {-1.0, 1.0}


def test_pursuit_evasion_controls_are_the_saddle_point():
    """Pursuer's controls minimise, evader's maximise ∇u·(ż, θ̇_P, θ̇_E) (ż = σ_E s_E e(θ_E) − σ_P s_P e(θ_P)),
    each over its extreme controls with the other's fixed; the saddle value is −H of the game."""
    p = make_problem("pursuit_evasion")
    ham = p.hamiltonian
    g = _gen(4)
    grad, ang = torch.randn(300, 4, generator=g, dtype=D64), torch.rand(300, 2, generator=g, dtype=D64) * 7
    sp, wp, se, we = pursuit_evasion_controls(grad, ang[:, 0], ang[:, 1], ham)
    ep = torch.stack([torch.cos(ang[:, 0]), torch.sin(ang[:, 0])], 1)
    ee = torch.stack([torch.cos(ang[:, 1]), torch.sin(ang[:, 1])], 1)

    def rate(sp, wp, se, we):
        zdot = ham.sigma[1] * se[:, None] * ee - ham.sigma[0] * sp[:, None] * ep
        return (grad[:, :2] * zdot).sum(1) + wp * grad[:, 2] + we * grad[:, 3]

    one = torch.ones(300, dtype=D64)
    best = rate(sp, wp, se, we)
    for a in (-1.0, 1.0):
        for b in (-1.0, 0.0, 1.0):
            assert (rate(a * one, b * one / ham.rho[0], se, we) >= best - 1e-12).all()
            assert (rate(sp, wp, a * one, b * one / ham.rho[1]) <= best + 1e-12).all()
    x = torch.cat([torch.zeros(300, 2, dtype=D64), ang], 1)
    assert torch.allclose(best, -ham(x, grad))


class _Radial(nn.Module):
    """u = |(x, y)| − r: the Reeds–Shepp value on the states whose heading points along the radius (a car
    aimed at the target, forwards or backwards, drives straight in; nothing is faster at unit speed)."""

    def __init__(self, r: float) -> None:
        super().__init__()
        self.r = r

    def forward(self, x):
        return x[:, :2].norm(dim=1) - self.r


@pytest.mark.parametrize("heading", [math.pi + math.atan2(2.0, 3.5), math.atan2(2.0, 3.5)])
def test_reeds_shepp_feedback_drives_straight_to_target_in_time_u(heading):
    """From (3.5, 2) aimed at the target (forwards, then backwards): a straight path of length
    |x₀| − r_target, taken in time u(x₀) (to one step)."""
    p = make_problem("reeds_shepp")
    x0 = torch.tensor([3.5, 2.0, heading])
    tr = reeds_shepp_trajectory(_Radial(p.r_target), p, x0, dt=0.01)
    expected = math.hypot(3.5, 2.0) - p.r_target
    assert tr["reached"] and not tr["exited"]
    assert abs(tr["value"] - expected) < 1e-5 and abs(tr["time"] - expected) <= 0.011
    path = tr["path"][:, :2].double()
    cross = path[:, 0] * 2.0 - path[:, 1] * 3.5  # distance off the line through x₀ and 0, times |x₀|
    assert cross.abs().max() < 1e-4 and torch.allclose(tr["path"][:, 2], x0[2].expand(len(path)), atol=1e-6)


def test_trajectory_dispatch_and_game_stops_at_capture():
    """``trajectory`` picks the game for 6 numbers; with u = |z| − r_capture (pursuer chases straight,
    evader runs straight) and the pursuer faster, the gap closes at σ_P − σ_E along the line of sight."""
    p = make_problem("pursuit_evasion")
    start = torch.tensor([0.0, 0.0, math.pi / 2, 0.0, 2.0, math.pi / 2])  # both aim along +y, evader ahead
    tr = trajectory(_Radial(p.r_capture), p, start, dt=0.01)
    gap = 2.0 - p.r_capture
    assert tr["captured"] and abs(tr["time"] - gap / (p.hamiltonian.sigma[0] - p.hamiltonian.sigma[1])) < 0.05


def test_game_play_runs_past_the_cars_t_max():
    """The game's plays run to 3 × escape_value = 30 by default, not the cars' 12: the game's value from the
    authors' start is ≈ 8–10 (grid reference), so a 12-unit limit could cut a near-optimal play. A tail chase
    from 2.8 ahead closes at σ_P − σ_E = 0.2 and captures after (2.8 − 0.2)/0.2 = 13."""
    p = make_problem("pursuit_evasion")
    start = torch.tensor([0.0, 0.0, math.pi / 2, 0.0, 2.8, math.pi / 2])
    tr = trajectory(_Radial(p.r_capture), p, start, dt=0.01)
    assert tr["captured"] and abs(tr["time"] - 13.0) < 0.05
    assert not trajectory(_Radial(p.r_capture), p, start, dt=0.01, t_max=12.0)["captured"]


# ---------------------------------------------------------------- configs and CLI
def _cfg(**over):
    data = {"problem": {"name": "eikonal_square"},
            "solver": {"rounds": [{"delta": 0.5, "alpha": 2.0, "points": 20, "boundary_points": 8, "iterations": 20}]},
            "eval": {"points": 500}}
    for k, v in over.items():
        data[k] = v
    return data


@pytest.mark.parametrize("change,match", [
    ({"problme": {}}, "problme: unknown key"),
    ({"problem": {"name": "eikonal_torus"}}, "unknown problem"),
    ({"problem": {"name": "time_dependent"}}, "delta_t"),
    ({"model": {"arch": "transformer"}}, "unknown arch"),
    ({"optim": {"name": "lbfgs"}}, "optim.name"),
    ({"solver": {"rounds": [{"delta": -1, "alpha": 1, "points": 1, "boundary_points": 1, "iterations": 1}]}},
     "solver.rounds.0.delta"),
    ({"solver": {"rounds": []}}, "solver.rounds"),
    ({"problem": {"name": "eikonal_ball", "options": {"sampling": "gauss"}}}, "sampling"),
])
def test_config_errors_name_the_key(change, match):
    with pytest.raises(ConfigError, match=match):
        parse_hj_config(_cfg(**change))


def test_cli_solve_end_to_end(tmp_path, capsys):
    import json

    import yaml

    from orthojac.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(_cfg(output=str(tmp_path / "run"), runs=2)))
    assert main(["hj", "solve", str(cfg), "--quiet", "--set", "plots=true"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["runs"] == 2 and len(summary["per_run"]) == 2 and math.isfinite(summary["mse"])
    assert (tmp_path / "run" / "solution.png").stat().st_size > 1000
    assert main(["hj", "solve", str(cfg), "--set", "solver.lam=-1"]) == 2
    assert "solver.lam" in capsys.readouterr().err


def test_reproduce_rows_and_markdown(tmp_path, monkeypatch):
    """The CSV contract of ``orthojac reproduce hj``: the issue's columns first, std empty for one run, and
    the Markdown generated from the CSV."""
    from orthojac.experiments import hj_reproduce as R
    from orthojac.experiments.common import read_csv, write_csv

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # configs/hj/ is read relative to the repository
    tiny = (5, 5, 5, 5, 5)
    rows = [R.run_spec(R.Spec("eikonal_square", runs, iterations=tiny, authors=(1.5e-5, 0.0127)), "test", "cpu",
                       str(tmp_path / "fig"), False) for runs in (1, 2)]
    assert rows[0]["mse_std"] == "" and isinstance(rows[1]["mse_std"], float) and rows[1]["runs"] == 2
    assert rows[0]["problem"] == "eikonal_square" and rows[0]["arch"] == "mlp[20]" and rows[0]["dim"] == 2
    csv = write_csv(rows, tmp_path / "hj.csv", R.COLUMNS)
    assert list(read_csv(csv)[0])[:7] == ["problem", "dim", "arch", "mse", "max_err", "seconds", "runs"]
    md = R.write_markdown(csv, tmp_path / "hj.md").read_text()
    assert "do not edit by hand" in md and md.count("| test | eikonal_square |") == 2 and " ± " in md
    assert [p.name for p in (tmp_path / "fig").glob("hj_*.png")] == ["hj_eikonal_square_2_authors_test.png"]
    with pytest.raises(ValueError, match="iteration counts"):
        R.run_spec(R.Spec("eikonal_square", 1, iterations=(5,)), "test", "cpu", "", False)
    car = R.run_spec(R.Spec("reeds_shepp", 1, iterations=(3, 3, 3), points=20), "test", "cpu", "", False)
    assert car["traj_end"] in ("reached", "exited", "t_max") and car["traj_time"] <= 12.01 and car["mse"] == ""


def test_high_d_figure_groups_full_rows_by_problem_and_dim(tmp_path, monkeypatch):
    """write_high_d_figure plots the full mode's d ≥ 20 rows, one bar per setting (the optimiser prefix and the
    d suffix stripped; the paper's LxF named "LxF"), and nothing when there are none."""
    from orthojac.experiments import hj_reproduce as R
    from orthojac.experiments.common import write_csv

    seen = {}

    def spy(rows, zero, path, title=""):
        seen.update(labels=[r["label"] for r in rows], zero=zero)
        return Path(path)

    monkeypatch.setattr("orthojac.hj.plots.plot_settings_mse", spy)
    base = {c: "" for c in R.COLUMNS}
    rows = [{**base, "problem": p, "dim": d, "mse": 0.1, "mode": m, "setting": s}
            for p, d, m, s in (("eikonal_cube", 20, "full", "adam, lr decay, d = 20"),
                               ("eikonal_cube", 20, "full", "adam, lr decay, supervised ceiling, d = 20"),
                               ("eikonal_ball", 50, "full", "adam, lr decay, invariant ansatz, d = 50"),
                               ("eikonal_cube", 8, "full", "adam"), ("eikonal_cube", 20, "quick", "x"))]
    csv = write_csv(rows, tmp_path / "hj.csv", R.COLUMNS)
    assert R.write_high_d_figure(csv, tmp_path) == tmp_path / R.HIGH_D_FIGURE
    assert seen["labels"] == ["LxF", "supervised ceiling", "invariant ansatz"]
    assert seen["zero"][("eikonal_cube", 20)] == pytest.approx(2 * 9 / (21 * 22), rel=0.05)
    assert R.write_high_d_figure(write_csv(rows[3:], tmp_path / "low.csv", R.COLUMNS), tmp_path) is None
    monkeypatch.undo()
    from orthojac.hj.plots import plot_settings_mse

    out = plot_settings_mse([{**r, "label": "a"} for r in rows[:3]] + [{**rows[0], "mse": "", "label": "b"}],
                            {("eikonal_cube", 20): 0.039}, tmp_path / "bars.png", "t")
    assert out.stat().st_size > 1000


def test_reproduce_spec_schemes_reach_the_rounds(monkeypatch):
    """Spec.schemes sets each round's scheme (LxF in round 1, LLF after it) in the solved configuration."""
    from orthojac.experiments import hj_reproduce as R
    from orthojac.hj import config as hjc

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    seen, real = [], hjc.solve_config

    def spy(cfg, *args, **kwargs):
        seen.append([r.scheme for r in cfg.rounds()])
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(hjc, "solve_config", spy)
    hybrid = ("lxf", "llf", "llf", "llf", "llf")
    R.run_spec(R.Spec("eikonal_square", 1, iterations=(2,) * 5, schemes=hybrid), "test", "cpu", "", False)
    assert seen == [list(hybrid)]
    with pytest.raises(ValueError, match="schemes for 5 rounds"):
        R.run_spec(R.Spec("eikonal_square", 1, schemes=("llf",)), "test", "cpu", "", False)


def test_reproduce_spec_filters(monkeypatch):
    """--only, --dims and --runs select and cap the settings; bad values are refused."""
    from orthojac.experiments import hj_reproduce as R

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    high = R.select_specs("full", dims="20,50", runs=1)
    assert high and all(s.runs == 1 and ("d = 20" in s.setting or "d = 50" in s.setting) for s in high)
    assert {s.config for s in R.select_specs("quick", dims="10")} == {"eikonal_ball10", "eikonal_annulus10"}
    assert all(s.config == "eikonal_cube8" for s in R.select_specs("quick", only="eikonal_cube8"))
    decay = R.select_specs("quick", only="eikonal_cube8", settings="lr decay")
    assert len(decay) == 1 and decay[0].lr_end is not None
    for kw, match in (({"dims": "ten"}, "integers"), ({"dims": "7"}, "no quick setting"),
                      ({"only": "nope"}, "unknown"), ({"runs": -1}, "runs")):
        with pytest.raises(ValueError, match=match):
            R.select_specs("quick", **kw)


def test_round_lr_end_decays_geometrically(monkeypatch):
    """A round with lr_end ends at that rate: lr_k = lr·(lr_end/lr)^{k/(n−1)} after each of the n steps;
    the next round restarts at the solver's rate."""
    p = make_problem("eikonal_square")
    net = build_ansatz(2, "mlp", [4], seed=0)
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "SGD", Spy)
    solve(p, net, [Round(0.5, 2.0, 8, 4, 5, lr_end=1e-4), Round(0.5, 2.0, 8, 4, 2)], lr=1e-2, eval_points=10,
          monotonicity="off", progress=False)
    assert seen[:5] == pytest.approx([1e-2 * (1e-2) ** (k / 4) for k in range(5)]) and seen[5:] == [1e-2, 1e-2]
    with pytest.raises(ValueError, match="lr_end"):
        Round(0.5, 2.0, 8, 4, 5, lr_end=0.0)


def test_every_reproduce_spec_resolves(monkeypatch):
    """--quick and --full specs load their config with their overrides and match the round counts (no solve)."""
    from orthojac.experiments import hj_reproduce as R
    from orthojac.hj.config import build_from_config, load_hj_config

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    for spec in (*R.QUICK, *R.FULL):
        cfg = load_hj_config(Path("configs/hj") / f"{spec.config}.yaml", [*spec.overrides, f"runs={spec.runs}"])
        assert spec.iterations is None or len(spec.iterations) == len(cfg.solver.rounds), spec
        assert spec.schemes is None or len(spec.schemes) == len(cfg.solver.rounds), spec
        if cfg.dim <= 10:
            problem, net = build_from_config(cfg)
            assert net(problem.sample_test(3, _gen())).shape == (3,)


def test_reproduce_figure_names_are_unique_per_mode(monkeypatch):
    """No two settings of a mode write the same figure file (each would overwrite the other's)."""
    from orthojac.experiments import hj_reproduce as R
    from orthojac.hj.config import load_hj_config

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    for mode, specs in (("quick", R.QUICK), ("full", R.FULL)):
        names = [R.figure_name(s, load_hj_config(Path("configs/hj") / f"{s.config}.yaml", s.overrides).dim, mode)
                 for s in specs]
        dup = {n for n in names if names.count(n) > 1}
        assert not dup, f"{mode}: {sorted(dup)}"


def test_reproduce_jobs_default_to_one_worker_per_core_on_the_cpu(monkeypatch):
    from orthojac.experiments import hj_reproduce as R

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert R.resolve_jobs(0, "cpu", 17) == 2 and R.resolve_jobs(0, "cpu", 1) == 1
    assert R.resolve_jobs(0, "cuda", 17) == 1 and R.resolve_jobs(3, "cpu", 17) == 3
    with pytest.raises(ValueError, match="jobs"):
        R.resolve_jobs(-1, "cpu", 17)
