"""(d) Peak memory of one training step (forward, backward, Adam step) under each orthogonality policy.

Each variant runs in a fresh subprocess (CPU) so that peaks do not mix: the table reports the process's peak
resident set size (``ru_maxrss``) and the growth of that peak over the resident size once the model, optimiser
and data exist (``step_peak_mib``: activations, gradients, optimiser state, the map's or retraction's
temporaries). On CUDA it reports ``torch.cuda.max_memory_allocated`` around the step instead (in-process, peak
statistics reset between variants). Variants as in orthogonal_policy.py.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import _bench
import torch
import torch.nn.functional as F
from orthogonal_policy import VARIANTS, build


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(arch: str, variant: str, width: int, depth: int, batch: int, device: torch.device, steps: int = 3) -> dict:
    torch.manual_seed(0)
    net = build(arch, variant, width, depth, device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(batch, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    params_mib = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = rss_mib()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"params_mib": params_mib, "peak_mib": peak, "step_peak_mib": peak - base}


def main() -> None:
    def add(p):
        p.add_argument("--archs", default="tanh,residual")
        p.add_argument("--width", type=int, default=None, help="quick: 256, full: 1024")
        p.add_argument("--depth", type=int, default=100)
        p.add_argument("--batch", type=int, default=128)
        p.add_argument("--variants", default="init,exact,exact_qr,torch_cayley,torch_matrix_exp,torch_householder,"
                                             "geotorch")
        p.add_argument("--child", default=None, help=argparse_hidden())
    args = _bench.parse_args(__doc__, add)
    device = _bench.setup(args.device, threads=args.threads)
    width = args.width or (1024 if args.mode == "full" else 256)
    if args.child:  # run one variant and print its numbers as JSON
        arch, variant = args.child.split(":")
        print(json.dumps(one(arch, variant, width, args.depth, args.batch, device)))
        return
    clock = _bench.Clock()
    variants = [v for v in args.variants.split(",") if v]
    if "geotorch" in variants:
        import importlib.util

        if importlib.util.find_spec("geotorch") is None:
            variants.remove("geotorch")
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants: choose from {tuple(VARIANTS)}")
    rows = []
    for arch in args.archs.split(","):
        for v in variants:
            if device.type == "cuda":
                r = one(arch, v, width, args.depth, args.batch, device)
            else:
                cmd = [sys.executable, __file__, f"--{args.mode}", "--device", "cpu", "--width", str(width),
                       "--depth", str(args.depth), "--batch", str(args.batch), "--threads", str(args.threads),
                       "--child", f"{arch}:{v}"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
            rows.append({"arch": arch, "width": width, "depth": args.depth, "batch": args.batch, "variant": v, **r})
            print(f"{arch:8s} {v:18s} peak {r['peak_mib']:8.1f} MiB  step peak {r['step_peak_mib']:8.1f} MiB",
                  flush=True)
        base = next(r for r in rows if r["arch"] == arch and r["variant"] == "init")
        for r in rows:
            if r["arch"] == arch:
                r["step_peak_vs_init"] = r["step_peak_mib"] / base["step_peak_mib"]
    what = ("CUDA max_memory_allocated during 3 steps minus memory allocated before them" if device.type == "cuda"
            else "peak RSS of a fresh process (ru_maxrss); step_peak_mib = that peak minus the RSS before the "
                 "first step")
    notes = f"Depth-{args.depth} bodies + linear head, batch {args.batch}, 3 Adam steps; {what}."
    _bench.write_results("memory", "(d) Peak memory of a training step", rows,
                         ["arch", "width", "depth", "batch", "variant", "params_mib", "peak_mib", "step_peak_mib",
                          "step_peak_vs_init"], device, args.mode, notes, clock, args.no_write)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
