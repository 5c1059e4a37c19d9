"""Keras metrics as per-batch graph tensors (the fit loop averages them over the epoch by sample count).

"accuracy" resolves from the loss and output shape as Keras does: binary for a binary
cross-entropy (or a 1-unit output), sparse categorical for class-id labels, else categorical.
"""
from __future__ import annotations

import graphflow as gf

from . import losses


def sparse_categorical_accuracy(y_true, y_pred):
    """Fraction of samples whose arg-max prediction equals the class-id label."""
    labels = losses.sparse_labels(y_true, y_pred)
    predicted = gf.argmax(y_pred, axis=-1)
    return gf.reduce_mean(gf.cast(gf.equal(predicted, gf.cast(labels, predicted.dtype)), y_pred.dtype))


def categorical_accuracy(y_true, y_pred):
    """Fraction of samples whose arg-max prediction equals the arg-max of the one-hot label."""
    hit = gf.equal(gf.argmax(y_true, axis=-1), gf.argmax(y_pred, axis=-1))
    return gf.reduce_mean(gf.cast(hit, y_pred.dtype))


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Fraction of values where (prediction > threshold) equals the 0/1 label."""
    y_true = losses._float(losses._match_rank(y_true, y_pred), y_pred)
    predicted = gf.cast(y_pred > threshold, y_pred.dtype)
    return gf.reduce_mean(gf.cast(gf.equal(predicted, y_true), y_pred.dtype))


def _mean_of(fn):
    def metric(y_true, y_pred):
        return gf.reduce_mean(fn(y_true, y_pred))

    metric.__name__ = fn.__name__
    return metric


_BY_NAME = {
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "mse": _mean_of(losses.mean_squared_error), "mean_squared_error": _mean_of(losses.mean_squared_error),
    "mae": _mean_of(losses.mean_absolute_error), "mean_absolute_error": _mean_of(losses.mean_absolute_error),
    "sparse_categorical_crossentropy": _mean_of(losses.sparse_categorical_crossentropy),
    "categorical_crossentropy": _mean_of(losses.categorical_crossentropy),
    "binary_crossentropy": _mean_of(losses.binary_crossentropy),
}


class MeanMetricWrapper:
    """A metric object (`gf.keras.metrics.SparseCategoricalAccuracy()`): a named per-batch function."""

    def __init__(self, fn, name: str, **kwargs):
        self.fn, self.name, self.kwargs = fn, name, kwargs

    def __call__(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.kwargs)


def _metric_class(class_name: str, fn, **defaults) -> type:
    def __init__(self, name=fn.__name__, **kwargs):
        MeanMetricWrapper.__init__(self, fn, name, **{**defaults, **kwargs})

    return type(class_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": f"Batch value of `{fn.__name__}`."})


SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy", sparse_categorical_accuracy)
CategoricalAccuracy = _metric_class("CategoricalAccuracy", categorical_accuracy)
BinaryAccuracy = _metric_class("BinaryAccuracy", binary_accuracy, threshold=0.5)
MeanSquaredError = _metric_class("MeanSquaredError", _mean_of(losses.mean_squared_error))
MeanAbsoluteError = _metric_class("MeanAbsoluteError", _mean_of(losses.mean_absolute_error))


def resolve_accuracy(loss, output_shape, target_shape):
    """The accuracy function Keras picks for "accuracy" given the loss and shapes."""
    fn = getattr(loss, "fn", None)
    if fn is losses.binary_crossentropy or (output_shape and output_shape[-1] == 1):
        return binary_accuracy
    if getattr(loss, "sparse", False) or fn is losses.sparse_categorical_crossentropy or \
            len(target_shape) < len(output_shape) or (target_shape and target_shape[-1] == 1):
        return sparse_categorical_accuracy
    return categorical_accuracy


def get(identifier, loss, output_shape, target_shape):
    """(log name, fn(y_true, y_pred) -> scalar tensor) for a metric name or callable."""
    if identifier in ("accuracy", "acc"):
        return identifier, resolve_accuracy(loss, output_shape, target_shape)
    if isinstance(identifier, str):
        fn = _BY_NAME.get(identifier)
        if fn is None:
            raise ValueError(f"unknown metric {identifier!r}; expected 'accuracy' or one of {sorted(_BY_NAME)}, "
                             "or a callable fn(y_true, y_pred)")
        return identifier, fn
    if isinstance(identifier, MeanMetricWrapper):
        return identifier.name, identifier
    if callable(identifier):
        return getattr(identifier, "__name__", "metric"), _mean_of(identifier)
    raise TypeError(f"cannot interpret {identifier!r} as a metric")
