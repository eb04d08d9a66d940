import pytest
import torch

from orthojac.nn import Abs, ReLUk, SigmaK, get_activation


def _slopes(act, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(act(x).sum(), x)
    return g


@pytest.mark.parametrize("name", ["relu", "relu_k", "sigma_k", "abs", "identity"])
def test_declared_slopes_are_the_slopes(name: str, gen: torch.Generator) -> None:
    act = get_activation(name).double()
    x = 3 * torch.randn(10_000, generator=gen, dtype=torch.float64)
    got = set(_slopes(act, x).unique().tolist())
    assert got <= set(act.slopes), (name, got, act.slopes)
    assert len(got) == len(act.slopes)  # every declared slope is actually taken


def test_relu_k_definition() -> None:
    x = torch.linspace(-3, 5, 1001, dtype=torch.float64)
    assert torch.equal(ReLUk((0.0,)).double()(x), torch.relu(x))
    assert torch.allclose(ReLUk(2).double()(x), x.clamp(0, 1))  # t = (0, 1): clipped ReLU
    r3 = ReLUk((0.0, 1.0, 2.0)).double()(x)
    assert torch.allclose(r3, torch.relu(x) - torch.relu(x - 1) + torch.relu(x - 2))


def test_sigma_k_is_x_minus_two_relu_k() -> None:
    x = torch.linspace(-3, 5, 1001, dtype=torch.float64)
    t = (-0.5, 0.5, 2.0)
    assert torch.allclose(SigmaK(t).double()(x), x - 2 * ReLUk(t).double()(x))
    assert torch.allclose(SigmaK().double()(x), -x.abs())
    assert torch.equal(Abs()(x), x.abs())


def test_learnable_breakpoints_stay_ordered(gen: torch.Generator) -> None:
    act = ReLUk((0.0, 0.1, 0.2), learnable=True)
    assert torch.allclose(act.breakpoints, torch.tensor([0.0, 0.1, 0.2]), atol=1e-6)
    opt = torch.optim.SGD(act.parameters(), lr=10.0)
    for _ in range(20):
        x = torch.randn(256, generator=gen)
        loss = (act(x) - torch.randn(256, generator=gen)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = act.breakpoints
    assert bool((t[1:] > t[:-1]).all())
    assert set(_slopes(act, 3 * torch.randn(1000, generator=gen)).unique().tolist()) <= {0.0, 1.0}


def test_identity_regions() -> None:
    assert ReLUk((0.0,)).init_bias(0.0, 3.0) == -3.0
    assert Abs().init_bias(1.0, 3.0) == 3.0
    assert SigmaK((1.0, 2.0)).init_bias(1.0, 3.0) == -2.0
    assert ReLUk((0.0, 4.0)).init_bias(1.0, 1.0) == 2.0
    with pytest.raises(ValueError, match="no region with slope"):
        Abs().region_with_slope(0.0)


def test_activation_errors() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        get_activation("gelu")
    with pytest.raises(ValueError, match="strictly increasing"):
        ReLUk((1.0, 0.0))
    with pytest.raises(ValueError, match="k ≥ 1"):
        ReLUk(0)
    with pytest.raises(ValueError, match="takes no keyword"):
        get_activation("abs", breakpoints=(0.0,))
    with pytest.raises(TypeError):
        get_activation(3)
