"""The `graphflow` command on the example scripts, run as a user runs it (a subprocess):
exit codes, report content, JSON, the artifacts of --output-dir, and every bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from graphflow.cli.graph_layout import BOX_H, BOX_W, layered_positions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W1 = os.path.join(REPO, "examples", "w1_elementwise.py")
MLP = os.path.join(REPO, "examples", "mlp_raw.py")
W1_OPS = ("mul", "add", "Tanh", "Sigmoid", "mul_1", "Abs", "add_1", "Sqrt", "add_2")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One kernel cache for this module's processes: later compiles of a graph load it."""
    return str(tmp_path_factory.mktemp("kernel-cache"))


@pytest.fixture
def cli(cache_dir):
    def run(*args, cwd=REPO):
        env = dict(os.environ, GRAPHFLOW_CACHE_DIR=cache_dir)
        env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
        return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=120)

    return run


def script(tmp_path, body: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text("import graphflow as gf\n" + textwrap.dedent(body))
    return str(path)


def test_compile_w1_prints_the_report(cli):
    done = cli("compile", W1)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "fetches: add_2:0" in out and "module-level `outputs`" in out
    assert "passes:" in out and "prune" in out and "fuse" in out  # ops before/after each pass
    kernel_lines = [line for line in out.splitlines() if line.startswith("kernel ")]
    assert len(kernel_lines) == 1, out  # the whole chain is one kernel
    assert all(op in kernel_lines[0] for op in W1_OPS)
    assert "stages:" in out and "codegen" in out  # compile time per stage
    assert "peak memory:" in out


def test_compile_json_has_every_section(cli):
    done = cli("compile", MLP, "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["fetches"] == ["softmax/truediv:0"]
    assert doc["feeds"] == [{"name": "x:0", "dtype": "float32", "shape": [None, 784]}]
    assert doc["stats"]["ops_before"] > doc["stats"]["ops_after"] > 0
    assert [p["name"] for p in doc["passes"]][0] == "prune"
    assert all(p["ops_before"] >= p["ops_after"] for p in doc["passes"])
    fused = {m for k in doc["kernels"] for m in k["members"]}
    assert {"dense0/MatMul", "dense0/add", "dense0/Maximum", "softmax/Exp"} <= fused
    assert doc["unfused"] and all(isinstance(r, str) and r for r in doc["unfused"].values())
    assert doc["peak_memory_bytes"] > 0 and doc["stage_seconds"]
    assert doc["report"].startswith("compiled softmax/truediv:0")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.links = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("url(#")]


def test_output_dir_writes_the_artifacts(cli, tmp_path):
    out = tmp_path / "w1"
    done = cli("compile", W1, "--output-dir", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["graph.dot", "graph.json", "kernels.ll", "report.html"]
    graph = json.loads((out / "graph.json").read_text())
    assert graph
    assert "define" in (out / "kernels.ll").read_text()
    dot = (out / "graph.dot").read_text()
    assert dot.lstrip().startswith("digraph") and "cluster" in dot
    html = (out / "report.html").read_text()
    root = ET.fromstring(html)  # well-formed (XHTML-compatible) markup
    assert root.tag.endswith("html")
    parser = _Tags()
    parser.feed(html)
    assert "svg" in parser.tags and "script" not in parser.tags and not parser.links  # self-contained
    assert "<svg" in html and "fused_0" in html
    assert all(f">{op}<" in html for op in W1_OPS)  # each member op drawn inside the kernel box
    assert "x:0" in html and "y:0" in html and ">add_2:0<" in html  # placeholders and the fetch
    assert "passes:" in html  # the report text beside the drawing


def test_opt_level_0_fuses_nothing(cli):
    done = cli("compile", W1, "--opt-level", "0", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["kernels"] == [] and doc["stats"]["kernels"] == 0 and doc["opt_level"] == 0


def test_fetch_names_and_script_prints(cli, tmp_path):
    path = script(tmp_path, """
        print("building the graph")  # must not end up in the JSON on stdout
        a = gf.placeholder(gf.float32, shape=(None, 3), name="a")
        b = gf.exp(a, name="b")
        c = gf.reduce_sum(b * 2.0, axis=1, name="c")
    """)
    done = cli("compile", path, "--fetch", "c:0", "b", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["fetches"] == ["c:0", "b:0"] and [f["name"] for f in doc["feeds"]] == ["a:0"]
    assert "building the graph" in done.stderr


def test_keras_model_compiles_and_benches(cli, tmp_path):
    path = script(tmp_path, """
        model = gf.keras.Sequential([gf.keras.Input(shape=(8,)),
                                     gf.keras.layers.Dense(16, activation="relu"),
                                     gf.keras.layers.Dense(3, activation="softmax")])
    """)
    done = cli("compile", path)
    assert done.returncode == 0, done.stderr
    assert "module-level `model` (Sequential" in done.stdout and "kernel " in done.stdout
    done = cli("bench", path, "--repeat", "3", "--batch", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["feeds"] == {"input:0": [4, 8]}
    assert result["max_abs_diff_vs_opt0"]["2"] < 1e-5


def test_bench_prints_levels_speedups_and_differences(cli):
    done = cli("bench", W1, "--batch", "4096", "--repeat", "3", "--threads", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("x:0 (4096,)" in line for line in lines) and "threads 1" in done.stdout
    for name in ("unfused (opt 0)", "optimized (opt 1)", "fused (opt 2)"):
        row = next(line for line in lines if line.startswith(name))
        assert row.count("us") + row.count("ms") >= 3  # median, min, max
    assert "speedup" in done.stdout and "max |diff|" in done.stdout


def test_bench_json(cli):
    done = cli("bench", MLP, "--batch", "8", "--repeat", "3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["levels"]) == {"0", "1", "2"}
    for row in result["levels"].values():
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
    assert result["speedup_vs_opt0"]["0"] == 1.0
    assert result["max_abs_diff_vs_opt0"]["2"] < 1e-5 and result["feeds"] == {"x:0": [8, 784]}


@pytest.mark.parametrize("example", ["digits_mlp.py", "digits_cnn.py"])
def test_keras_digits_examples_compile_and_bench(cli, example):
    path = os.path.join(REPO, "examples", example)
    done = cli("compile", path, "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["found"].startswith("module-level `model`") and doc["kernels"]
    done = cli("bench", path, "--repeat", "2", "--batch", "8")
    assert done.returncode == 0, done.stderr
    assert "fused (opt 2)" in done.stdout


def test_training_op_among_outputs(cli, tmp_path):
    path = script(tmp_path, """
        import numpy as np
        x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
        w = gf.Variable(np.full((4, 2), 0.1, np.float32), name="w")
        loss = gf.reduce_mean(gf.square(gf.tanh(gf.matmul(x, w)) - 0.5), name="loss")
        train = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
        outputs = [loss, train]
    """)
    done = cli("compile", path, "--output-dir", str(tmp_path / "out"), "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["fetches"][0] == "loss:0" and ":" not in doc["fetches"][1]  # the training op runs as a target
    html = (tmp_path / "out" / "report.html").read_text()
    ET.fromstring(html)
    assert ">loss:0<" in html
    done = cli("bench", path, "--repeat", "2", "--batch", "8", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["max_abs_diff_vs_opt0"]["2"] < 1e-5  # same steps, same losses


BAD_SCRIPTS = {
    "raises": ("import numpy\nraise ValueError('the data file is missing')\n",
               "model.py:3 raised ValueError: the data file is missing"),
    "nothing": ("x = gf.placeholder(gf.float32, shape=(3,))\n", "nothing to compile"),
    "syntax": ("def broken(:\n", "model.py:2 raised SyntaxError"),
    "exits": ("import sys\nsys.exit(3)\n", "exited with status 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCRIPTS))
def test_bad_scripts_exit_2_with_one_line(cli, tmp_path, case):
    body, expected = BAD_SCRIPTS[case]
    path = tmp_path / "model.py"
    path.write_text("import graphflow as gf\n" + body)
    done = cli("compile", str(path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert expected in done.stderr and done.stdout == ""


@pytest.mark.parametrize("args, expected", [
    (("compile", "no/such/model.py"), "no such file"),
    (("compile", W1, "--fetch", "nosuchop"), "unknown fetch name 'nosuchop'"),
    (("compile", W1, "--fetch", "add_2:7"), "unknown fetch name 'add_2:7'"),
    (("compile", W1, "--opt-level", "7"), "--opt-level"),
    (("compile", W1, "--format", "xml"), "--format"),
    (("compile", W1, "--no-such-flag"), "unrecognized arguments"),
    (("bench", W1, "--batch", "0"), "--batch"),
    (("bench", W1, "--repeat", "many"), "--repeat"),
    (("frobnicate", W1), "invalid choice"),
    ((), "required"),
])
def test_bad_input_exits_2_with_one_line(cli, args, expected):
    done = cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and expected in done.stderr


def test_output_dir_that_is_a_file_is_an_input_error(cli, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a directory")
    done = cli("compile", W1, "--output-dir", str(blocker))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "cannot create --output-dir" in done.stderr and "Traceback" not in done.stderr


def test_unfed_placeholder_is_an_input_error(cli, tmp_path):
    path = script(tmp_path, """
        a = gf.placeholder(gf.float32, shape=(3,), name="a")
        b = gf.placeholder(gf.float32, shape=(3,), name="b")
        outputs = a + b
        inputs = [a]
    """)
    done = cli("compile", path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "b" in done.stderr and "Traceback" not in done.stderr


def test_debug_shows_the_traceback(cli, tmp_path):
    path = tmp_path / "model.py"
    path.write_text("raise RuntimeError('boom')\n")
    done = cli("compile", str(path), "--debug")
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "RuntimeError: boom" in done.stderr


def test_layered_layout_places_data_flow_top_to_bottom():
    order = ["a", "b", "c", "d", "w"]
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("w", "d")]
    pos, width, height = layered_positions(order, edges, {n: (BOX_W, BOX_H) for n in order})
    assert pos["a"][1] < pos["b"][1] == pos["c"][1] < pos["d"][1]
    assert pos["w"][1] == pos["b"][1]  # a source sits just above its consumer, not on the top row
    boxes = list(pos.values())
    for i, (x1, y1) in enumerate(boxes):  # no two boxes overlap
        for x2, y2 in boxes[i + 1:]:
            assert abs(x1 - x2) >= BOX_W or abs(y1 - y2) >= BOX_H
    assert width >= 3 * BOX_W and height >= 3 * BOX_H
