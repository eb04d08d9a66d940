"""The "riemannian" exact map (orthojac.nn.orthogonal): retractions, the optimiser step hook, the forward
pre-hook, schedules, and the 10,000-step drift bound."""

import copy
import threading

import pytest
import torch
from torch import nn

import orthojac.nn.orthogonal as orthogonal_module
from orthojac.nn import OrthoFeedforward, OrthoResidual
from orthojac.nn.orthogonal import (
    _cubic_bound,
    _quintic_bound,
    configure_retraction,
    orthogonal_init_,
    register_orthogonal,
    retract_,
    riemannian_weights,
)
from orthojac.optim import orthogonal


def spectral_error(w: torch.Tensor) -> float:
    """‖WᵀW − I‖₂ (tall) or ‖WWᵀ − I‖₂ (wide), computed in float64: max |σᵢ² − 1|."""
    w = w.detach().double()
    g = w.mT @ w if w.shape[-2] >= w.shape[-1] else w @ w.mT
    return float(torch.linalg.matrix_norm(g - torch.eye(g.shape[-1], dtype=torch.float64), ord=2).max())


@pytest.mark.parametrize("shape", [(12, 12), (12, 5), (5, 12)])
def test_polar_retraction_is_the_polar_factor(shape, gen) -> None:
    q = orthogonal_init_(torch.empty(4, *shape, dtype=torch.float64), "qr", gen)
    x = q + 0.02 * torch.randn(q.shape, generator=gen, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(x, full_matrices=False)
    ws = [xi.clone() for xi in x]
    retract_(ws, "polar")
    for w, ui, vi in zip(ws, u, vh):
        assert spectral_error(w) < 1e-13
        assert torch.allclose(w, ui @ vi, atol=1e-12)  # the nearest orthogonal matrix


def test_newton_schulz_error_bounds_hold() -> None:
    """The stopping rule's bounds dominate the exact maps of δ (squared singular value − 1) of one cubic and
    one quintic step, on a grid of |δ| ≤ ½ (the polar method's range)."""
    delta = torch.linspace(-0.5, 0.5, 20001, dtype=torch.float64)
    cubic = (1 + delta) * (1 - delta / 2) ** 2 - 1
    quintic = (1 + delta) * (1 - delta / 2 + 3 * delta**2 / 8) ** 2 - 1
    d = delta.abs()
    assert bool((cubic.abs() <= _cubic_bound(d) * (1 + 1e-12) + 1e-15).all())
    assert bool((quintic.abs() <= _quintic_bound(d) * (1 + 1e-12) + 1e-15).all())
    assert float(quintic.abs().max()) > 0.5 * float(_quintic_bound(d).max())  # the bound is not vacuous


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [3e-2, 3e-3, 3e-4, 3e-5, 3e-6])
def test_polar_retraction_reaches_the_tolerance_from_any_distance(dtype, size, gen) -> None:
    """Perturbations from 3e-2 to 3e-6 (‖E‖_F from about 0.3 down, inside the Newton–Schulz range) take every
    path of the stopping rule (cubic steps, a final quintic one, a single step); the result is the polar factor
    to the dtype's rounding level."""
    n = 48
    q = orthogonal_init_(torch.empty(6, n, n, dtype=torch.float64), "qr", gen)
    x = q + size / n**0.5 * torch.randn(q.shape, generator=gen, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(x)
    ws = [xi.to(dtype) for xi in x]
    retract_(ws)
    eps = torch.finfo(dtype).eps
    for w, ui, vi in zip(ws, u, vh):
        assert spectral_error(w) < 10 * eps * n**0.5
        assert torch.allclose(w.double(), ui @ vi, atol=100 * eps)


def test_adam_sized_steps_at_width_256_stay_on_newton_schulz(gen, monkeypatch) -> None:
    """An Adam step moves every entry by about lr: at n = 256, lr = 1.5e-3, ‖E‖_F ≈ 0.5 (the old QR threshold)
    while ‖E‖₂ ≈ 0.07. The E² bound sees that: the result is the polar factor by Newton–Schulz, no QR."""
    calls = []
    monkeypatch.setattr(orthogonal_module, "_qr_retraction", lambda x: calls.append(x) or torch.linalg.qr(x)[0])
    n = 256
    q = orthogonal_init_(torch.empty(4, n, n, dtype=torch.float64), "qr", gen)
    x = q + 1.5e-3 * torch.randn(q.shape, generator=gen, dtype=torch.float64).sign()
    e = x.mT @ x - torch.eye(n, dtype=torch.float64)
    assert float(torch.linalg.matrix_norm(e).min()) > 0.5 > 5 * float(torch.linalg.matrix_norm(e, ord=2).max())
    e2, bound = orthogonal_module._square(e.clone())
    assert bool((bound >= torch.linalg.matrix_norm(e, ord=2)).all())
    assert bool((bound < 0.5 * torch.linalg.matrix_norm(e)).all())  # much tighter than ‖E‖_F
    u, _, vh = torch.linalg.svd(x)
    ws = [xi.float() for xi in x]
    retract_(ws)
    assert not calls
    for w, ui, vi in zip(ws, u, vh):
        assert spectral_error(w) < 1e-6
        assert torch.allclose(w.double(), ui @ vi, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_frobenius_norms_of_a_batch(dtype, gen) -> None:
    """The retraction's ‖E‖_F (complex batches through their real view) equals matrix_norm's."""
    e = torch.randn(5, 7, 7, generator=gen, dtype=dtype)
    assert torch.allclose(orthogonal_module._frobenius(e), torch.linalg.matrix_norm(e), rtol=1e-5)


def test_reused_workspace_does_not_alias_results(gen) -> None:
    """The retraction's temporaries live in reused buffers: results of one call must not change when the
    next call (same shape) runs."""
    def batch() -> list[torch.Tensor]:
        q = orthogonal_init_(torch.empty(5, 16, 16), "qr", gen)
        return list(q + 1e-2 * torch.randn(q.shape, generator=gen))

    first, second = batch(), batch()
    retract_(first)
    kept = [w.clone() for w in first]
    retract_(second)
    assert all(torch.equal(w, k) for w, k in zip(first, kept))
    assert max(spectral_error(w) for w in first + second) < 1e-6


def test_workspace_is_bounded_and_correct_past_its_bound(gen, monkeypatch) -> None:
    """More weight shapes than the workspace keeps: the cache stops at its bound, and the shapes past it
    (fresh buffers each time) are retracted as well as the cached ones."""
    monkeypatch.setattr(orthogonal_module, "_WORKSPACE", threading.local())
    monkeypatch.setattr(orthogonal_module, "_WORKSPACE_ENTRIES", 4)
    for _ in range(2):
        for n in (8, 12, 16, 20):
            q = orthogonal_init_(torch.empty(3, n, n), "qr", gen)
            ws = list(q + 1e-2 / n**0.5 * torch.randn(q.shape, generator=gen))
            retract_(ws)
            assert max(spectral_error(w) for w in ws) < 1e-6
    assert len(orthogonal_module._WORKSPACE.buffers) == 4


def test_concurrent_retractions_use_their_own_buffers() -> None:
    """Two threads retracting batches of the same shape at the same time (the products release the GIL):
    with one shared workspace they overwrite each other's Gram matrices and iterates; per-thread buffers
    keep every result on the manifold."""
    errors: list[float] = []

    def work(seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        for _ in range(30):
            q = orthogonal_init_(torch.empty(64, 48, 48), "qr", g)
            ws = list(q + 3e-2 / 48**0.5 * torch.randn(q.shape, generator=g))
            retract_(ws)
            errors.append(max(spectral_error(w) for w in ws))

    threads = [threading.Thread(target=work, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 60 and max(errors) < 1e-6


@pytest.mark.parametrize("shape", [(9, 9), (9, 4), (4, 9)])
def test_qr_retraction(shape, gen) -> None:
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = x.clone()
    retract_([w], "qr")
    assert spectral_error(w) < 1e-13
    tall_x, tall_w = (x, w) if shape[0] >= shape[1] else (x.mT, w.mT)
    r = tall_w.mT @ tall_x  # X = Q R with R upper triangular, positive diagonal
    assert torch.allclose(torch.tril(r, -1), torch.zeros_like(r), atol=1e-12)
    assert bool((torch.diagonal(r) > 0).all())


def test_polar_falls_back_to_qr_far_from_the_manifold(gen) -> None:
    ws = [torch.randn(8, 8, generator=gen, dtype=torch.float64) * s for s in (3.0, 1e-3)]
    ws.append(orthogonal_init_(torch.empty(8, 8, dtype=torch.float64), "qr", gen))
    retract_(ws)
    assert max(spectral_error(w) for w in ws) < 1e-13


def _net(policy: str = "exact", width: int = 16, seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(OrthoResidual(width, hidden=width // 2, orthogonal=policy, generator=g),
                         OrthoFeedforward(width, tied=False, orthogonal=policy, generator=g), nn.Linear(width, 3))


def _train(net: nn.Module, opt: torch.optim.Optimizer, steps: int, gen, track: bool = True) -> float:
    """``steps`` optimiser steps on random data; the largest orthogonality error seen after any step."""
    worst = 0.0
    x, y = torch.randn(32, net[0].dim, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if track:
            worst = max(worst, *(spectral_error(w) for _, w in riemannian_weights(net)))
    return worst


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.Adam(p, 1e-2), lambda p: torch.optim.SGD(p, 0.1, 0.9),
                                      lambda p: torch.optim.AdamW(p, 1e-2, weight_decay=0.1)])
def test_every_optimizer_step_is_retracted(make_opt, gen) -> None:
    net = _net()
    names = [n for n, _ in riemannian_weights(net)]
    assert names == ["0.weight", "1.weight_b", "1.weight_a"]
    assert not any("parametrizations" in k for k in net.state_dict())  # plain weights: a plain layer's forward
    before = [w.detach().clone() for _, w in riemannian_weights(net)]
    worst = _train(net, make_opt(net.parameters()), 20, gen)
    assert worst < 1e-6
    moved = [float((w.detach() - b).abs().max()) for (_, w), b in zip(riemannian_weights(net), before)]
    assert min(moved) > 1e-3  # the weights did train


def test_init_policy_drifts_where_exact_does_not(gen) -> None:
    """The same training without the exact policy leaves the manifold: the test above can fail."""
    net = _net("init")
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    _train(net, opt, 20, gen, track=False)
    assert spectral_error(net[0].weight) > 1e-2


def test_exact_training_decreases_the_loss(gen) -> None:
    net = _net(width=8)
    x = torch.randn(64, 8, generator=gen)
    y = (x @ torch.randn(8, 3, generator=gen)).argmax(1)  # a learnable (linear) labelling
    opt = torch.optim.Adam(net.parameters(), 3e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_forward_pre_hook_retracts_weights_changed_outside_the_optimizer(gen) -> None:
    net = _net()
    with torch.no_grad():
        net[0].weight.add_(0.05 * torch.randn(net[0].weight.shape, generator=gen))
    assert spectral_error(net[0].weight) > 1e-2
    net(torch.randn(2, 16, generator=gen))
    assert spectral_error(net[0].weight) < 1e-6
    other = _net(seed=1)
    sd = {k: v + 0.01 if k.endswith("weight_b") else v for k, v in net.state_dict().items()}
    other.load_state_dict(sd)
    other(torch.randn(2, 16, generator=gen))
    assert spectral_error(other[1].weight_b) < 1e-6


def test_deep_copy_keeps_the_schedule_and_stays_exact(gen) -> None:
    net = _net()
    configure_retraction(net, every=1, method="qr")
    twin = copy.deepcopy(net)
    twin(torch.randn(2, 16, generator=gen))  # re-tags the copied weights
    assert twin[0].weight._oj_method == "qr"
    assert _train(twin, torch.optim.Adam(twin.parameters(), 1e-2), 5, gen) < 5e-6  # QR rounds less well than polar


def test_every_k_retracts_on_every_kth_step_only(gen) -> None:
    net = _net()
    opt = orthogonal(torch.optim.Adam(net.parameters(), 1e-2), every=3)
    errors = [_train(net, opt, 1, gen) for _ in range(6)]
    assert errors[2] < 1e-6 and errors[5] < 1e-6  # right after steps 3 and 6
    assert errors[0] > 1e-4 and errors[3] > 1e-4  # drift in between: near-orthogonal, not exact


def test_weights_on_the_manifold_are_left_bit_for_bit(gen) -> None:
    """Re-loading retracted weights (resume from a checkpoint) must not change them."""
    net = _net()
    _train(net, torch.optim.Adam(net.parameters(), 1e-2), 3, gen, track=False)
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    for method in ("polar", "qr"):
        configure_retraction(net, method=method)
        net.load_state_dict(saved)
        net(torch.randn(2, 16, generator=gen))
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in saved.items())


def test_bad_schedules_are_refused() -> None:
    net = _net()
    with pytest.raises(ValueError, match="integer ≥ 1"):
        configure_retraction(net, every=0)
    with pytest.raises(ValueError, match="choose one of"):
        configure_retraction(net, method="svd")
    with pytest.raises(ValueError, match="positive finite"):
        configure_retraction(net, tol=-1.0)
    with pytest.raises(ValueError, match="at least 2-D"):
        retract_([torch.zeros(3)])


def test_register_orthogonal_riemannian_on_any_module(gen) -> None:
    m = nn.Module()
    register_orthogonal(m, "w", 6, 10, policy="exact", exact_map="riemannian", generator=gen)
    assert isinstance(m.w, nn.Parameter) and m.orthogonal_weight_names == ("w",)
    assert spectral_error(m.w) < 1e-6


@pytest.mark.parametrize(("width", "steps"), [(16, 1_000), (64, 1_000),
                                             pytest.param(16, 10_000, marks=pytest.mark.slow),
                                             pytest.param(256, 10_000, marks=pytest.mark.slow)])
def test_orthogonality_drift_bound(width: int, steps: int, gen) -> None:
    """The issue's bound: float32, 10,000 Adam steps (1,000 in the default suite), ‖WᵀW − I‖₂ ≤ 1e-6 after
    every 10th step and at the end (two square weights and a wide one, widths 16, 64 and 256)."""
    net = _net(width=width)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.randn(8, width, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    noise = torch.randn(steps, *x.shape, generator=gen)
    worst = 0.0
    ws = [w for _, w in riemannian_weights(net)]
    for step in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x + 0.1 * noise[step]), y).backward()
        opt.step()
        if step % 10 == 9:
            worst = max(worst, *(spectral_error(w) for w in ws))
    assert worst <= 1e-6, worst
    assert max(spectral_error(w) for w in ws) <= 1e-6


def test_spectral_orthogonal_conv_stays_an_orthogonal_real_operator(gen) -> None:
    """The spectral convolution's full Jacobian (float64, jacrev) is orthogonal at init and after Adam steps
    that moved it away from a 1×1 map, and its output is real."""
    from orthojac.nn.spectral_conv import SpectralOrthogonalConv2d

    from .conftest import body_jacobian

    conv = SpectralOrthogonalConv2d(3, (6, 5), dtype=torch.complex128, generator=gen)
    opt = torch.optim.Adam(conv.parameters(), 0.05)
    x = torch.randn(4, 3, 6, 5, generator=gen, dtype=torch.float64)
    target = torch.randn(4, 3, 6, 5, generator=gen, dtype=torch.float64)
    for _ in range(15):
        opt.zero_grad()
        (conv(x) - target).square().mean().backward()
        opt.step()
    m = conv.weight.detach()
    assert float((m - m[:1, :1]).abs().max()) > 0.1  # no longer the same matrix at every frequency
    jac = body_jacobian(conv, x[:2])
    eye = torch.eye(jac.shape[-1], dtype=torch.float64)
    assert torch.allclose(jac.mT @ jac, eye.expand_as(jac), atol=1e-10)
    y = torch.randn(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    assert torch.allclose(conv.adjoint(conv(y)), y, atol=1e-10)  # 𝓑ᵀ = 𝓑⁻¹
    with pytest.raises(ValueError, match="expects"):
        conv(torch.zeros(1, 2, 6, 5, dtype=torch.float64))
