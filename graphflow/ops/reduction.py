"""Reductions (`reduce_sum`, `reduce_mean`, ..., `argmax`) and the gradient helper that
sums a broadcast gradient back to an input's shape."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, convert_to_tensor, normalize_axes, num_elements
from .composite import CompositeDef, register_composite
from .registry import OpDef, OpKind, TensorSpec, register


def reduced_shape(shape, axes, keepdims):
    if shape is None:
        return None
    axes = set(range(len(shape))) if axes is None else set(axes)
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(allowed, out_dtype=None):
    def infer(specs, attrs):
        (x,) = specs
        if x.dtype not in allowed:
            raise TypeError(f"input must have dtype in ({', '.join(d.name for d in allowed)}), got {x.dtype.name}")
        axes = attrs["axes"]
        if x.shape is not None and axes is not None:
            axes = normalize_axes(axes, len(x.shape))
        return TensorSpec(reduced_shape(x.shape, axes, attrs["keepdims"]), out_dtype or x.dtype)
    return infer


def _np_reduce(fn):
    # numpy's summation order follows the memory layout: a C-contiguous copy makes the result
    # depend on the values only (a pass that turns a copy into a strided view changes nothing)
    def kernel(x, *, axes, keepdims):
        out = fn(np.ascontiguousarray(x), axis=axes, keepdims=keepdims)
        return np.asarray(out, dtype=np.asarray(x).dtype)
    return kernel


def _mean_kernel(x, *, axes, keepdims):
    x = np.ascontiguousarray(x)  # layout-independent summation order, as in _np_reduce
    n = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
    if x.dtype.kind != "f":
        # integer mean truncates toward zero, as TF does
        s = np.sum(x, axis=axes, keepdims=keepdims, dtype=np.int64)
        return np.asarray(np.trunc(s / max(n, 1)), dtype=x.dtype) if n else np.zeros_like(s, dtype=x.dtype)
    with np.errstate(invalid="ignore"):  # the mean of nothing is NaN, without a warning
        return np.asarray(np.sum(x, axis=axes, keepdims=keepdims) / x.dtype.type(n), dtype=x.dtype)


def _minmax_kernel(fn):
    def kernel(x, *, axes, keepdims):
        x = np.asarray(x)
        if x.size == 0:
            # TF returns the identity (+-inf, or the dtype's limits) for empty reductions
            ident = _identity(fn, x.dtype)
            shape = reduced_shape(x.shape, normalize_axes(axes, x.ndim), keepdims)
            return np.full(shape, ident, dtype=x.dtype)
        return np.asarray(fn(x, axis=axes, keepdims=keepdims), dtype=x.dtype)
    return kernel


def _identity(fn, dtype):
    big = np.inf if dtype.kind == "f" else (np.iinfo(dtype).max if dtype.kind in "iu" else True)
    small = -np.inf if dtype.kind == "f" else (np.iinfo(dtype).min if dtype.kind in "iu" else False)
    return small if fn is np.max else big


def _expand_to_input(dy, op):
    """Reshape a reduction's output gradient to keepdims form, then broadcast to the input."""
    from .shape_ops import broadcast_like, expand_dims

    x = op.inputs[0]
    axes = op.attrs["axes"]
    if not op.attrs["keepdims"]:
        if axes is None:
            axes = tuple(range(len(x.shape)))
        for a in axes:
            dy = expand_dims(dy, a)
    return broadcast_like(dy, x)


def _count(op):
    """The number of elements reduced into each output element, as a tensor or a number."""
    x = op.inputs[0]
    axes = op.attrs["axes"]
    dims = x.shape if axes is None else tuple(x.shape[a] for a in axes)
    n = num_elements(dims)
    if n is not None:
        return float(n)
    from .math_api import cast
    from .shape_ops import gather, shape, size

    if axes is None:
        return cast(size(x), x.dtype)
    return cast(reduce_prod(gather(shape(x), list(axes))), x.dtype)


def _sum_grad(op, dy):
    return [_expand_to_input(dy, op)] if op.inputs[0].dtype.kind == "f" else [None]


def _mean_grad(op, dy):
    if op.inputs[0].dtype.kind != "f":
        return [None]
    return [_expand_to_input(dy, op) / _count(op)]


def _minmax_grad(op, dy):
    x = op.inputs[0]
    if x.dtype.kind != "f":
        return [None]
    from .math_api import cast, equal

    y = _expand_to_input(op.outputs[0], op)
    mask = cast(equal(x, y), x.dtype)
    ties = reduce_sum(mask, axis=op.attrs["axes"], keepdims=True)
    g = _expand_to_input(dy, op)
    return [g * mask / ties]


def _prod_grad(op, dy):
    """d prod / d x_i = the product of the other elements, exact with zeros in x: with no
    zero it is prod / x_i; with one zero only that element gets the product of the rest."""
    x = op.inputs[0]
    if x.dtype.kind != "f":
        return [None]
    from .math_api import cast, equal, logical_and, ones_like, where

    axes = op.attrs["axes"]
    is_zero = equal(x, 0.0)
    nonzero = where(is_zero, ones_like(x), x)
    rest = reduce_prod(nonzero, axis=axes, keepdims=True)
    zeros = reduce_sum(cast(is_zero, x.dtype), axis=axes, keepdims=True)
    others = where(equal(zeros, 0.0), rest / nonzero, where(logical_and(is_zero, equal(zeros, 1.0)), rest, 0.0))
    return [_expand_to_input(dy, op) * others]


_REDUCTIONS = [
    ("Sum", "Sum", _np_reduce(np.sum), _sum_grad, _dt.NUMERIC),
    ("Mean", "Mean", _mean_kernel, _mean_grad, _dt.NUMERIC),
    ("Max", "Max", _minmax_kernel(np.max), _minmax_grad, _dt.NUMERIC),
    ("Min", "Min", _minmax_kernel(np.min), _minmax_grad, _dt.NUMERIC),
    ("Prod", "Prod", _np_reduce(np.prod), _prod_grad, _dt.NUMERIC),
]

_TEST_ATTRS = ({"axes": None, "keepdims": False}, {"axes": (0,), "keepdims": False},
               {"axes": (-1,), "keepdims": True})

for _t, _n, _k, _g, _d in _REDUCTIONS:
    register(OpDef(type=_t, default_name=_n, infer=_reduce_infer(_d), kernel=_k, grad=_g,
                   kind=OpKind.REDUCTION, sample=("nonzero",) if _t == "Prod" else ("real",),
                   dtypes=_d, attrs_for_test=_TEST_ATTRS))


def _arg_infer(specs, attrs):
    (x,) = specs
    if x.dtype not in _dt.NUMERIC:
        raise TypeError(f"input must be numeric, got {x.dtype.name}")
    if x.shape is None:
        return TensorSpec(None, attrs["output_type"])
    return TensorSpec(reduced_shape(x.shape, (attrs["axis"],), False), attrs["output_type"])


def _arg_kernel(fn):
    def kernel(x, *, axis, output_type):
        x = np.asarray(x)
        if x.shape[axis] == 0:
            raise ValueError(f"reduction axis {axis} is empty")
        return np.asarray(fn(x, axis=axis), dtype=output_type)
    return kernel


for _t, _n, _fn in [("ArgMax", "ArgMax", np.argmax), ("ArgMin", "ArgMin", np.argmin)]:
    register(OpDef(type=_t, default_name=_n, infer=_arg_infer, kernel=_arg_kernel(_fn), grad=None,
                   kind=OpKind.REDUCTION, dtypes=_dt.NUMERIC,
                   attrs_for_test=({"axis": 0, "output_type": _dt.int64},)))


def _reduce(op_type, x, axis, keepdims, name):
    x = convert_to_tensor(x)
    axes = None
    if axis is not None:
        rank = None if x.shape is None else len(x.shape)
        try:
            axes = normalize_axes(axis, rank)
        except ValueError as exc:
            g = x.graph
            raise ValueError(f"{g.unique_name(g._state.scope + op_type, mark_used=False)} ({op_type}): "
                             f"{exc}; input '{x.name}' has shape {x.shape}") from None
        if rank is not None and len(axes) == rank:
            axes = None if not keepdims else axes
    return apply_op(op_type, [x], {"axes": axes, "keepdims": bool(keepdims)}, name=name)


def reduce_sum(x, axis=None, keepdims=False, name=None):
    return _reduce("Sum", x, axis, keepdims, name)


def reduce_mean(x, axis=None, keepdims=False, name=None):
    return _reduce("Mean", x, axis, keepdims, name)


def reduce_max(x, axis=None, keepdims=False, name=None):
    return _reduce("Max", x, axis, keepdims, name)


def reduce_min(x, axis=None, keepdims=False, name=None):
    return _reduce("Min", x, axis, keepdims, name)


def reduce_prod(x, axis=None, keepdims=False, name=None):
    return _reduce("Prod", x, axis, keepdims, name)


def reduce_logsumexp(x, axis=None, keepdims=False, name=None):
    """log(sum(exp(x))) computed stably as max + log(sum(exp(x - max)))."""
    from .control import stop_gradient
    from .math_api import exp, log, where, isfinite, zeros_like

    x = convert_to_tensor(x)
    with x.graph.name_scope(name or "ReduceLogSumExp"):
        m = stop_gradient(reduce_max(x, axis=axis, keepdims=True))
        m = where(isfinite(m), m, zeros_like(m))
        total = reduce_sum(exp(x - m), axis=axis, keepdims=keepdims)
        if not keepdims:
            from .shape_ops import reshape, squeeze

            # the max with its reduced axes dropped: one element when every axis is reduced
            m = reshape(m, ()) if axis is None else squeeze(m, normalize_axes(axis, len(x.shape)))
        return log(total) + m


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim, x.dtype)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


register_composite(CompositeDef(
    name="reduce_logsumexp", build=lambda x, **a: reduce_logsumexp(x, **a), reference=_np_logsumexp,
    sample=("real",), dtypes=_dt.FLOATS, grad_inputs=(0,),
    attrs_for_test=({"axis": None}, {"axis": -1, "keepdims": True}, {"axis": (0,)})))


def _arg(op_type, x, axis, output_type, name):
    x = convert_to_tensor(x)
    if x.shape is not None:
        from .build import normalize_axis

        axis = normalize_axis(0 if axis is None else axis, len(x.shape))
    return apply_op(op_type, [x], {"axis": axis, "output_type": _dt.as_dtype(output_type)}, name=name)


def argmax(x, axis=None, output_type=_dt.int64, name=None):
    return _arg("ArgMax", x, axis, output_type, name)


def argmin(x, axis=None, output_type=_dt.int64, name=None):
    return _arg("ArgMin", x, axis, output_type, name)


# ---- summing a broadcast gradient back to an input's shape ----

def _sum_to_shape_infer(specs, attrs):
    g, like = specs
    return TensorSpec(like.shape, g.dtype)


def _sum_to_shape_kernel(g, like):
    g = np.asarray(g)
    target = np.shape(like)
    if g.shape == target:
        return g
    lead = g.ndim - len(target)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(target) if d == 1 and g.shape[lead + i] != 1)
    return np.sum(np.ascontiguousarray(g), axis=axes, keepdims=True).reshape(target)


def _sum_to_shape_grad(op, dy):
    from .shape_ops import broadcast_like

    return [broadcast_like(dy, op.inputs[0]), None]


register(OpDef(type="SumToShape", default_name="SumToShape", infer=_sum_to_shape_infer,
               kernel=_sum_to_shape_kernel, grad=_sum_to_shape_grad, kind=OpKind.OPAQUE,
               extra={"shape_only_inputs": (1,)}))


def sum_to_shape_of(grad, x, partners=()):
    """Sum `grad` (shaped like a broadcast result) down to the shape of `x`.

    The axes are decided statically where the shapes allow (a fusable reduce_sum);
    where an unknown dimension might have been broadcast at run time, a SumToShape op
    decides when the shapes are known.
    """
    gs, xs = grad.shape, x.shape
    if gs is not None and xs is not None:
        if gs == xs and all(d is not None for d in gs):
            return grad
        lead = len(gs) - len(xs)
        axes = list(range(lead))
        ambiguous = False
        for i, d in enumerate(xs):
            gd = gs[lead + i]
            if d == 1 and gd != 1:
                axes.append(lead + i)
            elif d is None and gd != 1:
                if not _only_from_x(x, i, partners):
                    ambiguous = True
        if not ambiguous:
            if not axes:
                return grad
            out = reduce_sum(grad, axis=axes, keepdims=True)
            if lead:
                from .shape_ops import squeeze

                out = squeeze(out, list(range(lead)))
            return out
    return apply_op("SumToShape", [grad, x])


def _only_from_x(x, i, partners):
    """True when the unknown dimension i of x cannot have been broadcast: every partner
    operand lacks that dimension, has it statically 1, or provably has x's size there."""
    if not partners:
        return False
    memo: dict = {}
    for p in partners:
        if p.shape is None:
            return False
        j = len(p.shape) - len(x.shape) + i
        if j >= 0 and p.shape[j] != 1 and _dim_origin(p, j, memo) != _dim_origin(x, i, memo):
            return False
    return True


_ORIGIN_DEPTH = 48  # how far back _dim_origin looks; beyond it a dimension is its own origin


def _dim_origin(t, i, memo, depth=0):
    """A (tensor, axis) whose size unknown dimension i of t always has at run time: walking
    back through elementwise ops whose operands all agree on that dimension (so nothing was
    broadcast there), reductions that keep it, and ops whose definition names the input
    dimension an output dimension copies (extra["dim_source"](op, i) -> (tensor, axis) | None).
    Two dimensions with the same origin are equal, which lets a gradient sum statically."""
    key = (t, i)
    if key in memo:
        return memo[key]
    result = key
    op = t.op
    kind = op.op_def.kind
    if depth < _ORIGIN_DEPTH and t.shape is not None and t.shape[i] is None and op.inputs:
        rank = len(t.shape)
        if kind is OpKind.ELEMENTWISE and len(op.outputs) == 1:
            found = set()
            for inp in op.inputs:
                if inp.shape is None:
                    found = None
                    break
                j = len(inp.shape) - rank + i
                if j >= 0 and inp.shape[j] != 1:
                    found.add(_dim_origin(inp, j, memo, depth + 1))
            if found is not None and len(found) == 1:
                result = found.pop()
        else:
            src = _reduction_dim_source(op, i) if kind is OpKind.REDUCTION else \
                op.op_def.extra.get("dim_source", lambda op, i: None)(op, i)
            if src is not None and src[0].shape is not None:
                result = _dim_origin(src[0], src[1], memo, depth + 1)
    memo[key] = result
    return result


def _reduction_dim_source(op, i):
    """The input axis that output axis i of a reduction keeps (None for a reduced axis)."""
    if "axes" not in op.attrs or op.inputs[0].shape is None:
        return None
    axes = op.attrs["axes"]
    rank = len(op.inputs[0].shape)
    axes = set(range(rank)) if axes is None else set(axes)
    if op.attrs["keepdims"]:
        return None if i in axes else (op.inputs[0], i)
    kept = [a for a in range(rank) if a not in axes]
    return (op.inputs[0], kept[i])
