"""Functional models: `Model(inputs, outputs)` over the DAG of layer calls on KerasTensors."""
from __future__ import annotations

from .. import tree
from ..layers.input_layer import InputLayer, KerasTensor
from .model import Model


def _topological_nodes(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> list:
    """The call nodes between `inputs` and `outputs`, producers first (iterative DFS)."""
    input_nodes = {id(t.node) for t in inputs}
    order, done, stack = [], set(), [(t.node, False) for t in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        if isinstance(node.layer, InputLayer) and id(node) not in input_nodes:
            raise ValueError(f"graph disconnected: the outputs depend on the input '{node.layer.name}', which is "
                             "not among the model's inputs")
        stack.append((node, True))
        stack.extend((parent, False) for parent in reversed(node.parents) if id(parent) not in done)
    return order


class Functional(Model):
    """A model defined by symbolic inputs and outputs; its call() replays the recorded layer calls."""

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        for what, struct in (("inputs", inputs), ("outputs", outputs)):
            bad = [t for t in tree.flatten(struct) if not isinstance(t, KerasTensor)]
            if bad:
                raise TypeError(f"Model {what} must be KerasTensors (from gf.keras.Input and layer calls), "
                                f"got {bad[0]!r}")
        in_list = tree.flatten(inputs)
        for t in in_list:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"Model inputs must come from gf.keras.Input(...), got the output of layer "
                                 f"'{t.node.layer.name}'")
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self.inputs, self.outputs = in_list, tree.flatten(outputs)
        self._nodes = _topological_nodes(in_list, self.outputs)
        input_layers = [t.node.layer for t in in_list]
        for layer in input_layers + [n.layer for n in self._nodes]:
            if not any(layer is l for l in self._layers):
                self._layers.append(layer)

    def _input_specs(self, data=None):
        return [(t.node.layer.name, t.shape, t.dtype) for t in self.inputs]

    def _pack_inputs(self, placeholders):
        return tree.pack_like(self._inputs_struct, placeholders)

    @property
    def input_names(self) -> list[str]:
        return [t.node.layer.name for t in self.inputs]

    @classmethod
    def _is_training_dependent(cls) -> bool:
        return False  # passes `training` on; its layers decide

    def call(self, inputs, training=None):
        memo = {id(kt): t for kt, t in zip(self.inputs, tree.flatten(inputs))}
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            args = tree.map_structure(lambda v: memo[id(v)] if isinstance(v, KerasTensor) else v, node.inputs)
            kwargs = dict(node.kwargs)
            kwargs.setdefault("training", training)
            outs = node.layer(args, *node.args, **kwargs)
            for kt, t in zip(tree.flatten(node.outputs), tree.flatten(outs)):
                memo[id(kt)] = t
        return tree.map_structure(lambda kt: memo[id(kt)], self._outputs_struct)

    def get_config(self) -> dict:
        from ..saving import functional_config

        return functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving import functional_from_config

        return functional_from_config(config, custom_objects)
