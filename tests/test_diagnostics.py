"""orthojac.diagnostics: spectra against dense SVD (MLPs, CNNs, plain callables), analytic spectra,
Lanczos extremes, batching, errors; gradient norms against hand-written backprop; orthogonality defect."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orthojac.diagnostics import (
    default_blocks,
    gradient_norms,
    jacobian_spectrum,
    lanczos_singular_values,
    orthogonality_defect,
)
from orthojac.models import create_body, create_model

D = torch.float64


def dense_svd(fn, x: torch.Tensor) -> torch.Tensor:
    """Reference: one sample at a time, torch.autograd.functional.jacobian, then svdvals (descending)."""
    out = []
    for i in range(x.shape[0]):
        j = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0)).reshape(-1), x[i])
        out.append(torch.linalg.svdvals(j.reshape(j.shape[0], -1)))
    return torch.stack(out)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def mlp(sizes: list[int], act: type[nn.Module] = nn.Tanh, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1]).to(D)


def linear_with_singular_values(s: torch.Tensor, rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=gen, dtype=D))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=gen, dtype=D))
    m = torch.zeros(rows, cols, dtype=D)
    m[range(len(s)), range(len(s))] = s
    return u @ m @ v.T


# --- exact spectra against dense SVD ------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[12, 20, 12], [16, 30, 9], [7, 25, 18]])  # square, wide-out, tall-out
def test_exact_matches_dense_svd_mlp(sizes: list[int]) -> None:
    net = mlp(sizes, nn.ReLU)
    x = torch.randn(3, sizes[0], dtype=D)
    res = jacobian_spectrum(net, x, method="exact")
    ref = dense_svd(net, x)
    assert res.singular_values.shape == (3, min(sizes[0], sizes[-1]))
    assert rel_err(res.singular_values, ref) < 1e-12
    assert res.method == "exact" and res.complete
    assert (res.singular_values[:, :-1] >= res.singular_values[:, 1:]).all()


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_exact_matches_dense_svd_cnn(mode: str) -> None:
    torch.manual_seed(1)
    cnn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, stride=2), nn.Softplus(),
                        nn.Flatten(), nn.Linear(3 * 2 * 2, 10)).to(D)
    x = torch.randn(2, 2, 6, 6, dtype=D)
    res = jacobian_spectrum(cnn, x, method="exact", mode=mode)
    assert res.in_dim == 72 and res.out_dim == 10
    assert rel_err(res.singular_values, dense_svd(cnn, x)) < 1e-12


def test_exact_spatial_output_cnn() -> None:
    """Multi-dimensional outputs are flattened per sample too."""
    torch.manual_seed(2)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.GELU(), nn.Conv2d(2, 1, 3, padding=1)).to(D)
    x = torch.randn(2, 1, 5, 5, dtype=D)
    res = jacobian_spectrum(cnn, x, method="exact")
    assert res.singular_values.shape == (2, 25)
    assert rel_err(res.singular_values, dense_svd(cnn, x)) < 1e-12


# --- analytic cases -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols", [(10, 10), (14, 9), (8, 13)])
def test_linear_map_with_chosen_singular_values(rows: int, cols: int, gen: torch.Generator) -> None:
    n = min(rows, cols)
    s = torch.logspace(1, -3, n, dtype=D)
    m = linear_with_singular_values(s, rows, cols, gen)
    x = torch.randn(2, cols, dtype=D, generator=gen)
    res = jacobian_spectrum(lambda v: v @ m.T, x, method="exact")
    assert torch.allclose(res.singular_values, s.expand(2, n), rtol=1e-12, atol=0)
    lz = jacobian_spectrum(lambda v: v @ m.T, x, method="lanczos", k=2)
    expected = torch.cat([s[:2], s[-2:]]).expand(2, 4)
    assert torch.allclose(lz.singular_values, expected, rtol=1e-9, atol=0)
    assert torch.allclose(lz.condition_number(), torch.full((2,), 1e4, dtype=D), rtol=1e-9)


def test_rank_deficient_linear_map(gen: torch.Generator) -> None:
    """Exact zeros are found by both methods (Lanczos breakdown on α = 0 continues with a fresh vector)."""
    s = torch.tensor([3.0, 2.0, 1.0, 0.0, 0.0, 0.0], dtype=D)
    m = linear_with_singular_values(s, 6, 6, gen)
    x = torch.randn(1, 6, dtype=D, generator=gen)
    lz = jacobian_spectrum(lambda v: v @ m.T, x, method="lanczos", k=3)
    assert torch.allclose(lz.singular_values[0], s, atol=1e-12)


def test_plain_callable_elementwise() -> None:
    """f(x) = sin(x) ⊙ w has the diagonal Jacobian diag(w cos x): singular values |w_i cos x_i|."""
    w = torch.linspace(0.5, 2.0, 9, dtype=D)
    x = torch.randn(4, 9, dtype=D)
    res = jacobian_spectrum(lambda v: torch.sin(v) * w, x)
    expected = (w * torch.cos(x)).abs().sort(dim=-1, descending=True).values
    assert torch.allclose(res.singular_values, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("family", ["ortho_feedforward_abs", "ortho_residual_relu", "ortho_feedforward_sigma_k"])
@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_orthogonal_bodies_give_all_ones(family: str, method: str) -> None:
    body = create_body(family, width=12, depth=40, seed=3).to(D)
    x = 2 * torch.randn(3, 12, dtype=D)
    res = jacobian_spectrum(body, x, method=method, k=3 if method == "lanczos" else None)
    assert (res.singular_values - 1).abs().max() < 1e-10


def test_exact_policy_parametrised_body() -> None:
    body = create_body("ortho_feedforward_abs", width=8, depth=10, policy="exact", seed=4).to(D)
    x = torch.randn(2, 8, dtype=D)
    assert (jacobian_spectrum(body, x, "exact").singular_values - 1).abs().max() < 1e-10
    assert (jacobian_spectrum(body, x, "lanczos", k=2).singular_values - 1).abs().max() < 1e-10


# --- batching -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_batch_equals_one_sample_at_a_time(method: str) -> None:
    net = mlp([10, 16, 16, 10])
    x = torch.randn(5, 10, dtype=D)
    together = jacobian_spectrum(net, x, method, k=2).singular_values
    alone = torch.cat([jacobian_spectrum(net, x[i:i + 1], method, k=2).singular_values for i in range(5)])
    assert torch.allclose(together, alone, rtol=1e-10, atol=0)
    assert together.shape == (5, 4)


# --- Lanczos --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[40, 60, 40], [50, 64, 30], [30, 64, 45]])
def test_lanczos_extremes_match_dense(sizes: list[int]) -> None:
    net = mlp(sizes, nn.Tanh, seed=5)
    x = torch.randn(2, sizes[0], dtype=D)
    ref = dense_svd(net, x)
    res = lanczos_singular_values(net, x, k=3)
    expected = torch.cat([ref[:, :3], ref[:, -3:]], dim=-1)
    assert res.singular_values.shape == (2, 6)
    assert rel_err(res.singular_values, expected) < 1e-8
    assert res.info["converged"].all()
    assert (res.info["residuals"] <= res.info["tol"] * res.largest[:, None] + 1e-300).all()


def test_lanczos_stops_early_on_a_clustered_spectrum() -> None:
    """Near-isometric maps converge in far fewer than N iterations (never forming J)."""
    body = create_body("limit", width=300, depth=20, seed=6).to(D)
    x = torch.randn(1, 300, dtype=D)
    res = lanczos_singular_values(body, x, k=2, tol=1e-8)
    assert res.info["iterations"] < 300 and not res.complete
    ref = jacobian_spectrum(body, x, "exact").singular_values  # checked against dense SVD above
    expected = torch.cat([ref[:, :2], ref[:, -2:]], dim=-1)
    assert rel_err(res.singular_values, expected) < 1e-6


def test_lanczos_float32_close_to_float64() -> None:
    net = mlp([20, 32, 20], nn.Tanh, seed=7)
    x = torch.randn(2, 20, dtype=D)
    ref = jacobian_spectrum(net, x, "lanczos", k=2).singular_values
    s32 = jacobian_spectrum(net.float(), x.float(), "lanczos", k=2).singular_values
    e32 = jacobian_spectrum(net, x.float(), "exact", k=2).singular_values
    assert s32.dtype == torch.float32
    assert rel_err(s32.double(), ref) < 1e-4 and rel_err(e32.double(), ref) < 1e-4


def test_exact_with_k_returns_extremes() -> None:
    net = mlp([12, 12])
    x = torch.randn(1, 12, dtype=D)
    full = jacobian_spectrum(net, x, "exact").singular_values
    part = jacobian_spectrum(net, x, "exact", k=2)
    assert torch.equal(part.singular_values, torch.cat([full[:, :2], full[:, -2:]], dim=-1))
    assert not part.complete


def test_auto_chooses_by_memory() -> None:
    net = mlp([10, 10])
    x = torch.randn(2, 10, dtype=D)
    assert jacobian_spectrum(net, x).method == "exact"
    assert jacobian_spectrum(net, x, max_memory=100, k=2).method == "lanczos"
    assert jacobian_spectrum(net, x, max_exact_dim=5, k=2).method == "lanczos"


def test_unseen_model_done_when() -> None:
    """The issue's acceptance test: a model used nowhere else (layer norm, gating, skip, sine) matches dense
    SVD to 1e-8 relative in float64, and its matrix-free extremes to 1e-4."""

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(24, 32), nn.Linear(24, 32), nn.Linear(32, 20)
            self.norm = nn.LayerNorm(24)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm(x)
            return self.c(torch.sigmoid(self.a(h)) * torch.sin(self.b(h))) + 0.5 * x[:, :20]

    torch.manual_seed(8)
    model = Gated().to(D)
    x = torch.randn(3, 24, dtype=D)
    ref = dense_svd(model, x)
    assert rel_err(jacobian_spectrum(model, x, "exact").singular_values, ref) < 1e-8
    lz = jacobian_spectrum(model, x, "lanczos", k=3).singular_values
    rel = (lz - torch.cat([ref[:, :3], ref[:, -3:]], dim=-1)).abs() / torch.cat([ref[:, :3], ref[:, -3:]], dim=-1)
    assert rel.max() < 1e-4


# --- errors ---------------------------------------------------------------------------------------------

def test_clear_errors() -> None:
    net = mlp([5, 5])
    x = torch.randn(2, 5, dtype=D)
    with pytest.raises(ValueError, match="batch dimension"):
        jacobian_spectrum(net, torch.randn(5, dtype=D))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, .*5\]"):
        jacobian_spectrum(net, x, "lanczos", k=6)
    with pytest.raises(ValueError, match=r"k must be an integer"):
        jacobian_spectrum(net, x, "exact", k=0)
    with pytest.raises(ValueError, match="not differentiable|does not depend differentiably"):
        jacobian_spectrum(lambda v: v.argmax(-1, keepdim=True), x)
    with pytest.raises(ValueError, match="does not depend differentiably"):
        jacobian_spectrum(lambda v: v.detach() * 2, x)
    with pytest.raises(ValueError, match="dtype mismatch"):
        jacobian_spectrum(net, x.float())
    with pytest.raises(ValueError, match="dtype"):
        jacobian_spectrum(lambda v: v @ torch.ones(5, 5, dtype=D), x.float())
    with pytest.raises(ValueError, match="floating point"):
        jacobian_spectrum(net, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="method must be one of"):
        jacobian_spectrum(net, x, method="svd")
    with pytest.raises(ValueError, match="keep the batch dimension"):
        jacobian_spectrum(lambda v: v.sum(), x)


# --- gradient norms -------------------------------------------------------------------------------------

def manual_profile(model, x, y):
    h = model.stem(x).detach().requires_grad_(True)
    acts = [h]
    for block in model.body:
        h = block(h)
        h.retain_grad()
        acts.append(h)
    loss = F.cross_entropy(model.head(h), y)
    loss.backward()
    out = ([a.grad.norm(dim=-1).mean().item() for a in acts],
           [math.sqrt(sum(p.grad.pow(2).sum().item() for p in b.parameters())) for b in model.body])
    model.zero_grad(set_to_none=True)
    return out


def test_gradient_norms_match_manual_backprop() -> None:
    model = create_model("plain_tanh_orth", 6, 3, width=10, depth=5, seed=9).to(D)
    x, y = torch.randn(8, 6, dtype=D), torch.randint(0, 3, (8,))
    g = gradient_norms(model, F.cross_entropy, (x, y))
    acts, params = manual_profile(model, x, y)
    assert len(g.activation) == 6 and len(g.parameter) == 5 and g.names[0] == "body.0"
    assert torch.allclose(torch.tensor(g.activation), torch.tensor(acts), rtol=1e-12)
    assert torch.allclose(torch.tensor(g.parameter), torch.tensor(params), rtol=1e-12)
    assert g.ratio == pytest.approx(acts[0] / acts[-1], rel=1e-12)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched


def test_gradient_norms_orthogonal_body_keeps_norm() -> None:
    """Orthogonal block Jacobians: ‖∂L/∂x_ℓ‖ is the same for every ℓ, per sample (ratio 1)."""
    model = create_model("ortho_feedforward_abs", 6, 3, width=10, depth=30, seed=10).to(D)
    x, y = torch.randn(4, 6, dtype=D), torch.randint(0, 3, (4,))
    g = gradient_norms(model, F.cross_entropy, (x, y))
    ps = g.activation_per_sample
    assert ps.shape == (31, 4)
    assert ((ps - ps[-1]).abs() / ps[-1]).max() < 1e-12
    assert g.ratio == pytest.approx(1.0, abs=1e-12)


def test_gradient_norms_block_selection() -> None:
    torch.manual_seed(11)
    seq = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)).to(D)
    x = torch.randn(5, 4, dtype=D)  # raw data (no requires_grad) entering the first block is fine
    # default on a model without .body: its top-level children
    g_all = gradient_norms(seq, lambda out: out.pow(2).sum(), x)
    assert [n for n, _ in default_blocks(seq)] == ["0", "1", "2", "3", "4"] and len(g_all.activation) == 6
    g_list = gradient_norms(seq, lambda out: out.pow(2).sum(), x, blocks=[seq[2], seq[3]])
    g_pred = gradient_norms(seq, lambda out: out.pow(2).sum(), x,
                            blocks=lambda m: isinstance(m, nn.Tanh))
    assert g_list.names == ["2", "3"] and g_pred.names == ["1", "3"]
    assert g_list.activation[1:] == g_all.activation[3:5]
    assert g_pred.activation == [g_all.activation[i] for i in (1, 2, 4)]
    assert g_pred.parameter == [0.0, 0.0]


def test_gradient_norms_errors() -> None:
    shared = nn.Linear(3, 3).to(D)
    twice = nn.Sequential(shared, nn.Tanh(), shared).to(D)
    x = torch.randn(2, 3, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match="exactly once"):
        gradient_norms(twice, lambda o: o.sum(), x)
    with pytest.raises(ValueError, match="not found"):
        gradient_norms(twice, lambda o: o.sum(), x, blocks=[nn.Linear(3, 3)])
    with pytest.raises(ValueError, match="no blocks"):
        gradient_norms(twice, lambda o: o.sum(), x, blocks=lambda m: False)
    with pytest.raises(ValueError, match="scalar"):
        gradient_norms(nn.Sequential(nn.Linear(3, 3)).to(D), lambda o: o, x)
    emb = nn.Sequential(nn.Embedding(4, 3), nn.Linear(3, 3)).to(D)
    with pytest.raises(ValueError, match="not floating point"):
        gradient_norms(emb, lambda o: o.sum(), torch.tensor([[0, 1]]))


# --- orthogonality defect -------------------------------------------------------------------------------

def test_orthogonality_defect() -> None:
    model = create_model("ortho_feedforward_abs", 5, 2, width=8, depth=3, seed=12).to(D)
    d0 = orthogonality_defect(model)
    assert d0.count == 3 and d0.max < 1e-13  # tied Aᵀσ(Bx + b) with A = B: one constrained weight per layer
    w = model.body[1].weight_b
    with torch.no_grad():
        w.mul_(1.1)  # WWᵀ − I = 0.21 I: Frobenius norm 0.21·√8
    d1 = orthogonality_defect(model)
    assert d1.max == pytest.approx(0.21 * math.sqrt(8), rel=1e-12)
    assert d1.per_weight["body.1.weight_b"] == d1.max
    assert d1.mean == pytest.approx(d1.max / d1.count, rel=1e-9)


def test_orthogonality_defect_torch_parametrization_and_none() -> None:
    lin = nn.utils.parametrizations.orthogonal(nn.Linear(6, 4).to(D))
    d = orthogonality_defect(nn.Sequential(lin, nn.Tanh()))
    assert d.count == 1 and d.max < 1e-12
    empty = orthogonality_defect(nn.Linear(3, 3))
    assert empty.count == 0 and math.isnan(empty.max)


def test_attention_model_lanczos() -> None:
    """Fused attention kernels have no double backward; Lanczos runs attention on the MATH backend."""
    torch.manual_seed(13)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True,
                                       norm_first=True).to(D).eval()
    x = torch.randn(2, 3, 8, dtype=D)
    ref = dense_svd(layer, x)
    assert rel_err(jacobian_spectrum(layer, x, "exact").singular_values, ref) < 1e-10
    lz = jacobian_spectrum(layer, x, "lanczos", k=2).singular_values
    assert rel_err(lz, torch.cat([ref[:, :2], ref[:, -2:]], dim=-1)) < 1e-8


def test_orthogonality_defect_sees_orthogonal_convolutions() -> None:
    from orthojac.models import build_model
    from orthojac.nn import OrthogonalConv2d

    model = build_model("conv", "ortho_feedforward_abs", (1, 16, 16), 10, width=4, depth=3, policy="init")
    d0 = orthogonality_defect(model)
    assert d0.count == 3 and d0.max < 1e-5
    conv = next(m for m in model.modules() if isinstance(m, OrthogonalConv2d))
    with torch.no_grad():
        conv.weight.mul_(1.1)  # ‖𝓑𝓑ᵀ − I‖ of a 1.1× orthogonal operator: (1.21 − 1)·√C per frequency
    d1 = orthogonality_defect(model)
    assert d1.max == pytest.approx(0.21 * conv.channels ** 0.5, rel=1e-4)
