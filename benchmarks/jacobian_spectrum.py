"""Benchmark of :func:`orthojac.diagnostics.jacobian_spectrum` against baselines measured in the same run.

1. **Exact spectrum, depth 200, width 784** (a tanh MLP body with orthogonal init, float64): ours
   (``method="exact"``: one vmapped forward-mode pass, ``torch.func.vmap(jacfwd)``, then ``svdvals``) against
   the naive ``torch.autograd.functional.jacobian`` (one reverse pass per output row, sample by sample) +
   ``torch.linalg.svdvals``. Prints the speed ratio (goal ≥ 10×) and the largest relative difference.
2. **Matrix-free accuracy at width 1024**: the k largest and k smallest singular values from Lanczos
   (``method="lanczos"``) against the dense SVD of the same Jacobian, for a residual CNN on 4×16×16 inputs and
   for a limit-layer MLP body (goal: relative error ≤ 1e-4).
3. **Matrix-free at width 16384** (the same residual CNN on 4×64×64 inputs), where the dense Jacobian would
   be 16384² float64 = 2 GiB per sample and need 16384 passes: k extremes, iterations, residual bounds, time.

Run: ``python benchmarks/jacobian_spectrum.py`` (``--quick`` shrinks part 1 to depth 50 for a smoke test).
Writes ``results/jacobian_spectrum_benchmark.csv`` and the Markdown generated from it.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from orthojac.diagnostics import choose_method, jacobian_spectrum
from orthojac.experiments.common import RESULTS_DIR, csv_to_markdown, device_name, read_csv, write_csv
from orthojac.models import create_body

D = torch.float64
COLUMNS = ["part", "model", "width", "k", "seconds", "baseline_seconds", "speedup", "max_rel_err", "iterations",
           "device"]


class ResidualCNN(nn.Module):
    """x ↦ x + h·conv₂(tanh(conv₁ x)) repeated ``depth`` times (3×3 convolutions, zero padding, fixed
    channels): a near-isometric body whose input is an image of ``channels × size × size`` features."""

    def __init__(self, channels: int, depth: int, h: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.h = h
        self.convs = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.Tanh(),
                                                 nn.Conv2d(channels, channels, 3, padding=1)) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.convs:
            x = x + self.h * block(x)
        return x


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def naive_spectrum(fn, x: torch.Tensor) -> torch.Tensor:
    rows = []
    for i in range(x.shape[0]):
        j = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0)).reshape(-1), x[i])
        rows.append(torch.linalg.svdvals(j.reshape(j.shape[0], -1)))
    return torch.stack(rows)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs()).max().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="part 1 at depth 50 (smoke test)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--parts", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3], help="parts to run")
    p.add_argument("--tol", type=float, default=1e-8, help="Lanczos tolerance of part 3 (residual ≤ tol·σ_max)")
    p.add_argument("--max-iter", type=int, default=2000, help="Lanczos iteration cap of part 3")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = device_name()
    rows = []
    print(f"device: {dev}, threads {args.threads}")

    # 1. exact vs naive
    depth = 50 if args.quick else 200
    if 1 not in args.parts:
        depth = 0
    if depth:
        part1(depth, dev, rows)
    if 2 in args.parts:
        part2(args.k, dev, rows)
    if 3 in args.parts:
        part3(args.k, args.tol, args.max_iter, dev, rows)
    out = RESULTS_DIR / "jacobian_spectrum_benchmark.csv"
    keep = [r for r in read_csv(out) if _part(r) not in args.parts] if out.exists() else []  # rows of other parts
    write_csv(sorted(keep + rows, key=lambda r: r["part"]), out, COLUMNS)
    csv_to_markdown(out, out.with_suffix(".md"), ["part", "model", "width", "k"],
                    ["seconds", "baseline_seconds", "speedup", "max_rel_err", "iterations"],
                    title="Jacobian spectrum benchmark",
                    note=(f"Produced by `python benchmarks/jacobian_spectrum.py` on {dev}, {args.threads} "
                          "thread(s), float64. Part 1: speedup of the exact spectrum over "
                          "`torch.autograd.functional.jacobian` + `svdvals` (max_rel_err = max |Δσ|/σ_max). "
                          "Part 2: Lanczos k largest and k smallest against dense SVD (max_rel_err = max |Δσ|/σ "
                          "over the 2k values; baseline = exact method). Part 3: Lanczos where the dense "
                          "Jacobian does not fit (see the CSV for residual bounds and σ)."))
    print(f"wrote {out}")


def _part(row: dict) -> int:
    """The part number of a CSV row ("1 exact_vs_naive"; rows written before the numbering: by name)."""
    old = {"exact_vs_naive": 1, "lanczos_vs_dense": 2, "lanczos_large": 3}
    if row["part"] in old:
        row["part"] = f"{old[row['part']]} {row['part']}"
    return int(row["part"].split()[0])


def part1(depth: int, dev: str, rows: list) -> None:
    body = create_body("plain_tanh_orth", 784, depth, seed=0).to(D)
    x = torch.randn(1, 784, dtype=D, generator=torch.Generator().manual_seed(0))
    ours, t_ours, c_ours = timed(lambda: jacobian_spectrum(body, x, "exact").singular_values)
    ref, t_naive, c_naive = timed(lambda: naive_spectrum(body, x))
    err = ((ours - ref).abs().max() / ref.max()).item()  # both SVDs are accurate to ≈ eps·σ_max, not per value
    print(f"[1] exact spectrum, depth {depth}, width 784, 1 sample: ours {t_ours:.2f} s, naive "
          f"autograd.functional.jacobian+svdvals {t_naive:.2f} s → {t_naive / t_ours:.1f}× faster "
          f"(CPU {c_naive / c_ours:.1f}×); max |Δσ|/σ_max {err:.1e}")
    rows.append({"part": "1 exact_vs_naive", "model": f"tanh MLP orth init d{depth}", "width": 784, "k": "",
                 "seconds": round(t_ours, 3), "baseline_seconds": round(t_naive, 3),
                 "speedup": round(t_naive / t_ours, 2), "max_rel_err": err, "iterations": "", "device": dev})


def part2(k: int, dev: str, rows: list) -> None:
    cases = [("residual CNN 4×16×16 d8", ResidualCNN(4, 8).to(D), (1, 4, 16, 16)),
             ("limit-layer MLP body d20", create_body("limit", 1024, 20, seed=1).to(D), (1, 1024))]
    for name, model, shape in cases:
        xin = torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(1))
        dense, t_dense, _ = timed(lambda m=model, v=xin: jacobian_spectrum(m, v, "exact").singular_values)
        res, t_lz, _ = timed(lambda m=model, v=xin: jacobian_spectrum(m, v, "lanczos", k=k))
        expected = torch.cat([dense[:, :k], dense[:, -k:]], dim=-1)
        e_top = rel_err(res.singular_values[:, :k], expected[:, :k])
        e_bot = rel_err(res.singular_values[:, k:], expected[:, k:])
        print(f"[2] {name} (n = 1024): Lanczos k={k} in {res.info['iterations']} iterations, {t_lz:.2f} s "
              f"(dense {t_dense:.2f} s); relative error largest {e_top:.1e}, smallest {e_bot:.1e}; "
              f"σ ∈ [{dense.min().item():.4g}, {dense.max().item():.4g}]")
        rows.append({"part": "2 lanczos_vs_dense", "model": name, "width": 1024, "k": k, "seconds": round(t_lz, 3),
                     "baseline_seconds": round(t_dense, 3), "speedup": round(t_dense / t_lz, 2),
                     "max_rel_err": max(e_top, e_bot), "rel_err_largest": e_top, "rel_err_smallest": e_bot,
                     "iterations": res.info["iterations"], "device": dev})


def part3(k: int, tol: float, max_iter: int, dev: str, rows: list) -> None:
    model = ResidualCNN(4, 8).to(D)
    xin = torch.randn(1, 4, 64, 64, dtype=D, generator=torch.Generator().manual_seed(2))
    res, t_lz, c_lz = timed(lambda: jacobian_spectrum(model, xin, "lanczos", k=k, tol=tol, max_iter=max_iter))
    s = res.singular_values[0]
    rb = (res.info["residuals"][0] / s[0]).max().item()
    print(f"[3] residual CNN 4×64×64 (n = 16384; dense J would be {16384**2 * 8 / 2**30:.0f} GiB): "
          f"auto picks {choose_method(1, 16384, 16384, 8)}; Lanczos k={k} converged="
          f"{bool(res.info['converged'].all())} in {res.info['iterations']} iterations, {t_lz:.1f} s "
          f"({c_lz:.1f} s CPU); largest {s[:k].tolist()}, smallest {s[k:].tolist()}; "
          f"max residual/σ_max {rb:.1e}")
    rows.append({"part": "3 lanczos_large", "model": "residual CNN 4×64×64 d8", "width": 16384, "k": k,
                 "seconds": round(t_lz, 3), "baseline_seconds": "", "speedup": "", "max_rel_err": "",
                 "max_residual_over_sigma_max": rb, "iterations": res.info["iterations"],
                 "sigma_max": s[0].item(), "sigma_min": s[-1].item(), "device": dev})


if __name__ == "__main__":
    main()
