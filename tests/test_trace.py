"""Timelines: RunOptions(trace=True) records one event per executed step, and
save_chrome_trace writes a JSON file Chrome's trace viewer and Perfetto read."""
import json

import numpy as np

import graphflow as gf
from graphflow.runtime.trace import StepEvent


def _graph():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    w = gf.Variable(np.ones((8, 4), np.float32), name="w")
    h = gf.tanh(gf.matmul(x, w) + 1.0)
    return x, gf.reduce_sum(h * h, axis=1, name="out")


def test_traced_run_records_one_event_per_step_and_writes_a_chrome_trace(tmp_path):
    x, out = _graph()
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        data = np.ones((3, 8), np.float32)
        md = gf.RunMetadata()
        got = sess.run(out, {x: data}, options=gf.RunOptions(trace=True), run_metadata=md)
        np.testing.assert_allclose(got, sess.run(out, {x: data}))
        (plan,) = [p for p in sess._plans.values() if p.program.outputs]
        steps = plan.execution.steps
        assert len(md.step_stats) == len(steps)
        assert [e.name for e in md.step_stats] == [s.node.name for s in steps]
        assert all(e.end_us >= e.start_us for e in md.step_stats)
        path = tmp_path / "trace.json"
        md.save_chrome_trace(path)
        data = json.loads(path.read_text())
    events = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert len(events) == len(steps)
    for e in events:
        assert {"name", "ts", "dur", "pid", "tid"} <= set(e)
        assert e["ts"] >= 0 and e["dur"] >= 0
    names = {e["tid"] for e in data["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {e["tid"] for e in events} <= names


def test_each_traced_run_adds_its_steps_and_untraced_runs_add_none():
    x, out = _graph()
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        md = gf.RunMetadata()
        opts = gf.RunOptions(trace=True)
        sess.run(out, {x: np.ones((2, 8), np.float32)}, options=opts, run_metadata=md)
        n = len(md.step_stats)
        sess.run(out, {x: np.ones((5, 8), np.float32)}, options=opts, run_metadata=md)
        sess.run(out, {x: np.ones((5, 8), np.float32)})
        assert len(md.step_stats) == 2 * n > 0


def test_trace_of_an_inter_op_parallel_run_names_the_threads(tmp_path):
    x = gf.placeholder(gf.float32, (64, 64), name="x")
    branches = [gf.reduce_sum(gf.exp(x * float(i)), name=f"b{i}") for i in range(4)]
    total = branches[0] + branches[1] + branches[2] + branches[3]
    with gf.Session(num_threads=3, opt_level=0) as sess:
        sess.run(total, {x: np.zeros((64, 64), np.float32)})
        (plan,) = sess._plans.values()
        ex = plan.execution
        assert ex.parallel_ok
        trace = []
        out = ex.run_steps([np.zeros((64, 64), np.float32)], trace, parallel=True)
        assert out[0] == 4 * 64 * 64
        assert len(trace) == len(ex.steps)
        md = gf.RunMetadata()
        md.step_stats.extend(StepEvent(n, op, a * 1e6, b * 1e6, t) for n, op, a, b, t in trace)
        md.save_chrome_trace(tmp_path / "t.json")
        assert len([e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"] if e["ph"] == "X"]) \
            == len(ex.steps)
