"""W6: compile time of a 1000-op chain of elementwise ops on a (1024,) vector, cold and with
the kernel cache warm. Each measurement is a fresh process (so nothing is cached in
memory); "warm" is the second process sharing a GRAPHFLOW_CACHE_DIR with the first.
Compile time = building the Session's plan and kernels and the first call, not the
graph construction in Python."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .suite import Case, System

CHAIN_OPS, QUICK_CHAIN_OPS, SIZE = 1000, 200, 1024
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chain(ops, x, n_ops: int):
    """x*1.01, +0.1, tanh, square, repeated: bounded values, nothing a pass may remove."""
    steps = (lambda v: v * 1.01, lambda v: v + 0.1, ops.tanh, lambda v: v * v)
    for i in range(n_ops):
        x = steps[i % len(steps)](x)
    return x


def graphflow_compile_seconds(n_ops: int) -> float:
    import graphflow as gf

    x = gf.placeholder(gf.float32, shape=(SIZE,), name="x")
    out = chain(gf, x, n_ops)
    value = np.linspace(-1, 1, SIZE, dtype=np.float32)
    t0 = time.perf_counter()
    sess = gf.Session(opt_level=2)
    sess.make_callable(out, feed_list=[x])(value)
    return time.perf_counter() - t0


def jax_compile_seconds(n_ops: int) -> float:
    import jax
    import jax.numpy as jnp

    value = jax.device_put(np.linspace(-1, 1, SIZE, dtype=np.float32))
    t0 = time.perf_counter()
    jax.jit(lambda v: chain(jnp, v, n_ops))(value).block_until_ready()
    return time.perf_counter() - t0


def tensorflow_compile_seconds(n_ops: int) -> float:
    import tensorflow as tf

    value = tf.constant(np.linspace(-1, 1, SIZE, dtype=np.float32))
    t0 = time.perf_counter()
    tf.function(lambda v: chain(tf, v, n_ops), jit_compile=True)(value).numpy()
    return time.perf_counter() - t0


MEASURES = {"graphflow": graphflow_compile_seconds, "jax": jax_compile_seconds,
            "tensorflow": tensorflow_compile_seconds}


def measure_in_subprocess(kind: str, n_ops: int, cache_dir: str) -> float:
    env = dict(os.environ, GRAPHFLOW_CACHE_DIR=cache_dir, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    # The compiler modules are imported lazily inside the timed span; a user's second process finds
    # their bytecode written by the first, as Python does by default, so the measurement does too
    # even where the calling environment turned bytecode writing off.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = f"import json, benchmarks.w6_compile as w; print(json.dumps(w.MEASURES[{kind!r}]({n_ops})))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"{kind} compile subprocess failed: {lines[-1] if lines else done.returncode}")
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def graphflow_system(warm: bool, n_ops: int) -> System:
    def factory(threads: int):
        def measure():
            with tempfile.TemporaryDirectory(prefix="graphflow-w6-") as cache_dir:
                seconds = measure_in_subprocess("graphflow", n_ops, cache_dir)
                if warm:
                    seconds = measure_in_subprocess("graphflow", n_ops, cache_dir)
            return {"seconds": seconds, "figure": seconds}

        return measure

    return System(f"graphflow opt 2, {'warm' if warm else 'cold'} cache", factory)


def peer_system(library: str, n_ops: int) -> System:
    """First call of the chain jit-compiled by a peer (jax.jit, tf.function with XLA), in a fresh process."""
    def factory(threads: int):
        if importlib.util.find_spec(library) is None:
            raise ImportError(library, name=library)

        def measure():
            seconds = measure_in_subprocess(library, n_ops, tempfile.gettempdir())
            return {"seconds": seconds, "figure": seconds}

        return measure

    return System({"jax": "jax (jit)", "tensorflow": "tensorflow (XLA)"}[library], factory)


def pass_scaling_system(n_ops: int) -> System:
    """The graph passes alone (opt_level 1, no codegen) on compile_time.py's mixed graph:
    seconds per op at 1k and 10k ops shows whether they stay near linear."""
    def factory(threads: int):
        from .compile_time import mixed_graph, time_compile

        def measure():
            result = time_compile(lambda: mixed_graph(n_ops), repeat=1)
            return {"seconds": result["total"], "figure": result["total"],
                    "note": f"{result['ops']} ops -> {result['ops_after']}, "
                            f"{result['total'] / result['ops'] * 1e6:.1f} us/op"}

        return measure

    return System(f"graphflow passes, {n_ops}-op mixed graph", factory)


def cases(quick: bool) -> list:
    n_ops = QUICK_CHAIN_OPS if quick else CHAIN_OPS
    scaling = (500, 2_000) if quick else (1_000, 10_000)
    return [Case("W6", f"compile {n_ops}-op chain", None, lambda s: s, "s",
                 [graphflow_system(False, n_ops), graphflow_system(True, n_ops), peer_system("jax", n_ops),
                  peer_system("tensorflow", n_ops)],
                 one_shot=True, per_thread=False),
            Case("W6", f"graph passes {scaling[0]} -> {scaling[1]} ops", None, lambda s: s, "s",
                 [pass_scaling_system(n) for n in scaling], one_shot=True, per_thread=False)]
