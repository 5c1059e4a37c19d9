"""The ExecutionPlan: built once and reused, buffers reused and written in place without
aliasing bugs, buffers kept between runs of the same batch size, peak memory."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.pipeline import build_program
from graphflow.runtime import plan as plan_module
from graphflow.runtime.interpreter import Interpreter
from graphflow.runtime.state import RunState


@pytest.fixture(params=[0, 1, 2], ids=lambda level: f"O{level}")
def opt_level(request):
    return request.param


def _the_plan(sess):
    (plan,) = sess._plans.values()
    return plan


def _count_builds(monkeypatch):
    calls = []
    real = plan_module.build_plan

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "build_plan", counting)
    return calls


def test_plan_is_built_once_and_reused_across_calls_and_batch_sizes(monkeypatch, opt_level):
    builds = _count_builds(monkeypatch)
    x = gf.placeholder(gf.float32, (None, 4), name="x")
    y = gf.tanh(x * 2.0 + 1.0) * x
    with gf.Session(opt_level=opt_level) as sess:
        first = None
        for batch in (3, 3, 7, 1, 7):
            data = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32)
            np.testing.assert_allclose(sess.run(y, {x: data}), np.tanh(data * 2 + 1) * data, rtol=1e-5)
            plan = _the_plan(sess)
            first = first or plan
            assert plan is first
        f = sess.make_callable(y, [x])
        np.testing.assert_allclose(f(np.ones((2, 4), np.float32)), np.tanh(3.0) * np.ones((2, 4)), rtol=1e-5)
        assert _the_plan(sess) is first
        assert len(builds) == 1


def test_buffers_are_kept_between_runs_of_the_same_batch_size():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    h = gf.exp(x * 0.5) + x
    y = gf.reduce_sum(h * h, axis=1)
    with gf.Session(opt_level=0) as sess:
        run = sess.make_callable(y, [x])
        ex = _the_plan(sess).execution
        assert ex.n_buffers >= 1
        run(np.ones((4, 8), np.float32))
        held = [id(b) for b in ex._arenas[0]]
        run(np.zeros((4, 8), np.float32))
        assert [id(b) for b in ex._arenas[0]] == held  # nothing reallocated
        run(np.zeros((5, 8), np.float32))
        assert all(b.shape[0] == 5 for b in ex._arenas[0] if b is not None and b.ndim == 2)


def test_repeated_runs_do_not_rebuild_or_revalidate(monkeypatch):
    x = gf.placeholder(gf.float32, (2,), name="x")
    y = x + x
    with gf.Session() as sess:
        sess.run(y, {x: np.ones(2, np.float32)})

        def fail(*a, **k):
            raise AssertionError("the repeated run walked the fetches or the graph again")

        monkeypatch.setattr("graphflow.runtime.session.flatten_fetches", fail)
        monkeypatch.setattr(sess.graph, "as_graph_element", fail)
        np.testing.assert_array_equal(sess.run(y, {x: np.full(2, 3, np.float32)}), [6, 6])


def test_fetched_outputs_are_never_overwritten_by_later_runs(opt_level):
    x = gf.placeholder(gf.float32, (None,), name="x")
    a = gf.exp(x)
    b = a * 2.0
    c = gf.sqrt(b + 1.0)
    with gf.Session(opt_level=opt_level) as sess:
        first = sess.run([a, b, c], {x: np.zeros(3, np.float32)})
        second = sess.run([a, b, c], {x: np.ones(3, np.float32)})
        np.testing.assert_allclose(first[0], 1.0)
        np.testing.assert_allclose(first[1], 2.0)
        np.testing.assert_allclose(first[2], np.sqrt(3.0), rtol=1e-6)
        np.testing.assert_allclose(second[1], 2 * np.e, rtol=1e-6)
        second[0][:] = -1.0  # the caller owns its arrays: writing them changes no later run
        np.testing.assert_allclose(sess.run(a, {x: np.ones(3, np.float32)}), np.e, rtol=1e-6)


def test_fetched_feeds_constants_and_variables_are_copies(opt_level):
    x = gf.placeholder(gf.float32, (2,), name="x")
    c = gf.constant([1.0, 2.0])
    v = gf.Variable([5.0, 6.0])
    same = gf.identity(x)
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        data = np.array([3.0, 4.0], np.float32)
        xv, sv, cv, vv = sess.run([x, same, c, v], {x: data})
        for arr in (xv, sv, cv, vv):
            arr[:] = 0.0
        np.testing.assert_array_equal(data, [3.0, 4.0])
        np.testing.assert_array_equal(sess.run([c, v]), [[1.0, 2.0], [5.0, 6.0]])


# ---- differential tests: the plan (buffer reuse, in-place writes) against the reference interpreter ----

_UNARY = [gf.tanh, gf.exp, gf.negative, gf.square, gf.abs, gf.sigmoid, lambda t: gf.sqrt(gf.abs(t) + 1.0),
          gf.identity, lambda t: gf.transpose(gf.transpose(t))]
_BINARY = [gf.add, gf.subtract, gf.multiply, gf.maximum, lambda a, b: a * 0.5 + b]


def _random_graph(rng, x, n_ops=24):
    """Many consumers per tensor (each op picks any earlier tensor), row and full shapes mixed."""
    pool = [x, gf.reduce_mean(x, axis=1, keepdims=True)]
    for _ in range(n_ops):
        kind = rng.integers(4)
        if kind == 0:
            t = _UNARY[rng.integers(len(_UNARY))](pool[rng.integers(len(pool))])
        elif kind == 3:
            t = gf.reduce_max(pool[rng.integers(len(pool))], axis=1, keepdims=True)
        else:
            a, b = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
            t = _BINARY[rng.integers(len(_BINARY))](a, b)
        pool.append(t)
    return pool


def _reference(graph, fetches, feeds):
    """Values from the reference interpreter (no buffer reuse, no in-place writes)."""
    program, _ = build_program(graph, fetches, [], list(feeds), 0)
    from graphflow.runtime.state import VariableStore

    return Interpreter(program).run(list(feeds.values()), RunState(VariableStore()))


@pytest.mark.parametrize("seed", range(12))
def test_plan_matches_reference_on_random_graphs_with_fetched_intermediates(seed, opt_level):
    rng = np.random.default_rng(seed)
    x = gf.placeholder(gf.float32, (None, 5), name="x")
    pool = _random_graph(rng, x)
    picks = sorted(set(rng.integers(2, len(pool), size=4).tolist())) + [len(pool) - 1]
    fetches = [pool[i] for i in picks]
    with gf.Session(opt_level=opt_level) as sess:
        f = sess.make_callable(fetches, [x])
        kept = []
        for batch in (3, 3, 6, 1, 3):
            data = rng.uniform(-1, 1, size=(batch, 5)).astype(np.float32)
            got = f(data)
            want = _reference(sess.graph, fetches, {x: data})
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"seed {seed}")
            kept.append((got, want))
        for got, want in kept:  # earlier results are untouched by later runs
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_inplace_never_writes_a_value_still_needed():
    x = gf.placeholder(gf.float32, (None,), name="x")
    a = gf.exp(x)                   # read by b, c and d
    b = gf.tanh(a)                  # a is still live: no in-place
    c = b * a                       # b dies here: may be written in place
    d = gf.reshape(a, (-1, 1))      # a view of a keeps a's buffer alive
    e = gf.negative(c)
    out = gf.reshape(e, (-1, 1)) + d
    with gf.Session(opt_level=0) as sess:
        data = np.linspace(-1, 1, 7).astype(np.float32)
        want = (-(np.tanh(np.exp(data)) * np.exp(data))).reshape(-1, 1) + np.exp(data).reshape(-1, 1)
        for _ in range(3):
            np.testing.assert_allclose(sess.run(out, {x: data}), want, rtol=1e-6)
        assert _the_plan(sess).execution.memory.inplace_steps >= 1


def test_a_view_keeps_its_buffer_alive():
    x = gf.placeholder(gf.float32, (None, 3), name="x")
    a = gf.exp(x)
    view = gf.transpose(gf.transpose(gf.identity(a)))  # reads a only through views from here on
    b = gf.tanh(x)                                    # needs a buffer while the view is live
    out = view * 10.0 + b
    with gf.Session(opt_level=0) as sess:
        data = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
        for _ in range(2):
            np.testing.assert_allclose(sess.run(out, {x: data}), np.exp(data) * 10 + np.tanh(data), rtol=1e-6)


# ---- peak memory ----

def test_peak_memory_of_a_long_elementwise_chain_is_a_few_buffers(opt_level):
    n = 1024
    x = gf.placeholder(gf.float32, (n,), name="x")
    h = x
    for i in range(60):
        h = gf.tanh(h) * 0.9 + x if i % 2 else gf.exp(-gf.square(h))
    with gf.Session(opt_level=opt_level) as sess:
        data = np.linspace(-1, 1, n).astype(np.float32)
        sess.run(h, {x: data})
        report = _the_plan(sess).report
        one = n * 4
        assert report.peak_memory_bytes <= 4 * one
        assert report.unfused_peak_memory_bytes >= report.peak_memory_bytes
        assert _the_plan(sess).execution.n_buffers <= 3


def test_unfused_peak_is_never_lower_on_a_wide_graph():
    x = gf.placeholder(gf.float32, (256, 64), name="x")
    parts = [gf.exp(x * float(i)) for i in range(6)]
    y = gf.add_n(parts) if hasattr(gf, "add_n") else sum(parts[1:], parts[0])
    z = gf.reduce_sum(y * y, axis=1)
    with gf.Session() as sess:
        sess.run(z, {x: np.zeros((256, 64), np.float32)})
        report = _the_plan(sess).report
        assert report.peak_memory_bytes > 0
        assert report.unfused_peak_memory_bytes >= report.peak_memory_bytes


def _random_fetches(seed, n_ops=30):
    """The random graph of `seed` with a few intermediates and the last value fetched."""
    rng = np.random.default_rng(seed)
    x = gf.placeholder(gf.float32, (None, 5), name="x")
    pool = _random_graph(rng, x, n_ops)
    picks = sorted(set(rng.integers(2, len(pool), size=3).tolist())) + [len(pool) - 1]
    return x, [pool[i] for i in picks]


@pytest.mark.parametrize("seed", range(40))
def test_fused_peak_memory_is_never_above_the_unfused_plans(seed):
    x, fetches = _random_fetches(seed)
    with gf.Session(opt_level=2) as sess:
        sess.make_callable(fetches, [x])
        report = _the_plan(sess).report
    assert 0 < report.peak_memory_bytes <= report.unfused_peak_memory_bytes


@pytest.mark.parametrize("seed,fallback", [(32, "fusion planned again"), (96, "running the opt_level 1 program")])
def test_a_plan_whose_fusion_would_raise_peak_memory_falls_back_and_says_why(seed, fallback):
    """Seed 32: a fused kernel keeps three row values alive together (32 bytes at batch 1
    against 28 unfused): fusing again without computing ops early fixes it. Seed 96: that
    does not either, so the plan runs the optimized but unfused program."""
    x, fetches = _random_fetches(seed)
    data = np.random.default_rng(0).uniform(-1, 1, (3, 5)).astype(np.float32)
    with gf.Session(opt_level=2) as sess:
        got = sess.run(fetches, {x: data})
        plan = _the_plan(sess)
    report = plan.report
    assert report.peak_memory_bytes <= report.unfused_peak_memory_bytes
    assert any("above the unfused plan's" in n and fallback in n for n in report.notes)
    fused = [n for n in plan.program.nodes if n.op == "Fused"]
    assert [k["name"] for k in report.kernels] == [n.name for n in fused]
    if fallback.startswith("running"):
        assert not fused and all(why.startswith("fusion undone") for why in report.unfused.values())
    for g, w in zip(got, _reference(sess.graph, fetches, {x: data})):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_compiled_report_shows_peak_memory():
    x = gf.placeholder(gf.float32, (None, 16), name="x")
    y = gf.reduce_sum(gf.exp(x) * 2.0, axis=1)
    cg = gf.compile(y, feed_list=[x])
    assert cg.stats["peak_memory_bytes"] > 0
    assert "peak memory" in cg.report().lower()


# ---- errors ----

def test_a_failing_step_names_its_op_and_input_shapes():
    a = gf.placeholder(gf.float32, (None, None), name="a")
    b = gf.placeholder(gf.float32, (None, None), name="b")
    y = gf.matmul(a, b, name="mm") + 1.0
    with gf.Session() as sess:
        with pytest.raises(gf.errors.InvalidArgumentError, match=r"mm.*\(2, 3\), \(4, 5\)"):
            sess.run(y, {a: np.ones((2, 3), np.float32), b: np.ones((4, 5), np.float32)})
        # the failed run returned its buffers: the next one works
        np.testing.assert_array_equal(sess.run(y, {a: np.ones((2, 3), np.float32), b: np.ones((3, 1), np.float32)}),
                                      np.full((2, 1), 4.0))


def test_floating_point_warnings_stay_quiet(recwarn):
    x = gf.placeholder(gf.float32, (2,), name="x")
    y = gf.log(x) * 0.0
    before = np.geterr()
    with gf.Session() as sess:
        out = sess.run(y, {x: np.array([0.0, -1.0], np.float32)})
    assert np.isnan(out).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert np.geterr() == before  # the caller's floating-point state is left as it was


# ---- the out= contract of fused nodes (CONTRACTS.md B), with a stand-in op ----

class _SumDiff:
    """A kernel object with the fused-kernel contract: outputs (x + y, x - y)."""

    name, members, kind = "sum_diff", ("sum_diff",), "elementwise"
    inplace_ok = ((0, 0), (1, 1))

    def __init__(self):
        self.calls = []

    def output_shapes(self, input_shapes):
        s = np.broadcast_shapes(*input_shapes)
        return [s, s]

    def run(self, inputs, outputs=None, budget=None):
        x, y = inputs
        self.calls.append((outputs is not None, budget,
                           outputs is not None and any(np.shares_memory(o, i) for o in outputs for i in inputs)))
        if outputs is None:
            outputs = [np.empty(np.broadcast_shapes(x.shape, y.shape), x.dtype) for _ in range(2)]
        s = x + y
        np.subtract(x, y, out=outputs[1])
        outputs[0][...] = s
        return outputs


def _register_sum_diff():
    from graphflow.ops.registry import OpDef, OpKind, TensorSpec, get_op_def, register

    try:
        return get_op_def("TestSumDiff")
    except KeyError:
        return register(OpDef(
            type="TestSumDiff", default_name="sum_diff", kind=OpKind.OPAQUE,
            infer=lambda specs, attrs: (TensorSpec(specs[0].shape, specs[0].dtype),) * 2,
            kernel=lambda *arrays, kernel, out=None, budget=None, **_: tuple(kernel.run(list(arrays), out, budget)),
            extra={"accepts_out": True}))


@pytest.mark.parametrize("level", [0, 1])
def test_out_contract_ops_get_reused_buffers_in_place_and_the_session_budget(level):
    _register_sum_diff()
    kernel = _SumDiff()
    x = gf.placeholder(gf.float32, (None, 4), name="x")
    a, b = gf.exp(x), gf.tanh(x)
    for _ in range(4):  # a chain: each pair dies where the next pair is made
        op = gf.get_default_graph().create_op("TestSumDiff", [a, b], {"kernel": kernel})
        a, b = op.outputs
    mid = a
    op = gf.get_default_graph().create_op("TestSumDiff", [a, b], {"kernel": kernel})
    out = op.outputs[0] * 1.0
    data = np.linspace(-1, 1, 12).astype(np.float32).reshape(3, 4)
    ea, eb = np.exp(data), np.tanh(data)
    for _ in range(4):
        ea, eb = ea + eb, ea - eb
    want_mid, want_out = ea, ea + eb
    with gf.Session(opt_level=level, num_threads=2) as sess:
        for _ in range(3):
            got_mid, got_out = sess.run([mid, out], {x: data})
            np.testing.assert_allclose(got_mid, want_mid, rtol=1e-5)
            np.testing.assert_allclose(got_out, want_out, rtol=1e-5)
        assert all(budget is sess.budget for _, budget, _ in kernel.calls)
        assert any(given for given, _, _ in kernel.calls)       # buffers were handed in
        assert any(aliased for _, _, aliased in kernel.calls)   # ... and written in place


def test_a_cond_returning_a_captured_buffer_keeps_it_alive(opt_level):
    x = gf.placeholder(gf.float32, (None, 3), name="x")
    flag = gf.placeholder(gf.bool, (), name="flag")
    a = gf.exp(x)
    c = gf.cond(flag, lambda: gf.identity(a), lambda: a * 2.0)  # the true branch hands back a itself
    b = gf.tanh(x)
    out = c * 10.0 + b
    data = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    with gf.Session(opt_level=opt_level) as sess:
        for f, scale in ((True, 1.0), (False, 2.0), (True, 1.0)):
            np.testing.assert_allclose(sess.run(out, {x: data, flag: f}),
                                       np.exp(data) * scale * 10 + np.tanh(data), rtol=1e-6)
