"""2-D max and average pooling (NHWC) with their gradient ops.

MaxPool routes its gradient to the first maximum of each window (as TF); AvgPool with
SAME padding averages over the window elements inside the input only. The gradient ops
are linear in the incoming gradient, so each has a gradient too (MaxPoolGradGrad picks
the gradient at the routed positions; the adjoint of AvgPoolGrad is AvgPool).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, convert_to_tensor
from .conv import (add_windows, crop, either, geometry, normalize_padding, normalize_window, out_size, pad_spatial,
                   windows)
from .registry import OpDef, OpKind, TensorSpec, register


def _pool_infer(specs, attrs):
    x = specs[0]
    if x.dtype not in _dt.FLOATS:
        raise TypeError(f"pooling needs float32 or float64, got {x.dtype.name}")
    if x.shape is None:
        return TensorSpec((None,) * 4, x.dtype)
    if len(x.shape) != 4:
        raise ValueError(f"pooling needs a 4-D NHWC input, got shape {x.shape}")
    (kh, kw), (sh, sw), p = attrs["ksize"], attrs["strides"], attrs["padding"]
    n, h, w, c = x.shape
    return TensorSpec((n, out_size(h, kh, sh, p, "input height"), out_size(w, kw, sw, p, "input width"), c),
                      x.dtype)


def _setup(x, ksize, strides, padding):
    x = np.asarray(x)
    _, h, w, _ = x.shape
    pads, out_hw = geometry(h, w, ksize[0], ksize[1], strides, padding)
    return x, pads, out_hw


# ---- max pooling ----

def _argmax_positions(x, ksize, strides, padding):
    """Flat indices into the padded input of each window's first maximum (NaN counts as
    the maximum, as numpy's), and the padded shape. Padding never wins, even over -inf."""
    x, pads, (oh, ow) = _setup(x, ksize, strides, padding)
    kh, kw = ksize
    xp = pad_spatial(x, pads, -np.inf)
    n, hp, wp, c = xp.shape
    win = windows(xp, kh, kw, strides, (oh, ow)).reshape(n, oh, ow, kh * kw, c)
    if win.size == 0:
        return np.zeros((n, oh, ow, c), dtype=np.int64), xp.shape, pads
    if any(p for pair in pads for p in pair):
        inside = pad_spatial(np.ones((1,) + x.shape[1:3] + (1,), dtype=bool), pads, False)
        inside = windows(inside, kh, kw, strides, (oh, ow)).reshape(1, oh, ow, kh * kw, 1)
        peak = win.max(axis=3, keepdims=True)
        a = np.argmax(((win == peak) | np.isnan(win)) & inside, axis=3)
    else:
        a = np.argmax(win, axis=3)
    rows = np.arange(oh)[None, :, None, None] * strides[0] + a // kw
    cols = np.arange(ow)[None, None, :, None] * strides[1] + a % kw
    flat = ((np.arange(n)[:, None, None, None] * hp + rows) * wp + cols) * c + np.arange(c)
    return flat, xp.shape, pads


def _max_pool_kernel(x, *, ksize, strides, padding):
    x, pads, out_hw = _setup(x, ksize, strides, padding)
    win = windows(pad_spatial(x, pads, -np.inf), ksize[0], ksize[1], strides, out_hw)
    if win.size == 0:
        return np.zeros(win.shape[:3] + win.shape[5:], dtype=x.dtype)
    return win.max(axis=(3, 4))


def _max_pool_grad_kernel(x, dy, *, ksize, strides, padding):
    flat, pshape, pads = _argmax_positions(x, ksize, strides, padding)
    dy = np.asarray(dy)
    dxp = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=int(np.prod(pshape)))
    _, h, w, _ = np.shape(x)
    return crop(dxp.reshape(pshape), pads, h, w).astype(dy.dtype)


def _max_pool_grad_grad_kernel(x, ddx, *, ksize, strides, padding):
    flat, pshape, pads = _argmax_positions(x, ksize, strides, padding)
    ddxp = pad_spatial(np.asarray(ddx), pads, 0)
    return ddxp.reshape(-1)[flat]


def _pool_attrs(op):
    return {k: op.attrs[k] for k in ("ksize", "strides", "padding")}


def _max_pool_grad(op, dy):
    return [apply_op("MaxPoolGrad", [op.inputs[0], dy], _pool_attrs(op))]


_POOL_TEST_ATTRS = ({"ksize": (2, 2), "strides": (2, 2), "padding": "VALID"},
                    {"ksize": (3, 3), "strides": (2, 2), "padding": "SAME"},
                    {"ksize": (2, 3), "strides": (1, 2), "padding": "SAME"})

register(OpDef(type="MaxPool", default_name="MaxPool", infer=_pool_infer, kernel=_max_pool_kernel,
               grad=_max_pool_grad, kind=OpKind.LIBRARY, dtypes=_dt.FLOATS, sample=("real",),
               attrs_for_test=_POOL_TEST_ATTRS))
register(OpDef(type="MaxPoolGrad", default_name="MaxPoolGrad", kernel=_max_pool_grad_kernel,
               infer=lambda specs, attrs: TensorSpec(specs[0].shape, specs[1].dtype), kind=OpKind.LIBRARY,
               grad=lambda op, g: [None, apply_op("MaxPoolGradGrad", [op.inputs[0], g], _pool_attrs(op))],
               dtypes=_dt.FLOATS, sample=("real", "real"), attrs_for_test=_POOL_TEST_ATTRS))
register(OpDef(type="MaxPoolGradGrad", default_name="MaxPoolGradGrad", kernel=_max_pool_grad_grad_kernel,
               infer=_pool_infer, kind=OpKind.LIBRARY,
               grad=lambda op, g: [None, apply_op("MaxPoolGrad", [op.inputs[0], g], _pool_attrs(op))],
               dtypes=_dt.FLOATS, sample=("real", "real"), attrs_for_test=_POOL_TEST_ATTRS))


# ---- average pooling ----

def _valid_counts(h, w, ksize, strides, pads, out_hw):
    """How many window elements fall inside the input, per output position: (OH, OW, 1)."""
    def axis_counts(n, k, s, before, o):
        start = np.arange(o) * s - before
        return np.minimum(start + k, n) - np.maximum(start, 0)
    ch = axis_counts(h, ksize[0], strides[0], pads[0][0], out_hw[0])
    cw = axis_counts(w, ksize[1], strides[1], pads[1][0], out_hw[1])
    return (ch[:, None] * cw[None, :])[:, :, None]


def _avg_pool_kernel(x, *, ksize, strides, padding):
    x, pads, out_hw = _setup(x, ksize, strides, padding)
    win = windows(pad_spatial(x, pads, 0), ksize[0], ksize[1], strides, out_hw)
    counts = _valid_counts(x.shape[1], x.shape[2], ksize, strides, pads, out_hw)
    return (win.sum(axis=(3, 4)) / counts).astype(x.dtype, copy=False)


def _avg_pool_grad_kernel(dy, x_like, *, ksize, strides, padding):
    n, h, w, c = np.shape(x_like)
    dy = np.asarray(dy)
    pads, out_hw = geometry(h, w, ksize[0], ksize[1], strides, padding)
    share = dy / _valid_counts(h, w, ksize, strides, pads, out_hw)
    cols = np.broadcast_to(share[:, :, :, None, None, :], share.shape[:3] + tuple(ksize) + (c,))
    (pt, pb), (pl, pr) = pads
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
    return crop(add_windows(dxp, cols, strides, out_hw), pads, h, w)


register(OpDef(type="AvgPool", default_name="AvgPool", infer=_pool_infer, kernel=_avg_pool_kernel,
               grad=lambda op, dy: [apply_op("AvgPoolGrad", [dy, op.inputs[0]], _pool_attrs(op))],
               kind=OpKind.LIBRARY, dtypes=_dt.FLOATS, sample=("real",), attrs_for_test=_POOL_TEST_ATTRS))
register(OpDef(type="AvgPoolGrad", default_name="AvgPoolGrad", kernel=_avg_pool_grad_kernel,
               infer=lambda specs, attrs: TensorSpec(specs[1].shape, specs[0].dtype), kind=OpKind.LIBRARY,
               grad=lambda op, g: [apply_op("AvgPool", [g], _pool_attrs(op)), None],
               dtypes=_dt.FLOATS, sample=("real", "real"), attrs_for_test=_POOL_TEST_ATTRS,
               extra={"shape_only_inputs": (1,)}))


def _pool(op_type, fn, x, ksize, strides, padding, data_format, name):
    if str(data_format).upper() != "NHWC":
        raise ValueError(f"{fn}: only data_format='NHWC' is supported, got {data_format!r}")
    if ksize is None:
        raise TypeError(f"{fn}: ksize is required")
    x = convert_to_tensor(x)
    attrs = {"ksize": normalize_window(ksize, "ksize", fn),
             "strides": normalize_window(ksize if strides is None else strides, "strides", fn),
             "padding": normalize_padding(padding, fn)}
    return apply_op(op_type, [x], attrs, name=name)


def max_pool2d(x=None, ksize=None, strides=None, padding="VALID", data_format="NHWC", name=None, *,
               input=None):  # noqa: A002 - TF's spelling of x
    """The maximum of each ksize window (NHWC; TF's SAME/VALID padding; strides default to ksize)."""
    return _pool("MaxPool", "max_pool2d", either("max_pool2d", ("x", "input"), (x, input)), ksize, strides,
                 padding, data_format, name)


def avg_pool2d(x=None, ksize=None, strides=None, padding="VALID", data_format="NHWC", name=None, *,
               input=None):  # noqa: A002 - TF's spelling of x
    """The mean of each ksize window over the elements inside the input (NHWC; strides default to ksize)."""
    return _pool("AvgPool", "avg_pool2d", either("avg_pool2d", ("x", "input"), (x, input)), ksize, strides,
                 padding, data_format, name)
