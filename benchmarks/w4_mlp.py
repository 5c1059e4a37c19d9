"""W4: MLP inference 784-512-512-10 (relu, relu, softmax) with fixed weights, batch 1 and
256; µs per call, and samples/s at 256. Also the weights and layers W5 trains."""
from __future__ import annotations

import numpy as np

from .suite import Case
from .systems import graphflow_systems, jax_system, numpy_system, onnx_system, tensorflow_system, torch_system

SIZES = (784, 512, 512, 10)
BATCHES, QUICK_BATCHES = (1, 256), (1, 32)


def glorot_weights(sizes=SIZES, seed: int = 0) -> list:
    """[w1, b1, w2, b2, ...] float32, glorot-uniform kernels and small random biases."""
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (n_in + n_out))
        params.append(rng.uniform(-limit, limit, size=(n_in, n_out)).astype(np.float32))
        params.append(rng.uniform(-0.1, 0.1, size=n_out).astype(np.float32))
    return params


def mlp_logits(params, x, relu):
    """Logits of the MLP (relu between layers, none after the last) for any array library
    whose arrays support `@` and `+` (numpy, torch, jax, tensorflow)."""
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = relu(h)
    return h


def numpy_forward(params, x):
    return mlp_logits(params, x, lambda v: np.maximum(v, 0))


def numpy_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def graphflow_logits(gf, params, x):
    """Logits in graphflow, the weights held in Variables (as a TF1 model keeps them)."""
    h = x
    for i in range(0, len(params), 2):
        with gf.name_scope(f"dense{i // 2}"):
            h = gf.matmul(h, gf.Variable(params[i], name="kernel")) + gf.Variable(params[i + 1], name="bias")
            if i + 2 < len(params):
                h = gf.nn.relu(h)
    return h


def onnx_nodes(n_layers: int):
    def nodes(helper):
        out, h = [], "x"
        for i in range(n_layers):
            out += [helper.make_node("MatMul", [h, f"w{i}"], [f"m{i}"]),
                    helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]
            h = f"z{i}"
            if i + 1 < n_layers:
                out.append(helper.make_node("Relu", [h], [f"r{i}"]))
                h = f"r{i}"
        out.append(helper.make_node("Softmax", [h], ["out"], axis=-1))
        return out

    return nodes


def cases(quick: bool) -> list:
    params = glorot_weights()
    n_layers = len(params) // 2
    out = []
    for batch in (QUICK_BATCHES if quick else BATCHES):
        x = np.random.default_rng(1).uniform(-1, 1, size=(batch, SIZES[0])).astype(np.float32)

        def build(gf):
            xp = gf.placeholder(gf.float32, shape=(None, SIZES[0]), name="x")
            return [xp], gf.nn.softmax(graphflow_logits(gf, params, xp))

        if batch == 1:
            figure, unit = (lambda s: s * 1e6), "us/call"
        else:
            figure, unit = (lambda s, b=batch: b / s), "samples/s"
        out.append(Case(
            "W4", f"MLP inference batch {batch}", lambda x=x: numpy_softmax(numpy_forward(params, x)), figure, unit,
            graphflow_systems(build, [x]) + [
                numpy_system(lambda xv: numpy_softmax(numpy_forward(params, xv)), [x]),
                onnx_system(onnx_nodes(n_layers), [x], ["x"],
                            {f"{k}{i}": params[2 * i + (k == "b")] for i in range(n_layers) for k in "wb"}),
                torch_system(lambda torch, xt, *p: torch.softmax(mlp_logits(p, xt, torch.relu), -1), [x] + params),
                jax_system(lambda jnp, jax, xj, *p: jax.nn.softmax(mlp_logits(p, xj, jax.nn.relu), -1), [x] + params),
                tensorflow_system(lambda tf, xt, *p: tf.nn.softmax(mlp_logits(p, xt, tf.nn.relu)), [x] + params),
            ], rtol=1e-4, atol=1e-6, flops=forward_flops(batch)))
    return out


def forward_flops(batch: int, sizes=SIZES) -> int:
    """Multiply-adds (two flops each) of the MLP's products for `batch` rows."""
    return 2 * batch * sum(a * b for a, b in zip(sizes, sizes[1:]))
