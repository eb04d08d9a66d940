"""(b) What an exact orthogonal convolution costs: one Adam step (forward, backward, step) of a single layer,
as a ratio to a plain 3×3 circular ``nn.Conv2d`` with the same channels, timed interleaved in one process.

Variants: ``plain`` (nn.Conv2d, circular padding, no bias); ``orthoconv_init`` (orthojac's OrthogonalConv2d,
free kernel); ``orthoconv_exact`` (its exact policy: Cayley map per frequency, Trockman & Kolter 2021);
``spectral_exact`` (SpectralOrthogonalConv2d: the frequency response is the parameter, kept unitary by the
riemannian retraction after each step — an FFT convolution's forward pass);
``residual_init`` / ``residual_exact`` (ConvOrthoResidual x − 2𝓑ᵀρ(𝓑x + b), two operator applications).
``max_orth_err`` = max over frequencies of ‖M Mᴴ − I‖₂ of the operator after the timed steps.
Needs :mod:`orthojac.nn.conv` (helper "conv"); skips with a message when it is missing.
"""

from __future__ import annotations

import importlib.util

import _bench
import torch
from torch import nn


def main() -> None:
    def add(p):
        p.add_argument("--channels", default=None, help="comma list (quick: 16,64; full: 16,64,256)")
        p.add_argument("--sizes", default=None, help="image sizes (quick: 16,32; full: 16,32,64)")
        p.add_argument("--batch", type=int, default=None, help="quick: 32, full: 128")
    args = _bench.parse_args(__doc__, add)
    if importlib.util.find_spec("orthojac.nn.conv") is None:
        print("orthojac.nn.conv (OrthogonalConv2d) is not in this checkout yet: skipping the convolution benchmark")
        return
    from orthojac.nn.conv import ConvOrthoResidual, OrthogonalConv2d
    from orthojac.nn.spectral_conv import SpectralOrthogonalConv2d

    device = _bench.setup(args.device, threads=args.threads)
    clock = _bench.Clock()
    full = args.mode == "full"
    channels = [int(c) for c in (args.channels or ("16,64,256" if full else "16,64")).split(",")]
    sizes = [int(s) for s in (args.sizes or ("16,32,64" if full else "16,32")).split(",")]
    batch = args.batch or (128 if full else 32)
    repeats = args.repeats or (9 if full else 7)
    rows = []
    for c in channels:
        for size in sizes:
            g = torch.Generator().manual_seed(0)
            mods = {
                "plain": nn.Conv2d(c, c, 3, padding=1, padding_mode="circular", bias=False),
                "orthoconv_init": OrthogonalConv2d(c, size, 3, orthogonal="init", generator=g),
                "orthoconv_exact": OrthogonalConv2d(c, size, 3, orthogonal="exact", generator=g),
                "spectral_exact": SpectralOrthogonalConv2d(c, size, generator=g),
                "residual_init": ConvOrthoResidual(c, size, kernel_size=3, orthogonal="init", generator=g),
                "residual_exact": ConvOrthoResidual(c, size, kernel_size=3, orthogonal="exact", generator=g),
            }
            mods = {k: m.to(device) for k, m in mods.items()}
            opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in mods.items()}
            x = torch.randn(batch, c, size, size, device=device, generator=None)
            rows += measure(mods, opts, x, c, size, batch, repeats, device)
    notes = (f"One Adam step (lr 1e-3) of one layer on a random batch, loss = mean square of the output; median of "
             f"{repeats} interleaved rounds. `ratio` = time / time of `plain` (same channels, image size and batch); "
             "`ratio_vs_init` compares each exact variant with the same layer's init policy.")
    _bench.write_results("orthogonal_conv", "(b) Exact orthogonal convolution vs plain convolution", rows,
                         ["channels", "image", "batch", "variant", "ms_per_step", "ratio", "ratio_vs_init",
                          "max_orth_err"], device, args.mode, notes, clock, args.no_write)


def operator_error(m: nn.Module) -> float:
    conv = getattr(m, "conv", m)
    if type(conv).__name__ == "SpectralOrthogonalConv2d":
        with torch.no_grad():
            r = conv.weight.detach().to(torch.complex128)
            eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
            return float(torch.linalg.matrix_norm(r.mH @ r - eye, ord=2).max())
    if not hasattr(conv, "operator_response") or conv.policy != "exact":
        return float("nan")
    with torch.no_grad():
        r = conv.operator_response(onesided=True).to(torch.complex128)
        eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
        return float(torch.linalg.matrix_norm(r @ r.mH - eye, ord=2).max())


def measure(mods: dict, opts: dict, x: torch.Tensor, c: int, size: int, batch: int, repeats: int,
            device: torch.device) -> list[dict]:
    def step(k: str) -> None:
        opts[k].zero_grad(set_to_none=True)
        mods[k](x).square().mean().backward()
        opts[k].step()

    t = _bench.interleaved_median({k: (lambda k=k: step(k)) for k in mods}, repeats, device)
    rows = []
    for k in mods:
        base = k.replace("exact", "init") if k.endswith("exact") else k  # no init twin: ratio_vs_init is –
        vs_init = t[k] / t[base] if base in t else float("nan")
        rows.append({"channels": c, "image": size, "batch": batch, "variant": k, "ms_per_step": 1e3 * t[k],
                     "ratio": t[k] / t["plain"], "ratio_vs_init": vs_init, "max_orth_err": operator_error(mods[k])})
        print(f"C={c:4d} {size:3d}x{size:<3d} B={batch:4d} {k:16s} {1e3 * t[k]:9.1f} ms {t[k] / t['plain']:6.2f}x "
              f"plain, {rows[-1]['ratio_vs_init']:5.2f}x init", flush=True)
    return rows


if __name__ == "__main__":
    main()
