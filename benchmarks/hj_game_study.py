"""Two-car game study: train (or load) one pursuit–evasion value network and diagnose its feedback play.

    python benchmarks/hj_game_study.py TAG [--load] [--ref FILE.npz] [--controls] [iters=a,b,c]
        [round.KEY=v1,v2,...] [key=value ...]

Trains ``configs/hj/pursuit_evasion.yaml`` with the overrides (as ``benchmarks/hj_study.py``), saves the
state dict to ``/tmp/hj_game_TAG.pt`` (``--load``: skip training and load it), then prints, for the authors'
start point: u(x₀), the evader's straight-flight lower bound on the game value there, the feedback play's
outcome, and u and H(x, ∇u) along the play; plus the fraction of test states where u lies below that lower
bound; with ``--ref`` (a grid from ``benchmarks/hj_game_reference.py``) also the reference value V there, the
mean-square and max |u − V| over test states, and V along the play; with ``--controls`` the play again with
the controls computed from central differences of u (stencil δ = 0.05, 0.15, 0.3, as the scheme sees u)
instead of autograd, and with dt = 0.002 instead of 0.01. Exploratory: not recorded in results/.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import torch
from hj_game_reference import value_at
from hj_study import study_config

from orthojac.hj.config import build_from_config, solve_config
from orthojac.hj.control import trajectory, value_gradient
from orthojac.hj.plots import default_starts


def lower_bound(problem, x: torch.Tensor) -> torch.Tensor:
    """min(T, escape_value): T = the capture time if the evader drives straight along ±e(θ_E) (the better
    sign) and the pursuer runs at full speed σ_P from its start, |z + σ_E T d| = σ_P T + r_capture."""
    ham = problem.hamiltonian
    sp, se, r = ham.sigma[0], ham.sigma[1], problem.r_capture
    z = x[:, :2]
    e = torch.stack([torch.cos(x[:, 3]), torch.sin(x[:, 3])], -1)
    zd = (z * e).sum(-1).abs()
    a = sp * sp - se * se
    b = 2 * sp * r - 2 * se * zd
    c = r * r - (z * z).sum(-1)
    t = (-b + torch.sqrt(b * b - 4 * a * c)) / (2 * a)
    return t.clamp(max=problem.escape_value)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    tag, *rest = argv
    load, controls = "--load" in rest, "--controls" in rest
    rest = [o for o in rest if o not in ("--load", "--controls")]
    ref = None
    if "--ref" in rest:
        k = rest.index("--ref")
        ref = dict(np.load(rest[k + 1]))
        del rest[k:k + 2]
    cfg = study_config("pursuit_evasion", rest)
    path = f"/tmp/hj_game_{tag}.pt"
    if load:
        problem, net = build_from_config(cfg, 0)
        net.load_state_dict(torch.load(path))
    else:
        t0 = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem, net, res = solve_config(cfg, progress=False, eval_rounds=False)
        torch.save(net.state_dict(), path)
        print(tag, " ".join(rest), f"cpu {time.process_time() - t0:.0f}s residual per round",
              [f"{r.residual:.3g}" for r in res.rounds], flush=True)
    net.eval()
    g = torch.Generator().manual_seed(1)
    xt = problem.sample_test(20000, g)
    with torch.no_grad():
        u, lb = net(xt), lower_bound(problem, xt)
    print(f"test: mean u {u.mean():.3f}, mean LB {lb.mean():.3f}, P(u < LB - 0.5) {(u < lb - 0.5).float().mean():.3f},"
          f" mean (LB-u)+ {(lb - u).clamp(min=0).mean():.3f}")
    def vref(x: torch.Tensor) -> torch.Tensor:
        return value_at(ref, problem, x)

    if ref is not None:
        inner = xt[:, :2].norm(dim=1) < problem.r_escape - 0.2  # away from the grid's escape layer
        v_in = vref(xt[inner])
        e = u[inner].double() - v_in
        print(f"vs reference: MSE {float((e * e).mean()):.3f}, mean |e| {float(e.abs().mean()):.3f}, "
              f"mean e {float(e.mean()):+.3f}, max |e| {float(e.abs().max()):.2f}, mean V {float(v_in.mean()):.3f}")
    start = default_starts(problem)[0]
    tr = trajectory(net, problem, start, t_max=30.0)
    x0 = torch.cat([start[3:5] - start[0:2], start[2:3], start[5:6]]).reshape(1, 4)
    print(f"x0 {x0.tolist()}: u {float(net(x0).detach()):.3f}, LB {float(lower_bound(problem, x0)):.3f}, "
          f"V_ref {float(vref(x0)) if ref is not None else float('nan'):.3f}; play time "
          f"{tr['time']:.2f} captured {tr['captured']} escaped {tr['escaped']}")
    if controls:
        import orthojac.hj.control as C

        autograd = C.value_gradient
        for d in (None, 0.05, 0.15, 0.3):
            C.value_gradient = autograd if d is None else fd_value_gradient(d)
            for dt in (0.01, 0.002):
                t2 = C.trajectory(net, problem, start, t_max=30.0, dt=dt)
                print(f"controls from {'autograd' if d is None else f'central differences δ = {d}'}, dt {dt}: "
                      f"time {t2['time']:.2f} captured {t2['captured']} escaped {t2['escaped']}")
        C.value_gradient = autograd
    pp, pe = tr["pursuer"], tr["evader"]
    xs = torch.cat([pe[:, :2] - pp[:, :2], pp[:, 2:3], pe[:, 2:3]], 1)
    xs[:, 2:] = torch.remainder(xs[:, 2:], 2 * torch.pi)
    uu, gr = value_gradient(net, xs)
    h = problem.hamiltonian(xs, gr)
    for k in range(0, len(xs), max(1, len(xs) // 12)):
        print(f"  t {k * 0.01:5.2f} |z| {float(xs[k, :2].norm()):.2f} u {float(uu[k]):6.3f} "
              f"u+t {float(uu[k]) + k * 0.01:6.3f}"
              f" H {float(h[k]):6.3f} LB {float(lower_bound(problem, xs[k:k + 1])):.2f} "
              f"uθP {float(gr[k, 2]):+.3f} uθE {float(gr[k, 3]):+.3f}"
              + (f" V_ref {float(vref(xs[k:k + 1])):.2f}" if ref is not None else ""))


def fd_value_gradient(delta: float):
    """A drop-in for :func:`orthojac.hj.control.value_gradient` that returns central differences of u with
    step ``delta`` in every coordinate instead of the autograd gradient."""
    def grad(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.eye(x.shape[1], dtype=x.dtype) * delta
        with torch.no_grad():
            v = net(torch.cat([x + e, x - e]))
            return net(x), ((v[:x.shape[1]] - v[x.shape[1]:]) / (2 * delta)).reshape(1, -1)
    return grad


if __name__ == "__main__":
    main(sys.argv[1:])
