"""W5: one SGD training step of the W4 MLP (batch 128, sparse softmax cross-entropy from
logits, lr 0.01) in steps/s; and 5 epochs of `fit` on scikit-learn's digits
(64-128-128-10, Adam 1e-3, batch 32): wall seconds and final training accuracy."""
from __future__ import annotations

import time

import numpy as np

from .suite import Case, System
from .systems import graphflow_systems, import_tensorflow
from .w4_mlp import SIZES, forward_flops, glorot_weights, graphflow_logits, mlp_logits

BATCH, LR = 128, 0.01
FIT_SIZES, FIT_EPOCHS, FIT_BATCH, FIT_LR = (64, 128, 128, 10), 5, 32, 1e-3


def training_data(batch: int = BATCH):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(batch, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], size=batch).astype(np.int32)
    return x, labels


class NumpyTrainer:
    """The reference: forward, backward by hand, SGD; `step` returns the pre-update loss."""

    def __init__(self, params):
        self.params = [p.copy() for p in params]

    def step(self, x, labels):
        p = self.params
        acts = [x]
        for i in range(0, len(p) - 2, 2):
            acts.append(np.maximum(acts[-1] @ p[i] + p[i + 1], 0))
        z = acts[-1] @ p[-2] + p[-1]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        loss = -(z[rows, labels] - np.log(s[:, 0])).mean()
        g = e / s
        g[rows, labels] -= 1
        g /= np.float32(len(labels))
        grads = []
        for i in range(len(p) - 2, -1, -2):
            grads = [acts[i // 2].T @ g, g.sum(axis=0)] + grads
            if i:
                g = (g @ p[i].T) * (acts[i // 2] > 0)
        for param, grad in zip(p, grads):
            param -= np.float32(LR) * grad
        return loss


def graphflow_build(params):
    def build(gf):
        x = gf.placeholder(gf.float32, shape=(None, SIZES[0]), name="x")
        y = gf.placeholder(gf.int32, shape=(None,), name="labels")
        logits = graphflow_logits(gf, params, x)
        loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = gf.train.GradientDescentOptimizer(LR).minimize(loss)
        return [x, y], [loss, train]

    return build


def torch_step_system(params, x, labels) -> System:
    def factory(threads: int):
        import torch

        torch.set_num_threads(threads)
        weights = [torch.tensor(p.copy(), requires_grad=True) for p in params]
        opt = torch.optim.SGD(weights, lr=LR)
        xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(mlp_logits(weights, xt, torch.relu), yt)
            loss.backward()
            opt.step()
            return loss.detach()

        return step

    return System("torch (eager)", factory)


def jax_step_system(params, x, labels) -> System:
    def factory(threads: int):
        import jax
        import jax.numpy as jnp

        def loss_fn(p, xb, yb):
            z = mlp_logits(p, xb, jax.nn.relu)
            logp = jax.nn.log_softmax(z)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        @jax.jit
        def update(p, xb, yb):
            loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
            return loss, [w - LR * g for w, g in zip(p, grads)]

        state = [[jax.device_put(p.copy()) for p in params]]
        xj, yj = jax.device_put(x), jax.device_put(labels)

        def step():
            loss, state[0] = update(state[0], xj, yj)
            return loss.block_until_ready()

        return step

    return System("jax (jit)", factory, isolated="jax")


def tensorflow_step_system(params, x, labels) -> System:
    def factory(threads: int):
        tf = import_tensorflow(threads)
        weights = [tf.Variable(p.copy()) for p in params]
        xt, yt = tf.constant(x), tf.constant(labels)

        @tf.function(jit_compile=True)
        def step():
            with tf.GradientTape() as tape:
                logits = mlp_logits(weights, xt, tf.nn.relu)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yt, logits=logits))
            for w, g in zip(weights, tape.gradient(loss, weights)):
                w.assign_sub(LR * g)
            return loss

        return step

    return System("tensorflow (XLA)", factory, isolated="tensorflow")


def numpy_step_system(params, x, labels) -> System:
    def factory(threads: int):
        trainer = NumpyTrainer(params)
        return lambda: trainer.step(x, labels)

    return System("numpy", factory)


def step_case(quick: bool) -> Case:
    params = glorot_weights()
    x, labels = training_data(32 if quick else BATCH)

    def reference():
        trainer = NumpyTrainer(params)
        return [trainer.step(x, labels), trainer.step(x, labels)]

    return Case("W5", f"training step batch {len(x)}", reference, lambda s: 1 / s, "steps/s",
                graphflow_systems(graphflow_build(params), [x, labels], pick=0)
                + [numpy_step_system(params, x, labels), torch_step_system(params, x, labels),
                   jax_step_system(params, x, labels), tensorflow_step_system(params, x, labels)],
                rtol=1e-3, atol=1e-5, calls_checked=2, flops=step_flops(len(x)))


def step_flops(batch: int) -> int:
    """The products of one step: the forward's, the weight gradients' (as many), and the
    input gradients' of every layer but the first (W5 at batch 128: 410.8 MFLOP)."""
    return 3 * forward_flops(batch) - forward_flops(batch, SIZES[:2])


def digits():
    """scikit-learn's bundled digits, scaled to [0, 1] (ImportError when sklearn is absent)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)


def keras_fit_system(epochs: int) -> System:
    def factory(threads: int):
        import graphflow as gf

        def fit():
            x, y = digits()
            model = gf.keras.Sequential([gf.keras.Input(shape=(FIT_SIZES[0],))]
                                        + [gf.keras.layers.Dense(n, activation="relu") for n in FIT_SIZES[1:-1]]
                                        + [gf.keras.layers.Dense(FIT_SIZES[-1], activation="softmax")])
            model.compile(optimizer=gf.keras.optimizers.Adam(FIT_LR), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            t0 = time.perf_counter()
            history = model.fit(x, y, batch_size=FIT_BATCH, epochs=epochs, verbose=0)
            seconds = time.perf_counter() - t0
            accuracy = float(history.history["accuracy"][-1])
            return {"seconds": seconds, "figure": accuracy, "note": f"{epochs} epochs, {len(x)} samples"}

        return fit

    return System("graphflow keras fit", factory)


def torch_fit_system(epochs: int) -> System:
    def factory(threads: int):
        import torch

        torch.set_num_threads(threads)

        def fit():
            x, y = digits()
            torch.manual_seed(0)
            layers = []
            for n_in, n_out in zip(FIT_SIZES[:-1], FIT_SIZES[1:]):
                layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
            model = torch.nn.Sequential(*layers[:-1])
            opt = torch.optim.Adam(model.parameters(), lr=FIT_LR)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            for _ in range(epochs):
                correct = 0
                for idx in np.array_split(rng.permutation(len(x)), -(-len(x) // FIT_BATCH)):
                    idx = torch.from_numpy(idx)
                    opt.zero_grad()
                    logits = model(xt[idx])
                    loss = torch.nn.functional.cross_entropy(logits, yt[idx])
                    loss.backward()
                    opt.step()
                    correct += int((logits.argmax(1) == yt[idx]).sum())
            seconds = time.perf_counter() - t0
            return {"seconds": seconds, "figure": correct / len(x), "note": f"{epochs} epochs, {len(x)} samples"}

        return fit

    return System("torch training loop", factory)


def keras_tensorflow_fit_system(epochs: int) -> System:
    """The same model and fit in Keras on tensorflow (isolated: tensorflow's thread pools)."""
    def factory(threads: int):
        tf = import_tensorflow(threads)
        keras = tf.keras

        def fit():
            x, y = digits()
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(shape=(FIT_SIZES[0],))]
                                     + [keras.layers.Dense(n, activation="relu") for n in FIT_SIZES[1:-1]]
                                     + [keras.layers.Dense(FIT_SIZES[-1], activation="softmax")])
            model.compile(optimizer=keras.optimizers.Adam(FIT_LR), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            t0 = time.perf_counter()
            history = model.fit(x, y, batch_size=FIT_BATCH, epochs=epochs, verbose=0)
            seconds = time.perf_counter() - t0
            return {"seconds": seconds, "figure": float(history.history["accuracy"][-1]),
                    "note": f"{epochs} epochs, {len(x)} samples"}

        return fit

    return System("keras fit (tensorflow)", factory, isolated="tensorflow")


def fit_case(quick: bool) -> Case:
    epochs = 1 if quick else FIT_EPOCHS
    return Case("W5", f"fit digits {epochs} epoch(s)", None, lambda s: 0.0, "final acc",
                [keras_fit_system(epochs), torch_fit_system(epochs), keras_tensorflow_fit_system(epochs)],
                one_shot=True)


def cases(quick: bool) -> list:
    return [step_case(quick), fit_case(quick)]

