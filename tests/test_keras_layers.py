"""gf.keras layers: output shape, parameter count and forward values against numpy with the same weights."""
import math

import numpy as np
import pytest

import graphflow as gf

keras = gf.keras
L = gf.keras.layers
RNG = np.random.default_rng(0)


def _apply(layer, x, set_weights=True):
    """Run `layer` alone in a model on `x`; returns (model, output) with random weights set first."""
    inp = keras.Input(shape=x.shape[1:], dtype="int32" if x.dtype.kind == "i" else "float32")
    model = keras.Model(inp, layer(inp))
    if set_weights:
        layer.set_weights([RNG.normal(size=w.shape).astype("float32") for w in layer.weights])
    return model, model.predict(x)


def _np_act(name, z):
    return {"relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh,
            "linear": lambda v: v,
            "softmax": lambda v: np.exp(v - v.max(-1, keepdims=True)) / np.exp(v - v.max(-1, keepdims=True)).sum(
                -1, keepdims=True),
            "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))}[name](z)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", "gelu", "linear", None])
def test_dense(activation):
    x = RNG.normal(size=(5, 7)).astype("float32")
    layer = L.Dense(4, activation=activation)
    model, y = _apply(layer, x)
    k, b = layer.get_weights()
    assert k.shape == (7, 4) and b.shape == (4,)
    assert layer.count_params() == 7 * 4 + 4
    assert y.shape == (5, 4) and model.layers[-1].output_shape == (None, 4)
    np.testing.assert_allclose(y, _np_act(activation or "linear", x @ k + b), rtol=1e-5, atol=1e-5)


def test_dense_default_initializers_and_no_bias():
    layer = L.Dense(300, use_bias=False)
    _, y = _apply(layer, np.ones((2, 200), "float32"), set_weights=False)
    (k,) = layer.get_weights()
    limit = math.sqrt(6 / (200 + 300))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit  # glorot_uniform
    assert abs(k.std() - limit / math.sqrt(3)) < 0.01
    np.testing.assert_allclose(y, np.ones((2, 200)) @ k, rtol=1e-5, atol=1e-5)
    b = L.Dense(3)
    _apply(b, np.ones((1, 2), "float32"), set_weights=False)
    np.testing.assert_array_equal(b.get_weights()[1], np.zeros(3))


def test_dense_on_3d_input():
    x = RNG.normal(size=(2, 3, 5)).astype("float32")
    layer = L.Dense(4)
    _, y = _apply(layer, x)
    k, b = layer.get_weights()
    np.testing.assert_allclose(y, x @ k + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "gelu", "linear"])
def test_activation_layer(name):
    x = RNG.normal(size=(4, 6)).astype("float32")
    layer = L.Activation(name)
    _, y = _apply(layer, x)
    assert layer.count_params() == 0
    np.testing.assert_allclose(y, _np_act(name, x), rtol=1e-5, atol=1e-5)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="relu"):
        L.Dense(3, activation="relux")


def test_flatten_and_reshape():
    x = RNG.normal(size=(3, 2, 4, 2)).astype("float32")
    _, y = _apply(L.Flatten(), x)
    np.testing.assert_array_equal(y, x.reshape(3, -1))
    layer = L.Reshape((4, -1))
    model, y = _apply(layer, x)
    assert layer.output_shape == (None, 4, 4)
    np.testing.assert_array_equal(y, x.reshape(3, 4, 4))
    with pytest.raises(ValueError, match="reshape"):
        _apply(L.Reshape((5, 3)), x)


def _np_conv(x, k, strides, padding):
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    sh, sw = strides
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            out[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize("padding,strides", [("valid", (1, 1)), ("same", (1, 1)), ("same", (2, 2)),
                                             ("valid", (2, 1))])
def test_conv2d(padding, strides):
    x = RNG.normal(size=(2, 7, 6, 3)).astype("float32")
    layer = L.Conv2D(5, 3, strides=strides, padding=padding, activation="relu")
    _, y = _apply(layer, x)
    k, b = layer.get_weights()
    assert k.shape == (3, 3, 3, 5) and b.shape == (5,)  # HWIO, as Keras
    assert layer.count_params() == 3 * 3 * 3 * 5 + 5
    want = np.maximum(_np_conv(x, k, strides, padding) + b, 0)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def _np_pool(x, size, strides, padding, fn):
    n, h, w, c = x.shape
    if padding == "same":
        oh, ow = -(-h // strides[0]), -(-w // strides[1])
        ph = max((oh - 1) * strides[0] + size[0] - h, 0)
        pw = max((ow - 1) * strides[1] + size[1] - w, 0)
        top, left = ph // 2, pw // 2
    else:
        oh, ow = (h - size[0]) // strides[0] + 1, (w - size[1]) // strides[1] + 1
        top = left = 0
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - top, j * strides[1] - left
            win = x[:, max(r0, 0):min(r0 + size[0], h), max(c0, 0):min(c0 + size[1], w), :]
            out[:, i, j, :] = fn(win, axis=(1, 2))
    return out


@pytest.mark.parametrize("cls,fn", [(L.MaxPooling2D, np.max), (L.AveragePooling2D, np.mean)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling(cls, fn, padding):
    x = RNG.normal(size=(2, 5, 7, 3)).astype("float32")
    layer = cls(pool_size=2, padding=padding)
    _, y = _apply(layer, x)
    want = _np_pool(x, (2, 2), (2, 2), padding, fn)
    assert layer.count_params() == 0 and y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_global_average_pooling():
    x = RNG.normal(size=(2, 4, 3, 5)).astype("float32")
    layer = L.GlobalAveragePooling2D()
    _, y = _apply(layer, x)
    assert layer.output_shape == (None, 5)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def _graph_call(layer, x, training):
    """Call `layer` on a placeholder in a fresh graph in training or inference mode."""
    g = gf.Graph()
    with g.as_default():
        ph = gf.placeholder(gf.float32, (None,) + x.shape[1:])
        out = layer(ph, training=training)
        updates = g.get_collection("update_ops")
        with gf.Session(graph=g) as sess:
            sess.run(gf.global_variables_initializer())
            return sess.run([out] + updates, {ph: x})


def test_dropout_training_and_inference():
    x = np.ones((200, 50), "float32")
    layer = L.Dropout(0.4, seed=3)
    _, y = _apply(layer, x)
    np.testing.assert_array_equal(y, x)  # inference: identity
    (t,) = _graph_call(layer, x, training=True)
    kept = t != 0
    assert 0.5 < kept.mean() < 0.7
    np.testing.assert_allclose(t[kept], 1 / 0.6, rtol=1e-6)


def test_batch_normalization_inference_and_training():
    x = RNG.normal(2.0, 3.0, size=(16, 4)).astype("float32")
    layer = L.BatchNormalization()
    _, y = _apply(layer, x)
    gamma, beta, mean, var = layer.get_weights()
    assert [w.name for w in layer.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert layer.count_params() == 16 and len(layer.trainable_weights) == 2
    var = np.abs(var)
    layer.set_weights([gamma, beta, mean, var])
    _, y = _apply(layer, x, set_weights=False)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-4, atol=1e-4)
    out, new_mean, new_var = _graph_call(layer, x, training=True)
    np.testing.assert_allclose(out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3) * gamma + beta, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(new_mean, 0.99 * mean + 0.01 * x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_var, 0.99 * var + 0.01 * x.var(0), rtol=1e-5, atol=1e-6)


def test_batch_normalization_defaults_and_conv_axis():
    layer = L.BatchNormalization()
    _apply(layer, np.zeros((2, 3, 3, 5), "float32"), set_weights=False)
    g, b, m, v = layer.get_weights()
    assert layer.momentum == 0.99 and layer.epsilon == 1e-3
    np.testing.assert_array_equal(np.stack([g, b, m, v]), np.stack([np.ones(5), np.zeros(5), np.zeros(5), np.ones(5)]))
    x = RNG.normal(size=(2, 3, 4, 5)).astype("float32")
    chan1 = L.BatchNormalization(axis=1)
    _, y = _apply(chan1, x)
    g, b, m, v = chan1.get_weights()
    v = np.abs(v)
    chan1.set_weights([g, b, m, v])
    _, y = _apply(chan1, x, set_weights=False)
    r = lambda p: p.reshape(1, 3, 1, 1)  # noqa: E731
    np.testing.assert_allclose(y, (x - r(m)) / np.sqrt(r(v) + 1e-3) * r(g) + r(b), rtol=1e-4, atol=1e-4)


def test_layer_normalization():
    x = RNG.normal(size=(3, 4, 6)).astype("float32")
    layer = L.LayerNormalization()
    _, y = _apply(layer, x)
    gamma, beta = layer.get_weights()
    assert layer.epsilon == 1e-3 and layer.count_params() == 12
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-4, atol=1e-4)


def test_embedding():
    ids = np.array([[0, 3, 9], [2, 2, 1]], dtype="int32")
    layer = L.Embedding(10, 4)
    model, y = _apply(layer, ids, set_weights=False)
    (table,) = layer.get_weights()
    assert table.shape == (10, 4) and np.abs(table).max() <= 0.05  # Keras' uniform(-0.05, 0.05)
    assert layer.count_params() == 40 and y.shape == (2, 3, 4)
    np.testing.assert_array_equal(y, table[ids])


def test_add_and_concatenate():
    a = RNG.normal(size=(3, 4)).astype("float32")
    b = RNG.normal(size=(3, 4)).astype("float32")
    c = RNG.normal(size=(3, 2)).astype("float32")
    ia, ib, ic = keras.Input((4,)), keras.Input((4,)), keras.Input((2,))
    s = L.Add()([ia, ib])
    cat = L.Concatenate()([s, ic])
    model = keras.Model([ia, ib, ic], [s, cat])
    assert cat.shape == (None, 6)
    ys, ycat = model.predict([a, b, c])
    np.testing.assert_allclose(ys, a + b, rtol=1e-6)
    np.testing.assert_allclose(ycat, np.concatenate([a + b, c], axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="list of at least 2"):
        L.Add()(ia)


def test_lazy_build_and_weight_errors():
    layer = L.Dense(3)
    assert not layer.built and layer.weights == []
    assert layer.compute_output_shape((None, 5)) == (None, 3)
    assert layer.built and [w.shape for w in layer.weights] == [(5, 3), (3,)]
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        layer.set_weights([np.zeros((5, 3))])
    with pytest.raises(ValueError, match=r"kernel.*\(5, 3\)"):
        layer.set_weights([np.zeros((4, 3)), np.zeros(3)])


@pytest.mark.parametrize("layer", [L.Dense(3, activation="relu"), L.Conv2D(2, (3, 1), strides=2, padding="same"),
                                   L.MaxPooling2D(3, strides=1), L.Dropout(0.25), L.BatchNormalization(momentum=0.9),
                                   L.LayerNormalization(epsilon=1e-5), L.Embedding(5, 2), L.Reshape((2, 3)),
                                   L.Concatenate(axis=1), L.Activation("tanh")], ids=lambda l: type(l).__name__)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_functional_merge_helpers_and_embedding_input_length():
    a, b = keras.Input((2,)), keras.Input((2,))
    model = keras.Model([a, b], L.concatenate([L.add([a, b]), a], axis=1))
    x = np.array([[1.0, 2.0]], "float32")
    np.testing.assert_allclose(model.predict([x, x]), [[2.0, 4.0, 1.0, 2.0]])
    seq = keras.Sequential([L.Embedding(5, 3, input_length=4), L.Flatten()])
    assert seq.predict(np.array([[0, 1, 2, 3]])).shape == (1, 12)
