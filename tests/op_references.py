"""The conformance reference table: for every op registered by graphflow.ops and every
composite, an independent numpy expectation and the cases (shapes, dtypes, attributes) to
check it on; ops with state, control flow or randomness get a custom check instead.
tests/test_ops_conformance.py runs them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphflow as gf
import naive_nn
from domains import BROADCAST_PAIRS, REDUCE_SHAPES, SELECT_SHAPES, SHAPES, sample
from graphflow.ops.composite import get_composite

F32, F64, I32, I64, BOOL = (np.dtype(d) for d in ("float32", "float64", "int32", "int64", "bool"))


@dataclass
class Case:
    """One evaluation: inputs (shapes to sample, or arrays used as given) and attributes."""

    inputs: list
    attrs: dict = field(default_factory=dict)


@dataclass
class Ref:
    """A numpy expectation and the cases to check it on.

    cases: a list of Case, or a function (dtype, attrs_for_test) -> list of Case.
    specials: also run on NaN/inf/signed-zero/huge inputs (float dtypes).
    first_dtype_only: the cases hold arrays of fixed dtypes (no per-dtype sweep).
    shape_from_values: the output shape depends on input values (a shape tensor), so the
        static shape need only be compatible with the result.
    """

    fn: Callable
    cases: object
    specials: bool = False
    rtol: float | None = None
    first_dtype_only: bool = False
    shape_from_values: bool = False


@dataclass
class Check:
    """An op that is checked by a custom function (state, control flow, randomness)."""

    fn: Callable


def attrs_or_empty(attrs_for_test):
    return list(attrs_for_test) or [{}]


def unary_cases(dtype, attrs_for_test):
    return [Case([s], a) for a in attrs_or_empty(attrs_for_test) for s in SHAPES]


def binary_cases(dtype, attrs_for_test):
    return [Case(list(p), a) for a in attrs_or_empty(attrs_for_test) for p in BROADCAST_PAIRS]


def reduce_cases(dtype, attrs_for_test):
    out = []
    for a in attrs_for_test:
        for s in REDUCE_SHAPES:
            if a["axes"] is not None and len(s) < 1:
                continue
            out.append(Case([s], a))
    return out


def errstate(fn):
    def wrapped(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return wrapped


# ---- references for primitives ----

def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x) if np.size(x) else np.zeros(np.shape(x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _reduce(fn, empty=None):
    def ref(x, *, axes, keepdims):
        ax = None if axes is None else tuple(axes)
        if empty is not None and x.size == 0:
            shape = np.sum(np.zeros(x.shape), axis=ax, keepdims=keepdims).shape
            return np.full(shape, empty(x.dtype))
        return fn(x, axis=ax, keepdims=keepdims)
    return ref


def _mean(x, *, axes, keepdims):
    ax = tuple(range(x.ndim)) if axes is None else tuple(axes)
    n = int(np.prod([x.shape[i] for i in ax]))
    s = np.sum(x.astype(np.float64 if x.dtype.kind == "f" else np.int64), axis=ax, keepdims=keepdims)
    if x.dtype.kind == "f":
        return s / n
    return np.trunc(s / n) if n else np.zeros(s.shape)


def _limit(kind):
    def value(dtype):
        if dtype.kind == "f":
            return -np.inf if kind == "max" else np.inf
        info = np.iinfo(dtype)
        return info.min if kind == "max" else info.max
    return value


def _arg_cases(dtype, attrs_for_test):
    return [Case([s], {"axis": ax, "output_type": ot}) for s, ax in [((5,), 0), ((2, 3), 1), ((3, 0), 0),
                                                                    ((2, 1, 3), 2)] for ot in (I64, I32)]


def _matmul_ref(a, b, *, transpose_a, transpose_b):
    a = np.swapaxes(a, -1, -2) if transpose_a else a
    b = np.swapaxes(b, -1, -2) if transpose_b else b
    return np.einsum("...ij,...jk->...ik", a.astype(np.float64), b.astype(np.float64))


def _matmul_cases(dtype, attrs_for_test):
    shapes = [((2, 3), (3, 4)), ((1, 1), (1, 1)), ((0, 3), (3, 2)), ((2, 0), (0, 3)), ((2, 2, 3), (3, 4)),
              ((2, 1, 2, 3), (3, 3, 4)), ((3, 2, 3), (3, 3, 1))]
    out = []
    for a in attrs_for_test:
        for sa, sb in shapes:
            ta = sa[:-2] + sa[-2:][::-1] if a["transpose_a"] else sa
            tb = sb[:-2] + sb[-2:][::-1] if a["transpose_b"] else sb
            out.append(Case([ta, tb], a))
    return out


def _select_cases(dtype, attrs_for_test):
    return [Case(list(s)) for s in SELECT_SHAPES]


def _cast_cases(dtype, attrs_for_test):
    return [Case([s], a) for a in attrs_for_test for s in [(), (2, 3), (0, 2)]]


def _like_cases(dtype, attrs_for_test):
    return [Case([s], {"dtype": d}) for s in SHAPES for d in (None, F64, BOOL)]


def _const_cases(dtype, attrs_for_test):
    return [Case([], {"value": np.asarray(v)}) for v in
            (np.float32(1.5), np.arange(6, dtype=np.int64).reshape(2, 3), np.zeros((0, 2), np.float64),
             np.array([True, False]))]


def _fill_cases(dtype, attrs_for_test):
    return [Case([], {"shape": (2, 3), "value": 1.5, "dtype": F32}), Case([], {"shape": (), "value": 7, "dtype": I64}),
            Case([], {"shape": (0, 4), "value": True, "dtype": BOOL}),
            Case([np.array([3, 1], np.int32)], {"value": -2, "dtype": I32})]


def _fill_ref(*dims, value, dtype, shape=None):
    return np.full(tuple(dims[0]) if dims else shape, value, dtype=dtype)


def _range_cases(dtype, attrs_for_test):
    return [Case([], {"start": s, "limit": l, "delta": d, "dtype": t})
            for s, l, d, t in [(0, 5, 1, I32), (2, -3, -2, I64), (0.5, 2.0, 0.25, F32), (3, 3, 1, I32)]]


def _eye_cases(dtype, attrs_for_test):
    return [Case([], {"n": n, "m": m, "dtype": t}) for n, m, t in [(3, 3, F32), (2, 4, F64), (0, 2, I32)]]


def _reshape_cases(dtype, attrs_for_test):
    return [Case([s], {"shape": t}) for s, t in [((2, 3), (3, 2)), ((2, 3), (-1,)), ((0, 3), (-1, 3)), ((), (1, 1)),
                                                 ((2, 1, 3), (3, -1))]]


def _reshape_ref(x, *, shape):
    return np.reshape(x, shape)


def _dyn_reshape_cases(dtype, attrs_for_test):
    return [Case([(2, 3), np.array([3, 2], np.int32)]), Case([(4,), np.array([2, -1], np.int64)]),
            Case([(0, 2), np.array([2, 0], np.int32)])]


def _reshape_like_cases(dtype, attrs_for_test):
    return [Case([(2, 3), (6,)]), Case([(0, 3), (3, 0)]), Case([(4,), (2, 1, 2)])]


def _expand_cases(dtype, attrs_for_test):
    return [Case([s], {"axis": a}) for s in SHAPES for a in sorted({0, len(s)})]


def _squeeze_cases(dtype, attrs_for_test):
    return [Case([s], {"axes": a}) for s, a in [((1, 3, 1), (0, 2)), ((2, 1), (1,)), ((1,), (0,)), ((0, 1), (1,))]]


def _transpose_cases(dtype, attrs_for_test):
    return [Case([s], {"perm": p}) for s, p in [((2, 3), (1, 0)), ((2, 1, 4), (2, 0, 1)), ((0, 3), (1, 0)),
                                                ((), ()), ((3,), (0,))]]


def _broadcast_to_cases(dtype, attrs_for_test):
    return [Case([s], {"shape": t}) for s, t in [((3,), (2, 3)), ((1, 3), (4, 3)), ((), (2, 2)), ((0, 1), (0, 4)),
                                                 ((2, 1), (2, 1))]]


def _broadcast_like_cases(dtype, attrs_for_test):
    return [Case([a, b]) for a, b in [((3,), (2, 3)), ((2, 1), (1, 4)), ((), (0,)), ((2, 3), (2, 3))]]


def _shape_cases(dtype, attrs_for_test):
    return [Case([s], {"out_type": t}) for s in SHAPES for t in (I32, I64)]


def _gather_cases(dtype, attrs_for_test):
    return [Case([(4, 3), np.array([0, 3, 1, 3], np.int32)], {"axis": 0}),
            Case([(4, 3), np.array([[2, 0], [1, 1]], np.int64)], {"axis": 1}),
            Case([(5,), np.array(2, np.int32)], {"axis": 0}),
            Case([(4, 3), np.zeros((0,), np.int32)], {"axis": 0}),
            Case([(2, 3, 2), np.array([-1, 0], np.int32)], {"axis": 1})]


def _gather_grad_ref(dy, i, p, *, axis):
    return naive_nn.adjoint(lambda x: np.take(x, i, axis=axis), p.shape, dy)


def _gather_grad_cases(dtype, attrs_for_test):
    return [Case([(4, 3), np.array([0, 3, 3, 1], np.int32), (5, 3)], {"axis": 0}),
            Case([(2, 2, 2), np.array([[1, 1], [0, 2]], np.int64), (2, 3)], {"axis": 1})]


def _slice_cases(dtype, attrs_for_test):
    keys = [((("slice", None, None, 2),), (5,)), ((0,), (2, 3)), ((None, ("slice", 1, None, None)), (4,)),
            ((("slice", None, None, -1), 1), (3, 2)), ((("slice", 1, -1, None),), (0, 3)),
            ((1, ("slice", 0, 0, None)), (2, 3))]
    return [Case([s], {"key": k}) for k, s in keys]


def _slice_ref(x, *, key):
    return x[tuple(slice(*k[1:]) if isinstance(k, tuple) else k for k in key)]


def _slice_grad_cases(dtype, attrs_for_test):
    return [Case([(3,), (5,)], {"key": (("slice", None, None, 2),)}), Case([(3,), (2, 3)], {"key": (1,)}),
            Case([(0, 2), (3, 2)], {"key": (("slice", 1, 1, None),)})]


def _slice_grad_ref(dy, x, *, key):
    return naive_nn.adjoint(lambda v: _slice_ref(v, key=key), x.shape, dy)


def _sum_to_shape_cases(dtype, attrs_for_test):
    return [Case([g, x]) for g, x in [((2, 3), (3,)), ((2, 3), (1, 3)), ((2, 3), (2, 1)), ((4, 2, 3), ()),
                                      ((0, 3), (1, 3)), ((2, 3), (2, 3))]]


def _sum_to_shape_ref(g, x):
    return naive_nn.adjoint(lambda v: np.broadcast_to(v, g.shape), x.shape, g)


def _concat_cases(dtype, attrs_for_test):
    return [Case([(2, 3), (4, 3)], {"axis": 0}), Case([(2, 3), (2, 0)], {"axis": 1}),
            Case([(1, 2), (1, 1), (1, 3)], {"axis": 1}), Case([(0,), (3,)], {"axis": 0}),
            Case([(2, 1, 2), (2, 2, 2)], {"axis": 1})]


def _split_cases(dtype, attrs_for_test):
    return [Case([(4, 2)], {"sizes": None, "num": 2, "axis": 0}), Case([(2, 5)], {"sizes": (1, -1, 2), "num": 3, "axis": 1}),
            Case([(3,)], {"sizes": (3,), "num": 1, "axis": 0}), Case([(2, 3)], {"sizes": (0, 3), "num": 2, "axis": 1}),
            Case([(0, 4)], {"sizes": None, "num": 2, "axis": 1})]


def _split_ref(x, *, sizes, num, axis):
    n = x.shape[axis]
    if sizes is None:
        sizes = [n // num] * num
    sizes = [n - sum(s for s in sizes if s != -1) if s == -1 else s for s in sizes]
    out, start = [], 0
    for s in sizes:
        out.append(np.take(x, np.arange(start, start + s), axis=axis))
        start += s
    return out


def _splitv_cases(dtype, attrs_for_test):
    return [Case([(5, 2), np.array([2, 3], np.int32)], {"num": 2, "axis": 0}),
            Case([(2, 4), np.array([1, 0, 3], np.int64)], {"num": 3, "axis": 1})]


def _pad_cases(dtype, attrs_for_test):
    out = [Case([(3, 4)], a) for a in attrs_for_test]
    out += [Case([(0, 2)], {"paddings": ((1, 1), (0, 1)), "mode": "CONSTANT", "constant_values": 0}),
            Case([(2,)], {"paddings": ((2, 0),), "mode": "CONSTANT", "constant_values": 1}),
            Case([()], {"paddings": (), "mode": "CONSTANT", "constant_values": 0})]
    return out


def _pad_ref(x, *, paddings, mode, constant_values):
    """Index arithmetic, not np.pad: each output position maps to an input position or to the constant."""
    out_shape = tuple(d + lo + hi for d, (lo, hi) in zip(x.shape, paddings))
    out = np.full(out_shape, constant_values, dtype=x.dtype)
    for pos in np.ndindex(*out_shape):
        src = []
        for p, d, (lo, _) in zip(pos, x.shape, paddings):
            i = p - lo
            if mode == "REFLECT":
                i = -i if i < 0 else (2 * (d - 1) - i if i >= d else i)
            elif mode == "SYMMETRIC":
                i = -i - 1 if i < 0 else (2 * d - 1 - i if i >= d else i)
            src.append(i)
        if all(0 <= i < d for i, d in zip(src, x.shape)):
            out[pos] = x[tuple(src)]
    return out


def _mirror_grad_cases(dtype, attrs_for_test):
    return [Case([(5, 5), (3, 4)], {"paddings": ((1, 1), (1, 0)), "mode": "REFLECT"}),
            Case([(5, 7), (3, 4)], {"paddings": ((0, 2), (2, 1)), "mode": "SYMMETRIC"})]


def _mirror_grad_ref(dy, x, *, paddings, mode):
    return naive_nn.adjoint(lambda v: _pad_ref(v, paddings=paddings, mode=mode, constant_values=0), x.shape, dy)


def _tile_cases(dtype, attrs_for_test):
    return [Case([(2, 3)], a) for a in attrs_for_test] + [Case([()], {"multiples": ()}),
                                                          Case([(0, 2)], {"multiples": (3, 2)})]


def _tile_ref(x, *, multiples):
    out = x
    for axis, m in enumerate(multiples):
        out = np.concatenate([out] * m, axis=axis) if m else np.take(out, [], axis=axis)
    return out


def _tile_grad_cases(dtype, attrs_for_test):
    return [Case([(4, 3), (2, 3)], {"multiples": (2, 1)}), Case([(2, 6), (1, 2)], {"multiples": (2, 3)}),
            Case([(0, 3), (2, 3)], {"multiples": (0, 1)})]


def _tile_grad_ref(dy, x, *, multiples):
    return naive_nn.adjoint(lambda v: _tile_ref(v, multiples=multiples), x.shape, dy)


def _nhwc_cases(shapes):
    def cases(dtype, attrs_for_test):
        return [Case(list(s), a) for a in attrs_for_test for s in shapes]
    return cases


_IMG = [((2, 5, 6, 3), (3, 3, 3, 4)), ((1, 4, 4, 1), (1, 1, 1, 2)), ((0, 4, 5, 2), (2, 2, 2, 1)),
        ((1, 7, 5, 2), (3, 2, 2, 3))]


def _conv_ref(x, w, *, strides, padding):
    return naive_nn.conv2d(x, w, strides, padding)


def _conv_out_shape(x_shape, w_shape, strides, padding):
    return naive_nn.conv2d(np.zeros(x_shape), np.zeros(w_shape), strides, padding).shape


def _backprop_input_cases(dtype, attrs_for_test):
    return [Case([_conv_out_shape(x, w, a["strides"], a["padding"]), w, x], a) for a in attrs_for_test for x, w in _IMG]


def _backprop_filter_cases(dtype, attrs_for_test):
    return [Case([x, _conv_out_shape(x, w, a["strides"], a["padding"]), w], a) for a in attrs_for_test for x, w in _IMG]


def _backprop_input_ref(dy, w, x, *, strides, padding):
    return naive_nn.adjoint(lambda v: naive_nn.conv2d(v, w, strides, padding), x.shape, dy)


def _backprop_filter_ref(x, dy, w, *, strides, padding):
    return naive_nn.adjoint(lambda v: naive_nn.conv2d(x, v, strides, padding), w.shape, dy)


_POOL_IMAGES = [(2, 5, 6, 3), (1, 4, 4, 1), (0, 4, 5, 2), (1, 3, 2, 2)]


def _pool_cases(dtype, attrs_for_test):
    return [Case([s], a) for a in attrs_for_test for s in _POOL_IMAGES]


def _pool_out(x_shape, a):
    return naive_nn.avg_pool(np.zeros(x_shape), a["ksize"], a["strides"], a["padding"]).shape


def _pool_grad_cases(order):
    def cases(dtype, attrs_for_test):
        out = []
        for a in attrs_for_test:
            for s in _POOL_IMAGES:
                shapes = {"x_dy": [s, _pool_out(s, a)], "dy_x": [_pool_out(s, a), s], "x_ddx": [s, s]}[order]
                out.append(Case(shapes, a))
        return out
    return cases


def _max_pool_grad_grad_ref(x, ddx, *, ksize, strides, padding):
    """The adjoint of MaxPoolGrad(x, .): probe it through the naive routing."""
    out_shape = _pool_out(x.shape, {"ksize": ksize, "strides": strides, "padding": padding})
    return naive_nn.adjoint(lambda dy: naive_nn.max_pool_grad(x, dy, ksize, strides, padding), out_shape, ddx)


def _avg_pool_grad_ref(dy, x, *, ksize, strides, padding):
    return naive_nn.adjoint(lambda v: naive_nn.avg_pool(v, ksize, strides, padding), x.shape, dy)


# ---- custom checks: state, control flow, randomness, no-ops ----

def _check_placeholder():
    x = gf.placeholder(gf.int64, (None, 2))
    v = np.arange(6, dtype=np.int64).reshape(3, 2)
    with gf.Session(opt_level=0) as sess:
        np.testing.assert_array_equal(sess.run(x, {x: v}), v)
    assert x.shape == (None, 2) and x.dtype == I64


def _check_noop():
    a = gf.Variable(1.0)
    inc = a.assign_add(2.0)
    op = gf.no_op()
    grouped = gf.group(inc, op)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run(op) is None
        assert sess.run(grouped) is None
        assert sess.run(a) == 3.0
    assert op.outputs == () and op.type == "NoOp"


def _check_variables():
    v = gf.Variable(np.array([1.0, 2.0], np.float32), name="v")
    assert v.dtype == F32 and tuple(v.shape) == (2,)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(v.assign([3.0, 4.0])), [3.0, 4.0])
        np.testing.assert_array_equal(sess.run(v.assign_add([1.0, 1.0])), [4.0, 5.0])
        np.testing.assert_array_equal(sess.run(v.assign_sub([0.5, 2.0])), [3.5, 3.0])
        np.testing.assert_array_equal(sess.run(v), [3.5, 3.0])


def _check_cond():
    p = gf.placeholder(gf.bool, ())
    x = gf.placeholder(gf.float32, (3,))
    y = gf.cond(p, lambda: gf.square(x), lambda: gf.log(x))  # log of negatives is never evaluated when p
    xv = np.array([-1.0, 2.0, 3.0], np.float32)
    with gf.Session(opt_level=0) as sess:
        np.testing.assert_allclose(sess.run(y, {p: True, x: xv}), xv ** 2)
        out = sess.run(y, {p: False, x: np.abs(xv)})
    np.testing.assert_allclose(out, np.log(np.abs(xv)), rtol=1e-6)
    assert y.shape == (3,) and y.dtype == F32


def _check_random(op_type):
    def check():
        build = gf.random.normal if op_type == "RandomNormal" else gf.random.uniform
        static = build((200, 50), seed=3)
        dyn_shape = gf.placeholder(gf.int32, (2,))
        dynamic = build(dyn_shape, dtype=gf.float64, seed=4)
        assert static.op.type == op_type and dynamic.op.type == op_type
        with gf.Session(opt_level=0) as sess:
            a, b = sess.run([static, dynamic], {dyn_shape: [3, 0]})
            a2 = sess.run(static)
        assert a.shape == static.shape and a.dtype == static.dtype
        assert b.shape == (3, 0) and b.dtype == F64 and dynamic.shape == (None, None)
        assert not np.array_equal(a, a2), "a random op must draw new values on each run"
        if op_type == "RandomNormal":
            assert abs(a.mean()) < 0.05 and abs(a.std() - 1.0) < 0.05
        else:
            assert a.min() >= 0.0 and a.max() < 1.0 and abs(a.mean() - 0.5) < 0.03
    return check


def _check_dropout():
    """Random: each element is 0 or x / (1 - rate), kept with probability 1 - rate."""
    c = get_composite("nn.dropout")
    x = gf.placeholder(gf.float64, (None, 400))
    y = c.build(x, **c.attrs_for_test[0])
    rate = c.attrs_for_test[0]["rate"]
    xv = sample("positive", (50, 400), F64, np.random.default_rng(0))
    with gf.Session(opt_level=0) as sess:
        out = sess.run(y, {x: xv})
    kept = out != 0
    np.testing.assert_allclose(out[kept], xv[kept] / (1 - rate), rtol=1e-12)
    assert abs(kept.mean() - (1 - rate)) < 0.02
    assert y.shape == (None, 400) and y.dtype == F64


# ---- the reference table ----

def _u(fn, **kw):
    return Ref(errstate(fn), unary_cases, **kw)


def _b(fn, **kw):
    return Ref(errstate(fn), binary_cases, **kw)


def _floordiv(x, y):
    if x.dtype.kind == "f":  # numpy's (= Python's) float floor division: inf // 1 is nan
        return np.floor_divide(x, y)
    return np.array([int(a) // int(b) for a, b in zip(*(np.broadcast_arrays(x, y)[i].ravel() for i in (0, 1)))],
                    dtype=np.int64).reshape(np.broadcast_shapes(x.shape, y.shape))


def _gelu(x, approximate):
    x = x.astype(np.float64)
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return x * 0.5 * (1 + _erf(x / math.sqrt(2)))


_SELU_A, _SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

REFERENCE: dict[str, object] = {
    "Neg": _u(lambda x: -x, specials=True),
    "Abs": _u(np.abs, specials=True),
    "Exp": _u(np.exp, specials=True),
    "Log": _u(np.log, specials=True),
    "Log1p": _u(np.log1p, specials=True),
    "Expm1": _u(np.expm1, specials=True),
    "Sqrt": _u(np.sqrt, specials=True),
    "Rsqrt": _u(lambda x: 1.0 / np.sqrt(x.astype(np.float64)), specials=True),
    "Square": _u(lambda x: x * x, specials=True),
    "Reciprocal": _u(lambda x: 1.0 / x.astype(np.float64), specials=True),
    "Sin": _u(np.sin),
    "Cos": _u(np.cos),
    "Tanh": _u(np.tanh, specials=True),
    "Sigmoid": _u(_sigmoid, specials=True),
    "Erf": _u(_erf, specials=True),
    "Sign": _u(np.sign, specials=True),
    "Floor": _u(np.floor, specials=True),
    "Ceil": _u(np.ceil, specials=True),
    "Round": _u(np.rint, specials=True),
    "LogicalNot": _u(lambda x: ~x),
    "IsNan": _u(lambda x: x != x, specials=True),
    "IsFinite": _u(lambda x: np.abs(x.astype(np.float64)) < np.inf, specials=True),
    "Identity": _u(lambda x: x, specials=True),
    "StopGradient": _u(lambda x: x, specials=True),
    "Relu": _u(lambda x: np.maximum(x, 0), specials=True),
    "Relu6": _u(lambda x: np.clip(x, 0, 6), specials=True),
    "LeakyRelu": _u(lambda x, alpha: np.where(x > 0, x, alpha * x.astype(np.float64)), specials=True),
    "Elu": _u(lambda x: np.where(x > 0, x, np.exp(x.astype(np.float64)) - 1), specials=True),
    "Selu": _u(lambda x: _SELU_S * np.where(x > 0, x, _SELU_A * (np.exp(x.astype(np.float64)) - 1)), specials=True),
    "Softplus": _u(lambda x: np.logaddexp(0.0, x.astype(np.float64)), specials=True),
    "Gelu": _u(_gelu),
    "Cast": Ref(lambda x, dtype: x.astype(dtype), _cast_cases),
    "ZerosLike": Ref(lambda x, dtype: np.zeros(x.shape, dtype or x.dtype), _like_cases),
    "OnesLike": Ref(lambda x, dtype: np.ones(x.shape, dtype or x.dtype), _like_cases),
    "Add": _b(lambda x, y: x + y, specials=True),
    "Sub": _b(lambda x, y: x - y, specials=True),
    "Mul": _b(lambda x, y: x * y, specials=True),
    "RealDiv": _b(lambda x, y: x.astype(np.float64) / y, specials=True),
    "FloorDiv": _b(_floordiv, specials=True),
    "FloorMod": _b(np.mod, specials=True),
    "Pow": _b(lambda x, y: np.power(x.astype(np.float64), y), specials=True),
    "Maximum": _b(np.maximum, specials=True),
    "Minimum": _b(np.minimum, specials=True),
    "Equal": _b(lambda x, y: x == y, specials=True),
    "NotEqual": _b(lambda x, y: x != y, specials=True),
    "Less": _b(lambda x, y: x < y, specials=True),
    "LessEqual": _b(lambda x, y: x <= y, specials=True),
    "Greater": _b(lambda x, y: x > y, specials=True),
    "GreaterEqual": _b(lambda x, y: x >= y, specials=True),
    "LogicalAnd": _b(lambda x, y: x & y),
    "LogicalOr": _b(lambda x, y: x | y),
    "Select": Ref(lambda c, a, b: np.where(c, a, b), _select_cases, specials=True),
    "Sum": Ref(errstate(_reduce(np.sum)), reduce_cases, specials=True),
    "Mean": Ref(errstate(_mean), reduce_cases, specials=True),
    "Max": Ref(_reduce(np.max, _limit("max")), reduce_cases, specials=True),
    "Min": Ref(_reduce(np.min, _limit("min")), reduce_cases, specials=True),
    "Prod": Ref(errstate(_reduce(np.prod)), reduce_cases, specials=True),
    "ArgMax": Ref(lambda x, axis, output_type: np.argmax(x, axis=axis), _arg_cases),
    "ArgMin": Ref(lambda x, axis, output_type: np.argmin(x, axis=axis), _arg_cases),
    "MatMul": Ref(_matmul_ref, _matmul_cases),
    "Const": Ref(lambda value: value, _const_cases, first_dtype_only=True),
    "Fill": Ref(_fill_ref, _fill_cases, first_dtype_only=True, shape_from_values=True),
    "Range": Ref(lambda start, limit, delta, dtype: np.array(
        [start + k * delta for k in range(max(0, math.ceil((limit - start) / delta)))], dtype=dtype),
        _range_cases, first_dtype_only=True),
    "DynamicRange": Ref(lambda s, l, d, dtype: np.array([s + k * d for k in range(max(0, math.ceil((l - s) / d)))],
                                                       dtype=dtype),
                        [Case([np.array(v, dt) for v in b], {"dtype": dt})
                         for b, dt in [((0, 5, 1), I32), ((2, -3, -2), I64), ((0.5, 2.0, 0.25), F32), ((3, 3, 1), I32)]],
                        first_dtype_only=True, shape_from_values=True),
    "Eye": Ref(lambda n, m, dtype: np.array([[i == j for j in range(m)] for i in range(n)], dtype=dtype).reshape(n, m),
               _eye_cases, first_dtype_only=True),
    "Reshape": Ref(_reshape_ref, _reshape_cases),
    "DynamicReshape": Ref(lambda x, s: np.reshape(x, tuple(s)), _dyn_reshape_cases, shape_from_values=True),
    "ReshapeLike": Ref(lambda x, like: np.reshape(x, like.shape), _reshape_like_cases),
    "ExpandDims": Ref(lambda x, axis: np.reshape(x, x.shape[:axis] + (1,) + x.shape[axis:]), _expand_cases),
    "Squeeze": Ref(lambda x, axes: np.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes)),
                   _squeeze_cases),
    "Transpose": Ref(lambda x, perm: x.transpose(perm), _transpose_cases),
    "BroadcastTo": Ref(lambda x, shape: x + np.zeros(shape, x.dtype), _broadcast_to_cases),
    "BroadcastLike": Ref(lambda x, like: np.broadcast_to(x, np.broadcast_shapes(x.shape, like.shape)),
                         _broadcast_like_cases),
    "Shape": Ref(lambda x, out_type: np.array(x.shape, dtype=np.int64).reshape(-1), _shape_cases),
    "Size": Ref(lambda x, out_type: np.array(x.size, dtype=np.int64), _shape_cases),
    "Gather": Ref(lambda p, i, axis: np.take(p, i, axis=axis), _gather_cases),
    "GatherGrad": Ref(_gather_grad_ref, _gather_grad_cases),
    "StridedSlice": Ref(_slice_ref, _slice_cases),
    "StridedSliceGrad": Ref(_slice_grad_ref, _slice_grad_cases),
    "SumToShape": Ref(_sum_to_shape_ref, _sum_to_shape_cases),
    "Concat": Ref(lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_cases),
    "Split": Ref(_split_ref, _split_cases),
    "SplitV": Ref(lambda x, s, num, axis: _split_ref(x, sizes=tuple(int(v) for v in s), num=num, axis=axis),
                  _splitv_cases, shape_from_values=True),
    "Pad": Ref(_pad_ref, _pad_cases),
    "MirrorPadGrad": Ref(_mirror_grad_ref, _mirror_grad_cases),
    "Tile": Ref(_tile_ref, _tile_cases),
    "TileGrad": Ref(_tile_grad_ref, _tile_grad_cases),
    "Conv2D": Ref(_conv_ref, _nhwc_cases(_IMG), rtol=1e-4),
    "Conv2DBackpropInput": Ref(_backprop_input_ref, _backprop_input_cases, rtol=1e-4),
    "Conv2DBackpropFilter": Ref(_backprop_filter_ref, _backprop_filter_cases, rtol=1e-4),
    "MaxPool": Ref(lambda x, ksize, strides, padding: naive_nn.max_pool(x, ksize, strides, padding), _pool_cases),
    "MaxPoolGrad": Ref(lambda x, dy, ksize, strides, padding: naive_nn.max_pool_grad(x, dy, ksize, strides, padding),
                       _pool_grad_cases("x_dy")),
    "MaxPoolGradGrad": Ref(_max_pool_grad_grad_ref, _pool_grad_cases("x_ddx")),
    "AvgPool": Ref(lambda x, ksize, strides, padding: naive_nn.avg_pool(x, ksize, strides, padding), _pool_cases),
    "AvgPoolGrad": Ref(_avg_pool_grad_ref, _pool_grad_cases("dy_x")),
    "CheckLabels": Ref(lambda y, x: y, [Case([np.array([0, 2, 1, 2], np.int32), (4, 3)]),
                                        Case([np.zeros((2, 0), np.int64), (2, 0, 1)])], first_dtype_only=True),
    "Placeholder": Check(_check_placeholder),
    "NoOp": Check(_check_noop),
    "VariableV2": Check(_check_variables),
    "Assign": Check(_check_variables),
    "AssignAdd": Check(_check_variables),
    "AssignSub": Check(_check_variables),
    "Cond": Check(_check_cond),
    "RandomNormal": Check(_check_random("RandomNormal")),
    "RandomUniform": Check(_check_random("RandomUniform")),
}


# ---- references for composites ----

def _np_softmax(x, axis=-1):
    if x.size == 0:
        return x.astype(np.float64)
    e = np.exp(x.astype(np.float64) - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_logsumexp(x, axis=None, keepdims=False):
    x = x.astype(np.float64)
    m = np.max(x, axis=axis, keepdims=True) if x.size else 0.0
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_sparse_xent(labels, logits):
    x = logits.astype(np.float64)
    lse = np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1)) + x.max(-1)
    picked = np.array([row[int(k)] for row, k in zip(x.reshape(-1, x.shape[-1]), labels.reshape(-1))])
    return lse - picked.reshape(labels.shape)


def _np_moments(x, axes, keepdims=False):
    x = x.astype(np.float64)
    mean = x.mean(axis=tuple(axes), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=tuple(axes), keepdims=True)
    return (mean, var) if keepdims else (mean.squeeze(tuple(axes)), var.squeeze(tuple(axes)))


def _composite_cases(shape_lists):
    def cases(dtype, attrs_for_test):
        return [Case(list(shapes), a) for a in attrs_for_test for shapes in shape_lists]
    return cases


_ROWS = [[(2, 5)], [(1, 3)], [(3, 1, 4)], [(0, 4)]]

COMPOSITE_REFERENCE: dict[str, object] = {
    "clip_by_value": Ref(lambda x, lo, hi: np.clip(x, lo, hi),
                         _composite_cases([[(2, 3), (), ()], [(4,), (4,), ()], [(0, 2), (2,), (1, 2)]]), specials=True),
    "reduce_logsumexp": Ref(errstate(_np_logsumexp), _composite_cases([[(2, 3)], [(4,)], [(2, 1, 3)], [(0, 3)]]),
                            specials=True),
    "stack": Ref(lambda *xs, axis: np.stack(xs, axis=axis), _composite_cases([[(2, 3)] * 3, [()] * 3, [(0, 2)] * 3])),
    "one_hot": Ref(lambda i, depth, axis=-1: np.moveaxis(
        np.array([[float(v == k) for k in range(depth)] for v in i.reshape(-1)]).reshape(i.shape + (depth,)), -1, axis),
        [Case([np.array([0, 3, 5, -1, 2], np.int32)], {"depth": 4}),
         Case([np.array([[1, 0], [2, 2]], np.int64)], {"depth": 3, "axis": 0}),
         Case([np.zeros((0,), np.int32)], {"depth": 2}), Case([np.array(1, np.int32)], {"depth": 3})],
        first_dtype_only=True),
    "nn.softmax": Ref(_np_softmax, _composite_cases(_ROWS)),
    "nn.log_softmax": Ref(lambda x, axis=-1: np.log(_np_softmax(x, axis)), _composite_cases(_ROWS)),
    "nn.sparse_softmax_cross_entropy_with_logits": Ref(
        _np_sparse_xent, [Case([np.array([0, 2, 1], np.int32), (3, 4)]), Case([np.array([[1], [0]], np.int64), (2, 1, 3)]),
                          Case([np.zeros((0,), np.int32), (0, 3)])], first_dtype_only=True),
    "nn.softmax_cross_entropy_with_logits": Ref(
        lambda z, x: -np.sum(z * np.log(_np_softmax(x)), axis=-1), _composite_cases([[(3, 4), (3, 4)], [(2, 1, 3), (2, 1, 3)]])),
    "nn.sigmoid_cross_entropy_with_logits": Ref(
        errstate(lambda z, x: -(z * np.log(_sigmoid(x)) + (1 - z) * np.log(1 - _sigmoid(x)))),
        _composite_cases([[(3, 4), (3, 4)], [(5,), (5,)], [(0,), (0,)]])),
    "nn.l2_loss": Ref(lambda x: 0.5 * np.sum(x.astype(np.float64) ** 2),
                      _composite_cases([[(2, 3)], [()], [(0, 4)]])),
    "nn.bias_add": Ref(lambda x, b: x + b, _composite_cases([[(2, 3), (3,)], [(2, 4, 4, 2), (2,)], [(0, 3), (3,)]])),
    "nn.moments": Ref(_np_moments, _composite_cases([[(4, 3)], [(2, 3, 2)]])),
    "nn.batch_normalization": Ref(
        lambda x, m, v, o, s, variance_epsilon: s * (x - m) / np.sqrt(v + variance_epsilon) + o,
        _composite_cases([[(4, 3), (3,), (3,), (3,), (3,)], [(2, 2, 3), (1, 1, 3), (3,), (3,), (1, 3)]])),
    "nn.dropout": Check(lambda: _check_dropout()),
}
