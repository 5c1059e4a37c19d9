"""Outsider tests of the session's fast paths for products and row kernels, through the public API only.

Written against API.md by someone who did not write the code: the register-tiled LLVM matmul
(epilogues, packed transposed operands, the one-row gemv, lone products as kernels), the row
kernels' max-one-row-ahead and the unclamped exp of x - rowmax, and the dynamically chunked
thread pool. Every result is checked against opt_level=0 (the numpy reference kernels) or
plain numpy, with NaN positions equal; results must not depend on the thread count.
"""
import itertools
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphflow as gf

SIZES = [1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 100, 257]
TOL = {np.float32: 2e-4, np.float64: 1e-10}


def _close(ref, got, tol, scale=1.0):
    assert ref.shape == got.shape and ref.dtype == got.dtype
    np.testing.assert_array_equal(np.isnan(ref), np.isnan(got))
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale, equal_nan=True)


def _layout(x, kind):
    """The same values in another memory layout (all legal numpy feeds)."""
    if kind == "F":
        return np.asfortranarray(x)
    if kind == "T_view":
        return np.ascontiguousarray(x.T).T
    if kind == "reversed":
        return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    if kind == "strided":
        return np.repeat(np.repeat(x, 2, 0), 3, 1)[::2, ::3]
    if kind == "misaligned":
        buf = np.zeros(x.nbytes + x.itemsize, np.uint8)
        y = np.frombuffer(buf.data, dtype=x.dtype, count=x.size, offset=4).reshape(x.shape)
        y[...] = x
        return y
    return np.ascontiguousarray(x)


EPILOGUES = {
    "none": lambda y, bias: y,
    "bias_relu": lambda y, bias: gf.nn.relu(y + bias),
    "tanh_residual": lambda y, bias: gf.tanh(y + bias) + y,
    "sigmoid": lambda y, bias: gf.sigmoid(y * 2.0),
    "softmax": lambda y, bias: gf.nn.softmax(y + bias),
}


def _product_graph(dtype, ta, tb, n, epilogue):
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(dtype, shape=(None, None), name="a")
        b = gf.placeholder(dtype, shape=(None, None), name="b")
        bias = gf.placeholder(dtype, shape=(n,), name="bias")
        y = gf.matmul(a, b, transpose_a=ta, transpose_b=tb)
        z = EPILOGUES[epilogue](y, bias)
    return g, (a, b, bias), y, z


@settings(max_examples=40, deadline=None)
@given(m=st.sampled_from(SIZES + [0, 1000]), n=st.sampled_from(SIZES), k=st.sampled_from(SIZES + [0, 1025]),
       ta=st.booleans(), tb=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       epilogue=st.sampled_from(sorted(EPILOGUES)), threads=st.sampled_from([1, 2, 3]),
       layout_a=st.sampled_from(["C", "F", "T_view", "reversed", "strided", "misaligned"]),
       layout_b=st.sampled_from(["C", "F", "T_view", "reversed", "strided"]), seed=st.integers(0, 2 ** 16))
def test_matmul_with_epilogue_matches_reference_and_fetched_product(m, n, k, ta, tb, dtype, epilogue, threads,
                                                                    layout_a, layout_b, seed):
    rng = np.random.default_rng(seed)
    g, (a, b, bias), y, z = _product_graph(dtype, ta, tb, n, epilogue)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    feed = {a: _layout(A, layout_a), b: _layout(B, layout_b), bias: rng.standard_normal(n).astype(dtype)}
    with gf.Session(graph=g, opt_level=0) as s0, gf.Session(graph=g, opt_level=2, num_threads=threads) as s2:
        ref = s0.run([z, y], feed)
        got = s2.run([z, y], feed)          # the product fetched alongside its epilogue's result
        alone = s2.run(z, feed)             # and not fetched
    plain = (A.T if ta else A) @ (B.T if tb else B)
    for r, o in zip(ref, got):
        _close(r, o, TOL[dtype], scale=np.sqrt(max(k, 1)))
    _close(ref[0], alone, TOL[dtype], scale=np.sqrt(max(k, 1)))
    np.testing.assert_allclose(got[1], plain, rtol=TOL[dtype], atol=TOL[dtype] * np.sqrt(max(k, 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_one_callable_with_changing_batch_and_inner_sizes(dtype, ta, tb):
    rng = np.random.default_rng(1)
    g, (a, b, bias), y, z = _product_graph(dtype, ta, tb, 17, "bias_relu")
    with gf.Session(graph=g, opt_level=0) as s0, gf.Session(graph=g, opt_level=2, num_threads=2) as s2:
        f = s2.make_callable([z, y], feed_list=[a, b, bias])
        bv = rng.standard_normal(17).astype(dtype)
        for m, k in [(0, 33), (1, 33), (2, 33), (1000, 33), (1, 33), (0, 0), (3, 0), (257, 17), (16, 1), (7, 2000)]:
            A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
            B = rng.standard_normal((17, k) if tb else (k, 17)).astype(dtype)
            for r, o in zip(s0.run([z, y], {a: A, b: B, bias: bv}), f(A, B, bv)):
                _close(r, o, TOL[dtype], scale=np.sqrt(max(k, 1)))


@pytest.mark.parametrize("form", ["lone", "chain", "bias", "transposed", "gemv"])
def test_empty_inner_dimension_gives_zeros_after_a_nonempty_run(form):
    """K=0 after a run with K>0 on the same session: the product is all zeros, never a reused buffer."""
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(gf.float32, shape=(None, None))
        b = gf.placeholder(gf.float32, shape=(None, None))
        c = gf.placeholder(gf.float32, shape=(None, None))
        y = {"lone": lambda: gf.matmul(a, b), "chain": lambda: gf.matmul(gf.matmul(a, b), c),
             "bias": lambda: gf.matmul(a, b) + 1.0,
             "transposed": lambda: gf.matmul(a, gf.transpose(b), transpose_b=True),
             "gemv": lambda: gf.matmul(a, b) * 2.0}[form]()
    m = 1 if form == "gemv" else 64
    with gf.Session(graph=g, opt_level=2, num_threads=2) as s:
        for k in (300, 0, 5, 0):
            A, B, C = np.full((m, k), 3.0, np.float32), np.full((k, 48), 2.0, np.float32), np.ones((48, 20), np.float32)
            want = A @ B @ C if form == "chain" else (A @ B + (form == "bias")) * (2.0 if form == "gemv" else 1.0)
            np.testing.assert_array_equal(s.run(y, {a: A, b: B, c: C}), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tb", [False, True])
def test_product_bits_do_not_depend_on_threads_or_on_the_rest_of_the_batch(dtype, tb):
    rng = np.random.default_rng(2)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(dtype, shape=(None, None))
        b = gf.placeholder(dtype, shape=(None, None))
        y = gf.matmul(a, b, transpose_b=tb)
        z = gf.tanh(y) + y
    sessions = {t: gf.Session(graph=g, opt_level=2, num_threads=t) for t in (1, 2, 3, 4)}
    try:
        for m, n, k in [(1000, 257, 2049), (1, 1000, 3000), (97, 31, 1023), (255, 33, 1025)]:
            A = rng.standard_normal((m, k)).astype(dtype)
            B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
            runs = {t: s.run([y, z], {a: A, b: B}) for t, s in sessions.items()}
            for t in (2, 3, 4):
                for r1, rt in zip(runs[1], runs[t]):
                    np.testing.assert_array_equal(r1, rt)
            for rows in ([0], [m - 1], list(range(min(m, 7)))):   # gemv, edge tiles, full tiles: one FMA chain
                for r1, part in zip(runs[1], sessions[2].run([y, z], {a: A[rows], b: B})):
                    np.testing.assert_array_equal(part, r1[rows])
    finally:
        for s in sessions.values():
            s.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_in_products_and_their_softmax_heads(dtype):
    rng = np.random.default_rng(3)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(dtype, shape=(None, 300))
        w = gf.placeholder(dtype, shape=(300, 257))
        bias = gf.placeholder(dtype, shape=(257,))
        y = gf.matmul(a, w)
        outs = [y, gf.tanh(y + bias) + y, gf.nn.softmax(y), gf.nn.log_softmax(y + bias)]
    A = rng.standard_normal((203, 300)).astype(dtype)
    W = rng.standard_normal((300, 257)).astype(dtype)
    A[3, 5] = np.nan
    A[7, :] = np.inf
    A[11, 0] = 1e30
    A[12] = -1e30
    W[:, 9] = -np.inf
    feed = {a: A, w: W, bias: rng.standard_normal(257).astype(dtype)}
    ref = gf.Session(graph=g, opt_level=0).run(outs, feed)
    by_threads = [gf.Session(graph=g, opt_level=2, num_threads=t).run(outs, feed) for t in (1, 2, 3)]
    for got in by_threads:
        for r, o in zip(ref, got):
            np.testing.assert_array_equal(np.isinf(r), np.isinf(o))
            _close(r, o, TOL[dtype] * 10, scale=20)
        for o1, o in zip(by_threads[0], got):
            np.testing.assert_array_equal(o1, o)


def test_product_with_several_consumers_and_fetched_intermediates():
    rng = np.random.default_rng(4)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(gf.float32, shape=(None, 50))
        w = gf.constant(rng.standard_normal((50, 40)).astype(np.float32))
        w2 = gf.constant(rng.standard_normal((40, 40)).astype(np.float32))
        y = gf.matmul(a, w)
        c1 = gf.nn.relu(y + 0.1)
        c2 = gf.sigmoid(y)
        c3 = gf.reduce_sum(y, axis=0)
        c4 = gf.matmul(y, w2) + y
        c5 = gf.matmul(c1, w2, transpose_b=True)
        c6 = gf.nn.softmax(c4) * c2
    outs = [y, c1, c2, c3, c4, c5, c6]
    with gf.Session(graph=g, opt_level=0) as s0, gf.Session(graph=g, opt_level=2, num_threads=3) as s2:
        for m in (1, 2, 3, 100, 1000, 7):
            A = rng.standard_normal((m, 50)).astype(np.float32)
            for sub in (outs, outs[1:], [c6], [c5, y], [c3, c1]):
                for r, o in zip(s0.run(sub, {a: A}), s2.run(sub, {a: A})):
                    np.testing.assert_allclose(o, r, rtol=2e-4, atol=2e-3)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_products_are_exact(dtype):
    rng = np.random.default_rng(5)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(dtype, shape=(None, 40))
        b = gf.placeholder(dtype, shape=(40, 33))
        y = gf.matmul(a, b)
        z = gf.maximum(y, 0) + y // 3
    A = rng.integers(-1000, 1000, (70, 40)).astype(dtype)
    B = rng.integers(-1000, 1000, (40, 33)).astype(dtype)
    got = gf.Session(graph=g, opt_level=2).run([y, z], {a: A, b: B})
    np.testing.assert_array_equal(got[0], A @ B)
    np.testing.assert_array_equal(got[1], np.maximum(A @ B, 0) + (A @ B) // 3)


def test_matmul_reads_the_current_value_of_a_transposed_variable():
    rng = np.random.default_rng(6)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(gf.float32, shape=(None, 64))
        v = gf.Variable(np.zeros((48, 64), np.float32))
        new = gf.placeholder(gf.float32, shape=(48, 64))
        y = gf.nn.relu(gf.matmul(a, v, transpose_b=True) + 1.0)
        set_v, halve_v = v.assign(new), v.assign(v * 0.5 + 1.0)
    A = rng.standard_normal((130, 64)).astype(np.float32)
    with gf.Session(graph=g, opt_level=2) as s:
        s.run(v.initializer)
        for i in range(6):
            if i % 2:
                s.run(set_v, {new: rng.standard_normal((48, 64)).astype(np.float32)})
            else:
                s.run(halve_v.op)
            np.testing.assert_allclose(s.run(y, {a: A}), np.maximum(A @ s.run(v).T + 1, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gradients_of_a_matmul_chain_match_finite_differences(ta, tb):
    rng = np.random.default_rng(7)
    for m, k, n, p in [(3, 4, 5, 2), (17, 33, 16, 7), (1, 31, 1, 3)]:
        g = gf.Graph()
        with g.as_default():
            a = gf.placeholder(gf.float64, shape=(k, m) if ta else (m, k))
            b = gf.placeholder(gf.float64, shape=(n, k) if tb else (k, n))
            c = gf.placeholder(gf.float64, shape=(n, p))
            h = gf.tanh(gf.matmul(a, b, transpose_a=ta, transpose_b=tb) + 0.3)
            loss = gf.reduce_sum(gf.sin(gf.matmul(h, c))) + gf.reduce_sum(gf.square(h))
            grads = gf.gradients(loss, [a, b, c])
        vals = [rng.standard_normal(t.shape) * 0.5 for t in (a, b, c)]
        with gf.Session(graph=g, opt_level=2, num_threads=2) as s, gf.Session(graph=g, opt_level=0) as s0:
            got = s.run(grads, dict(zip((a, b, c), vals)))
            ref = s0.run(grads, dict(zip((a, b, c), vals)))
            for i, x in enumerate(vals):
                np.testing.assert_allclose(got[i], ref[i], rtol=1e-10, atol=1e-11)
                for _ in range(3):
                    idx = tuple(rng.integers(0, d) for d in x.shape)
                    sides = []
                    for e in (1e-6, -1e-6):
                        moved = [v.copy() for v in vals]
                        moved[i][idx] += e
                        sides.append(s.run(loss, dict(zip((a, b, c), moved))))
                    fd = (sides[0] - sides[1]) / 2e-6
                    assert abs(fd - got[i][idx]) <= 1e-6 * max(1.0, abs(fd))


# ---- row kernels ----

SPECIAL = [-np.inf, np.inf, np.nan, 1e30, -1e30, 0.0, 88.0, -88.0, 700.0, -700.0]


def _special_rows(rng, rows, cols, dtype):
    x = (rng.standard_normal((rows, cols)) * rng.choice([1, 10, 100])).astype(dtype)
    for r in range(rows):
        kind = rng.integers(8)
        if kind == 0:
            x[r] = rng.choice(SPECIAL)                       # all equal, maybe non-finite
        elif kind == 1:
            x[r, rng.integers(cols)] = rng.choice(SPECIAL)
        elif kind == 2:
            x[r] = 3.0
        elif kind == 3:
            x[r, 0], x[r, -1] = rng.choice(SPECIAL, size=2)  # the first and last element of a row
    return x


def _row_graph(dtype, cols):
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, cols), name="x")
        labels = gf.placeholder(gf.int32, shape=(None,), name="labels")
        sm = gf.nn.softmax(x)
        lsm = gf.nn.log_softmax(x)
        mean, var = gf.nn.moments(x, axes=[1])
        outs = {
            "softmax": sm, "log_softmax": lsm, "mix": sm * 2.0 + lsm,
            "layer_norm": (x - gf.expand_dims(mean, 1)) * gf.rsqrt(gf.expand_dims(var, 1) + 1e-5),
            "sparse_ce": gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x),
            "logsumexp": gf.reduce_logsumexp(x, axis=1), "max_prob": gf.reduce_max(sm, axis=1),
            "min_max": (x - gf.reduce_min(x, axis=1, keepdims=True)) / (gf.reduce_max(x, axis=1, keepdims=True) + 1.0),
        }
    return g, x, labels, outs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [1, 2, 3, 7, 16, 17, 100, 5000])
def test_row_kernels_on_special_rows_match_reference_at_any_thread_count(dtype, cols):
    rng = np.random.default_rng(cols)
    g, x, labels, outs = _row_graph(dtype, cols)
    s0 = gf.Session(graph=g, opt_level=0)
    sessions = [gf.Session(graph=g, opt_level=2, num_threads=t) for t in (1, 2, 3)]
    for rows in (0, 1, 2, 3, 17, 257):
        xv = _special_rows(rng, rows, cols, dtype)
        feed = {x: xv, labels: rng.integers(0, cols, size=rows).astype(np.int32)}
        ref = s0.run(outs, feed)
        got = [s.run(outs, feed) for s in sessions]
        for key in outs:
            for g_t in got[1:]:
                np.testing.assert_array_equal(got[0][key], g_t[key], err_msg=key)
            if key == "layer_norm" and xv.size and not (np.isfinite(xv).all() and np.abs(xv).max() < 1e20):
                continue   # x - mean of a huge constant row is rounding noise: its order is not fixed
            _close(ref[key], got[0][key], TOL[dtype] * 50)


@pytest.mark.parametrize("layout", ["F", "T_view", "reversed", "strided"])
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 1), (2, 1), (3, 17), (17, 3), (2, 2049), (301, 9)])
def test_row_kernels_on_non_contiguous_feeds(layout, shape):
    rng = np.random.default_rng(8)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, shape=(None, None))
        scale = gf.placeholder(gf.float32, shape=(None, 1))
        outs = [gf.nn.softmax(x), gf.nn.log_softmax(x), gf.nn.softmax(x * scale + 1.0), gf.nn.softmax(x, axis=0),
                gf.reduce_logsumexp(x, axis=-1), gf.nn.softmax(gf.nn.softmax(x) * 3.0)]
    xv = rng.standard_normal(shape).astype(np.float32) * 3
    if xv.size:
        xv.reshape(-1)[rng.integers(0, xv.size, 3)] = [np.nan, np.inf, -np.inf]
    feed = {x: _layout(xv, layout), scale: rng.standard_normal(shape[:1] + (1,)).astype(np.float32)}
    ref = gf.Session(graph=g, opt_level=0).run(outs, feed)
    for t in (1, 3):
        for r, o in zip(ref, gf.Session(graph=g, opt_level=2, num_threads=t).run(outs, feed)):
            _close(r, o, 1e-5)


EXP_PATTERNS = {   # exp of arguments that look like x - rowmax but may be positive
    "neg_diff": lambda x, y: gf.exp(-(x - gf.reduce_max(x, axis=1, keepdims=True))),
    "scaled_neg": lambda x, y: gf.exp((x - gf.reduce_max(x, axis=1, keepdims=True)) * -2.0),
    "max_minus_x": lambda x, y: gf.exp(gf.reduce_max(x, axis=1, keepdims=True) - x),
    "x_minus_min": lambda x, y: gf.exp(x - gf.reduce_min(x, axis=1, keepdims=True)),
    "plus_const": lambda x, y: gf.exp(x - gf.reduce_max(x, axis=1, keepdims=True) + 100.0),
    "other_tensor": lambda x, y: gf.exp(y - gf.reduce_max(x, axis=1, keepdims=True)),
    "doubled": lambda x, y: gf.exp(x * 2.0 - gf.reduce_max(x, axis=1, keepdims=True)),
    "max_of_neg": lambda x, y: gf.exp(x - gf.reduce_max(-x, axis=1, keepdims=True)),
    "abs_minus_max": lambda x, y: gf.exp(gf.abs(x) - gf.reduce_max(x, axis=1, keepdims=True)),
    "minus_mean": lambda x, y: gf.exp(x - gf.reduce_mean(x, axis=1, keepdims=True)),
    "column_max": lambda x, y: gf.exp(x - gf.reduce_max(x, axis=0, keepdims=True)),
    "expm1": lambda x, y: gf.expm1(-(x - gf.reduce_max(x, axis=1, keepdims=True))),
    "softmax": lambda x, y: gf.nn.softmax(x) + gf.exp(-gf.nn.log_softmax(x) * 0.01),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pattern", sorted(EXP_PATTERNS))
def test_exp_of_row_max_differences_overflows_like_the_reference(dtype, pattern):
    rng = np.random.default_rng(9)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, None))
        y = gf.placeholder(dtype, shape=(None, None))
        out = EXP_PATTERNS[pattern](x, y)
    s0, s2 = gf.Session(graph=g, opt_level=0), gf.Session(graph=g, opt_level=2, num_threads=2)
    for rows, cols in [(3, 5), (17, 40), (5, 1000), (1, 1), (64, 3)]:
        for scale in (1, 50, 500, 1e30):
            feed = {x: (rng.standard_normal((rows, cols)) * scale).astype(dtype),
                    y: (rng.standard_normal((rows, cols)) * scale).astype(dtype)}
            with np.errstate(all="ignore"):
                ref = s0.run(out, feed)
            _close(ref, s2.run(out, feed), 1e-4, scale=0)


@pytest.mark.parametrize("shape", [(200000, 8), (30000, 33), (8, 200000), (1 << 20, 1)])
def test_reductions_split_over_threads_give_the_same_bits(shape):
    rng = np.random.default_rng(10)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, shape=(None, None))
        outs = {"sum0": gf.reduce_sum(x * 1.5, axis=0), "mean0": gf.reduce_mean(gf.exp(x * 0.1), axis=0),
                "sum_all": gf.reduce_sum(gf.tanh(x)), "var0": gf.nn.moments(x * 2.0, axes=[0])[1],
                "sum1": gf.reduce_sum(x * 1.5, axis=1), "centered": x - gf.reduce_mean(x * 1.0, axis=0, keepdims=True)}
    xv = rng.standard_normal(shape).astype(np.float32)
    runs = [gf.Session(graph=g, num_threads=t).run(outs, {x: xv}) for t in (1, 2, 3, 4)]
    for r in runs[1:]:
        for key in outs:
            np.testing.assert_array_equal(runs[0][key], r[key], err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_kernels_with_strided_per_row_and_per_column_operands(dtype):
    """The max-ahead reads the next row's own per-row operand: with strides, reversed and broadcast."""
    rng = np.random.default_rng(11)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, None))
        r = gf.placeholder(dtype, shape=(None, 1))
        c = gf.placeholder(dtype, shape=(None,))
        outs = [gf.nn.softmax(x * r + c), gf.nn.log_softmax(x + r) * c,
                gf.exp(x * r - gf.reduce_max(x * r, axis=1, keepdims=True)),
                gf.reduce_max(x - r, axis=1) + gf.reduce_min(x + c, axis=1)]
    s0 = gf.Session(graph=g, opt_level=0)
    sessions = [gf.Session(graph=g, opt_level=2, num_threads=t) for t in (1, 3)]
    for rows, cols in [(1, 5), (2, 17), (3, 33), (17, 100), (300, 64)]:
        xv = rng.standard_normal((rows, cols)).astype(dtype) * 4
        wide_r, wide_c = rng.standard_normal((rows, 5)).astype(dtype), rng.standard_normal((3, cols)).astype(dtype)
        for rv, cv in [(wide_r[:, 2:3], wide_c[1]), (wide_r[::-1, 4:5], wide_c[2, ::-1]),
                       (np.broadcast_to(wide_r[:1, :1], (rows, 1)), np.broadcast_to(wide_c[0, :1], (cols,)))]:
            ref = s0.run(outs, {x: xv, r: rv, c: cv})
            for s in sessions:
                for want, got in zip(ref, s.run(outs, {x: xv, r: rv, c: cv})):
                    _close(want, got, 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_feeding_the_max_inside_softmax_keeps_exp_overflow(dtype):
    """Any tensor may be fed: a fed row max below the true one makes exp's argument positive."""
    rng = np.random.default_rng(12)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, 40))
        labels = gf.placeholder(gf.int32, shape=(None,))
        mx = gf.reduce_max(x, axis=1, keepdims=True)
        outs = [gf.exp(x - mx), gf.nn.softmax(x), gf.nn.log_softmax(x),
                gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x), gf.reduce_logsumexp(x, axis=1)]
    maxes = [op.outputs[0] for op in g.get_operations() if op.type == "Max"]
    assert len(maxes) >= 2
    big = 100.0 if dtype == np.float32 else 750.0
    xv = (rng.standard_normal((5, 40)) * 3).astype(dtype)
    for m in maxes:
        feed = {x: xv, labels: rng.integers(0, 40, 5).astype(np.int32),
                m: np.full(tuple(5 if d is None else d for d in m.shape), -big, dtype)}
        with np.errstate(all="ignore"):
            ref = gf.Session(graph=g, opt_level=0).run(outs, feed)
        for want, got in zip(ref, gf.Session(graph=g, opt_level=2).run(outs, feed)):
            np.testing.assert_array_equal(np.isinf(want), np.isinf(got))
            _close(want, got, 1e-5, scale=0)


def _guarded(shape, dtype, where, keep):
    """An array whose bytes end right before (or start right after) a page that may not be read."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    pages = -(-nbytes // mmap.PAGESIZE) + 2
    m = mmap.mmap(-1, pages * mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    keep.append(m)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    guard = base + (pages - 1) * mmap.PAGESIZE if where == "end" else base
    assert libc.mprotect(guard, mmap.PAGESIZE, 0) == 0
    offset = (pages - 1) * mmap.PAGESIZE - nbytes if where == "end" else mmap.PAGESIZE
    return np.frombuffer(m, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect guard pages: Linux only")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["end", "start"])
def test_kernels_never_read_outside_their_operands(dtype, where):
    """Operands placed against an unreadable page (an np.load(mmap_mode=...) file can end at one):
    the row-ahead loads, masked column edges, clamped row edges and packs stay inside them."""
    rng = np.random.default_rng(13)
    keep = []

    def operand(shape):
        a = _guarded(shape, dtype, where, keep)
        a[...] = rng.standard_normal(shape)
        return a

    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, None))
        w = gf.placeholder(dtype, shape=(None, None))
        r = gf.placeholder(dtype, shape=(None, 1))
        rows = [gf.nn.softmax(x), gf.nn.log_softmax(x * r), gf.reduce_max(x, axis=1) - gf.reduce_min(x, axis=1),
                gf.reduce_sum(x, axis=0), gf.tanh(x) * 2.0]
        products = {"plain": gf.nn.relu(gf.matmul(x, w) + 1.0), "tb": gf.matmul(x, w, transpose_b=True) * 2.0,
                    "ta": gf.matmul(x, w, transpose_a=True) + 1.0, "lone": gf.matmul(x, w)}
    for threads in (1, 2):
        with gf.Session(graph=g, opt_level=2, num_threads=threads) as s:
            for shape in [(1, 1), (1, 17), (3, 17), (17, 3), (5, 1000), (257, 64), (2, 4096)]:
                xv, rv = operand(shape), operand((shape[0], 1))
                for o in rows:
                    s.run(o, {x: xv, r: rv})
            for m, n, k in [(1, 17, 33), (1, 64, 64), (2, 16, 16), (7, 33, 17), (100, 31, 257), (9, 8, 16), (1, 1000, 16)]:
                for form, o in products.items():
                    a = operand((k, m) if form == "ta" else (m, k))
                    b = operand((n, k) if form == "tb" else (k, n))
                    got = s.run(o, {x: a, w: b})
                    want = gf.Session(graph=g, opt_level=0).run(o, {x: a, w: b})
                    _close(want, got, TOL[dtype], scale=np.sqrt(k))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_tile_edges_against_float64_numpy(dtype):
    """Rows around the register tile and the 128-row L2 block, columns around vector multiples,
    K around the 1024 K block."""
    rng = np.random.default_rng(14)
    for ta, tb in ((False, False), (True, True), (False, True)):
        g = gf.Graph()
        with g.as_default():
            a = gf.placeholder(dtype, shape=(None, None))
            b = gf.placeholder(dtype, shape=(None, None))
            y = gf.matmul(a, b, transpose_a=ta, transpose_b=tb)
            z = y * 0.5 + 1.0
        with gf.Session(graph=g, opt_level=2, num_threads=2) as s:
            for m in list(range(1, 18)) + [127, 128, 129, 257]:
                for n in (15, 16, 17, 47, 48, 49, 97):
                    k = (16, 17, 1024, 1025, 2049)[(m * 7 + n) % 5]
                    av = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                    bv = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                    want = (av.T if ta else av).astype(np.float64) @ (bv.T if tb else bv).astype(np.float64)
                    got_y, got_z = s.run([y, z], {a: av, b: bv})
                    tol = (1e-3 if dtype == np.float32 else 1e-10) * np.sqrt(k)
                    np.testing.assert_allclose(got_y, want, rtol=tol, atol=tol)
                    np.testing.assert_allclose(got_z, want * 0.5 + 1.0, rtol=tol, atol=tol)


ACTIVATIONS = {"relu": gf.nn.relu, "tanh": gf.tanh, "sigmoid": gf.sigmoid, "gelu": gf.nn.gelu, "elu": gf.nn.elu,
               "softplus": gf.nn.softplus, "leaky_relu": gf.nn.leaky_relu, "selu": gf.nn.selu, "relu6": gf.nn.relu6,
               "identity": lambda t: t}


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(12))
def test_random_network_losses_and_gradients_agree_across_opt_levels_and_threads(trial):
    """Random MLPs (transposed weights, biases, residuals, row normalizations, three losses):
    the loss and every gradient at opt 2 (1 and 2 threads) against opt 0; 1 and 2 threads bitwise."""
    rng = np.random.default_rng(1000 + trial)
    dtype = (np.float32, np.float64)[trial % 2]
    dims = [int(rng.choice([1, 3, 7, 16, 17, 33, 64])) for _ in range(int(rng.integers(2, 5)))]
    classes, batch = int(rng.choice([1, 2, 5, 17])), int(rng.choice([1, 2, 3, 17, 64, 130]))
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, dims[0]))
        labels = gf.placeholder(gf.int32, shape=(None,))
        h, params = x, []
        for d_in, d_out in zip(dims, dims[1:]):
            if rng.integers(2):
                w = gf.Variable((rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)).astype(dtype))
                z = gf.matmul(h, w, transpose_b=True)
            else:
                w = gf.Variable((rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(dtype))
                z = gf.matmul(h, w)
            params.append(w)
            if rng.integers(2):
                params.append(gf.Variable(np.full(d_out, 0.1, dtype)))
                z = z + params[-1]
            out = ACTIVATIONS[rng.choice(sorted(ACTIVATIONS))](z)
            if d_in == d_out and rng.integers(3) == 0:
                out = out + h
            if rng.integers(4) == 0:
                mean, var = gf.nn.moments(out, axes=[1], keepdims=True)
                out = (out - mean) * gf.rsqrt(var + 1e-3)
            h = out
        params.append(gf.Variable((rng.standard_normal((dims[-1], classes)) * 0.3).astype(dtype)))
        logits = gf.matmul(h, params[-1])
        loss = [lambda: gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)),
                lambda: gf.reduce_mean(gf.square(gf.nn.softmax(logits) - 0.5)),
                lambda: -gf.reduce_sum(gf.nn.log_softmax(logits)[:, 0])][int(rng.integers(3))]()
        fetches = [loss] + [t for t in gf.gradients(loss, params) if t is not None]
        init = gf.global_variables_initializer()
    feed = {x: rng.standard_normal((batch, dims[0])).astype(dtype),
            labels: rng.integers(0, classes, batch).astype(np.int32)}
    results = []
    for opt_level, threads in ((0, 1), (2, 1), (2, 2)):
        with gf.Session(graph=g, opt_level=opt_level, num_threads=threads) as s:
            s.run(init)
            results.append(s.run(fetches, feed))
    tol = 2e-4 if dtype == np.float32 else 1e-9
    for got in results[1:]:
        for want, value in zip(results[0], got):
            np.testing.assert_allclose(value, want, rtol=tol, atol=tol)
    for one, two in zip(results[1], results[2]):
        np.testing.assert_array_equal(one, two)
