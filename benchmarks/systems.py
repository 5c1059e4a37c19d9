"""Factories for the systems a workload is measured on: graphflow at each opt_level, and the
peers (torch, numexpr, onnxruntime, jax, numba) with their own thread controls.

Every factory takes the thread count and returns a zero-argument callable computing the
case's output; a peer that is not installed raises ImportError, which the suite reports as
"skipped". jax and tensorflow cannot change their thread pools after import, so their
systems are `isolated`: run in a worker subprocess per thread count (see worker.py).
"""
from __future__ import annotations

import os

from .suite import System

GRAPHFLOW_LEVELS = (0, 1, 2)
ONNX_OPSET = 17


def graphflow_systems(build, inputs: list, pick: int | None = None, levels=GRAPHFLOW_LEVELS) -> list:
    """`build(gf) -> (feeds, fetches)` builds the graph; one System per opt_level, each in
    its own Session with its variables initialized. `pick` selects one fetched value."""

    def system(level: int) -> System:
        def factory(threads: int):
            call = graphflow_callable(build, level, threads)
            return (lambda: call(*inputs)) if pick is None else (lambda: call(*inputs)[pick])

        return System(f"graphflow opt {level}", factory, group="graphflow")

    return [system(level) for level in levels]


def graphflow_callable(build, level: int, threads: int):
    """make_callable of `build`'s fetches in a fresh graph and Session at `level`."""
    import graphflow as gf

    graph = gf.Graph()
    with graph.as_default():
        feeds, fetches = build(gf)
        init = gf.global_variables_initializer()
    sess = gf.Session(graph=graph, opt_level=level, num_threads=threads)
    sess.run(init)
    return sess.make_callable(fetches, feed_list=feeds)


def numpy_system(fn, inputs: list) -> System:
    return System("numpy", lambda threads: (lambda: fn(*inputs)))


def torch_system(fn, inputs: list, name: str = "torch") -> System:
    """`fn(torch, *tensors)` under inference_mode, on tensors sharing the numpy inputs' memory."""

    def factory(threads: int):
        import torch

        torch.set_num_threads(threads)
        tensors = [torch.from_numpy(a) for a in inputs]

        def call():
            with torch.inference_mode():
                return fn(torch, *tensors)

        return call

    return System(name, factory)


def numexpr_system(expression: str, names: list, inputs: list) -> System:
    def factory(threads: int):
        import numexpr

        numexpr.set_num_threads(threads)
        local = dict(zip(names, inputs))
        return lambda: numexpr.evaluate(expression, local_dict=local)

    return System("numexpr", factory)


def onnx_system(make_nodes, inputs: list, names: list, initializers: dict | None = None) -> System:
    """ONNX Runtime on a graph built with the onnx helper API.

    `make_nodes(helper)` returns the node list, reading `names` as inputs and writing one
    float32 output "out" of the first input's rank; `initializers` are constants by name."""

    def factory(threads: int):
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            make_nodes(helper),
            "workload",
            [helper.make_tensor_value_info(n, _onnx_type(a, TensorProto), _dynamic(a.shape)) for n, a in
             zip(names, inputs)],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [f"d{i}" for i in range(inputs[0].ndim)])],
            [numpy_helper.from_array(v, name=k) for k, v in (initializers or {}).items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = dict(zip(names, inputs))
        return lambda: session.run(None, feed)[0]

    return System("onnxruntime", factory)


def _onnx_type(array, TensorProto):
    return {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "int32": TensorProto.INT32}[array.dtype.name]


def _dynamic(shape):
    return ["batch"] + list(shape[1:]) if len(shape) > 1 else ["n"]


def jax_system(fn, inputs: list) -> System:
    """`jax.jit(fn)(jnp, *arrays)`; isolated: runs in a worker process per thread count."""

    def factory(threads: int):
        import jax
        import jax.numpy as jnp

        jitted = jax.jit(lambda *xs: fn(jnp, jax, *xs))
        arrays = [jax.device_put(a) for a in inputs]
        return lambda: jitted(*arrays).block_until_ready()

    return System("jax (jit)", factory, isolated="jax")


def numba_system(make_kernel, inputs: list) -> System:
    """`make_kernel(numba)` returns an njit'ed function of the inputs (parallel where useful)."""

    def factory(threads: int):
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        kernel = make_kernel(numba)
        return lambda: kernel(*inputs)

    return System("numba", factory)


def tensorflow_system(fn, inputs: list) -> System:
    """`tf.function(fn, jit_compile=True)(tf, *tensors)` (XLA, as TF users get their fastest
    CPU code); isolated: runs in a worker process per thread count."""

    def factory(threads: int):
        tf = import_tensorflow(threads)
        compiled = tf.function(lambda *xs: fn(tf, *xs), jit_compile=True)
        tensors = [tf.constant(a) for a in inputs]
        return lambda: compiled(*tensors)

    return System("tensorflow (XLA)", factory, isolated="tensorflow")


def import_tensorflow(threads: int):
    """tensorflow with its intra-op pool at `threads` (settable only before first use)."""
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


ISOLATED_LIBRARIES = ("jax", "tensorflow")


def isolated_environment(library: str, threads: int) -> dict:
    """Environment for a worker process running `library` at `threads` (set before import)."""
    env = dict(os.environ)
    if library == "jax":
        env["JAX_PLATFORMS"] = "cpu"
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    if library == "tensorflow":
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env
