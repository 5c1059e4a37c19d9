"""BatchNormalization (batch statistics while training, moving statistics at inference) and LayerNormalization."""
from __future__ import annotations

import graphflow as gf

from .. import initializers
from .base import Layer

UPDATE_OPS = "update_ops"  # graph collection of the moving-statistics assignments made while training


def _axis(axis, rank: int, name: str) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 < a < rank:
        raise ValueError(f"{name}: axis {axis} is out of range for a rank-{rank} input (axis 0 is the batch)")
    return a


def _broadcastable(param, axis: int, rank: int):
    """Reshape a (C,) parameter so it broadcasts along `axis` of a rank-`rank` input."""
    if axis == rank - 1:
        return param
    return gf.reshape(param, tuple(-1 if i == axis else 1 for i in range(rank)))


class BatchNormalization(Layer):
    """Normalizes over the batch (and every axis but `axis`); weights gamma, beta, moving_mean, moving_variance."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = int(axis), float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        a = _axis(self.axis, len(input_shape), self.name)
        if input_shape[a] is None:
            raise ValueError(f"{self.name}: the normalized axis {self.axis} of input shape {input_shape} must be known")
        c = (input_shape[a],)
        self.gamma = self.add_weight(c, self.gamma_initializer, name="gamma") if self.scale else None
        self.beta = self.add_weight(c, self.beta_initializer, name="beta") if self.center else None
        self.moving_mean = self.add_weight(c, self.moving_mean_initializer, trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(c, self.moving_variance_initializer, trainable=False,
                                               name="moving_variance")

    def call(self, inputs, training=None):
        rank = inputs.ndim
        a = _axis(self.axis, rank, self.name)
        if training:
            mean, variance = gf.nn.moments(inputs, [i for i in range(rank) if i != a])
            g, m = inputs.graph, self.momentum
            for weight, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                var = weight.variable(g)
                g.add_to_collection(UPDATE_OPS, var.assign(var * m + batch_value * (1.0 - m)))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        params = [None if p is None else _broadcastable(p, a, rank)
                  for p in (mean, variance, self.beta, self.gamma)]
        return gf.nn.batch_normalization(inputs, *params, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)}


class LayerNormalization(Layer):
    """Normalizes each sample over `axis` (the last by default); weights gamma, then beta."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = int(axis), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)

    def build(self, input_shape):
        a = _axis(self.axis, len(input_shape), self.name)
        if input_shape[a] is None:
            raise ValueError(f"{self.name}: the normalized axis {self.axis} of input shape {input_shape} must be known")
        c = (input_shape[a],)
        self.gamma = self.add_weight(c, self.gamma_initializer, name="gamma") if self.scale else None
        self.beta = self.add_weight(c, self.beta_initializer, name="beta") if self.center else None

    def call(self, inputs):
        rank = inputs.ndim
        a = _axis(self.axis, rank, self.name)
        mean = gf.reduce_mean(inputs, axis=a, keepdims=True)
        centered = inputs - mean
        variance = gf.reduce_mean(gf.square(centered), axis=a, keepdims=True)
        y = centered * gf.rsqrt(variance + self.epsilon)
        if self.scale:
            y = y * _broadcastable(self.gamma, a, rank)
        if self.center:
            y = y + _broadcastable(self.beta, a, rank)
        return y

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer)}
