"""exp of `a - max(a)` (softmax, log_softmax) is emitted without exp's overflow clamp: the
kernel IR recognizes the difference from a row max of the same slot, and only that."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.fusion.kernel_ir import nonpositive_slots


@pytest.fixture(autouse=True)
def compiled_loops_even_for_tiny_inputs(monkeypatch):
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "SMALL_ELEMENTS", 0)


def _compiled(build):
    x = gf.placeholder(gf.float32, (None, None), name="x")
    y = gf.placeholder(gf.float32, (None, None), name="y")
    out = build(x, y)
    c = gf.compile(out, feed_list=[x, y])
    kernels = [n.attrs["kernel"].ir for n in c.program.nodes if n.op == "Fused"]
    return c, kernels, out, (x, y)


def _row_max(v):
    return gf.reduce_max(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("build,expected", [
    (lambda x, y: gf.exp(x - _row_max(x)), True),
    (lambda x, y: gf.nn.softmax(x * 2.0), True),
    (lambda x, y: gf.exp(x - _row_max(y)) + y, False),     # the max of another tensor
    (lambda x, y: gf.exp(_row_max(x) - x), False),         # >= 0
    (lambda x, y: gf.exp(x - gf.reduce_min(x, axis=-1, keepdims=True)), False),
], ids=["x-max(x)", "softmax", "x-max(y)", "max(x)-x", "x-min(x)"])
def test_only_a_difference_from_its_own_row_max_is_nonpositive(build, expected):
    c, kernels, out, (x, y) = _compiled(build)
    assert any(nonpositive_slots(k) for k in kernels) == expected
    assert ("exp_nonpositive" in c.llvm_ir) == expected
    rng = np.random.default_rng(3)
    xv = (rng.standard_normal((6, 37)) * 30).astype(np.float32)
    yv = (rng.standard_normal((6, 37)) * 30).astype(np.float32)
    xv[0, 3], xv[1, :] = np.nan, -np.inf
    xv[2, 5], xv[3, 0], xv[3, 1] = np.inf, 3e38, -3e38
    feeds = {x: xv, y: yv}
    with np.errstate(all="ignore"):
        want = gf.Session(opt_level=0).run(out, feeds)
    got = gf.Session(opt_level=2).run(out, feeds)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0, equal_nan=True)
