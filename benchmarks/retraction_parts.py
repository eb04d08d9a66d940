"""What the parts of the polar retraction (orthojac/nn/orthogonal.py) buy, each measured against the same code
without it, in one process:

* ``step / init``: one Adam step of the depth-100 tanh MLP of benchmark (a) under ``exact``, as a ratio to
  ``init``, with the reused workspace (``workspace``) and with every temporary allocated afresh
  (``fresh buffers``: the workspace bound set to 0), timed interleaved;
* ``‖WᵀW − I‖₂ after``: the float32 error (measured in float64) of one retraction of a batch of orthogonal
  matrices plus a perturbation of the size Adam leaves, with and without the refinement of the Gram diagonal
  before the last Newton–Schulz step;
* ``diagonal error``: max |computed − exact| of ‖yᵢ‖² − 1 on such a batch after one Newton–Schulz step, by
  the float32 matrix product (the Gram matrix's diagonal), by ``vector_norm(y, dim=-2)`` and by the
  elementwise square and ``sum(-2)`` that ``_refine_diagonal_`` uses;
* ``retraction / product``: the time of one retraction of a batch of orthogonal matrices plus an Adam-sized
  step (lr 1e-3 on every entry: ‖E‖_F ≈ 0.36 / 0.72 / 1.45 at n = 256 / 512 / 1024, ‖E‖₂ ≈ 0.05–0.09), in units
  of one batched n×n product of the same batch timed in the same rounds, with the stopping rule's tighter
  bound ‖E‖₂ ≤ ‖E²‖_F^{1/2} (``E² bound``) and with ‖E‖_F alone (``‖E‖_F only``: what the rule used before;
  past ‖E‖_F ≥ ½ it sends the matrix to QR);
* ``norm of the step's E``: for that batch, the largest ‖E‖_F, ‖E‖₂ and ‖E²‖_F^{1/2} (float64), E = XᵀX − I.
"""

from __future__ import annotations

import threading

import _bench
import torch
import torch.nn.functional as F
from orthogonal_policy import build, spectral_error

import orthojac.nn.orthogonal as orth


def step_ratios(width: int, depth: int, batch: int, repeats: int, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(batch, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    nets = {v: build("tanh", "init" if v == "init" else "exact", width, depth, device)
            for v in ("init", "workspace", "fresh buffers")}
    opts = {v: torch.optim.Adam(n.parameters(), 1e-3) for v, n in nets.items()}

    def step(v: str) -> None:
        saved = orth._WORKSPACE, orth._WORKSPACE_ENTRIES
        if v == "fresh buffers":
            orth._WORKSPACE, orth._WORKSPACE_ENTRIES = threading.local(), 0
        try:
            opts[v].zero_grad(set_to_none=True)
            F.cross_entropy(nets[v](x), y).backward()
            opts[v].step()
        finally:
            orth._WORKSPACE, orth._WORKSPACE_ENTRIES = saved

    t = _bench.interleaved_median({v: (lambda v=v: step(v)) for v in nets}, repeats, device)
    return [{"measure": "step / init", "width": width, "variant": v, "value": t[v] / t["init"]}
            for v in ("workspace", "fresh buffers")]


def _batch(n: int, count: int, g: torch.Generator) -> torch.Tensor:
    """Orthogonal n×n matrices (float64) plus a perturbation with ‖E‖_F ≈ 0.1–0.4, Adam's size at lr 1e-3."""
    q = orth.orthogonal_init_(torch.empty(count, n, n, dtype=torch.float64), "qr", g)
    return q + 1.6e-2 / n**0.5 * torch.randn(q.shape, generator=g, dtype=torch.float64)


def accuracy(n: int, count: int) -> list[dict]:
    g = torch.Generator().manual_seed(n)
    x = _batch(n, count, g).float()
    rows = []
    refine = orth._refine_diagonal_
    for variant, fn in (("refined diagonal", refine), ("no refinement", lambda e, y, scratch: e)):
        orth._refine_diagonal_ = fn
        try:
            ws = [xi.clone() for xi in x]
            orth.retract_(ws)
        finally:
            orth._refine_diagonal_ = refine
        rows.append({"measure": "‖WᵀW − I‖₂ after", "width": n, "variant": variant,
                     "value": spectral_error(torch.stack(ws))})
    e = x.mT @ x - torch.eye(n)
    y = torch.baddbmm(x, x, e, alpha=-0.5)  # one Newton–Schulz step: the iterate the last step sees
    exact = (y.double() ** 2).sum(-2) - 1
    for variant, d in (("matrix product", torch.bmm(y.mT, y).diagonal(dim1=-2, dim2=-1) - 1),
                       ("vector_norm(dim=-2)", torch.linalg.vector_norm(y, dim=-2).square() - 1),
                       ("square + sum(-2)", (y * y).sum(-2) - 1)):
        rows.append({"measure": "diagonal error", "width": n, "variant": variant,
                     "value": float((d.double() - exact).abs().max())})
    return rows


def bound_costs(n: int, repeats: int, device: torch.device) -> list[dict]:
    g = torch.Generator().manual_seed(n)
    count = max(2, orth._CHUNK_BYTES // (4 * n * n))  # one chunk (two single matrices past 1024)
    q = orth.orthogonal_init_(torch.empty(count, n, n), "qr", g).to(device)
    x = q + 1e-3 * torch.randn(q.shape, generator=g).sign().to(device)
    ws = [xi.clone() for xi in x]
    out = torch.empty_like(x)
    square = orth._square

    def frobenius_only(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e2, _ = square(e)
        return e2, torch.full(e.shape[:1], float("inf"), dtype=e.dtype, device=e.device)

    def retract(fn) -> None:
        torch._foreach_copy_(ws, list(x.unbind(0)))
        orth._square = fn
        try:
            orth.retract_(ws)
        finally:
            orth._square = square

    t = _bench.interleaved_median({"product": lambda: torch.bmm(x, x, out=out),
                                   "E² bound": lambda: retract(square),
                                   "‖E‖_F only": lambda: retract(frobenius_only)}, repeats, device)
    e = x.double().mT @ x.double() - torch.eye(n, dtype=torch.float64, device=x.device)  # the step's E
    norms = {"‖E‖_F": torch.linalg.matrix_norm(e), "‖E‖₂": torch.linalg.eigvalsh(e).abs().amax(-1),
             "‖E²‖_F^½": torch.linalg.matrix_norm(e @ e).sqrt()}
    return [{"measure": "retraction / product", "width": n, "variant": v, "value": t[v] / t["product"]}
            for v in ("E² bound", "‖E‖_F only")] + \
           [{"measure": "norm of the step's E", "width": n, "variant": k, "value": float(v.max())}
            for k, v in norms.items()]


def main() -> None:
    def add(p):
        p.add_argument("--width", type=int, default=64, help="width of the timed tanh MLP")
        p.add_argument("--depth", type=int, default=100)
        p.add_argument("--batch", type=int, default=128)
        p.add_argument("--sizes", default="64,256,1024", help="matrix sizes of the accuracy part (comma list)")
        p.add_argument("--bound-sizes", default="256,512,1024", help="matrix sizes of the bound part (comma list)")
    args = _bench.parse_args(__doc__, add)
    device = _bench.setup(args.device, threads=args.threads)
    clock = _bench.Clock()
    rows = step_ratios(args.width, args.depth, args.batch, args.repeats or 15, device)
    for n in (int(v) for v in args.sizes.split(",") if v):
        rows += accuracy(n, 16 if n <= 256 else 3)
    for n in (int(v) for v in args.bound_sizes.split(",") if v):
        rows += bound_costs(n, args.repeats or 15, device)
    for r in rows:
        print(f"{r['measure']:20s} n={r['width']:5d} {r['variant']:22s} {r['value']:.3g}", flush=True)
    notes = (f"Timing: tanh MLP width {args.width}, depth {args.depth}, batch {args.batch}, one Adam step, median "
             f"of {args.repeats or 15} interleaved rounds; `value` = time / time of `init`. Accuracy (float32 "
             "matrices, errors in float64): a batch of orthogonal matrices plus a perturbation of Adam's size "
             "(‖E‖_F ≈ 0.1–0.4); `value` = the largest error in the batch. Bound: one retraction of a chunk of "
             "orthogonal matrices (16 at n = 256, 4 at 512, 2 at 1024) plus lr 1e-3·sign(noise), Adam's first "
             "step; `value` = its time / the time of one batched n×n product of that chunk (median of the same "
             "rounds).")
    _bench.write_results("retraction_parts", "Retraction parts: workspace, diagonal refinement, E² bound", rows,
                         ["measure", "width", "variant", "value"], device, args.mode, notes, clock, args.no_write)


if __name__ == "__main__":
    main()
