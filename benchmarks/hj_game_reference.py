"""A grid reference for the two-car game's value (notes P8), to judge the network's u (exploratory).

    python benchmarks/hj_game_reference.py [--h 0.1] [--nphi 48] [--out /tmp/hj_game_reference.npz]

The game is invariant under rotations of the plane (``TwoCarGame.invariant_features``), so its value is a
function V(w, φ) of the evader's position w = R(−θ_P) z in the pursuer's frame and the relative heading
φ = θ_E − θ_P. In those coordinates

    ẇ = ω_P (w_y, −w_x) + σ_E s_E e(φ) − σ_P s_P (1, 0),     φ̇ = ω_E − ω_P,

s ∈ {±1}, |ω_P| ≤ 1/ρ_P, |ω_E| ≤ 1/ρ_E. Semi-Lagrangian value iteration on a uniform (w_x, w_y, φ) grid,

    V_{n+1}(x) = min_{s_P, ω_P} max_{s_E, ω_E} [ h + V_n(x + h f(x, a_P, a_E)) ],

trilinear interpolation (periodic in φ), V = 0 on |w| ≤ r_capture, V = escape_value on |w| ≥ r_escape (also
for a foot point that lands there, instead of interpolating across the small capture disk), from V_0 = 0:
V_n is the value of the game stopped at time n·h, increasing to V. First order in h and the grid: a
reference whose accuracy is judged by refining h (docs/hj.md), not a closed form.
Prints V at the authors' start point and saves the grid.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.ndimage import map_coordinates

from orthojac.hj.problems import TwoCarGame

RHO, SIGMA, R_CAP, R_ESC, G_ESC = (0.8, 1.0), (1.0, 0.8), 0.2, 4.0, 10.0


def _grid_index(ax: np.ndarray, nphi: int, wx: np.ndarray, wy: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Fractional (w_x, w_y, φ) grid indices of states, φ wrapped into [0, 2π), for ``map_coordinates``."""
    h = ax[1] - ax[0]
    return np.stack([(wx - ax[0]) / h, (wy - ax[0]) / h, np.mod(phi, 2 * math.pi) * nphi / (2 * math.pi)])


def solve(h: float, nphi: int, tol: float = 1e-4, max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pad = max(2 * h, 0.3)  # feet of free nodes move ≤ h·(σ_P + σ_E) + O(h²) radially: never wrap around
    m = math.ceil((R_ESC + pad) / h - 1e-9)
    ax = h * np.arange(-m, m + 1)  # symmetric about 0, so V(w, φ) = V(−w, φ) can be checked node by node
    phi = np.arange(nphi) * 2 * math.pi / nphi
    a, b, f = np.meshgrid(ax, ax, phi, indexing="ij")
    r = np.hypot(a, b)
    cap, esc = r <= R_CAP + 1e-9, r >= R_ESC - 1e-9  # nodes on a circle (to rounding) belong to it
    free = ~(cap | esc)
    v = np.where(esc, G_ESC, 0.0)
    pa, pb, pf = a[free], b[free], f[free]
    ce, se_ = np.cos(pf), np.sin(pf)
    # foot points for every control pair, as fractional grid indices (constant over the iterations)
    feet = {}
    for sp in (-1.0, 1.0):
        for wp in (-1 / RHO[0], 0.0, 1 / RHO[0]):
            for se in (-1.0, 1.0):
                for we in (-1 / RHO[1], 0.0, 1 / RHO[1]):
                    na = pa + h * (wp * pb + SIGMA[1] * se * ce - SIGMA[0] * sp)
                    nb = pb + h * (-wp * pa + SIGMA[1] * se * se_)
                    nf = pf + h * (we - wp)
                    rf = np.hypot(na, nb)  # a foot point in the capture disk / beyond the escape circle ends
                    feet[(sp, wp, se, we)] = (_grid_index(ax, nphi, na, nb, nf), rf <= R_CAP, rf >= R_ESC)
    pursuer = [(sp, wp) for sp in (-1.0, 1.0) for wp in (-1 / RHO[0], 0.0, 1 / RHO[0])]
    evader = [(se, we) for se in (-1.0, 1.0) for we in (-1 / RHO[1], 0.0, 1 / RHO[1])]
    t0 = time.process_time()
    for it in range(max_iter):
        best = None
        for cp in pursuer:
            worst = None
            for ce_ in evader:
                idx, in_cap, in_esc = feet[(*cp, *ce_)]
                val = map_coordinates(v, idx, order=1, mode="grid-wrap")
                val[in_cap], val[in_esc] = 0.0, G_ESC
                worst = val if worst is None else np.maximum(worst, val)
            best = worst if best is None else np.minimum(best, worst)
        new = v.copy()
        new[free] = h + best
        new[cap], new[esc] = 0.0, G_ESC
        change = float(np.abs(new - v).max())
        v = new
        if it % 20 == 0:
            print(f"iter {it} change {change:.2e} cpu {time.process_time() - t0:.0f}s", flush=True)
        if change < tol:
            break
    return ax, phi, v


def interpolate(ref: dict, w: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """V at pursuer-frame states (w (N, 2), φ (N,)) from a saved grid (trilinear, periodic in φ)."""
    idx = _grid_index(ref["ax"], len(ref["phi"]), w[:, 0], w[:, 1], phi)
    return map_coordinates(ref["v"], idx, order=1, mode="grid-wrap")


def value_at(ref: dict, problem: TwoCarGame, x: torch.Tensor) -> torch.Tensor:
    """V at game states x (N, 4) of ``problem`` (a ``TwoCarGame``), through its pursuer-frame features
    (w, cos φ, sin φ): :func:`interpolate` on float64 rows, returned as a float64 tensor."""
    w = problem.invariant_features(x.double())
    return torch.from_numpy(interpolate(ref, w[:, :2].numpy(), torch.atan2(w[:, 3], w[:, 2]).numpy()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--h", type=float, default=0.1, help="grid spacing in w and time step")
    p.add_argument("--nphi", type=int, default=48, help="grid points in φ")
    p.add_argument("--out", default="/tmp/hj_game_reference.npz")
    a = p.parse_args()
    ax, phi, v = solve(a.h, a.nphi)
    np.savez(a.out, ax=ax, phi=phi, v=v, h=a.h)
    ref = {"ax": ax, "phi": phi, "v": v}
    # the authors' start: pursuer (0, 0.5, 0), evader (0, -1, π/2): w = (0, -1.5), φ = π/2
    v0 = float(interpolate(ref, np.array([[0.0, -1.5]]), np.array([math.pi / 2]))[0])
    # the pursuer's and the evader's headings are defined up to π (both can reverse): V(w, φ) = V(w, φ + π) =
    # V(−w, φ) exactly; and the tail chase (evader d ahead, same heading) is at least (d − r)/(σ_P − σ_E)
    sym = max(float(np.abs(v - np.roll(v, a.nphi // 2, axis=2)).max()), float(np.abs(v - v[::-1, ::-1, :]).max()))
    tail = [float(interpolate(ref, np.array([[d, 0.0]]), np.array([0.0]))[0]) for d in (0.5, 1.0, 1.5, 2.0)]
    print(f"h {a.h} nphi {a.nphi}: V(authors' start) = {v0:.3f}; symmetry defect {sym:.1e}; tail chase at "
          f"d = 0.5, 1, 1.5, 2: {', '.join(f'{t:.2f}' for t in tail)} (straight-flight bound 1.5, 4, 6.5, 9)")


if __name__ == "__main__":
    main()
