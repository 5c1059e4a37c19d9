"""2-D convolution (NHWC input, HWIO filters) and its two backprop ops.

Library primitives with numpy kernels: the forward pass is im2col (a strided view of the
padded input, copied once into a patch matrix) and one matmul; the backprop ops are the
adjoint computations. Each backprop op has its own gradient (they are bilinear), so
second derivatives through a convolution work.

The window geometry (TF's SAME/VALID arithmetic) is shared with the pooling ops.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, convert_same_dtype
from .registry import OpDef, OpKind, TensorSpec, register

PADDINGS = ("SAME", "VALID")


# ---- window geometry ----

def out_size(n, k, s, padding, what="input"):
    """Output length of a window of size k, stride s over n elements (None if unknown)."""
    if n is None or k is None:
        return None
    if padding == "SAME":
        return -(-n // s)
    if n < k:
        raise ValueError(f"VALID padding needs the {what} ({n}) to be at least the window ({k})")
    return (n - k) // s + 1


def same_pads(n, k, s):
    """TF's SAME padding (before, after): the extra element goes after."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def geometry(h, w, kh, kw, strides, padding):
    """((pad_top, pad_bottom), (pad_left, pad_right)), (out_h, out_w) for run-time sizes."""
    sh, sw = strides
    oh, ow = out_size(h, kh, sh, padding, "height"), out_size(w, kw, sw, padding, "width")
    if padding == "SAME":
        return (same_pads(h, kh, sh), same_pads(w, kw, sw)), (oh, ow)
    return ((0, 0), (0, 0)), (oh, ow)


def pad_spatial(x, pads, value=0):
    """x padded along H and W; always C-contiguous, so window sums do not depend on x's layout."""
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return np.ascontiguousarray(x)
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def windows(xp, kh, kw, strides, out_hw):
    """A read-only (N, OH, OW, KH, KW, C) view of the windows of the padded input."""
    n, _, _, c = xp.shape
    sn, sh_, sw_, sc = xp.strides
    sh, sw = strides
    oh, ow = out_hw
    return np.lib.stride_tricks.as_strided(
        xp, (n, oh, ow, kh, kw, c), (sn, sh_ * sh, sw_ * sw, sh_, sw_, sc), writeable=False)


def add_windows(dxp, cols, strides, out_hw):
    """Scatter-add (N, OH, OW, KH, KW, C) window values back into the padded input."""
    sh, sw = strides
    oh, ow = out_hw
    kh, kw = cols.shape[3:5]
    if oh == 0 or ow == 0:
        return dxp
    for i in range(kh):
        for j in range(kw):
            dxp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += cols[:, :, :, i, j, :]
    return dxp


def crop(xp, pads, h, w):
    (pt, _), (pl, _) = pads
    return xp[:, pt:pt + h, pl:pl + w, :]


def normalize_window(value, what, fn):
    """An int, 2-tuple or NHWC 4-tuple (with 1 for N and C) as (h, w)."""
    if isinstance(value, (int, np.integer)):
        vals = (int(value), int(value))
    else:
        vals = tuple(int(v) for v in value)
        if len(vals) == 4:
            if vals[0] != 1 or vals[3] != 1:
                raise ValueError(f"{fn}: {what} {vals} must be 1 in the batch and channel positions (NHWC)")
            vals = vals[1:3]
        elif len(vals) == 1:
            vals = vals * 2
    if len(vals) != 2 or any(v < 1 for v in vals):
        raise ValueError(f"{fn}: {what} must be a positive int, a pair or an NHWC 4-tuple, got {value!r}")
    return vals


def either(fn, names, values):
    """The one argument given under either of two names (API.md's and TF's spelling)."""
    given = [v for v in values if v is not None]
    if len(given) != 1:
        raise TypeError(f"{fn}: pass {names[0]} (or {names[1]}) exactly once")
    return given[0]


def normalize_padding(padding, fn):
    p = str(padding).upper()
    if p not in PADDINGS:
        raise ValueError(f"{fn}: padding must be 'SAME' or 'VALID', got {padding!r}")
    return p


# ---- Conv2D ----

def _conv_infer(specs, attrs):
    x, w = specs
    if x.dtype != w.dtype:
        raise TypeError(f"input ({x.dtype.name}) and filters ({w.dtype.name}) must have the same dtype")
    if x.dtype not in _dt.FLOATS:
        raise TypeError(f"conv2d needs float32 or float64, got {x.dtype.name}")
    xs = x.shape if x.shape is not None else (None,) * 4
    ws = w.shape if w.shape is not None else (None,) * 4
    if len(xs) != 4 or len(ws) != 4:
        raise ValueError(f"conv2d needs a 4-D NHWC input and 4-D HWIO filters, got shapes {x.shape} and {w.shape}")
    if xs[3] is not None and ws[2] is not None and xs[3] != ws[2]:
        raise ValueError(f"input channels {xs[3]} (input shape {x.shape}) do not match the filters' input "
                         f"channels {ws[2]} (filter shape {w.shape})")
    sh, sw = attrs["strides"]
    p = attrs["padding"]
    return TensorSpec((xs[0], out_size(xs[1], ws[0], sh, p, "input height"),
                       out_size(xs[2], ws[1], sw, p, "input width"), ws[3]), x.dtype)


def _patches(x, kh, kw, strides, padding):
    x = np.asarray(x)
    n, h, w, c = x.shape
    pads, out_hw = geometry(h, w, kh, kw, strides, padding)
    cols = windows(pad_spatial(x, pads), kh, kw, strides, out_hw)
    return cols.reshape(n * out_hw[0] * out_hw[1], kh * kw * c), out_hw


def _conv_kernel(x, w, *, strides, padding):
    kh, kw, ci, co = np.shape(w)
    if np.shape(x)[3] != ci:
        raise ValueError(f"input has {np.shape(x)[3]} channels, filters expect {ci}")
    cols, (oh, ow) = _patches(x, kh, kw, strides, padding)
    out = cols @ np.asarray(w).reshape(kh * kw * ci, co)
    return out.reshape(np.shape(x)[0], oh, ow, co)


def _backprop_input_kernel(dy, w, x_like, *, strides, padding):
    n, h, wd, c = np.shape(x_like)
    kh, kw, ci, co = np.shape(w)
    pads, out_hw = geometry(h, wd, kh, kw, strides, padding)
    cols = np.asarray(dy).reshape(-1, co) @ np.asarray(w).reshape(kh * kw * ci, co).T
    (pt, pb), (pl, pr) = pads
    dxp = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=np.asarray(dy).dtype)
    add_windows(dxp, cols.reshape(n, out_hw[0], out_hw[1], kh, kw, ci), strides, out_hw)
    return crop(dxp, pads, h, wd)


def _backprop_filter_kernel(x, dy, w_like, *, strides, padding):
    kh, kw, ci, co = np.shape(w_like)
    cols, _ = _patches(x, kh, kw, strides, padding)
    return (cols.T @ np.asarray(dy).reshape(-1, co)).reshape(kh, kw, ci, co)


def _conv_attrs(op):
    return {"strides": op.attrs["strides"], "padding": op.attrs["padding"]}


def _conv_grad(op, dy):
    x, w = op.inputs
    a = _conv_attrs(op)
    return [apply_op("Conv2DBackpropInput", [dy, w, x], a), apply_op("Conv2DBackpropFilter", [x, dy, w], a)]


def _backprop_input_grad(op, g):
    dy, w, x = op.inputs
    a = _conv_attrs(op)
    return [apply_op("Conv2D", [g, w], a), apply_op("Conv2DBackpropFilter", [g, dy, w], a), None]


def _backprop_filter_grad(op, g):
    x, dy, w = op.inputs
    a = _conv_attrs(op)
    return [apply_op("Conv2DBackpropInput", [dy, g, x], a), apply_op("Conv2D", [x, g], a), None]


def _like_infer(like_index):
    return lambda specs, attrs: TensorSpec(specs[like_index].shape, specs[0].dtype)


_CONV_TEST_ATTRS = ({"strides": (1, 1), "padding": "SAME"}, {"strides": (2, 2), "padding": "SAME"},
                    {"strides": (1, 2), "padding": "VALID"})

register(OpDef(type="Conv2D", default_name="Conv2D", infer=_conv_infer, kernel=_conv_kernel, grad=_conv_grad,
               kind=OpKind.LIBRARY, dtypes=_dt.FLOATS, sample=("real", "real"), attrs_for_test=_CONV_TEST_ATTRS))
register(OpDef(type="Conv2DBackpropInput", default_name="Conv2DBackpropInput", infer=_like_infer(2),
               kernel=_backprop_input_kernel, grad=_backprop_input_grad, kind=OpKind.LIBRARY,
               dtypes=_dt.FLOATS, sample=("real", "real", "real"), attrs_for_test=_CONV_TEST_ATTRS,
               extra={"shape_only_inputs": (2,)}))
register(OpDef(type="Conv2DBackpropFilter", default_name="Conv2DBackpropFilter", infer=_like_infer(2),
               kernel=_backprop_filter_kernel, grad=_backprop_filter_grad, kind=OpKind.LIBRARY,
               dtypes=_dt.FLOATS, sample=("real", "real", "real"), attrs_for_test=_CONV_TEST_ATTRS,
               extra={"shape_only_inputs": (2,)}))


def conv2d(x=None, filters=None, strides=1, padding="SAME", data_format="NHWC", dilations=None, name=None, *,
           input=None, filter=None):  # noqa: A002 - TF's spellings of x and filters
    """2-D convolution of an NHWC input `x` with HWIO `filters` (TF's SAME/VALID padding)."""
    fn = "conv2d"
    x = either(fn, ("x", "input"), (x, input))
    filters = either(fn, ("filters", "filter"), (filters, filter))
    if str(data_format).upper() != "NHWC":
        raise ValueError(f"{fn}: only data_format='NHWC' is supported, got {data_format!r}")
    if dilations not in (None, 1, (1, 1), [1, 1], (1, 1, 1, 1), [1, 1, 1, 1]):
        raise ValueError(f"{fn}: dilated convolution is not supported (dilations={dilations!r})")
    x, w = convert_same_dtype([x, filters], fn)
    attrs = {"strides": normalize_window(strides, "strides", fn), "padding": normalize_padding(padding, fn)}
    return apply_op("Conv2D", [x, w], attrs, name=name)
