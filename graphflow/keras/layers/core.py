"""Core layers: Dense, Activation, Flatten, Reshape, Dropout, Embedding."""
from __future__ import annotations

import math

import graphflow as gf

from .. import activations, initializers, rng
from .base import Layer


def _known(shape, what: str, layer: Layer) -> tuple:
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"{layer.name}: {what} must be known when the layer is built, got input shape {shape}")
    return tuple(shape)


class Dense(Layer):
    """`activation(inputs @ kernel + bias)` over the last axis; kernel (in, units), then bias (units,)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape is None or input_shape[-1] is None:
            raise ValueError(f"{self.name}: the last dimension of the input must be known, got {input_shape}")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer, name="kernel")
        self.bias = self.add_weight((self.units,), self.bias_initializer, name="bias") if self.use_bias else None

    def call(self, inputs):
        rank = inputs.ndim
        if rank == 2:
            y = gf.matmul(inputs, self.kernel)
        else:
            inner = _known(inputs.shape[1:], "every non-batch dimension", self)
            flat = gf.reshape(inputs, (-1, inner[-1]))
            y = gf.reshape(gf.matmul(flat, self.kernel), (-1,) + inner[:-1] + (self.units,))
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias, "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class Activation(Layer):
    """Applies an activation function by name ("relu", "softmax", ...) or callable."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """Collapses every non-batch dimension into one."""

    def call(self, inputs):
        inner = _known(inputs.shape[1:], "every non-batch dimension", self)
        return gf.reshape(inputs, (-1, math.prod(inner)))


class Reshape(Layer):
    """Reshapes the non-batch dimensions to `target_shape` (one -1 allowed)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def call(self, inputs):
        inner = _known(inputs.shape[1:], "every non-batch dimension", self)
        size, target = math.prod(inner), list(self.target_shape)
        if -1 in target:
            rest = math.prod(d for d in target if d != -1)
            if rest == 0 or size % rest:
                raise ValueError(f"{self.name}: cannot reshape {inputs.shape} to (batch,) + {self.target_shape}")
            target[target.index(-1)] = size // rest
        if math.prod(target) != size:
            raise ValueError(f"{self.name}: cannot reshape {inputs.shape} ({size} values per sample) to "
                             f"(batch,) + {self.target_shape} ({math.prod(target)} values)")
        return gf.reshape(inputs, (-1,) + tuple(target))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Dropout(Layer):
    """Zeroes a `rate` fraction of the inputs while training (scaling the rest by 1/(1-rate))."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        seed = self.seed if self.seed is not None else rng.next_seed()
        return gf.nn.dropout(inputs, rate=self.rate, seed=seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Embedding(Layer):
    """Looks integer ids up in an (input_dim, output_dim) table."""

    input_dtype = gf.int32

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", input_length=None, **kwargs):
        if input_length is not None and kwargs.get("input_shape") is None:  # Keras 2's way to give the input shape
            kwargs["input_shape"] = (int(input_length),)
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight((self.input_dim, self.output_dim), self.embeddings_initializer,
                                          name="embeddings")

    def call(self, inputs):
        if inputs.dtype.kind != "i":
            inputs = gf.cast(inputs, gf.int32)
        return gf.gather(self.embeddings, inputs)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer)}
