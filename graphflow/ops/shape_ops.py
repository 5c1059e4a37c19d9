"""Ops that move elements without computing on them: reshape, transpose, expand/squeeze,
broadcasts, shape, gather."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import (apply_op, broadcast_shapes, convert_to_tensor, is_tensor_like, normalize_axis, num_elements,
                    shape_hint, shape_operand)
from .registry import OpDef, OpKind, TensorSpec, register


# ---- Reshape (static target with at most one -1) ----

def _reshape_infer(specs, attrs):
    (x,) = specs
    target = attrs["shape"]
    if target.count(-1) > 1:
        raise ValueError(f"reshape target {target} has more than one -1")
    n = num_elements(x.shape)
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    if -1 in target:
        if n is None:
            out = tuple(None if d == -1 else d for d in target)
        else:
            if known == 0 or n % known:
                raise ValueError(f"cannot reshape {x.shape} ({n} elements) to {target}")
            out = tuple(n // known if d == -1 else d for d in target)
    else:
        if n is not None and n != known:
            raise ValueError(f"cannot reshape {x.shape} ({n} elements) to {target} ({known} elements)")
        out = tuple(target)
    return TensorSpec(out, x.dtype)


def _reshape_grad(op, dy):
    return [reshape_like(dy, op.inputs[0])]


register(OpDef(type="Reshape", default_name="Reshape", infer=_reshape_infer, kind=OpKind.INJECTIVE,
               kernel=lambda x, *, shape: np.reshape(x, shape), grad=_reshape_grad, dtypes=_dt.ALL,
               sample=("real",)))


def reshape(x, shape, name=None):
    """Reshape `x` to `shape` (a tuple of ints with at most one -1, or an int tensor)."""
    x = convert_to_tensor(x)
    dims = shape_operand(shape)
    if is_tensor_like(dims):
        return apply_op("DynamicReshape", [x, dims], {"shape_hint": shape_hint(shape)}, name=name)
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    target = tuple(-1 if d is None else int(d) for d in shape)
    if any(d < -1 for d in target):
        raise ValueError(f"reshape: invalid target shape {tuple(shape)}")
    return apply_op("Reshape", [x], {"shape": target}, name=name)


def _dyn_reshape_infer(specs, attrs):
    x, s = specs
    if s.dtype not in _dt.INTS or s.shape is None or len(s.shape) != 1:
        raise ValueError("the shape argument must be a 1-D int tensor")
    hint = attrs.get("shape_hint")
    if hint is not None and s.shape[0] in (None, len(hint)):
        return TensorSpec(hint, x.dtype)
    return TensorSpec(None if s.shape[0] is None else (None,) * s.shape[0], x.dtype)


register(OpDef(type="DynamicReshape", default_name="Reshape", infer=_dyn_reshape_infer, kind=OpKind.OPAQUE,
               kernel=lambda x, s, shape_hint=None: np.reshape(x, tuple(int(d) for d in s)),
               grad=lambda op, dy: [reshape_like(dy, op.inputs[0]), None]))


def _reshape_like_infer(specs, attrs):
    x, like = specs
    return TensorSpec(like.shape, x.dtype)


register(OpDef(type="ReshapeLike", default_name="ReshapeLike", infer=_reshape_like_infer, kind=OpKind.INJECTIVE,
               kernel=lambda x, like: np.reshape(x, np.shape(like)),
               grad=lambda op, dy: [reshape_like(dy, op.inputs[0]), None],
               extra={"shape_only_inputs": (1,)}))


def reshape_like(x, like, name=None):
    """Reshape `x` to the (run-time) shape of `like`; static when `like`'s shape is known."""
    if like.shape is not None and all(d is not None for d in like.shape):
        if x.shape == like.shape:
            return x
        return reshape(x, like.shape, name=name)
    if like.shape is not None and sum(d is None for d in like.shape) == 1:
        return reshape(x, tuple(-1 if d is None else d for d in like.shape), name=name)
    return apply_op("ReshapeLike", [x, like], name=name)


# ---- ExpandDims / Squeeze ----

def _expand_infer(specs, attrs):
    (x,) = specs
    if x.shape is None:
        return TensorSpec(None, x.dtype)
    a = normalize_axis(attrs["axis"], len(x.shape) + 1)
    return TensorSpec(x.shape[:a] + (1,) + x.shape[a:], x.dtype)


def _expand_dim_source(op, i):
    a = op.attrs["axis"]
    return None if i == a else (op.inputs[0], i if i < a else i - 1)


def _expand_kernel(x, *, axis):
    """np.expand_dims as the same view by one reshape (np.expand_dims' axis handling costs
    ~2 us, a training step runs three); the builder normalizes the axis already."""
    x = np.asarray(x)
    s = x.shape
    if axis < 0:
        axis += len(s) + 1
    return x.reshape(s[:axis] + (1,) + s[axis:])


register(OpDef(type="ExpandDims", default_name="ExpandDims", infer=_expand_infer, kind=OpKind.INJECTIVE,
               kernel=_expand_kernel,
               grad=lambda op, dy: [squeeze(dy, [op.attrs["axis"]])], dtypes=_dt.ALL, sample=("real",),
               attrs_for_test=({"axis": 0},), extra={"dim_source": _expand_dim_source}))


def expand_dims(x, axis, name=None):
    x = convert_to_tensor(x)
    if x.shape is None:
        raise ValueError(f"expand_dims: '{x.name}' needs a known rank")
    axis = normalize_axis(axis, len(x.shape) + 1)
    return apply_op("ExpandDims", [x], {"axis": axis}, name=name)


def _squeeze_infer(specs, attrs):
    (x,) = specs
    axes = attrs["axes"]
    for a in axes:
        if x.shape[a] not in (1, None):
            raise ValueError(f"cannot squeeze axis {a} of size {x.shape[a]}")
    return TensorSpec(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


def _squeeze_grad(op, dy):
    return [reshape_like(dy, op.inputs[0])]


def _squeeze_dim_source(op, i):
    kept = [a for a in range(len(op.inputs[0].shape)) if a not in op.attrs["axes"]]
    return (op.inputs[0], kept[i])


register(OpDef(type="Squeeze", default_name="Squeeze", infer=_squeeze_infer, kind=OpKind.INJECTIVE,
               kernel=lambda x, *, axes: np.squeeze(x, axis=axes) if axes else np.asarray(x),
               grad=_squeeze_grad, dtypes=_dt.ALL, sample=("real",), extra={"dim_source": _squeeze_dim_source}))


def squeeze(x, axis=None, name=None):
    """Remove size-1 dimensions (all statically-1 ones when `axis` is None)."""
    x = convert_to_tensor(x)
    if x.shape is None:
        raise ValueError(f"squeeze: '{x.name}' needs a known rank")
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        axes = tuple(sorted(normalize_axis(a, len(x.shape)) for a in axes))
    if not axes:
        return x
    return apply_op("Squeeze", [x], {"axes": axes}, name=name)


# ---- Transpose ----

def _transpose_infer(specs, attrs):
    (x,) = specs
    perm = attrs["perm"]
    if x.shape is None:
        return TensorSpec(None, x.dtype)
    if sorted(perm) != list(range(len(x.shape))):
        raise ValueError(f"perm {perm} is not a permutation of the {len(x.shape)} axes of shape {x.shape}")
    return TensorSpec(tuple(x.shape[p] for p in perm), x.dtype)


def _transpose_grad(op, dy):
    inv = tuple(int(i) for i in np.argsort(op.attrs["perm"]))
    return [transpose(dy, inv)]


register(OpDef(type="Transpose", default_name="transpose", infer=_transpose_infer, kind=OpKind.INJECTIVE,
               kernel=lambda x, *, perm: np.transpose(x, perm), grad=_transpose_grad, dtypes=_dt.ALL,
               sample=("real",), extra={"dim_source": lambda op, i: (op.inputs[0], op.attrs["perm"][i])}))


def transpose(x, perm=None, name=None):
    x = convert_to_tensor(x)
    if x.shape is None:
        raise ValueError(f"transpose: '{x.name}' needs a known rank")
    rank = len(x.shape)
    if perm is None:
        perm = tuple(reversed(range(rank)))
    perm = tuple(int(p) for p in perm)
    if len(perm) != rank or sorted(p % rank for p in perm if -rank <= p < rank) != list(range(rank)):
        raise ValueError(f"transpose: perm {perm} is not a permutation of the {rank} axes of '{x.name}' "
                         f"(shape {x.shape})")
    perm = tuple(p % rank for p in perm)
    return apply_op("Transpose", [x], {"perm": perm}, name=name)


# ---- broadcasts ----

def _broadcast_to_infer(specs, attrs):
    (x,) = specs
    target = tuple(attrs["shape"])
    if x.shape is not None:
        ok = len(x.shape) <= len(target) and all(
            d is None or d == 1 or d == t for d, t in zip(x.shape[::-1], target[::-1]))
        if not ok:
            raise ValueError(f"cannot broadcast {x.shape} to {target}")
    return TensorSpec(target, x.dtype)


def _broadcast_to_grad(op, dy):
    from .reduction import sum_to_shape_of

    return [sum_to_shape_of(dy, op.inputs[0])]


register(OpDef(type="BroadcastTo", default_name="BroadcastTo", infer=_broadcast_to_infer, kind=OpKind.ELEMENTWISE,
               kernel=lambda x, *, shape: np.broadcast_to(x, shape), grad=_broadcast_to_grad,
               scalar=lambda b, x, *, shape: x,
               dtypes=_dt.ALL, sample=("real",)))


def broadcast_to(x, shape, name=None):
    """Broadcast `x` to `shape` (static ints, or a shape tensor such as gf.shape(y))."""
    x = convert_to_tensor(x)
    shape = shape_operand(shape)
    if is_tensor_like(shape):
        from .array_ops import zeros

        return broadcast_like(x, zeros(shape, dtype=_dt.bool), name=name)
    shape = tuple(int(d) for d in shape)
    return apply_op("BroadcastTo", [x], {"shape": shape}, name=name)


def _broadcast_like_infer(specs, attrs):
    x, like = specs
    out = broadcast_shapes(x.shape, like.shape)
    return TensorSpec(out, x.dtype)


def _broadcast_like_grad(op, dy):
    from .reduction import sum_to_shape_of

    return [sum_to_shape_of(dy, op.inputs[0], (op.inputs[1],)), None]


register(OpDef(type="BroadcastLike", default_name="BroadcastLike", infer=_broadcast_like_infer,
               kind=OpKind.ELEMENTWISE,
               kernel=lambda x, like: np.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(like))),
               grad=_broadcast_like_grad, scalar=lambda b, x, like: x, sample=("real", "real"),
               extra={"shape_only_inputs": (1,)}))


def broadcast_like(x, like, name=None):
    """Broadcast `x` to the run-time shape of `like` (used by gradients)."""
    if x.shape is not None and like.shape is not None and x.shape == broadcast_shapes(x.shape, like.shape) \
            and all(d is not None for d in x.shape):
        return x
    return apply_op("BroadcastLike", [x, like], name=name)


# ---- Shape ----

register(OpDef(type="Shape", default_name="Shape", kind=OpKind.OPAQUE,
               infer=lambda specs, attrs: TensorSpec(None if specs[0].shape is None else (len(specs[0].shape),),
                                                     attrs["out_type"]),
               kernel=lambda x, *, out_type: np.array(np.shape(x), dtype=out_type),
               grad=lambda op, dy: [None], extra={"shape_only_inputs": (0,), "values_are_dims_of": 0}))


def shape(x, out_type=_dt.int32, name=None):
    """The run-time shape of `x` as a 1-D int32 tensor."""
    x = convert_to_tensor(x)
    return apply_op("Shape", [x], {"out_type": _dt.as_dtype(out_type)}, name=name)


# ---- Size ----

register(OpDef(type="Size", default_name="Size", kind=OpKind.OPAQUE,
               infer=lambda specs, attrs: TensorSpec((), attrs["out_type"]),
               kernel=lambda x, *, out_type: np.array(np.size(x), dtype=out_type),
               grad=lambda op, dy: [None], extra={"shape_only_inputs": (0,)},
               doc="the number of elements of x, as a 0-d tensor (TF's tf.size)"))


def size(x, out_type=_dt.int32, name=None):
    """The run-time number of elements of `x` as a 0-d int32 tensor (a mean's count: one
    attribute read, where Prod(Shape(x)) took two numpy calls, ~30 us in W5's step)."""
    x = convert_to_tensor(x)
    return apply_op("Size", [x], {"out_type": _dt.as_dtype(out_type)}, name=name)


# ---- Gather ----

def _gather_infer(specs, attrs):
    p, i = specs
    if i.dtype not in _dt.INTS:
        raise TypeError(f"indices must be int32 or int64, got {i.dtype.name}")
    if p.shape is None or i.shape is None:
        return TensorSpec(None, p.dtype)
    a = attrs["axis"]
    return TensorSpec(p.shape[:a] + i.shape + p.shape[a + 1:], p.dtype)


def _gather_kernel(p, i, *, axis):
    p = np.asarray(p)
    i = np.asarray(i)
    n = p.shape[axis]
    if i.size and (i.min() < -n or i.max() >= n):
        bad = i[(i < -n) | (i >= n)].flat[0]
        raise IndexError(f"gather index {bad} is out of range for axis {axis} of size {n}")
    return np.take(p, i, axis=axis)


def _gather_grad(op, dy):
    p, i = op.inputs
    if p.dtype.kind != "f":
        return [None, None]
    return [apply_op("GatherGrad", [dy, i, p], {"axis": op.attrs["axis"]}), None]


register(OpDef(type="Gather", default_name="GatherV2", infer=_gather_infer, kernel=_gather_kernel,
               grad=_gather_grad, kind=OpKind.OPAQUE, sample=("real", "index"), dtypes=_dt.ALL,
               attrs_for_test=({"axis": 0},)))


def _gather_grad_kernel(dy, i, p, *, axis):
    p = np.asarray(p)
    out = np.zeros(p.shape, dtype=np.asarray(dy).dtype)
    dy_m = np.moveaxis(np.asarray(dy), list(range(axis, axis + np.ndim(i))), list(range(np.ndim(i))))
    dy_m = dy_m.reshape((-1,) + tuple(np.delete(np.array(p.shape), axis)))
    out_m = np.moveaxis(out, axis, 0)
    np.add.at(out_m, np.asarray(i).reshape(-1) % p.shape[axis], dy_m)
    return out


def _gather_grad_grad(op, ddx):
    from .shape_ops import gather

    return [gather(ddx, op.inputs[1], axis=op.attrs["axis"]), None, None]


register(OpDef(type="GatherGrad", default_name="GatherGrad", kernel=_gather_grad_kernel,
               infer=lambda specs, attrs: TensorSpec(specs[2].shape, specs[0].dtype),
               grad=_gather_grad_grad, kind=OpKind.OPAQUE, extra={"shape_only_inputs": (2,)}))


def gather(params, indices, axis=0, name=None):
    """params.take(indices, axis): rows (or slices along `axis`) picked by int indices."""
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices)
    if p.shape is None:
        raise ValueError(f"gather: '{p.name}' needs a known rank")
    axis = normalize_axis(axis, len(p.shape))
    return apply_op("Gather", [p, i], {"axis": axis}, name=name)
