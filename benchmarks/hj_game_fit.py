"""Regress the rotation-invariant game network on the grid reference (exploratory, not in results/).

    python benchmarks/hj_game_fit.py REFERENCE.npz TAG [WIDTHS] [STEPS]

REFERENCE.npz comes from ``benchmarks/hj_game_reference.py``. Fits u = U(pursuer-frame features)
(``model.symmetry=rotation``, MLP ``WIDTHS``, default [128,128,64]) to the reference V by Adam on the mean
square error over fresh volume-uniform states (rate 10⁻³ decaying to 10⁻⁵ over ``STEPS``, default 6000),
saves the state dict to ``/tmp/hj_game_TAG.pt`` (then ``benchmarks/hj_game_study.py TAG --load --ref ...
model.symmetry=rotation model.widths=WIDTHS`` plays the game with it), and prints the fit's error and its
Lax–Friedrichs scheme residual at the authors' δ, α — a network that is close to V, to compare with the
least-squares solutions: capacity (can the ansatz represent V?) and the feedback law (does a play with a
nearly correct u capture in about u(x₀)?).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from hj_game_reference import value_at

from orthojac.hj.config import build_from_config, load_hj_config


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    ref = dict(np.load(argv[0]))
    tag = argv[1]
    widths = argv[2] if len(argv) > 2 else "[128,128,64]"
    steps = int(argv[3]) if len(argv) > 3 else 6000
    cfg = load_hj_config("configs/hj/pursuit_evasion.yaml", ["model.symmetry=rotation", f"model.widths={widths}"])
    problem, net = build_from_config(cfg)

    def vref(x: torch.Tensor) -> torch.Tensor:
        return value_at(ref, problem, x).float()

    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, (1e-5 / 1e-3) ** (1 / steps))
    t0 = time.process_time()
    for _ in range(steps):
        x = problem.sample_test(1000, g)
        loss = ((net(x) - vref(x)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    x = problem.sample_test(20000, g)
    with torch.no_grad():
        e = net(x) - vref(x)
    print(f"fit MSE {float((e * e).mean()):.4f} max {float(e.abs().max()):.2f} cpu {time.process_time() - t0:.0f}s")
    torch.save(net.state_dict(), f"/tmp/hj_game_{tag}.pt")
    for d, a in [(0.3, 2.0), (0.15, 1.8), (0.15, 0.0)]:
        xi = problem.sample_interior(5000, d, g)
        with torch.no_grad():
            r, _ = problem.residual(net, xi, d, a)
        print(f"scheme residual of the fit, δ = {d}, α = {a}: mean R² {float((r * r).mean()):.3f}, "
              f"mean R {float(r.mean()):+.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
