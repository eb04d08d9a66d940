"""The claim vocabulary itself: checks that can fail, and composition rules."""

import pytest
import torch

from orthojac import claims


def test_orthogonal_claim_detects_non_orthogonal() -> None:
    assert claims.orthogonal().holds(torch.ones(1, 4))
    bad = torch.tensor([[1.0, 1.0, 1.0, 1.0 + 1e-6]])
    assert not claims.orthogonal().holds(bad, atol=1e-9)
    assert claims.orthogonal().holds(bad, atol=1e-5)


def test_partial_isometry_and_persistent_subspace() -> None:
    s = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert claims.partial_isometry().holds(s)
    assert not claims.partial_isometry().holds(torch.tensor([[1.0, 0.5]]))
    assert claims.persistent_subspace(2).holds(s)
    assert not claims.persistent_subspace(3).holds(s)


def test_near_orthogonal_bounds_and_validation() -> None:
    c = claims.near_orthogonal(0.1)
    assert c.holds(torch.tensor([[1.09, 0.91]]))
    assert not c.holds(torch.tensor([[1.11, 1.0]]))
    with pytest.raises(ValueError, match="eps"):
        claims.near_orthogonal(1.5)


def test_compose_rules() -> None:
    o, p = claims.orthogonal(), claims.partial_isometry()
    assert claims.compose([o, o, o]).name == "orthogonal"
    n = claims.compose([claims.near_orthogonal(0.1)] * 2)
    assert n.lo == pytest.approx(0.81) and n.hi == pytest.approx(1.21)
    assert claims.compose([p, p]).name == "contraction"
    ps = claims.compose([claims.persistent_subspace(3), o, claims.persistent_subspace(5)])
    assert ps.name == "persistent_subspace" and ps.min_unit == 3 and ps.discrete is None
    assert not claims.compose([o, claims.no_claim()]).checkable
    assert claims.compose([]).name == "orthogonal"
