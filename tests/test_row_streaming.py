"""Row kernels (softmax, layer norm) with outputs past the streaming threshold: the final
loop uses non-temporal stores, the softmax stash lives in a stack row (or in the output for
rows longer than that row), rows of any alignment; results match numpy and do not depend on
the thread count (bitwise)."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.fusion.fused_op import STREAM_BYTES


def _softmax_ref(x):
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _layer_norm_ref(x, gamma, beta):
    x = x.astype(np.float64)
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * gamma + beta


def _run(build, x, threads):
    g = gf.Graph()
    with g.as_default():
        p = gf.placeholder(gf.float32, shape=(None, x.shape[1]))
        f = gf.Session(graph=g, num_threads=threads).make_callable(build(p), feed_list=[p])
    return f(x)


@pytest.mark.parametrize("cols", [1000, 1024, 5000])   # unaligned rows; stash longer than the stack row
def test_streaming_softmax(cols):
    rows = STREAM_BYTES // (4 * cols) + 3
    x = np.random.default_rng(cols).standard_normal((rows, cols)).astype(np.float32) * 4
    x[1, 7] = np.nan
    x[2, :] = -np.inf
    one, two = _run(gf.nn.softmax, x, 1), _run(gf.nn.softmax, x, 2)
    np.testing.assert_array_equal(one.view(np.int32), two.view(np.int32))
    with np.errstate(all="ignore"):
        ref = _softmax_ref(x)
    np.testing.assert_allclose(one, ref, rtol=2e-6, atol=1e-9, equal_nan=True)
    # column-major feed: the strided loops (their sums run in another order: close, not bitwise)
    t = _run(gf.nn.softmax, np.asfortranarray(x), 2)
    np.testing.assert_allclose(t, ref, rtol=1e-4, atol=1e-9, equal_nan=True)


def test_streaming_layer_norm():
    rows, cols = STREAM_BYTES // (4 * 1024) + 5, 1024
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    gamma, beta = rng.standard_normal(cols).astype(np.float32), rng.standard_normal(cols).astype(np.float32)

    def build(p):
        mean = gf.reduce_mean(p, axis=-1, keepdims=True)
        d = p - mean
        var = gf.reduce_mean(d * d, axis=-1, keepdims=True)
        return d * gf.rsqrt(var + 1e-5) * gamma + beta

    one, two = _run(build, x, 1), _run(build, x, 2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, _layer_norm_ref(x, gamma, beta), rtol=1e-5, atol=2e-5)
