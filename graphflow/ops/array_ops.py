"""Ops that create values: constants, placeholders, fills, ranges, eye, random numbers."""
from __future__ import annotations

import secrets

import numpy as np

from .. import dtypes as _dt
from ..graph import get_default_graph
from .build import apply_op, convert_to_tensor, python_value_to_array
from .registry import OpDef, OpKind, TensorSpec, register

_DEFAULT_GRAPH_SEED = 87654321


def _static_shape(shape, what="shape") -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a tuple of ints or an int32 tensor, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} {dims} has a negative dimension")
    return dims


# ---- Const ----

def _const_kernel(*, value):
    return value


register(OpDef(type="Const", default_name="Const", kind=OpKind.SOURCE,
               infer=lambda specs, attrs: TensorSpec(attrs["value"].shape, attrs["value"].dtype),
               kernel=_const_kernel))


def constant(value, dtype=None, shape=None, name=None):
    """A tensor holding `value` (broadcast to `shape` when given, as tf.constant)."""
    arr = python_value_to_array(value, dtype, what="constant value")
    if shape is not None:
        shape = _static_shape(shape)
        if arr.size == 1:
            arr = np.broadcast_to(arr.reshape(()), shape)
        elif arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        else:
            raise ValueError(f"constant: value has {arr.size} elements, shape {shape} needs {int(np.prod(shape))}")
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    g = get_default_graph()
    return g.create_op("Const", [], {"value": arr}, name).outputs[0]


# ---- Placeholder ----

def _placeholder_infer(specs, attrs):
    return TensorSpec(attrs["shape"], attrs["dtype"])


register(OpDef(type="Placeholder", default_name="Placeholder", kind=OpKind.SOURCE,
               infer=_placeholder_infer, kernel=None))


def placeholder(dtype, shape=None, name=None):
    """A tensor that must be fed at run time; `None` dimensions take any size."""
    dtype = _dt.as_dtype(dtype)
    if shape is not None:
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        shape = tuple(None if d is None or d == -1 else int(d) for d in shape)
        if any(d is not None and d < 0 for d in shape):
            raise ValueError(f"placeholder shape {shape} has a negative dimension")
    return get_default_graph().create_op("Placeholder", [], {"dtype": dtype, "shape": shape}, name).outputs[0]


# ---- Fill (zeros, ones, fill) ----

def _fill_infer(specs, attrs):
    if specs:
        (s,) = specs
        if s.dtype not in _dt.INTS or (s.shape is not None and len(s.shape) != 1):
            raise ValueError("the shape argument must be a 1-D int tensor")
        n = None if s.shape is None else s.shape[0]
        hint = attrs.get("shape_hint")
        if hint is not None and n in (None, len(hint)):
            return TensorSpec(hint, attrs["dtype"])
        return TensorSpec(None if n is None else (None,) * n, attrs["dtype"])
    return TensorSpec(attrs["shape"], attrs["dtype"])


def _fill_kernel(*dims, value, dtype, shape=None, shape_hint=None):
    if dims:
        shape = tuple(int(d) for d in dims[0])
    return np.full(shape, value, dtype=dtype)


def dims_from_shape_input(op, i):
    """Output dim i of an op shaped by a shape tensor that is gf.shape(x): x's dim i."""
    if not op.inputs:
        return None
    src = op.inputs[0].op
    k = src.op_def.extra.get("values_are_dims_of")
    return None if k is None else (src.inputs[k], i)


register(OpDef(type="Fill", default_name="Fill", kind=OpKind.SOURCE, infer=_fill_infer, kernel=_fill_kernel,
               extra={"dim_source": dims_from_shape_input}))


def _fill(shape, value, dtype, name):
    dtype = _dt.as_dtype(dtype)
    scalar = python_value_to_array(value, dtype, what="fill value")
    if scalar.ndim != 0:
        raise ValueError(f"fill value must be a scalar, got shape {scalar.shape}")
    from .build import is_tensor_like, shape_hint, shape_operand

    dims = shape_operand(shape)
    if is_tensor_like(dims):
        return apply_op("Fill", [dims], {"value": scalar.item(), "dtype": dtype, "shape_hint": shape_hint(shape)},
                        name=name)
    return get_default_graph().create_op(
        "Fill", [], {"shape": _static_shape(shape), "value": scalar.item(), "dtype": dtype}, name).outputs[0]


def zeros(shape, dtype=_dt.float32, name=None):
    """A tensor of zeros (False for bool)."""
    return _fill(shape, np.zeros((), _dt.as_dtype(dtype)), dtype, name or "zeros")


def ones(shape, dtype=_dt.float32, name=None):
    """A tensor of ones (True for bool)."""
    return _fill(shape, np.ones((), _dt.as_dtype(dtype)), dtype, name or "ones")


def fill(dims, value, name=None):
    """A tensor of shape `dims` filled with `value` (dtype follows the value, as tf.fill)."""
    if hasattr(value, "dtype") and not isinstance(value, np.ndarray):
        raise TypeError("fill: value must be a Python or numpy scalar")
    arr = python_value_to_array(value, what="fill value")
    return _fill(dims, arr.item(), arr.dtype, name or "Fill")


# ---- ZerosLike / OnesLike (elementwise: output shape follows the input at run time) ----

def _like_kernel(value):
    def kernel(x, *, dtype=None):
        return np.full(np.shape(x), value, dtype=dtype or np.asarray(x).dtype)
    return kernel


for _t, _v in [("ZerosLike", 0), ("OnesLike", 1)]:
    register(OpDef(type=_t, default_name=_t, kind=OpKind.ELEMENTWISE, sample=("real",), dtypes=_dt.ALL,
                   infer=lambda specs, attrs: TensorSpec(specs[0].shape, attrs.get("dtype") or specs[0].dtype),
                   kernel=_like_kernel(_v), grad=lambda op, dy: [None],
                   scalar=(lambda v: lambda b, x, *, dtype=None: b.const(v, dtype or b.dtype(x)))(_v),
                   extra={"shape_only_inputs": (0,)}))


def zeros_like(x, dtype=None, name=None):
    x = convert_to_tensor(x)
    return apply_op("ZerosLike", [x], {"dtype": _dt.as_dtype(dtype) if dtype else None}, name=name)


def ones_like(x, dtype=None, name=None):
    x = convert_to_tensor(x)
    return apply_op("OnesLike", [x], {"dtype": _dt.as_dtype(dtype) if dtype else None}, name=name)


# ---- Range, Eye ----

def _range_infer(specs, attrs):
    start, limit, delta = attrs["start"], attrs["limit"], attrs["delta"]
    n = max(0, int(np.ceil((limit - start) / delta)))
    return TensorSpec((n,), attrs["dtype"])


register(OpDef(type="Range", default_name="range", kind=OpKind.SOURCE, infer=_range_infer,
               kernel=lambda *, start, limit, delta, dtype: np.arange(start, limit, delta, dtype=dtype)))


def _dynamic_range_infer(specs, attrs):
    for what, s in zip(("start", "limit", "delta"), specs):
        if s.dtype not in _dt.NUMERIC or (s.shape is not None and len(s.shape) != 0):
            raise TypeError(f"{what} must be a numeric scalar, got {s.dtype.name} of shape {s.shape}")
    return TensorSpec((None,), attrs["dtype"])


def _dynamic_range_kernel(start, limit, delta, *, dtype):
    if delta == 0:
        raise ValueError("delta must not be zero")
    return np.arange(start, limit, delta, dtype=dtype)


register(OpDef(type="DynamicRange", default_name="range", kind=OpKind.OPAQUE, infer=_dynamic_range_infer,
               kernel=_dynamic_range_kernel, grad=lambda op, dy: [None, None, None]))


def range(start, limit=None, delta=1, dtype=None, name=None):  # noqa: A001 - public name
    """Like numpy.arange / tf.range; bounds may be scalar tensors (`gf.range(gf.shape(x)[0])`)."""
    from .build import is_tensor_like

    if limit is None:
        start, limit = 0, start
    bounds = (start, limit, delta)
    if any(is_tensor_like(v) for v in bounds):
        if dtype is None:
            dtype = next(convert_to_tensor(v).dtype for v in bounds if is_tensor_like(v))
        dtype = _dt.as_dtype(dtype)
        from .math_api import cast

        tensors = [cast(v, dtype) if is_tensor_like(v) else convert_to_tensor(v, dtype) for v in bounds]
        return apply_op("DynamicRange", tensors, {"dtype": dtype}, name=name)
    if delta == 0:
        raise ValueError("range: delta must not be zero")
    if dtype is None:
        dtype = _dt.float32 if any(isinstance(v, float) for v in (start, limit, delta)) else _dt.int32
    dtype = _dt.as_dtype(dtype)
    return get_default_graph().create_op(
        "Range", [], {"start": start, "limit": limit, "delta": delta, "dtype": dtype}, name).outputs[0]


register(OpDef(type="Eye", default_name="eye", kind=OpKind.SOURCE,
               infer=lambda specs, attrs: TensorSpec((attrs["n"], attrs["m"]), attrs["dtype"]),
               kernel=lambda *, n, m, dtype: np.eye(n, m, dtype=dtype)))


def eye(num_rows, num_columns=None, dtype=_dt.float32, name=None):
    """An identity matrix of shape (num_rows, num_columns)."""
    m = num_rows if num_columns is None else num_columns
    return get_default_graph().create_op(
        "Eye", [], {"n": int(num_rows), "m": int(m), "dtype": _dt.as_dtype(dtype)}, name).outputs[0]


# ---- random numbers: reproducible from (graph seed, op seed) and a per-op run counter ----

def _random_infer(specs, attrs):
    if specs:
        return _fill_infer(specs, attrs)
    return TensorSpec(attrs["shape"], attrs["dtype"])


def _random_kernel(draw):
    def kernel(state, *dims, shape=None, dtype, seeds, a, b, shape_hint=None):
        if dims:
            shape = tuple(int(d) for d in dims[0])
        rng = state.random_stream(seeds)
        return draw(rng, shape, a, b).astype(dtype, copy=False)
    return kernel


register(OpDef(type="RandomNormal", default_name="random_normal", kind=OpKind.OPAQUE, stateful=True,
               random=True, infer=_random_infer, extra={"dim_source": dims_from_shape_input},
               kernel=_random_kernel(lambda rng, shape, a, b: rng.normal(a, b, size=shape))))
register(OpDef(type="RandomUniform", default_name="random_uniform", kind=OpKind.OPAQUE, stateful=True,
               random=True, infer=_random_infer, extra={"dim_source": dims_from_shape_input},
               kernel=_random_kernel(lambda rng, shape, a, b: rng.uniform(a, b, size=shape))))


def op_seeds(seed) -> tuple[int, int]:
    """The (graph seed, op seed) pair for a new random op, following TF1's rules."""
    g = get_default_graph()
    if g.seed is None and seed is None:  # (None, token): each session draws from its own entropy
        return (None, secrets.randbits(31))
    graph_seed = _DEFAULT_GRAPH_SEED if g.seed is None else g.seed
    op_seed = seed if seed is not None else len(g._ops)
    return (int(graph_seed), int(op_seed))


def _random(op_type, shape, a, b, dtype, seed, name):
    dtype = _dt.as_dtype(dtype)
    if dtype not in _dt.FLOATS:
        raise TypeError(f"random values must be float32 or float64, got {dtype.name}")
    attrs = {"dtype": dtype, "seeds": op_seeds(seed), "a": float(a), "b": float(b)}
    from .build import is_tensor_like, shape_hint, shape_operand

    dims = shape_operand(shape)
    if is_tensor_like(dims):
        return apply_op(op_type, [dims], dict(attrs, shape_hint=shape_hint(shape)), name=name)
    attrs["shape"] = _static_shape(shape)
    return get_default_graph().create_op(op_type, [], attrs, name).outputs[0]


def random_normal(shape, mean=0.0, stddev=1.0, dtype=_dt.float32, seed=None, name=None):
    return _random("RandomNormal", shape, mean, stddev, dtype, seed, name)


def random_uniform(shape, minval=0.0, maxval=1.0, dtype=_dt.float32, seed=None, name=None):
    return _random("RandomUniform", shape, minval, maxval, dtype, seed, name)


def set_random_seed(seed: int) -> None:
    """Set the default graph's seed: random ops become reproducible across sessions."""
    get_default_graph().seed = None if seed is None else int(seed)
