"""`gf.compile` and CompiledGraph: stats, the report text, Graphviz, JSON, LLVM IR."""
import dataclasses
import json

import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.compiled import CompiledGraph
from graphflow.errors import InvalidArgumentError


def build():
    x = gf.placeholder(gf.float32, (None, 3), name="x")
    scale = gf.constant([1.0, 2.0, 3.0], name="scale") * 2.0        # folded
    h = gf.exp(x * 1.0, name="h")                                    # x * 1.0 simplified
    twin = gf.exp(x * 1.0, name="twin")                              # merged with h
    unused = gf.sqrt(x, name="unused")                               # pruned
    with gf.name_scope("loss"):
        loss = gf.reduce_mean((h + twin) * scale)
    return x, loss, unused


def test_stats_and_report_name_every_decision():
    x, loss, _ = build()
    c = gf.compile(loss, feed_list=[x], opt_level=1)
    assert isinstance(c, CompiledGraph)
    s = c.stats
    for key in ("ops_before", "ops_after", "kernels", "fused_ops"):
        assert key in s
    assert s["ops_before"] > s["ops_after"] >= 1
    assert s["kernels"] == 0 and s["fused_ops"] == 0
    assert s["folded"] >= 1 and s["merged"] >= 1 and s["simplified"] >= 1 and s["pruned"] >= 1
    text = c.report()
    for word in ("unused", "scale", "twin", "mul_2", "folded", "merged", "simplified", "pruned",
                 "fold_constants", "cse", "simplify", "ms, ops", "opt_level 1: no fusion", "loss/Mean"):
        assert word in text, word
    for name in c.report_data.unfused:
        assert name in text


def test_compile_defaults_and_fetch_forms():
    x, loss, unused = build()
    c = gf.compile([loss, "unused:0", {"h": unused}], feed_list=["x:0"])
    assert c.opt_level == 2
    assert c.fetch_names == ["loss/Mean:0", "unused:0", "unused:0"]
    assert "unused" not in c.report_data.names("pruned")


def test_compile_checks_feeds_like_a_session():
    x, loss, _ = build()
    other = gf.placeholder(gf.float32, (), name="other")
    with pytest.raises(InvalidArgumentError, match="x \\(placeholder, needs a feed\\)"):
        gf.compile(loss, feed_list=[other], opt_level=1)
    # without a feed_list, the placeholders the fetches need are the feeds (as the CLI does)
    assert gf.compile(loss, opt_level=1).feed_names == ["x:0"]


def test_compile_matches_what_the_session_runs():
    x, loss, _ = build()
    data = np.array([[0.5, -0.0, np.inf], [np.nan, 1.0, -2.0]], np.float32)
    c = gf.compile(loss, feed_list=[x], opt_level=1)
    with gf.Session(opt_level=1) as sess:
        np.testing.assert_array_equal(sess.run(loss, {x: data}), c._session.run(loss, {x: data}))
    ops = sorted(n.op for n in c.program.nodes)
    assert ops == ["Add", "Const", "Exp", "Feed", "Mean", "Mul"]


def test_llvm_ir_is_empty_below_level_2():
    x, loss, _ = build()
    for level in (0, 1):
        assert gf.compile(loss, feed_list=[x], opt_level=level).llvm_ir == ""


def test_to_json_is_plain_json():
    x, loss, _ = build()
    doc = gf.compile(loss, feed_list=[x], opt_level=1).to_json()
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    assert back["outputs"] == ["loss/Mean:0"]
    kinds = {n["op"] for n in back["nodes"]}
    assert {"Feed", "Const", "Exp", "Mean"} <= kinds
    const = [n for n in back["nodes"] if n["op"] == "Const"][0]
    assert const["attrs"]["value"]["shape"] == [3]


def test_to_json_handles_non_finite_constants():
    y = gf.placeholder(gf.float32, (2,), name="y") + gf.constant([np.nan, -np.inf])
    doc = gf.compile(y, feed_list=["y:0"], opt_level=1).to_json()
    json.dumps(doc, allow_nan=False)


def test_to_dot_lists_nodes_and_edges():
    x, loss, _ = build()
    dot = gf.compile(loss, feed_list=[x], opt_level=1).to_dot()
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert '"loss/Mean\\nMean' in dot and "->" in dot
    assert "cluster" not in dot


def test_to_dot_draws_kernels_as_clusters():
    """A kernel recorded in the report (as fusion does) becomes a cluster of its members."""
    x, loss, _ = build()
    c = gf.compile(loss, feed_list=[x], opt_level=1)
    add = [n for n in c.program.nodes if n.op == "Add"][0]
    report = dataclasses.replace(c.report_data, kernels=[
        {"name": add.name, "members": ["h", add.name], "inputs": ["x:0"], "outputs": [f"{add.name}:0"],
         "vectorized": True, "kind": "elementwise"}])
    fused = CompiledGraph(c.graph, c.fetch_names, c.feed_names, 2, c.program, report, 0.0)
    dot = fused.to_dot()
    assert f"subgraph cluster_{add.id}" in dot
    assert f'"{add.name} [elementwise]"' in dot
    assert fused.stats["kernels"] == 1 and fused.stats["fused_ops"] == 2
    text = fused.report()
    assert f"kernel {add.name} [elementwise, vectorized]: h, {add.name}" in text


def test_compile_of_an_operation_and_variables():
    v = gf.Variable([1.0, 2.0], name="v")
    step = v.assign_add([1.0, 1.0])
    c = gf.compile([gf.global_variables_initializer(), step], opt_level=1)
    assert "AssignAdd" in {n.op for n in c.program.nodes}
    assert c.stats["ops_after"] >= 3


def test_level_2_report_shows_kernels_clusters_and_ir():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    y = gf.exp(gf.constant(2.0) * gf.tanh(x)) + x
    c = gf.compile(y, feed_list=[x])
    s = c.stats
    assert s["kernels"] >= 1 and s["fused_ops"] >= 3 and s["ops_after"] < s["ops_before"]
    text, dot = c.report(), c.to_dot()
    for k in c.report_data.kernels:
        assert f"kernel {k['name']}" in text and ", ".join(k["members"]) in text
    for name, why in c.report_data.unfused.items():
        assert f"{name}: {why}" in text
    assert "subgraph cluster_" in dot and "n0 -> " in dot
    assert "define" in c.llvm_ir
    json.dumps(c.to_json(), allow_nan=False)
