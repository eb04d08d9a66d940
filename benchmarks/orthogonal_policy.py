"""(a) What exact orthogonality costs: one Adam step (zero_grad, forward, loss, backward, step) of a deep body
under each way of keeping its weights orthogonal, as a ratio to the same network under ``orthogonal="init"``
(free weights, the plain-layer baseline), timed interleaved in one process.

Variants: ``init``; ``exact`` (orthojac's default exact map ``"riemannian"``: plain forward, batched
Newton–Schulz polar retraction after every step); ``exact_qr`` (the same with QR); ``exact_every4``
(retraction every 4th step: near-exact in between, see the max error column); PyTorch's
``parametrizations.orthogonal`` with ``cayley``, ``matrix_exp``, ``householder``; ``geotorch`` when installed;
``floor``: the ``init`` step followed by the least work any exact retraction of a full-rank update must do in
the weights' dtype: one batched Gram product G = WᵀW and one batched product W·G over all layers, in the
retraction's chunks of at most 4 MiB, as the retraction itself works (into buffers allocated once, results
thrown away, no iterations, no copies). A step cannot cost less under ``exact``: if ``floor`` is above a
target ratio, no exact method that reads and corrects the Gram matrix reaches it on that machine.
Networks: ``tanh`` (x ↦ tanh(Wx + b), W orthogonal) and ``residual`` (orthojac's OrthoResidual, W used twice).
``max_orth_err`` is the largest ‖WᵀW − I‖₂ over all layers, measured (float64) after every step taken.
"""

from __future__ import annotations

import importlib.util
import os

import _bench
import torch
import torch.nn.functional as F
from torch import nn

from orthojac.nn import OrthoResidual
from orthojac.nn.orthogonal import _CHUNK_BYTES, configure_retraction, constrained_weights, register_orthogonal

VARIANTS = {  # name → (policy, exact map, retraction schedule)
    "init": ("init", "riemannian", None),
    "exact": ("exact", "riemannian", {"every": 1, "method": "polar"}),
    "exact_qr": ("exact", "riemannian", {"every": 1, "method": "qr"}),
    "exact_every4": ("exact", "riemannian", {"every": 4, "method": "polar"}),
    "torch_cayley": ("exact", "cayley", None),
    "torch_matrix_exp": ("exact", "matrix_exp", None),
    "torch_householder": ("exact", "householder", None),
    "geotorch": ("init", "riemannian", None),
    "floor": ("init", "riemannian", None),
}


class TanhLayer(nn.Module):
    """x ↦ tanh(Wx + b) with W an orthogonal weight under the given policy (the issue's tanh MLP)."""

    def __init__(self, n: int, policy: str, exact_map: str, generator: torch.Generator) -> None:
        super().__init__()
        register_orthogonal(self, "weight", n, n, policy, "qr", exact_map, generator)
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.linear(x, self.weight, self.bias))


def build(arch: str, variant: str, width: int, depth: int, device: torch.device) -> nn.Module:
    policy, exact_map, schedule = VARIANTS[variant]
    g = torch.Generator().manual_seed(0)
    if arch == "tanh":
        layers = [TanhLayer(width, policy, exact_map, g) for _ in range(depth)]
    else:
        layers = [OrthoResidual(width, orthogonal=policy, orthogonal_map=exact_map, generator=g) for _ in range(depth)]
    if variant == "geotorch":
        import geotorch

        for layer in layers:
            geotorch.orthogonal(layer, "weight")
    net = nn.Sequential(*layers, nn.Linear(width, 10)).to(device)
    if schedule:
        configure_retraction(net, **schedule)
    return net


def spectral_error(w: torch.Tensor) -> float:
    """max over a batch of square matrices of ‖WᵀW − I‖₂, computed in float64 (eigenvalues of the symmetric
    WᵀW − I)."""
    w = w.detach().double()
    g = w.mT @ w
    return float(torch.linalg.eigvalsh(g - torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)).abs().max())


def orth_error(net: nn.Module) -> float:
    """max over layers of ‖WᵀW − I‖₂ (float64)."""
    with torch.no_grad():  # a parametrised weight is computed on access: no graph for it
        ws = [w for _, w in constrained_weights(net)] or [m.weight for m in net if hasattr(m, "parametrizations")]
        return spectral_error(torch.stack(ws))


def memory_gib(width: int, depth: int, names: list[str]) -> float:
    """Estimated peak memory of a row group: per variant the body's weights, their gradients and Adam's two
    moments (4 float32 copies), plus the floor's three stacks and the float64 error check (≈ 4 copies)."""
    body = depth * width * width * 4 / 2**30
    return body * (4 * len(names) + 3 * ("floor" in names) + 4)


def total_gib(device: torch.device) -> float:
    """The device's memory (GiB): the accelerator's, or the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1] / 2**30
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def measure(arch: str, width: int, depth: int, batch: int, names: list[str], repeats: int,
            device: torch.device) -> list[dict]:
    """One row group: every variant of one network, timed interleaved."""
    torch.manual_seed(0)
    x = torch.randn(batch, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    nets = {v: build(arch, v, width, depth, device) for v in names}
    opts = {v: torch.optim.Adam(n.parameters(), 1e-3) for v, n in nets.items()}
    worst = dict.fromkeys(names, 0.0)

    period = {v: (VARIANTS[v][2] or {}).get("every", 1) for v in names}
    floor = []  # the body's weights in chunks as the retraction takes them, and two outputs, allocated once
    if "floor" in names:
        w = torch.stack([w.detach() for _, w in constrained_weights(nets["floor"])])
        per = max(1, _CHUNK_BYTES // (w[0].numel() * w.element_size()))
        floor = [w.split(per), torch.empty_like(w[:per]), torch.empty_like(w[:per])]

    def step(v: str) -> None:  # one call = one retraction period (1 step, or k steps for every=k)
        for _ in range(period[v]):
            opts[v].zero_grad(set_to_none=True)
            F.cross_entropy(nets[v](x), y).backward()
            opts[v].step()
            if v == "floor":
                chunks, g, out = floor
                for w in chunks:
                    torch.bmm(w, torch.bmm(w.mT, w, out=g[:len(w)]), out=out[:len(w)])

    def after(v: str) -> None:
        if v not in ("init", "floor"):
            worst[v] = max(worst[v], orth_error(nets[v]))

    t = _bench.interleaved_median({v: (lambda v=v: step(v)) for v in names}, repeats, device, after=after)
    t = {v: t[v] / period[v] for v in names}  # seconds per step
    for v in names:  # the error between retractions: untimed steps, measured after every one of them
        if period[v] > 1:
            for _ in range(2 * period[v]):
                opts[v].zero_grad(set_to_none=True)
                F.cross_entropy(nets[v](x), y).backward()
                opts[v].step()
                after(v)
    rows = []
    for v in names:
        rows.append({"arch": arch, "width": width, "depth": depth, "batch": batch, "variant": v,
                     "ms_per_step": 1e3 * t[v], "ratio_vs_init": t[v] / t["init"],
                     "max_orth_err": worst[v] if v not in ("init", "floor") else float("nan")})
        print(f"{arch:8s} n={width:5d} L={depth:5d} B={batch:5d} {v:18s} {1e3 * t[v]:9.1f} ms  "
              f"{t[v] / t['init']:6.2f}x  err {rows[-1]['max_orth_err']:.2e}", flush=True)
    return rows


def main() -> None:
    def add(p):
        p.add_argument("--archs", default="tanh,residual")
        p.add_argument("--widths", default=None, help="comma list (quick: 64,256; full: 64,256,1024)")
        p.add_argument("--depths", default=None, help="comma list (quick: 100; full: 10,100,1000)")
        p.add_argument("--batch", type=int, default=128)
        p.add_argument("--variants", default=",".join(VARIANTS))
        p.add_argument("--batch-ablation", default=None,
                       help="extra batch sizes for init vs exact at the largest width (quick: 1024; \"\" for none)")
        p.add_argument("--max-gib", type=float, default=None,
                       help="skip row groups whose estimated memory exceeds this (default: half the device's)")
    args = _bench.parse_args(__doc__, add)
    device = _bench.setup(args.device, threads=args.threads)
    clock = _bench.Clock()
    full = args.mode == "full"
    widths = [int(w) for w in (args.widths or ("64,256,1024" if full else "64,256")).split(",")]
    depths = [int(d) for d in (args.depths or ("10,100,1000" if full else "100")).split(",")]
    variants = [v for v in args.variants.split(",") if v]
    if "geotorch" in variants and importlib.util.find_spec("geotorch") is None:
        print("geotorch is not installed (pip install 'orthojac[bench]'): skipping that baseline")
        variants.remove("geotorch")
    unknown = set(variants) - set(VARIANTS)
    if unknown or "init" not in variants:
        raise SystemExit(f"--variants must include 'init' and name only {tuple(VARIANTS)}; got {sorted(unknown)}")
    repeats = args.repeats or (9 if full else 7)
    ablation_arg = args.batch_ablation if args.batch_ablation is not None else ("512,2048" if full else "1024")
    ablation = [int(b) for b in ablation_arg.split(",") if b]
    slow = {"torch_matrix_exp", "torch_householder"}  # 10-30x init: in quick mode measured at width 64 only

    def names_at(width: int) -> list[str]:
        return [v for v in variants if full or width <= 64 or v not in slow or args.variants != ",".join(VARIANTS)]

    grid = [(a, w, d, args.batch, names_at(w)) for a in args.archs.split(",") for w in widths for d in depths]
    grid += [(a, max(widths), 100 if 100 in depths else depths[0], b, ["init", "exact", "floor"])
             for a in args.archs.split(",") for b in ablation]
    rows, skipped = [], []
    max_gib = args.max_gib if args.max_gib is not None else total_gib(device) / 2
    for arch, width, depth, batch, names in grid:
        need = memory_gib(width, depth, names)
        if need > max_gib:
            skipped.append(f"{arch} n={width} L={depth} B={batch} (≈{need:.0f} GiB > {max_gib:.0f} GiB)")
            print(f"skipped {skipped[-1]}", flush=True)
            continue
        rows += measure(arch, width, depth, batch, names, repeats, device)
    notes = (f"One Adam step (lr 1e-3) of a depth-L body + linear head, cross-entropy on random data; median of "
             f"{repeats} interleaved rounds after one warm-up. `ratio_vs_init` = time / time of `init` in the same "
             "row group. `max_orth_err` = max over layers and over all steps taken of ‖WᵀW − I‖₂ (float64 of the "
             "weight used by the forward pass). `exact_every4` is near-exact (retracted every 4th step only; "
             "timed over whole 4-step periods; its error also after the steps in between). `floor` = `init` + one "
             "batched WᵀW and one W·G product per step: the least any exact retraction of a full-rank update "
             "costs in float32 (not a method; its ratio bounds what `exact` can reach on this machine)." +
             (f" Skipped for memory (`--max-gib`): {'; '.join(skipped)}." if skipped else ""))
    _bench.write_results("orthogonal_policy", "(a) Exact orthogonality: cost per Adam step vs init", rows,
                         ["arch", "width", "depth", "batch", "variant", "ms_per_step", "ratio_vs_init",
                          "max_orth_err"], device, args.mode, notes, clock, args.no_write)


if __name__ == "__main__":
    main()
