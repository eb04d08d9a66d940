"""Layer-specific properties of orthojac.nn.dense (the generic claim checks live in test_claims.py)."""

import re

import pytest
import torch

from orthojac import claims, regularizers
from orthojac.nn import LimitLayer, OrthoFeedforward, OrthoResidual, PersistentSubspace, randomize_

from .conftest import body_jacobian


@pytest.mark.parametrize("make", [
    lambda: OrthoFeedforward(24, activation="abs"),
    lambda: OrthoFeedforward(24, activation="sigma_k"),
    lambda: OrthoResidual(24, activation="relu"),
    lambda: OrthoResidual(24, activation="relu_k"),
], ids=["ff_abs", "ff_sigma_k", "res_relu", "res_relu_k"])
def test_done_when_depth_200(make, gen: torch.Generator) -> None:
    """Issue 2's acceptance check: a float32-built depth-200 stack cast with .double(), biases moved away
    from their initial values: max|JᵀJ − I| < 1e-9 at random inputs."""
    net = torch.nn.Sequential(*[make() for _ in range(200)]).double()
    with torch.no_grad():
        for m in net:
            m.bias.add_(torch.randn(m.bias.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(2, 24, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        jac = body_jacobian(net, x)
    err = (jac.mT @ jac - torch.eye(24, dtype=torch.float64)).abs().max().item()
    assert err < 1e-9, err


def test_cast_does_not_reproject_trained_weights(gen: torch.Generator) -> None:
    layer = OrthoResidual(8)
    with torch.no_grad():
        layer.weight.add_(1e-2 * torch.randn(8, 8, generator=gen))  # drifted, as training does under "init"
    w32 = layer.weight.detach().clone()
    layer.double()
    assert torch.equal(layer.weight.detach().float(), w32)


def test_identity_at_initialisation(gen: torch.Generator) -> None:
    x = 0.3 * torch.randn(64, 16, generator=gen)
    for layer in (OrthoResidual(16, bias_margin=3.0), OrthoResidual(16, activation="relu_k"),
                  OrthoFeedforward(16, "abs"), OrthoFeedforward(16, "sigma_k"), OrthoFeedforward(16, tied=False)):
        assert torch.allclose(layer(x), x, atol=1e-5), layer
    zero = OrthoResidual(16, bias_init="zero")
    assert not torch.allclose(zero(x), x, atol=1e-3)


def test_untied_feedforward_starts_with_a_equal_b() -> None:
    layer = OrthoFeedforward(8, tied=False)
    assert torch.equal(layer.weight_a, layer.weight_b)
    assert {n for n, _ in layer.named_parameters()} >= {"weight_a", "weight_b", "bias", "out_bias"}


def test_narrow_residual_has_orthonormal_rows() -> None:
    layer = OrthoResidual(10, hidden=4)
    w = layer.weight
    assert w.shape == (4, 10)
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.3])
def test_limit_layer_bound_at_random_parameters(eps: float, gen: torch.Generator) -> None:
    layer = LimitLayer(12, eps).double()
    randomize_(layer, gen, scale=3.0)  # large modulation scale: tanh(s) close to ±1
    x = 2 * torch.randn(64, 12, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        sv = torch.linalg.svdvals(body_jacobian(layer, x))
    assert sv.min() >= 1 - eps - 1e-12 and sv.max() <= 1 + eps + 1e-12
    if eps > 0:
        assert (sv.max() - sv.min()) > 0.1 * eps  # the modulation is really there


def test_persistent_subspace_keeps_r_unit_singular_values_through_depth_200(gen: torch.Generator) -> None:
    width, r, depth = 16, 4, 200
    x = torch.randn(3, width, generator=gen, dtype=torch.float64)

    def spectrum(r_: int, strategy: str = "channels") -> torch.Tensor:
        g = torch.Generator().manual_seed(7)
        net = torch.nn.Sequential(*[PersistentSubspace(width, r_, strategy, generator=g) for _ in range(depth)])
        with torch.no_grad():
            return torch.linalg.svdvals(body_jacobian(net.double(), x))

    with_pso = spectrum(r)
    n_unit = ((with_pso - 1).abs() < 1e-9).sum(-1)
    assert torch.equal(n_unit, torch.full((3,), r))
    assert with_pso[:, r:].max() < 1e-3  # the complement collapses, only the subspace persists
    assert spectrum(0).max() < 1e-3  # without the persistent subspace: total collapse
    bias_pso = spectrum(r, "bias")  # at initialisation the reserved units stay active
    assert bool((((bias_pso - 1).abs() < 1e-9).sum(-1) >= r).all())


def test_state_dict_round_trip_under_exact_policy(gen: torch.Generator) -> None:
    def make(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.nn.Sequential(OrthoResidual(8, orthogonal="exact", generator=g),
                                   OrthoFeedforward(8, tied=False, orthogonal="exact", generator=g),
                                   LimitLayer(8, 0.1, orthogonal="exact", generator=g))

    a = make(0)
    randomize_(a, gen)
    b = make(1)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 8, generator=gen)
    assert torch.allclose(a(x), b(x), atol=1e-6)
    assert any("parametrizations" in k for k in a.state_dict())


def test_torch_compile_smoke(gen: torch.Generator) -> None:
    net = torch.nn.Sequential(OrthoResidual(8, orthogonal="exact"), OrthoFeedforward(8, "sigma_k"))
    compiled = torch.compile(net, backend="aot_eager", fullgraph=False)
    x = torch.randn(4, 8, generator=gen, requires_grad=True)
    y_eager, y_comp = net(x), compiled(x)
    assert torch.allclose(y_eager, y_comp, atol=1e-6)
    (g_comp,) = torch.autograd.grad(y_comp.sum(), x)
    (g_eager,) = torch.autograd.grad(net(x).sum(), x)
    assert torch.allclose(g_comp, g_eager, atol=1e-6)


def test_orthogonality_regularizer(gen: torch.Generator) -> None:
    net = torch.nn.Sequential(OrthoResidual(8), OrthoFeedforward(8, tied=False))
    assert regularizers.orthogonality(net).item() < 1e-10
    with torch.no_grad():
        for p in (net[0].weight, net[1].weight_a):
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    before = regularizers.orthogonality(net).item()
    assert before > 1e-3
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        regularizers.orthogonality(net).backward()
        opt.step()
    assert regularizers.orthogonality(net).item() < 0.1 * before
    assert regularizers.orthogonality(torch.nn.Linear(3, 3)).item() == 0.0


def test_claims_follow_construction() -> None:
    assert OrthoResidual(4).jacobian_claim == claims.orthogonal()
    assert OrthoResidual(4, partial=True).jacobian_claim == claims.partial_isometry()
    assert OrthoFeedforward(4, "relu", partial=True).jacobian_claim == claims.partial_isometry()
    assert LimitLayer(4, 0.2).jacobian_claim == claims.near_orthogonal(0.2)
    assert PersistentSubspace(8, 2).jacobian_claim == claims.persistent_subspace(2)
    assert PersistentSubspace(8, 2, "bias").conditional_claim == claims.persistent_subspace(2)


ERRORS = [
    (lambda: OrthoFeedforward(8, "relu"), "slopes {0, 1}, so Aᵀσ(Bx + b) is only a partial isometry"),
    (lambda: OrthoFeedforward(8, hidden=4), "hidden=4 ≠ dim=8"),
    (lambda: OrthoFeedforward(8, "tanh"), "needs slopes in [-1.0, 1.0]"),
    (lambda: OrthoFeedforward(0), "dim must be positive"),
    (lambda: OrthoResidual(4, hidden=8), "hidden=8 > dim=4"),
    (lambda: OrthoResidual(4, step=1.0), "only for τ = 2"),
    (lambda: OrthoResidual(4, partial=True, step=2.0), "needs step=1"),
    (lambda: OrthoResidual(4, activation="abs"), "needs slopes in [0.0, 1.0]"),
    (lambda: OrthoResidual(0), "must be positive"),
    (lambda: OrthoResidual(4, orthogonal="soft"), "orthogonal='soft' is not a policy"),
    (lambda: OrthoResidual(4, orthogonal="exact", orthogonal_map="qr"), "orthogonal_map='qr' is unknown"),
    (lambda: OrthoResidual(4, orthogonal_init="svd"), "orthogonal_init='svd' is unknown"),
    (lambda: OrthoResidual(4, bias_init="random"), "bias_init='random' is unknown"),
    (lambda: LimitLayer(4, 1.5), "eps must lie in"),
    (lambda: LimitLayer(4, 0.1, base="conv"), "base='conv' is unknown"),
    (lambda: LimitLayer(4, 0.1, hidden=5), "hidden=5 > dim=4"),
    (lambda: LimitLayer(4, 0.1, partial=True), "needs an orthogonal base layer"),
    (lambda: PersistentSubspace(4, 5), "need 0 ≤ r ≤ dim"),
    (lambda: PersistentSubspace(4, 1, "weights"), "strategy='weights' is unknown"),
]


@pytest.mark.parametrize("make,message", ERRORS, ids=[m for _, m in ERRORS])
def test_value_errors_say_why(make, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
