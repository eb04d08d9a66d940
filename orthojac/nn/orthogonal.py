"""How a layer gets an orthogonal weight: one policy argument, the same for every layer.

A layer asks for "an orthogonal n×n matrix" (or an h×n matrix with orthonormal rows, h ≤ n, BBᵀ = I_h)
through :func:`register_orthogonal`. The ``policy`` decides what happens next:

``"init"``
    A free ``nn.Parameter`` initialised on the manifold (``init``: QR of a Gaussian matrix with the signs
    fixed — Haar measure —, the Cayley transform Q = (I − A)⁻¹(I + A) of a random skew matrix A, or the
    identity). Training may move it away; pull it back with
    :func:`orthojac.regularizers.orthogonality` (α·Σ‖BBᵀ − I‖²_F) if wanted.
``"exact"``
    The weight is kept on O(n) (or on the Stiefel manifold of orthonormal rows) by a parametrisation
    registered with :mod:`torch.nn.utils.parametrize`: ``map="cayley"``, ``"matrix_exp"`` or
    ``"householder"`` (PyTorch's own ``parametrizations.orthogonal`` with dynamic trivialisation, so
    ``state_dict`` save/load, ``torch.compile`` and DDP work unchanged; assigning an orthogonal matrix to
    the weight goes through ``right_inverse``).

Every module that owns constrained weights lists their names in ``orthogonal_weight_names``; the
regulariser and :func:`orthojac.diagnostics.orthogonality_defect` find them that way (duck typing, so the
diagnostics need not import this package).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

__all__ = [
    "POLICIES",
    "INIT_METHODS",
    "EXACT_MAPS",
    "orthogonal_init_",
    "register_orthogonal",
    "constrained_weights",
    "orthogonality_error",
    "check_policy",
]

POLICIES = ("init", "exact")
INIT_METHODS = ("qr", "cayley", "identity")
EXACT_MAPS: dict[str, Callable[[nn.Module, str], None]] = {
    "cayley": lambda m, name: parametrizations.orthogonal(m, name, orthogonal_map="cayley"),
    "matrix_exp": lambda m, name: parametrizations.orthogonal(m, name, orthogonal_map="matrix_exp"),
    "householder": lambda m, name: parametrizations.orthogonal(m, name, orthogonal_map="householder"),
}


def check_policy(policy: str, exact_map: str = "cayley", init: str = "qr") -> None:
    """Raise ``ValueError`` naming the allowed values when a policy/map/init name is unknown."""
    if policy not in POLICIES:
        raise ValueError(f"orthogonal={policy!r} is not a policy; choose one of {POLICIES}")
    if exact_map not in EXACT_MAPS:
        raise ValueError(f"orthogonal_map={exact_map!r} is unknown; choose one of {tuple(EXACT_MAPS)}")
    if init not in INIT_METHODS:
        raise ValueError(f"orthogonal_init={init!r} is unknown; choose one of {INIT_METHODS}")


def _fix_shape(rows: int, cols: int) -> tuple[int, int, bool]:
    """Work with a tall-or-square n×k (n ≥ k) matrix and remember whether to transpose back."""
    return (cols, rows, True) if rows < cols else (rows, cols, False)


@torch.no_grad()
def orthogonal_init_(
    weight: torch.Tensor, method: str = "qr", generator: torch.Generator | None = None, scale: float = 1.0
) -> torch.Tensor:
    """Fill a (…, rows, cols) tensor in place with orthonormal rows (rows ≤ cols) or columns (rows > cols).

    * ``"qr"``: Q of the QR factorisation of a standard Gaussian matrix, columns multiplied by
      sign(diag R) — Haar-distributed;
    * ``"cayley"``: Q = (I − A)⁻¹(I + A) with A = (G − Gᵀ)·scale/√(2n), G Gaussian (then the first k columns);
    * ``"identity"``: the (rectangular) identity.
    """
    if weight.ndim < 2:
        raise ValueError(f"an orthogonal weight needs at least 2 dimensions, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape[-2:]
    n, k, transpose = _fix_shape(rows, cols)
    batch = weight.shape[:-2]
    dtype = weight.dtype if weight.dtype.is_floating_point else torch.get_default_dtype()
    if method == "identity":
        q = torch.eye(n, k, dtype=torch.float64).expand(*batch, n, k)
    elif method == "qr":
        g = torch.randn(*batch, n, k, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        d = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
        d[d == 0] = 1.0
        q = q * d.unsqueeze(-2)
    elif method == "cayley":
        g = torch.randn(*batch, n, n, generator=generator, dtype=torch.float64)
        a = (g - g.mT) * (scale / (2.0 * n) ** 0.5)
        eye = torch.eye(n, dtype=torch.float64)
        q = torch.linalg.solve(eye - a, eye + a)[..., :k]
    else:
        raise ValueError(f"orthogonal_init={method!r} is unknown; choose one of {INIT_METHODS}")
    if transpose:
        q = q.mT
    weight.copy_(q.to(dtype))
    return weight


def register_orthogonal(
    module: nn.Module,
    name: str,
    rows: int,
    cols: int,
    policy: str = "init",
    init: str = "qr",
    exact_map: str = "cayley",
    generator: torch.Generator | None = None,
    value: torch.Tensor | None = None,
) -> None:
    """Give ``module`` a weight ``name`` of shape (rows, cols) with orthonormal rows (rows ≤ cols) or
    columns, initialised by ``init`` (or set to ``value``), and kept so under ``policy="exact"``."""
    check_policy(policy, exact_map, init)
    w = torch.empty(rows, cols)
    if value is not None:
        w.copy_(value)
    else:
        orthogonal_init_(w, init, generator)
    module.register_parameter(name, nn.Parameter(w))
    if policy == "exact":
        EXACT_MAPS[exact_map](module, name)
    names = tuple(getattr(module, "orthogonal_weight_names", ()))
    module.orthogonal_weight_names = (*names, name)


def constrained_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (qualified name, current weight) for every constrained weight in ``model``: those listed in a
    submodule's ``orthogonal_weight_names`` and those under PyTorch's orthogonal parametrisation."""
    for prefix, m in model.named_modules():
        names = set(getattr(m, "orthogonal_weight_names", ()))
        if parametrize.is_parametrized(m):
            for pname, plist in m.parametrizations.items():
                if any(type(p).__name__ == "_Orthogonal" for p in plist):
                    names.add(pname)
        for name in sorted(names):
            yield (f"{prefix}.{name}" if prefix else name), getattr(m, name)


def orthogonality_error(w: torch.Tensor) -> torch.Tensor:
    """‖WWᵀ − I‖_F for rows ≤ cols, ‖WᵀW − I‖_F otherwise (batched over leading dimensions)."""
    rows, cols = w.shape[-2:]
    g = w @ w.mT if rows <= cols else w.mT @ w
    eye = torch.eye(g.shape[-1], dtype=w.dtype, device=w.device)
    return torch.linalg.matrix_norm(g - eye)
