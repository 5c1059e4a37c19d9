"""A smoke run of the benchmark suite on tiny sizes, and its checking machinery."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.registry import RUN_ORDER, select
from benchmarks.suite import Case, Settings, System, run_case
from benchmarks.w4_mlp import glorot_weights
from benchmarks.w5_training import LR, NumpyTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_suite(*args, module=True):
    cmd = [sys.executable, "-m", "benchmarks"] if module else [sys.executable, os.path.join(REPO, "benchmarks",
                                                                                             "run.py")]
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_quick_run_writes_tables_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "r.json", tmp_path / "RESULTS.md"
    done = run_suite("--quick", "--only", "W7,W1,W2,W3,W8", "--threads", "1", "--repeat", "1", "--no-isolated",
                     "--json", str(out_json), "--markdown", str(out_md))
    assert done.returncode == 0, done.stderr
    for title in ("W7: FMA peak", "W7: sgemm", "W7: triad", "W1: elementwise chain", "W2: softmax", "W3: layer norm", "W8: add"):
        assert title in done.stdout
    doc = json.loads(out_json.read_text())
    rows = doc["rows"]
    assert doc["machine"]["cpu"] and doc["machine"]["versions"]["numpy"]
    for workload in ("W1", "W2", "W3"):
        for level in (0, 1, 2):
            row = next(r for r in rows if r["workload"] == workload and r["system"] == f"graphflow opt {level}")
            assert row["status"] == "ok", row  # checked against numpy, then timed
            assert row["median_s"] > 0 and row["figure"] > 0 and row["unit"] == "GB/s"
    assert any(r["system"] == "numpy" and r["workload"] == "W7" and r["unit"] == "GFLOP/s" for r in rows)
    peak = next(r for r in rows if r["system"] == "LLVM FMA loop (peak)")
    assert peak["status"] == "ok" and peak["figure"] > 0   # its count checked exactly, then timed
    md = out_md.read_text()
    assert md.startswith("# graphflow benchmark results")
    assert "- Machine:" in md and "- Command: `python -m benchmarks --quick" in md and "- Versions:" in md
    assert "## W1: elementwise chain" in md and "| system | threads | median |" in md
    assert "% of triad" in md  # GB/s figures are set against the machine's triad
    assert "| numpy | 1 |" in md and "% of FMA peak" in md   # sgemm against the FMA peak
    assert "## Targets (ratios within this run)" in md and "| W8 make_callable (us/call) | 1 |" in md
    again = tmp_path / "again.md"
    done = run_suite("--from-json", str(out_json), "--markdown", str(again), "--note", "re-rendered")
    assert done.returncode == 0, done.stderr
    assert again.read_text() == md.replace("- Method:", "- Note: re-rendered\n- Method:")  # no re-measuring


@pytest.mark.slow
def test_quick_training_workloads_run():
    done = run_suite("--quick", "--only", "W4,W5", "--threads", "1", "--repeat", "1", "--no-isolated", module=False)
    assert done.returncode == 0, done.stderr
    assert "W4: MLP inference batch 1" in done.stdout and "W5: training step" in done.stdout
    for line in done.stdout.splitlines():
        if line.startswith("graphflow opt"):
            assert "error" not in line and "wrong" not in line, line


def test_unknown_workload_is_a_usage_error():
    done = run_suite("--only", "W9")
    assert done.returncode == 2 and "unknown workload(s) W9" in done.stderr
    assert select(None) == list(RUN_ORDER) and select("w4,W1") == ["W1", "W4"]


def test_wrong_and_missing_systems_are_reported_not_timed():
    x = np.arange(4, dtype=np.float32)

    def missing(threads):
        raise ImportError("no module named 'nopeer'", name="nopeer")

    case = Case("WX", "double", lambda: x * 2, lambda s: 1 / s, "calls/s", [
        System("right", lambda threads: (lambda: x * 2)),
        System("wrong", lambda threads: (lambda: x * 2 + 1)),
        System("absent", missing),
        System("broken", lambda threads: (lambda: 1 / 0)),
    ])
    rows = {r.system: r for r in run_case(case, case.systems, 1, Settings(repeat=2, min_sample_s=0.001))}
    assert rows["right"].status == "ok" and rows["right"].median_s > 0 and rows["right"].figure > 0
    assert rows["wrong"].status == "wrong" and rows["wrong"].median_s is None and "1" in rows["wrong"].note
    assert rows["absent"].status == "skipped" and "nopeer" in rows["absent"].note
    assert rows["broken"].status == "error" and "ZeroDivisionError" in rows["broken"].note


def test_numpy_training_reference_follows_the_gradient():
    """W5 checks every system against NumpyTrainer: its hand-written backward must be right."""
    params = [p.astype(np.float64) for p in glorot_weights((5, 4, 3), seed=3)]
    x = np.random.default_rng(4).uniform(-1, 1, size=(6, 5))
    labels = np.array([0, 1, 2, 0, 1, 2])

    def loss(ps):
        return NumpyTrainer(ps).step(x, labels)

    trainer = NumpyTrainer(params)
    trainer.step(x, labels)
    rng = np.random.default_rng(5)
    for i, p in enumerate(params):
        grad = (p - trainer.params[i]) / LR
        direction = rng.normal(size=p.shape)
        eps = 1e-4
        plus = [q + eps * direction if j == i else q for j, q in enumerate(params)]
        minus = [q - eps * direction if j == i else q for j, q in enumerate(params)]
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert np.isclose(numeric, np.sum(grad * direction), rtol=1e-3, atol=1e-6), i
