"""`graphflow bench MODEL.py`: time the same graph at opt_level 0, 1 and 2.

The three Sessions get the same variable values (initialized once, then copied) and the
same random feeds of the declared shapes (`None` dimensions take `--batch`). Calls
alternate between the levels, so machine noise hits all three alike. The largest absolute
difference between the fused and unfused outputs is printed beside the speedups, so a
speedup never hides a wrong answer.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

from ..errors import FailedPreconditionError, GraphflowError
from ..runtime.session import Session
from ..variables import global_variables, variables_initializer
from .compile_cmd import load_target
from .script import Target, UsageError, rejected

LEVELS = (0, 1, 2)
LEVEL_NAMES = {0: "unfused (opt 0)", 1: "optimized (opt 1)", 2: "fused (opt 2)"}


def random_feeds(target: Target, batch: int, seed: int = 0) -> list:
    """One array per feed: floats uniform in [-1, 1), integers in [0, 2), random bools."""
    rng = np.random.default_rng(seed)
    values = []
    for t in target.feeds:
        if t.shape is None:
            raise UsageError(f"feed '{t.name}' has unknown rank; give its placeholder a shape to benchmark it")
        shape = tuple(batch if d is None else d for d in t.shape)
        kind = t.dtype.kind
        if kind == "f":
            values.append(rng.uniform(-1.0, 1.0, size=shape).astype(t.dtype))
        elif kind in "iu":
            values.append(rng.integers(0, 2, size=shape).astype(t.dtype))
        elif kind == "b":
            values.append(rng.random(size=shape) < 0.5)
        else:
            raise UsageError(f"feed '{t.name}': cannot make random {t.dtype.name} input")
    return values


def open_sessions(target: Target, threads: int | None) -> dict:
    """One Session per level, all holding the same variable values: the script's own (a
    gf.keras model's session) where it has them, else freshly initialized ones."""
    sessions = {level: Session(graph=target.graph, opt_level=level, num_threads=threads) for level in LEVELS}
    variables = global_variables(target.graph)
    source = target.session
    if variables and source is None:
        with target.graph.as_default():
            init = variables_initializer(variables, name="graphflow_bench_init")
        source = sessions[LEVELS[0]]
        source.run(init)
    for v in variables:
        try:
            value = source._get_variable(v)
        except FailedPreconditionError:  # e.g. an optimizer slot that inference does not read
            continue
        for s in sessions.values():
            if s is not source:
                s._set_variable(v, value)
    return sessions


def measure(target: Target, batch: int, repeat: int, threads: int | None) -> dict:
    """Median/min/max seconds per level, speedups and output differences, as a dict."""
    feeds = random_feeds(target, batch)
    sessions = open_sessions(target, threads)
    calls = {level: s.make_callable(target.fetches, feed_list=target.feeds) for level, s in sessions.items()}
    outputs = {level: [np.asarray(o) for o in call(*feeds) if o is not None]  # warm-up; ops give None
               for level, call in calls.items()}
    times: dict = {level: [] for level in LEVELS}
    for _ in range(repeat):
        for level, call in calls.items():
            t0 = time.perf_counter()
            call(*feeds)
            times[level].append(time.perf_counter() - t0)
    for s in sessions.values():
        s.close()
    rows = {level: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
            for level, ts in times.items()}
    base = rows[0]["median_s"]
    return {
        "batch": batch,
        "repeat": repeat,
        "threads": sessions[0].num_threads,
        "feeds": {t.name: list(v.shape) for t, v in zip(target.feeds, feeds)},
        "levels": {str(level): row for level, row in rows.items()},
        "speedup_vs_opt0": {str(level): base / rows[level]["median_s"] for level in LEVELS},
        "max_abs_diff_vs_opt0": {str(level): _max_abs_diff(outputs[0], outputs[level]) for level in LEVELS[1:]},
    }


def _max_abs_diff(a: list, b: list) -> float:
    """Largest |a - b| over all outputs; NaN in the same places counts as equal."""
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float("inf")
        if x.size:
            x, y = x.astype(np.float64), y.astype(np.float64)
            d = np.where(np.isnan(x) & np.isnan(y), 0.0, np.abs(x - y))
            worst = max(worst, float(np.where(np.isnan(d), np.inf, d).max()))
    return worst


def render_table(script: str, target: Target, result: dict) -> str:
    feeds = ", ".join(f"{name} {tuple(shape)}" for name, shape in result["feeds"].items()) or "none"
    lines = [f"graphflow bench {script}: {', '.join(t.name for t in target.fetches)}",
             f"feeds {feeds}; {result['repeat']} alternating repeats; threads {result['threads']}", "",
             f"{'system':<20}{'median':>12}{'min':>12}{'max':>12}{'spread':>9}{'speedup':>10}{'max |diff|':>13}"]
    for level in LEVELS:
        row = result["levels"][str(level)]
        spread = (row["max_s"] - row["min_s"]) / row["median_s"] * 100
        diff = result["max_abs_diff_vs_opt0"].get(str(level))
        lines.append(f"{LEVEL_NAMES[level]:<20}{_ms(row['median_s']):>12}{_ms(row['min_s']):>12}"
                     f"{_ms(row['max_s']):>12}{spread:>8.0f}%{result['speedup_vs_opt0'][str(level)]:>9.2f}x"
                     f"{'reference' if diff is None else f'{diff:.3g}':>13}")
    return "\n".join(lines) + "\n"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def run(args) -> int:
    if args.batch < 1 or args.repeat < 1 or (args.threads is not None and args.threads < 1):
        raise UsageError("--batch, --repeat and --threads must be positive integers")
    target = load_target(args.script, args.fetch)
    try:
        result = measure(target, args.batch, args.repeat, args.threads)
    except (GraphflowError, ValueError, TypeError, LookupError) as exc:
        raise rejected("run", target, exc) from exc
    if args.json:
        result["script"] = args.script
        result["fetches"] = [t.name for t in target.fetches]
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(args.script, target, result))
    return 0
