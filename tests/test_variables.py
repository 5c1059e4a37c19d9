"""Variables (initializers, assign ops, collections) and random ops reproducible from the
graph seed and the op seed, as in TF1."""
import threading

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import FailedPreconditionError


def test_variable_basics_and_collections():
    w = gf.Variable(np.ones((2, 3), np.float32), name="w")
    with gf.name_scope("layer"):
        b = gf.Variable(gf.zeros((3,)), name="b")
    step = gf.Variable(0, name="step", trainable=False)
    d = gf.Variable([1, 2], dtype=gf.float64, name="d")
    lazy = gf.Variable(lambda: np.arange(3.0), name="lazy")
    assert w.name == "w:0" and w.op.name == "w" and b.name == "layer/b:0"
    assert w.shape == (2, 3) and w.dtype == gf.float32 and step.dtype == gf.int32 and d.dtype == gf.float64
    assert lazy.dtype == gf.float64 and lazy.shape == (3,)
    assert w.graph is gf.get_default_graph()
    assert gf.global_variables() == [w, b, step, d, lazy]
    assert gf.trainable_variables() == [w, b, d, lazy]
    assert isinstance(w.initializer, gf.Operation)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        out = sess.run([w, b, step, d, w + 1.0, gf.matmul(w, gf.ones((3, 1)))])
    np.testing.assert_array_equal(out[0], np.ones((2, 3)))
    assert out[2] == 0 and isinstance(out[2], np.integer)
    np.testing.assert_array_equal(out[3], [1.0, 2.0])
    np.testing.assert_array_equal(out[5], np.full((2, 1), 3.0))


def test_initializer_of_one_variable_and_uninitialized_errors():
    a = gf.Variable(1.0, name="a")
    b = gf.Variable(2.0, name="b")
    both = a + b
    with gf.Session(opt_level=0) as sess:
        sess.run(a.initializer)
        assert sess.run(a) == 1.0
        with pytest.raises(FailedPreconditionError, match="'b'"):
            sess.run(both)
        sess.run(gf.variables_initializer([b]))
        assert sess.run(both) == 3.0


def test_variables_live_in_each_session():
    v = gf.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    s1, s2 = gf.Session(opt_level=0), gf.Session(opt_level=0)
    s1.run(v.initializer)
    s2.run(v.initializer)
    s1.run(inc)
    s1.run(inc)
    assert s1.run(v) == 3.0 and s2.run(v) == 1.0
    s1.close()
    s2.close()


def test_assign_ops_and_their_values():
    v = gf.Variable([1.0, 2.0], name="v")
    with gf.Session(opt_level=0) as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(v.assign([5.0, 6.0])), [5.0, 6.0])
        np.testing.assert_array_equal(sess.run(v.assign_add([1.0, 1.0])), [6.0, 7.0])
        np.testing.assert_array_equal(sess.run(v.assign_sub(gf.constant([2.0, 2.0]))), [4.0, 5.0])
        np.testing.assert_array_equal(sess.run(v.assign_add(1)), [5.0, 6.0])  # a Python int for a float var
        v.load([9.0, 8.0], sess)
        np.testing.assert_array_equal(sess.run(v), [9.0, 8.0])
        np.testing.assert_array_equal(v.eval(sess), [9.0, 8.0])


def test_assign_errors_at_build_time():
    v = gf.Variable(np.zeros((2, 2), np.float32), name="v")
    with pytest.raises(ValueError, match=r"\(3,\).*'v'.*\(2, 2\)"):
        v.assign(gf.zeros((3,)))
    with pytest.raises(TypeError, match="float64.*float32"):
        v.assign(gf.zeros((2, 2), dtype=gf.float64))
    with pytest.raises(TypeError):
        gf.Variable(1, name="i").assign(1.5)
    with pytest.raises(ValueError, match="partly unknown shape"):
        gf.Variable(gf.placeholder(gf.float32, (None,)), name="bad")


def test_variable_from_another_variable_and_scalar_ops():
    a = gf.Variable(3.0, name="a")
    b = gf.Variable(a.initial_value * 2.0, name="b")
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run(b) == 6.0
        assert sess.run(-a) == -3.0 and sess.run(a ** 2.0) == 9.0 and sess.run(2.0 - a) == -1.0


# ---- random ops: (graph seed, op seed) as in TF1 ----

def _two_sessions(t):
    with gf.Session(opt_level=0) as s1:
        first = [s1.run(t) for _ in range(2)]
    with gf.Session(opt_level=0) as s2:
        second = [s2.run(t) for _ in range(2)]
    return first, second


def test_graph_and_op_seed_reproduce_across_sessions_and_graphs():
    gf.set_random_seed(42)
    a = gf.random.normal((4,), seed=7)
    b = gf.random.uniform((4,), seed=7)
    first, second = _two_sessions(a)
    np.testing.assert_array_equal(first[0], second[0])   # a new session starts the stream again
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])         # successive runs draw new values
    with gf.Session(opt_level=0) as s:
        ua = s.run(b)
    assert np.all((ua >= 0) & (ua < 1))
    g2 = gf.Graph()
    with g2.as_default():
        gf.set_random_seed(42)
        a2 = gf.random.normal((4,), seed=7)
        with gf.Session(graph=g2, opt_level=0) as s:
            np.testing.assert_array_equal(s.run(a2), first[0])   # same seeds, another graph: same values
        gf.set_random_seed(43)
        a3 = gf.random.normal((4,), seed=7)
        with gf.Session(graph=g2, opt_level=0) as s:
            assert not np.array_equal(s.run(a3), first[0])


def test_graph_seed_alone_gives_distinct_but_reproducible_ops():
    def build():
        g = gf.Graph()
        with g.as_default():
            gf.set_random_seed(3)
            x = gf.random.normal((5,))
            y = gf.random.normal((5,))
        return g, x, y

    g, x, y = build()
    with gf.Session(graph=g, opt_level=0) as s:
        xv, yv = s.run([x, y])
    assert not np.array_equal(xv, yv)
    g2, x2, y2 = build()
    with gf.Session(graph=g2, opt_level=0) as s:
        x2v, y2v = s.run([x2, y2])
    np.testing.assert_array_equal(xv, x2v)
    np.testing.assert_array_equal(yv, y2v)


def test_op_seed_alone_is_reproducible_and_no_seed_is_not():
    a = gf.random.uniform((6,), seed=11)
    first, second = _two_sessions(a)
    np.testing.assert_array_equal(first[0], second[0])
    free = gf.random.normal((16,))
    first, second = _two_sessions(free)
    assert not np.array_equal(first[0], second[0])


def test_random_statistics_dtype_and_variable_initialization():
    gf.set_random_seed(0)
    n = gf.random.normal((20000,), mean=2.0, stddev=0.5, dtype=gf.float64, seed=1)
    u = gf.random.uniform((20000,), minval=-3.0, maxval=-1.0, seed=2)
    w = gf.Variable(gf.random.normal((3, 3), seed=4), name="w")
    with gf.Session(opt_level=0) as s:
        nv, uv = s.run([n, u])
        s.run(w.initializer)
        w1 = s.run(w)
    assert nv.dtype == np.float64 and uv.dtype == np.float32
    assert abs(nv.mean() - 2.0) < 0.02 and abs(nv.std() - 0.5) < 0.02
    assert uv.min() >= -3.0 and uv.max() < -1.0
    with gf.Session(opt_level=0) as s:
        s.run(w.initializer)
        np.testing.assert_array_equal(s.run(w), w1)


def test_concurrent_runs_never_repeat_a_draw():
    gf.set_random_seed(5)
    r = gf.random.uniform((8,), seed=1)
    with gf.Session(opt_level=0) as sess:
        draws, lock = [], threading.Lock()

        def work():
            for _ in range(10):
                v = sess.run(r)
                with lock:
                    draws.append(v.tobytes())

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(draws) == 40 and len(set(draws)) == 40


def test_variables_ignore_the_callers_control_dependencies_and_cond_branch():
    x = gf.placeholder(gf.float32, (), name="x")
    with gf.control_dependencies([x]):
        w = gf.Variable(1.0, name="w")
    assert w.initializer.control_inputs == [] and w.op.control_inputs == []
    p = gf.placeholder(gf.bool, (), name="p")
    made = []

    def branch():
        made.append(gf.Variable(5.0, name="in_branch"))
        return made[0] + 1.0

    out = gf.cond(p, branch, lambda: gf.constant(0.0))
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())  # needs no feed of x or p
        assert sess.run(made[0]) == 5.0 and sess.run(out, {p: True}) == 6.0


def test_dtype_argument_converts_python_values_exactly_and_numpy_defers():
    d = gf.Variable(0.1, dtype=gf.float64, name="d")
    assert d.initial_value.dtype == gf.float64
    v = gf.Variable([1.0, 2.0], name="v")
    mixed = np.array([10.0, 20.0], np.float32) + v
    assert isinstance(mixed, gf.Tensor)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run(d) == 0.1
        np.testing.assert_array_equal(sess.run(mixed), [11.0, 22.0])
    with pytest.raises(TypeError):
        gf.Variable(1.5, dtype=gf.int32)
