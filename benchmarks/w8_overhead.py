"""W8: per-call overhead of the smallest graph (add two shape-(1,) arrays): graphflow's
Session.run with a feed_dict and make_callable, beside the peers' cheapest call paths."""
from __future__ import annotations

import numpy as np

from .suite import Case, System
from .systems import GRAPHFLOW_LEVELS, graphflow_systems, import_tensorflow, jax_system, numpy_system, \
    onnx_system, tensorflow_system, torch_system


def build(gf):
    a = gf.placeholder(gf.float32, shape=(1,), name="a")
    b = gf.placeholder(gf.float32, shape=(1,), name="b")
    return [a, b], a + b


def session_run_system(level: int, inputs: list) -> System:
    def factory(threads: int):
        import graphflow as gf

        graph = gf.Graph()
        with graph.as_default():
            feeds, out = build(gf)
        sess = gf.Session(graph=graph, opt_level=level, num_threads=threads)
        feed_dict = dict(zip(feeds, inputs))
        return lambda: sess.run(out, feed_dict)

    return System(f"graphflow opt {level} Session.run", factory, group="graphflow")


def tf1_session_system(inputs: list) -> System:
    """TF1's define-then-run path (tf.compat.v1 Session.run with a feed_dict), the API graphflow follows."""
    def factory(threads: int):
        tf = import_tensorflow(threads)
        v1 = tf.compat.v1
        graph = tf.Graph()
        with graph.as_default():
            a = v1.placeholder(tf.float32, shape=(1,))
            b = v1.placeholder(tf.float32, shape=(1,))
            out = a + b
        config = v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
        sess = v1.Session(graph=graph, config=config)
        feed = {a: inputs[0], b: inputs[1]}
        return lambda: sess.run(out, feed)

    return System("tensorflow v1 Session.run", factory, isolated="tensorflow")


def cases(quick: bool) -> list:
    a, b = np.array([1.5], dtype=np.float32), np.array([2.25], dtype=np.float32)
    inputs = [a, b]
    make_callable = graphflow_systems(build, inputs)
    for s in make_callable:
        s.name += " make_callable"
    return [Case("W8", "add two (1,) arrays", lambda: a + b, lambda s: s * 1e6, "us/call",
                 [session_run_system(level, inputs) for level in GRAPHFLOW_LEVELS] + make_callable + [
                     numpy_system(np.add, inputs),
                     onnx_system(lambda h: [h.make_node("Add", ["a", "b"], ["out"])], inputs, ["a", "b"]),
                     torch_system(lambda torch, x, y: x + y, inputs),
                     jax_system(lambda jnp, jax, x, y: x + y, inputs),
                     tensorflow_system(lambda tf, x, y: x + y, inputs),
                     tf1_session_system(inputs),
                 ])]
