"""Neural-network composites: softmax, log_softmax, the three cross-entropies, l2_loss,
bias_add, moments, batch_normalization and dropout.

All are expansions into primitives (max/sum reductions, exp, log, where, ...), with the
max shift behind stop_gradient so softmax stays stable without changing its gradient.
Their gradients therefore come from the primitives, and the fusion planner sees the
reduce-then-elementwise patterns it turns into row kernels.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .array_ops import random_uniform, range as range_
from .build import apply_op, convert_to_tensor, is_tensor_like, normalize_axes, normalize_axis
from .composite import CompositeDef, register_composite
from .control import identity, stop_gradient
from .conv import either
from .math_api import abs as abs_, equal, exp, log, log1p, maximum, rsqrt, square, where, zeros_like
from .reduction import reduce_max, reduce_mean, reduce_sum
from .registry import OpDef, OpKind, register
from .shape_ops import expand_dims, reshape, shape, squeeze


def _float_tensor(x, fn, what="logits", need_rank=True):
    t = convert_to_tensor(x)
    if t.dtype not in _dt.FLOATS:
        raise TypeError(f"{fn}: {what} '{t.name}' must be float32 or float64, got {t.dtype.name}")
    if need_rank and t.shape is None:
        raise ValueError(f"{fn}: the rank of {what} '{t.name}' must be known")
    return t


def _max_shift(x, axis):
    """x minus its (constant-for-gradients) maximum along `axis`."""
    return x - stop_gradient(reduce_max(x, axis=axis, keepdims=True))


def softmax(logits, axis=-1, name=None):
    """exp(x) / sum(exp(x)) along `axis`, computed on x - max(x)."""
    x = _float_tensor(logits, "softmax")
    axis = normalize_axis(-1 if axis is None else axis, len(x.shape))
    with x.graph.name_scope(name or "Softmax"):
        e = exp(_max_shift(x, axis))
        return e / reduce_sum(e, axis=axis, keepdims=True)


def log_softmax(logits, axis=-1, name=None):
    """x - logsumexp(x) along `axis`, computed on x - max(x)."""
    x = _float_tensor(logits, "log_softmax")
    axis = normalize_axis(-1 if axis is None else axis, len(x.shape))
    with x.graph.name_scope(name or "LogSoftmax"):
        shifted = _max_shift(x, axis)
        return shifted - log(reduce_sum(exp(shifted), axis=axis, keepdims=True))


def _check_same_shape(labels, logits, fn):
    if labels.shape is not None and len(labels.shape) != len(logits.shape):
        raise ValueError(f"{fn}: labels '{labels.name}' has shape {labels.shape}, logits '{logits.name}' has "
                         f"{logits.shape}; they must have the same shape")
    if labels.shape is not None:
        for a, b in zip(labels.shape, logits.shape):
            if a is not None and b is not None and a != b:
                raise ValueError(f"{fn}: labels '{labels.name}' has shape {labels.shape}, logits "
                                 f"'{logits.name}' has {logits.shape}; they must have the same shape")


_UNSIGNED = {np.dtype(np.int32): np.dtype(np.uint32), np.dtype(np.int64): np.dtype(np.uint64)}


def _check_labels_kernel(labels, logits):
    labels = np.asarray(labels)
    shape = logits.shape if isinstance(logits, np.ndarray) else np.shape(logits)
    if labels.shape != shape[:-1]:
        raise ValueError(f"labels of shape {labels.shape} do not match logits of shape {shape}: "
                         "expected logits.shape[:-1]")
    limit = shape[-1]
    # one maximum: a negative label is a huge one read as unsigned (W5's step: 43 -> ~20 us
    # for 128 labels in the caches a product leaves behind, where each numpy call is slow; the
    # unsigned dtype from a table rather than parsed from a string: the check 48 -> 30 us there)
    unsigned = _UNSIGNED.get(labels.dtype) or labels.dtype.str.replace("i", "u")   # (or byte-swapped)
    if labels.size and _largest(labels.view(unsigned)) >= limit:
        bad = labels[(labels < 0) | (labels >= limit)].flat[0]
        raise ValueError(f"received a label value of {bad} which is outside the valid range of [0, {limit})")
    return labels


# Up to this many labels, Python's max over the list: numpy's reduction machinery is cold in a
# training step (evicted by the products), the interpreter's loop is not. W5's step (128 labels,
# one Zen 4 core, A/B in one process): 9-13 us faster. Hot, the list loses from ~64 labels on
# (128: 2.2 vs 1.1 us; 4096: 58 vs 1.3), so larger batches keep numpy's.
LIST_MAX_LABELS = 256


def _largest(values: np.ndarray) -> int:
    return max(values.ravel().tolist()) if values.size <= LIST_MAX_LABELS else int(values.max())


def _check_labels_infer(specs, attrs):
    y, _ = specs
    if y.dtype not in _dt.INTS:
        raise TypeError(f"labels must be int32 or int64, got {y.dtype.name}")
    return y


register(OpDef(type="CheckLabels", default_name="CheckLabels", kind=OpKind.OPAQUE, kernel=_check_labels_kernel,
               infer=_check_labels_infer, grad=lambda op, dy: [None, None], dtypes=_dt.INTS,
               sample=("label", "real"),
               # the labels' dims are the logits' leading dims (checked at run time)
               extra={"shape_only_inputs": (1,), "dim_source": lambda op, i: (op.inputs[1], i)},
               doc="passes int labels through, failing the run on one outside [0, classes of the logits) "
                   "or on a shape other than logits.shape[:-1]"))


def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """-log(softmax(logits)[label]) per row: logsumexp(logits) - logits[label].

    labels: int class indices of shape logits.shape[:-1]; a label outside [0, classes)
    fails the run with InvalidArgumentError (as TF's CPU kernel does).
    """
    fn = "sparse_softmax_cross_entropy_with_logits"
    if labels is None or logits is None:
        raise ValueError(f"{fn}: both labels= and logits= are required")
    x = _float_tensor(logits, fn)
    y = convert_to_tensor(labels)
    if y.dtype not in _dt.INTS:
        raise TypeError(f"{fn}: labels '{y.name}' must be int32 or int64 class indices, got {y.dtype.name}")
    if len(x.shape) < 1:
        raise ValueError(f"{fn}: logits '{x.name}' must have rank >= 1, got a scalar")
    if y.shape is not None and (len(y.shape) != len(x.shape) - 1 or any(
            a is not None and b is not None and a != b for a, b in zip(y.shape, x.shape[:-1]))):
        raise ValueError(f"{fn}: labels '{y.name}' has shape {y.shape}, expected logits.shape[:-1] = "
                         f"{x.shape[:-1]} (logits '{x.name}' has shape {x.shape})")
    with x.graph.name_scope(name or "SparseSoftmaxCrossEntropyWithLogits"):
        m = stop_gradient(reduce_max(x, axis=-1, keepdims=True))
        lse = log(reduce_sum(exp(x - m), axis=-1)) + squeeze(m, -1)
        y = apply_op("CheckLabels", [y, x])
        depth = x.shape[-1] if x.shape[-1] is not None else shape(x)[-1]
        mask = equal(expand_dims(y, -1), range_(depth, dtype=y.dtype))
        picked = reduce_sum(where(mask, x, zeros_like(x)), axis=-1)
        # the check also as a control input of the result: a pass that simplifies its data use
        # away (equal logits make the picked value the same for every label) still runs it
        with x.graph.control_dependencies([y.op]):
            return lse - picked


def _dense_labels_and_logits(labels, logits, fn):
    """(labels, logits) as tensors of one float dtype and one shape, for the losses whose
    labels are dense (a distribution or 0/1 targets per logit)."""
    if labels is None or logits is None:
        raise ValueError(f"{fn}: both labels= and logits= are required")
    x = _float_tensor(logits, fn)
    z = convert_to_tensor(labels, dtype=x.dtype) if not is_tensor_like(labels) else convert_to_tensor(labels)
    if z.dtype != x.dtype:
        raise TypeError(f"{fn}: labels '{z.name}' ({z.dtype.name}) and logits '{x.name}' ({x.dtype.name}) "
                        "must have the same dtype; use gf.cast")
    _check_same_shape(z, x, fn)
    return z, x


def softmax_cross_entropy_with_logits(labels=None, logits=None, axis=-1, name=None):
    """-sum(labels * log_softmax(logits)) along `axis` (labels: a distribution per row;
    differentiable in both labels and logits, as TF2's v2 op)."""
    z, x = _dense_labels_and_logits(labels, logits, "softmax_cross_entropy_with_logits")
    with x.graph.name_scope(name or "SoftmaxCrossEntropyWithLogits"):
        return -reduce_sum(z * log_softmax(x, axis=axis), axis=axis)


def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Elementwise logistic loss max(x, 0) - x * z + log1p(exp(-|x|)) (stable for any x)."""
    z, x = _dense_labels_and_logits(labels, logits, "sigmoid_cross_entropy_with_logits")
    with x.graph.name_scope(name or "logistic_loss"):
        return maximum(x, 0.0) - x * z + log1p(exp(-abs_(x)))


def l2_loss(t, name=None):
    """sum(t ** 2) / 2, a scalar."""
    x = _float_tensor(t, "l2_loss", "input")
    with x.graph.name_scope(name or "L2Loss"):
        return reduce_sum(square(x)) * 0.5


def bias_add(value, bias, data_format=None, name=None):
    """value + bias, with the 1-D `bias` along the channel axis (last, or 1 for NCHW)."""
    x = convert_to_tensor(value)
    b = convert_to_tensor(bias) if is_tensor_like(bias) else convert_to_tensor(bias, dtype=x.dtype)
    if b.dtype != x.dtype:
        raise TypeError(f"bias_add: bias '{b.name}' ({b.dtype.name}) and value '{x.name}' ({x.dtype.name}) "
                        "must have the same dtype")
    if x.shape is None or len(x.shape) < 2:
        raise ValueError(f"bias_add: value '{x.name}' must have rank >= 2, got shape {x.shape}")
    if b.shape is None or len(b.shape) != 1:
        raise ValueError(f"bias_add: bias '{b.name}' must be 1-D, got shape {b.shape}")
    channels_first = data_format is not None and str(data_format).upper().startswith("NC")
    axis = 1 if channels_first else len(x.shape) - 1
    c = x.shape[axis]
    if c is not None and b.shape[0] is not None and c != b.shape[0]:
        raise ValueError(f"bias_add: bias '{b.name}' has {b.shape[0]} elements, value '{x.name}' has {c} "
                         f"channels (shape {x.shape})")
    with x.graph.name_scope(name or "BiasAdd"):
        if channels_first:
            b = reshape(b, (-1,) + (1,) * (len(x.shape) - 2))
        return x + b


def moments(x, axes, shift=None, keepdims=None, name=None, keep_dims=None):
    """(mean, variance) of `x` over `axes`; the variance uses the mean as a constant
    (the exact gradient, since the deviations sum to zero)."""
    t = _float_tensor(x, "moments", "x")
    keep = bool(keepdims if keepdims is not None else keep_dims)
    ax = normalize_axes(axes, len(t.shape))
    with t.graph.name_scope(name or "moments"):
        mean = reduce_mean(t, axis=ax, keepdims=True)
        variance = reduce_mean(square(t - stop_gradient(mean)), axis=ax, keepdims=True)
        if not keep:
            mean, variance = squeeze(mean, ax), squeeze(variance, ax)
        return mean, variance


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon=None, name=None, *, eps=None):
    """(x - mean) * scale / sqrt(variance + eps) + offset, as x * inv + (offset - mean * inv);
    `offset` and `scale` may be None; the epsilon is TF's variance_epsilon (or eps=)."""
    variance_epsilon = either("batch_normalization", ("variance_epsilon", "eps"), (variance_epsilon, eps))
    t = _float_tensor(x, "batch_normalization", "x")
    mean, variance, offset, scale = (v if v is None or is_tensor_like(v) else convert_to_tensor(v, dtype=t.dtype)
                                     for v in (mean, variance, offset, scale))
    with t.graph.name_scope(name or "batchnorm"):
        inv = rsqrt(variance + variance_epsilon)
        if scale is not None:
            inv = inv * scale
        shift = offset - mean * inv if offset is not None else -mean * inv
        return t * inv + shift


def dropout(x, rate=None, seed=None, noise_shape=None, name=None, keep_prob=None):
    """Zero each element with probability `rate` and scale the kept ones by 1 / (1 - rate)
    (TF2's `rate`; TF1's keep_prob= is 1 - rate); `rate` = 0 returns x unchanged."""
    t = _float_tensor(x, "dropout", "x", need_rank=False)
    if (rate is None) == (keep_prob is None):
        raise ValueError("dropout: pass exactly one of rate= and keep_prob=")
    if keep_prob is not None:
        rate = 1.0 - keep_prob
    dynamic_rate = is_tensor_like(rate)
    if not dynamic_rate:
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
        if rate == 0.0:
            return identity(t, name=name)
    with t.graph.name_scope(name or "dropout"):
        if noise_shape is not None and not is_tensor_like(noise_shape):
            # TF: a None entry takes x's dimension; the mask broadcasts over size-1 entries
            dims = [shape(t)[i] if d is None else d for i, d in enumerate(noise_shape)]
        elif noise_shape is not None:
            dims = noise_shape
        elif t.shape is not None and all(d is not None for d in t.shape):
            dims = t.shape
        else:
            dims = shape(t)
        u = random_uniform(dims, dtype=t.dtype, seed=seed)
        if dynamic_rate:
            r = convert_to_tensor(rate, dtype=t.dtype)
            scale = 1.0 / (1.0 - r)
        else:
            r, scale = rate, 1.0 / (1.0 - rate)
        return where(u >= r, t * scale, zeros_like(t))


# ---- composite definitions (the numpy references the generated tests start from) ----

def _np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _np_sparse_xent(labels, logits):
    lp = _np_log_softmax(logits)
    return -np.take_along_axis(lp, np.asarray(labels)[..., None].astype(np.int64), axis=-1)[..., 0]


def _np_moments(x, axes, keepdims=False):
    mean = np.mean(x, axis=tuple(axes), keepdims=True)
    var = np.mean(np.square(x - mean), axis=tuple(axes), keepdims=True)
    if not keepdims:
        mean, var = np.squeeze(mean, tuple(axes)), np.squeeze(var, tuple(axes))
    return mean, var


for _cdef in [
    CompositeDef("nn.softmax", lambda x, **a: softmax(x, **a), _np_softmax, ("real",), _dt.FLOATS,
                 ({"axis": -1}, {"axis": 0}), grad_inputs=(0,)),
    CompositeDef("nn.log_softmax", lambda x, **a: log_softmax(x, **a), _np_log_softmax, ("real",), _dt.FLOATS,
                 ({"axis": -1}, {"axis": 0}), grad_inputs=(0,)),
    CompositeDef("nn.sparse_softmax_cross_entropy_with_logits",
                 lambda y, x: sparse_softmax_cross_entropy_with_logits(labels=y, logits=x), _np_sparse_xent,
                 ("label", "real"), _dt.INTS, grad_inputs=(1,)),
    CompositeDef("nn.softmax_cross_entropy_with_logits",
                 lambda z, x: softmax_cross_entropy_with_logits(labels=z, logits=x),
                 lambda z, x: -np.sum(z * _np_log_softmax(x), axis=-1), ("distribution", "real"), _dt.FLOATS,
                 grad_inputs=(0, 1)),
    CompositeDef("nn.sigmoid_cross_entropy_with_logits",
                 lambda z, x: sigmoid_cross_entropy_with_logits(labels=z, logits=x),
                 lambda z, x: np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x))), ("unit01", "real"),
                 _dt.FLOATS, grad_inputs=(0, 1)),
    CompositeDef("nn.l2_loss", lambda x: l2_loss(x), lambda x: np.sum(np.square(x)) / 2, ("real",), _dt.FLOATS,
                 grad_inputs=(0,)),
    CompositeDef("nn.bias_add", lambda x, b: bias_add(x, b), lambda x, b: x + b, ("real", "real"), _dt.FLOATS,
                 grad_inputs=(0, 1)),
    CompositeDef("nn.moments", lambda x, **a: moments(x, **a), _np_moments, ("real",), _dt.FLOATS,
                 ({"axes": (0,)}, {"axes": (0, 1), "keepdims": True}), grad_inputs=(0,)),
    CompositeDef("nn.batch_normalization",
                 lambda x, m, v, o, s, **a: batch_normalization(x, m, v, o, s, **a),
                 lambda x, m, v, o, s, variance_epsilon: (x - m) / np.sqrt(v + variance_epsilon) * s + o,
                 ("real", "real", "positive", "real", "real"), _dt.FLOATS, ({"variance_epsilon": 1e-3},),
                 grad_inputs=(0, 1, 2, 3, 4)),
    CompositeDef("nn.dropout", lambda x, **a: dropout(x, **a), None, ("real",), _dt.FLOATS,
                 ({"rate": 0.5, "seed": 1},), random=True),
]:
    register_composite(_cdef)
