"""Data: IDX reader (MNIST, Fashion-MNIST) and generated data sets. Imports nothing else of orthojac."""

from .idx import read_idx
from .synthetic import make_spirals

__all__ = ["read_idx", "make_spirals"]
