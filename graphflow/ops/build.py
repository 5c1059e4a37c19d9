"""Helpers every op builder uses: converting Python values to tensors, applying an op,
and the static shape rules (broadcasting, axes) shared by many ops."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import dtypes as _dt
from ..graph import Graph, Operation, Tensor, get_default_graph, shape_str


def is_tensor_like(value) -> bool:
    return isinstance(value, Tensor) or hasattr(value, "_as_graph_element")


def _as_tensor_or_none(value):
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "_as_graph_element"):
        elem = value._as_graph_element()
        if isinstance(elem, Tensor):
            return elem
    return None


def python_value_to_array(value, dtype=None, what: str = "value") -> np.ndarray:
    """Convert a Python/numpy value to an array of a supported dtype.

    Python floats become float32 and ints int32 (as in TF1) unless `dtype` says otherwise;
    a conversion that would lose information (1.5 to int32, 3 to bool) raises TypeError.
    """
    if dtype is not None:
        dtype = _dt.as_dtype(dtype)
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
    else:
        try:
            arr = np.asarray(value)
        except ValueError as exc:
            raise ValueError(f"cannot convert {what} to an array: {exc}") from None
        if arr.dtype == object:
            raise TypeError(f"cannot convert {what} of type {type(value).__name__} to a tensor")
        if dtype is None:
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int32) if _fits(arr, np.int32) else arr.astype(np.int64)
    if dtype is None:
        if arr.dtype not in _dt.ALL:
            target = {"f": _dt.float32, "i": _dt.int64, "u": _dt.int64, "b": _dt.bool}.get(arr.dtype.kind)
            if target is None:
                raise TypeError(f"cannot convert {what} of dtype {arr.dtype} to a graphflow dtype")
            return _lossless_cast(arr, target, what)
        return arr
    return _lossless_cast(arr, dtype, what)


def _fits(arr: np.ndarray, dtype) -> bool:
    if arr.size == 0:
        return True
    info = np.iinfo(dtype)
    return bool(arr.min() >= info.min and arr.max() <= info.max)


def _lossless_cast(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    if arr.dtype == dtype:
        return arr
    src = arr.dtype.kind
    dst = dtype.kind
    ok = (src == dst) or (src in "biu" and dst in "fiu") or (src == "b")
    if ok and dst in "iu" and src in "iu" and not _fits(arr, dtype):
        ok = False
    if not ok:
        raise TypeError(f"cannot convert {what} of dtype {arr.dtype.name} to {dtype.name} "
                        "without losing information; use gf.cast on a tensor instead")
    return arr.astype(dtype)


def convert_to_tensor(value, dtype=None, name: str | None = None, graph: Graph | None = None) -> Tensor:
    """Return `value` as a Tensor: tensors pass through, Python/numpy values become constants."""
    t = _as_tensor_or_none(value)
    if t is not None:
        if dtype is not None and t.dtype != _dt.as_dtype(dtype):
            raise TypeError(f"tensor '{t.name}' has dtype {t.dtype.name}, expected {_dt.as_dtype(dtype).name}")
        return t
    from .array_ops import constant

    if isinstance(value, (list, tuple)) and any(is_tensor_like(v) for v in value):
        from .concat_split import stack

        return stack([convert_to_tensor(v, dtype) for v in value], axis=0, name=name)
    with (graph.as_default() if graph is not None else _nullcontext()):
        return constant(value, dtype=dtype, name=name)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def shape_operand(shape):
    """A shape argument as given (static dims, validated by the caller), or as a 1-D int32
    tensor when it is a tensor or a list holding tensors (`[gf.shape(x)[0], -1]`)."""
    if is_tensor_like(shape):
        return convert_to_tensor(shape)
    if isinstance(shape, (list, tuple)) and any(is_tensor_like(d) for d in shape):
        from .concat_split import stack
        from .math_api import cast

        return stack([cast(d, _dt.int32) if is_tensor_like(d) else convert_to_tensor(int(d), _dt.int32)
                      for d in shape])
    return shape


def shape_hint(shape):
    """What a shape argument says statically: a tuple with None for its tensor entries, or
    None when the whole shape is a tensor. Ops with a shape tensor input keep it as an attr."""
    if isinstance(shape, (list, tuple)):
        return tuple(None if is_tensor_like(d) or int(d) < 0 else int(d) for d in shape)
    return None


def graph_for(values) -> Graph:
    """The graph of the first tensor among `values`, else the default graph."""
    for v in values:
        t = _as_tensor_or_none(v)
        if t is not None:
            return t.graph
    return get_default_graph()


def convert_same_dtype(values: Sequence, op_label: str, dtype=None) -> list[Tensor]:
    """Convert `values` so that they share one dtype.

    Tensors fix the dtype; Python values follow it. Two tensors of different dtypes are a
    TypeError naming both (graphflow never casts silently).
    """
    tensors = [_as_tensor_or_none(v) for v in values]
    known = [t for t in tensors if t is not None]
    g = known[0].graph if known else get_default_graph()
    if dtype is None and known:
        dtype = known[0].dtype
        for t in known[1:]:
            if t.dtype != dtype:
                raise TypeError(f"{op_label}: cannot combine '{known[0].name}' ({dtype.name}) with "
                                f"'{t.name}' ({t.dtype.name}); dtypes must match, use gf.cast")
    out = []
    with g.as_default():
        for v, t in zip(values, tensors):
            if t is not None:
                if dtype is not None and t.dtype != _dt.as_dtype(dtype):
                    raise TypeError(f"{op_label}: tensor '{t.name}' has dtype {t.dtype.name}, "
                                    f"expected {_dt.as_dtype(dtype).name}")
                out.append(t)
            else:
                out.append(convert_to_tensor(v, dtype))
    if dtype is None and out:
        d0 = out[0].dtype
        for t in out[1:]:
            if t.dtype != d0:
                raise TypeError(f"{op_label}: cannot combine {d0.name} with {t.dtype.name}; use gf.cast")
    return out


def apply_op(op_type: str, inputs: Sequence[Tensor], attrs: dict | None = None, name: str | None = None):
    """Create one op in the inputs' graph; return its output (or outputs, if several)."""
    g = inputs[0].graph if inputs else get_default_graph()
    op = g.create_op(op_type, inputs, attrs, name)
    if len(op.outputs) == 1:
        return op.outputs[0]
    if not op.outputs:
        return op
    return op.outputs


def apply_op_op(op_type: str, inputs: Sequence[Tensor], attrs: dict | None = None,
                name: str | None = None, graph: Graph | None = None) -> Operation:
    """Like apply_op but returns the Operation itself (for ops with no outputs)."""
    g = graph or (inputs[0].graph if inputs else get_default_graph())
    return g.create_op(op_type, inputs, attrs, name)


# ---- static shape rules ----

def broadcast_shapes(a, b):
    """numpy's broadcasting on static shapes with unknown (None) dimensions."""
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    a2 = (1,) * (n - len(a)) + tuple(a)
    b2 = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a2, b2):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None:
            out.append(y)
        elif y is None or x == y:
            out.append(x)
        else:
            raise ValueError(f"shapes {shape_str(tuple(a))} and {shape_str(tuple(b))} are not "
                             "broadcast-compatible")
    return tuple(out)


def normalize_axes(axis, rank: int | None, what: str = "axis") -> tuple[int, ...] | None:
    """Turn `axis` (None, int or sequence) into sorted non-negative axes; None = all axes."""
    if axis is None:
        return None if rank is None else tuple(range(rank))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if rank is None:
        if any(a < 0 for a in axes):
            raise ValueError(f"negative {what} {axes} needs a known rank")
        return tuple(sorted(set(int(a) for a in axes)))
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            raise ValueError(f"{what} {a} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated {what} in {axes}")
    return tuple(sorted(out))


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank


def num_elements(shape) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def merge_dim(a, b, what: str):
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise ValueError(f"{what}: {a} != {b}")
