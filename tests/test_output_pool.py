"""Fetched kernel results (of a shape not known small) come from a per-plan pool: the
previous array is reused once the caller has dropped it (no fresh mmap and page faults per
run for a large one, no new binding of the kernel for a small one), and never while anything
still refers to it."""
import weakref

import numpy as np
import pytest

import graphflow as gf

SIZES = [1 << 19, 5000]   # 2 MB of float32; 20 KB


def _callable(threads=1):
    x = gf.placeholder(gf.float32, shape=(None,), name="x")
    y = gf.tanh(x * 0.5) + 1.0
    sess = gf.Session(num_threads=threads)
    return sess.make_callable(y, feed_list=[x]), lambda v: np.tanh(v * np.float32(0.5)) + np.float32(1.0)


@pytest.mark.parametrize("N", SIZES)
def test_dropped_result_is_reused(N):
    f, ref = _callable()
    x = np.linspace(-3, 3, N, dtype=np.float32)
    first = weakref.ref(f(x))     # the result is dropped at once
    again = f(x)
    assert again is first()
    np.testing.assert_allclose(again, ref(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("N", SIZES)
def test_held_results_and_views_are_never_overwritten(N):
    f, ref = _callable(threads=2)
    a, b = (np.linspace(-3, 3, N, dtype=np.float32) * s for s in (1, 2))
    held = f(a)
    view = f(b)[: N // 2]         # only a view of the second result survives
    expected_held, expected_view = held.copy(), ref(b)[: N // 2]
    for _ in range(3):
        newest = f(a * 0.25)
        assert not np.shares_memory(newest, held) and not np.shares_memory(newest, view)
    np.testing.assert_array_equal(held, expected_held)
    np.testing.assert_allclose(view, expected_view, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(newest, ref(a * 0.25), rtol=1e-6, atol=1e-6)
