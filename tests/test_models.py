import pytest
import torch

from orthojac.models import build_model, create_body, create_model, family_names

from .conftest import body_jacobian


@pytest.mark.parametrize("family", family_names())
def test_every_family_builds_and_runs(family: str) -> None:
    model = create_model(family, 20, 3, width=16, depth=5)
    x = torch.randn(4, 20)
    out = model(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert len(model.blocks) == 5
    out.sum().backward()


def test_seed_makes_construction_deterministic() -> None:
    a = create_model("ortho_residual_relu", 10, 2, 8, 3, seed=5)
    b = create_model("ortho_residual_relu", 10, 2, 8, 3, seed=5)
    c = create_model("ortho_residual_relu", 10, 2, 8, 3, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_build_model_flattens_images() -> None:
    m = build_model("mlp", "ortho_feedforward_abs", (1, 28, 28), 10, width=16, depth=2)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_model_errors() -> None:
    with pytest.raises(ValueError, match="unknown model family 'vgg'"):
        create_model("vgg", 4, 2)
    with pytest.raises(ValueError, match="unknown body type 'rnn'"):
        build_model("rnn", "resnet", (4,), 2)
    with pytest.raises(ValueError, match="depth and width must be positive"):
        create_body("resnet", 4, 0)


def test_stem_norm_option() -> None:
    m = create_model("resnet", 2, 3, 8, 2, stem_norm=False)
    assert not any(isinstance(x, torch.nn.LayerNorm) for x in m.stem.modules())
    assert any(isinstance(x, torch.nn.LayerNorm) for x in create_model("resnet", 2, 3, 8, 2).stem.modules())


@pytest.mark.parametrize("policy", ("init", "exact"))
def test_untied_feedforward_family(policy: str) -> None:
    """ortho_feedforward_abs_untied: Aᵀ|Bx + b| + c with A, B two weights, A = B at initialisation (the body is
    the identity there); after a training step A ≠ B, and the body Jacobian Aᵀ·diag(±1)·B stays orthogonal only
    under the exact policy (under init A, B leave O(n))."""
    torch.manual_seed(0)
    m = build_model("mlp", "ortho_feedforward_abs_untied", (12,), 3, width=8, depth=6, policy=policy, seed=0).double()
    layer = m.body[0]
    assert not layer.tied and layer.weight_a is not layer.weight_b
    x = torch.randn(5, 12, dtype=torch.float64)
    h = m.stem(x)
    torch.testing.assert_close(m.body(h), h, atol=1e-5, rtol=0)  # identity at init (weights built in float32)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    torch.nn.functional.cross_entropy(m(x), torch.tensor([0, 1, 2, 0, 1])).backward()
    opt.step()
    assert (layer.weight_a - layer.weight_b).abs().max() > 1e-3
    sv = torch.linalg.svdvals(body_jacobian(m.body, m.stem(x).detach()))
    if policy == "exact":
        assert (sv - 1).abs().max() < 1e-9
    else:
        assert (sv - 1).abs().max() > 1e-4
