"""Outside view of /work/shared/API.md: every name called exactly as written, expectations from TF1/Keras/numpy.

These tests are written from the contract and from what a tf.compat.v1 / Keras 3 / numpy user expects,
not from graphflow's implementation, so a failure here is either a bug or a reading of API.md to discuss.
"""
import collections
import csv
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import graphflow as gf

LEVELS = (0, 1, 2)


def run_all_levels(fetches, feed_dict=None, graph=None):
    """Run fetches at opt_level 0, 1 and 2 (fresh session each, variables initialized) and check they agree."""
    results = []
    for level in LEVELS:
        with gf.Session(graph=graph, opt_level=level) as sess:
            if gf.global_variables() if graph is None else graph.get_collection("variables"):
                sess.run(gf.global_variables_initializer())
            results.append(sess.run(fetches, feed_dict))
    for other in results[1:]:
        _assert_nested_close(results[0], other)
    return results[0]


def _assert_nested_close(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_nested_close(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_nested_close(x, y)
    elif a is None:
        assert b is None
    else:
        np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                                   rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# 1. Graphs, tensors, operations
# ----------------------------------------------------------------------------------------------

def test_readme_example_graph_builds_and_runs():
    g = gf.Graph()
    with g.as_default():
        assert gf.get_default_graph() is g
        x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
        w = gf.Variable(gf.random.normal((4, 3), seed=0), name="w")
        b = gf.Variable(gf.zeros((3,)), name="b")
        y = gf.nn.softmax(gf.matmul(x, w) + b)
        with gf.name_scope("loss"):
            loss = gf.reduce_mean(gf.square(y - 1.0))
    assert gf.get_default_graph() is not g
    assert x.name == "x:0" and x.graph is g and y.graph is g
    assert loss.op.name == "loss/Mean"
    assert x.shape == (None, 4) and y.shape == (None, 3) and loss.shape == ()
    data = np.random.RandomState(0).rand(5, 4).astype(np.float32)
    for level in LEVELS:
        with gf.Session(graph=g, opt_level=level, num_threads=None) as sess:
            with g.as_default():
                init = gf.global_variables_initializer()
            sess.run(init)
            out = sess.run(y, feed_dict={x: data})
            assert out.shape == (5, 3) and out.dtype == np.float32
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
            out2, l = sess.run([y, loss], {x: data})
            np.testing.assert_allclose(l, np.mean(np.square(out2 - 1.0)), rtol=1e-5)
            d = sess.run({"probs": y, "loss": loss}, {"x:0": data})
            assert set(d) == {"probs", "loss"}
            f = sess.make_callable([y, loss], feed_list=[x])
            y_val, l_val = f(data)
            np.testing.assert_allclose(y_val, out, rtol=1e-5)


def test_reset_default_graph():
    g0 = gf.get_default_graph()
    gf.constant(1.0)
    gf.reset_default_graph()
    g1 = gf.get_default_graph()
    assert g1 is not g0 and g1.get_operations() == []


def test_dtypes_are_numpy_dtypes():
    for name in ("float32", "float64", "int32", "int64", "bool"):
        assert getattr(gf, name) == np.dtype(name)
    assert gf.constant([1, 2], dtype=np.int64).dtype == gf.int64
    assert gf.placeholder(np.float64, shape=()).dtype == gf.float64
    assert gf.zeros((2,), dtype="int32").dtype == gf.int32
    assert gf.cast(gf.constant([1.5]), np.int32).dtype == gf.int32


def test_tensor_names_and_default_op_names():
    a = gf.constant(1.0)
    b = gf.constant(2.0)
    assert a.name == "Const:0" and b.name == "Const_1:0"
    s1 = a + b
    s2 = gf.add(a, b)
    assert s1.op.name == "add" and s1.name == "add:0"
    assert s2.op.name == "add_1"
    with gf.name_scope("loss"):
        m = gf.reduce_mean(s1)
        c = gf.constant(3.0, name="c")
    assert m.op.name == "loss/Mean" and c.name == "loss/c:0"
    assert isinstance(a, gf.Tensor) and isinstance(a.op, gf.Operation)
    assert a.op.type == "Const"
    assert s1.op.inputs[0] is a and s1.op.inputs[1] is b
    assert list(s1.op.outputs) == [s1]
    assert a.dtype == gf.float32 and a.shape == ()
    g = gf.get_default_graph()
    assert g.get_operation_by_name("add") is s1.op
    assert g.get_tensor_by_name("add:0") is s1
    assert g.get_tensor_by_name("loss/Mean:0") is m
    assert [op.name for op in g.get_operations()][:3] == ["Const", "Const_1", "add"]
    assert a.op.graph is g and a.graph is g
    # a user-chosen name that is taken gets uniquified
    p1 = gf.placeholder(gf.float32, name="p")
    p2 = gf.placeholder(gf.float32, name="p")
    assert p1.name == "p:0" and p2.name == "p_1:0"


def test_unknown_lookups_raise():
    g = gf.get_default_graph()
    with pytest.raises((KeyError, LookupError, ValueError)):
        g.get_operation_by_name("nope")
    with pytest.raises((KeyError, LookupError, ValueError)):
        g.get_tensor_by_name("nope:0")


def test_nested_name_scopes():
    with gf.name_scope("a"):
        with gf.name_scope("b"):
            t = gf.add(gf.constant(1.0), 2.0)
    assert t.op.name == "a/b/add"


def test_eq_is_identity_and_hashable():
    a = gf.constant([1.0, 2.0])
    b = gf.constant([1.0, 2.0])
    assert (a == a) is True
    assert (a == b) is False
    assert (a != b) is True
    d = {a: 1, b: 2}
    assert d[a] == 1 and d[b] == 2
    assert a in [a] and b not in {a}


def test_operators_and_reversed_operators():
    xv = np.array([[1.5, -2.0, 3.0], [4.0, 5.5, -6.0]], np.float32)
    x = gf.constant(xv)
    y = gf.constant(np.array([2.0, 3.0, 4.0], np.float32))
    iv = np.array([7, -7, 9], np.int32)
    i = gf.constant(iv)
    m = gf.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
    fetches = {
        "add": x + y, "sub": x - y, "mul": x * y, "div": x / y, "floordiv": x // y, "mod": x % y,
        "pow": gf.abs(x) ** 2.0, "matmul": x @ m, "neg": -x, "abs": abs(x),
        "radd": 1.0 + x, "rsub": 1.0 - x, "rmul": 2 * x, "rdiv": 1.0 / y, "rfloordiv": 7.0 // y,
        "rmod": 7.0 % y, "rpow": 2.0 ** y,
        "ifloordiv": i // 2, "imod": i % 4, "ipow": i ** 2, "ipow_t": gf.pow(i, gf.constant([0, 1, 3])),
        "lt": x < y, "le": x <= 3.0, "gt": x > y, "ge": x >= 1.5,
        "rlt": 2.0 < x,
    }
    out = run_all_levels(fetches)
    np.testing.assert_allclose(out["add"], xv + [2, 3, 4])
    np.testing.assert_allclose(out["sub"], xv - [2, 3, 4])
    np.testing.assert_allclose(out["mul"], xv * [2, 3, 4])
    np.testing.assert_allclose(out["div"], xv / np.float32([2, 3, 4]), rtol=1e-6)
    np.testing.assert_allclose(out["floordiv"], xv // np.float32([2, 3, 4]))
    np.testing.assert_allclose(out["mod"], np.mod(xv, np.float32([2, 3, 4])), rtol=1e-6)
    np.testing.assert_allclose(out["pow"], np.abs(xv) ** 2, rtol=1e-6)
    np.testing.assert_allclose(out["matmul"], xv @ np.arange(6, dtype=np.float32).reshape(3, 2), rtol=1e-6)
    np.testing.assert_allclose(out["neg"], -xv)
    np.testing.assert_allclose(out["abs"], np.abs(xv))
    np.testing.assert_allclose(out["radd"], 1 + xv)
    np.testing.assert_allclose(out["rsub"], 1 - xv)
    np.testing.assert_allclose(out["rmul"], 2 * xv)
    np.testing.assert_allclose(out["rdiv"], 1 / np.float32([2, 3, 4]), rtol=1e-6)
    np.testing.assert_allclose(out["rfloordiv"], 7.0 // np.float32([2, 3, 4]))
    np.testing.assert_allclose(out["rmod"], 7.0 % np.float32([2, 3, 4]), rtol=1e-6)
    np.testing.assert_allclose(out["rpow"], 2.0 ** np.float32([2, 3, 4]), rtol=1e-6)
    # integer floor division and modulo follow Python/numpy (floor) semantics, as tf.math.floordiv/floormod
    np.testing.assert_array_equal(out["ifloordiv"], iv // 2)
    np.testing.assert_array_equal(out["imod"], iv % 4)
    np.testing.assert_array_equal(out["ipow"], iv ** 2)                # tf.pow works on integers too
    np.testing.assert_array_equal(out["ipow_t"], iv ** np.array([0, 1, 3]))
    assert out["ipow"].dtype == np.int32
    for k, ref in (("lt", xv < [2, 3, 4]), ("le", xv <= 3.0), ("gt", xv > [2, 3, 4]), ("ge", xv >= 1.5),
                   ("rlt", 2.0 < xv)):
        assert out[k].dtype == np.bool_, k
        np.testing.assert_array_equal(out[k], ref)
    assert (x < y).dtype == gf.bool
    assert (i // 2).dtype == gf.int32 and (i % 4).dtype == gf.int32


def test_numpy_array_on_the_left():
    x = gf.constant(np.array([1.0, 2.0], np.float32))
    arr = np.array([10.0, 20.0], np.float32)
    for expr, ref in ((lambda: arr + x, [11, 22]), (lambda: arr - x, [9, 18]), (lambda: arr * x, [10, 40]),
                      (lambda: arr / x, [10, 10])):
        t = expr()
        assert isinstance(t, gf.Tensor), type(t)
        with gf.Session() as sess:
            np.testing.assert_allclose(sess.run(t), ref)
    m = np.eye(2, dtype=np.float32)
    t = m @ gf.reshape(x, (2, 1))
    assert isinstance(t, gf.Tensor)
    with gf.Session() as sess:
        np.testing.assert_allclose(sess.run(t), [[1], [2]])


def test_python_scalars_take_tensor_dtype():
    i = gf.constant([1, 2], dtype=gf.int32)
    assert (i + 1).dtype == gf.int32
    assert (2 * i).dtype == gf.int32
    d = gf.constant([1.0], dtype=gf.float64)
    assert (d + 1.5).dtype == gf.float64
    assert (d * 2).dtype == gf.float64
    f = gf.constant([1.0])
    assert (f + 1).dtype == gf.float32
    assert (1 - f).dtype == gf.float32
    assert gf.maximum(f, 0).dtype == gf.float32
    assert gf.where(f > 0, f, 0.0).dtype == gf.float32


def test_mixed_dtypes_raise_type_error_naming_both():
    f = gf.constant([1.0], dtype=gf.float32)
    d = gf.constant([1.0], dtype=gf.float64)
    i = gf.constant([1], dtype=gf.int32)
    for a, b in ((f, d), (f, i), (i, d)):
        with pytest.raises(TypeError) as e:
            a + b
        msg = str(e.value)
        assert str(a.dtype) in msg and str(b.dtype) in msg
    with pytest.raises(TypeError):
        gf.matmul(gf.ones((2, 2)), gf.ones((2, 2), dtype=gf.float64))
    with pytest.raises(TypeError):
        gf.add(f, i)
    # gf.cast is the way out
    assert (gf.cast(i, gf.float32) + f).dtype == gf.float32


def test_shape_errors_at_build_time_name_op_and_shapes():
    a = gf.ones((2, 3))
    b = gf.ones((4, 5))
    with pytest.raises(ValueError) as e:
        gf.add(a, b, name="my_add")
    msg = str(e.value)
    assert "my_add" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    with pytest.raises(ValueError) as e:
        gf.matmul(a, b, name="mm")
    msg = str(e.value)
    assert "mm" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    with pytest.raises(ValueError):
        gf.reshape(a, (4, 2))
    with pytest.raises(ValueError):
        gf.concat([a, b], axis=0)
    p = gf.placeholder(gf.float32, shape=(None, 3))
    with pytest.raises(ValueError):
        p @ gf.ones((4, 2))


def test_broadcasting_numpy_rules():
    a = np.arange(6, dtype=np.float32).reshape(2, 1, 3)
    b = np.arange(4, dtype=np.float32).reshape(4, 1)
    t = gf.constant(a) * gf.constant(b)
    assert t.shape == (2, 4, 3)
    np.testing.assert_allclose(run_all_levels(t), a * b)
    p = gf.placeholder(gf.float32, shape=(None, 1))
    q = p + gf.constant(np.ones((1, 5), np.float32))
    assert q.shape == (None, 5)


def test_slicing():
    v = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    x = gf.constant(v)
    cases = {
        "int": (x[1], v[1]),
        "neg_int": (x[-1], v[-1]),
        "slice": (x[:, 1:], v[:, 1:]),
        "step": (x[:, ::2, 1::2], v[:, ::2, 1::2]),
        "neg_step": (x[::-1, :, ::-2], v[::-1, :, ::-2]),
        "neg_bounds": (x[:, -2:, :-1], v[:, -2:, :-1]),
        "ellipsis": (x[..., 0], v[..., 0]),
        "ellipsis_mid": (x[0, ..., 1:3], v[0, ..., 1:3]),
        "newaxis": (x[None, 0, :, None], v[None, 0, :, None]),
        "mixed": (x[1, ::-1, None, -1], v[1, ::-1, None, -1]),
        "scalar": (x[1, 2, 3, 4], v[1, 2, 3, 4]),
        "clipped": (x[:, 1:100], v[:, 1:100]),
    }
    for name, (t, ref) in cases.items():
        assert t.shape == ref.shape, name
    out = run_all_levels({k: t for k, (t, _) in cases.items()})
    for name, (_, ref) in cases.items():
        np.testing.assert_array_equal(out[name], ref, err_msg=name)
    p = gf.placeholder(gf.float32, shape=(None, 4))
    assert p[:, 1:3].shape == (None, 2)
    assert p[0].shape == (4,)


def test_slicing_gradient():
    v = gf.Variable(np.arange(6, dtype=np.float32))
    (g,) = gf.gradients(gf.reduce_sum(v[1::2] * 3.0), [v])
    np.testing.assert_allclose(run_all_levels(g), [0, 3, 0, 3, 0, 3])


def test_finalize():
    g = gf.Graph()
    with g.as_default():
        gf.constant(1.0)
    g.finalize()
    with pytest.raises(RuntimeError):
        with g.as_default():
            gf.constant(2.0)


# ----------------------------------------------------------------------------------------------
# 2. Ops
# ----------------------------------------------------------------------------------------------

def test_create_ops():
    c = gf.constant([[1, 2], [3, 4]])
    assert c.dtype == gf.int32 and c.shape == (2, 2)
    assert gf.constant([1.0, 2.0]).dtype == gf.float32          # python floats -> float32 as in TF
    assert gf.constant(np.float64(1.0)).dtype in (gf.float32, gf.float64)
    assert gf.constant(True).dtype == gf.bool
    f = gf.constant(7.0, dtype=gf.float64, shape=(2, 3), name="seven")
    assert f.name == "seven:0" and f.shape == (2, 3) and f.dtype == gf.float64
    base = gf.placeholder(gf.float32, shape=(2, 3))
    fetch = {
        "const": c, "fill_const": f,
        "zeros": gf.zeros((2, 3)), "ones": gf.ones((2,), dtype=gf.int32),
        "zeros_like": gf.zeros_like(base), "ones_like": gf.ones_like(base),
        "fill": gf.fill((2, 2), 5.0), "range": gf.range(5), "range3": gf.range(1, 10, 3),
        "eye": gf.eye(3),
    }
    out = run_all_levels(fetch, {base: np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(out["const"], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(out["fill_const"], np.full((2, 3), 7.0))
    assert out["fill_const"].dtype == np.float64
    assert out["zeros"].dtype == np.float32 and out["zeros"].shape == (2, 3) and not out["zeros"].any()
    assert out["ones"].dtype == np.int32
    np.testing.assert_array_equal(out["ones"], [1, 1])
    assert out["zeros_like"].shape == (2, 3) and out["ones_like"].sum() == 6
    np.testing.assert_array_equal(out["fill"], np.full((2, 2), 5.0))
    np.testing.assert_array_equal(out["range"], np.arange(5))
    np.testing.assert_array_equal(out["range3"], np.arange(1, 10, 3))
    assert out["range"].dtype == np.int32
    np.testing.assert_array_equal(out["eye"], np.eye(3))


def test_random_ops_signatures_and_seeds():
    n = gf.random.normal((2000,), mean=3.0, stddev=0.5, dtype=gf.float64, seed=1)
    u = gf.random.uniform((2000,), minval=-2.0, maxval=-1.0, dtype=gf.float32, seed=2)
    n_pos = gf.random.normal((4, 3), 0.0, 1.0, gf.float32, 7)
    assert n.dtype == gf.float64 and u.dtype == gf.float32 and n_pos.shape == (4, 3)
    assert gf.random.normal((3,)).dtype == gf.float32
    with gf.Session() as sess:
        nv, uv = sess.run([n, u])
        nv2 = sess.run(n)
    assert abs(nv.mean() - 3.0) < 0.1 and abs(nv.std() - 0.5) < 0.1
    assert uv.min() >= -2.0 and uv.max() < -1.0
    assert not np.array_equal(nv, nv2)        # a random op draws fresh values on every run
    with gf.Session() as sess:
        assert np.array_equal(sess.run(n), nv)  # same seed, new session: same sequence (TF1)


def test_set_random_seed_makes_runs_reproducible():
    def draw():
        gf.reset_default_graph()
        gf.set_random_seed(42)
        r = gf.random.uniform((5,))
        with gf.Session() as sess:
            return sess.run(r)
    np.testing.assert_array_equal(draw(), draw())


UNARY = {
    "negative": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
    "sqrt": np.sqrt, "rsqrt": lambda v: 1 / np.sqrt(v), "square": np.square, "reciprocal": np.reciprocal,
    "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "sign": np.sign, "floor": np.floor, "ceil": np.ceil, "round": np.round,
}


def test_unary_math():
    import math
    v = np.array([[0.3, 1.7, 2.5], [0.5, 3.5, 4.2]], np.float32)
    x = gf.constant(v)
    fetch = {k: getattr(gf, k)(x) for k in UNARY}
    fetch["erf"] = gf.erf(x)
    out = run_all_levels(fetch)
    for k, ref in UNARY.items():
        np.testing.assert_allclose(out[k], ref(v), rtol=1e-5, atol=1e-6, err_msg=k)
        assert out[k].dtype == np.float32, k
    np.testing.assert_allclose(out["erf"], np.vectorize(math.erf)(v), rtol=1e-5)
    # tf.round is banker's rounding (half to even), like numpy
    np.testing.assert_array_equal(out["round"], [[0, 2, 2], [0, 4, 4]])


def test_logical_and_predicates():
    v = np.array([1.0, np.nan, np.inf, -2.0], np.float32)
    x = gf.constant(v)
    a = gf.constant([True, False, True, False])
    b = gf.constant([True, True, False, False])
    out = run_all_levels({"isnan": gf.isnan(x), "isfinite": gf.isfinite(x), "not": gf.logical_not(a),
                          "and": gf.logical_and(a, b), "or": gf.logical_or(a, b)})
    np.testing.assert_array_equal(out["isnan"], [False, True, False, False])
    np.testing.assert_array_equal(out["isfinite"], [True, False, False, True])
    np.testing.assert_array_equal(out["not"], [False, True, False, True])
    np.testing.assert_array_equal(out["and"], [True, False, False, False])
    np.testing.assert_array_equal(out["or"], [True, True, True, False])
    assert out["isnan"].dtype == np.bool_


def test_binary_math():
    av = np.array([[5.0, -7.5, 3.0], [1.0, 2.0, -4.0]], np.float32)
    bv = np.array([2.0, 3.0, -1.5], np.float32)
    a, b = gf.constant(av), gf.constant(bv)
    refs = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
            "floordiv": np.floor_divide, "mod": np.mod, "maximum": np.maximum, "minimum": np.minimum,
            "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
            "greater": np.greater, "greater_equal": np.greater_equal}
    fetch = {k: getattr(gf, k)(a, b) for k in refs}
    fetch["pow"] = gf.pow(gf.abs(a), b)
    fetch["scalar_rhs"] = gf.maximum(a, 0.0)
    out = run_all_levels(fetch)
    for k, ref in refs.items():
        np.testing.assert_allclose(out[k], ref(av, bv), rtol=1e-6, err_msg=k)
    np.testing.assert_allclose(out["pow"], np.power(np.abs(av), bv), rtol=1e-5)
    np.testing.assert_allclose(out["scalar_rhs"], np.maximum(av, 0))
    assert out["equal"].dtype == np.bool_
    # integer versions
    iv = np.array([7, -7, 8], np.int32)
    i = gf.constant(iv)
    out = run_all_levels({"fd": gf.floordiv(i, 3), "mod": gf.mod(i, 3), "max": gf.maximum(i, 0)})
    np.testing.assert_array_equal(out["fd"], iv // 3)
    np.testing.assert_array_equal(out["mod"], iv % 3)
    assert out["fd"].dtype == np.int32


def test_where_clip_cast():
    v = np.array([-2.0, -0.5, 0.5, 3.0], np.float32)
    x = gf.constant(v)
    out = run_all_levels({"where": gf.where(x > 0, x, -x), "where_b": gf.where(x > 0, x, gf.zeros((1,))),
                          "clip": gf.clip_by_value(x, -1.0, 1.0), "cast": gf.cast(x, gf.int32),
                          "castb": gf.cast(x, gf.bool), "castf64": gf.cast(gf.constant([1, 2]), gf.float64)})
    np.testing.assert_array_equal(out["where"], np.abs(v))
    np.testing.assert_array_equal(out["where_b"], np.maximum(v, 0))
    np.testing.assert_array_equal(out["clip"], np.clip(v, -1, 1))
    np.testing.assert_array_equal(out["cast"], [-2, 0, 0, 3])   # truncation toward zero as in TF
    assert out["cast"].dtype == np.int32
    np.testing.assert_array_equal(out["castb"], [True, True, True, True])
    assert out["castf64"].dtype == np.float64


REDUCTIONS = {"reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min,
              "reduce_prod": np.prod}


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (-1, 0), [1, 2]])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(axis, keepdims):
    v = np.random.RandomState(3).uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    x = gf.constant(v)
    fetch = {k: getattr(gf, k)(x, axis=axis, keepdims=keepdims) for k in REDUCTIONS}
    fetch["lse"] = gf.reduce_logsumexp(x, axis=axis, keepdims=keepdims)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    for k, t in fetch.items():
        ref_shape = np.sum(v, axis=np_axis, keepdims=keepdims).shape
        assert t.shape == ref_shape, (k, t.shape, ref_shape)
    out = run_all_levels(fetch)
    for k, ref in REDUCTIONS.items():
        np.testing.assert_allclose(out[k], ref(v, axis=np_axis, keepdims=keepdims), rtol=1e-5, err_msg=k)
    lse = np.log(np.sum(np.exp(v.astype(np.float64)), axis=np_axis, keepdims=keepdims))
    np.testing.assert_allclose(out["lse"], lse, rtol=1e-5)
    if axis is None and not keepdims:
        assert np.ndim(out["reduce_sum"]) == 0


def test_reduction_positional_axis_and_defaults():
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = gf.constant(v)
    out = run_all_levels({"s": gf.reduce_sum(x), "s1": gf.reduce_sum(x, 1), "m": gf.reduce_mean(x, 0, True)})
    assert out["s"] == 15.0 and np.ndim(out["s"]) == 0
    np.testing.assert_array_equal(out["s1"], [3, 12])
    np.testing.assert_array_equal(out["m"], [[1.5, 2.5, 3.5]])


def test_argmax_argmin_int64():
    v = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, 9.0]], np.float32)
    x = gf.constant(v)
    amax0, amax1 = gf.argmax(x, 0), gf.argmax(x, axis=1)
    amin = gf.argmin(x, -1)
    assert amax0.dtype == gf.int64 and amin.dtype == gf.int64
    assert amax1.shape == (2,)
    out = run_all_levels([amax0, amax1, amin])
    np.testing.assert_array_equal(out[0], [1, 0, 1])
    np.testing.assert_array_equal(out[1], [1, 2])
    np.testing.assert_array_equal(out[2], [0, 1])
    assert out[0].dtype == np.int64


def test_shape_ops():
    v = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = gf.constant(v)
    cases = {
        "reshape": (gf.reshape(x, (4, -1)), v.reshape(4, -1)),
        "reshape_list": (gf.reshape(x, [-1]), v.reshape(-1)),
        "transpose": (gf.transpose(x), v.transpose()),
        "transpose_perm": (gf.transpose(x, perm=[1, 0, 2]), v.transpose(1, 0, 2)),
        "expand": (gf.expand_dims(x, 1), np.expand_dims(v, 1)),
        "expand_neg": (gf.expand_dims(x, -1), np.expand_dims(v, -1)),
        "squeeze": (gf.squeeze(gf.constant(v[:, :1, None, :])), np.squeeze(v[:, :1, None, :])),
        "squeeze_axis": (gf.squeeze(gf.constant(v[:, :1, :]), axis=1), v[:, 0, :]),
        "concat": (gf.concat([x, x], axis=1), np.concatenate([v, v], axis=1)),
        "concat_neg": (gf.concat([x, x], -1), np.concatenate([v, v], axis=-1)),
        "stack": (gf.stack([x, x]), np.stack([v, v])),
        "stack_axis": (gf.stack([x, x], axis=1), np.stack([v, v], axis=1)),
        "gather": (gf.gather(x, [2, 0, 2], axis=1), v[:, [2, 0, 2]]),
        "gather0": (gf.gather(x, gf.constant([1, 0])), v[[1, 0]]),
        "gather_2d_idx": (gf.gather(x, [[0, 1], [1, 1]]), v[[[0, 1], [1, 1]]]),
        "pad": (gf.pad(x, [[0, 0], [1, 2], [0, 1]]), np.pad(v, [[0, 0], [1, 2], [0, 1]])),
        "tile": (gf.tile(x, [1, 2, 1]), np.tile(v, [1, 2, 1])),
        "broadcast_to": (gf.broadcast_to(gf.constant(v[0, 0]), (3, 4)), np.broadcast_to(v[0, 0], (3, 4))),
        "one_hot": (gf.one_hot(gf.constant([0, 2, 1]), 3), np.eye(3, dtype=np.float32)[[0, 2, 1]]),
    }
    for name, (t, ref) in cases.items():
        assert t.shape == ref.shape, (name, t.shape, ref.shape)
    out = run_all_levels({k: t for k, (t, _) in cases.items()})
    for name, (_, ref) in cases.items():
        np.testing.assert_array_equal(out[name], ref, err_msg=name)
        assert out[name].dtype == ref.dtype, name
    s = gf.shape(x)
    assert s.dtype == gf.int32
    p = gf.placeholder(gf.float32, shape=(None, 3))
    sv = run_all_levels(gf.shape(p), {p: np.zeros((5, 3), np.float32)})
    np.testing.assert_array_equal(sv, [5, 3])
    assert sv.dtype == np.int32
    assert gf.reshape(p, (-1, 3, 1)).shape == (None, 3, 1)


def test_split():
    v = np.arange(24, dtype=np.float32).reshape(4, 6)
    x = gf.constant(v)
    parts = gf.split(x, 3, axis=1)
    assert isinstance(parts, (list, tuple)) and len(parts) == 3 and parts[0].shape == (4, 2)
    sized = gf.split(x, [1, 3], 0)
    assert [p.shape for p in sized] == [(1, 6), (3, 6)]
    sized_neg = gf.split(x, [2, -1], axis=1)
    assert [p.shape for p in sized_neg] == [(4, 2), (4, 4)]
    out = run_all_levels([list(parts), list(sized)])
    for got, ref in zip(out[0], np.split(v, 3, axis=1)):
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(out[1][0], v[:1])
    np.testing.assert_array_equal(out[1][1], v[1:])
    with pytest.raises(ValueError):
        gf.split(x, 4, axis=1)


def test_matmul():
    rs = np.random.RandomState(0)
    a, b = rs.rand(3, 4).astype(np.float32), rs.rand(4, 5).astype(np.float32)
    ba, bb = rs.rand(2, 3, 4).astype(np.float32), rs.rand(2, 4, 5).astype(np.float32)
    fetch = {
        "plain": gf.matmul(a, b),
        "ta": gf.matmul(gf.constant(a.T), b, transpose_a=True),
        "tb": gf.matmul(a, gf.constant(b.T), transpose_b=True),
        "tab": gf.matmul(gf.constant(a.T), gf.constant(b.T), transpose_a=True, transpose_b=True),
        "batched": gf.matmul(ba, bb),
        "batched_bcast": gf.matmul(ba, b),
        "batched_tb": gf.matmul(ba, gf.constant(np.swapaxes(bb, 1, 2)), transpose_b=True),
    }
    assert fetch["batched"].shape == (2, 3, 5)
    out = run_all_levels(fetch)
    for k in ("plain", "ta", "tb", "tab"):
        np.testing.assert_allclose(out[k], a @ b, rtol=1e-5, err_msg=k)
    np.testing.assert_allclose(out["batched"], ba @ bb, rtol=1e-5)
    np.testing.assert_allclose(out["batched_bcast"], ba @ b, rtol=1e-5)
    np.testing.assert_allclose(out["batched_tb"], ba @ bb, rtol=1e-5)
    fd = gf.matmul(gf.constant(a.astype(np.float64)), gf.constant(b.astype(np.float64)))
    assert fd.dtype == gf.float64


# ---- gf.nn ----

def _softmax(v, axis=-1):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_nn_activations():
    import math
    v = np.array([[-3.0, -0.5, 0.0, 0.7, 8.0]], np.float32)
    x = gf.constant(v)
    erf = np.vectorize(math.erf)
    fetch = {"relu": gf.nn.relu(x), "relu6": gf.nn.relu6(x), "leaky": gf.nn.leaky_relu(x),
             "leaky01": gf.nn.leaky_relu(x, alpha=0.1), "elu": gf.nn.elu(x), "selu": gf.nn.selu(x),
             "gelu": gf.nn.gelu(x), "gelu_tanh": gf.nn.gelu(x, approximate=True), "softplus": gf.nn.softplus(x),
             "softmax": gf.nn.softmax(x), "softmax0": gf.nn.softmax(x, axis=0),
             "log_softmax": gf.nn.log_softmax(x), "log_softmax_kw": gf.nn.log_softmax(x, axis=-1)}
    out = run_all_levels(fetch)
    a, s = 1.6732632423543772, 1.0507009873554805
    refs = {"relu": np.maximum(v, 0), "relu6": np.clip(v, 0, 6), "leaky": np.where(v > 0, v, 0.2 * v),
            "leaky01": np.where(v > 0, v, 0.1 * v), "elu": np.where(v > 0, v, np.expm1(v)),
            "selu": s * np.where(v > 0, v, a * np.expm1(v)), "gelu": 0.5 * v * (1 + erf(v / np.sqrt(2))),
            "gelu_tanh": 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3))),
            "softplus": np.log1p(np.exp(v)), "softmax": _softmax(v), "softmax0": _softmax(v, 0),
            "log_softmax": np.log(_softmax(v)), "log_softmax_kw": np.log(_softmax(v))}
    for k, ref in refs.items():
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-6, err_msg=k)


def test_nn_losses_keyword_labels_logits():
    rs = np.random.RandomState(1)
    logits = rs.randn(4, 3).astype(np.float32)
    labels_i = np.array([0, 2, 1, 2], np.int32)
    labels_p = _softmax(rs.randn(4, 3)).astype(np.float32)
    labels_b = (rs.rand(4, 3) > 0.5).astype(np.float32)
    lg = gf.constant(logits)
    sp = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels_i, logits=lg)
    sp64 = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=gf.constant(labels_i.astype(np.int64)), logits=lg)
    dense = gf.nn.softmax_cross_entropy_with_logits(labels=labels_p, logits=lg)
    sig = gf.nn.sigmoid_cross_entropy_with_logits(labels=labels_b, logits=lg)
    l2 = gf.nn.l2_loss(lg)
    assert sp.shape == (4,) and dense.shape == (4,) and sig.shape == (4, 3) and l2.shape == ()
    out = run_all_levels([sp, sp64, dense, sig, l2])
    logsm = np.log(_softmax(logits.astype(np.float64)))
    np.testing.assert_allclose(out[0], -logsm[np.arange(4), labels_i], rtol=1e-5)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6)
    np.testing.assert_allclose(out[2], -(labels_p * logsm).sum(-1), rtol=1e-5)
    ref_sig = np.maximum(logits, 0) - logits * labels_b + np.log1p(np.exp(-np.abs(logits)))
    np.testing.assert_allclose(out[3], ref_sig, rtol=1e-5)
    np.testing.assert_allclose(out[4], 0.5 * np.sum(logits ** 2), rtol=1e-5)
    # gradients of the sparse loss w.r.t. logits: softmax - onehot
    (g,) = gf.gradients(gf.reduce_sum(sp), [lg])
    ref_g = _softmax(logits) - np.eye(3)[labels_i]
    np.testing.assert_allclose(run_all_levels(g), ref_g, rtol=1e-5, atol=1e-6)


def _conv_ref(x, w, stride, padding):
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    sh, sw = stride
    if padding == "SAME":
        oh, ow = -(-h // sh), -(-wd // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - wd, 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    else:
        oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((n, oh, ow, o), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _pool_ref(x, k, s, padding, fn):
    n, h, w, c = x.shape
    if padding == "SAME":
        oh, ow = -(-h // s[0]), -(-w // s[1])
        ph = max((oh - 1) * s[0] + k[0] - h, 0)
        pw = max((ow - 1) * s[1] + k[1] - w, 0)
        top, left = ph // 2, pw // 2
    else:
        oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
        top = left = 0
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - top, j * s[1] - left
            patch = x[:, max(r0, 0):min(r0 + k[0], h), max(c0, 0):min(c0 + k[1], w), :]
            out[:, i, j, :] = fn(patch, axis=(1, 2))   # SAME avg pool excludes padding, as TF
    return out


@pytest.mark.parametrize("strides", [1, 2, (1, 2)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv2d(strides, padding):
    rs = np.random.RandomState(0)
    xv = rs.randn(2, 7, 6, 3).astype(np.float32)
    wv = rs.randn(3, 2, 3, 4).astype(np.float32)
    y = gf.nn.conv2d(gf.constant(xv), gf.constant(wv), strides=strides, padding=padding)
    st = (strides, strides) if isinstance(strides, int) else strides
    ref = _conv_ref(xv, wv, st, padding)
    assert y.shape == ref.shape
    np.testing.assert_allclose(run_all_levels(y), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_default_args_and_grad():
    rs = np.random.RandomState(0)
    xv = rs.randn(1, 5, 5, 2).astype(np.float32)
    w = gf.Variable(rs.randn(3, 3, 2, 2).astype(np.float32))
    y = gf.nn.conv2d(gf.constant(xv), w)      # strides=1, padding="SAME"
    assert y.shape == (1, 5, 5, 2)
    (g,) = gf.gradients(gf.reduce_sum(y), [w])
    assert g.shape == (3, 3, 2, 2)
    gv = run_all_levels(g)
    # d sum(conv)/d w[i,j,c,o] = sum of the input window positions hit by tap (i, j)
    xp = np.pad(xv, [(0, 0), (1, 1), (1, 1), (0, 0)])
    ref = np.stack([np.stack([xp[0, i:i + 5, j:j + 5, :].sum(axis=(0, 1)) for j in range(3)]) for i in range(3)])
    np.testing.assert_allclose(gv, np.repeat(ref[..., None], 2, axis=-1), rtol=1e-4)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_pooling(padding):
    xv = np.random.RandomState(2).randn(2, 5, 7, 3).astype(np.float32)
    x = gf.constant(xv)
    mp = gf.nn.max_pool2d(x, 2, 2, padding)
    ap = gf.nn.avg_pool2d(x, ksize=(3, 3), strides=(2, 1), padding=padding)
    rm = _pool_ref(xv, (2, 2), (2, 2), padding, np.max)
    ra = _pool_ref(xv, (3, 3), (2, 1), padding, np.mean)
    assert mp.shape == rm.shape and ap.shape == ra.shape
    out = run_all_levels([mp, ap])
    np.testing.assert_allclose(out[0], rm, rtol=1e-5)
    np.testing.assert_allclose(out[1], ra, rtol=1e-5, atol=1e-6)


def test_bias_add_batch_norm_moments():
    rs = np.random.RandomState(4)
    xv = rs.randn(4, 3, 5).astype(np.float32)
    bv = rs.randn(5).astype(np.float32)
    x = gf.constant(xv)
    ba = gf.nn.bias_add(x, bv)
    mean, var = gf.nn.moments(x, axes=[0, 1])
    assert mean.shape == (5,) and var.shape == (5,)
    off, sc = rs.randn(5).astype(np.float32), rs.rand(5).astype(np.float32)
    bn = gf.nn.batch_normalization(x, mean, var, off, sc, 1e-3)
    bn_none = gf.nn.batch_normalization(x, mean, var, None, None, 1e-3)
    out = run_all_levels([ba, mean, var, bn, bn_none])
    np.testing.assert_allclose(out[0], xv + bv, rtol=1e-6)
    np.testing.assert_allclose(out[1], xv.mean((0, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[2], xv.var((0, 1)), rtol=1e-5)
    ref = (xv - xv.mean((0, 1))) / np.sqrt(xv.var((0, 1)) + 1e-3) * sc + off
    np.testing.assert_allclose(out[3], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[4], (xv - xv.mean((0, 1))) / np.sqrt(xv.var((0, 1)) + 1e-3), rtol=1e-4,
                               atol=1e-5)


def test_dropout_rate():
    x = gf.ones((200, 100))
    d = gf.nn.dropout(x, rate=0.25, seed=3)
    d_pos = gf.nn.dropout(x, 0.5)
    with gf.Session() as sess:
        v = sess.run(d)
        sess.run(d_pos)
    kept = v != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(v[kept], 1 / 0.75, rtol=1e-6)   # inverted dropout scaling, as tf.nn.dropout
    assert d.shape == (200, 100)


# ---- graph control ----

def test_identity_stop_gradient():
    x = gf.Variable(3.0)
    y = gf.identity(x * 2.0, name="ident")
    assert y.op.name == "ident" and y.op.type == "Identity"
    z = gf.stop_gradient(x * x) + x * x
    gy, gz = gf.gradients([y], [x])[0], gf.gradients(z, [x])[0]
    out = run_all_levels([y, gy, gz])
    assert out[0] == 6.0 and out[1] == 2.0 and out[2] == 6.0


def test_no_op_group_control_dependencies():
    v = gf.Variable(0.0)
    n = gf.no_op()
    assert isinstance(n, gf.Operation)
    inc = v.assign_add(1.0)
    inc2 = v.assign_add(10.0)
    grp = gf.group(inc, inc2)
    assert isinstance(grp, gf.Operation)
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run(n) is None
        assert sess.run(grp) is None
        assert sess.run(v) == 11.0
    gf.reset_default_graph()
    v = gf.Variable(1.0)
    upd = v.assign(5.0)
    with gf.control_dependencies([upd]):
        r = gf.identity(v)
        doubled = v * 2.0
    assert upd.op in r.op.control_inputs or upd in r.op.control_inputs
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            sess.run(gf.global_variables_initializer())
            assert sess.run(r) == 5.0
            sess.run(v.initializer)
            assert sess.run(doubled) == 10.0


def test_cond():
    p = gf.placeholder(gf.bool, shape=())
    x = gf.placeholder(gf.float32, shape=(3,))
    single = gf.cond(p, lambda: x * 2.0, lambda: x - 1.0)
    tup = gf.cond(p, lambda: (x + 1.0, gf.reduce_sum(x)), lambda: (x - 1.0, gf.reduce_max(x)))
    lst = gf.cond(p, lambda: [x], lambda: [-x])
    dct = gf.cond(p, lambda: {"a": x, "b": x * 3.0}, lambda: {"b": -x, "a": x * 0.0})
    assert isinstance(tup, tuple) and len(tup) == 2
    assert isinstance(lst, list) and len(lst) == 1
    xv = np.array([1.0, 2.0, 4.0], np.float32)
    for pv in (True, False):
        out = run_all_levels([single, list(tup), lst, dct], {p: pv, x: xv})
        np.testing.assert_allclose(out[3]["a"], xv if pv else 0 * xv)
        np.testing.assert_allclose(out[3]["b"], 3 * xv if pv else -xv)
        np.testing.assert_allclose(out[0], xv * 2 if pv else xv - 1)
        np.testing.assert_allclose(out[1][0], xv + 1 if pv else xv - 1)
        assert out[1][1] == (7.0 if pv else 4.0)
        np.testing.assert_allclose(out[2][0], xv if pv else -xv)
    (g,) = gf.gradients(gf.reduce_sum(single), [x])
    np.testing.assert_allclose(run_all_levels(g, {p: True, x: xv}), [2, 2, 2])
    np.testing.assert_allclose(run_all_levels(g, {p: False, x: xv}), [1, 1, 1])


def test_cond_runs_only_taken_branch_side_effects():
    v = gf.Variable(0.0)
    p = gf.placeholder(gf.bool, shape=())
    out = gf.cond(p, lambda: v.assign_add(1.0), lambda: v.assign_sub(1.0))
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(out, {p: True})
        sess.run(out, {p: True})
        sess.run(out, {p: False})
        assert sess.run(v) == 1.0


def test_variable_read_inside_control_dependencies_is_differentiable():
    v = gf.Variable(2.0)
    with gf.control_dependencies([gf.no_op()]):
        y = v * v
    (g,) = gf.gradients(y, [v])
    assert run_all_levels(g) == 4.0


# ----------------------------------------------------------------------------------------------
# 3. Variables, gradients, optimizers, checkpoints
# ----------------------------------------------------------------------------------------------

def test_variable_basics():
    w = gf.Variable(np.ones((2, 3), np.float32), name="w")
    c = gf.Variable(5, name="count", trainable=False)
    d = gf.Variable([1, 2], dtype=gf.float64)
    assert w.name == "w:0" and w.shape == (2, 3) and w.dtype == gf.float32
    assert c.dtype == gf.int32 and d.dtype == gf.float64
    assert isinstance(w.initializer, gf.Operation)
    assert gf.global_variables() == [w, c, d]
    assert gf.trainable_variables() == [w, d]
    y = w * 2.0 + 1.0                          # usable as a tensor
    assert y.shape == (2, 3)
    a = w.assign(np.full((2, 3), 3.0, np.float32))
    aa = w.assign_add(np.ones((2, 3), np.float32))
    asub = w.assign_sub(gf.ones((2, 3)))
    ci = c.assign_add(1)
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            sess.run(gf.global_variables_initializer())
            np.testing.assert_array_equal(sess.run(w), np.ones((2, 3)))
            np.testing.assert_array_equal(sess.run(a), np.full((2, 3), 3.0))
            np.testing.assert_array_equal(sess.run(aa), np.full((2, 3), 4.0))
            np.testing.assert_array_equal(sess.run(asub), np.full((2, 3), 3.0))
            np.testing.assert_array_equal(sess.run(y), np.full((2, 3), 7.0))
            assert sess.run(ci) == 6 and sess.run(c) == 6
            sess.run(w.initializer)
            np.testing.assert_array_equal(sess.run(w), np.ones((2, 3)))


def test_variable_initial_value_from_other_variable_and_random():
    a = gf.Variable(gf.random.normal((3,), seed=1))
    b = gf.Variable(a.initial_value * 2.0) if hasattr(a, "initial_value") else gf.Variable(gf.ones((3,)))
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        av, bv = sess.run([a, b])
        np.testing.assert_array_equal(sess.run(a), av)    # a variable keeps its value across runs
    assert b.shape == (3,)


def test_variables_are_per_session():
    v = gf.Variable(1.0)
    inc = v.assign_add(1.0)
    with gf.Session() as s1, gf.Session() as s2:
        s1.run(gf.global_variables_initializer())
        s2.run(gf.global_variables_initializer())
        s1.run(inc)
        s1.run(inc)
        assert s1.run(v) == 3.0 and s2.run(v) == 1.0


def test_gradients_contract():
    x = gf.placeholder(gf.float32, shape=(3,), name="x")
    w = gf.Variable(np.array([1.0, 2.0, 3.0], np.float32))
    u = gf.Variable(1.0)              # unconnected
    y = gf.reduce_sum(w * x * x)
    grads = gf.gradients(y, [x, w, u])
    assert isinstance(grads, list) and len(grads) == 3 and grads[2] is None
    single = gf.gradients(y, w)
    assert isinstance(single, list) and len(single) == 1
    y2 = w * x
    (gw,) = gf.gradients(y2, [w], grad_ys=gf.constant([1.0, 10.0, 100.0]))
    (gw_np,) = gf.gradients([y2], [w], grad_ys=[np.array([2.0, 2.0, 2.0], np.float32)])
    (gsum,) = gf.gradients([y, y], [w])
    xv = np.array([1.0, 2.0, 3.0], np.float32)
    out = run_all_levels([grads[0], grads[1], gw, gw_np, gsum], {x: xv})
    np.testing.assert_allclose(out[0], 2 * np.array([1, 2, 3]) * xv)
    np.testing.assert_allclose(out[1], xv ** 2)
    np.testing.assert_allclose(out[2], xv * [1, 10, 100])
    np.testing.assert_allclose(out[3], 2 * xv)
    np.testing.assert_allclose(out[4], 2 * xv ** 2)
    assert isinstance(grads[0], gf.Tensor)


def test_gradient_of_int_path_is_none():
    x = gf.Variable(1.0)
    y = gf.cast(gf.argmax(gf.stack([x, 2 * x]), 0), gf.float32)
    assert gf.gradients(y, [x]) == [None]


def _quadratic_problem():
    w = gf.Variable(np.array([5.0, -3.0], np.float32), name="w")
    target = gf.constant(np.array([1.0, 2.0], np.float32))
    loss = gf.reduce_sum(gf.square(w - target))
    return w, loss


@pytest.mark.parametrize("make", [
    lambda: gf.train.GradientDescentOptimizer(0.1),
    lambda: gf.train.MomentumOptimizer(0.05, 0.9),
    lambda: gf.train.AdamOptimizer(0.1),
    lambda: gf.train.AdamOptimizer(lr=0.1, beta1=0.8, beta2=0.99, epsilon=1e-7),
    lambda: gf.train.RMSPropOptimizer(0.05),
])
def test_optimizers_minimize(make):
    w, loss = _quadratic_problem()
    opt = make()
    train = opt.minimize(loss)
    assert isinstance(train, (gf.Operation, gf.Tensor))
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            sess.run(gf.global_variables_initializer())
            l0 = sess.run(loss)
            for _ in range(150):
                sess.run(train)
            assert sess.run(loss) < 0.05 * l0, level


def test_gradient_descent_exact_step_and_var_list():
    w, loss = _quadratic_problem()
    frozen = gf.Variable(1.0)
    loss2 = loss + frozen * frozen
    opt = gf.train.GradientDescentOptimizer(0.1)
    gv = opt.compute_gradients(loss2)
    assert all(isinstance(v, gf.Variable) for _, v in gv)
    assert {v for _, v in gv} == {w, frozen}
    train = opt.minimize(loss2, var_list=[w])
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), [5.0 - 0.1 * 8.0, -3.0 - 0.1 * -10.0], rtol=1e-6)
        assert sess.run(frozen) == 1.0


def test_compute_apply_gradients_with_clipping():
    w, loss = _quadratic_problem()
    opt = gf.train.GradientDescentOptimizer(1.0)
    gvs = opt.compute_gradients(loss, var_list=[w])
    clipped = [(gf.clip_by_value(g, -1.0, 1.0), v) for g, v in gvs]
    train = opt.apply_gradients(clipped)
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), [4.0, -2.0])


def test_momentum_exact_two_steps():
    w = gf.Variable(np.float32(1.0))
    loss = 0.5 * w * w                       # grad = w
    train = gf.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train)       # acc = 1, w = 1 - 0.1 = 0.9
        sess.run(train)       # acc = 0.9 + 0.9 = 1.8, w = 0.9 - 0.18 = 0.72
        np.testing.assert_allclose(sess.run(w), 0.72, rtol=1e-6)


def test_adam_first_step_is_lr_times_sign():
    w = gf.Variable(np.array([1.0, -2.0], np.float32))
    train = gf.train.AdamOptimizer(0.01).minimize(gf.reduce_sum(w * w))
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), [0.99, -1.99], rtol=1e-5)


def test_saver_roundtrip_no_pickle(tmp_path):
    w = gf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
    b = gf.Variable(np.int32(7), name="b")
    inc = w.assign_add(gf.ones((2, 3)))
    saver = gf.train.Saver()
    path = str(tmp_path / "model.ckpt")
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(inc)
        saver.save(sess, path)
    with gf.Session() as sess:
        saver.restore(sess, path)            # no initializer needed after restore
        np.testing.assert_array_equal(sess.run(w), np.arange(6).reshape(2, 3) + 1)
        assert sess.run(b) == 7
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for f in files:
        data = f.read_bytes()
        assert b"\x80\x04\x95" not in data[:64] and b"cnumpy" not in data, f   # pickle protocol markers
        if f.suffix == ".npz":
            np.load(f, allow_pickle=False)
    # a Saver over a subset restores only those
    gf.reset_default_graph()
    w2 = gf.Variable(np.zeros((2, 3), np.float32), name="w")
    other = gf.Variable(3.0, name="other")
    s2 = gf.train.Saver(var_list=[w2])
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        s2.restore(sess, path)
        np.testing.assert_array_equal(sess.run(w2), np.arange(6).reshape(2, 3) + 1)
        assert sess.run(other) == 3.0


def test_saver_restore_missing_file(tmp_path):
    gf.Variable(1.0, name="v")
    saver = gf.train.Saver()
    with gf.Session() as sess:
        with pytest.raises(Exception) as e:
            saver.restore(sess, str(tmp_path / "missing.ckpt"))
        assert "missing" in str(e.value)


# ----------------------------------------------------------------------------------------------
# 4. Session and compilation
# ----------------------------------------------------------------------------------------------

Pair = collections.namedtuple("Pair", ["first", "second"])


def test_fetch_structures():
    x = gf.placeholder(gf.float32, shape=(None, 2), name="x")
    v = gf.Variable(np.float32(2.0), name="v")
    y = x * v
    s = gf.reduce_sum(y, name="total")
    noop = gf.no_op()
    xv = np.array([[1.0, 2.0]], np.float32)
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            assert sess.run(gf.global_variables_initializer()) is None
            out = sess.run({"a": [y, (s, "total:0")], "b": Pair(v, noop), "c": {"d": [s]}}, {"x:0": xv})
            assert isinstance(out, dict) and isinstance(out["a"], list) and isinstance(out["a"][1], tuple)
            assert isinstance(out["b"], Pair) and out["b"].second is None
            assert out["b"].first == 2.0
            np.testing.assert_array_equal(out["a"][0], [[2.0, 4.0]])
            assert out["a"][1][0] == 6.0 and out["a"][1][1] == 6.0
            assert out["c"]["d"][0] == 6.0
            total = sess.run(s, {x: xv})
            assert isinstance(total, np.generic) and not isinstance(total, np.ndarray)
            assert total.dtype == np.float32
            assert isinstance(sess.run(y, {x: xv}), np.ndarray)
            assert sess.run(noop) is None
            assert sess.run("v:0") == 2.0
            assert sess.run([]) == []
            tup = sess.run((s,), {x: xv})
            assert isinstance(tup, tuple) and tup[0] == 6.0


def test_only_needed_ops_run_and_any_tensor_feedable():
    x = gf.placeholder(gf.float32, shape=(2,), name="x")
    hidden = gf.multiply(x, 3.0, name="hidden")
    out = hidden + 1.0
    other = gf.placeholder(gf.float32, shape=(), name="unused")
    _ = other * 2.0
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            # no feed for x needed when the intermediate tensor is fed
            np.testing.assert_array_equal(sess.run(out, {hidden: np.array([10.0, 20.0], np.float32)}), [11, 21])
            np.testing.assert_array_equal(sess.run(out, {"hidden:0": [1.0, 2.0]}), [2, 3])
            # the unused placeholder is not needed
            np.testing.assert_array_equal(sess.run(out, {x: [1.0, 2.0]}), [4, 7])
            # feeding a constant overrides it, as in TF1
            c = gf.get_default_graph().get_tensor_by_name(out.op.inputs[1].name)
            np.testing.assert_array_equal(sess.run(out, {x: [1.0, 2.0], c: np.float32(0.0)}), [3, 6])


def test_feed_conversion():
    x = gf.placeholder(gf.float32, shape=(None, 2), name="x")
    i = gf.placeholder(gf.int32, shape=(2,), name="i")
    y = x * 2.0
    with gf.Session() as sess:
        out = sess.run(y, {x: [[1, 2], [3, 4]]})               # list of ints -> float32
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [[2, 4], [6, 8]])
        np.testing.assert_array_equal(sess.run(y, {x: np.array([[1, 2]], np.int64)}), [[2, 4]])
        np.testing.assert_array_equal(sess.run(y, {x: np.array([[1, 2]], np.float64)}), [[2, 4]])
        np.testing.assert_array_equal(sess.run(i * 1, {i: np.array([1, 2], np.int64)}), [1, 2])
        with pytest.raises(TypeError):
            sess.run(i * 1, {i: np.array([1.5, 2.0])})           # float -> int loses the fraction
        with pytest.raises(TypeError):
            sess.run(y, {x: [["a", "b"]]})


def test_feed_errors_name_tensor_expected_got():
    x = gf.placeholder(gf.float32, shape=(None, 3), name="inp")
    y = gf.reduce_sum(x * 2.0)
    with gf.Session() as sess:
        with pytest.raises(gf.errors.InvalidArgumentError) as e:
            sess.run(y, {x: np.zeros((2, 4), np.float32)})
        msg = str(e.value)
        assert "inp" in msg and "3" in msg and "4" in msg
        with pytest.raises(gf.errors.InvalidArgumentError) as e:
            sess.run(y, {x: np.zeros((3,), np.float32)})
        assert "inp" in str(e.value)
        with pytest.raises(gf.errors.InvalidArgumentError) as e:
            sess.run(y)
        assert "inp" in str(e.value)
        assert isinstance(e.value, ValueError)   # InvalidArgumentError is a ValueError (errors.py)
        assert sess.run(y, {x: np.ones((2, 3), np.float32)}) == 12.0   # usable after errors


def test_uninitialized_variable_error_and_no_state_change():
    v = gf.Variable(np.float32(1.0), name="weights")
    u = gf.Variable(np.float32(5.0), name="late")
    x = gf.placeholder(gf.float32, shape=(2,), name="x")
    upd = v.assign_add(gf.reduce_sum(x))
    both = [upd, u + 1.0]
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            with pytest.raises(gf.errors.FailedPreconditionError) as e:
                sess.run(v)
            assert "weights" in str(e.value)
            sess.run(v.initializer)
            with pytest.raises(gf.errors.FailedPreconditionError) as e:
                sess.run(both, {x: [1.0, 2.0]})       # u uninitialized: the assign to v must not stick
            assert "late" in str(e.value)
            assert sess.run(v) == 1.0
            with pytest.raises(gf.errors.InvalidArgumentError):
                sess.run(upd, {x: np.ones((3,), np.float32)})
            assert sess.run(v) == 1.0
            assert sess.run(upd, {x: [1.0, 2.0]}) == 4.0


def test_errors_module_classes():
    assert issubclass(gf.errors.InvalidArgumentError, ValueError)
    assert issubclass(gf.errors.FailedPreconditionError, RuntimeError)


def test_session_threads_concurrent_runs():
    x = gf.placeholder(gf.float32, shape=(None, 8), name="x")
    w = gf.Variable(np.random.RandomState(0).randn(8, 4).astype(np.float32))
    y = gf.nn.relu(gf.matmul(x, w))
    with gf.Session(num_threads=2) as sess:
        sess.run(gf.global_variables_initializer())
        wv = sess.run(w)
        errors, results = [], {}

        def work(k):
            try:
                data = np.full((k + 1, 8), float(k), np.float32)
                for _ in range(20):
                    results[k] = sess.run(y, {x: data})
            except Exception as exc:   # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for k in range(4):
            np.testing.assert_allclose(results[k], np.maximum(np.full((k + 1, 8), float(k)) @ wv, 0), rtol=1e-5)


def test_batch_size_change_does_not_recompile():
    x = gf.placeholder(gf.float32, shape=(None, 16), name="x")
    y = gf.reduce_sum(gf.tanh(x * 2.0 + 1.0), axis=1)
    with gf.Session(opt_level=2) as sess:
        sess.run(y, {x: np.ones((4, 16), np.float32)})
        import time
        t0 = time.perf_counter()
        for n in (1, 7, 33, 128):
            out = sess.run(y, {x: np.ones((n, 16), np.float32)})
            assert out.shape == (n,)
            np.testing.assert_allclose(out, 16 * np.tanh(3.0), rtol=1e-5)
        assert time.perf_counter() - t0 < 2.0


def test_make_callable():
    x = gf.placeholder(gf.float32, shape=(None,), name="x")
    k = gf.placeholder(gf.float32, shape=(), name="k")
    y = x * k
    with gf.Session() as sess:
        f = sess.make_callable([y, gf.reduce_sum(y)], feed_list=[x, k])
        a, s = f(np.array([1.0, 2.0], np.float32), 3.0)
        np.testing.assert_array_equal(a, [3, 6])
        assert s == 9.0
        g = sess.make_callable(y, feed_list=["x:0", "k:0"])
        np.testing.assert_array_equal(g([1.0], 2.0), [2.0])


def test_session_context_and_close():
    c = gf.constant(3.0)
    sess = gf.Session()
    assert sess.run(c) == 3.0
    sess.close()
    with pytest.raises(Exception):
        sess.run(c)
    with gf.Session() as s2:
        assert s2.graph is gf.get_default_graph()


def test_num_threads_and_env_default(monkeypatch):
    x = gf.placeholder(gf.float32, shape=(None, 32))
    y = gf.reduce_sum(gf.exp(x), axis=1)
    data = np.random.RandomState(0).randn(64, 32).astype(np.float32)
    ref = np.exp(data).sum(1)
    for n in (1, 2, None):
        with gf.Session(num_threads=n) as sess:
            np.testing.assert_allclose(sess.run(y, {x: data}), ref, rtol=1e-5)
    monkeypatch.setenv("GRAPHFLOW_NUM_THREADS", "1")
    with gf.Session() as sess:
        np.testing.assert_allclose(sess.run(y, {x: data}), ref, rtol=1e-5)


def test_trace_and_chrome_trace(tmp_path):
    x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
    y = gf.reduce_sum(gf.nn.relu(gf.matmul(x, gf.ones((4, 4)))), name="out")
    path = tmp_path / "trace.json"
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            meta = gf.RunMetadata()
            out = sess.run(y, {x: np.ones((2, 4), np.float32)}, options=gf.RunOptions(trace=True),
                           run_metadata=meta)
            assert out == 32.0
            meta.save_chrome_trace(str(path))
            data = json.loads(path.read_text())
            events = data["traceEvents"] if isinstance(data, dict) else data
            complete = [e for e in events if e.get("ph") in ("X", "B", "E")]
            assert complete, level
            for e in complete:
                assert "ts" in e and "tid" in e and "name" in e
            # run_metadata without options and options without metadata are accepted
            sess.run(y, {x: np.ones((2, 4), np.float32)}, run_metadata=gf.RunMetadata())
            sess.run(y, {x: np.ones((2, 4), np.float32)}, options=gf.RunOptions(trace=True))


def test_compile_inspection():
    x = gf.placeholder(gf.float32, shape=(None, 8), name="x")
    w = gf.Variable(np.ones((8, 4), np.float32), name="w")
    h = gf.nn.relu(gf.matmul(x, w) + 1.0)
    dead = gf.exp(x, name="dead")
    y = gf.reduce_sum(gf.tanh(h) * 2.0, axis=1, name="y")
    del dead
    cg = gf.compile(y, feed_list=[x])
    assert type(cg).__name__ == "CompiledGraph"
    st = cg.stats
    for key in ("ops_before", "ops_after", "kernels", "fused_ops"):
        assert key in st and isinstance(st[key], int), key
    assert st["ops_after"] <= st["ops_before"]
    assert st["fused_ops"] >= 2 and st["kernels"] >= 1
    rep = cg.report()
    assert isinstance(rep, str) and rep.strip()
    assert "dead" in rep                     # what was pruned
    ir = cg.llvm_ir
    assert isinstance(ir, str) and "define" in ir
    dot = cg.to_dot()
    assert isinstance(dot, str) and "digraph" in dot
    cg0 = gf.compile([y], feed_list=(x,), graph=gf.get_default_graph(), opt_level=0)
    assert cg0.stats["fused_ops"] == 0 and cg0.stats["kernels"] == 0 or cg0.stats["fused_ops"] == 0
    cg1 = gf.compile(y, feed_list=[x], opt_level=1)
    assert isinstance(cg1.report(), str)


# ----------------------------------------------------------------------------------------------
# 5. gf.keras
# ----------------------------------------------------------------------------------------------

keras = gf.keras
L = gf.keras.layers


def _classification_data(n=96, d=6, k=3, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.randn(n, d).astype(np.float32)
    w = rs.randn(d, k)
    y = np.argmax(x @ w, axis=1).astype(np.int32)
    return x, y


def test_sequential_with_input_and_input_shape_agree():
    m1 = keras.Sequential([keras.Input(shape=(6,)), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")])
    m2 = keras.Sequential([L.Dense(8, activation="relu", input_shape=(6,)), L.Dense(3, activation="softmax")])
    w = m1.get_weights()
    assert [a.shape for a in w] == [(6, 8), (8,), (8, 3), (3,)]      # Keras order: kernel, bias per layer
    assert [a.shape for a in m2.get_weights()] == [(6, 8), (8,), (8, 3), (3,)]
    m2.set_weights(w)
    x, _ = _classification_data()
    p1, p2 = m1.predict(x, verbose=0), m2.predict(x)
    assert p1.shape == (96, 3)
    np.testing.assert_allclose(p1, p2, rtol=1e-5)
    k0, b0, k1, b1 = w
    ref = _softmax(np.maximum(x @ k0 + b0, 0) @ k1 + b1)
    np.testing.assert_allclose(p1, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b0, 0)                  # Keras: zero bias, glorot_uniform kernel
    limit = np.sqrt(6 / (6 + 8))
    assert np.abs(k0).max() <= limit + 1e-6 and k0.std() > 0.1 * limit
    assert isinstance(m1.graph, gf.Graph)


def test_fit_history_evaluate_predict():
    x, y = _classification_data()
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(16, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=32, epochs=3, validation_split=0.25, shuffle=True, verbose=0)
    assert isinstance(hist, keras.callbacks.History)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in hist.history.values())
    assert all(isinstance(v, float) for v in hist.history["loss"])
    res = model.evaluate(x, y, verbose=0)
    assert isinstance(res, list) and len(res) == 2
    probs = model.predict(x, batch_size=7, verbose=0)
    ref_loss = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)))
    ref_acc = np.mean(np.argmax(probs, 1) == y)
    np.testing.assert_allclose(res[0], ref_loss, rtol=1e-4)
    np.testing.assert_allclose(res[1], ref_acc, rtol=1e-6)
    # validation_data given explicitly
    h2 = model.fit(x, y, epochs=1, validation_data=(x[:10], y[:10]), verbose=0)
    assert "val_loss" in h2.history and len(h2.history["val_loss"]) == 1
    # evaluate with no metrics is a scalar
    m2 = keras.Sequential([keras.Input(shape=(6,)), L.Dense(1)])
    m2.compile(optimizer="sgd", loss="mse")
    r = m2.evaluate(x, y.astype(np.float32), verbose=0)
    assert np.ndim(r) == 0
    assert np.isfinite(float(r))


def test_training_reduces_loss():
    x, y = _classification_data(n=128)
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(32, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.85


def test_sgd_step_matches_numpy():
    rs = np.random.RandomState(5)
    x = rs.randn(8, 3).astype(np.float32)
    y = rs.randn(8, 1).astype(np.float32)
    model = keras.Sequential([keras.Input(shape=(3,)), L.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    k, b = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    err = x @ k + b - y
    gk = 2 * x.T @ err / 8
    gb = 2 * err.sum(0) / 8
    k1, b1 = model.get_weights()
    np.testing.assert_allclose(k1, k - 0.1 * gk, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b1, b - 0.1 * gb, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss,act,make_y", [
    ("categorical_crossentropy", "softmax", lambda rs: np.eye(3, dtype=np.float32)[rs.randint(0, 3, 20)]),
    ("binary_crossentropy", "sigmoid", lambda rs: (rs.rand(20, 3) > 0.5).astype(np.float32)),
    ("mse", "linear", lambda rs: rs.randn(20, 3).astype(np.float32)),
    ("mae", "tanh", lambda rs: rs.randn(20, 3).astype(np.float32)),
])
def test_loss_names_match_keras_formulas(loss, act, make_y):
    rs = np.random.RandomState(0)
    x = rs.randn(20, 4).astype(np.float32)
    y = make_y(rs)
    model = keras.Sequential([keras.Input(shape=(4,)), L.Dense(3, activation=act)])
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"] if "crossentropy" in loss else None)
    res = model.evaluate(x, y, verbose=0)
    p = model.predict(x, verbose=0).astype(np.float64)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    ref = {"categorical_crossentropy": lambda: -np.mean(np.sum(y * np.log(pc), -1)),
           "binary_crossentropy": lambda: -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)),
           "mse": lambda: np.mean((p - y) ** 2), "mae": lambda: np.mean(np.abs(p - y))}[loss]()
    got = res[0] if isinstance(res, (list, tuple)) else res
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    if loss == "categorical_crossentropy":
        np.testing.assert_allclose(res[1], np.mean(p.argmax(1) == y.argmax(1)))
    if loss == "binary_crossentropy":
        np.testing.assert_allclose(res[1], np.mean((p > 0.5) == (y > 0.5)), rtol=1e-6)


def test_compile_with_objects():
    x, y = _classification_data(n=32)
    for opt in (keras.optimizers.SGD(learning_rate=0.05, momentum=0.9), keras.optimizers.SGD(0.01),
                keras.optimizers.Adam(), keras.optimizers.RMSprop(learning_rate=0.001)):
        model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy()])
        h = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        assert len(h.history["loss"]) == 2 and len(h.history) == 2
        assert all(np.isfinite(h.history["loss"]))


def test_functional_model_with_merge_layers():
    inp = keras.Input(shape=(8,))
    a = L.Dense(4, activation="tanh")(inp)
    b = L.Dense(4, activation="gelu")(inp)
    s = L.Add()([a, b])
    c = L.Concatenate()([s, a])
    out = L.Dense(2, activation="softmax")(L.Activation("relu")(c))
    model = keras.Model(inp, out)
    model2 = keras.Model(inputs=inp, outputs=out)
    assert len(model2.get_weights()) == 6
    x = np.random.RandomState(0).randn(5, 8).astype(np.float32)
    ka, ba, kb, bb, kc, bc = model.get_weights()
    import math
    erf = np.vectorize(math.erf)
    av = np.tanh(x @ ka + ba)
    z = x @ kb + bb
    bv = 0.5 * z * (1 + erf(z / np.sqrt(2)))
    cv = np.concatenate([av + bv, av], -1)
    ref = _softmax(np.maximum(cv, 0) @ kc + bc)
    np.testing.assert_allclose(model.predict(x, verbose=0), ref, rtol=1e-4, atol=1e-6)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 0, 1, 1]), epochs=1, verbose=0)


def test_subclassed_model():
    class MLP(keras.Model):
        def __init__(self):
            super().__init__()
            self.d1 = L.Dense(8, activation="relu")
            self.d2 = L.Dense(1)

        def call(self, x):
            return self.d2(self.d1(x))

    rs = np.random.RandomState(0)
    x = rs.randn(64, 3).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    model = MLP()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    h = model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    w = model.get_weights()
    assert [a.shape for a in w] == [(3, 8), (8,), (8, 1), (1,)]
    k0, b0, k1, b1 = w
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x @ k0 + b0, 0) @ k1 + b1,
                               rtol=1e-4, atol=1e-5)


def test_conv_pool_layers_weights_and_forward():
    rs = np.random.RandomState(0)
    x = rs.randn(2, 8, 8, 3).astype(np.float32)
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 3)),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(5, (3, 3), strides=1, padding="valid"),
        L.AveragePooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dense(2),
    ])
    w = model.get_weights()
    assert [a.shape for a in w] == [(3, 3, 3, 4), (4,), (3, 3, 4, 5), (5,), (5, 2), (2,)]
    out = model.predict(x, verbose=0)
    assert out.shape == (2, 2)
    h = np.maximum(_conv_ref(x, w[0], (1, 1), "SAME") + w[1], 0)
    h = _pool_ref(h, (2, 2), (2, 2), "VALID", np.max)
    h = _conv_ref(h, w[2], (1, 1), "VALID") + w[3]
    h = _pool_ref(h, (2, 2), (2, 2), "VALID", np.mean)
    ref = h.reshape(2, -1) @ w[4] + w[5]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_gap_reshape_dropout_layers():
    x = np.random.RandomState(1).randn(3, 4, 4, 2).astype(np.float32)
    model = keras.Sequential([keras.Input(shape=(4, 4, 2)), L.GlobalAveragePooling2D(), L.Reshape((1, 2)),
                              L.Dropout(0.5), L.Flatten()])
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out, x.mean(axis=(1, 2)), rtol=1e-5)   # Dropout is inactive in predict
    assert model.get_weights() == []


def test_batchnorm_layernorm_embedding_weights():
    model = keras.Sequential([keras.Input(shape=(5,), dtype="int32"), L.Embedding(10, 4), L.LayerNormalization(),
                              L.Flatten(), L.BatchNormalization(), L.Dense(1, activation="sigmoid")])
    shapes = [a.shape for a in model.get_weights()]
    # Embedding; LayerNorm gamma, beta; BatchNorm gamma, beta, moving_mean, moving_variance; Dense
    assert shapes == [(10, 4), (4,), (4,), (20,), (20,), (20,), (20,), (20, 1), (1,)]
    bn = model.get_weights()
    np.testing.assert_allclose(bn[3], 1)
    np.testing.assert_allclose(bn[4], 0)
    np.testing.assert_allclose(bn[5], 0)
    np.testing.assert_allclose(bn[6], 1)
    rs = np.random.RandomState(0)
    ids = rs.randint(0, 10, (40, 5)).astype(np.int32)
    yb = (ids.sum(1) > 22).astype(np.float32)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(ids, yb, epochs=2, batch_size=8, verbose=0)
    after = model.get_weights()
    assert not np.allclose(after[5], 0)           # moving mean updated by training
    # inference uses the moving statistics
    emb, g_ln, b_ln, gam, bet, mm, mv, k, b = after
    e = emb[ids]
    mu, var = e.mean(-1, keepdims=True), e.var(-1, keepdims=True)
    ln = (e - mu) / np.sqrt(var + 1e-3) * g_ln + b_ln
    f = ln.reshape(40, -1)
    bnv = (f - mm) / np.sqrt(mv + 1e-3) * gam + bet
    ref = 1 / (1 + np.exp(-(bnv @ k + b)))
    np.testing.assert_allclose(model.predict(ids, verbose=0), ref, rtol=1e-3, atol=1e-5)


def test_activation_names():
    x = np.linspace(-2, 2, 10, dtype=np.float32).reshape(2, 5)
    import math
    erf = np.vectorize(math.erf)
    refs = {"relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
            "softmax": _softmax, "gelu": lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))), "linear": lambda v: v}
    for name, ref in refs.items():
        model = keras.Sequential([keras.Input(shape=(5,)), L.Activation(name)])
        np.testing.assert_allclose(model.predict(x, verbose=0), ref(x), rtol=1e-4, atol=1e-6, err_msg=name)


def test_summary_prints(capsys):
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(8, activation="relu"), L.Dense(3)])
    model.summary()
    out = capsys.readouterr().out
    assert "Dense" in out or "dense" in out
    assert "83" in out                     # 6*8+8 + 8*3+3 = 83 total params
    assert "Total params" in out


def test_save_and_load_model(tmp_path):
    x, y = _classification_data(n=32)
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(8, activation="relu"), L.Dropout(0.2),
                              L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
    loaded.fit(x, y, epochs=1, verbose=0)                  # compiled state restored
    res = loaded.evaluate(x, y, verbose=0)
    assert len(res) == 2
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert b"cnumpy" not in f.read_bytes()
    # weights only
    wpath = str(tmp_path / "m.weights.h5")
    model.save_weights(wpath)
    fresh = keras.Sequential([keras.Input(shape=(6,)), L.Dense(8, activation="relu"), L.Dropout(0.2),
                              L.Dense(3, activation="softmax")])
    fresh.load_weights(wpath)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(Exception):
        keras.models.load_model(str(tmp_path / "nothing.keras"))


def test_set_weights_validates_shapes():
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3)])
    with pytest.raises(ValueError):
        model.set_weights([np.zeros((3, 6), np.float32), np.zeros(3, np.float32)])
    with pytest.raises(ValueError):
        model.set_weights([np.zeros((6, 3), np.float32)])


def test_callbacks_hooks_early_stopping_checkpoint_csv(tmp_path):
    x, y = _classification_data(n=32)
    calls = []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("epoch_begin", epoch))

        def on_train_batch_begin(self, batch, logs=None):
            calls.append(("batch_begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("batch_end", batch))
            assert "loss" in logs

        def on_epoch_end(self, epoch, logs=None):
            calls.append(("epoch_end", epoch))
            assert "loss" in logs and "accuracy" in logs
            assert self.model is model

        def on_train_end(self, logs=None):
            calls.append("train_end")

    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[Recorder()])
    assert calls[0] == "train_begin" and calls[-1] == "train_end"
    assert calls[1:6] == [("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 0), ("batch_begin", 1),
                          ("batch_end", 1)]
    assert ("epoch_end", 1) in calls

    # EarlyStopping on a loss that cannot improve (learning rate 0)
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    h = model.fit(x, y, epochs=20, verbose=0,
                  callbacks=[keras.callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=1e-3)])
    assert len(h.history["loss"]) == 3

    # ModelCheckpoint + CSVLogger
    ckpt = str(tmp_path / "best.keras")
    log = str(tmp_path / "log.csv")
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
              callbacks=[keras.callbacks.ModelCheckpoint(ckpt, monitor="val_loss", save_best_only=True),
                         keras.callbacks.CSVLogger(log)])
    assert os.path.exists(ckpt)
    keras.models.load_model(ckpt)
    with open(log) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and rows[0]["epoch"] == "0"
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    wckpt = str(tmp_path / "w.weights.h5")
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(wckpt, save_weights_only=True)])
    assert os.path.exists(wckpt)


def test_verbose_progress_bar(capsys):
    x, y = _classification_data(n=32)
    model = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "loss" in out and "accuracy" in out
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------------------------
# 6. Command line
# ----------------------------------------------------------------------------------------------

def _cli(*args, cwd=None):
    """Run the `graphflow` command (the console script when installed, else the module)."""
    import shutil
    exe = shutil.which("graphflow")
    cmd = [exe] if exe else [sys.executable, "-m", "graphflow.cli"]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(gf.__file__))))
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


KERAS_SCRIPT = """
import graphflow as gf
model = gf.keras.Sequential([gf.keras.Input(shape=(16,)), gf.keras.layers.Dense(8, activation="relu"),
                             gf.keras.layers.Dense(3, activation="softmax")])
"""

TENSOR_SCRIPT = """
import graphflow as gf
x = gf.placeholder(gf.float32, shape=(None, 8), name="x")
h = gf.nn.relu(gf.matmul(x, gf.ones((8, 8))) + 1.0)
y = gf.reduce_sum(gf.tanh(h) * 2.0, axis=1, name="y")
inputs = [x]
outputs = y
"""

FETCH_SCRIPT = """
import graphflow as gf
x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
z = gf.exp(x * 2.0, name="z")
"""


def test_cli_compile_keras_model_text_and_outputs(tmp_path):
    script = tmp_path / "model.py"
    script.write_text(KERAS_SCRIPT)
    outdir = tmp_path / "out"
    r = _cli("compile", str(script), "--output-dir", str(outdir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    files = [p.name for p in outdir.rglob("*") if p.is_file()]
    assert any(n.endswith(".json") for n in files)
    assert any(n.endswith(".ll") for n in files)
    assert any(n.endswith(".dot") for n in files)
    for p in outdir.rglob("*.json"):
        json.loads(p.read_text())


def test_cli_compile_outputs_json_and_opt_level(tmp_path):
    script = tmp_path / "tensors.py"
    script.write_text(TENSOR_SCRIPT)
    r = _cli("compile", str(script), "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert isinstance(data, dict)
    text = json.dumps(data)
    assert "ops_before" in text and "ops_after" in text
    r0 = _cli("compile", str(script), "--opt-level", "0")
    assert r0.returncode == 0, r0.stderr
    r2 = _cli("compile", str(script))
    text = r2.stdout.lower()
    for word in ("before", "after", "kernel", "compile time", "tanh"):
        assert word in text, word
    r1 = _cli("compile", str(script), "--opt-level", "1", "--format", "text")
    assert r1.returncode == 0, r1.stderr


def test_cli_compile_fetch_names(tmp_path):
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_SCRIPT)
    r = _cli("compile", str(script), "--fetch", "z:0")
    assert r.returncode == 0, r.stderr
    r = _cli("compile", str(script), "--fetch", "z")
    assert r.returncode == 0, r.stderr
    r = _cli("compile", str(script), "--fetch", "nope:0")
    assert r.returncode == 2
    assert "nope" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [None, "raise RuntimeError('boom in script')\n", "import graphflow\nq = 1\n",
                                     "def broken(:\n"])
def test_cli_bad_input_exit_2_one_line(tmp_path, content):
    script = tmp_path / "bad.py"
    if content is not None:
        script.write_text(content)
    r = _cli("compile", str(script))
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert err and len(err.splitlines()) == 1, err
    assert "Traceback" not in r.stderr
    if content and "boom" in content:
        assert "boom in script" in err
    rd = _cli("compile", str(script), "--debug")
    assert rd.returncode != 0
    if content and "boom" in content:
        assert "Traceback" in rd.stderr


def test_cli_bench(tmp_path):
    script = tmp_path / "tensors.py"
    script.write_text(TENSOR_SCRIPT)
    r = _cli("bench", str(script), "--batch", "4", "--repeat", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout.lower()
    assert "speedup" in out and "median" in out and "opt" in out
    r = _cli("bench", str(tmp_path / "missing.py"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


# ---- every differentiable op of section 2 has a correct gradient (central differences, float64) ----

_grad_rs = np.random.RandomState(0)


def pos(*s):
    return _grad_rs.uniform(0.5, 2.0, s)


def real(*s):
    return _grad_rs.randn(*s)


GRAD_CASES = {
 "negative": (lambda x: gf.negative(x), real(3,4)),
 "abs": (gf.abs, real(3,4)), "exp": (gf.exp, real(3,4)), "log": (gf.log, pos(3,4)),
 "log1p": (gf.log1p, pos(3,4)), "expm1": (gf.expm1, real(3,4)), "sqrt": (gf.sqrt, pos(3,4)),
 "rsqrt": (gf.rsqrt, pos(3,4)), "square": (gf.square, real(3,4)), "reciprocal": (gf.reciprocal, pos(3,4)),
 "sin": (gf.sin, real(3,4)), "cos": (gf.cos, real(3,4)), "tanh": (gf.tanh, real(3,4)), "sigmoid": (gf.sigmoid, real(3,4)),
 "erf": (gf.erf, real(3,4)),
 "add": (lambda x: gf.add(x, x[0]), real(3,4)), "sub": (lambda x: gf.subtract(x[0], x), real(3,4)),
 "mul": (lambda x: gf.multiply(x, x[:, :1]), real(3,4)), "div": (lambda x: gf.divide(x[0], x), pos(3,4)),
 "mod": (lambda x: gf.mod(x, 0.7), pos(3,4)),
 "pow": (lambda x: gf.pow(x, x[::-1]), pos(3,4)), "maximum": (lambda x: gf.maximum(x, x[::-1]*0.5), real(3,4)),
 "minimum": (lambda x: gf.minimum(x, 0.1), real(3,4)),
 "where": (lambda x: gf.where(x > 0, x * 2.0, gf.sin(x)), real(3,4)),
 "clip": (lambda x: gf.clip_by_value(x, -0.5, 0.5), real(3,4)),
 "sum": (lambda x: gf.reduce_sum(x, axis=1, keepdims=True) * x, real(3,4)),
 "mean": (lambda x: gf.reduce_mean(x, axis=(0,)) , real(3,4)),
 "max": (lambda x: gf.reduce_max(x, axis=-1), real(3,4)), "min": (lambda x: gf.reduce_min(x, axis=0), real(3,4)),
 "prod": (lambda x: gf.reduce_prod(x, axis=1), pos(3,4)), "lse": (lambda x: gf.reduce_logsumexp(x, axis=1), real(3,4)),
 "reshape": (lambda x: gf.reshape(x, (2, -1)) * gf.constant(np.arange(6.0)), real(3,4)),
 "transpose": (lambda x: gf.transpose(x) * gf.constant(np.arange(3.0)), real(3,4)),
 "expand_squeeze": (lambda x: gf.squeeze(gf.expand_dims(x, 1)) * x, real(3,4)),
 "concat": (lambda x: gf.concat([x, x * x], 1), real(3,4)), "stack": (lambda x: gf.stack([x, x * x], 1), real(3,4)),
 "split": (lambda x: gf.split(x, [1, 3], 1)[1] * 3.0 + gf.split(x, 2, 1)[0][:, :1], real(3,4)),
 "gather": (lambda x: gf.gather(x, [2, 0, 2], axis=1), real(3,4)),
 "pad": (lambda x: gf.pad(x * x, [[1, 0], [0, 2]]), real(3,4)),
 "tile": (lambda x: gf.tile(x, [2, 1]) * gf.constant(np.arange(6.0)[:, None]), real(3,4)),
 "broadcast_to": (lambda x: gf.broadcast_to(x[:1], (3, 4)) * x, real(3,4)),
 "slice": (lambda x: x[::-1, 1::2] * x[:, :2], real(3,4)),
 "matmul": (lambda x: gf.matmul(x, x, transpose_b=True), real(3,4)),
 "matmul_ta": (lambda x: gf.matmul(x, x, transpose_a=True), real(3,4)),
 "bmm": (lambda x: gf.matmul(gf.reshape(x, (2, 3, 2)), gf.reshape(x, (2, 2, 3))), real(3,4)),
 "relu": (gf.nn.relu, real(3,4)), "relu6": (lambda x: gf.nn.relu6(x * 4.0), real(3,4)), "leaky": (gf.nn.leaky_relu, real(3,4)),
 "elu": (gf.nn.elu, real(3,4)), "selu": (gf.nn.selu, real(3,4)), "gelu": (gf.nn.gelu, real(3,4)),
 "gelu_t": (lambda x: gf.nn.gelu(x, approximate=True), real(3,4)), "softplus": (gf.nn.softplus, real(3,4)),
 "softmax": (lambda x: gf.nn.softmax(x) * gf.constant(np.arange(4.0)), real(3,4)),
 "softmax0": (lambda x: gf.nn.softmax(x, axis=0) * gf.constant(np.arange(4.0)), real(3,4)),
 "log_softmax": (lambda x: gf.nn.log_softmax(x) * gf.constant(np.arange(4.0)), real(3,4)),
 "sparse_xent": (lambda x: gf.nn.sparse_softmax_cross_entropy_with_logits(labels=[0, 3, 1], logits=x), real(3,4)),
 "xent": (lambda x: gf.nn.softmax_cross_entropy_with_logits(labels=gf.nn.softmax(x[::-1]), logits=x), real(3,4)),
 "sig_xent": (lambda x: gf.nn.sigmoid_cross_entropy_with_logits(labels=gf.sigmoid(x[::-1]), logits=x), real(3,4)),
 "l2": (gf.nn.l2_loss, real(3,4)),
 "bias_add": (lambda x: gf.nn.bias_add(x * x, x[0]), real(3,4)),
 "moments": (lambda x: gf.nn.moments(x, axes=[0])[1] + gf.nn.moments(x, axes=[0])[0] ** 2, real(3,4)),
 "bn": (lambda x: gf.nn.batch_normalization(x, gf.reduce_mean(x, 0), gf.nn.moments(x, [0])[1], x[0], x[1], 1e-3), real(3,4)),
 "conv": (lambda x: gf.nn.conv2d(gf.reshape(x, (1, 3, 4, 1)), gf.reshape(x[:2, :2], (2, 2, 1, 1)), strides=1, padding="SAME"), real(3,4)),
 "conv_s2": (lambda x: gf.nn.conv2d(gf.reshape(x, (1, 3, 4, 1)), gf.reshape(x[:2, :2], (2, 2, 1, 1)), strides=2, padding="VALID"), real(3,4)),
 "maxpool": (lambda x: gf.nn.max_pool2d(gf.reshape(x, (1, 3, 4, 1)), 2, 1, "SAME"), real(3,4)),
 "avgpool": (lambda x: gf.nn.avg_pool2d(gf.reshape(x, (1, 3, 4, 1)), 2, 2, "SAME"), real(3,4)),
 "cond": (lambda x: gf.cond(gf.reduce_sum(x) > 100.0, lambda: x * 2.0, lambda: gf.sin(x)), real(3,4)),
 "identity": (lambda x: gf.identity(x) * x, real(3,4)),
 "floor": (lambda x: gf.floor(x) + x, real(3,4)),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradient_matches_finite_differences(name):
    fn, xv = GRAD_CASES[name]
    x = gf.placeholder(gf.float64, shape=xv.shape)
    y = fn(x)
    w = gf.constant(np.asarray(np.random.RandomState(1).randn(*y.shape), np.float64))
    loss = gf.reduce_sum(y * w)
    (g,) = gf.gradients(loss, [x])
    for level in (0, 2):
        with gf.Session(opt_level=level) as sess:
            gv = sess.run(g, {x: xv})
            num = np.zeros_like(xv)
            eps = 1e-6
            for idx in np.ndindex(xv.shape):
                a, b = xv.copy(), xv.copy()
                a[idx] += eps
                b[idx] -= eps
                num[idx] = (sess.run(loss, {x: a}) - sess.run(loss, {x: b})) / (2 * eps)
        np.testing.assert_allclose(gv, num, rtol=1e-5, atol=1e-5 * (1 + np.abs(num).max()), err_msg=f"level {level}")


def test_compile_report_names_pruned_folded_merged_fused_and_unfused_reasons():
    x = gf.placeholder(gf.float32, shape=(None, 8), name="x")
    c = gf.constant(2.0, name="two") * gf.constant(3.0, name="three")
    a1, a2 = gf.exp(x, name="e1"), gf.exp(x, name="e2")
    w = gf.Variable(np.ones((8, 4), np.float32), name="w")
    h = gf.matmul(a1 + a2 * c, w, name="mm")
    y = gf.reduce_sum(gf.nn.relu(h), axis=1, name="y")
    z = gf.argmax(h, 1, name="am")
    gf.sin(x, name="dead")
    cg = gf.compile([y, z], feed_list=[x])
    rep = cg.report().lower()
    for word in ("pruned", "folded", "merged", "fused", "dead", "e2", "am"):
        assert word in rep, word
    assert cg.stats["ops_after"] < cg.stats["ops_before"]
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        yv, zv = sess.run([y, z], {x: np.ones((2, 8), np.float32)})
    np.testing.assert_allclose(yv, 4 * 8 * 7 * np.e, rtol=1e-5)
    assert zv.dtype == np.int64


def test_session_feed_fetch_edge_cases():
    x = gf.placeholder(gf.float32, shape=(None,), name="x")
    v = gf.Variable(np.array([1.0, 2.0], np.float32), name="v")
    y = x * 2.0
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            sess.run(gf.global_variables_initializer())
            a, b, c = sess.run([y, y, x], {x: [1, 2]})                # duplicates and the fed tensor itself
            np.testing.assert_array_equal(a, [2, 4])
            np.testing.assert_array_equal(b, [2, 4])
            np.testing.assert_array_equal(c, [1, 2])
            assert sess.run(gf.reduce_sum(y), {x: np.zeros((0,), np.float32)}) == 0.0   # empty batch
            np.testing.assert_array_equal(sess.run(v * 1.0, {"v:0": [5.0, 6.0]}), [5, 6])   # feed a variable
            np.testing.assert_array_equal(sess.run(v), [1, 2])                            # ... only for that run
            r = sess.run(v)
            r[0] = 99.0                                       # results never alias session state or feeds
            np.testing.assert_array_equal(sess.run(v), [1, 2])
            feed = np.array([1.0, 2.0], np.float32)
            out = sess.run(gf.identity(x), {x: feed})
            out[0] = 50.0
            assert feed[0] == 1.0
            with pytest.raises((KeyError, LookupError, ValueError)):
                sess.run("nope:0")
            with pytest.raises((KeyError, LookupError, ValueError)):
                sess.run(y, {"nope:0": [1.0]})
            with pytest.raises(TypeError):
                sess.run(42)


def test_operation_fetch_by_name_and_train_op_gives_none():
    w = gf.Variable(1.0)
    gf.no_op(name="nop")
    train = gf.train.GradientDescentOptimizer(0.1).minimize(w * w)
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run("nop") is None
        assert sess.run(train) is None
        np.testing.assert_allclose(sess.run(w), 0.8, rtol=1e-6)


def test_tensor_is_not_a_python_bool():
    t = gf.constant(1.0)
    with pytest.raises(TypeError):
        bool(t)
    with pytest.raises(TypeError):
        if t > 0:
            pass


def test_training_loop_agrees_across_opt_levels():
    rs = np.random.RandomState(0)
    xv = rs.randn(16, 5).astype(np.float32)
    yv = rs.randint(0, 3, 16).astype(np.int32)
    x = gf.placeholder(gf.float32, shape=(None, 5), name="x")
    y = gf.placeholder(gf.int32, shape=(None,), name="y")
    w1 = gf.Variable(rs.randn(5, 8).astype(np.float32) * 0.5)
    b1 = gf.Variable(np.zeros(8, np.float32))
    w2 = gf.Variable(rs.randn(8, 3).astype(np.float32) * 0.5)
    h = gf.nn.gelu(gf.matmul(x, w1) + b1)
    logits = gf.matmul(h, w2)
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    train = gf.train.AdamOptimizer(0.05).minimize(loss)
    finals = []
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            sess.run(gf.global_variables_initializer())
            losses = [sess.run([train, loss], {x: xv, y: yv})[1] for _ in range(10)]
            finals.append((losses, sess.run([w1, b1, w2])))
    assert finals[0][0][-1] < finals[0][0][0]
    for losses, weights in finals[1:]:
        np.testing.assert_allclose(losses, finals[0][0], rtol=1e-4, atol=1e-5)
        for a, b in zip(weights, finals[0][1]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_dynamic_shapes_from_gf_shape():
    x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
    xv = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert gf.reshape(x, (-1, 2, 2)).shape == (None, 2, 2)
    fetch = {"reshape": gf.reshape(gf.reshape(x, (-1,)), gf.shape(x)),
             "bcast": gf.broadcast_to(gf.constant([1.0, 2.0, 3.0, 4.0]), gf.shape(x)),
             "fill": gf.fill(gf.shape(x), 7.0), "zeros": gf.zeros(gf.shape(x)),
             "mean": gf.reduce_sum(x) / gf.cast(gf.shape(x)[0], gf.float32),
             "range": gf.range(gf.shape(x)[0])}
    out = run_all_levels(fetch, {x: xv})
    np.testing.assert_array_equal(out["reshape"], xv)
    np.testing.assert_array_equal(out["bcast"], np.broadcast_to([1.0, 2, 3, 4], (2, 4)))
    np.testing.assert_array_equal(out["fill"], np.full((2, 4), 7.0))
    np.testing.assert_array_equal(out["zeros"], np.zeros((2, 4)))
    assert out["mean"] == 14.0
    np.testing.assert_array_equal(out["range"], [0, 1])


def test_seeded_random_ops_agree_across_opt_levels_and_are_not_folded():
    n = gf.random.normal((4,), seed=1)
    u = gf.random.uniform((2, 2), seed=3) * 2.0 + 1.0
    d = gf.nn.dropout(gf.ones((6,)), rate=0.5, seed=2)
    first = []
    for level in LEVELS:
        with gf.Session(opt_level=level) as sess:
            a = sess.run([n, u, d])
            b = sess.run([n, u])
        assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1]), level
        first.append(a)
    for other in first[1:]:
        _assert_nested_close(first[0], other)


def test_assign_of_another_dtype_is_a_type_error():
    v = gf.Variable(np.array([1.0, 2.0], np.float32), name="v")
    with pytest.raises(TypeError) as e:
        v.assign(gf.constant([1, 2]))
    assert "int32" in str(e.value) and "float32" in str(e.value)
    ok = v.assign([3, 4])                      # Python values are converted to the variable's dtype
    with gf.Session() as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(ok), [3.0, 4.0])


@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_concurrent_variable_updates_are_atomic_and_never_lost(opt_level):
    """Runs that update variables apply their updates atomically: four threads each adding 50
    times to two variables leave exactly 200 in both (no torn or lost read-modify-write)."""
    v = gf.Variable(0.0)
    inc = v.assign_add(1.0)
    w = gf.Variable(np.zeros(1000, np.float32))
    incw = w.assign_add(gf.ones((1000,)))
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())

        def work():
            for _ in range(50):
                sess.run([inc, incw])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        vv, wv = sess.run([v, w])
        assert vv == 200.0
        np.testing.assert_array_equal(wv, np.full(1000, 200.0, np.float32))


def test_cli_outputs_list_without_inputs_bench_keras_and_bad_arguments(tmp_path):
    script = tmp_path / "two.py"
    script.write_text("import graphflow as gf\n"
                      "x = gf.placeholder(gf.float32, shape=(None, 8), name='x')\n"
                      "outputs = [gf.reduce_sum(gf.tanh(x), axis=1, name='y'), gf.exp(x, name='z')]\n")
    r = _cli("compile", str(script))
    assert r.returncode == 0, r.stderr
    assert "y:0" in r.stdout and "z:0" in r.stdout
    keras_script = tmp_path / "k.py"
    keras_script.write_text(KERAS_SCRIPT)
    r = _cli("bench", str(keras_script), "--batch", "8", "--repeat", "2")
    assert r.returncode == 0, r.stderr
    assert "speedup" in r.stdout.lower()
    for args in (("compile", str(script), "--opt-level", "7"), ("compile", str(script), "--format", "xml"),
                 ("nope",), ()):
        r = _cli(*args)
        assert r.returncode == 2, args
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, args


def test_compile_without_feed_list_feeds_the_needed_placeholders():
    x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
    gf.placeholder(gf.float32, shape=(), name="unused")
    y = gf.reduce_sum(gf.tanh(x) * 2.0)
    for level in LEVELS:
        cg = gf.compile(y, opt_level=level)
        assert cg.stats["ops_after"] <= cg.stats["ops_before"]
        assert isinstance(cg.report(), str) and "digraph" in cg.to_dot()


@pytest.mark.parametrize("build,words", [
    (lambda: gf.nn.conv2d(gf.zeros((1, 5, 5, 3)), gf.zeros((3, 3, 2, 4)), name="cv"),
     ("cv", "(1, 5, 5, 3)", "(3, 3, 2, 4)")),
    (lambda: gf.matmul(gf.zeros((2, 3, 4)), gf.zeros((3, 4, 5)), name="bm"), ("bm", "(2, 3, 4)", "(3, 4, 5)")),
    (lambda: gf.concat([gf.zeros((2, 3)), gf.zeros((2, 4))], 0, name="cc"), ("cc", "(2, 3)", "(2, 4)")),
    (lambda: gf.where(gf.zeros((2,), gf.bool), gf.zeros((3,)), 0.0, name="wh"), ("wh", "(2,)", "(3,)")),
    (lambda: gf.maximum(gf.zeros((2,)), gf.zeros((3,)), name="mx"), ("mx", "(2,)", "(3,)")),
    (lambda: gf.broadcast_to(gf.zeros((3,)), (2, 4), name="bt"), ("bt", "(3,)", "(2, 4)")),
    (lambda: gf.placeholder(gf.float32, shape=(None, 3)) @ gf.zeros((4, 2)), ("MatMul", "(None, 3)", "(4, 2)")),
    (lambda: gf.nn.softmax_cross_entropy_with_logits(labels=gf.zeros((2, 3)), logits=gf.zeros((2, 4))),
     ("softmax_cross_entropy_with_logits", "(2, 3)", "(2, 4)")),
])
def test_build_time_shape_errors_name_op_and_shapes(build, words):
    with pytest.raises(ValueError) as e:
        build()
    for w in words:
        assert w in str(e.value), w


def test_validation_split_takes_the_last_samples_and_epoch_loss_is_pre_update():
    x, y = _classification_data()
    m = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    val = m.evaluate(x[-24:], y[-24:], verbose=0)        # Keras: the last 25%, taken before shuffling
    np.testing.assert_allclose(h.history["val_loss"][0], val[0], rtol=1e-5)
    np.testing.assert_allclose(h.history["val_accuracy"][0], val[1], rtol=1e-5)
    m2 = keras.Sequential([keras.Input(shape=(6,)), L.Dense(3, activation="softmax")])
    m2.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    w0 = m2.get_weights()
    h2 = m2.fit(x, y, batch_size=96, epochs=1, verbose=0)   # one batch: the logged loss is before its update
    m2.set_weights(w0)
    np.testing.assert_allclose(h2.history["loss"][0], m2.evaluate(x, y, verbose=0), rtol=1e-5)


def test_graph_seed_gives_distinct_reproducible_op_streams():
    gf.set_random_seed(1)
    a, b = gf.random.uniform((3,)), gf.random.uniform((3,))
    with gf.Session() as sess:
        av, bv = sess.run([a, b])
    assert not np.array_equal(av, bv)           # ops without their own seed still get distinct streams
    gf.reset_default_graph()
    gf.set_random_seed(1)
    a2 = gf.random.uniform((3,))
    with gf.Session() as sess:
        np.testing.assert_array_equal(sess.run(a2), av)
    gf.reset_default_graph()                    # the graph seed belongs to the graph: no seed -> fresh values
    c = gf.random.uniform((8,))
    with gf.Session() as s1, gf.Session() as s2:
        assert not np.array_equal(s1.run(c), s2.run(c))
