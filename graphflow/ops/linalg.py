"""Matrix multiplication (2-D and batched, with numpy's batch broadcasting)."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, broadcast_shapes, convert_same_dtype
from .registry import OpDef, OpKind, TensorSpec, register


def _matmul_infer(specs, attrs):
    a, b = specs
    if a.dtype != b.dtype:
        raise TypeError(f"dtypes {a.dtype.name} and {b.dtype.name} do not match; use gf.cast")
    if a.dtype not in _dt.NUMERIC:
        raise TypeError(f"matmul needs numeric inputs, got {a.dtype.name}")
    if a.shape is None or b.shape is None:
        return TensorSpec(None, a.dtype)
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ValueError(f"matmul needs inputs of rank >= 2, got shapes {a.shape} and {b.shape}")
    m, k1 = a.shape[-2:][::-1] if attrs["transpose_a"] else a.shape[-2:]
    k2, n = b.shape[-2:][::-1] if attrs["transpose_b"] else b.shape[-2:]
    if k1 is not None and k2 is not None and k1 != k2:
        raise ValueError(f"inner dimensions do not match: {a.shape}{' (transposed)' if attrs['transpose_a'] else ''} "
                         f"and {b.shape}{' (transposed)' if attrs['transpose_b'] else ''} ({k1} != {k2})")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorSpec(tuple(batch) + (m, n), a.dtype)


def _t(x):
    return np.swapaxes(x, -1, -2)


def _matmul_kernel(a, b, *, transpose_a, transpose_b):
    # contiguous operands: BLAS's rounding must not depend on whether a transpose is a flag,
    # a view or a copy (passes move transposes into the flags)
    a = np.ascontiguousarray(_t(a) if transpose_a else a)
    b = np.ascontiguousarray(_t(b) if transpose_b else b)
    return np.matmul(a, b)


def _matmul_grad(op, dy):
    a, b = op.inputs
    if a.dtype.kind != "f":
        return [None, None]
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        da, db = matmul(dy, b, transpose_b=True), matmul(a, dy, transpose_a=True)
    elif not ta and tb:
        da, db = matmul(dy, b), matmul(dy, a, transpose_a=True)
    elif ta and not tb:
        da, db = matmul(b, dy, transpose_b=True), matmul(a, dy)
    else:
        da, db = matmul(b, dy, transpose_a=True, transpose_b=True), matmul(dy, a, transpose_a=True, transpose_b=True)
    if len(a.shape) > 2 or len(b.shape) > 2:
        from .reduction import sum_to_shape_of

        da, db = sum_to_shape_of(da, a), sum_to_shape_of(db, b)
    return [da, db]


def _matmul_dim_source(op, i):
    """The rows of a @ b are a's rows, its columns b's columns (batch dims may broadcast)."""
    a, b = op.inputs
    r = len(op.outputs[0].shape)
    if i == r - 2:
        return (a, len(a.shape) - (1 if op.attrs["transpose_a"] else 2))
    if i == r - 1:
        return (b, len(b.shape) - (2 if op.attrs["transpose_b"] else 1))
    return None


register(OpDef(type="MatMul", default_name="MatMul", infer=_matmul_infer, kernel=_matmul_kernel,
               grad=_matmul_grad, kind=OpKind.LIBRARY, dtypes=_dt.NUMERIC, sample=("real", "real"),
               attrs_for_test=({"transpose_a": False, "transpose_b": False},
                               {"transpose_a": True, "transpose_b": False},
                               {"transpose_a": False, "transpose_b": True},
                               {"transpose_a": True, "transpose_b": True}),
               extra={"dim_source": _matmul_dim_source}))


def matmul(a, b, transpose_a=False, transpose_b=False, name=None):
    """a @ b for 2-D or batched inputs (batch dimensions broadcast as in numpy)."""
    a, b = convert_same_dtype([a, b], "matmul")
    return apply_op("MatMul", [a, b], {"transpose_a": bool(transpose_a), "transpose_b": bool(transpose_b)},
                    name=name)
