"""The generic claims test: every registered layer's Jacobian claim, checked with torch.func.jacrev in
float64 at random inputs and random (non-initial) parameters, at several widths and composed depths,
under both orthogonality policies. A new layer is tested by being registered in orthojac.nn.LAYERS."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from orthojac import claims
from orthojac.nn import LAYERS, randomize_

from .conftest import body_jacobian

ATOL = 1e-9
POLICIES = ("init", "exact")


def _check(spec, width: int, depth: int, policy: str, seed: int, n_inputs: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    layers = [spec.build(width, policy, g) for _ in range(depth)]
    net = torch.nn.Sequential(*layers).double()
    randomize_(net, g)
    claim = claims.compose(layer.jacobian_claim for layer in layers)
    x = torch.randn(n_inputs, *spec.input_shape(width), generator=g, dtype=torch.float64)
    with torch.no_grad():
        jac = body_jacobian(net, x)
    sv = torch.linalg.svdvals(jac)
    assert claim.checkable, f"{spec.name} states no claim"
    violations = claim.violations(sv, atol=ATOL * max(1, depth))
    assert not violations, f"{spec.name} width={width} depth={depth} policy={policy}: {violations}"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("width", (4, 16, 64))
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_single_layer_claim(name: str, width: int, policy: str) -> None:
    spec = LAYERS[name]
    if width < spec.min_width:
        pytest.skip(f"{name} needs width ≥ {spec.min_width}")
    _check(spec, width, 1, policy, seed=width)


DEEPEST = ("ortho_residual_relu", "ortho_feedforward_abs", "limit_residual", "pso_channels")


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_deep_composition_claim(name: str) -> None:
    """The composed claim (orthogonal stays orthogonal, a persistent subspace keeps its unit singular
    values, interval bounds multiply) at depth 500 (width 4) for the main families, depth 100 for the
    variants, and depth 30 at width 16."""
    spec = LAYERS[name]
    for width, depth in ((4, 500 if name in DEEPEST else 100), (16, 30)):
        if width >= spec.min_width:
            _check(spec, width, depth, "exact" if depth < 100 else "init", seed=depth, n_inputs=2)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(LAYERS)), width=st.integers(2, 24), depth=st.integers(1, 30),
       policy=st.sampled_from(POLICIES), seed=st.integers(0, 2**16))
def test_claims_random_shapes(name: str, width: int, depth: int, policy: str, seed: int) -> None:
    spec = LAYERS[name]
    width = max(width, spec.min_width)
    _check(spec, width, depth, policy, seed, n_inputs=2)


def test_registry_is_not_empty_and_every_layer_claims_something() -> None:
    assert len(LAYERS) >= 10
    g = torch.Generator().manual_seed(0)
    for name, spec in LAYERS.items():
        assert spec.build(8, "init", g).jacobian_claim.checkable, name
