"""`Sequential`: a plain stack of layers, each feeding the next (sugar over one call chain)."""
from __future__ import annotations

from ..layers.base import Layer
from ..layers.input_layer import InputLayer, KerasTensor
from .model import Model


class Sequential(Model):
    """Layers applied in order; the first item may be `gf.keras.Input(shape=...)`."""

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        object.__setattr__(self, "_input_layer", None)  # not a sub-layer: it has no weights or call
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        """Append a layer (or, first, an Input)."""
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"{self.name}: an Input can only be the first item of a Sequential model")
            object.__setattr__(self, "_input_layer", layer)
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}: Sequential.add expects a Layer, got {type(layer).__name__}")
        self._layers.append(layer)
        self._invalidate_runtime()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise IndexError(f"{self.name}: there is no layer to pop")
        layer = self._layers.pop()
        self._invalidate_runtime()
        return layer

    def _batch_shape(self):
        if self._build_input_shape is not None:
            return tuple(self._build_input_shape)
        if self._input_layer is not None:
            return self._input_layer.batch_shape
        if self._layers and self._layers[0]._batch_input_shape is not None:
            return self._layers[0]._batch_input_shape
        return None

    def _default_input_dtype(self):
        if self._input_layer is not None:
            return self._input_layer.dtype
        return self._layers[0].input_dtype if self._layers else super()._default_input_dtype()

    def _input_specs(self, data=None):
        shape = self._batch_shape()
        if shape is None:
            return super()._input_specs(data)
        return [("input", shape, self._default_input_dtype())]

    @classmethod
    def _is_training_dependent(cls) -> bool:
        return False  # passes `training` on; its layers decide

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    def get_config(self) -> dict:
        from ..saving import serialize_layer

        shape = self._batch_shape()
        return {"name": self.name, "trainable": self.trainable,
                "input": None if shape is None else {"batch_shape": list(shape),
                                                     "dtype": self._default_input_dtype().name},
                "layers": [serialize_layer(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..layers.input_layer import Input
        from ..saving import deserialize_layer

        layers = [deserialize_layer(c, custom_objects) for c in config["layers"]]
        spec = config.get("input")
        if spec is not None:
            layers.insert(0, Input(batch_shape=tuple(spec["batch_shape"]), dtype=spec["dtype"]))
        return cls(layers, name=config.get("name"), trainable=config.get("trainable", True))
