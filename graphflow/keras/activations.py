"""Activation functions by Keras name; softmax and sigmoid remember their logits.

A loss given probabilities from a softmax/sigmoid output (from_logits=False) looks the
logits up here and uses the stable logits form instead, as Keras does.
"""
from __future__ import annotations

import weakref

import graphflow as gf

_logits_of: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def relu(x):
    """max(x, 0)."""
    return gf.nn.relu(x)


def sigmoid(x):
    """1 / (1 + exp(-x)); remembers x as the logits of its output."""
    out = gf.sigmoid(x)
    _logits_of[out] = ("sigmoid", x)
    return out


def tanh(x):
    """Hyperbolic tangent."""
    return gf.tanh(x)


def softmax(x, axis=-1):
    """Softmax over `axis`; remembers x as the logits of its output (last axis)."""
    out = gf.nn.softmax(x, axis=axis)
    if axis == -1 or axis == (x.ndim or 0) - 1:
        _logits_of[out] = ("softmax", x)
    return out


def gelu(x, approximate=False):
    """Gaussian error linear unit (exact erf form unless approximate=True, as keras.activations.gelu)."""
    return gf.nn.gelu(x, approximate=approximate)


def linear(x):
    """The identity (activation=None)."""
    return x


_BY_NAME = {"relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax, "gelu": gelu,
            "linear": linear}


def get(identifier):
    """The activation function for a name, None ("linear"), or a callable (returned as is)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = _BY_NAME.get(identifier)
        if fn is None:
            raise ValueError(f"unknown activation {identifier!r}; expected one of {sorted(_BY_NAME)} or a callable")
        return fn
    if callable(identifier):
        return identifier
    if isinstance(identifier, dict):  # a registered custom function, as saved in a layer config
        from .saving import deserialize_callable

        return deserialize_callable(identifier)
    raise TypeError(f"activation must be a name or a callable, got {identifier!r}")


def serialize(fn) -> str | dict:
    """The name of a built-in activation, or a registered function's reference."""
    for name, known in _BY_NAME.items():
        if fn is known:
            return name
    from .saving import serialize_callable

    return serialize_callable(fn)


def logits_of(t, kind: str):
    """The pre-activation tensor when `t` came out of the `kind` ("softmax"/"sigmoid") activation, else None."""
    entry = _logits_of.get(t)
    return entry[1] if entry is not None and entry[0] == kind else None
