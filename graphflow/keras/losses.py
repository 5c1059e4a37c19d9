"""Keras losses: per-sample functions plus `Loss` objects that average them over the batch.

With `from_logits=False` and predictions straight out of a softmax/sigmoid activation, the
cross-entropies use the stable logits form on the pre-activation tensor (as Keras does).
"""
from __future__ import annotations

import graphflow as gf

from . import activations

EPSILON = 1e-7


def _match_rank(y_true, y_pred):
    """Give labels of shape (batch,) a trailing axis when the predictions have one more dimension."""
    if y_true.ndim is not None and y_pred.ndim is not None and y_true.ndim == y_pred.ndim - 1:
        return gf.expand_dims(y_true, -1)
    return y_true


def _float(t, like):
    return t if t.dtype == like.dtype else gf.cast(t, like.dtype)


def sparse_labels(y_true, y_pred):
    """Integer class ids of shape (batch, ...) matching y_pred without its class axis."""
    if y_true.ndim is not None and y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = gf.squeeze(y_true, axis=-1)
    return y_true if y_true.dtype.kind in "iu" else gf.cast(y_true, gf.int32)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy of class-id labels against probabilities (or logits)."""
    labels = sparse_labels(y_true, y_pred)
    logits = y_pred if from_logits else activations.logits_of(y_pred, "softmax")
    if logits is not None:
        return gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    depth = y_pred.shape[-1]
    one_hot = gf.cast(gf.equal(gf.expand_dims(labels, -1), gf.range(depth, dtype=labels.dtype)), y_pred.dtype)
    return _probability_crossentropy(one_hot, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy of one-hot (or soft) labels against probabilities (or logits)."""
    y_true = _float(y_true, y_pred)
    logits = y_pred if from_logits else activations.logits_of(y_pred, "softmax")
    if logits is not None:
        return gf.nn.softmax_cross_entropy_with_logits(labels=y_true, logits=logits)
    return _probability_crossentropy(y_true, y_pred)


def _probability_crossentropy(y_true, probs):
    probs = probs / gf.reduce_sum(probs, axis=-1, keepdims=True)
    probs = gf.clip_by_value(probs, EPSILON, 1.0 - EPSILON)
    return -gf.reduce_sum(y_true * gf.log(probs), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample mean over the last axis of the binary cross-entropy."""
    y_true = _float(_match_rank(y_true, y_pred), y_pred)
    logits = y_pred if from_logits else activations.logits_of(y_pred, "sigmoid")
    if logits is not None:
        per_value = gf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits)
    else:
        p = gf.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON)
        per_value = -(y_true * gf.log(p) + (1.0 - y_true) * gf.log(1.0 - p))
    return gf.reduce_mean(per_value, axis=-1)


def mean_squared_error(y_true, y_pred):
    """Per-sample mean over the last axis of the squared error."""
    y_true = _float(_match_rank(y_true, y_pred), y_pred)
    return gf.reduce_mean(gf.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean over the last axis of the absolute error."""
    y_true = _float(_match_rank(y_true, y_pred), y_pred)
    return gf.reduce_mean(gf.abs(y_pred - y_true), axis=-1)


class Loss:
    """A per-sample loss function averaged over the batch; `sparse` says its labels are class ids."""

    def __init__(self, fn, name: str, from_logits: bool | None = None, sparse: bool = False):
        self.fn, self.name, self.from_logits, self.sparse = fn, name, from_logits, sparse

    def __call__(self, y_true, y_pred):
        per_sample = self.fn(y_true, y_pred) if self.from_logits is None else \
            self.fn(y_true, y_pred, from_logits=self.from_logits)
        return gf.reduce_mean(per_sample)

    def get_config(self) -> dict:
        return {"name": self.name} if self.from_logits is None else {"name": self.name,
                                                                     "from_logits": self.from_logits}


def _named_loss(name: str, fn, sparse: bool = False, has_logits: bool = True) -> type:
    """A Loss class under its Keras name wrapping the per-sample function `fn`."""
    if has_logits:
        def __init__(self, from_logits=False, name=fn.__name__):
            Loss.__init__(self, fn, name, from_logits, sparse)
    else:
        def __init__(self, name=fn.__name__):
            Loss.__init__(self, fn, name, None, sparse)
    return type(name, (Loss,), {"__init__": __init__, "__doc__": f"Batch mean of `{fn.__name__}`."})


SparseCategoricalCrossentropy = _named_loss("SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
                                            sparse=True)
CategoricalCrossentropy = _named_loss("CategoricalCrossentropy", categorical_crossentropy)
BinaryCrossentropy = _named_loss("BinaryCrossentropy", binary_crossentropy)
MeanSquaredError = _named_loss("MeanSquaredError", mean_squared_error, has_logits=False)
MeanAbsoluteError = _named_loss("MeanAbsoluteError", mean_absolute_error, has_logits=False)

_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier) -> Loss:
    """A Loss from a name, a Loss instance, a serialized dict or a callable `fn(y_true, y_pred)`."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)}, a Loss or a callable")
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]](**identifier.get("config", {}))
    if callable(identifier):
        return Loss(identifier, getattr(identifier, "__name__", "loss"))
    raise TypeError(f"cannot interpret {identifier!r} as a loss")


def serialize(loss: Loss) -> dict:
    """A built-in loss as {class_name, config}, or a registered function's reference."""
    if type(loss) in _BY_CLASS.values():
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    from .saving import serialize_callable

    return serialize_callable(loss.fn)
