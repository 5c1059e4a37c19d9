"""gf.keras saving: one zip file (config.json + weights .npz), load without the defining script, clear errors."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import graphflow as gf

keras = gf.keras
L = gf.keras.layers
RNG = np.random.default_rng(4)


def _cnn():
    return keras.Sequential([keras.Input(shape=(6, 6, 2)), L.Conv2D(3, 3, padding="same", activation="relu"),
                             L.BatchNormalization(), L.MaxPooling2D(), L.Flatten(), L.Dropout(0.2),
                             L.Dense(4, activation="softmax")], name="cnn")


def _functional():
    a, b = keras.Input(shape=(4,), name="a"), keras.Input(shape=(3,), dtype="int32", name="ids")
    e = L.Flatten()(L.Embedding(10, 2)(b))
    h = L.Concatenate()([L.LayerNormalization()(a), e])
    shared = L.Dense(5, activation="gelu", name="shared")
    out = L.Add()([shared(h), shared(L.Dense(10)(h))])
    return keras.Model([a, b], [L.Dense(1, activation="sigmoid")(out), out], name="two_heads")


@pytest.mark.parametrize("build", [_cnn, _functional])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, build):
    model = build()
    model.set_weights([w + RNG.uniform(0.1, 0.2, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    xs = ([RNG.normal(size=(5, 6, 6, 2)).astype("float32")] if model.name == "cnn" else
          [RNG.normal(size=(5, 4)).astype("float32"), RNG.integers(0, 10, size=(5, 3)).astype("int32")])
    x = xs[0] if len(xs) == 1 else xs
    path = tmp_path / "model.keras"
    model.save(path)
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.weights.npz"]
        assert json.loads(zf.read("config.json"))["format"] == "graphflow.keras"
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(np.atleast_1d(loaded.predict(x)) if len(xs) == 1 else loaded.predict(x),
                    np.atleast_1d(model.predict(x)) if len(xs) == 1 else model.predict(x)):
        np.testing.assert_array_equal(a, b)


def test_loads_in_a_fresh_process_without_the_defining_script(tmp_path):
    model = _cnn()
    x = RNG.normal(size=(3, 6, 6, 2)).astype("float32")
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", model.predict(x))
    code = ("import numpy as np, graphflow as gf, sys; d = sys.argv[1]; "
            "m = gf.keras.models.load_model(d + '/m.keras'); "
            "assert np.array_equal(m.predict(np.load(d + '/x.npy')), np.load(d + '/want.npy')); print('ok')")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_compiled_model_comes_back_compiled_and_trainable(tmp_path):
    model = keras.Sequential([keras.Input(shape=(3,)), L.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert loaded.optimizer.momentum == 0.5
    x, y = RNG.normal(size=(8, 3)).astype("float32"), RNG.integers(0, 2, size=8)
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y))
    assert "accuracy" in loaded.fit(x, y, verbose=0).history


def test_custom_layer_via_registration_and_custom_objects(tmp_path):
    @keras.saving.register_keras_serializable(package="tests")
    class Scale(L.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.w * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    class Unregistered(Scale):
        pass

    x = RNG.normal(size=(2, 3)).astype("float32")
    for cls, custom in ((Scale, None), (Unregistered, {"Unregistered": Unregistered})):
        model = keras.Sequential([keras.Input(shape=(3,)), cls(3.0)])
        model.set_weights([np.array([1.0, 2.0, 3.0])])
        model.save(tmp_path / "c.keras")
        if custom:
            with pytest.raises(ValueError, match="Unregistered.*custom_objects"):
                keras.models.load_model(tmp_path / "c.keras")
        loaded = keras.models.load_model(tmp_path / "c.keras", custom_objects=custom)
        np.testing.assert_allclose(loaded.predict(x), x * np.array([1.0, 2.0, 3.0]) * 3.0, rtol=1e-6)


def test_subclassed_model_without_config_says_to_save_weights(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, inputs):
            return self.d(inputs)

    net = Net()
    net.build((None, 3))
    with pytest.raises(NotImplementedError, match="save_weights"):
        net.save(tmp_path / "n.keras")
    net.save_weights(tmp_path / "n.weights.npz")
    other = Net()
    other.build((None, 3))
    other.load_weights(tmp_path / "n.weights.npz")
    for a, b in zip(other.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_files(tmp_path):
    model = _cnn()
    model.save_weights(tmp_path / "w.weights.npz")
    clone = _cnn()
    clone.load_weights(tmp_path / "w.weights.npz")
    for a, b in zip(clone.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with np.load(tmp_path / "w.weights.npz", allow_pickle=False) as npz:  # plain arrays, no pickle
        assert len(npz.files) == len(model.weights)
    model.save_weights(tmp_path / "w.weights.h5")  # a Keras 3 style name: still an npz archive
    clone.load_weights(tmp_path / "w.weights.h5")
    small = keras.Sequential([keras.Input(shape=(3,)), L.Dense(2)])
    with pytest.raises(ValueError, match="holds 8 weight arrays but model"):
        small.load_weights(tmp_path / "w.weights.npz")


def test_corrupted_and_foreign_files_give_clear_errors(tmp_path):
    model = _cnn()
    path = tmp_path / "m.keras"
    model.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.keras.*(truncated|corrupt)"):
        keras.models.load_model(truncated)
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.keras: not a graphflow model file"):
        keras.models.load_model(text)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"other\.zip: not a graphflow model file.*config\.json"):
        keras.models.load_model(other_zip)
    flipped = bytearray(data)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.weights.npz")
    mid = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    flipped[mid] ^= 0xFF
    bad = tmp_path / "flipped.keras"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"flipped\.keras"):
        keras.models.load_model(bad)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        keras.models.load_model(tmp_path / "missing.keras")


def test_save_replaces_atomically(tmp_path):
    model = _cnn()
    path = tmp_path / "m.keras"
    path.write_text("old")
    model.save(path)
    assert zipfile.is_zipfile(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # no temp file left behind


def test_registered_custom_activation_round_trips(tmp_path):
    @keras.saving.register_keras_serializable(package="tests")
    def shifted_relu(x):
        return gf.nn.relu(x - 0.5)

    model = keras.Sequential([keras.Input(shape=(2,)), L.Dense(2, activation=shifted_relu)])
    model.set_weights([np.eye(2), np.zeros(2)])
    model.save(tmp_path / "a.keras")
    loaded = keras.models.load_model(tmp_path / "a.keras")
    np.testing.assert_allclose(loaded.predict(np.array([[1.0, 0.2]])), [[0.5, 0.0]])
    with pytest.raises(ValueError, match="register"):
        keras.Sequential([keras.Input(shape=(2,)), L.Dense(2, activation=lambda x: x)]).save(tmp_path / "b.keras")
