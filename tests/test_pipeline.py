"""The pass pipeline: order and levels, switching passes off, the fixed-point loop, the
invariant checker, timings and debug output, and that the user's graph is never changed."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler import pipeline
from graphflow.compiler.pipeline import PASSES, build_program
from graphflow.compiler.program import Node, Program
from graphflow.compiler.verify import verify
from graphflow.errors import InternalError
from graphflow.ops.registry import TensorSpec


def compile_program(fetches, feeds=(), opt_level=1, disable=()):
    return build_program(gf.get_default_graph(), list(fetches), [], list(feeds), opt_level, disable)


def test_passes_are_one_ordered_tuple_with_levels():
    names = [p.name for p in PASSES]
    assert names[:4] == ["prune", "fold_constants", "cse", "simplify"]
    assert [p.level for p in PASSES[:4]] == [0, 1, 1, 1]
    assert all(p.fixed_point for p in PASSES[1:4])
    assert len(set(names)) == len(names)


def test_build_stages_gives_the_program_of_every_level_from_one_lowering():
    assert [p.level for p in PASSES] == sorted(p.level for p in PASSES)  # what build_stages relies on
    x = gf.placeholder(gf.float32, (3,), name="x")
    y = gf.exp(x * 1.0 + gf.constant(1.0) * 2.0)
    programs, report = pipeline.build_stages(gf.get_default_graph(), [y], [], [x], 2)
    assert len(programs) == 3
    for level, program in enumerate(programs):
        alone, _ = compile_program([y], [x], opt_level=level)
        assert [n.op for n in program.nodes] == [n.op for n in alone.nodes]
    assert [p.name for p in report.passes].count("prune") == 1


def test_opt_level_0_runs_only_prune():
    x = gf.placeholder(gf.float32, (3,), name="x")
    y = x * 1.0 + gf.constant(1.0) * 2.0
    program, report = compile_program([y], [x], opt_level=0)
    assert [p.name for p in report.passes] == ["prune"]
    assert sorted(n.op for n in program.nodes).count("Const") == 3


def test_every_pass_run_is_timed_with_op_counts():
    x = gf.placeholder(gf.float32, (3,), name="x")
    y = gf.exp(x) * 1.0 + gf.exp(x)
    program, report = compile_program([y], [x])
    assert report.passes[0].name == "prune"
    assert {p.name for p in report.passes} == {"prune", "fold_constants", "cse", "simplify"}
    for p in report.passes:
        assert p.seconds >= 0 and p.ops_before >= p.ops_after >= 1
    assert report.passes[-1].ops_after == len(program)
    assert report.stage_seconds["passes"] > 0 and "lower" in report.stage_seconds


def test_fixed_point_loop_reaches_what_one_round_cannot():
    x = gf.placeholder(gf.float32, (4,), name="x")
    a = x * 1.0 + 2.0   # becomes x + 2.0 only after simplify ...
    b = x + 2.0         # ... and then CSE can merge it with this, in round 2
    y = a * b
    program, report = compile_program([y], [x])
    assert sorted(n.op for n in program.nodes) == ["Add", "Const", "Feed", "Mul"]
    # cse merges in round 2; the round after it reruns nothing (simplify already ran on cse's
    # program, and cse's changes alone never give fold_constants anything to do)
    assert any(p.name == "cse" and p.round == 2 and p.ops_after < p.ops_before for p in report.passes)
    assert not any(p.round >= 3 for p in report.passes)
    assert any(e[0] == "cse" and e[1] == "merged" for e in report.events)
    v = np.array([np.nan, -0.0, np.inf, 1.5], np.float32)
    with gf.Session(opt_level=0) as s0, gf.Session(opt_level=1) as s1:
        np.testing.assert_array_equal(s0.run(y, {x: v}), s1.run(y, {x: v}))


def test_fixed_point_loop_skips_a_pass_only_for_changes_it_is_unaffected_by():
    """Pass `once` changes the program in its first run only; `skip` is declared unaffected
    by it and is not rerun after that change, `rerun` (no declaration) is."""
    from graphflow.compiler.report import Report

    x = gf.placeholder(gf.float32, (4,), name="x")
    program, _ = compile_program([x * 2.0], [x], opt_level=0)
    ran = []

    def once(p, report):
        ran.append("once")
        return p.with_nodes(p.nodes) if ran.count("once") == 1 else p

    def recorder(name):
        def fn(p, report):
            ran.append(name)
            return p
        return fn

    group = [pipeline.Pass("skip", recorder("skip"), 1, True, unaffected_by=("once",)),
             pipeline.Pass("rerun", recorder("rerun"), 1, True), pipeline.Pass("once", once, 1, True)]
    report = Report()
    pipeline._fixed_point(group, program, report, pipeline._Runner(report))
    assert ran == ["skip", "rerun", "once", "rerun"]


def test_round_limit_is_reported(monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_ROUNDS", 1)
    x = gf.placeholder(gf.float32, (4,), name="x")
    y = (x * 1.0 + 2.0) * (x + 2.0)
    _, report = compile_program([y], [x])
    assert any("fixed point" in n for n in report.notes)


def test_passes_can_be_switched_off_by_argument_and_env(monkeypatch):
    x = gf.placeholder(gf.float32, (4,), name="x")
    y = (gf.exp(x) + gf.exp(x)) * 1.0
    _, report = compile_program([y], [x], disable=("cse",))
    assert "cse" not in {p.name for p in report.passes}
    monkeypatch.setenv("GRAPHFLOW_DISABLE_PASSES", "simplify, fold_constants")
    _, report = compile_program([y], [x])
    assert {p.name for p in report.passes} == {"prune", "cse"}


def test_unknown_or_required_pass_names_are_rejected(monkeypatch):
    y = gf.constant(1.0) + 1.0
    with pytest.raises(ValueError, match="unknown pass 'cs'"):
        compile_program([y], disable=("cs",))
    with pytest.raises(ValueError, match="cannot be switched off"):
        compile_program([y], disable=("prune",))
    monkeypatch.setenv("GRAPHFLOW_DISABLE_PASSES", "nope")
    with pytest.raises(ValueError, match="unknown pass 'nope'"):
        compile_program([y])


def test_compiling_never_changes_the_users_graph():
    x = gf.placeholder(gf.float32, (4,), name="x")
    y = -(-(x * 1.0)) + gf.constant(2.0) * 3.0
    g = gf.get_default_graph()
    before = [(op.name, op.type, [t.name for t in op.inputs]) for op in g.get_operations()]
    compile_program([y], [x])
    gf.compile(y, feed_list=[x], opt_level=1)
    assert [(op.name, op.type, [t.name for t in op.inputs]) for op in g.get_operations()] == before


def test_verifier_runs_after_each_pass(monkeypatch):
    def breaks_program(program, report):
        node = program.nodes[-1]
        bad = node.with_(inputs=((10 ** 6, 0),) + tuple(node.inputs[1:]))
        return program.with_nodes(program.nodes[:-1] + (bad,))

    monkeypatch.setattr(pipeline, "PASSES", PASSES + (pipeline.Pass("breaker", breaks_program, 1),))
    x = gf.placeholder(gf.float32, (4,), name="x")
    with pytest.raises(InternalError, match="after pass 'breaker'.*dangling"):
        compile_program([gf.exp(x)], [x])


def _spec(shape, dtype=np.float32):
    return TensorSpec(shape, np.dtype(dtype))


def _feed(nid, shape):
    return Node(nid, "Feed", (), {"index": 0, "spec": _spec(shape)}, (_spec(shape),), f"f{nid}")


def test_verify_accepts_a_valid_program():
    a = _feed(0, (3,))
    e = Node(1, "Exp", ((0, 0),), {}, (_spec((3,)),), "e")
    verify(Program((a, e), ((1, 0),), (), (0,)))


@pytest.mark.parametrize("case, message", [
    ("cycle", "not an earlier node"),
    ("bad_output_index", "names output 1"),
    ("wrong_shape", r"stored as float32 \(4,\)"),
    ("wrong_dtype", "stored as float64"),
    ("missing_fetch", "fetched value"),
    ("bad_control", "control dependency"),
])
def test_verify_rejects_broken_programs(case, message):
    a = _feed(0, (3,))
    e = Node(1, "Exp", ((0, 0),), {}, (_spec((3,)),), "e")
    outputs = ((1, 0),)
    if case == "cycle":
        e = e.with_(inputs=((1, 0),))
    elif case == "bad_output_index":
        e = e.with_(inputs=((0, 1),))
    elif case == "wrong_shape":
        e = e.with_(specs=(_spec((4,)),))
    elif case == "wrong_dtype":
        e = e.with_(specs=(_spec((3,), np.float64),))
    elif case == "missing_fetch":
        outputs = ((7, 0),)
    elif case == "bad_control":
        e = e.with_(control=(5,))
    with pytest.raises(InternalError, match=message):
        verify(Program((a, e), outputs, (), (0,)))


def test_debug_output_lists_each_pass(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHFLOW_DEBUG", "2")
    x = gf.placeholder(gf.float32, (4,), name="x")
    compile_program([gf.exp(x * 1.0)], [x])
    err = capsys.readouterr().err
    assert "[graphflow] simplify round 1" in err and "= Exp(" in err


def test_unfused_reason_below_level_2():
    x = gf.placeholder(gf.float32, (4,), name="x")
    y = gf.exp(x)
    _, report = compile_program([y], [x], opt_level=1)
    assert report.unfused == {y.op.name: "opt_level 1: no fusion"}


def test_passes_optimize_inside_cond_branches():
    x = gf.placeholder(gf.float32, (), name="x")
    y = gf.cond(x > 0.0, lambda: x * 1.0 + gf.constant(1.0) * 2.0,
                lambda: -(-x) - gf.cond(x < -1.0, lambda: gf.identity(x), lambda: x / 1.0))
    program, report = compile_program([y], [x])
    cond = [n for n in program.nodes if n.op == "Cond"][0]
    true_branch, false_branch = cond.attrs["branches"]
    assert sorted(n.op for n in true_branch.nodes) == ["Add", "Const", "Feed"]
    assert sorted(n.op for n in false_branch.nodes) == ["Cond", "Const", "Feed", "Less", "Sub"]
    inner = [n for n in false_branch.nodes if n.op == "Cond"][0]
    assert [sorted(n.op for n in b.nodes) for b in inner.attrs["branches"]] == [["Feed"], ["Feed"]]
    assert any("branch" in p.name for p in report.passes)
    for v in (2.0, -0.5, -2.0, np.nan):
        with gf.Session(opt_level=0) as s0, gf.Session(opt_level=1) as s1:
            np.testing.assert_array_equal(s0.run(y, {x: v}), s1.run(y, {x: v}))


def test_ten_thousand_op_graph_compiles_fast():
    import time

    x = gf.placeholder(gf.float32, (8,), name="x")
    y = x
    for i in range(2500):
        y = gf.exp(y * 1.0) + gf.constant(float(i)) * 2.0
    t0 = time.perf_counter()
    program, _ = compile_program([y], [x])
    assert time.perf_counter() - t0 < 10.0
    assert len(program) == 3 * 2500 + 1  # per step: exp, add and the folded constant
