"""Fused kernels give the same results at 1 and at N threads: bitwise for elementwise and row
kernels (elementwise work splits at multiples of the vector step; reductions split over
rows, never within one), to float tolerance for matmul epilogues (BLAS blocks differ)."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.runtime.threads import ThreadBudget

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def compiled_loops_even_for_tiny_inputs(monkeypatch):
    """These tests check the LLVM kernels, so small inputs must not take the numpy shortcut."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "SMALL_ELEMENTS", 0)


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint8)


def _run(out, feeds, threads):
    with gf.Session(opt_level=2, num_threads=threads) as sess:
        return sess.run(out, feeds)


def _w1(n):
    x = gf.placeholder(gf.float32, (None,), name="x")
    y = gf.placeholder(gf.float32, (None,), name="y")
    out = gf.tanh(x * 0.5 + y) * gf.sigmoid(x) + gf.sqrt(gf.abs(y) + 1.0)
    xv = RNG.uniform(-4, 4, n).astype(np.float32)
    yv = RNG.uniform(-4, 4, n).astype(np.float32)
    xv[::977] = np.nan
    return out, {x: xv, y: yv}


def _broadcast_chain(n):
    a = gf.placeholder(gf.float32, (None, None), name="a")
    b = gf.placeholder(gf.float32, (None,), name="b")
    out = gf.erf(a * b) + gf.exp(-gf.square(a)) - gf.log1p(gf.abs(b))
    return out, {a: RNG.standard_normal((17, n)).astype(np.float32), b: RNG.standard_normal(n).astype(np.float32)}


def _softmax(n):
    x = gf.placeholder(gf.float32, (None, n), name="x")
    return gf.nn.softmax(x * 3.0), {x: RNG.standard_normal((301, n)).astype(np.float32)}


def _layer_norm(n):
    x = gf.placeholder(gf.float64, (None, n), name="x")
    m = gf.reduce_mean(x, axis=-1, keepdims=True)
    v = gf.reduce_mean(gf.square(x - m), axis=-1, keepdims=True)
    return (x - m) * gf.rsqrt(v + 1e-5), {x: RNG.standard_normal((257, n))}


def _batch_norm(n):
    x = gf.placeholder(gf.float32, (None, n), name="x")
    mean, var = gf.nn.moments(x, axes=[0])
    return (x - mean) * gf.rsqrt(var + 1e-3), {x: RNG.standard_normal((300, n)).astype(np.float32)}


@pytest.mark.parametrize("build,n", [(_w1, 2 ** 18 + 3), (_broadcast_chain, 2 ** 13 + 1),
                                     (_softmax, 1023), (_layer_norm, 513), (_batch_norm, 2 ** 12 + 5)],
                         ids=["w1", "broadcast", "softmax", "layer_norm", "batch_norm"])
def test_bitwise_same_at_1_and_n_threads(build, n):
    out, feeds = build(n)
    one = _run(out, feeds, 1)
    for threads in (2, 3):
        np.testing.assert_array_equal(_bits(_run(out, feeds, threads)), _bits(one))
    np.testing.assert_allclose(one, gf.Session(opt_level=0).run(out, feeds), rtol=1e-5, atol=1e-6)


def test_epilogue_same_at_1_and_n_threads():
    x = gf.placeholder(gf.float32, (None, 64), name="x")
    w = gf.constant(RNG.standard_normal((64, 96)).astype(np.float32) / 8)
    b = gf.constant(RNG.standard_normal(96).astype(np.float32))
    out = gf.nn.gelu(gf.matmul(x, w) + b)
    feeds = {x: RNG.standard_normal((2000, 64)).astype(np.float32)}
    one = _run(out, feeds, 1)
    np.testing.assert_allclose(_run(out, feeds, 3), one, rtol=1e-5, atol=1e-5)


class _Spy(ThreadBudget):
    """A real thread budget that records how many chunks each parallel job ran."""

    def __init__(self, n):
        super().__init__(n)
        self.jobs = []

    def parallel_entry(self, calls):
        chunks = len(calls[0][4]) // 2
        self.jobs.append(chunks)
        return super().parallel_entry(calls)


def test_large_kernels_are_split_and_small_ones_run_inline():
    out, feeds = _w1(2 ** 20)
    c = gf.compile(out, feed_list=list(feeds))
    kernel = next(n for n in c.program.nodes if n.op == "Fused").attrs["kernel"]
    spy = _Spy(4)
    try:
        (big,) = kernel.run(list(feeds.values()), None, spy)
        assert len(spy.jobs) == 1 and spy.jobs[0] > 1
        spy.jobs.clear()
        kernel.run([v[:100] for v in feeds.values()], None, spy)
        assert spy.jobs == []
    finally:
        spy.close()
    (serial,) = kernel.run(list(feeds.values()), None, None)
    np.testing.assert_array_equal(_bits(big), _bits(serial))


def test_a_split_kernel_stays_bound_to_its_operands_between_runs():
    """A kernel split over threads keeps its chunks bound as one parallel chain entry: run
    again on the same arrays it reuses the binding and reads what was written into them in
    place meanwhile; new arrays of the same layout are patched in. Every result has the bits
    of one thread's call."""
    out, feeds = _w1(2 ** 20)
    kernel, serial_kernel = (next(n for n in gf.compile(out, feed_list=list(feeds)).program.nodes
                                  if n.op == "Fused").attrs["kernel"] for _ in range(2))
    x, y = (v.copy() for v in feeds.values())
    result = np.empty_like(x)
    spy = _Spy(2)
    try:
        for step in range(4):
            if step == 3:
                x, result = x.copy(), np.empty_like(result)   # new arrays: pointers patched in
            kernel.run([x, y], [result], spy)
            bound = kernel._direct
            assert bound.parallel and (step == 0 or bound is first or step == 3)
            first = bound
            (serial,) = serial_kernel.run([x, y], None, None)
            np.testing.assert_array_equal(_bits(result), _bits(serial))
            x *= -0.5   # (in place)
        assert len(spy.jobs) == 1 and spy.jobs[0] > 1   # the entry was made once
    finally:
        spy.close()


def test_streaming_stores_give_the_same_bits(monkeypatch):
    from graphflow.compiler.fusion import fused_op

    out, feeds = _w1(2 ** 18 + 3)
    c = gf.compile(out, feed_list=list(feeds))
    kernel = next(n for n in c.program.nodes if n.op == "Fused").attrs["kernel"]
    x, y = feeds.values()
    plain = kernel.run([x, y], None, None)[0]
    monkeypatch.setattr(fused_op, "STREAM_BYTES", 0)    # every call takes the non-temporal loop
    kernel._layout_cache.clear()
    for offset in (0, 1, 3):                            # output alignments: peel 0..15 elements
        o = np.empty(x.size + offset, np.float32)[offset:]
        for threads in (1, 3):
            budget = ThreadBudget(threads)
            try:
                kernel.run([x, y], [o], budget)
            finally:
                budget.close()
            np.testing.assert_array_equal(_bits(o), _bits(plain))


@pytest.mark.parametrize("dtype,build", [
    (np.float64, lambda x: gf.tanh(x) * 3.0),
    (np.int32, lambda x: x * x - x // 3),
    (np.float32, lambda x: gf.cast(x, gf.float64) + 1.0),     # narrower loads than stores
], ids=["float64", "int32", "float32->float64"])
def test_streaming_stores_for_other_dtypes(monkeypatch, dtype, build):
    from graphflow.compiler.fusion import fused_op

    x = gf.placeholder(dtype, (None,), name="x")
    c = gf.compile(build(x), feed_list=[x])
    kernel = next(n for n in c.program.nodes if n.op == "Fused").attrs["kernel"]
    n = 10007
    xv = (RNG.integers(-100, 100, n) if dtype == np.int32 else RNG.standard_normal(n)).astype(dtype)
    (plain,) = kernel.run([xv], None, None)
    monkeypatch.setattr(fused_op, "STREAM_BYTES", 0)
    kernel._layout_cache.clear()
    o = np.empty(n + 1, plain.dtype)[1:]
    kernel.run([xv], [o], None)
    np.testing.assert_array_equal(_bits(o), _bits(plain))
