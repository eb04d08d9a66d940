"""Persistent subspace orthogonality and limit layers: the layer math (float64, jacrev), the measurement
helpers, and the two reproduction runners on tiny settings (docs/pso.md, docs/limit.md)."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from orthojac.experiments import common, jacobians, limit, pso
from orthojac.models import create_model
from orthojac.nn import PersistentSubspace, randomize_
from tests.conftest import body_jacobian


def _stack(width: int, r: int, depth: int, strategy: str = "channels", seed: int = 0, **kw) -> torch.nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Sequential(*[PersistentSubspace(width, r, strategy, generator=g, **kw)
                                 for _ in range(depth)]).double()


@pytest.mark.parametrize("policy", ["init", "exact"])
def test_channels_layer_maps_v_isometrically_at_random_parameters(policy: str, gen: torch.Generator) -> None:
    layer = PersistentSubspace(10, 3, "channels", orthogonal=policy, generator=gen).double()
    randomize_(layer, gen, scale=2.0)  # biases far from initial values, fresh orthogonal blocks
    x = 3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)
    j = body_jacobian(layer, x)
    e = layer.persistent_basis()
    m = layer.subspace_map().detach()
    assert e.shape == (10, 3) and torch.equal(e.T @ e, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(j @ e, (e @ m).expand(16, -1, -1), atol=1e-12)  # DF·E = E·M: V → V
    assert torch.allclose(m.T @ m, torch.eye(3, dtype=torch.float64), atol=1e-12)  # … isometrically
    assert torch.allclose(j.mT @ e, (e @ m.T).expand(16, -1, -1), atol=1e-12)  # and Jᵀ maps V back onto V


def test_bias_strategy_is_isometric_on_v_exactly_where_reserved_units_are_active(gen: torch.Generator) -> None:
    layer = PersistentSubspace(8, 2, "bias", bias_margin=1.0, generator=gen).double()
    x = torch.randn(32, 8, generator=gen, dtype=torch.float64)
    x[:4, 0] = -2.0  # below −margin: reserved unit 0 is off for these inputs
    active = layer.reserved_active(x)
    assert not active[:4].any() and active[4:].sum() >= 10  # both regimes exercised
    j = body_jacobian(layer, x)
    e = layer.persistent_basis()
    for i in range(len(x)):
        m = layer.subspace_map(x[i]).detach()
        assert torch.allclose(j[i] @ e, e @ m, atol=1e-12)
        iso = torch.allclose(m.T @ m, torch.eye(2, dtype=torch.float64), atol=1e-12)
        assert iso == bool(active[i])
    # at initialisation the layer is the identity on V where active (A_r = B_r = I, c_r = −margin)
    assert torch.allclose(layer(x[active])[:, :2], x[active, :2], atol=1e-12)


def test_gradient_norm_survives_exactly_on_v_and_nowhere_else() -> None:
    """‖Jᵀg‖ = ‖g‖ for g ∈ V at depth 100; g ⊥ V is crushed; without a persistent subspace all of it is."""
    width, r, depth = 12, 3, 100
    x = torch.randn(4, width, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = torch.randn(4, width, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    in_v, out_v = g.clone(), g.clone()
    in_v[:, r:] = 0
    out_v[:, :r] = 0
    j = jacobians.prefix_jacobians(list(_stack(width, r, depth)), x, [depth])[depth]
    assert torch.allclose(jacobians.gradient_norm_ratio(j, in_v), torch.ones(4, dtype=torch.float64), atol=1e-12)
    assert jacobians.gradient_norm_ratio(j, out_v).max() < 1e-3
    sv = torch.linalg.svdvals(j)
    assert torch.equal(jacobians.unit_count(sv), torch.full((4,), r))
    j0 = jacobians.prefix_jacobians(list(_stack(width, 0, depth)), x, [depth])[depth]
    assert jacobians.gradient_norm_ratio(j0, g).max() < 1e-3  # r = 0: every direction collapses


def test_prefix_jacobians_match_jacrev_of_the_prefix(gen: torch.Generator) -> None:
    stack = _stack(6, 2, 7, "bias")
    randomize_(stack, gen, scale=0.3)
    x = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    got = jacobians.prefix_jacobians(list(stack), x, [2, 7])
    assert torch.allclose(got[2], body_jacobian(stack[:2], x), atol=1e-12)
    assert torch.allclose(got[7], body_jacobian(stack, x), atol=1e-12)
    with pytest.raises(ValueError, match="depths must lie in"):
        jacobians.prefix_jacobians(list(stack), x, [8])


def test_model_builder_exposes_r_for_both_strategies() -> None:
    for strategy in ("channels", "bias"):
        m = create_model(f"pso_{strategy}", 20, 3, width=16, depth=3, r=5)
        assert all(b.r == 5 and b.strategy == strategy for b in m.blocks)
        assert create_model(f"pso_{strategy}", 20, 3, width=16, depth=1).blocks[0].r == 2  # default n // 8
    with pytest.raises(ValueError, match=r"need 0 ≤ r ≤ dim"):
        create_model("pso_bias", 20, 3, width=16, depth=1, r=17)
    with pytest.raises(ValueError, match="slopes"):
        PersistentSubspace(8, 2, activation="abs")
    with pytest.raises(ValueError, match="bias_margin must be > 0"):
        PersistentSubspace(8, 2, "bias", bias_margin=0.0)


def _args(tmp_path, **kw) -> argparse.Namespace:
    base = dict(mode="quick", out=tmp_path / "results", figures=tmp_path / "figures", device="cpu")
    return argparse.Namespace(**{**base, **kw})


def test_pso_gradient_flow_runner_meets_the_done_when_criterion(tmp_path, monkeypatch) -> None:
    tiny = {**pso.MODES["quick"], "width": 8, "depths": (200,), "n_inputs": 2}
    monkeypatch.setitem(pso.MODES, "quick", tiny)
    assert pso.run(_args(tmp_path, part="flow", policy=None)) == 0
    rows = common.read_csv(tmp_path / "results" / "pso.csv")
    assert set(pso.FLOW_COLUMNS) <= set(rows[0])
    assert {int(r["r"]) for r in rows if r["strategy"] == "channels"} == {0, 1, 4}  # {0, 1, 4, 16, n/2} ∩ [0, n]
    for row in rows:
        r, depth, ratio = int(row["r"]), int(row["depth"]), float(row["grad_norm_ratio"])
        if row["strategy"] == "orthogonal":
            assert math.isclose(ratio, 1.0, abs_tol=1e-9)
        elif row["strategy"] == "rotated" and depth == 200:
            assert ratio < 1e-2 and float(row["n_unit_sv"]) == 0  # isometric subspaces that don't persist
        elif depth == 200 and row["loss"] == "aligned":
            assert (0.5 <= ratio <= 2.0) if r >= 1 else ratio < 1e-2
        if row["strategy"] == "channels":
            assert float(row["n_unit_sv"]) == r
    assert (tmp_path / "figures" / "pso_gradient_flow.png").stat().st_size > 0
    assert "grad_norm_ratio" in (tmp_path / "results" / "pso.md").read_text()


def _fashion_mnist_available() -> bool:
    try:
        jacobians.load_image_data("fashion-mnist", 10, 10)
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST files not found")
def test_limit_runner_bound_holds_under_exact_policy(tmp_path, monkeypatch) -> None:
    tiny = dict(width=8, depths=(3,), n_train=256, n_test=64, epochs=1, n_inputs=16, seeds=(0,))
    monkeypatch.setitem(limit.MODES, "quick", tiny)
    monkeypatch.setattr(limit, "EPS", (0.0, 0.3))
    assert limit.run(_args(tmp_path, policies=["exact"])) == 0
    rows = common.read_csv(tmp_path / "results" / "limit.csv")
    assert set(limit.COLUMNS) <= set(rows[0]) and len(rows) == 4  # 2 eps × (init, trained)
    for row in rows:
        eps = float(row["eps"])
        assert 1 - eps - 1e-9 <= float(row["sv_min"]) <= float(row["sv_max"]) <= 1 + eps + 1e-9
        assert (1 - eps) ** 3 - 1e-9 <= float(row["body_sv_min"]) <= float(row["body_sv_max"]) <= (1 + eps) ** 3 + 1e-9
        assert 0.0 <= float(row["test_acc"]) <= 1.0
        if eps == 0.3:
            assert float(row["sv_max"]) - float(row["sv_min"]) > 0.01  # the modulation is really there
    assert (tmp_path / "figures" / "limit.png").stat().st_size > 0


@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST files not found")
def test_pso_training_runner_writes_the_accuracy_table(tmp_path, monkeypatch) -> None:
    tiny = {**pso.MODES["quick"], "width": 8, "train_depths": (6,), "train_rs": (2,), "n_train": 128, "n_test": 64,
            "epochs": 1}
    monkeypatch.setitem(pso.MODES, "quick", tiny)
    assert pso.run(_args(tmp_path, part="train", policy=None)) == 0
    rows = common.read_csv(tmp_path / "results" / "pso_train.csv")
    assert set(pso.TRAIN_COLUMNS) <= set(rows[0])
    arms = {(r["arch"], r["strategy"], int(r["r"])): r for r in rows}
    assert set(arms) == {("plain_relu", "plain", 0), ("ortho_residual_relu", "orthogonal", 8),
                         ("pso_channels", "none", 0), ("pso_channels", "channels", 2), ("pso_bias", "bias", 2)}
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)
    assert math.isclose(float(arms["ortho_residual_relu", "orthogonal", 8]["grad_ratio_init"]), 1.0, abs_tol=1e-5)
    assert float(arms["pso_channels", "none", 0]["grad_ratio_init"]) < 1.0  # partial isometries only shrink
    assert 0.0 <= float(arms["pso_bias", "bias", 2]["reserved_active_frac"]) <= 1.0
    assert (tmp_path / "figures" / "pso_train.png").stat().st_size > 0


@pytest.mark.parametrize("name, cls, attr", [("fmnist_mlp_pso", "PersistentSubspace", ("r", 8)),
                                             ("fmnist_mlp_limit", "LimitLayer", ("eps", 0.05))])
def test_example_configs_build_the_documented_models(name: str, cls: str, attr: tuple) -> None:
    from pathlib import Path

    from orthojac.models import build_model
    from orthojac.train import load_config

    m = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml").model
    net = build_model(m.body, m.arch, (1, 28, 28), 10, m.width, 2, m.policy, 0, **m.kwargs)
    layer = net.body[0]
    assert cls in type(layer).__name__ and getattr(layer, attr[0]) == attr[1]
