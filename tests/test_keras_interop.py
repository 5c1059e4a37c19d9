"""Weights move between gf.keras and real Keras unchanged (skipped when neither keras nor tensorflow imports).

The same architecture is built in both; weights are copied with get_weights/set_weights
in both directions and the predictions must agree to 1e-4.
"""
import os

import numpy as np
import pytest

import graphflow as gf

os.environ.setdefault("KERAS_BACKEND", "jax")
real = pytest.importorskip("keras")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' own numpy-2 notices
RNG = np.random.default_rng(1)


def _pair(build):
    """(graphflow model, Keras model) from `build(namespace)` using the same layer names."""
    return build(gf.keras), build(real)


def _mlp(k):
    return k.Sequential([k.Input(shape=(12,)), k.layers.Dense(16, activation="relu"),
                         k.layers.Dense(8, activation="tanh"), k.layers.Dense(5, activation="softmax")])


def _cnn(k):
    return k.Sequential([k.Input(shape=(8, 8, 3)), k.layers.Conv2D(4, 3, activation="relu", padding="same"),
                         k.layers.BatchNormalization(), k.layers.MaxPooling2D(),
                         k.layers.Conv2D(6, (3, 2), strides=(1, 2), padding="valid", activation="gelu"),
                         k.layers.AveragePooling2D(2, padding="same"), k.layers.GlobalAveragePooling2D(),
                         k.layers.Dropout(0.3), k.layers.Dense(3, activation="sigmoid")])


def _functional(k):
    a, b = k.Input(shape=(6,)), k.Input(shape=(6,))
    s = k.layers.Add()([k.layers.Dense(6)(a), b])
    n = k.layers.LayerNormalization()(s)
    c = k.layers.Concatenate()([n, a])
    out1 = k.layers.Dense(4, activation="softmax")(c)
    out2 = k.layers.Dense(1)(k.layers.Flatten()(k.layers.Reshape((2, 6))(c)))
    return k.Model([a, b], [out1, out2])


def _embedding(k):
    return k.Sequential([k.Input(shape=(5,), dtype="int32"), k.layers.Embedding(20, 4), k.layers.Flatten(),
                         k.layers.Dense(3)])


CASES = {"mlp": (_mlp, [(10, 12)]), "cnn": (_cnn, [(4, 8, 8, 3)]), "functional": (_functional, [(7, 6), (7, 6)]),
         "embedding": (_embedding, None)}


def _inputs(case):
    if case == "embedding":
        return [RNG.integers(0, 20, size=(6, 5)).astype("int32")]
    return [RNG.normal(size=s).astype("float32") for s in CASES[case][1]]


def _predict(model, xs):
    out = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_shapes_and_weights_both_ways(case):
    ours, theirs = _pair(CASES[case][0])
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert ours.count_params() == theirs.count_params()
    xs = _inputs(case)
    # Keras -> graphflow (BN statistics made non-trivial first)
    weights = [w + RNG.uniform(0.1, 0.5, size=w.shape).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(theirs.get_weights())
    for a, b in zip(_predict(ours, xs), _predict(theirs, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # graphflow -> Keras
    ours.set_weights([w * 0.9 for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    for a, b in zip(_predict(ours, xs), _predict(theirs, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_one_adam_step_matches_keras():
    ours, theirs = _pair(_mlp)
    ours.set_weights(theirs.get_weights())
    x = RNG.normal(size=(10, 12)).astype("float32")
    y = RNG.integers(0, 5, size=10)
    for m, k in ((ours, gf.keras), (theirs, real)):
        m.compile(optimizer=k.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        for _ in range(3):
            m.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("opt", ["sgd_momentum", "rmsprop"])
def test_optimizer_steps_match_keras(opt):
    ours, theirs = _pair(_mlp)
    ours.set_weights(theirs.get_weights())
    x = RNG.normal(size=(10, 12)).astype("float32")
    y = np.eye(5)[RNG.integers(0, 5, size=10)].astype("float32")
    for m, k in ((ours, gf.keras), (theirs, real)):
        o = k.optimizers.SGD(0.05, momentum=0.9, nesterov=True) if opt == "sgd_momentum" else \
            k.optimizers.RMSprop(0.01, momentum=0.5)
        m.compile(optimizer=o, loss="categorical_crossentropy")
        for _ in range(3):
            m.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_batchnorm_training_steps_match_keras():
    def build(k):
        return k.Sequential([k.Input(shape=(5,)), k.layers.Dense(6), k.layers.BatchNormalization(momentum=0.9),
                             k.layers.Activation("relu"), k.layers.LayerNormalization(), k.layers.Dense(2)])

    ours, theirs = _pair(build)
    ours.set_weights(theirs.get_weights())
    x = RNG.normal(2.0, 3.0, size=(16, 5)).astype("float32")
    y = RNG.normal(size=(16, 2)).astype("float32")
    for m, k in ((ours, gf.keras), (theirs, real)):
        m.compile(optimizer=k.optimizers.SGD(0.05), loss="mse")
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
