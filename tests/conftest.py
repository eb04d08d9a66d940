import pytest
import torch
from torch.nn.utils import parametrize


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def body_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians of fn at a batch x, flattened to (batch, out, in), via torch.func.jacrev.
    Parametrised weights are computed once (``parametrize.cached``), not once per vmapped row."""
    def single(v):
        return fn(v.unsqueeze(0)).reshape(-1)
    with parametrize.cached():
        return torch.func.vmap(torch.func.jacrev(single))(x).reshape(x.shape[0], -1, x[0].numel())


def pytest_configure(config) -> None:
    """One intra-op thread per test process: `pytest -n 2` already uses both cores of the CI machine, and
    oversubscribed BLAS threads made the suite several times slower there."""
    torch.set_num_threads(1)
