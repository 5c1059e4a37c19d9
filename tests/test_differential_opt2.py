"""Differential property test: random graphs agree at opt_level 2 (fused, LLVM-compiled) and
opt_level 0 (numpy reference, op by op).

The graphs chain elementwise ops over operands that broadcast into a (rows, cols) domain
(full, row-vector, column-vector and scalar operands), sometimes followed by a row or column
reduction and a consumer of it (softmax-like and batch-norm-like patterns) or a leading matmul (an epilogue). Sizes
include 0, 1, 3, 17, 1023 and 2**16 + 1; feeds may be strided, reversed or transposed views and
hold NaN and +-inf. Results must match to float tolerance with NaN positions equal (the
polynomial approximations are within a few ulp). Hypothesis runs derandomized in CI
(conftest.py's "ci" profile) and prints the drawn recipe of a failing graph.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphflow as gf

COLS = [1, 3, 17, 1023, 2 ** 16 + 1]
ROWS = [0, 1, 3, 17]

UNARY = {
    "neg": gf.negative, "abs": gf.abs, "tanh": gf.tanh, "sigmoid": gf.sigmoid,
    "exp_tanh": lambda t: gf.exp(gf.tanh(t)), "log1p_abs": lambda t: gf.log1p(gf.abs(t)),
    "sqrt_abs": lambda t: gf.sqrt(gf.abs(t)), "erf": gf.erf, "relu": gf.nn.relu, "floor": gf.floor,
    "expm1_tanh": lambda t: gf.expm1(gf.tanh(t)), "log_sigmoid": lambda t: gf.log(gf.sigmoid(t)),
}
BINARY = {
    "add": gf.add, "sub": gf.subtract, "mul": gf.multiply, "maximum": gf.maximum, "minimum": gf.minimum,
    "div_safe": lambda a, b: a / (gf.abs(b) + 1.0),
    "where": lambda a, b: gf.where(a > b, a, b * 0.5),
}
REDUCE = {"sum": gf.reduce_sum, "mean": gf.reduce_mean, "max": gf.reduce_max, "min": gf.reduce_min}
FORMS = ["full", "full", "row", "col", "scalar"]


@pytest.fixture(autouse=True)
def compiled_loops_even_for_tiny_inputs(monkeypatch):
    """These tests check the LLVM kernels, so small inputs must not take the numpy shortcut."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "SMALL_ELEMENTS", 0)


def _shape(form, rows, cols):
    return {"full": (rows, cols), "row": (cols,), "col": (rows, 1), "scalar": ()}[form]


def _static(form, shape, known):
    if known or not shape:
        return shape
    return tuple(None for _ in shape)


def _feed_value(rng, shape, layout, specials, dtype):
    v = rng.standard_normal(shape).astype(dtype) * 2
    if specials and v.size:
        flat = v.reshape(-1)
        idx = rng.integers(0, flat.size, size=min(3, flat.size))
        flat[idx] = rng.choice([np.nan, np.inf, -np.inf], size=idx.size)
    if layout == "strided" and v.ndim:
        big = np.zeros(v.shape[:-1] + (v.shape[-1] * 2,), dtype)
        big[..., ::2] = v
        return big[..., ::2]
    if layout == "transposed" and v.ndim == 2:
        return np.ascontiguousarray(v.T).T
    if layout == "reversed" and v.ndim:
        return np.ascontiguousarray(v[..., ::-1])[..., ::-1]
    return v


def _compare(got, ref, what):
    for g, r in zip(got, ref):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape and g.dtype == r.dtype, what
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-5, equal_nan=True, err_msg=what)


@settings(max_examples=40)
@given(st.data())
def test_random_fused_graphs_match_the_reference(data):
    gf.reset_default_graph()
    rows = data.draw(st.sampled_from(ROWS), "rows")
    cols = data.draw(st.sampled_from(COLS if rows <= 3 else COLS[:4]), "cols")
    dtype = data.draw(st.sampled_from([np.float32, np.float32, np.float64]), "dtype")
    known = data.draw(st.booleans(), "static shapes")
    specials = data.draw(st.booleans(), "NaN/inf in feeds")
    n_feeds = data.draw(st.integers(1, 3), "feeds")
    forms = ["full"] + [data.draw(st.sampled_from(FORMS), f"form{i}") for i in range(1, n_feeds)]
    feeds, values = [], []
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), "seed"))
    for i, form in enumerate(forms):
        shape = _shape(form, rows, cols)
        p = gf.placeholder(dtype, _static(form, shape, known), name=f"p{i}")
        layout = data.draw(st.sampled_from(["contiguous", "strided", "transposed", "reversed"]), f"layout{i}")
        feeds.append(p)
        values.append(_feed_value(rng, shape, layout, specials, dtype))
    pool = list(feeds)
    if data.draw(st.booleans(), "leading matmul") and rows and cols <= 1023:
        w = gf.constant(rng.standard_normal((cols, cols)).astype(dtype) / max(cols, 1))
        pool.append(gf.matmul(feeds[0], w))
    for k in range(data.draw(st.integers(1, 7), "ops")):
        if data.draw(st.booleans(), f"unary{k}"):
            name = data.draw(st.sampled_from(sorted(UNARY)), f"op{k}")
            pool.append(UNARY[name](data.draw(st.sampled_from(pool), f"arg{k}")))
        else:
            name = data.draw(st.sampled_from(sorted(BINARY)), f"op{k}")
            a = data.draw(st.sampled_from(pool), f"lhs{k}")
            b = data.draw(st.sampled_from(pool), f"rhs{k}")
            pool.append(BINARY[name](a, b))
    out = pool[-1]
    if data.draw(st.booleans(), "row reduction") and out.shape is not None and len(out.shape) == 2:
        red = data.draw(st.sampled_from(sorted(REDUCE)), "reduce")
        keep = data.draw(st.booleans(), "keepdims")
        axis = data.draw(st.sampled_from([-1, 0]), "axis (row or column kernel)")
        r = REDUCE[red](out, axis=axis, keepdims=keep)
        out = gf.exp(out - r) if keep and data.draw(st.booleans(), "row consumer") else gf.tanh(r)
    fetches = [out] + ([pool[len(feeds)]] if len(pool) > len(feeds) + 1 else [])
    fd = dict(zip(feeds, values))
    ref = gf.Session(opt_level=0).run(fetches, fd)
    got = gf.Session(opt_level=2, num_threads=1).run(fetches, fd)
    _compare(got, ref, gf.compile(fetches, feed_list=feeds).report())
    if len(pool) == len(feeds) or pool[len(feeds)].op.type != "MatMul":   # BLAS blocks may round differently
        with gf.Session(opt_level=2, num_threads=3) as sess:
            for a, b in zip(sess.run(fetches, fd), got):
                assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), "results depend on the thread count"


@settings(max_examples=15)
@given(st.sampled_from([0, 1, 3, 17, 1023, 2 ** 16 + 1]), st.sampled_from(["contiguous", "strided"]))
def test_w1_chain_on_every_size(n, layout):
    gf.reset_default_graph()
    x = gf.placeholder(gf.float32, (None,), name="x")
    y = gf.placeholder(gf.float32, (None,), name="y")
    out = gf.tanh(x * 0.5 + y) * gf.sigmoid(x) + gf.sqrt(gf.abs(y) + 1.0)
    rng = np.random.default_rng(n)
    fd = {x: _feed_value(rng, (n,), layout, True, np.float32), y: _feed_value(rng, (n,), layout, True, np.float32)}
    _compare([gf.Session(opt_level=2).run(out, fd)], [gf.Session(opt_level=0).run(out, fd)], f"n={n}")


INT_BINARY = {
    "add": gf.add, "sub": gf.subtract, "mul": gf.multiply, "maximum": gf.maximum, "minimum": gf.minimum,
    "floordiv": lambda a, b: gf.floordiv(a, gf.abs(b) + 1), "mod": lambda a, b: gf.mod(a, b * 2 - 7),
    "where": lambda a, b: gf.where(gf.logical_or(a > b, gf.equal(a, 0)), a, -b),
}


@settings(max_examples=20)
@given(st.data())
def test_random_integer_graphs_match_the_reference(data):
    gf.reset_default_graph()
    dtype = data.draw(st.sampled_from([np.int32, np.int64]), "dtype")
    rows = data.draw(st.sampled_from([1, 3, 17]), "rows")
    cols = data.draw(st.sampled_from([1, 3, 1023]), "cols")
    forms = ["full", data.draw(st.sampled_from(FORMS), "form1")]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), "seed"))
    feeds = [gf.placeholder(dtype, _static(f, _shape(f, rows, cols), False), name=f"i{k}") for k, f in enumerate(forms)]
    values = [rng.integers(-50, 50, _shape(f, rows, cols)).astype(dtype) for f in forms]
    pool = list(feeds)
    for k in range(data.draw(st.integers(1, 6), "ops")):
        name = data.draw(st.sampled_from(sorted(INT_BINARY)), f"op{k}")
        pool.append(INT_BINARY[name](data.draw(st.sampled_from(pool), f"lhs{k}"), data.draw(st.sampled_from(pool), f"rhs{k}")))
    fd = dict(zip(feeds, values))
    ref = gf.Session(opt_level=0).run(pool[-1], fd)
    got = gf.Session(opt_level=2).run(pool[-1], fd)
    np.testing.assert_array_equal(got, ref)
