"""Compile-pass scaling: time of lowering + the opt_level 1 passes on W6 and on generated
graphs of 1,000 and 10,000 ops, and the growth factor from 1k to 10k (10x = linear).

Run standalone: `python benchmarks/compile_time.py [--repeat N]`. Only the compiler is
timed (`build_program`: lowering, prune, fold_constants, cse, simplify to a fixed point),
not graph construction in Python nor code generation.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphflow as gf  # noqa: E402
from graphflow.compiler.pipeline import build_program  # noqa: E402

W6_OPS, W6_SIZE = 1000, 1024


def w6_chain(n_ops: int = W6_OPS):
    """W6: a chain of elementwise ops on a (1024,) vector (x*1.01, +0.1, tanh, square)."""
    x = gf.placeholder(gf.float32, (W6_SIZE,), name="x")
    steps = (lambda v: v * 1.01, lambda v: v + 0.1, gf.tanh, lambda v: v * v)
    y = x
    for i in range(n_ops):
        y = steps[i % len(steps)](y)
    return x, y


def mixed_graph(n_ops: int, seed: int = 0):
    """About `n_ops` ops of a DAG giving every pass work: constant subexpressions to fold,
    duplicated subexpressions to merge, exact identities to simplify, and fan-in from
    earlier values (not only a chain). Every value nothing else reads is fetched, so
    nothing is pruned as unused."""
    rng = np.random.default_rng(seed)
    g = gf.get_default_graph()
    x = gf.placeholder(gf.float32, (W6_SIZE,), name="x")
    pool, unread = [x], {x}
    unary = (gf.exp, gf.tanh, gf.negative, gf.abs, lambda v: v * 1.0, lambda v: v - 0.0)
    binary = (gf.add, gf.multiply, gf.subtract, gf.maximum)

    def pick():
        t = pool[max(0, len(pool) - 1 - int(rng.integers(0, 32)))]
        unread.discard(t)
        return t

    while len(g.get_operations()) < n_ops:
        kind = rng.integers(0, 4)
        if kind == 0:
            out = unary[rng.integers(0, len(unary))](pick())
        elif kind == 1:
            out = binary[rng.integers(0, len(binary))](pick(), pick())
        elif kind == 2:
            out = pick() + gf.constant(float(rng.integers(0, 8))) * 0.5   # folds to one constant
        else:
            a = pick()
            out = gf.exp(a) * gf.exp(a)                                  # CSE merges the two exps
        pool.append(out)
        unread.add(out)
    return x, [t for t in pool if t in unread]


def time_compile(make, repeat: int, opt_level: int = 1) -> dict:
    """Best-of-`repeat` seconds for build_program, per stage and pass, plus op counts."""
    g = gf.Graph()
    with g.as_default():
        x, y = make()
    ops = len(g.get_operations())
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        program, report = build_program(g, y if isinstance(y, list) else [y], [], [x], opt_level)
        total = time.perf_counter() - t0
        if best is None or total < best["total"]:
            best = {"total": total, "ops": ops, "ops_after": len(program),
                    "lower": report.stage_seconds.get("lower", 0.0),
                    "passes": {name: s for name, (s, _) in report.pass_totals().items()},
                    "rounds": max((p.round for p in report.passes), default=0)}
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="compiles per graph; the best is reported")
    args = parser.parse_args(argv)
    os.environ.pop("GRAPHFLOW_VERIFY", None)
    cases = [("W6 chain (1000 ops)", w6_chain),
             ("mixed 1k", lambda: mixed_graph(1_000)),
             ("mixed 10k", lambda: mixed_graph(10_000)),
             ("chain 10k", lambda: w6_chain(10_000))]
    results = {}
    print(f"{'graph':<22}{'ops':>7}{'after':>7}{'rounds':>7}{'lower ms':>10}{'passes ms':>11}"
          f"{'total ms':>10}{'us/op':>8}   per pass (ms)")
    for name, make in cases:
        r = results[name] = time_compile(make, args.repeat)
        per_pass = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in r["passes"].items())
        print(f"{name:<22}{r['ops']:>7}{r['ops_after']:>7}{r['rounds']:>7}{r['lower'] * 1e3:>10.1f}"
              f"{sum(r['passes'].values()) * 1e3:>11.1f}{r['total'] * 1e3:>10.1f}"
              f"{r['total'] / r['ops'] * 1e6:>8.1f}   {per_pass}")
    small, big = results["mixed 1k"], results["mixed 10k"]
    ops_ratio = big["ops"] / small["ops"]
    growth = big["total"] / small["total"]
    print(f"\ngrowth 1k -> 10k ops (mixed): ops x{ops_ratio:.1f}, compile time x{growth:.1f} "
          f"(linear would be x{ops_ratio:.1f}); W6 vs chain 10k: "
          f"x{results['chain 10k']['total'] / results['W6 chain (1000 ops)']['total']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
