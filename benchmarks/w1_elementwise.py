"""W1: the elementwise chain `tanh(x*0.5 + y) * sigmoid(x) + sqrt(abs(y) + 1.0)` over
float32 vectors of 2**22 and 2**24 elements; GB/s counting 3 arrays x 4 bytes x N."""
from __future__ import annotations

import numpy as np

from .suite import Case
from .systems import graphflow_systems, jax_system, numba_system, numexpr_system, numpy_system, onnx_system, \
    tensorflow_system, torch_system

SIZES = (22, 24)
QUICK_SIZES = (16,)


def reference(x, y):
    return np.tanh(x * 0.5 + y) * (1.0 / (1.0 + np.exp(-x))) + np.sqrt(np.abs(y) + 1.0)


def build(gf):
    x = gf.placeholder(gf.float32, shape=(None,), name="x")
    y = gf.placeholder(gf.float32, shape=(None,), name="y")
    return [x, y], gf.tanh(x * 0.5 + y) * gf.sigmoid(x) + gf.sqrt(gf.abs(y) + 1.0)


def torch_fn(torch, x, y):
    return torch.tanh(x * 0.5 + y) * torch.sigmoid(x) + torch.sqrt(torch.abs(y) + 1.0)


def jax_fn(jnp, jax, x, y):
    return jnp.tanh(x * 0.5 + y) * jax.nn.sigmoid(x) + jnp.sqrt(jnp.abs(y) + 1.0)


def tensorflow_fn(tf, x, y):
    return tf.tanh(x * 0.5 + y) * tf.sigmoid(x) + tf.sqrt(tf.abs(y) + 1.0)


def onnx_nodes(helper):
    n = helper.make_node
    f32 = 1  # TensorProto.FLOAT
    return [
        n("Constant", [], ["half"], value=helper.make_tensor("half", f32, [], [0.5])),
        n("Constant", [], ["one"], value=helper.make_tensor("one", f32, [], [1.0])),
        n("Mul", ["x", "half"], ["xh"]), n("Add", ["xh", "y"], ["s"]), n("Tanh", ["s"], ["t"]),
        n("Sigmoid", ["x"], ["g"]), n("Mul", ["t", "g"], ["tg"]),
        n("Abs", ["y"], ["a"]), n("Add", ["a", "one"], ["a1"]), n("Sqrt", ["a1"], ["r"]),
        n("Add", ["tg", "r"], ["out"]),
    ]


def numba_kernel(numba):
    @numba.njit(parallel=True, fastmath=False, cache=False)
    def chain(x, y):
        out = np.empty_like(x)
        for i in numba.prange(x.shape[0]):
            out[i] = np.tanh(x[i] * np.float32(0.5) + y[i]) * (np.float32(1.0) / (np.float32(1.0) + np.exp(-x[i]))) \
                + np.sqrt(np.abs(y[i]) + np.float32(1.0))
        return out

    return chain


def cases(quick: bool) -> list:
    out = []
    for log2 in (QUICK_SIZES if quick else SIZES):
        n = 2 ** log2
        rng = np.random.default_rng(0)
        x, y = (rng.uniform(-1, 1, size=n).astype(np.float32) for _ in range(2))
        inputs = [x, y]
        out.append(Case(
            "W1", f"elementwise chain N=2**{log2}", lambda x=x, y=y: reference(x, y),
            figure=lambda s, n=n: 3 * 4 * n / s / 1e9, unit="GB/s",
            systems=graphflow_systems(build, inputs) + [
                numpy_system(reference, inputs),
                numexpr_system("tanh(x*0.5 + y) * (1 / (1 + exp(-x))) + sqrt(abs(y) + 1)", ["x", "y"], inputs),
                numba_system(numba_kernel, inputs),
                onnx_system(onnx_nodes, inputs, ["x", "y"]),
                torch_system(torch_fn, inputs),
                jax_system(jax_fn, inputs),
                tensorflow_system(tensorflow_fn, inputs),
            ]))
    return out
