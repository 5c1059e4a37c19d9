"""Convolution and pooling layers (channels_last, NHWC): Conv2D, Max/AveragePooling2D, GlobalAveragePooling2D."""
from __future__ import annotations

import graphflow as gf

from .. import activations, initializers
from .base import Layer


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return pair


def _padding(value: str) -> str:
    if str(value).lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {value!r}")
    return str(value).lower()


def _check_nhwc(layer: Layer, shape):
    if shape is None or len(shape) != 4 or shape[-1] is None:
        raise ValueError(f"{layer.name}: expected a 4-D (batch, height, width, channels) input with known channels, "
                         f"got shape {shape}")


class Conv2D(Layer):
    """2-D convolution; kernel (kh, kw, in_channels, filters) as Keras (HWIO), then bias (filters,)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.strides = _pair(strides, "Conv2D strides")
        self.padding = _padding(padding)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        _check_nhwc(self, input_shape)
        self.kernel = self.add_weight(self.kernel_size + (input_shape[-1], self.filters), self.kernel_initializer,
                                      name="kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, name="bias") if self.use_bias else None

    def call(self, inputs):
        y = gf.nn.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding.upper())
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class _Pooling2D(Layer):
    """Shared arguments of the 2-D pooling layers; `strides` defaults to `pool_size` as in Keras."""

    pool_fn = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, f"{type(self).__name__} pool_size")
        self.strides = _pair(strides, f"{type(self).__name__} strides") if strides is not None else self.pool_size
        self.padding = _padding(padding)

    def build(self, input_shape):
        _check_nhwc(self, input_shape)

    def call(self, inputs):
        return type(self).pool_fn(inputs, self.pool_size, self.strides, self.padding.upper())

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Maximum over each pool_size window."""

    pool_fn = staticmethod(lambda x, k, s, p: gf.nn.max_pool2d(x, k, s, p))


class AveragePooling2D(_Pooling2D):
    """Mean over each pool_size window (SAME padding averages only the valid cells, as Keras)."""

    pool_fn = staticmethod(lambda x, k, s, p: gf.nn.avg_pool2d(x, k, s, p))


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (batch, h, w, c) -> (batch, c), or (batch, 1, 1, c) with keepdims."""

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        _check_nhwc(self, input_shape)

    def call(self, inputs):
        return gf.reduce_mean(inputs, axis=(1, 2), keepdims=self.keepdims)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}
