"""Layers that merge a list of inputs: Add and Concatenate."""
from __future__ import annotations

import graphflow as gf

from .base import Layer


def _check_list(layer: Layer, inputs):
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
        raise ValueError(f"{layer.name}: expected a list of at least 2 inputs, got {inputs!r}")


class Add(Layer):
    """Elementwise sum of its inputs (numpy broadcasting)."""

    def call(self, inputs):
        _check_list(self, inputs)
        out = inputs[0]
        for t in inputs[1:]:
            out = out + t
        return out


class Concatenate(Layer):
    """Joins its inputs along `axis` (the last by default)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs):
        _check_list(self, inputs)
        return gf.concat(list(inputs), axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def add(inputs, **kwargs):
    """Functional form of `Add`: `add([a, b])`."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of `Concatenate`: `concatenate([a, b], axis=-1)`."""
    return Concatenate(axis=axis, **kwargs)(inputs)
