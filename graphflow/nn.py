"""`gf.nn`: activations, softmax and losses, convolution and pooling, normalization, dropout.

The activations, convolution and pooling are registered primitives; softmax, the
cross-entropies, moments, batch_normalization, l2_loss, bias_add and dropout are composites
of primitives (see graphflow/ops/composite.py).
"""
from __future__ import annotations

from .ops.activations import elu, gelu, leaky_relu, relu, relu6, selu, softplus
from .ops.conv import conv2d
from .ops.math_api import sigmoid, tanh
from .ops.nn_ops import (batch_normalization, bias_add, dropout, l2_loss, log_softmax, moments,
                         sigmoid_cross_entropy_with_logits, softmax, softmax_cross_entropy_with_logits,
                         sparse_softmax_cross_entropy_with_logits)
from .ops.pooling import avg_pool2d, max_pool2d

max_pool = max_pool2d
avg_pool = avg_pool2d

__all__ = ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "softplus", "sigmoid", "tanh", "softmax",
           "log_softmax", "dropout", "sparse_softmax_cross_entropy_with_logits",
           "softmax_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits", "l2_loss", "conv2d",
           "max_pool2d", "avg_pool2d", "max_pool", "avg_pool", "bias_add", "batch_normalization", "moments"]
