"""Row kernels whose first reduction stage is a max (softmax, log_softmax, cross-entropy)
reduce it one row ahead, inside the previous row's last loop, after a stand-alone pass for
the first row of each range. A row must give the same bits whichever of the two loops
reduced it: checked by running every row as its own range against one range over all rows."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.runtime.threads import ThreadBudget

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def compiled_loops_even_for_tiny_inputs(monkeypatch):
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "SMALL_ELEMENTS", 0)


class _RowByRow(ThreadBudget):
    """Runs parallel_for's range one element (row) at a time, inline: every row is the first
    of its range, so it takes the stand-alone first-stage pass."""

    def __init__(self):
        super().__init__(2)

    def parallel_for(self, fn, total, grain):
        for s in range(total):
            fn(s, s + 1)


def _softmax(x):
    return gf.nn.softmax(x)


def _log_softmax(x):
    return gf.nn.log_softmax(x * 2.0 - 1.0)


def _max_and_softmax(x):
    m = gf.reduce_max(x, axis=-1, keepdims=True)
    e = gf.exp(x - m)
    return [m, e / gf.reduce_sum(e, axis=-1, keepdims=True)]


def _special_rows(rows, cols, dtype):
    x = (RNG.standard_normal((rows, cols)) * 5).astype(dtype)
    if rows > 4:
        x[1, cols // 2] = np.nan
        x[2] = -np.inf
        x[3, 0] = np.inf
        x[4] = 0.0
        x[4, ::2] = -0.0        # a max that ties zeros of both signs
    return x


def _kernel(build, dtype, cols):
    x = gf.placeholder(dtype, (None, None), name="x")
    out = build(x)
    c = gf.compile(out, feed_list=[x])
    (node,) = [n for n in c.program.nodes if n.op == "Fused"]
    return node.attrs["kernel"], c.llvm_ir, out, x


@pytest.mark.parametrize("build", [_softmax, _log_softmax, _max_and_softmax], ids=["softmax", "log_softmax", "max"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (7, 17), (9, 1023), (5, 4100)])
def test_a_row_gives_the_same_bits_in_either_loop(build, dtype, rows, cols):
    kernel, ir_text, out, ph = _kernel(build, dtype, cols)
    assert "ahead.first" in ir_text
    x = _special_rows(rows, cols, dtype)
    whole = kernel.run([x], None, None)
    by_row = kernel.run([x], None, _RowByRow())
    for a, b in zip(whole, by_row):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    ref = gf.Session(opt_level=0).run(out, {ph: x})
    for got, want in zip(whole, ref if isinstance(ref, list) else [ref]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, equal_nan=True)


def test_ranges_starting_anywhere_and_strided_rows():
    kernel, _, out, ph = _kernel(_softmax, np.float32, 33)
    x = _special_rows(40, 33, np.float32)
    whole = kernel.run([x], None, None)[0]
    budget = ThreadBudget(3)
    try:
        split = kernel.run([x], None, budget)[0]   # chunks start mid-array
    finally:
        budget.close()
    np.testing.assert_array_equal(split.view(np.uint32), whole.view(np.uint32))
    t = np.asfortranarray(x)                       # column stride != 1: the strided loops
    ref = gf.Session(opt_level=0).run(out, {ph: x})
    np.testing.assert_allclose(kernel.run([t], None, None)[0], ref, rtol=1e-5, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(kernel.run([x[::2]], None, None)[0], ref[::2], rtol=1e-5, atol=1e-7, equal_nan=True)


def test_only_max_or_min_first_stages_run_ahead():
    def layer_norm(x):
        m = gf.reduce_mean(x, axis=-1, keepdims=True)
        return (x - m) * gf.rsqrt(gf.reduce_mean(gf.square(x - m), axis=-1, keepdims=True) + 1e-5)

    _, ir_text, _, _ = _kernel(layer_norm, np.float32, 64)
    assert "ahead.first" not in ir_text       # a sum's bits depend on its loop's order
    _, ir_text, _, _ = _kernel(lambda x: gf.reduce_max(x, axis=-1), np.float32, 64)
    assert "ahead.first" not in ir_text       # one stage: nothing to overlap


def test_per_row_and_per_column_operands_of_the_next_row():
    """The next row's first stage reads that row's own per-row operands (keepdims bias) and
    the shared per-column ones."""
    x = gf.placeholder(gf.float32, (None, None), name="x")
    r = gf.placeholder(gf.float32, (None, 1), name="r")
    c = gf.placeholder(gf.float32, (None,), name="c")
    z = x * c + r
    m = gf.reduce_max(z, axis=-1, keepdims=True)   # exported: softmax alone would not show a wrong max
    e = gf.exp(z - m)
    out = [m, e / gf.reduce_sum(e, axis=-1, keepdims=True)]
    compiled = gf.compile(out, feed_list=[x, r, c])
    assert "ahead.first" in compiled.llvm_ir
    rng = np.random.default_rng(2)
    feeds = {x: rng.standard_normal((23, 45)).astype(np.float32),
             r: (rng.standard_normal((23, 1)) * 50).astype(np.float32),
             c: rng.standard_normal(45).astype(np.float32)}
    want = gf.Session(opt_level=0).run(out, feeds)
    for threads in (1, 3):
        got = gf.Session(opt_level=2, num_threads=threads).run(out, feeds)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
