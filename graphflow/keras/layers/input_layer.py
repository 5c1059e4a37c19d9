"""Symbolic tensors of the functional API: `Input`, `InputLayer`, `KerasTensor` and call `Node`s.

A KerasTensor only knows its shape, dtype and the node that produced it; a functional
Model replays the nodes into its own graph.
"""
from __future__ import annotations

import graphflow as gf

from .. import tree
from .base import Layer


class KerasTensor:
    """A symbolic output of a layer call: shape (batch first, None = unknown) and dtype."""

    def __init__(self, shape, dtype, name: str | None = None):
        self.shape = tuple(shape)
        self.dtype = gf.dtypes.as_dtype(dtype)
        self.name = name
        self.node = None  # the Node that produced it (set by Node)
        self.index = 0    # which of the node's flat outputs it is

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        name = f" name={self.name}" if self.name else ""
        return f"<KerasTensor shape={self.shape} dtype={self.dtype.name}{name}>"


class Node:
    """One call of a layer on symbolic tensors: what it consumed and produced."""

    def __init__(self, layer: Layer, inputs, outputs, args=(), kwargs=None):
        self.layer = layer
        self.inputs = inputs
        self.outputs = outputs
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        for i, t in enumerate(tree.flatten(outputs)):
            t.node, t.index = self, i
        layer._inbound_nodes.append(self)

    @property
    def parents(self) -> list["Node"]:
        return [t.node for t in tree.flatten(self.inputs) if isinstance(t, KerasTensor)]


class InputLayer(Layer):
    """The layer behind `Input`: it has no weights and passes its placeholder through."""

    def __init__(self, shape=None, batch_size=None, dtype="float32", name=None, batch_shape=None, **kwargs):
        super().__init__(name=name or None, dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("Input: give shape= (without the batch dimension) or batch_shape=")
            batch_shape = (batch_size,) + tuple(shape)
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        self.built = True
        self.output = KerasTensor(self.batch_shape, self.dtype, name=self.name)
        Node(self, [], self.output)

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype.name, "name": self.name}


def Input(shape=None, batch_size=None, dtype="float32", name=None, batch_shape=None) -> KerasTensor:  # noqa: N802
    """A symbolic model input of `shape` (without the batch dimension), as keras.Input."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape).output
