r"""Collocation-point samplers (arXiv 2406.10758; the authors' ``PointSampling``, notes §2.4).

All take ``n`` and a ``torch.Generator`` and return float tensors of shape (n, d).

* :func:`cube` — uniform in ``[−h, h]^d``.
* :func:`cube_faces` — uniform on ∂[−h, h]^d: a random coordinate set to ±h (faces equally likely, which is
  uniform in surface measure since all faces have equal area).
* :func:`sphere` — uniform on the sphere of radius r: a normalised standard Gaussian.
* :func:`shell` — ``r_min < |x| < r_max`` with direction uniform on the sphere and either
  ``"radial"``: r ~ U[r_min, r_max] (radially uniform: density ∝ r^{1−d}, crowds the centre in high d), or
  ``"uniform"``: r = (a + (b − a)U)^{1/d}, a = r_min^d, b = r_max^d (uniform in volume, CDF
  (r^d − a)/(b − a)). In d = 10 the volume-uniform law almost never visits r < R/2 (probability 2^{-10}),
  where the kink of the ball's solution sits — the authors' reason for radial sampling. But the test
  error is measured uniformly in volume, i.e. mostly near r_max, where radial sampling puts few points;
  ``"mixed"``: half of the points of each law (an option of this library, not the authors').
* :func:`spheres` — points on several concentric spheres, sphere j picked with probability ∝ weight_j.
"""

from __future__ import annotations

import torch

__all__ = ["SAMPLINGS", "cube", "cube_faces", "sphere", "shell", "spheres"]

SAMPLINGS = ("radial", "uniform", "mixed")


def _rand(n: int, d: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(n, d, generator=g, dtype=dtype)


def cube(n: int, d: int, half: float, g: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform in [−half, half]^d."""
    return (2 * _rand(n, d, g, dtype) - 1) * half


def cube_faces(n: int, d: int, half: float, g: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform on the boundary of [−half, half]^d."""
    x = cube(n, d, half, g, dtype)
    face = torch.randint(0, d, (n,), generator=g)
    sign = torch.randint(0, 2, (n,), generator=g).to(dtype) * 2 - 1
    x[torch.arange(n), face] = sign * half
    return x


def sphere(n: int, d: int, radius: float | torch.Tensor, g: torch.Generator,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform on the sphere of the given radius (a scalar or one radius per row)."""
    z = torch.randn(n, d, generator=g, dtype=dtype)
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-30)
    r = torch.as_tensor(radius, dtype=dtype)
    return z * (r.reshape(-1, 1) if r.dim() else r)


def shell(n: int, d: int, r_min: float, r_max: float, g: torch.Generator, sampling: str = "radial",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """r_min < |x| < r_max, radially uniform (``"radial"``) or uniform in volume (``"uniform"``)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if not 0 <= r_min < r_max:
        raise ValueError(f"need 0 ≤ r_min < r_max, got r_min={r_min}, r_max={r_max}")
    u = torch.rand(n, generator=g, dtype=torch.float64)
    a, b = float(r_min) ** d, float(r_max) ** d
    radial = r_min + (r_max - r_min) * u
    volume = (a + (b - a) * u) ** (1.0 / d)
    if sampling == "radial":
        r = radial
    elif sampling == "uniform":
        r = volume
    else:
        r = torch.where(torch.arange(n) % 2 == 0, radial, volume)
    return sphere(n, d, r.to(dtype), g, dtype)


def spheres(n: int, d: int, radii: tuple[float, ...], weights: tuple[float, ...], g: torch.Generator,
            dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """n points on the spheres |x| = radii[j], sphere j with probability weights[j]/Σweights.
    Returns (points (n, d), index of the sphere (n,))."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    which = torch.multinomial(w / w.sum(), n, replacement=True, generator=g)
    r = torch.as_tensor(radii, dtype=dtype)[which]
    return sphere(n, d, r, g, dtype), which
