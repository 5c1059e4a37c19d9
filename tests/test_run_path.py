"""The lean per-call paths: tiny fused kernels called as generated numpy functions, and
epilogues computing the library result straight into their output."""
import numpy as np
import pytest

import graphflow as gf


def _session(**kw):
    return gf.Session(opt_level=2, num_threads=kw.pop("num_threads", 1), **kw)


def test_tiny_static_kernel_outputs_are_fresh_and_correct():
    a = gf.placeholder(gf.float32, shape=(3,), name="a")
    b = gf.placeholder(gf.float32, shape=(3,), name="b")
    out = a + b
    same = gf.identity(a) * 1.0  # a kernel whose numpy evaluation could hand back its input
    sess = _session()
    av, bv = np.array([1, 2, 3], np.float32), np.array([0.5, 0.25, 0.0], np.float32)
    f = sess.make_callable([out, same], [a, b])
    r1, s1 = f(av, bv)
    r2, _ = f(av, bv)
    np.testing.assert_array_equal(r1, av + bv)
    np.testing.assert_array_equal(s1, av)
    assert r1 is not r2 and not np.shares_memory(r1, r2)
    assert not np.shares_memory(s1, av) and not np.shares_memory(r1, av)
    assert r1.dtype == np.float32 and r1.shape == (3,)
    (plan,) = sess._plans.values()
    assert {st.mode for st in plan.execution.steps} == {"static"}  # the path under test


def test_tiny_static_kernel_broadcast_scalar_and_dtype():
    x = gf.placeholder(gf.float32, shape=(), name="x")
    y = gf.placeholder(gf.float32, shape=(2, 3), name="y")
    z = gf.cast(x * 2.0, gf.float64)           # 0-d result, converted dtype
    w = x + gf.zeros_like(y) + 1.0              # broadcast of a scalar to (2, 3)
    sess = _session()
    zv, wv = sess.run([z, w], {x: np.float32(1.5), y: np.ones((2, 3), np.float32)})
    assert np.asarray(zv).dtype == np.float64 and float(zv) == 3.0
    np.testing.assert_array_equal(wv, np.full((2, 3), 2.5, np.float32))


def test_tiny_static_kernel_quiet_ieee():
    x = gf.placeholder(gf.float32, shape=(2,), name="x")
    y = gf.log(x) / x
    sess = _session()
    with np.errstate(all="raise"):
        r = sess.run(y, {x: np.array([0.0, -1.0], np.float32)})
    assert np.isnan(r[0]) or np.isinf(r[0])
    assert np.isnan(r[1])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 5, 700])
def test_epilogue_into_output_matches_numpy(threads, batch):
    rng = np.random.default_rng(batch)
    w = rng.standard_normal((16, 600)).astype(np.float32)
    bias = rng.standard_normal(600).astype(np.float32)
    x = gf.placeholder(gf.float32, shape=(None, 16), name="x")
    h = gf.nn.relu(gf.matmul(x, w) + bias)
    sess = _session(num_threads=threads)
    xv = rng.standard_normal((batch, 16)).astype(np.float32)
    for _ in range(2):  # the second run reuses the cached layout and buffers
        hv, h2 = sess.run([h, h * 2.0], {x: xv})
    ref = np.maximum(xv @ w + bias, 0)
    np.testing.assert_allclose(hv, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(h2, 2 * ref, rtol=1e-5, atol=1e-4)


def test_variable_updates_keep_fresh_values_without_aliasing():
    """AssignSub hands its fresh `old - delta` to the run state without a copy: the stored
    value must stay independent of fetched results and of later runs."""
    v = gf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="v")
    d = gf.placeholder(gf.float32, shape=(2, 3), name="d")
    upd = gf.assign_sub(v, d) if hasattr(gf, "assign_sub") else v.assign_sub(d)
    sess = _session()
    sess.run(gf.global_variables_initializer())
    one = np.ones((2, 3), np.float32)
    r1 = sess.run(upd, {d: one})
    r1[...] = 100.0  # the caller's copy: writing it must not reach the variable
    r2 = sess.run(upd, {d: one})
    np.testing.assert_array_equal(r2, np.arange(6, dtype=np.float32).reshape(2, 3) - 2)
    np.testing.assert_array_equal(sess.run(v), r2)
    assert not np.shares_memory(sess.run(v), r2)


def test_data_pointers_of_read_only_and_reused_arrays():
    from graphflow.runtime.pointers import address, remember

    for _ in range(50):  # ids of dead arrays come back: a remembered pointer must not
        a = np.arange(8, dtype=np.float32)
        remember(a)
        a.setflags(write=False)
        assert address(a) == a.ctypes.data
        view = np.arange(16, dtype=np.float64)[::2]  # not contiguous: the slow path, remembered
        assert address(view) == view.ctypes.data == address(view)
        del a, view
    empty = np.empty((0, 3), np.float32)
    assert address(empty) == empty.ctypes.data
