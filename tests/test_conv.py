"""Convolutional layers as operators (orthojac.nn.conv): the full Jacobian's singular values (float64), the
adjoint dot-product test, Parseval's identity behind the orthogonality defect, identity at initialisation,
orthogonality after optimiser steps under the exact policy, downsampling, errors, and the conv body."""

import pytest
import torch
import torch.nn.functional as F

from orthojac.models import build_model, create_convnet
from orthojac.nn import (
    ConvOrthoFeedforward,
    ConvOrthoResidual,
    OrthoDownsample,
    OrthogonalConv2d,
    random_orthogonal_kernel,
    randomize_,
)
from orthojac.regularizers import orthogonality

from .conftest import body_jacobian

POLICIES = ("init", "exact")


def _sv(fn, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.linalg.svdvals(body_jacobian(fn, x))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", ((5, 5), (4, 6)))
def test_orthogonal_conv_is_an_orthogonal_operator(policy: str, size: tuple[int, int], gen) -> None:
    conv = OrthogonalConv2d(3, size, 3, orthogonal=policy, generator=gen).double()
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    assert (_sv(conv, x) - 1).abs().max() < 1e-10  # at initialisation
    randomize_(conv, gen)  # a non-1×1 orthogonal kernel (init) / a random generator V (exact)
    assert (_sv(conv, x) - 1).abs().max() < 1e-10
    if policy == "init":  # the randomised kernel really uses its neighbouring taps
        p = conv.kernel_size // 2
        off = conv.weight.detach().clone()
        off[:, :, p, p] = 0
        assert off.abs().max() > 0.1


def test_exact_policy_stays_orthogonal_after_optimizer_steps(gen) -> None:
    conv = OrthogonalConv2d(4, (6, 6), 3, orthogonal="exact", generator=gen).double()
    layer = ConvOrthoResidual(4, (6, 6), orthogonal="exact", generator=gen).double()
    x = torch.randn(8, 4, 6, 6, generator=gen, dtype=torch.float64)
    target = torch.randn(8, 4, 6, 6, generator=gen, dtype=torch.float64)
    opt = torch.optim.Adam([*conv.parameters(), *layer.parameters()], lr=0.1)
    for _ in range(5):
        loss = (conv(x) - target).pow(2).mean() + (layer(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert conv.weight.detach().abs().sum() > 1.0  # the generator moved
    for m in (conv, layer):
        assert (_sv(m, x[:2]) - 1).abs().max() < 1e-6


def test_init_policy_drifts_and_the_regulariser_sees_it(gen) -> None:
    conv = OrthogonalConv2d(3, (5, 5), 3, generator=gen).double()
    assert orthogonality(conv).item() < 1e-20
    x = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    opt = torch.optim.Adam(conv.parameters(), lr=0.05)
    for _ in range(5):
        loss = (conv(x) - 2 * x).pow(2).mean()  # pulls the operator towards 2·I, off the manifold
        opt.zero_grad()
        loss.backward()
        opt.step()
    sv = _sv(conv, x[:1])
    assert (sv - 1).abs().max() > 1e-2
    assert orthogonality(conv).item() > 1e-3


@pytest.mark.parametrize("policy", POLICIES)
def test_adjoint_dot_product(policy: str, gen) -> None:
    """⟨𝓑v, w⟩ = ⟨v, 𝓑ᵀw⟩ for a random (not orthogonal) kernel / generator."""
    conv = OrthogonalConv2d(3, (5, 6), 3, orthogonal=policy, generator=gen).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
    v = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    lhs, rhs = (conv(v) * w).sum(), (v * conv.adjoint(w)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_init_policy_matches_torch_circular_conv(gen) -> None:
    conv = OrthogonalConv2d(3, (6, 5), 3, generator=gen).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
    ref = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        ref.weight.copy_(conv.weight)
    x = torch.randn(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    assert torch.allclose(conv(x), ref(x), atol=1e-12)


def test_orthogonality_defect_is_parseval(gen) -> None:
    """‖𝓑𝓑ᵀ − I‖²_F / (HW) from the frequency response equals the same norm of the dense Jacobian; for a delta
    kernel Q it equals ‖QQᵀ − I‖²_F."""
    conv = OrthogonalConv2d(2, (4, 5), 3, generator=gen).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
    jac = body_jacobian(conv, torch.zeros(1, 2, 4, 5, dtype=torch.float64))[0]
    dense = (jac @ jac.T - torch.eye(jac.shape[0], dtype=torch.float64)).pow(2).sum() / 20
    assert torch.allclose(conv.orthogonality_defect(), dense, rtol=1e-10)
    q = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = q
    assert torch.allclose(conv.orthogonality_defect(), (q @ q.T - torch.eye(2, dtype=torch.float64)).pow(2).sum())


def test_random_orthogonal_kernel_is_orthogonal_at_every_frequency(gen) -> None:
    k = random_orthogonal_kernel(4, 3, gen)
    conv = OrthogonalConv2d(4, (7, 8), 3).double()
    with torch.no_grad():
        conv.weight.copy_(k)
    m = conv.operator_response()
    eye = torch.eye(4, dtype=m.dtype)
    assert (m @ m.mH - eye).abs().max() < 1e-12
    assert conv.orthogonality_defect() < 1e-24


def test_delta_orthogonal_init_and_identity_at_init(gen) -> None:
    conv = OrthogonalConv2d(4, 6, 3, generator=gen)
    w = conv.weight.detach().double()
    centre = w[:, :, 1, 1]
    assert torch.allclose(centre @ centre.T, torch.eye(4, dtype=torch.float64), atol=1e-6)
    w[:, :, 1, 1] = 0
    assert w.abs().max() == 0
    x = 0.3 * torch.randn(3, 4, 6, 6, generator=gen)  # |𝓑x| within the bias margin 3
    for policy in POLICIES:
        for layer in (ConvOrthoResidual(4, 6, activation="relu_k", orthogonal=policy, generator=gen),
                      ConvOrthoFeedforward(4, 6, orthogonal=policy, generator=gen),
                      ConvOrthoFeedforward(4, 6, "sigma_k", orthogonal=policy, generator=gen)):
            assert torch.allclose(layer(x), x, atol=1e-5), (policy, type(layer).__name__)


def test_casting_to_float64_reprojects_a_delta_orthogonal_kernel(gen) -> None:
    conv = OrthogonalConv2d(8, 5, 3, generator=gen).double()
    c = conv.weight.detach()[:, :, 1, 1]
    assert (c @ c.T - torch.eye(8, dtype=torch.float64)).abs().max() < 1e-14


def test_downsample_is_a_permutation(gen) -> None:
    down = OrthoDownsample(2)
    x = torch.randn(1, 3, 4, 6, generator=gen, dtype=torch.float64)
    jac = body_jacobian(down, x)[0]
    assert set(jac.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(jac.sum(0), torch.ones(72, dtype=torch.float64))
    assert torch.equal(jac.sum(1), torch.ones(72, dtype=torch.float64))
    assert down(x).shape == (1, 12, 2, 3)
    assert torch.equal(down.inverse(down(x)), x)
    assert down.jacobian_claim.name == "orthogonal"


def test_conv_errors() -> None:
    with pytest.raises(ValueError, match="positive odd"):
        OrthogonalConv2d(3, 8, 2)
    with pytest.raises(ValueError, match="smaller than kernel_size"):
        OrthogonalConv2d(3, 2, 3)
    with pytest.raises(ValueError, match="is not a policy"):
        OrthogonalConv2d(3, 8, orthogonal="soft")
    with pytest.raises(ValueError, match="expects \\(N, 3, 8, 8\\)"):
        OrthogonalConv2d(3, 8)(torch.randn(1, 3, 7, 8))
    with pytest.raises(ValueError, match="partial isometry"):
        ConvOrthoFeedforward(3, 8, "relu")
    with pytest.raises(ValueError, match="slopes"):
        ConvOrthoResidual(3, 8, "abs")
    with pytest.raises(ValueError, match="divisible by 2"):
        OrthoDownsample(2)(torch.randn(1, 1, 5, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        create_convnet("resnet", (1, 6, 6), 10)
    with pytest.raises(ValueError, match="unknown conv family 'vgg'"):
        create_convnet("vgg", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="needs image inputs"):
        build_model("conv", "resnet", (64,), 10)


@pytest.mark.parametrize("policy", POLICIES)
def test_conv_body_is_orthogonal_end_to_end(policy: str, gen) -> None:
    """stem → [layers, downsample, layers] → head: the body's Jacobian (float64) is orthogonal."""
    model = create_convnet("ortho_feedforward_abs", (1, 16, 16), 3, width=2, depth=4, policy=policy).double()
    randomize_(model.body, gen)
    h = model.stem(torch.randn(2, 1, 16, 16, generator=gen, dtype=torch.float64))
    assert (_sv(model.body, h) - 1).abs().max() < 1e-10
    assert sum(isinstance(m, OrthoDownsample) for m in model.body) == 1


@pytest.mark.parametrize("arch", ("ortho_feedforward_abs", "ortho_feedforward_sigma_k", "ortho_residual_relu_k",
                                  "resnet", "plain_relu"))
def test_every_conv_family_builds_trains_and_is_seeded(arch: str) -> None:
    model = build_model("conv", arch, (1, 16, 16), 10, width=2, depth=3, policy="exact", seed=3)
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None for p in model.parameters())
    same = build_model("conv", arch, (1, 16, 16), 10, width=2, depth=3, policy="exact", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True))
    assert len([m for m in model.body if not isinstance(m, OrthoDownsample)]) == 3


def test_exact_conv_state_dict_round_trip(gen) -> None:
    a = ConvOrthoFeedforward(3, 6, orthogonal="exact", generator=gen)
    b = ConvOrthoFeedforward(3, 6, orthogonal="exact", generator=torch.Generator().manual_seed(9))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 6, 6, generator=gen)
    assert torch.equal(a(x), b(x))
