"""What keeps a compile cheap must not change what it produces: the unfused peak's lower
bound (the plan skips sizing the unfused plan when its own peak is below it), the lazily
sized report figure, and the passes' fast paths."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphflow as gf
from graphflow.compiler import pipeline
from graphflow.compiler.program import Node
from graphflow.runtime.execution_plan import ExecutionPlan
from graphflow.runtime.plan import unfused_peak_floor

UNARY = [gf.tanh, gf.exp, gf.negative, lambda t: t * 1.5, lambda t: gf.reshape(t, (-1,)),
         lambda t: gf.transpose(t) if len(t.shape) == 2 else t, gf.identity]
BINARY = [gf.add, gf.multiply, gf.maximum, lambda a, b: gf.matmul(a, gf.transpose(b))]


@st.composite
def graphs(draw):
    """(fetches, feeds, feed values): random chains and diamonds over one fed (rows, 4) matrix
    and constants, fetching computed values, the feed itself and constants."""
    rows = draw(st.sampled_from([None, 1, 3]))
    with gf.Graph().as_default():
        return draw(_graph(rows))


@st.composite
def _graph(draw, rows):
    x = gf.placeholder(gf.float32, (rows, 4), name="x")
    values = [x, gf.constant(np.ones((rows or 3, 4), np.float32))]
    for _ in range(draw(st.integers(1, 8))):
        a = values[draw(st.integers(0, len(values) - 1))]
        if draw(st.booleans()):
            out = UNARY[draw(st.integers(0, len(UNARY) - 1))](a)
        else:
            b = values[draw(st.integers(0, len(values) - 1))]
            op = BINARY[draw(st.integers(0, len(BINARY) - 1))]
            if len(a.shape) != 2 or len(b.shape) != 2 or (a.shape[0] is None) != (b.shape[0] is None):
                continue
            try:
                out = op(a, b)
            except (ValueError, TypeError):
                continue
        values.append(out)
    picks = draw(st.lists(st.integers(0, len(values) - 1), min_size=1, max_size=3))
    return [values[i] for i in picks], x, np.arange((rows or 3) * 4, dtype=np.float32).reshape(-1, 4) / 7


@settings(max_examples=60, deadline=None)
@given(graphs())
def test_unfused_peak_floor_is_a_lower_bound(case):
    fetches, x, value = case
    graph = fetches[0].graph
    for opt_level in (0, 2):
        programs, _ = pipeline.build_stages(graph, fetches, [], [x], opt_level)
        exact = ExecutionPlan(programs[0], [x], generate=False).peak_memory_bytes()
        assert unfused_peak_floor(programs[0]) <= exact
    with gf.Session(graph=graph, opt_level=2) as sess:
        sess.run(fetches, {x: value})
        (plan,) = sess._plans.values()
        report = plan.report
        assert report.unfused_peak_memory_bytes == exact       # lazily sized or not, the same figure
        assert report.peak_memory_bytes <= report.unfused_peak_memory_bytes


def test_a_chain_skips_sizing_the_unfused_plan_until_the_report_is_read():
    x = gf.placeholder(gf.float32, (1024,), name="x")
    y = x
    for i in range(40):
        y = gf.tanh(y * 1.01) if i % 2 else y * y + 0.1
    with gf.Session(opt_level=2) as sess:
        sess.run(y, {x: np.linspace(-1, 1, 1024, dtype=np.float32)})
        (plan,) = sess._plans.values()
    report = plan.report
    assert callable(report._unfused_peak)                      # not sized while building
    programs, _ = pipeline.build_stages(x.graph, [y], [], [x], 0)
    exact = ExecutionPlan(programs[0], [x], generate=False).peak_memory_bytes()
    assert report.unfused_peak_memory_bytes == exact and report._unfused_peak == exact
    assert f"(unfused: {exact} bytes)" in report.render()


def test_node_with_copies_fields_and_rejects_unknown_ones():
    node = Node(3, "Add", ((1, 0), (2, 0)), {}, (), "add", (0,), "here")
    changed = node.with_(inputs=((2, 0), (2, 0)))
    assert changed.inputs == ((2, 0), (2, 0)) and node.inputs == ((1, 0), (2, 0))
    assert (changed.id, changed.op, changed.name, changed.control, changed.source) == (3, "Add", "add", (0,), "here")
    with pytest.raises(TypeError):
        node.with_(imputs=())
    with pytest.raises(AttributeError):
        changed.id = 4


def test_static_slot_shapes_are_what_inference_gives():
    """layout.slot_shapes answers static input shapes from the kernel's static member shapes
    (no per-member inference): they must be what each member's shape rule computes."""
    import importlib

    from graphflow.compiler.fusion import layout
    from graphflow.ops.registry import TensorSpec, get_op_def

    fuse = importlib.import_module("graphflow.compiler.fusion.fuse")
    x = gf.placeholder(gf.float32, (6, 8), name="x")
    w = gf.constant(np.ones((8, 8), np.float32))
    h = gf.nn.relu(gf.matmul(x, w) + gf.constant(np.ones(8, np.float32)))
    s = gf.nn.softmax(h * 0.5 - 1.0)
    m = gf.reduce_mean(s, axis=0, keepdims=True) * s + gf.reshape(gf.reduce_sum(h, axis=1), (6, 1))
    programs, _ = pipeline.build_stages(x.graph, [m], [], [x], 1)
    plan = fuse._Plan(programs[-1], 0)
    assert len(plan.kernels) >= 2
    for kernel in plan.kernels:
        ir = kernel.ir
        want = [tuple(o.shape) for o in ir.inputs]
        for ins in ir.instrs:
            if ins.is_const:
                want.append(tuple(ins.shape))
                continue
            specs = [TensorSpec(want[a], ir.slot_dtype(a)) for a in ins.args]
            want.append(tuple(get_op_def(ins.op).infer(specs, dict(ins.attrs)).shape))
        assert layout.slot_shapes(ir, [o.shape for o in ir.inputs]) == want
