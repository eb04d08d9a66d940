"""Haber & Ruthotto stable architectures: stability claims on the dynamics, eigenvalues of the antisymmetric and
Hamiltonian right-hand sides, adjoint and Taylor tests of the hand-written operators (convolution adjoint, GN
product, loss Hessian), prolongation, regularisers, data recipes, the optimisers and the multilevel driver."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev, jvp

from orthojac.data import make_ellipses, make_peaks, make_swiss_roll, make_toy2d
from orthojac.models import create_stable_model, hypothesis_loss
from orthojac.nn import STABLE_ARCHS, create_dynamics
from orthojac.nn.stable import conv_op, conv_opT, prolong_time_series
from orthojac.regularizers import grid_operator, spatial_smoothness, time_laplacian, time_smoothness
from orthojac.train.multilevel import FitResult, accuracy, fit_adam, prolong_model_, train_multilevel
from orthojac.train.newton_cg import (
    NewtonCGConfig,
    fit_newton_cg,
    gauss_newton_cg_step,
    loss_hessian_product,
    newton_cg_classifier_step,
    pcg,
)

D = torch.float64
K_MINUS = torch.tensor([[-2.0, 0.0], [2.0, -2.0]], dtype=D)  # Eq. 3.10
K_PLUS = torch.tensor([[2.0, -2.0], [0.0, 2.0]], dtype=D)
Y0 = torch.tensor([[0.1, 0.1], [-0.1, -0.1]], dtype=D)  # Example 2 inputs


def _constant(arch: str, k: torch.Tensor, n: int, h: float, **kw):
    m = create_dynamics(arch, k.shape[0], n, n * h, dtype=D, **kw)
    name = "C" if kw.get("negdef") else "K"
    with torch.no_grad():
        getattr(m, name).copy_(k.expand_as(getattr(m, name)))
    return m


def _window_norms(m, y: torch.Tensor, windows: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        norms = torch.stack([t.norm(dim=1).max() for t in m.trajectory(y)])[1:]
    w = norms.reshape(windows, -1)
    return w.max(dim=1).values, w.min(dim=1).values


@pytest.mark.parametrize("arch,k,h,kw", [
    ("leapfrog", torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=D), 1.0, {"negdef": True}),  # K = −CᵀC, Eq. 4.14
    ("verlet", K_MINUS, 0.1, {}),  # Example 2's Verlet step size
])
def test_leapfrog_and_verlet_neither_explode_nor_vanish(arch, k, h, kw):
    """Constant weights, N = 5000 layers (Example 2): the largest feature norm in every window of 500 layers stays
    within a factor 1.1 of the first window's and above half the input norm (no growth, no decay)."""
    hi, _ = _window_norms(_constant(arch, k, 5000, h, **kw), Y0)
    assert hi.max() <= 1.1 * hi[0]
    assert hi.min() >= 0.5 * Y0.norm(dim=1).max()


def test_forward_euler_resnet_explodes_or_vanishes():
    """The contrast of Example 1 (Eq. 2.1, h = 0.1, constant K): K₊ (eigenvalues 2) explodes, K₋ (−2) decays to 0
    — the stability test above would fail on these."""
    hi_plus, _ = _window_norms(_constant("resnet", K_PLUS, 500, 0.1), Y0)
    hi_minus, _ = _window_norms(_constant("resnet", K_MINUS, 500, 0.1), Y0)
    assert hi_plus[-1] > 100 * Y0.norm(dim=1).max()
    assert hi_minus[-1] < 1e-3 * Y0.norm(dim=1).max()


def test_antisymmetric_and_hamiltonian_rhs_have_imaginary_eigenvalues(gen):
    """γ = 0: the Jacobian diag(σ′)·½(K − Kᵀ) of the antisymmetric right-hand side, and the augmented Verlet
    Jacobian [[0, D₁K], [−D₂Kᵀ, 0]], have eigenvalues with zero real part (random K, b, y; float64)."""
    anti = create_dynamics("antisymmetric", 5, 3, 1.0, gamma=0.0, init="random", init_scale=3.0, generator=gen,
                           dtype=D)
    ver = create_dynamics("verlet", 3, 3, 1.0, hidden=4, init="random", init_scale=3.0, generator=gen, dtype=D)
    with torch.no_grad():
        anti.b.normal_(generator=gen)
        ver.b.normal_(generator=gen)
    for m, dim in ((anti, 5), (ver, 7)):
        for j in range(3):
            y = torch.randn(dim, generator=gen, dtype=D)
            jac = jacrev(lambda v, m=m, j=j: m.rhs(j, v.unsqueeze(0))[0])(y)
            ev = torch.linalg.eigvals(jac)
            assert ev.real.abs().max() < 1e-10, ev
            assert ev.imag.abs().max() > 1e-3  # not trivially zero
    damped = create_dynamics("antisymmetric", 5, 1, 1.0, gamma=0.1, init="random", generator=gen, dtype=D)
    ev = torch.linalg.eigvals(jacrev(lambda v: damped.rhs(0, v.unsqueeze(0))[0])(torch.zeros(5, dtype=D)))
    assert ev.real.max() < 0  # γ > 0 damps


def test_conv_adjoint_and_conv_antisymmetry(gen):
    """Dot-product test ⟨op(Y), Z⟩ = ⟨Y, opT(Z)⟩ for the convolution and its hand-written adjoint, and
    ⟨A y, y⟩ = 0 for the convolutional antisymmetric operator with γ = 0."""
    k = torch.randn(4, 3, 3, 3, generator=gen, dtype=D)
    y = torch.randn(2, 3, 6, 5, generator=gen, dtype=D)
    z = torch.randn(2, 4, 6, 5, generator=gen, dtype=D)
    assert torch.allclose((conv_op(y, k) * z).sum(), (y * conv_opT(z, k)).sum(), rtol=1e-12, atol=1e-12)
    m = create_dynamics("antisymmetric", 3, 1, 1.0, gamma=0.0, conv=True, init="random", generator=gen, dtype=D,
                        activation="identity")
    a_y = (m.rhs(0, y) - m.b[0]).detach()
    assert abs(float((a_y * y).sum())) < 1e-12


@pytest.mark.parametrize("arch", sorted(STABLE_ARCHS))
@pytest.mark.parametrize("conv", (False, True))
def test_taylor_first_order(arch, conv, gen):
    """Taylor test in the weights: ‖f(θ + εv) − f(θ) − ε J v‖ falls as O(ε²) (ratio ≈ 4 when ε halves), J v by
    torch.func.jvp through the network's steps."""
    m = create_dynamics(arch, 3, 4, 2.0, conv=conv, init="random", init_scale=1.0, generator=gen, dtype=D)
    x = torch.randn(2, 3, *((5, 5) if conv else ()), generator=gen, dtype=D)
    params = {k: v.detach() for k, v in m.named_parameters()}
    v = {k: torch.randn(p.shape, generator=gen, dtype=D) for k, p in params.items()}

    def f(p):
        return torch.func.functional_call(m, p, (x,))

    f0, jv = jvp(f, (params,), (v,))
    errs = []
    for eps in (1e-2, 5e-3, 2.5e-3):
        errs.append(float((f({k: params[k] + eps * v[k] for k in params}) - f0 - eps * jv).norm()))
    ratios = [errs[i] / errs[i + 1] for i in range(2)]
    assert all(3.5 < r < 4.5 for r in ratios), ratios


@pytest.mark.parametrize("arch", sorted(STABLE_ARCHS))
def test_jacobian_claim_holds(arch, gen):
    """Each network's weight-dependent bounded claim holds for the exact Jacobian (jacrev, float64)."""
    m = create_dynamics(arch, 3, 5, 3.0, init="random", init_scale=2.0, generator=gen, dtype=D)
    x = torch.randn(4, 3, generator=gen, dtype=D)
    jac = torch.func.vmap(jacrev(lambda v: m(v.unsqueeze(0))[0]))(x)
    assert m.jacobian_claim.holds(torch.linalg.svdvals(jac), atol=1e-9)


def test_prolongation_piecewise_linear_and_h_halves(gen):
    x = torch.tensor([0.0, 2.0, 4.0, 10.0], dtype=D)
    assert torch.equal(prolong_time_series(x), torch.tensor([0, 1, 2, 3, 4, 7, 10, 10], dtype=D))
    m = create_dynamics("verlet", 2, 4, 5.0, hidden=3, init="random", generator=gen, dtype=D)
    k0 = m.K.detach().clone()
    m2 = m.prolonged()
    assert (m2.layers, m2.T, m2.h, m.layers) == (8, 5.0, 5.0 / 8, 4)
    assert torch.equal(m2.K[::2], k0) and torch.allclose(m2.K[1:-1:2], 0.5 * (k0[:-1] + k0[1:]))
    # constant-in-time weights: doubling N approaches the ODE solution (forward-Euler error O(h) halves)
    r = _constant("resnet", torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=D), 1, 1.0)
    ref = create_dynamics("resnet", 2, 4096, 1.0, dtype=D)
    with torch.no_grad():
        ref.K.copy_(r.K[0].expand_as(ref.K))
    target = ref(Y0 * 5)
    errs = []
    for _ in range(4):
        r.prolong_()
        errs.append(float((r(Y0 * 5) - target).norm().detach()))
    assert all(1.7 < errs[i] / errs[i + 1] < 2.3 for i in range(3)), errs


def test_prolong_model_and_multilevel_driver():
    m = create_stable_model("resnet", 2, 2, 2, 4, 1.0, dtype=D)
    seen = []

    def fit(model, n):
        seen.append((n, model.propagation.layers))
        return FitResult(model.state_dict(), 0.5, 0.5, 0, 0.0)

    res = train_multilevel(m, [4, 8, 16], fit)
    assert seen == [(4, 4), (8, 8), (16, 16)] and [r.layers for r in res] == [4, 8, 16]
    assert res[-1].h == 1.0 / 16
    with pytest.raises(ValueError, match="double"):
        train_multilevel(create_stable_model("resnet", 2, 2, 2, 4, 1.0), [4, 12], fit)
    with pytest.raises(ValueError, match="no StableDynamics"):
        prolong_model_(torch.nn.Linear(2, 2))


def test_time_smoothness_formula_and_rescaling(gen):
    m = create_dynamics("resnet", 2, 6, 3.0, init="random", generator=gen, dtype=D)
    want = sum(float((p[1:] - p[:-1]).pow(2).sum().detach()) for p in (m.K, m.b)) / (2 * m.h)
    assert math.isclose(float(time_smoothness(m).detach()), want, rel_tol=1e-12)
    # a weight that is linear in time has the same R (a discretised ½∫|∂ₜθ|²) after prolongation, up to the
    # constant extrapolation of the last interval
    with torch.no_grad():
        m.K.copy_(torch.arange(6, dtype=D).reshape(6, 1, 1) * torch.ones(1, 2, 2, dtype=D))
        m.b.zero_()
    r1 = float(time_smoothness(m).detach())
    m.prolong_()
    assert math.isclose(float(time_smoothness(m).detach()), r1, rel_tol=1e-12) and math.isclose(r1, 4 * 5 / (2 * 0.5))
    # time_laplacian is its Hessian: ½ θᵀ L θ = R for one weight entry
    th = torch.randn(7, generator=gen, dtype=D)
    lap = time_laplacian(7, 0.5)
    assert math.isclose(float(0.5 * th @ lap @ th), float((th[1:] - th[:-1]).pow(2).sum() / (2 * 0.5)), rel_tol=1e-12)


def test_spatial_smoothness_laplacian_matches_stencil(gen):
    w = torch.randn(3, 2 * 5 * 4, generator=gen, dtype=D)  # 3 classes, 2 channels of 5×4 images
    lap = grid_operator(5, 4)
    stencil = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=D).reshape(1, 1, 3, 3)
    lw = F.conv2d(w.reshape(6, 1, 5, 4), stencil, padding=1)
    assert math.isclose(float(spatial_smoothness(w, lap, channels=2)), float(0.5 * lw.pow(2).sum()), rel_tol=1e-12)
    grad = grid_operator(5, 4, "gradient")
    assert float(spatial_smoothness(torch.ones(1, 20, dtype=D), grad)) == 0.0  # constants have zero gradient
    with pytest.raises(ValueError, match="shape"):
        spatial_smoothness(w, lap)


def test_loss_hessian_product_matches_autograd(gen):
    for m in (1, 4):
        logits = torch.randn(5, m, generator=gen, dtype=D)
        labels = torch.randint(2 if m == 1 else m, (5,), generator=gen)
        u = torch.randn(5, m, generator=gen, dtype=D)
        hess = torch.autograd.functional.hessian(lambda z, labels=labels: hypothesis_loss(z, labels), logits)
        assert torch.allclose(loss_hessian_product(logits, u), torch.einsum("ijkl,kl->ij", hess, u), atol=1e-12)


def test_pcg_solves_spd_system(gen):
    a = torch.randn(6, 6, generator=gen, dtype=D)
    a = a @ a.T + 6 * torch.eye(6, dtype=D)
    b = torch.randn(6, generator=gen, dtype=D)
    x, _ = pcg(lambda v: {"x": a @ v["x"]}, {"x": b}, maxit=50, tol=1e-12)
    assert torch.allclose(a @ x["x"], b, atol=1e-9)


def test_newton_cg_steps_decrease_the_loss(gen):
    xt, yt, xv, yv = make_ellipses(per_class=60, n_val=20, seed=1)
    m = create_stable_model("resnet", 2, 2, 2, 4, 4.0, init="random", init_scale=1.0, generator=gen, dtype=D)
    with torch.no_grad():
        m.classifier.weight.normal_(generator=gen)
    f0 = float(hypothesis_loss(m(xt), yt).detach())
    with torch.no_grad():
        feats = m.features(xt)
    assert newton_cg_classifier_step(m, feats, yt) >= 1
    f1 = float(hypothesis_loss(m(xt), yt).detach())
    _, t = gauss_newton_cg_step(m, xt, yt, alpha=1e-3, curvature_fraction=1.0, generator=gen)
    f2 = float(hypothesis_loss(m(xt), yt).detach())
    assert f1 < f0 and t > 0 and f2 < f1
    res = fit_newton_cg(m, (xt, yt, xv, yv), NewtonCGConfig(iterations=3, batch_size=60, alpha=1e-3), generator=gen)
    assert res.val_acc >= max(res.history)
    m.load_state_dict(res.best_state)
    assert accuracy(m, xv, yv) == res.val_acc


def test_adam_fit_returns_best_validation_parameters(gen):
    xt, yt, xv, yv = make_ellipses(per_class=40, n_val=20, seed=2)
    m = create_stable_model("verlet", 2, 2, 2, 4, 4.0, init="identity", dtype=D)
    res = fit_adam(m, (xt, yt, xv, yv), epochs=3, lr=0.05, batch_size=20, alpha=1e-3, generator=gen)
    assert res.val_acc >= max(res.history)
    m.load_state_dict(res.best_state)
    assert accuracy(m, xv, yv) == res.val_acc


def test_data_recipes():
    xt, yt, xv, yv = make_ellipses()
    assert (len(yt), len(yv), int((torch.cat([yt, yv]) == 1).sum())) == (1000, 200, 600)
    inner = torch.cat([xt, xv])[torch.cat([yt, yv]) == 1]
    assert float((inner[:, 0] ** 2 + (inner[:, 1] / 0.4) ** 2).max()) <= 1.0 + 1e-12
    xt, yt, xv, yv = make_swiss_roll()
    assert (len(yt), int((yt == 0).sum()), len(yv), int((yv == 0).sum())) == (513, 257, 513, 256)
    assert torch.allclose(xt[1], torch.tensor([math.cos(8 * math.pi / 512), math.sin(8 * math.pi / 512)],
                                              dtype=D) * 2 / 512)
    xt, yt, xv, yv = make_peaks(per_class=100, seed=3)
    assert (len(yt), len(yv)) == (400, 100) and torch.bincount(torch.cat([yt, yv])).tolist() == [100] * 5
    assert torch.equal(make_peaks(per_class=10, seed=3)[0], make_peaks(per_class=10, seed=3)[0])
    with pytest.raises(ValueError, match="unknown 2-D"):
        make_toy2d("moons")


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown stable architecture"):
        create_dynamics("rk4", 2, 4, 1.0)
    with pytest.raises(ValueError, match="activation"):
        create_dynamics("resnet", 2, 4, 1.0, activation="gelu")
    with pytest.raises(ValueError, match="T must be positive"):
        create_dynamics("resnet", 2, 4, 0.0)
    with pytest.raises(ValueError, match="expects input of shape"):
        create_dynamics("resnet", 2, 4, 1.0)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="repeat"):
        create_stable_model("resnet", 3, 2, 8, 4, 1.0, opening="repeat")
    with pytest.raises(ValueError, match="curvature_fraction"):
        NewtonCGConfig(curvature_fraction=0.0)


def test_reproduce_plan_and_cli_parser():
    """The quick plan runs both optimisers on at least one data set and every Figure-3 architecture on all three
    sets; the full plan uses levels 4 … 1024. The CLI registers the runner."""
    from orthojac.cli import build_parser
    from orthojac.experiments.haber_ruthotto import levels, toy_plan

    quick = toy_plan("quick")
    assert {o for _, _, o in quick} == {"adam", "newton_cg"}
    assert {(d, a) for d, a, _ in quick} >= {(d, a) for d in ("ellipses", "swiss_roll", "peaks")
                                              for a in ("resnet", "antisymmetric", "verlet")}
    assert ("swiss_roll", "verlet", "newton_cg") in quick  # the paper's swiss-roll claim, with its optimiser
    assert levels("full") == [4, 8, 16, 32, 64, 128, 256, 512, 1024] and levels("quick", images=True) == [4, 8, 16]
    args = build_parser().parse_args(["reproduce", "haber-ruthotto", "--full", "--datasets", "peaks"])
    assert args.mode == "full" and args.datasets == ["peaks"]


def test_reproduction_rows_are_saved_per_run_and_replace_only_their_own(tmp_path) -> None:
    """A killed or filtered (--datasets) run must not lose or wipe the other runs' rows."""
    from orthojac.experiments.common import read_csv
    from orthojac.experiments.haber_ruthotto import _save_rows

    csv = tmp_path / "hr.csv"
    row = lambda ds, acc: {"dataset": ds, "arch": "resnet", "layers": 4, "optimizer": "adam",  # noqa: E731
                           "val_acc": acc, "mode": "quick"}
    _save_rows([row("ellipses", 0.5)], csv, "quick", "ellipses", "resnet", "adam")
    _save_rows([row("swiss_roll", 0.6)], csv, "quick", "swiss_roll", "resnet", "adam")
    _save_rows([row("ellipses", 0.9)], csv, "quick", "ellipses", "resnet", "adam")
    got = {(r["dataset"], r["val_acc"]) for r in read_csv(csv)}
    assert got == {("ellipses", "0.9"), ("swiss_roll", "0.6")}


def test_phase_plane_figures_are_written(tmp_path) -> None:
    """Figures 1 and 2 go through the shared figure writer (a CSV helper once shadowed the figure one)."""
    from orthojac.experiments.haber_ruthotto import figure1, figure2

    for fig in (figure1, figure2):
        path = fig(tmp_path / "figs" / f"{fig.__name__}.png")
        assert path.exists() and path.stat().st_size > 10_000


def test_newton_step_trust_radius_escapes_a_saturated_sigmoid(gen):
    """After a prolongation the logits can all be ≪ 0 while half the labels are 1: p(1 − p) ≈ 0, so the Newton
    direction is ~1/curvature long and no Armijo halving is accepted (the run then stayed at chance). The trust
    radius (max_step) shortens it to ‖d‖ ≤ max(1, ‖x‖), and the step is taken and lowers the loss."""
    xt, yt, _, _ = make_ellipses(per_class=50, n_val=10, seed=4)
    feats = torch.cat([xt, xt.abs()], 1) + 2.0  # all positive
    losses = {}
    for cap in (None, 1.0):
        m = create_stable_model("resnet", 2, 2, 4, 4, 4.0, opening="pad", dtype=D)
        with torch.no_grad():
            m.classifier.weight.fill_(-20.0)  # logits ≤ −160: every point predicted 0, sigmoid saturated
        f0 = float(hypothesis_loss(m.classifier(feats), yt).detach())
        moved = newton_cg_classifier_step(m, feats, yt, max_step=cap)
        losses[cap] = (moved, f0, float(hypothesis_loss(m.classifier(feats), yt).detach()))
    assert losses[None][0] == 0 and losses[None][2] == losses[None][1]
    assert losses[1.0][0] >= 1 and losses[1.0][2] < losses[1.0][1] - 1.0
    with pytest.raises(ValueError, match="max_step"):
        NewtonCGConfig(max_step=0.0)


def test_level_schedule_epochs_and_per_level_rows(tmp_path):
    """levels(max_layers) doubles from 4; Adam epochs fall as 32/N beyond N = 32 (≥ 10); a run saves each level
    as it ends: its first level replaces all its earlier rows, later levels only their own."""
    from orthojac.experiments.common import read_csv
    from orthojac.experiments.haber_ruthotto import _level_saver, _save_rows, image_setting, level_epochs, levels

    assert levels("quick", max_layers=128) == [4, 8, 16, 32, 64, 128] and levels("quick") == [4, 8, 16, 32]
    with pytest.raises(ValueError, match="power of two"):
        levels("full", max_layers=100)
    assert [level_epochs(100, n) for n in (4, 32, 64, 128, 1024)] == [100, 100, 50, 25, 10]
    assert level_epochs(5, 1024) == 5
    st = image_setting("quick", n_train=10000, channels=6, cosine=True)
    assert (st.n_train, st.n_val, st.channels, st.pool, st.lr_final) == (10000, 2000, 6, 2, st.lr / 100)
    with pytest.raises(ValueError, match="image-pool"):
        image_setting("quick", pool=0)
    csv = tmp_path / "hr.csv"
    row = lambda n, acc, arch="verlet": {"dataset": "peaks", "arch": arch, "layers": n,  # noqa: E731
                                         "optimizer": "adam", "val_acc": acc, "seconds": 1.0, "mode": "full"}
    _save_rows([row(4, 0.1), row(8, 0.2), row(16, 0.3)], csv, "full", "peaks", "verlet", "adam")
    _save_rows([row(4, 0.5, "resnet")], csv, "full", "peaks", "resnet", "adam")  # another run: kept
    save = _level_saver(csv, "full", "peaks", "verlet", "adam")
    save(row(4, 0.7))
    assert {(r["arch"], r["layers"], r["val_acc"]) for r in read_csv(csv)} == {("resnet", "4", "0.5"),
                                                                              ("verlet", "4", "0.7")}
    save(row(8, 0.8))
    save(row(8, 0.9))
    assert sorted((r["arch"], r["layers"], r["val_acc"]) for r in read_csv(csv)) == [
        ("resnet", "4", "0.5"), ("verlet", "4", "0.7"), ("verlet", "8", "0.9")]
