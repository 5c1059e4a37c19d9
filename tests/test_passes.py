"""Unit tests of each compiler pass: which nodes remain (structure) and bit-exact values.

Values are compared bit for bit (NaN positions, then the raw bits of everything else), on
inputs that include NaN, +-inf and -0.0, between opt_level 0 (no passes) and opt_level 1.
"""
import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.pipeline import build_program
from graphflow.errors import InvalidArgumentError

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-38, -3.5, 2.0 ** -140, 7.25, -1e30],
                   dtype=np.float32)


def optimize(fetches, feeds=(), opt_level=1, disable=(), targets=()):
    fetches = fetches if isinstance(fetches, (list, tuple)) else [fetches]
    return build_program(gf.get_default_graph(), list(fetches), list(targets), list(feeds), opt_level, disable)


def op_types(program):
    return sorted(n.op for n in program.nodes)


def names(program):
    return {n.name for n in program.nodes}


def run(level, fetches, feed=None):
    with gf.Session(opt_level=level) as sess:
        return sess.run(fetches, feed)


def assert_bits_equal(a, b):
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_bits_equal(x, y)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    if a.dtype.kind == "f":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        np.testing.assert_array_equal(nan_a, nan_b)
        a, b = np.where(nan_a, 0, a), np.where(nan_b, 0, b)
        uint = np.dtype(f"u{a.dtype.itemsize}")
        np.testing.assert_array_equal(a.view(uint), b.view(uint))
    else:
        np.testing.assert_array_equal(a, b)


def check_same_as_level0(fetch, feed):
    assert_bits_equal(run(1, fetch, feed), run(0, fetch, feed))


# ---------------------------------------------------------------- simplify, one test per rule

@pytest.mark.parametrize("build", [lambda x: x * 1.0, lambda x: 1.0 * x, lambda x: gf.multiply(x, gf.ones((12,)))])
def test_mul_by_one_is_dropped(build):
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = build(x)
    program, report = optimize(y, [x])
    assert op_types(program) == ["Feed"]
    assert "simplified" in {e[1] for e in report.events}
    check_same_as_level0(y, {x: SPECIAL})
    assert_bits_equal(run(1, y, {x: SPECIAL}), SPECIAL)


def test_mul_by_one_that_broadcasts_stays():
    x = gf.placeholder(gf.float32, (1,), name="x")
    y = x * gf.ones((3,))
    program, _ = optimize(y, [x])
    assert "Mul" in op_types(program)
    assert run(1, y, {x: [np.nan]}).shape == (3,)
    check_same_as_level0(y, {x: [-0.0]})


def test_div_by_one_is_dropped():
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = x / 1.0
    program, _ = optimize(y, [x])
    assert op_types(program) == ["Feed"]
    check_same_as_level0(y, {x: SPECIAL})


def test_add_negative_zero_is_dropped_but_add_positive_zero_stays():
    x = gf.placeholder(gf.float32, (12,), name="x")
    exact = x + gf.constant(-0.0)
    exact_left = gf.constant(-0.0) + x
    inexact = x + 0.0
    program, _ = optimize([exact, exact_left], [x])
    assert op_types(program) == ["Feed"]
    program, _ = optimize(inexact, [x])
    assert "Add" in op_types(program)
    out = run(1, inexact, {x: SPECIAL})
    assert not np.signbit(out[1])  # -0.0 + 0.0 is +0.0, which is why the rule must not fire
    for y in (exact, exact_left, inexact):
        check_same_as_level0(y, {x: SPECIAL})


def test_sub_positive_zero_is_dropped_but_sub_negative_zero_stays():
    x = gf.placeholder(gf.float32, (12,), name="x")
    exact = x - 0.0
    inexact = x - gf.constant(-0.0)
    program, _ = optimize(exact, [x])
    assert op_types(program) == ["Feed"]
    program, _ = optimize(inexact, [x])
    assert "Sub" in op_types(program)
    for y in (exact, inexact):
        check_same_as_level0(y, {x: SPECIAL})


def test_integer_add_and_sub_zero_are_dropped():
    x = gf.placeholder(gf.int32, (4,), name="x")
    y = (x + 0) - 0
    program, _ = optimize(y, [x])
    assert op_types(program) == ["Feed"]
    v = np.array([0, -1, 2 ** 31 - 1, -2 ** 31], np.int32)
    assert_bits_equal(run(1, y, {x: v}), v)


def test_double_negation_is_dropped():
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = -(-x)
    program, _ = optimize(y, [x])
    assert op_types(program) == ["Feed"]
    check_same_as_level0(y, {x: SPECIAL})
    single = -x
    assert op_types(optimize(single, [x])[0]) == ["Feed", "Neg"]


def test_double_logical_not_is_dropped():
    b = gf.placeholder(gf.bool, (2,), name="b")
    y = gf.logical_not(gf.logical_not(b))
    program, _ = optimize(y, [b])
    assert op_types(program) == ["Feed"]
    check_same_as_level0(y, {b: [True, False]})


def test_transpose_of_transpose():
    x = gf.placeholder(gf.float32, (2, 3, 2), name="x")
    back = gf.transpose(gf.transpose(x, (1, 0, 2)), (1, 0, 2))
    composed = gf.transpose(gf.transpose(x, (1, 2, 0)), (1, 0, 2))
    assert op_types(optimize(back, [x])[0]) == ["Feed"]
    program, _ = optimize(composed, [x])
    assert op_types(program) == ["Feed", "Transpose"]
    v = SPECIAL.reshape(2, 3, 2)
    for y in (back, composed):
        check_same_as_level0(y, {x: v})
    assert_bits_equal(run(1, composed, {x: v}), np.transpose(np.transpose(v, (1, 2, 0)), (1, 0, 2)))


def test_identity_transpose_is_dropped():
    x = gf.placeholder(gf.float32, (3, 4), name="x")
    y = gf.transpose(x, (0, 1))
    assert op_types(optimize(y, [x])[0]) == ["Feed"]


def test_reshape_of_reshape():
    x = gf.placeholder(gf.float32, (12,), name="x")
    twice = gf.reshape(gf.reshape(x, (3, 4)), (2, 6))
    back = gf.reshape(gf.reshape(x, (3, 4)), (12,))
    program, _ = optimize(twice, [x])
    assert op_types(program) == ["Feed", "Reshape"]
    assert program.nodes[-1].inputs[0][0] == program.feeds[0]
    assert op_types(optimize(back, [x])[0]) == ["Feed"]
    for y in (twice, back):
        check_same_as_level0(y, {x: SPECIAL})


def test_cast_to_same_dtype_is_dropped_other_casts_stay():
    x = gf.placeholder(gf.float32, (12,), name="x")
    same = gf.cast(x, gf.float32)
    other = gf.cast(x, gf.float64)
    assert op_types(optimize(same, [x])[0]) == ["Feed"]
    assert op_types(optimize(other, [x])[0]) == ["Cast", "Feed"]
    check_same_as_level0(same, {x: SPECIAL})


def test_identity_chain_is_dropped():
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = gf.identity(gf.stop_gradient(gf.identity(gf.identity(x))))
    program, report = optimize(y, [x])
    assert op_types(program) == ["Feed"]
    assert len(report.names("simplified")) == 4
    check_same_as_level0(y, {x: SPECIAL})


def test_identity_with_control_dependency_stays():
    v = gf.Variable(0.0, name="v")
    x = gf.placeholder(gf.float32, (), name="x")
    inc = v.assign_add(1.0)
    with gf.control_dependencies([inc]):
        y = gf.identity(x)
    program, _ = optimize(y, [x])
    assert "Identity" in op_types(program) and "AssignAdd" in op_types(program)
    with gf.Session(opt_level=1) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(y, {x: 1.0})
        sess.run(y, {x: 1.0})
        assert sess.run(v) == 2.0


def test_broadcast_to_own_shape_is_dropped():
    x = gf.placeholder(gf.float32, (12,), name="x")
    same = gf.broadcast_to(x, (12,))
    wider = gf.broadcast_to(x, (2, 12))
    assert op_types(optimize(same, [x])[0]) == ["Feed"]
    assert "BroadcastTo" in op_types(optimize(wider, [x])[0])


@pytest.mark.parametrize("build", [lambda x: x * 0.0, lambda x: x - x, lambda x: x * gf.zeros((12,))])
def test_unsafe_float_identities_are_not_applied(build):
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = build(x)
    program, _ = optimize(y, [x])
    assert len(program) >= 2 and any(n.op in ("Mul", "Sub") for n in program.nodes)
    out = run(1, y, {x: SPECIAL})
    assert np.isnan(out[np.isinf(SPECIAL) | np.isnan(SPECIAL)]).all()
    check_same_as_level0(y, {x: SPECIAL})


def test_simplify_can_be_switched_off():
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = -(-x) * 1.0
    program, report = optimize(y, [x], disable=("simplify",))
    assert op_types(program) == ["Const", "Feed", "Mul", "Neg", "Neg"]
    assert not report.names("simplified")


# ---------------------------------------------------------------- fold_constants

def test_constant_expression_folds_to_one_const():
    a = gf.constant([1.0, -0.0, np.inf], name="a")
    b = gf.constant([2.0, 3.0, -1.0], name="b")
    y = gf.exp(a * b) + gf.reduce_sum(b)
    program, report = optimize(y)
    assert op_types(program) == ["Const"]
    assert program.nodes[0].name == y.op.name
    assert y.op.name in report.names("folded")
    assert {"a", "b"} <= set(report.names("pruned"))
    check_same_as_level0(y, None)


def test_fold_keeps_placeholders_feeds_and_partial_inputs():
    x = gf.placeholder(gf.float32, (3,), name="x")
    c = gf.constant([1.0, 2.0, 3.0]) * 2.0
    y = x + c
    program, _ = optimize(y, [x])
    assert op_types(program) == ["Add", "Const", "Feed"]
    check_same_as_level0(y, {x: SPECIAL[:3]})


def test_fold_size_cap_leaves_big_fill_alone():
    big = gf.ones((20000, 20000), name="big")
    total = gf.reduce_sum(big)
    program, report = optimize(total)  # compile only: running it would allocate 1.6 GB
    assert op_types(program) == ["Fill", "Sum"]
    capped = [e for e in report.events if e[1] == "not folded" and "size cap" in (e[3] or "")]
    assert capped and capped[0][2] == ["big"]
    assert "size cap" in report.render()


def test_plans_built_over_a_big_fill_stay_small():
    """The runtime honours the same cap: building a Session plan (or gf.compile's) over
    fetches that need `ones((20000, 20000))` evaluates nothing that big; the Fill runs
    per run, as the compiler left it."""
    import tracemalloc

    big = gf.ones((20000, 20000), name="big")
    total = gf.reduce_sum(big)
    small = gf.ones((3,), name="small") * 2.0
    tracemalloc.start()
    try:
        for opt_level in (0, 1, 2):
            with gf.Session(opt_level=opt_level) as sess:
                sess.make_callable([total, small])   # builds the plan, runs nothing
                plan = next(iter(sess._plans.values()))
                assert any(st.node.name == "big" for st in plan.execution.steps)
        gf.compile([total, small])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"building the plans allocated {peak} bytes"
    with gf.Session() as sess:   # small sources are still evaluated once, at build time
        np.testing.assert_array_equal(sess.run(small), [2.0, 2.0, 2.0])


def test_fold_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_FOLD_LIMIT_BYTES", "8")
    y = gf.ones((4,)) * 2.0
    program, report = optimize(y)
    assert "Const" not in [n.op for n in program.nodes if n.name == y.op.name]
    assert any(e[1] == "not folded" for e in report.events)


def test_random_ops_are_never_folded():
    r = gf.random.normal((4,), seed=3) * 2.0
    program, _ = optimize(r)
    assert "RandomNormal" in op_types(program)
    with gf.Session(opt_level=1) as sess:
        assert not np.array_equal(sess.run(r), sess.run(r))


def test_stateful_ops_are_never_folded():
    v = gf.Variable([1.0, 2.0], name="v")
    y = v * 3.0
    program, _ = optimize(y)
    assert "VariableV2" in op_types(program)
    with gf.Session(opt_level=1) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(v.assign([5.0, 6.0]))
        np.testing.assert_array_equal(sess.run(y), [15.0, 18.0])


def test_fold_keeps_control_dependencies_of_folded_inputs():
    v = gf.Variable(0.0, name="v")
    inc = v.assign_add(1.0)
    with gf.control_dependencies([inc]):
        k = gf.constant(2.0, name="k")
    y = k * 3.0
    program, _ = optimize(y)
    folded = [n for n in program.nodes if n.name == y.op.name][0]
    assert folded.op == "Const" and folded.control
    assert "AssignAdd" in op_types(program)
    with gf.Session(opt_level=1) as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run(y) == 6.0
        sess.run(y)
        assert sess.run(v) == 2.0


def test_shape_only_inputs_fold_from_static_shapes():
    x = gf.placeholder(gf.float32, (2, 3), name="x")
    z = gf.zeros_like(x) + 1.0
    s = gf.shape(x)
    program, _ = optimize([z, s], [x])
    assert op_types(program) == ["Const", "Const", "Feed"]
    check_same_as_level0([z, s], {x: np.zeros((2, 3), np.float32)})


def test_shape_only_input_with_side_effect_upstream_is_waited_on():
    v = gf.Variable(np.zeros((2,), np.float32), name="v")
    inc = v.assign_add([1.0, 1.0])
    z = gf.zeros_like(inc)
    program, _ = optimize(z)
    assert "AssignAdd" in op_types(program)
    with gf.Session(opt_level=1) as sess:
        sess.run(gf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(z), [0.0, 0.0])
        np.testing.assert_array_equal(sess.run(v), [1.0, 1.0])


def test_kernel_errors_are_left_for_the_run():
    params = gf.constant([1.0, 2.0])
    bad = gf.gather(params, gf.constant([5]))
    program, report = optimize(bad)
    assert "Gather" in op_types(program)
    for level in (0, 1):
        with pytest.raises(InvalidArgumentError):
            run(level, bad)


# ---------------------------------------------------------------- cse

def test_cse_merges_identical_subexpressions():
    x = gf.placeholder(gf.float32, (12,), name="x")
    a = gf.exp(x) + 2.0
    b = gf.exp(x) + 2.0
    y = a * b
    program, report = optimize(y, [x])
    assert op_types(program) == ["Add", "Const", "Exp", "Feed", "Mul"]
    mul = program.nodes[-1]
    assert mul.inputs[0] == mul.inputs[1]
    assert len(report.names("merged")) == 3  # exp, the constant 2.0, add
    check_same_as_level0(y, {x: SPECIAL})


def test_cse_compares_constants_bit_for_bit():
    x = gf.placeholder(gf.float32, (12,), name="x")
    outs = [gf.maximum(x, gf.constant(v)) for v in (0.0, -0.0, np.nan, np.nan, 0.0)]
    program, _ = optimize(outs, [x], disable=("simplify",))
    assert op_types(program).count("Const") == 3  # +0.0, -0.0, NaN
    assert op_types(program).count("Maximum") == 3
    check_same_as_level0(outs, {x: SPECIAL})


def test_cse_tells_attributes_apart():
    x = gf.placeholder(gf.float32, (2, 3, 4), name="x")
    same = [gf.transpose(x, (2, 0, 1)) for _ in range(2)]
    other = gf.transpose(x, (1, 0, 2))
    sums = [gf.reduce_sum(x, axis=1), gf.reduce_sum(x, axis=1, keepdims=True), gf.reduce_sum(x, axis=1)]
    program, _ = optimize(same + [other] + sums, [x])
    assert op_types(program).count("Transpose") == 2
    assert op_types(program).count("Sum") == 2


def test_cse_never_merges_random_ops():
    a = gf.random.uniform((3,), seed=7)
    b = gf.random.uniform((3,), seed=7)
    program, _ = optimize([a, b])
    assert op_types(program).count("RandomUniform") == 2
    va, vb = run(1, [a, b])
    assert not np.array_equal(va, vb)


def test_cse_never_merges_stateful_ops():
    v = gf.Variable(0.0, name="v")
    u1, u2 = v.assign_add(1.0), v.assign_add(1.0)
    step = gf.group(u1, u2)
    program, _ = optimize([], targets=[step])
    assert op_types(program).count("AssignAdd") == 2
    with gf.Session(opt_level=1) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(step)
        assert sess.run(v) == 2.0


def test_cse_keeps_nodes_with_different_control_dependencies():
    v = gf.Variable(0.0, name="v")
    x = gf.placeholder(gf.float32, (), name="x")
    plain = x + 1.0
    with gf.control_dependencies([v.assign_add(1.0)]):
        after = x + 1.0
    program, _ = optimize([plain, after], [x], disable=("fold_constants",))
    assert op_types(program).count("Add") == 2


# ---------------------------------------------------------------- prune

def test_prune_keeps_only_what_fetches_need():
    x = gf.placeholder(gf.float32, (3,), name="x")
    unused = gf.exp(x, name="unused")
    y = gf.sqrt(x, name="y")
    program, report = optimize(y, [x], opt_level=0)
    assert names(program) == {"x:0", "y"}
    assert "unused" in report.names("pruned")


def test_feeds_cut_the_graph():
    x = gf.placeholder(gf.float32, (3,), name="x")
    h = gf.exp(x, name="h")
    y = gf.log(h, name="y")
    program, _ = optimize(y, [h], opt_level=0)  # x need not be fed: h is
    assert names(program) == {"h:0", "y"}
    np.testing.assert_allclose(run(1, y, {h: [1.0, 2.0, 3.0]}), np.log([1.0, 2.0, 3.0]))


def test_prune_keeps_control_dependencies():
    v = gf.Variable(0.0, name="v")
    x = gf.placeholder(gf.float32, (), name="x")
    with gf.control_dependencies([v.assign_add(1.0)]):
        y = x * 2.0
    for level in (0, 1):
        program, _ = optimize(y, [x], opt_level=level)
        assert "AssignAdd" in op_types(program)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_missing_feed_error_shows_the_chain(level):
    x = gf.placeholder(gf.float32, (None, 3), name="x")
    with gf.name_scope("loss"):
        loss = gf.reduce_mean(gf.square(x - 1.0))
    with pytest.raises(InvalidArgumentError) as info:
        with gf.Session(opt_level=level) as sess:
            sess.run(loss)
    msg = str(info.value)
    assert "loss/Mean:0 <- loss/Square <- loss/sub <- x (placeholder, needs a feed)" in msg
    assert "float32" in msg


def test_identity_element_rules_respect_unknown_dims():
    x = gf.placeholder(gf.float32, (None, 3), name="x")
    scalar_one = x * 1.0
    row_of_ones = x * gf.ones((1, 3))
    may_broadcast = x * gf.ones((2, 3))  # x may have 1 row at run time: the result has 2
    higher_rank = x * gf.ones((1, 1, 3))
    assert op_types(optimize([scalar_one, row_of_ones], [x])[0]) == ["Feed"]
    for y in (may_broadcast, higher_rank):
        assert "Mul" in op_types(optimize(y, [x])[0])
    v = np.array([[np.nan, -0.0, np.inf]], np.float32)
    assert run(1, may_broadcast, {x: v}).shape == (2, 3)
    check_same_as_level0([scalar_one, row_of_ones, may_broadcast, higher_rank], {x: v})


@pytest.mark.parametrize("fn", [gf.abs, gf.floor, gf.ceil, gf.round, gf.sign, gf.nn.relu, gf.nn.relu6])
def test_idempotent_op_applied_twice_keeps_one(fn):
    x = gf.placeholder(gf.float32, (12,), name="x")
    y = fn(fn(x))
    program, _ = optimize(y, [x])
    assert len(program) == 2 and program.nodes[-1].inputs == ((program.feeds[0], 0),)
    check_same_as_level0(y, {x: SPECIAL})
    assert_bits_equal(run(1, y, {x: SPECIAL}), run(0, fn(x), {x: SPECIAL}))


def test_same_operand_binary_ops_are_dropped():
    x = gf.placeholder(gf.float32, (None, 12), name="x")
    b = gf.placeholder(gf.bool, (3,), name="b")
    floats = [gf.maximum(x, x), gf.minimum(x, x)]
    bools = [gf.logical_and(b, b), gf.logical_or(b, b)]
    assert op_types(optimize(floats + bools, [x, b])[0]) == ["Feed", "Feed"]
    assert "Maximum" in op_types(optimize(gf.maximum(x, -x), [x])[0])
    check_same_as_level0(floats + bools, {x: SPECIAL[None, :], b: [True, False, True]})


def test_where_with_equal_branches_is_dropped_unless_the_condition_broadcasts():
    x = gf.placeholder(gf.float32, (12,), name="x")
    c = gf.placeholder(gf.bool, (12,), name="c")
    wide = gf.placeholder(gf.bool, (2, 12), name="wide")
    same = gf.where(c, x, x)
    broadcast = gf.where(wide, x, x)
    assert op_types(optimize(same, [x, c])[0]) == ["Feed", "Feed"]
    assert "Select" in op_types(optimize(broadcast, [x, wide])[0])
    cond = np.arange(12) % 2 == 0
    check_same_as_level0([same, broadcast], {x: SPECIAL, c: cond, wide: np.stack([cond, ~cond])})


def test_squeeze_of_expand_dims():
    x = gf.placeholder(gf.float32, (3, 4), name="x")
    back = gf.squeeze(gf.expand_dims(x, 1), 1)
    other_axis = gf.squeeze(gf.expand_dims(gf.expand_dims(x, 0), 2), 0)
    assert op_types(optimize(back, [x])[0]) == ["Feed"]
    assert "ExpandDims" in op_types(optimize(other_axis, [x])[0])
    v = SPECIAL.reshape(3, 4)
    check_same_as_level0([back, other_axis], {x: v})
