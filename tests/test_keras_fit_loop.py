"""The fit loop's fast path (no callback with a batch hook: no per-batch hooks or running
logs) trains and logs exactly as the path that calls them, and slots start where Keras
starts them without an initializer run."""
import numpy as np
import pytest

import graphflow as gf

keras = gf.keras


def _fit(callbacks, optimizer, epochs=3):
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(45, 6)).astype(np.float32)   # 45 = 5 full batches of 8 and one of 5
    y = rng.integers(0, 4, size=45)
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(9, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)
    return history.history, model.get_weights()


class BatchEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


class OldStyleBatchBegin(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_batch_begin(self, batch, logs=None):
        self.batches.append(batch)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_fit_without_batch_hooks_matches_fit_with_them(optimizer):
    fast_history, fast_weights = _fit([], optimizer)
    hook = BatchEnd()
    slow_history, slow_weights = _fit([hook], optimizer)
    assert fast_history == slow_history   # the same epoch logs, bit for bit
    for a, b in zip(fast_weights, slow_weights):
        np.testing.assert_array_equal(a, b)
    assert len(hook.logs) == 3 * 6 and hook.logs[5] == {k: v[0] for k, v in slow_history.items()}


def test_an_old_style_batch_hook_and_an_instance_hook_are_still_called():
    old = OldStyleBatchBegin()
    _fit([old], "sgd", epochs=1)
    assert old.batches == list(range(6))
    seen = []
    cb = keras.callbacks.Callback()
    cb.on_train_batch_end = lambda batch, logs=None: seen.append(batch)
    _fit([cb], "sgd", epochs=1)
    assert seen == list(range(6))


def test_optimizer_slots_start_as_keras_starts_them():
    for name, slot_value in (("adam", 0.0), ("rmsprop", 0.0)):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)])
        model.compile(optimizer=name, loss="mse")
        runtime = model._runtime_for_run(np.zeros((1, 3), np.float32))
        model._train_step(runtime, [np.zeros((4, 2), np.float32)])   # builds the update, sets the slots
        store = model.session._store.values
        opt = model.optimizer._applied
        for var in model.optimizer._applied_vars:
            for slot_name in opt.get_slot_names():
                slot = opt.get_slot(var, slot_name)
                np.testing.assert_array_equal(store[slot.op.name], np.full(slot.shape, slot_value, np.float32))
        if name == "adam":
            np.testing.assert_allclose(store["beta1_power"], 0.9)
            np.testing.assert_allclose(store["beta2_power"], 0.999)
