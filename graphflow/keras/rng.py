"""The random source of gf.keras: weight initializers, shuffling and dropout seeds.

One numpy Generator, reseeded by `gf.keras.utils.set_random_seed`, so a script that sets a
seed gets the same weights, batch order and dropout masks on every run.
"""
from __future__ import annotations

import numpy as np

_state = {"rng": np.random.default_rng()}


def set_random_seed(seed: int) -> None:
    """Make initial weights, shuffling and dropout masks reproducible (as keras.utils.set_random_seed)."""
    _state["rng"] = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The shared numpy Generator."""
    return _state["rng"]


def next_seed() -> int:
    """A fresh op-level seed for a random graph op (dropout) drawn from the keras generator."""
    return int(_state["rng"].integers(0, 2**31 - 1))
