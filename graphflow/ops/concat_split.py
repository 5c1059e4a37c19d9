"""Joining and splitting along an axis: concat, split (static or tensor sizes), and `stack`
(a composite: expand_dims of each value, then one concat)."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, convert_same_dtype, convert_to_tensor, is_tensor_like, merge_dim, normalize_axis
from .composite import CompositeDef, register_composite
from .control import identity
from .registry import OpDef, OpKind, TensorSpec, register
from .shape_ops import expand_dims, shape


# ---- Concat ----

def _concat_infer(specs, attrs):
    axis = attrs["axis"]
    d0 = specs[0].dtype
    for i, s in enumerate(specs[1:], 1):
        if s.dtype != d0:
            raise TypeError(f"value {i} has dtype {s.dtype.name}, value 0 has {d0.name}; dtypes must match")
    known = [s.shape for s in specs if s.shape is not None]
    if not known:
        return TensorSpec(None, d0)
    rank = len(known[0])
    out = list(known[0])
    total = 0
    for i, s in enumerate(specs):
        if s.shape is None:
            total = None
            continue
        if len(s.shape) != rank:
            raise ValueError(f"value {i} has rank {len(s.shape)} (shape {s.shape}), value 0 has rank {rank}; "
                             "all values must have the same rank")
        for k, d in enumerate(s.shape):
            if k != axis:
                out[k] = merge_dim(out[k], d, f"dimension {k} of value {i} (shape {s.shape}) differs from "
                                              f"the other values' (shape {tuple(known[0])})")
        total = None if total is None or s.shape[axis] is None else total + s.shape[axis]
    out[axis] = total
    return TensorSpec(tuple(out), d0)


def _concat_grad(op, dy):
    axis = op.attrs["axis"]
    sizes = [None if v.shape is None else v.shape[axis] for v in op.inputs]
    if all(s is not None for s in sizes):
        parts = _split_static(dy, tuple(sizes), None, axis)
    else:
        lengths = concat([shape(v)[axis:axis + 1] for v in op.inputs], axis=0)
        parts = apply_op("SplitV", [dy, lengths], {"num": len(sizes), "axis": axis})
    return list(parts)


register(OpDef(type="Concat", default_name="concat", infer=_concat_infer, grad=_concat_grad,
               kernel=lambda *values, axis: np.concatenate(values, axis=axis),
               kind=OpKind.INJECTIVE, dtypes=_dt.ALL, sample=("real", "real"),
               attrs_for_test=({"axis": 0},)))


def concat(values, axis, name=None):
    """Join `values` (tensors of one rank and dtype) along `axis`."""
    if is_tensor_like(values) or not isinstance(values, (list, tuple)):
        raise TypeError(f"concat: values must be a list of tensors, got {type(values).__name__}")
    if not values:
        raise ValueError("concat: values is empty")
    tensors = convert_same_dtype(list(values), "concat")
    rank = next((len(t.shape) for t in tensors if t.shape is not None), None)
    if rank is None:
        raise ValueError(f"concat: the rank of '{tensors[0].name}' must be known")
    if rank == 0:
        raise ValueError(f"concat: cannot concatenate scalars ('{tensors[0].name}'); use gf.stack")
    axis = normalize_axis(axis, rank)
    if len(tensors) == 1:
        return identity(tensors[0], name=name)
    return apply_op("Concat", tensors, {"axis": axis}, name=name)


# ---- Split (static sizes) ----

def _resolve_sizes(sizes, num, dim):
    """The split sizes along a dimension of (static or run-time) size `dim`."""
    if sizes is None:
        if dim % num:
            raise ValueError(f"dimension of size {dim} cannot be split evenly into {num} pieces")
        return (dim // num,) * num
    if -1 in sizes:
        rest = dim - sum(s for s in sizes if s != -1)
        if rest < 0:
            raise ValueError(f"split sizes {sizes} exceed the dimension size {dim}")
        sizes = tuple(rest if s == -1 else s for s in sizes)
    if sum(sizes) != dim:
        raise ValueError(f"split sizes {sizes} sum to {sum(sizes)}, but the dimension has size {dim}")
    return sizes


def _split_infer(specs, attrs):
    (x,) = specs
    sizes, num, axis = attrs["sizes"], attrs["num"], attrs["axis"]
    if x.shape is None:
        return tuple(TensorSpec(None, x.dtype) for _ in range(num))
    dim = x.shape[axis]
    if dim is None:
        dims = [None if sizes is None or s == -1 else s for s in (sizes or (None,) * num)]
    else:
        dims = _resolve_sizes(sizes, num, dim)
    return tuple(TensorSpec(x.shape[:axis] + (d,) + x.shape[axis + 1:], x.dtype) for d in dims)


def _split_kernel(x, *, sizes, num, axis):
    x = np.asarray(x)
    sizes = _resolve_sizes(sizes, num, x.shape[axis])
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _split_grad(op, *dys):
    return [concat(list(dys), op.attrs["axis"])]


register(OpDef(type="Split", default_name="split", infer=_split_infer, kernel=_split_kernel, grad=_split_grad,
               kind=OpKind.INJECTIVE, dtypes=_dt.ALL, sample=("real",),
               attrs_for_test=({"sizes": None, "num": 2, "axis": 0}, {"sizes": (1, -1), "num": 2, "axis": 1})))


# ---- SplitV (sizes from a 1-D int tensor, e.g. the gradient of a concat with unknown sizes) ----

def _splitv_infer(specs, attrs):
    x, s = specs
    if s.dtype not in _dt.INTS or (s.shape is not None and len(s.shape) != 1):
        raise TypeError(f"the sizes must be a 1-D int tensor, got {s.dtype.name} of shape {s.shape}")
    axis = attrs["axis"]
    shape = None if x.shape is None else x.shape[:axis] + (None,) + x.shape[axis + 1:]
    return tuple(TensorSpec(shape, x.dtype) for _ in range(attrs["num"]))


def _splitv_kernel(x, sizes, *, num, axis):
    sizes = tuple(int(s) for s in np.asarray(sizes))
    if len(sizes) != num:
        raise ValueError(f"expected {num} split sizes, got {len(sizes)}")
    return _split_kernel(x, sizes=sizes, num=num, axis=axis)


register(OpDef(type="SplitV", default_name="split", infer=_splitv_infer, kernel=_splitv_kernel,
               grad=lambda op, *dys: [concat(list(dys), op.attrs["axis"]), None], kind=OpKind.OPAQUE))


def _split_static(x, sizes, num, axis, name=None):
    n = num if sizes is None else len(sizes)
    out = apply_op("Split", [x], {"sizes": sizes, "num": n, "axis": axis}, name=name)
    return [out] if n == 1 else list(out)


def split(value, num_or_size_splits, axis=0, num=None, name=None):
    """Split `value` along `axis` into `num_or_size_splits` equal pieces, or into pieces of
    the given sizes (a list with at most one -1, or a 1-D int tensor). Returns a list."""
    x = convert_to_tensor(value)
    if x.shape is None:
        raise ValueError(f"split: the rank of '{x.name}' must be known")
    if len(x.shape) == 0:
        raise ValueError(f"split: cannot split the scalar '{x.name}'")
    axis = normalize_axis(axis, len(x.shape))
    if is_tensor_like(num_or_size_splits):
        sizes = convert_to_tensor(num_or_size_splits)
        n = num if num is not None else (sizes.shape[0] if sizes.shape else None)
        if n is None:
            raise ValueError(f"split: the number of pieces of '{sizes.name}' is unknown; pass num=")
        out = apply_op("SplitV", [x, sizes], {"num": int(n), "axis": axis}, name=name)
        return [out] if n == 1 else list(out)
    if isinstance(num_or_size_splits, (int, np.integer)):
        n = int(num_or_size_splits)
        if n < 1:
            raise ValueError(f"split: the number of pieces must be >= 1, got {n}")
        if x.shape[axis] is not None:
            return _split_static(x, _resolve_sizes(None, n, x.shape[axis]), None, axis, name)
        return _split_static(x, None, n, axis, name)
    sizes = tuple(int(s) for s in num_or_size_splits)
    if not sizes or any(s < -1 for s in sizes) or sizes.count(-1) > 1:
        raise ValueError(f"split: sizes {sizes} must be >= 0 with at most one -1")
    return _split_static(x, sizes, None, axis, name)


# ---- stack: a composite of expand_dims + concat ----

def stack(values, axis=0, name=None):
    """Stack tensors of one shape along a new axis `axis`."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError("stack: values must be a non-empty list of tensors")
    tensors = convert_same_dtype(list(values), "stack")
    rank = next((len(t.shape) for t in tensors if t.shape is not None), None)
    if rank is None:
        raise ValueError(f"stack: the rank of '{tensors[0].name}' must be known")
    for t in tensors:
        if t.shape is not None and len(t.shape) != rank:
            raise ValueError(f"stack: '{t.name}' has shape {t.shape}, '{tensors[0].name}' has {tensors[0].shape}; "
                             "all values must have the same shape")
    axis = normalize_axis(axis, rank + 1)
    g = tensors[0].graph
    with g.name_scope(name or "stack"):
        parts = [expand_dims(t, axis) for t in tensors]
        return concat(parts, axis) if len(parts) > 1 else parts[0]


def _stack_build(*values, axis=0):
    return stack(list(values), axis=axis)


register_composite(CompositeDef(
    name="stack", build=_stack_build, reference=lambda *xs, axis=0: np.stack(xs, axis=axis),
    sample=("real", "real", "real"), dtypes=_dt.ALL, attrs_for_test=({"axis": 0}, {"axis": -1}),
    grad_inputs=(0, 1, 2)))
