"""gf.keras training: one compiled training graph, fit/evaluate/predict, losses, metrics, callbacks, progress bar."""
import io
import os
import sys
import time

import numpy as np
import pytest

import graphflow as gf

keras = gf.keras
L = gf.keras.layers
RNG = np.random.default_rng(3)


def _linear(units=1, inputs=3, activation=None):
    return keras.Sequential([keras.Input(shape=(inputs,)), L.Dense(units, activation=activation)])


def _data(n=10, d=3, classes=None):
    x = RNG.normal(size=(n, d)).astype("float32")
    y = RNG.integers(0, classes, size=n) if classes else RNG.normal(size=(n, 1)).astype("float32")
    return x, y


def test_fit_before_compile_says_what_to_do():
    x, y = _data()
    with pytest.raises(RuntimeError, match="compile"):
        _linear().fit(x, y, verbose=0)


def test_sgd_step_matches_numpy_and_logs_the_pre_update_loss():
    model = _linear()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = _data()
    k, b = model.get_weights()
    hist = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    err = x @ k + b - y
    assert hist.history["loss"][0] == pytest.approx(float((err ** 2).mean()), rel=1e-5)
    k2, b2 = model.get_weights()
    np.testing.assert_allclose(k2, k - 0.1 * 2 * x.T @ err / len(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b2, b - 0.1 * 2 * err.mean(0), rtol=1e-5, atol=1e-6)


def test_adam_first_step_matches_numpy():
    model = _linear()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mae")
    x, y = _data()
    k, b = model.get_weights()
    model.train_on_batch(x, y)
    g = x.T @ np.sign(x @ k + b - y) / len(x)
    m, v = 0.1 * g, 0.001 * g * g
    step = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(model.get_weights()[0], k - step, rtol=1e-4, atol=1e-6)


def test_one_training_graph_and_one_callable_for_all_batches(monkeypatch):
    model = _linear(3, activation="softmax")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data(n=10, classes=3)
    calls = []
    real = model.session.make_callable
    monkeypatch.setattr(model.session, "make_callable", lambda *a, **k: calls.append(a) or real(*a, **k))
    seen = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, dict(logs)))

    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[Count()])
    assert len(calls) == 1  # one training callable; every batch (4, 4 and the partial 2) runs through it
    assert [b for b, _ in seen] == [0, 1, 2, 0, 1, 2]
    ops = len(model.graph.get_operations())
    model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    assert len(calls) == 1 and len(model.graph.get_operations()) == ops


def test_history_validation_split_takes_the_last_fraction():
    model = _linear(3, activation="softmax")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data(n=20, classes=3)
    hist = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    assert sorted(hist.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in hist.history.values()) and hist.epoch == [0, 1, 2]
    loss, acc = model.evaluate(x[15:], y[15:])
    assert hist.history["val_loss"][-1] == pytest.approx(loss, rel=1e-6)
    assert hist.history["val_accuracy"][-1] == pytest.approx(acc)
    assert hist.history["loss"][-1] == pytest.approx(model.evaluate(x[:15], y[:15])[0], rel=1e-5)
    hist2 = model.fit(x, y, epochs=1, validation_data=(x[:5], y[:5]), verbose=0)
    assert hist2.history["val_loss"][0] == pytest.approx(model.evaluate(x[:5], y[:5])[0], rel=1e-6)
    assert model.history is hist2


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("last", ["softmax", None])
def test_crossentropies_and_accuracy_match_numpy(last):
    model = _linear(4, activation=last)
    x, labels = _data(n=12, classes=4)
    k, b = model.get_weights()
    z = x @ k + b
    p = _np_softmax(z)
    want = -np.log(p[np.arange(12), labels]).mean()
    acc = (p.argmax(1) == labels).mean()
    from_logits = last is None
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    assert model.evaluate(x, labels) == pytest.approx([want, acc], rel=1e-5)
    model.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    assert model.evaluate(x, np.eye(4)[labels]) == pytest.approx([want, acc], rel=1e-5)


def test_softmax_output_uses_the_stable_logits_form():
    model = _linear(2, inputs=1, activation="softmax")
    model.set_weights([np.array([[100.0, -100.0]]), np.zeros(2)])
    model.compile(loss="sparse_categorical_crossentropy")
    # probabilities would be clipped to 1e-7 (loss 16.1); the logits form gives the exact 200
    assert model.evaluate(np.ones((1, 1)), np.array([1])) == pytest.approx(200.0, rel=1e-5)


def test_binary_mse_mae_and_metric_resolution():
    model = _linear(1, activation="sigmoid")
    x = RNG.normal(size=(16, 3)).astype("float32")
    y = (RNG.random(16) > 0.5).astype("float32")
    k, b = model.get_weights()
    p = 1 / (1 + np.exp(-(x @ k + b)[:, 0]))
    model.compile(loss="binary_crossentropy", metrics=["accuracy", "mse", "mae"])
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    logs = model.evaluate(x, y, return_dict=True)
    assert list(logs) == ["loss", "accuracy", "mse", "mae"]
    assert logs["loss"] == pytest.approx(bce, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(((p > 0.5) == y).mean())
    assert logs["mse"] == pytest.approx(((p - y) ** 2).mean(), rel=1e-5)
    assert logs["mae"] == pytest.approx(np.abs(p - y).mean(), rel=1e-5)


def test_custom_callable_loss_and_metric():
    model = _linear()
    x, y = _data()

    def half_sq(y_true, y_pred):
        return 0.5 * gf.square(y_pred - y_true)

    def max_err(y_true, y_pred):
        return gf.reduce_max(gf.abs(y_pred - y_true))

    model.compile(optimizer="sgd", loss=half_sq, metrics=[max_err])
    k, b = model.get_weights()
    err = x @ k + b - y
    assert model.evaluate(x, y, batch_size=len(x)) == pytest.approx([0.5 * (err ** 2).mean(), np.abs(err).max()],
                                                                      rel=1e-5)


def test_batchnorm_and_dropout_train_differently_from_inference():
    model = keras.Sequential([keras.Input(shape=(4,)), L.BatchNormalization(), L.Dropout(0.5), L.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = _data(n=8, d=4)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    _, _, mean, var = model.layers[0].get_weights()
    np.testing.assert_allclose(mean, 0.01 * x.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, 0.99 + 0.01 * x.var(0), rtol=1e-4)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # inference: no dropout
    train_losses = {round(model.fit(x, y, batch_size=8, verbose=0).history["loss"][0], 6) for _ in range(3)}
    assert len(train_losses) > 1  # fresh dropout masks each step


def test_callback_hooks_in_keras_order():
    events = []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None): events.append("train_begin")
        def on_epoch_begin(self, epoch, logs=None): events.append(f"epoch_begin {epoch}")
        def on_train_batch_begin(self, batch, logs=None): events.append(f"batch_begin {batch}")
        def on_train_batch_end(self, batch, logs=None): events.append(f"batch_end {batch}")
        def on_epoch_end(self, epoch, logs=None): events.append(f"epoch_end {epoch} {sorted(logs)}")
        def on_train_end(self, logs=None): events.append("train_end")

    model = _linear()
    model.compile(loss="mse")
    x, y = _data(n=4)
    model.fit(x, y, batch_size=2, epochs=2, validation_data=(x, y), verbose=0, callbacks=[Recorder()])
    assert events == ["train_begin", "epoch_begin 0", "batch_begin 0", "batch_end 0", "batch_begin 1", "batch_end 1",
                      "epoch_end 0 ['loss', 'val_loss']", "epoch_begin 1", "batch_begin 0", "batch_end 0",
                      "batch_begin 1", "batch_end 1", "epoch_end 1 ['loss', 'val_loss']", "train_end"]


def test_stop_training_from_a_callback():
    class StopAtSecondBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    model = _linear()
    model.compile(loss="mse")
    x, y = _data(n=10)
    hist = model.fit(x, y, batch_size=2, epochs=5, verbose=0, callbacks=[StopAtSecondBatch()])
    assert hist.epoch == [0]


def test_early_stopping_patience_and_restore_best_weights():
    model = _linear()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x, y = _data(n=10)
    best = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            best.append((logs["val_loss"], self.model.get_weights()))

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    # a big learning rate on unscaled data diverges: val_loss rises after the first epochs
    x_far = x * 30
    hist = model.fit(x_far, y, epochs=20, validation_data=(x_far, y), verbose=0, callbacks=[Snapshot(), stop])
    assert len(hist.epoch) < 20 and stop.stopped_epoch == hist.epoch[-1]
    losses = hist.history["val_loss"]
    i = int(np.argmin(losses))
    assert len(losses) - 1 - i == 2 or len(losses) - 1 - i == 1
    for a, b in zip(model.get_weights(), best[i][1]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_min_delta_and_mode():
    stop = keras.callbacks.EarlyStopping(monitor="accuracy", min_delta=0.1, patience=0)
    stop.set_model(_linear())
    stop.on_train_begin()
    for epoch, acc in enumerate([0.5, 0.55]):
        stop.on_epoch_end(epoch, {"accuracy": acc})
    assert stop.model.stop_training and stop.best == 0.5  # "acc" monitors maximize; 0.05 < min_delta


def test_model_checkpoint_and_csv_logger(tmp_path):
    model = _linear()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x, y = _data(n=10)
    every = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{loss:.3f}.keras"), monitor="loss")
    best = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.npz"), monitor="loss", save_best_only=True,
                                           save_weights_only=True)
    log = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    hist = model.fit(x, y, epochs=3, verbose=0, callbacks=[every, best, log])
    saved = sorted(p for p in os.listdir(tmp_path) if p.startswith("m-"))
    assert [p[:4] for p in saved] == ["m-01", "m-02", "m-03"]
    assert f"{hist.history['loss'][0]:.3f}" in saved[0]
    restored = keras.models.load_model(tmp_path / saved[-1])
    np.testing.assert_allclose(restored.predict(x), model.predict(x), rtol=1e-6)
    clone = _linear()
    clone.load_weights(tmp_path / "best.weights.npz")
    i = int(np.argmin(hist.history["loss"]))
    if i == 2:
        np.testing.assert_array_equal(clone.get_weights()[0], model.get_weights()[0])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss" and len(rows) == 4
    assert float(rows[3].split(",")[1]) == pytest.approx(hist.history["loss"][2])
    appender = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"), separator=";", append=True)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[appender])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[4].startswith("0;")


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


_PRINTING = {}


def _fit_printing(monkeypatch, stream, verbose, epochs=2):
    if not _PRINTING:  # one model for the progress-bar tests: they differ only in where the output goes
        model = _linear(3, activation="softmax")
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        _PRINTING.update(model=model, data=_data(n=64, classes=3))
    model, (x, y) = _PRINTING["model"], _PRINTING["data"]
    monkeypatch.setattr(sys, "stdout", stream)

    class Slow(keras.callbacks.Callback):  # long enough steps that the in-place redraw happens
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.06)

    model.fit(x, y, batch_size=16, epochs=epochs, validation_split=0.25, verbose=verbose, callbacks=[Slow()])
    monkeypatch.undo()
    return stream.getvalue()


def test_progress_bar_on_a_terminal_redraws_one_line_per_epoch(monkeypatch):
    out = _fit_printing(monkeypatch, _FakeTerminal(), verbose=1)
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 3  # one finished line per epoch
    first = lines[0].split("\r")
    assert len(first) > 2  # redrawn in place
    assert "Epoch 1/2" in first[1] and "1/3 [" in first[1] and "ETA:" in first[1] and "loss:" in first[1]
    assert "accuracy:" in first[1]
    final = first[-1]
    assert "3/3 [==============================]" in final and "val_loss:" in final and "val_accuracy:" in final
    assert "ETA" not in final and "ms/step" in final


def test_progress_bar_to_a_pipe_prints_plain_lines(monkeypatch):
    out = _fit_printing(monkeypatch, io.StringIO(), verbose=1, epochs=3)
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("Epoch 3/3 3/3 [") and "loss:" in lines[2] and "val_accuracy:" in lines[2]


def test_verbose_0_prints_nothing_and_verbose_2_one_line_per_epoch(monkeypatch):
    assert _fit_printing(monkeypatch, _FakeTerminal(), verbose=0) == ""
    out = _fit_printing(monkeypatch, _FakeTerminal(), verbose=2)
    assert "\r" not in out and len(out.splitlines()) == 2


def test_rmsprop_and_momentum_optimizers_train():
    x = RNG.normal(size=(64, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    for opt in (keras.optimizers.RMSprop(0.05), keras.optimizers.SGD(0.05, momentum=0.9),
                keras.optimizers.Adam(0.05)):
        model = _linear()
        model.compile(optimizer=opt, loss="mse")
        hist = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
        assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]


@pytest.mark.slow
def test_digits_mlp_reaches_97_percent_validation_accuracy():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(64,)), L.Dense(128, activation="relu"),
                              L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    hist = model.fit(x, y, batch_size=32, epochs=20, validation_split=0.2, verbose=0)
    assert time.perf_counter() - start < 60
    assert max(hist.history["val_accuracy"]) >= 0.97


def test_evaluate_and_predict_verbose_print_one_line(monkeypatch):
    model = _linear()
    model.compile(loss="mse")
    x, y = _data(n=10)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    loss = model.evaluate(x, y, batch_size=4, verbose=1)
    model.predict(x, batch_size=4, verbose=1)
    model.predict(x)
    monkeypatch.undo()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("3/3 [") and f"loss: {loss:.4f}" in lines[0]
    assert lines[1].startswith("3/3 [")


def test_custom_layer_with_a_training_argument_gets_training_true_in_fit():
    modes = []

    class Noisy(L.Layer):
        def call(self, inputs, training=None):
            modes.append(bool(training))
            return inputs + 1.0 if training else inputs

    model = keras.Sequential([keras.Input(shape=(1,)), Noisy(), L.Dense(1, kernel_initializer="ones")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.zeros((4, 1), "float32")
    hist = model.fit(x, np.zeros((4, 1)), batch_size=4, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(1.0)  # the training graph added 1
    assert model.evaluate(x, np.zeros((4, 1))) == pytest.approx(0.0)
    assert True in modes and False in modes


def test_metric_objects_log_under_their_names():
    model = _linear(3, activation="softmax")
    x, labels = _data(n=12, classes=3)
    model.compile(loss="sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy(), keras.metrics.MeanSquaredError(name="sq")])
    logs = model.evaluate(x, np.eye(3)[labels].argmax(1), return_dict=True)
    p = model.predict(x)
    assert list(logs) == ["loss", "sparse_categorical_accuracy", "sq"]
    assert logs["sparse_categorical_accuracy"] == pytest.approx((p.argmax(1) == labels).mean())


def test_multi_output_losses_weights_and_logs():
    inp = keras.Input(shape=(3,))
    model = keras.Model(inp, [L.Dense(1, name="reg")(inp), L.Dense(2, activation="softmax", name="cls")(inp)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=["mse", "sparse_categorical_crossentropy"],
                  loss_weights=[0.5, 2.0], metrics=["accuracy"])
    x = RNG.normal(size=(6, 3)).astype("float32")
    y_reg, y_cls = RNG.normal(size=(6, 1)).astype("float32"), RNG.integers(0, 2, size=6)
    logs = model.evaluate(x, [y_reg, y_cls], return_dict=True)
    assert list(logs) == ["loss", "reg_loss", "reg_accuracy", "cls_loss", "cls_accuracy"]
    assert logs["loss"] == pytest.approx(0.5 * logs["reg_loss"] + 2.0 * logs["cls_loss"], rel=1e-5)
    hist = model.fit(x, [y_reg, y_cls], epochs=1, verbose=0)
    assert hist.history["cls_loss"][0] == pytest.approx(logs["cls_loss"], rel=1e-5)
