"""Basic slicing `x[...]` (ints, slices with steps, `...`, `None`) as one StridedSlice op."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, convert_to_tensor
from .registry import OpDef, OpKind, TensorSpec, register


def _normalize_key(key, shape):
    """Turn a basic-indexing key into a tuple of ints, slices and None (newaxis), with
    `...` expanded; checks static bounds of integer indices."""
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if not (k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice))):
            raise TypeError(f"only basic indexing is supported (ints, slices, ..., None); got {k!r}; "
                            "use gf.gather for index arrays")
        if isinstance(k, slice):
            for v in (k.start, k.stop, k.step):
                if v is not None and not isinstance(v, (int, np.integer)):
                    raise TypeError(f"slice bounds must be Python ints, got {v!r}")
            if k.step == 0:
                raise ValueError("slice step cannot be zero")
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    rank = len(shape)
    if n_real > rank:
        raise IndexError(f"too many indices: shape {shape} has rank {rank}, got {n_real} indices")
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([slice(None)] * (rank - n_real))
        else:
            out.append(int(k) if isinstance(k, (int, np.integer)) else k)
    if Ellipsis not in key:
        out.extend([slice(None)] * (rank - n_real))
    dim = 0
    for k in out:
        if k is None:
            continue
        if isinstance(k, int):
            d = shape[dim]
            if d is not None and not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis {dim} with size {d}")
        dim += 1
    return tuple(out)


def _encode(key):
    """Slices are not hashable before Python 3.12: attrs hold ("slice", start, stop, step)."""
    return tuple(("slice", k.start, k.stop, k.step) if isinstance(k, slice) else k for k in key)


def decode_key(key):
    return tuple(slice(*k[1:]) if isinstance(k, tuple) else k for k in key)


def _slice_infer(specs, attrs):
    (x,) = specs
    key = decode_key(attrs["key"])
    out = []
    dim = 0
    for k in key:
        if k is None:
            out.append(1)
            continue
        d = x.shape[dim]
        if isinstance(k, slice):
            out.append(None if d is None else len(range(*k.indices(d))))
        dim += 1
    return TensorSpec(tuple(out) + tuple(x.shape[dim:]), x.dtype)


def _slice_kernel(x, *, key):
    return np.asarray(x)[decode_key(key)]


def _slice_grad(op, dy):
    x = op.inputs[0]
    if x.dtype.kind != "f":
        return [None]
    return [apply_op("StridedSliceGrad", [dy, x], {"key": op.attrs["key"]})]


register(OpDef(type="StridedSlice", default_name="strided_slice", infer=_slice_infer, kernel=_slice_kernel,
               grad=_slice_grad, kind=OpKind.INJECTIVE, dtypes=_dt.ALL, sample=("real",),
               attrs_for_test=({"key": (("slice", None, None, 2),)}, {"key": (0,)}, {"key": (None, ("slice", 1, None, None))})))


def _slice_grad_kernel(dy, x, *, key):
    out = np.zeros(np.shape(x), dtype=np.asarray(dy).dtype)
    out[decode_key(key)] = dy
    return out


register(OpDef(type="StridedSliceGrad", default_name="StridedSliceGrad",
               infer=lambda specs, attrs: TensorSpec(specs[1].shape, specs[0].dtype),
               kernel=_slice_grad_kernel, kind=OpKind.OPAQUE,
               grad=lambda op, ddx: [apply_op("StridedSlice", [ddx], {"key": op.attrs["key"]}), None],
               extra={"shape_only_inputs": (1,)}))


def slice_tensor(x, key, name=None):
    x = convert_to_tensor(x)
    if x.shape is None:
        raise ValueError(f"slicing '{x.name}' needs a known rank")
    return apply_op("StridedSlice", [x], {"key": _encode(_normalize_key(key, x.shape))}, name=name)
