"""gf.keras models: Sequential, functional and subclassed models, summary, weights, the model's graph."""
import numpy as np
import pytest

import graphflow as gf

keras = gf.keras
L = gf.keras.layers
RNG = np.random.default_rng(2)


def _np_mlp(weights, x):
    k1, b1, k2, b2 = weights
    return np.maximum(x @ k1 + b1, 0) @ k2 + b2


@pytest.mark.parametrize("style", ["input", "input_shape", "add", "functional", "subclass", "data"])
def test_model_styles_agree_with_numpy(style):
    x = RNG.normal(size=(9, 5)).astype("float32")
    if style == "input":
        model = keras.Sequential([keras.Input(shape=(5,)), L.Dense(4, activation="relu"), L.Dense(2)])
    elif style == "input_shape":
        model = keras.Sequential([L.Dense(4, activation="relu", input_shape=(5,)), L.Dense(2)])
    elif style == "add":
        model = keras.Sequential()
        model.add(keras.Input(shape=(5,)))
        model.add(L.Dense(4, activation="relu"))
        model.add(L.Dense(2))
    elif style == "functional":
        inp = keras.Input(shape=(5,))
        model = keras.Model(inp, L.Dense(2)(L.Dense(4, activation="relu")(inp)))
    elif style == "data":
        model = keras.Sequential([L.Dense(4, activation="relu"), L.Dense(2)])
    else:
        class MLP(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = L.Dense(4, activation="relu")
                self.out = L.Dense(2)

            def call(self, inputs, training=None):
                return self.out(self.hidden(inputs))

        model = MLP()
        model.build((None, 5))
    y = model.predict(x)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(5, 4), (4,), (4, 2), (2,)]
    np.testing.assert_allclose(y, _np_mlp(weights, x), rtol=1e-5, atol=1e-5)
    assert isinstance(model.graph, gf.Graph)
    assert isinstance(model.session, gf.Session) and model.session.opt_level == 2


def test_unbuilt_model_says_how_to_build():
    model = keras.Sequential([L.Dense(3)])
    with pytest.raises(ValueError, match="input shape is unknown"):
        model.summary()


def test_summary_table(capsys):
    model = keras.Sequential([keras.Input(shape=(64,)), L.Dense(128, activation="relu", name="hidden"),
                              L.BatchNormalization(name="bn"), L.Dense(10, activation="softmax", name="probs")],
                             name="digits")
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "digits"' in text
    lines = text.splitlines()
    row = next(l for l in lines if l.strip().startswith("hidden (Dense)"))
    assert "(None, 128)" in row and row.rstrip().endswith("8,320")
    assert any(l.strip().startswith("bn (BatchNormalization)") and l.rstrip().endswith("512") for l in lines)
    assert "Total params: 10,122" in text
    assert "Trainable params: 9,866" in text
    assert "Non-trainable params: 256" in text


def test_functional_summary_lists_inputs():
    a = keras.Input(shape=(3,), name="a")
    model = keras.Model(a, L.Dense(2, name="d")(a))
    lines = []
    model.summary(print_fn=lines.append)
    assert "a (InputLayer)" in lines[0] and "(None, 3)" in lines[0]


def test_multi_input_multi_output_with_dict_and_list_data():
    a, b = keras.Input(shape=(3,), name="a"), keras.Input(shape=(2,), name="b")
    joined = L.Concatenate()([a, b])
    model = keras.Model(inputs={"a": a, "b": b}, outputs=[L.Dense(1)(joined), L.Dense(4)(joined)])
    xa, xb = RNG.normal(size=(6, 3)).astype("float32"), RNG.normal(size=(6, 2)).astype("float32")
    out1, out2 = model.predict({"a": xa, "b": xb})
    k1, b1, k2, b2 = model.get_weights()
    x = np.concatenate([xa, xb], axis=1)
    np.testing.assert_allclose(out1, x @ k1 + b1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out2, x @ k2 + b2, rtol=1e-5, atol=1e-5)


def test_shared_layer_and_nested_model():
    inner = keras.Sequential([keras.Input(shape=(4,)), L.Dense(4, activation="tanh")], name="inner")
    shared = L.Dense(4)
    x_in = keras.Input(shape=(4,))
    h = shared(inner(x_in))
    model = keras.Model(x_in, shared(h))
    assert len(model.get_weights()) == 4  # inner's kernel/bias, shared's kernel/bias once
    x = RNG.normal(size=(3, 4)).astype("float32")
    ki, bi, ks, bs = model.get_weights()
    first = np.tanh(x @ ki + bi) @ ks + bs
    np.testing.assert_allclose(model.predict(x), first @ ks + bs, rtol=1e-5, atol=1e-5)


def test_disconnected_graph_is_reported():
    a, b = keras.Input(shape=(2,)), keras.Input(shape=(2,))
    out = L.Add()([a, b])
    with pytest.raises(ValueError, match="disconnected"):
        keras.Model(a, out)


def test_weights_keras_order_and_trainable_flags():
    model = keras.Sequential([keras.Input(shape=(3,)), L.Dense(2), L.BatchNormalization()])
    names = [w.name for w in model.weights]
    assert names == ["kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias", "gamma", "beta"]
    model.layers[0].trainable = False
    assert [w.name for w in model.trainable_weights] == ["gamma", "beta"]


def test_set_weights_after_build_changes_predictions():
    model = keras.Sequential([keras.Input(shape=(2,)), L.Dense(1)])
    model.set_weights([np.array([[1.0], [2.0]]), np.array([0.5])])
    np.testing.assert_allclose(model.predict(np.array([[1.0, 1.0]])), [[3.5]])
    assert model.layers[0].get_weights()[1].tolist() == [0.5]


def test_predict_is_batched_with_a_partial_last_batch():
    model = keras.Sequential([keras.Input(shape=(3,)), L.Dense(2)])
    x = RNG.normal(size=(10, 3)).astype("float32")
    k, b = model.get_weights()
    np.testing.assert_allclose(model.predict(x, batch_size=4), x @ k + b, rtol=1e-5, atol=1e-5)
    assert model.predict(x[:0]).shape == (0, 2)


def test_graph_holds_named_variables():
    model = keras.Sequential([keras.Input(shape=(3,)), L.Dense(2, name="proj")])
    names = [v.op.name for v in gf.global_variables(model.graph)]
    assert names == ["proj/kernel", "proj/bias"]


def test_a_sub_model_shared_with_a_bigger_model_sees_its_training():
    encoder = keras.Sequential([keras.Input(shape=(3,)), L.Dense(2, name="code")], name="encoder")
    x = RNG.normal(size=(8, 3)).astype("float32")
    before = encoder.predict(x)
    full = keras.Sequential([keras.Input(shape=(3,)), encoder, L.Dense(3)])
    full.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    full.fit(x, x, epochs=2, verbose=0)
    k, b = encoder.get_weights()
    np.testing.assert_allclose(encoder.predict(x), x @ k + b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(encoder.predict(x), before)
    encoder.set_weights([np.zeros((3, 2)), np.ones(2)])
    _, _, k2, b2 = full.get_weights()
    np.testing.assert_allclose(full.predict(x), np.ones((8, 2)) @ k2 + b2, rtol=1e-5, atol=1e-5)


def test_python_lists_and_single_item_lists_as_data():
    model = keras.Sequential([L.Dense(1, kernel_initializer="ones")])
    np.testing.assert_allclose(model.predict([[1.0, 2.0], [3.0, 4.0]]), [[3.0], [7.0]])
    np.testing.assert_allclose(model.predict([np.array([[1.0, 1.0]])]), [[2.0]])


def test_calling_a_model_or_layer_on_numpy_runs_it():
    model = keras.Sequential([keras.Input(shape=(2,)), L.Dense(3, activation="relu"), L.Dropout(0.5)])
    x = RNG.normal(size=(4, 2))
    k, b = model.get_weights()
    np.testing.assert_allclose(model(x), np.maximum(x @ k + b, 0), rtol=1e-5, atol=1e-6)
    dense = L.Dense(2, kernel_initializer="ones")
    np.testing.assert_allclose(dense(np.array([[1.0, 2.0, 3.0]], "float32")), [[6.0, 6.0]])
    assert [w.shape for w in dense.weights] == [(3, 2), (2,)]


def test_first_call_on_numpy_builds_with_an_open_batch_dimension():
    model = keras.Sequential([L.Dense(1, kernel_initializer="ones")])
    np.testing.assert_allclose(model(np.ones((4, 2))), np.full((4, 1), 2.0))
    np.testing.assert_allclose(model.predict(np.ones((7, 2))), np.full((7, 1), 2.0))


@pytest.mark.parametrize("calls_super", [True, False])
def test_subclassed_model_with_its_own_build_and_weights(calls_super):
    class Scaled(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2, kernel_initializer="ones")

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(2,), initializer="ones", name="scale")
            if calls_super:
                super().build(input_shape)

        def call(self, inputs):
            return self.dense(inputs) * self.scale

    model = Scaled()
    x = np.ones((3, 4), "float32")
    np.testing.assert_allclose(model.predict(x), np.full((3, 2), 4.0))
    assert [w.name for w in model.weights] == ["scale", "kernel", "bias"]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(x, np.zeros((3, 2)), verbose=0)
    assert model.get_weights()[0][0] < 1.0  # the model's own weight trains too


def test_get_layer_batch_methods_and_variable_aliases():
    model = keras.Sequential([keras.Input(shape=(2,)), L.Dense(1, name="out", kernel_initializer="ones")])
    assert model.get_layer("out") is model.get_layer(index=0)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.get_layer("nope")
    assert model.trainable_variables == model.trainable_weights and len(model.variables) == 2
    x, y = np.ones((3, 2), "float32"), np.zeros((3, 1), "float32")
    np.testing.assert_allclose(model.predict_on_batch(x), np.full((3, 1), 2.0))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=["mae"])
    assert model.test_on_batch(x, y) == pytest.approx([4.0, 2.0])
