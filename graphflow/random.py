"""`gf.random`: random tensors, reproducible from the graph seed and the op seed."""
from __future__ import annotations

from .ops.array_ops import random_normal as normal, random_uniform as uniform, set_random_seed as set_seed

__all__ = ["normal", "uniform", "set_seed"]
