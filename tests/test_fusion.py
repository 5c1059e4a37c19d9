"""Fusion at opt_level 2: how many kernels a graph fuses into, of which kind, what the report
says, and that fused results agree with the unfused reference (opt_level 0)."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.fusion import planner as planner_mod
from graphflow.compiler.fusion.fused_op import FLAT_BLOCK
from graphflow.runtime.threads import MAX_CHUNKS, ThreadBudget

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def compiled_loops_even_for_tiny_inputs(monkeypatch):
    """These tests check the LLVM kernels, so small inputs must not take the numpy shortcut."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "SMALL_ELEMENTS", 0)


def _kernels(fetches, feeds):
    c = gf.compile(fetches, feed_list=feeds)
    return c, c.report_data.kernels


def _agree(fetches, feed_dict, rtol=1e-5, atol=1e-6):
    ref = gf.Session(opt_level=0).run(fetches, feed_dict)
    got = gf.Session(opt_level=2).run(fetches, feed_dict)
    for r, g in zip(ref if isinstance(ref, list) else [ref], got if isinstance(got, list) else [got]):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
    return got


def _w1():
    x = gf.placeholder(gf.float32, (None,), name="x")
    y = gf.placeholder(gf.float32, (None,), name="y")
    return x, y, gf.tanh(x * 0.5 + y) * gf.sigmoid(x) + gf.sqrt(gf.abs(y) + 1.0)


def test_w1_chain_is_one_vectorized_kernel_with_the_ir_in_the_report():
    x, y, out = _w1()
    c, ks = _kernels(out, [x, y])
    assert len(ks) == 1
    k = ks[0]
    assert k["kind"] == "elementwise" and k["vectorized"] is True
    assert len(k["members"]) == 9 and k["inputs"] == ["x:0", "y:0"] and k["outputs"] == [out.name]
    assert c.stats["kernels"] == 1 and c.stats["fused_ops"] == 9
    assert f'define void @"{k["name"]}"' in c.llvm_ir
    assert k["name"] in c.report()
    n = 3 * FLAT_BLOCK + 5
    _agree(out, {x: RNG.uniform(-3, 3, n).astype(np.float32), y: RNG.uniform(-3, 3, n).astype(np.float32)})


def _softmax_input():
    return gf.placeholder(gf.float32, (None, 33), name="x")


@pytest.mark.parametrize("build", [
    lambda x: gf.nn.softmax(x),
    lambda x: gf.nn.log_softmax(x),
    lambda x: gf.reduce_logsumexp(x, axis=-1),
    lambda x: list(gf.nn.moments(x, axes=[1])),
], ids=["softmax", "log_softmax", "logsumexp", "moments"])
def test_row_patterns_are_one_row_kernel(build):
    x = _softmax_input()
    out = build(x)
    _, ks = _kernels(out, [x])
    assert [k["kind"] for k in ks] == ["row"]
    assert ks[0]["vectorized"] is True
    xv = RNG.standard_normal((19, 33)).astype(np.float32)
    xv[3, 4] = np.nan
    xv[5, :] = -np.inf
    xv[6, 2] = np.inf
    ref = gf.Session(opt_level=0).run(out, {x: xv})
    got = gf.Session(opt_level=2).run(out, {x: xv})
    for r, g in zip(ref if isinstance(ref, list) else [ref], got if isinstance(got, list) else [got]):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_layer_norm_from_primitives_is_one_row_kernel():
    x = gf.placeholder(gf.float32, (None, 64), name="x")
    gamma = gf.constant(RNG.uniform(0.5, 1.5, 64).astype(np.float32))
    beta = gf.constant(RNG.uniform(-1, 1, 64).astype(np.float32))
    m = gf.reduce_mean(x, axis=-1, keepdims=True)
    v = gf.reduce_mean(gf.square(x - m), axis=-1, keepdims=True)
    out = (x - m) * gf.rsqrt(v + 1e-5) * gamma + beta
    _, ks = _kernels(out, [x])
    assert len(ks) == 1 and ks[0]["kind"] == "row" and len(ks[0]["members"]) == 9
    _agree(out, {x: RNG.standard_normal((200, 64)).astype(np.float32)}, rtol=1e-4, atol=1e-5)


def test_softmax_cross_entropy_fuses_into_one_row_kernel():
    x = gf.placeholder(gf.float32, (None, 10), name="x")
    labels = gf.placeholder(gf.int32, (None,), name="labels")
    per_row = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
    _, ks = _kernels(per_row, [x, labels])
    assert [k["kind"] for k in ks] == ["row"]
    _agree(per_row, {x: RNG.standard_normal((50, 10)).astype(np.float32),
                     labels: RNG.integers(0, 10, 50).astype(np.int32)})


def test_dense_bias_relu_is_one_epilogue_kernel():
    x = gf.placeholder(gf.float32, (None, 20), name="x")
    w = gf.constant(RNG.standard_normal((20, 30)).astype(np.float32))
    b = gf.constant(RNG.standard_normal(30).astype(np.float32))
    res = gf.placeholder(gf.float32, (None, 30), name="res")
    out = gf.nn.relu(gf.matmul(x, w) + b) + res
    c, ks = _kernels(out, [x, res])
    assert len(ks) == 1 and ks[0]["kind"] == "epilogue"
    assert [n.split("/")[-1] for n in ks[0]["members"]][0] == "MatMul"
    assert not any(n.op == "MatMul" for n in c.program.nodes)
    feeds = {x: RNG.standard_normal((700, 20)).astype(np.float32), res: RNG.standard_normal((700, 30)).astype(np.float32)}
    _agree(out, feeds, rtol=1e-4, atol=1e-4)


def test_dense_softmax_head_fuses_matmul_and_row_kernel():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    w = gf.constant(RNG.standard_normal((8, 5)).astype(np.float32))
    out = gf.nn.softmax(gf.matmul(x, w))
    _, ks = _kernels(out, [x])
    assert len(ks) == 1 and ks[0]["kind"] == "epilogue" and len(ks[0]["members"]) == 6
    _agree(out, {x: RNG.standard_normal((1000, 8)).astype(np.float32)})


def test_expensive_op_with_outside_consumers_is_materialized_not_recomputed():
    x = gf.placeholder(gf.float32, (None, 4, 16), name="x")
    e = gf.exp(gf.tanh(x))
    a = gf.reduce_sum(e, axis=1)            # a middle-axis reduction: not fused
    b = e * 2.0 + 1.0
    c, ks = _kernels([a, b], [x])
    names = [n for k in ks for n in k["members"]]
    assert len(names) == len(set(names)), "an op was duplicated into several kernels"
    assert any(e.name in k["outputs"] for k in ks)
    assert "reduces axes" in c.report_data.unfused[a.op.name]
    _agree([a, b], {x: RNG.standard_normal((9, 4, 16)).astype(np.float32)})


def test_every_unfused_op_has_a_reason():
    x = gf.placeholder(gf.float32, (None, 6), name="x")
    t = gf.transpose(x * 2.0)
    s = gf.reduce_sum(gf.reshape(gf.exp(t), (2, 3, -1)), axis=1)
    g = gf.gather(s, [1, 0])
    c, ks = _kernels(g, [x])
    unfused = c.report_data.unfused
    in_kernels = {n for k in ks for n in k["members"]} | {k["name"] for k in ks}
    for n in c.program.nodes:
        if n.op != "Feed" and n.name not in in_kernels:
            assert unfused.get(n.name), f"{n.name} ({n.op}) has no reason"
    assert "injective" in unfused[t.op.name]
    assert "opaque" in unfused[g.op.name]
    assert "reduces axes" in unfused[s.op.name]
    _agree(g, {x: RNG.standard_normal((4, 6)).astype(np.float32)})


def test_group_size_cap_fires_and_is_reported(monkeypatch):
    monkeypatch.setattr(planner_mod, "MAX_MEMBERS", 10)
    x = gf.placeholder(gf.float32, (None,), name="x")
    y = x
    for i in range(25):
        y = y * 1.01 + 0.5 if i % 2 else gf.tanh(y)
    c, ks = _kernels(y, [x])
    assert len(ks) >= 3 and all(len(k["members"]) <= 10 for k in ks)
    assert any(kind == "capped" and "group-size cap 10" in why for _, kind, _, why in c.report_data.events)
    _agree(y, {x: RNG.standard_normal(100).astype(np.float32)})


def test_operand_cap_fires_and_is_reported(monkeypatch):
    monkeypatch.setattr(planner_mod, "MAX_OPERANDS", 5)
    xs = [gf.placeholder(gf.float32, (None,), name=f"x{i}") for i in range(9)]
    y = xs[0]
    for t in xs[1:]:
        y = y * t + 1.0
    c, ks = _kernels(y, xs)
    assert len(ks) >= 2
    assert any(kind == "capped" and "operand cap 5" in why for _, kind, _, why in c.report_data.events)
    _agree(y, {t: RNG.standard_normal(50).astype(np.float32) for t in xs})


def test_broadcasting_noncontiguous_and_transposed_inputs():
    a = gf.placeholder(gf.float32, (None, 5), name="a")
    b = gf.placeholder(gf.float32, (5,), name="b")
    col = gf.placeholder(gf.float32, (None, 1), name="col")
    out = gf.sigmoid(a * b - col) + gf.exp(-gf.abs(a))
    _, ks = _kernels(out, [a, b, col])
    assert len(ks) == 1
    big = RNG.standard_normal((5, 40)).astype(np.float32)
    feeds = {a: big.T[::2], b: RNG.standard_normal(10).astype(np.float32)[::2], col: RNG.standard_normal((20, 1)).astype(np.float32)}
    _agree(out, feeds)


def test_new_batch_size_does_not_recompile(monkeypatch):
    from graphflow.compiler.codegen import jit

    x, y, out = _w1()
    sess = gf.Session(opt_level=2)
    f = sess.make_callable(out, feed_list=[x, y])
    f(np.ones(3, np.float32), np.ones(3, np.float32))
    calls = []
    monkeypatch.setattr(jit, "compile_module", lambda *a: calls.append(a))
    for n in (1, 17, 1023, 5000):
        xv, yv = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
        np.testing.assert_allclose(f(xv, yv), gf.Session(opt_level=0).run(out, {x: xv, y: yv}), rtol=1e-5, atol=1e-6)
    assert calls == []


def test_integer_and_bool_elementwise_kernels():
    i = gf.placeholder(gf.int32, (None,), name="i")
    j = gf.placeholder(gf.int64, (None,), name="j")
    out_i = gf.where(i > 2, i * 3 - 1, i // 2 + i % 3)
    out_j = gf.cast(gf.logical_and(j > 0, j < 7), gf.int64) + j * j
    _, ks = _kernels([out_i, out_j], [i, j])
    assert len(ks) == 2
    _agree([out_i, out_j], {i: RNG.integers(-9, 9, 1000).astype(np.int32), j: RNG.integers(-9, 9, 1000)})


def test_fused_kernel_evaluates_in_numpy_without_llvm(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_FUSION_NUMPY", "1")
    x, y, out = _w1()
    c, ks = _kernels(out, [x, y])
    assert len(ks) == 1 and ks[0]["vectorized"] is None and c.llvm_ir == ""
    _agree(out, {x: RNG.standard_normal(50).astype(np.float32), y: RNG.standard_normal(50).astype(np.float32)})


class _Recording(ThreadBudget):
    """A budget that records how many chunks each parallel job of a kernel has."""

    def __init__(self, n):
        super().__init__(n)
        self.calls = []

    def parallel_entry(self, calls):
        chunks = len(calls[0][4]) // 2
        self.calls.append(chunks)
        return super().parallel_entry(calls)


def test_work_is_split_by_a_cost_model_and_results_do_not_depend_on_the_split():
    x, y, out = _w1()
    c, _ = _kernels(out, [x, y])
    k = next(n for n in c.program.nodes if n.op == "Fused").attrs["kernel"]
    n = 2 ** 18 + 3
    xv, yv = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    budget = _Recording(4)
    try:
        (split,) = k.run([xv, yv], None, budget)
    finally:
        budget.close()
    (chunks,) = budget.calls
    assert 1 < chunks <= min(MAX_CHUNKS, -(-n // FLAT_BLOCK))
    (whole,) = k.run([xv, yv], None, None)
    np.testing.assert_array_equal(split.view(np.uint32), whole.view(np.uint32))
    # a tiny input is not worth a thread hand-off: it runs inline, without parallel_for
    budget = _Recording(4)
    k.run([xv[:10], yv[:10]], None, budget)
    assert budget.calls == []


@pytest.mark.parametrize("shape,axes", [((50, 24), [0]), ((3, 4, 5, 8), [0, 1, 2])], ids=["dense", "nhwc"])
def test_batch_norm_moments_over_leading_axes_is_one_column_kernel(shape, axes):
    x = gf.placeholder(gf.float32, (None,) + shape[1:], name="x")
    mean, var = gf.nn.moments(x, axes=axes)
    scale = gf.constant(RNG.uniform(0.5, 2, shape[-1]).astype(np.float32))
    offset = gf.constant(RNG.uniform(-1, 1, shape[-1]).astype(np.float32))
    y = gf.nn.batch_normalization(x, mean, var, offset, scale, 1e-3)
    _, ks = _kernels([y, mean, var], [x])
    assert len(ks) == 1 and ks[0]["kind"] == "row" and ks[0]["vectorized"] is True
    xv = RNG.standard_normal(shape).astype(np.float32) * 3 + 1
    xv[1, ...] = np.nan if len(shape) == 2 else xv[1, ...]
    _agree([y, mean, var], {x: xv}, rtol=1e-4, atol=1e-5)


def test_reductions_propagate_nan_through_cancelling_operands():
    # the accumulation may be reordered, but x - x must still be NaN for x = inf
    x = gf.placeholder(gf.float32, (None, None), name="x")
    out = [gf.reduce_mean(x - x, axis=-1), gf.reduce_sum(x * 0.0, axis=0), gf.reduce_max(x - x, axis=-1)]
    xv = np.array([[np.inf, 1.0, 2.0], [1.0, 2.0, 3.0]], np.float32)
    got = gf.Session(opt_level=2).run(out, {x: xv})
    ref = gf.Session(opt_level=0).run(out, {x: xv})
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_ops_with_control_dependencies_fuse_and_keep_their_ordering():
    x = gf.placeholder(gf.float32, (None,), name="x")
    first = gf.exp(x)
    marker = gf.no_op(name="marker")
    with gf.control_dependencies([marker, first.op]):
        y = gf.tanh(x) * 2.0
    c, ks = _kernels([first, y], [x])
    fused = [n for n in c.program.nodes if n.op == "Fused"]
    assert sum(len(k["members"]) for k in ks) == 3
    holder = next(n for n in fused if y.op.name in n.attrs["kernel"].members)
    marker_id = next(n.id for n in c.program.nodes if n.name == "marker")
    assert marker_id in holder.control
    _agree([first, y], {x: RNG.standard_normal(40).astype(np.float32)})


def test_cond_branches_are_fused_in_the_same_module():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    p = gf.placeholder(gf.bool, (), name="p")
    y = gf.cond(p, lambda: gf.nn.softmax(x * 2.0), lambda: gf.tanh(x) + 1.0)
    c, ks = _kernels(y, [x, p])
    assert sorted(k["kind"] for k in ks) == ["elementwise", "row"]
    assert all(f'define void @"{k["name"]}"' in c.llvm_ir for k in ks)
    xv = RNG.standard_normal((5, 8)).astype(np.float32)
    for pv in (True, False):
        _agree(y, {x: xv, p: pv})


def test_conv2d_bias_relu_is_one_epilogue_kernel_blocked_over_the_batch():
    x = gf.placeholder(gf.float32, (None, 9, 7, 4), name="x")
    w = gf.constant(RNG.standard_normal((3, 3, 4, 6)).astype(np.float32) * 0.2)
    b = gf.constant(RNG.standard_normal(6).astype(np.float32))
    y = gf.nn.relu(gf.nn.conv2d(x, w, strides=2, padding="SAME") + b)
    c, ks = _kernels(y, [x])
    assert len(ks) == 1 and ks[0]["kind"] == "epilogue" and len(ks[0]["members"]) == 3
    xv = RNG.standard_normal((13, 9, 7, 4)).astype(np.float32)
    _agree(y, {x: xv}, rtol=1e-5, atol=1e-5)
    with gf.Session(num_threads=3) as sess:
        np.testing.assert_allclose(sess.run(y, {x: xv}), gf.Session(opt_level=0).run(y, {x: xv}), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ta,tb", [(True, False), (False, True), (True, True)])
def test_transposed_matmul_epilogues(ta, tb):
    a = gf.placeholder(gf.float64, (7, None) if ta else (None, 7), name="a")
    w = gf.constant(RNG.standard_normal((5, 7) if tb else (7, 5)))
    out = gf.tanh(gf.matmul(a, w, transpose_a=ta, transpose_b=tb) * 0.5) - 1.0
    _, ks = _kernels(out, [a])
    assert [k["kind"] for k in ks] == ["epilogue"]
    av = RNG.standard_normal((7, 300) if ta else (300, 7))
    _agree(out, {a: av}, rtol=1e-12, atol=1e-12)


def test_a_kernel_without_llvm_lowering_keeps_its_numpy_evaluation(monkeypatch, tmp_path):
    from graphflow.compiler.codegen import scalar_llvm
    from graphflow.errors import UnimplementedError

    def no_lowering(self, x):
        raise UnimplementedError("erf: no lowering in this test")

    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(tmp_path))   # keep the crippled module out of the real cache
    monkeypatch.setattr(scalar_llvm.LLVMScalarBuilder, "erf", no_lowering)
    x = gf.placeholder(gf.float32, (None,), name="x_unlowered")
    y = gf.add(gf.erf(x), 1.0, name="erf_plus_one_unlowered")
    z = gf.multiply(gf.tanh(x), 2.0, name="tanh_twice_unlowered")
    c, ks = _kernels([y, z], [x])
    vec = {k["outputs"][0]: k["vectorized"] for k in ks}
    assert vec[y.name] is None and vec[z.name] is True
    assert any("no LLVM lowering" in n for n in c.report_data.notes)
    _agree([y, z], {x: np.linspace(-3, 3, 50).astype(np.float32)})


def test_scalar_outputs_of_a_kernel_over_an_empty_domain_are_still_computed():
    p0 = gf.placeholder(gf.float64, (None, None), name="p0")
    p1 = gf.placeholder(gf.float64, (), name="p1")
    e = gf.exp(gf.tanh(p1))
    o = gf.maximum(p0, e)
    out = gf.exp(o - gf.reduce_min(o, axis=-1, keepdims=True))
    for shape in ((0, 3), (3, 0)):
        got = _agree([out, e], {p0: np.zeros(shape), p1: np.float64(0.5)})
        np.testing.assert_allclose(got[1], np.exp(np.tanh(0.5)), rtol=1e-14)


def test_tiny_problems_of_few_ops_take_the_numpy_evaluation_unless_bound(monkeypatch):
    """A tiny problem of a few ops is cheaper in numpy than an unbound compiled call: a plan
    calls that evaluation directly for static shapes (`static_call`); `run` binds the one
    compiled call to its operands instead, and a bound call is cheaper than either."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "SMALL_ELEMENTS", 1024)
    x, y, _ = _w1()
    out = x * y + 1.0                       # 2 ops: cheaper in numpy than a compiled call
    c, _ = _kernels(out, [x, y])
    k = next(n for n in c.program.nodes if n.op == "Fused").attrs["kernel"]
    small = [np.arange(5, dtype=np.float32)] * 2
    big = [np.arange(5000, dtype=np.float32)] * 2
    assert k._analysis(((5,), (5,)))[2] and not k._analysis(((5000,), (5000,)))[2]
    assert k.static_call([(5,), (5,)]) is not None and k.static_call([(5000,), (5000,)]) is None
    np.testing.assert_array_equal(k.static_call([(5,), (5,)])(*small)[0], small[0] * small[1] + 1)
    np.testing.assert_array_equal(k.run(small)[0], small[0] * small[1] + 1)
    assert k._direct is not None and k._direct.shapes == ((5,), (5,), (5,))
    np.testing.assert_array_equal(k.run(big)[0], big[0] * big[1] + 1)


def test_two_groups_joined_through_a_third_kernel_do_not_merge_into_a_cycle():
    """Regression: on this random graph (many consumers, row reductions) a merge of two
    groups passed the node-level convexity check while a path ran from one group through
    a member of another group (itself one kernel) back into the union: a cycle between
    kernels ('fuse: the rewritten program has a cycle'). Convexity is now checked per group."""
    from test_runtime_plan import _random_graph

    rng = np.random.default_rng(30)
    x = gf.placeholder(gf.float32, (None, 5), name="x")
    pool = _random_graph(rng, x, 30)
    picks = sorted(set(rng.integers(2, len(pool), size=3).tolist())) + [len(pool) - 1]
    fetches = [pool[i] for i in picks]
    c, kernels = _kernels(fetches, [x])
    assert kernels and any(len(k["members"]) > 1 for k in kernels)
    _agree(fetches, {x: RNG.uniform(-1, 1, (4, 5)).astype(np.float32)})


def test_a_training_step_whose_fused_plan_would_peak_higher_is_fused_again_keeping_lifetimes():
    """Fusing each ReLU gradient's mask into its forward ReLU kernel computes the mask in the
    forward pass and keeps it alive through the whole backward pass: the training step's
    plan peaks above the unfused one. The plan then fuses again with the planner's
    `keep_lifetimes` (no member computed before an outside reader of its group), which
    keeps the kernels and lowers the peak below the unfused plan's."""
    sizes = (16, 8, 8, 4)
    x = gf.placeholder(gf.float32, (None, sizes[0]), name="x")
    labels = gf.placeholder(gf.int32, (None,), name="labels")
    h = x
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = gf.Variable(RNG.normal(size=(a, b)).astype(np.float32) * 0.1)
        h = gf.matmul(h, w) + gf.Variable(np.zeros(b, np.float32))
        h = gf.nn.relu(h) if i < len(sizes) - 2 else h
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=h))
    params = gf.trainable_variables()   # SGD spelled with AssignSub (whose new values the peak leaves out)
    train = gf.group(*[v.assign_sub(0.01 * g) for v, g in zip(params, gf.gradients(loss, params))])
    data = RNG.uniform(-1, 1, (5, sizes[0])).astype(np.float32), np.array([0, 1, 2, 3, 0], np.int32)
    with gf.Session(opt_level=0) as ref:
        ref.run(gf.global_variables_initializer())
        want = ref.run(loss, dict(zip([x, labels], data)))
    with gf.Session(opt_level=2) as sess:
        sess.run(gf.global_variables_initializer())
        got = sess.make_callable([loss, train], [x, labels])(*data)[0]
        report = next(p for p in sess._plans.values() if p.report.kernels).report
    assert report.peak_memory_bytes < report.unfused_peak_memory_bytes
    assert any("fusion planned again" in n for n in report.notes)
    forward = [k for k in report.kernels if any(m.endswith("Relu") for m in k["members"])]
    assert forward and not any("_grad" in m for k in forward for m in k["members"])
    assert len(report.kernels) > 4 and not report.unfused.get("gradients/Relu_grad/Select")
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_keep_lifetimes_leaves_a_consumer_out_of_a_group_read_earlier_outside():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    w = gf.constant(RNG.normal(size=(8, 8)).astype(np.float32))
    h = gf.nn.relu(x * 2.0)
    later = gf.matmul(h, w)                 # reads h before the mask is needed
    mask = gf.cast(h > 0.0, gf.float32)      # reads h, created after the matmul
    out = later * mask
    from graphflow.compiler.pipeline import build_program

    program, _ = build_program(gf.get_default_graph(), [out], [], [x], 1)
    group_of = {}
    for keep in (False, True):
        groups = planner_mod.Planner(program, keep_lifetimes=keep).plan()
        names = [{program.node(m).name for m in g.members} for g in groups]
        group_of[keep] = next(n for n in names if h.op.name in n)
    assert mask.op.inputs[0].op.name in group_of[False]          # the Greater joins the ReLU by default
    assert mask.op.inputs[0].op.name not in group_of[True]       # but not when lifetimes are kept


def test_a_per_row_value_expanded_before_an_elementwise_op_joins_the_row_reduction_after_it():
    """expand_dims(labels) meets the logits in an elementwise (N, C) op, where an (N, 1) value
    does not fit; the row sum after that op makes the kernel's domain rows, and the reshape
    then joins it instead of running as a Python kernel between two compiled ones."""
    x = gf.placeholder(gf.float32, (None, 10), name="x")
    y = gf.placeholder(gf.int32, (None,), name="y")
    e = gf.expand_dims(y, -1)
    picked = gf.reduce_sum(gf.where(gf.equal(e, gf.range(10, dtype=gf.int32)), x, gf.zeros_like(x)), axis=-1)
    c, ks = _kernels(picked, [x, y])
    (k,) = [k for k in ks if picked.op.name in k["members"]]
    assert e.op.name in k["members"] and e.op.name not in c.report_data.unfused
    xv, yv = RNG.standard_normal((37, 10)).astype(np.float32), RNG.integers(0, 10, 37).astype(np.int32)
    got = _agree(picked, {x: xv, y: yv})
    np.testing.assert_array_equal(got, xv[np.arange(37), yv])
