"""W2 softmax and W3 layer norm along the last axis of a (4096, 1024) float32 array;
GB/s counting 2 arrays (read the input, write the output)."""
from __future__ import annotations

import numpy as np

from .suite import Case
from .systems import graphflow_systems, jax_system, numpy_system, onnx_system, tensorflow_system, torch_system

SHAPE, QUICK_SHAPE = (4096, 1024), (256, 1024)
EPS = 1e-5


def softmax_reference(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_build(gf):
    x = gf.placeholder(gf.float32, shape=(None, SHAPE[1]), name="x")
    return [x], gf.nn.softmax(x, axis=-1)


def layer_norm_reference(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=-1, keepdims=True)
    return d / np.sqrt(var + np.float32(EPS)) * gamma + beta


def layer_norm_build(gf):
    x = gf.placeholder(gf.float32, shape=(None, SHAPE[1]), name="x")
    gamma = gf.placeholder(gf.float32, shape=(SHAPE[1],), name="gamma")
    beta = gf.placeholder(gf.float32, shape=(SHAPE[1],), name="beta")
    d = x - gf.reduce_mean(x, axis=-1, keepdims=True)
    var = gf.reduce_mean(d * d, axis=-1, keepdims=True)
    return [x, gamma, beta], d * gf.rsqrt(var + EPS) * gamma + beta


def layer_norm_jax(jnp, jax, x, gamma, beta):
    d = x - jnp.mean(x, axis=-1, keepdims=True)
    return d * jax.lax.rsqrt(jnp.mean(d * d, axis=-1, keepdims=True) + EPS) * gamma + beta


def layer_norm_tensorflow(tf, x, gamma, beta):
    d = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    return d * tf.math.rsqrt(tf.reduce_mean(d * d, axis=-1, keepdims=True) + EPS) * gamma + beta


def _inputs(quick: bool):
    shape = QUICK_SHAPE if quick else SHAPE
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    gamma = rng.uniform(-1, 1, size=shape[1]).astype(np.float32)
    beta = rng.uniform(-1, 1, size=shape[1]).astype(np.float32)
    return x, gamma, beta, f"{shape[0]}x{shape[1]}", lambda s: 2 * 4 * x.size / s / 1e9


def softmax_cases(quick: bool) -> list:
    x, _, _, title, figure = _inputs(quick)
    return [Case(
        "W2", f"softmax {title}", lambda: softmax_reference(x), figure, "GB/s",
        graphflow_systems(softmax_build, [x]) + [
            numpy_system(softmax_reference, [x]),
            onnx_system(lambda h: [h.make_node("Softmax", ["x"], ["out"], axis=-1)], [x], ["x"]),
            torch_system(lambda torch, t: torch.softmax(t, dim=-1), [x]),
            jax_system(lambda jnp, jax, t: jax.nn.softmax(t, axis=-1), [x]),
            tensorflow_system(lambda tf, t: tf.nn.softmax(t, axis=-1), [x]),
        ], rtol=1e-4, atol=1e-6)]


def layer_norm_cases(quick: bool) -> list:
    x, gamma, beta, title, figure = _inputs(quick)
    inputs = [x, gamma, beta]
    return [Case(
        "W3", f"layer norm {title}", lambda: layer_norm_reference(x, gamma, beta), figure, "GB/s",
        graphflow_systems(layer_norm_build, inputs) + [
            numpy_system(layer_norm_reference, inputs),
            onnx_system(lambda h: [h.make_node("LayerNormalization", ["x", "gamma", "beta"], ["out"], axis=-1,
                                               epsilon=EPS)], inputs, ["x", "gamma", "beta"]),
            torch_system(lambda torch, t, g, b: torch.nn.functional.layer_norm(t, (t.shape[-1],), g, b, EPS),
                         inputs),
            jax_system(layer_norm_jax, inputs),
            tensorflow_system(layer_norm_tensorflow, inputs),
        ], rtol=1e-3, atol=1e-4)]
