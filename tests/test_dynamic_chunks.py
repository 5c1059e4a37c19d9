"""Kernels split into the most chunks a parallel job gets (MAX_CHUNKS, claimed dynamically by
whichever thread is free, in compiled code) give the same bits at 1, 2 and 3 threads."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.runtime.threads import MAX_CHUNKS, ThreadBudget

RNG = np.random.default_rng(5)


class _Counting(ThreadBudget):
    def __init__(self, n):
        super().__init__(n)
        self.chunks = 0

    def parallel_entry(self, calls):
        chunks = len(calls[0][4]) // 2
        self.chunks += chunks
        return super().parallel_entry(calls)


def _elementwise(x):
    return gf.tanh(x * 0.5) * gf.sigmoid(x) + gf.sqrt(gf.abs(x) + 1.0)


def _softmax(x):
    return gf.nn.softmax(x * 3.0)


def _column_sum(x):
    return x - gf.reduce_mean(x, axis=0, keepdims=True)


@pytest.mark.parametrize("build,shape", [(_elementwise, (3 * 2 ** 16 + 5,)), (_softmax, (999, 65)),
                                         (_column_sum, (40, 2 ** 15 + 3))],
                         ids=["elementwise", "row", "column"])
def test_same_bits_at_1_2_3_threads_with_many_chunks(monkeypatch, build, shape):
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "TASK_NS", 1)   # grain 1: as many chunks as the cap allows
    x = gf.placeholder(gf.float32, (None,) * len(shape), name="x")
    c = gf.compile(build(x), feed_list=[x])
    (node,) = [n for n in c.program.nodes if n.op == "Fused"]
    kernel = node.attrs["kernel"]
    xv = RNG.standard_normal(shape).astype(np.float32)
    xv.flat[::1001] = np.nan
    (serial,) = kernel.run([xv], None, None)
    for threads in (2, 3):
        budget = _Counting(threads)
        try:
            (split,) = kernel.run([xv], None, budget)
        finally:
            budget.close()
        assert budget.chunks == MAX_CHUNKS
        np.testing.assert_array_equal(split.view(np.uint32), serial.view(np.uint32))
