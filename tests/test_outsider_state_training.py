"""Outsider tests of the session's runtime and training fast paths, through the public API only.

Written against API.md by someone who did not write the code: Assigns that adopt fresh arrays
without a copy, restructured optimizer updates, concurrent runs, the kernel cache (own ELF loader,
host-CPU record) shared between processes, and the Keras fit fast path. Optimizers are checked
against a numpy re-implementation of TF1's update rules; Keras results against numpy forward
passes over `get_weights()`.
"""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import graphflow as gf

K = gf.keras
REPO = Path(__file__).resolve().parents[1]


# ---- optimizers vs numpy TF1 ----

N, D, C = 37, 19, 5
_RNG = np.random.default_rng(5)
X = _RNG.standard_normal((N, D))
Y = _RNG.standard_normal((N, C))
W0 = _RNG.standard_normal((D, C)) * 0.3
B0 = _RNG.standard_normal(C) * 0.1

OPTIMIZERS = {
    "sgd": lambda: gf.train.GradientDescentOptimizer(0.1),
    "momentum": lambda: gf.train.MomentumOptimizer(0.1, 0.9),
    "adam": lambda: gf.train.AdamOptimizer(0.01),
    "rmsprop": lambda: gf.train.RMSPropOptimizer(0.01),
}


def _numpy_tf1_steps(name, dtype, steps=3):
    """(W, b) after each step of TF1's update on loss = mean((xW + b - y)^2)."""
    w, b = W0.astype(dtype), B0.astype(dtype)
    x, y = X.astype(dtype), Y.astype(dtype)
    state, out = {}, []
    for t in range(1, steps + 1):
        r = (x @ w + b - y) * (2.0 / (N * C))
        params = []
        for key, p, g in (("w", w, x.T @ r), ("b", b, r.sum(0))):
            if name == "sgd":
                p = p - 0.1 * g
            elif name == "momentum":
                state[key] = acc = state.get(key, 0) * 0.9 + g
                p = p - 0.1 * acc
            elif name == "adam":
                m, v = state.get(key, (0, 0))
                state[key] = m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                p = p - 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
            else:   # TF1 RMSProp: the mean square starts at one
                ms = state.get(key, np.ones_like(p)) * 0.9 + 0.1 * g * g
                state[key] = ms
                p = p - 0.01 * g / np.sqrt(ms + 1e-10)
            params.append(p)
        w, b = params
        out.append((w, b))
    return out


def _linear_model(dtype, optimizer):
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(dtype, shape=(None, D))
        y = gf.placeholder(dtype, shape=(None, C))
        w = gf.Variable(W0.astype(dtype), name="w")
        b = gf.Variable(B0.astype(dtype), name="b")
        loss = gf.reduce_mean(gf.square(gf.matmul(x, w) + b - y))
        train = OPTIMIZERS[optimizer]().minimize(loss)
        init = gf.global_variables_initializer()
    return g, x, y, w, b, train, init


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("opt_level,threads", [(0, 1), (2, 1), (2, 2)])
def test_three_optimizer_steps_match_numpy_tf1(optimizer, dtype, tol, opt_level, threads):
    want = _numpy_tf1_steps(optimizer, dtype)
    g, x, y, w, b, train, init = _linear_model(dtype, optimizer)
    with gf.Session(graph=g, opt_level=opt_level, num_threads=threads) as s:
        s.run(init)
        kept = []
        for t in range(3):
            w_same_run, _ = s.run([w, train], {x: X, y: Y})
            before = W0 if t == 0 else want[t - 1][0]
            np.testing.assert_allclose(w_same_run, before, rtol=tol, atol=tol)   # a read in the update's run: old value
            wv, bv = s.run([w, b])
            kept.append((wv, wv.copy()))
            np.testing.assert_allclose(wv, want[t][0], rtol=tol, atol=tol)
            np.testing.assert_allclose(bv, want[t][1], rtol=tol, atol=tol)
        for fetched, copy in kept:   # later updates never write into arrays fetched earlier
            np.testing.assert_array_equal(fetched, copy)


def test_training_a_tied_weight_network_agrees_across_opt_levels_and_thread_counts():
    rng = np.random.default_rng(17)
    x_all, labels_all = rng.standard_normal((67, 30)), rng.integers(0, 10, 67).astype(np.int32)
    w1_0, w2_0, e_0 = rng.standard_normal((30, 40)) * 0.2, rng.standard_normal((40, 10)) * 0.2, rng.standard_normal((10, 40)) * 0.2
    results = {}
    for opt_level, threads in ((0, 1), (2, 1), (2, 3)):
        g = gf.Graph()
        with g.as_default():
            x = gf.placeholder(gf.float64, shape=(None, 30))
            labels = gf.placeholder(gf.int32, shape=(None,))
            w1, w2, e = gf.Variable(w1_0), gf.Variable(w2_0), gf.Variable(e_0)
            h = gf.tanh(gf.matmul(x, w1))
            logits = gf.matmul(h, w2) + gf.matmul(h, e, transpose_b=True)
            h2 = gf.nn.relu(gf.matmul(logits, e))   # e used twice, once transposed
            loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)) \
                + 0.01 * gf.reduce_sum(gf.square(h2))
            step = gf.train.AdamOptimizer(0.01).minimize(loss)
            init = gf.global_variables_initializer()
        with gf.Session(graph=g, opt_level=opt_level, num_threads=threads) as s:
            s.run(init)
            hist = []
            for batch in (67, 1, 33, 2):
                hist.append(s.run(loss, {x: x_all[:batch], labels: labels_all[:batch]}))
                s.run(step, {x: x_all[:batch], labels: labels_all[:batch]})
                hist.extend(s.run([w1, w2, e]))
            results[(opt_level, threads)] = hist
    for key in ((2, 1), (2, 3)):
        for r, o in zip(results[(0, 1)], results[key]):
            np.testing.assert_allclose(o, r, rtol=1e-9, atol=1e-9)
    for a, b in zip(results[(2, 1)], results[(2, 3)]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_concurrent_training_runs_lose_no_update_and_never_tear_a_read(opt_level, optimizer):
    g = gf.Graph()
    with g.as_default():
        c = gf.placeholder(gf.float64, shape=(50, 40))
        w = gf.Variable(np.zeros((50, 40)))
        count = gf.Variable(0.0, dtype=gf.float64)
        opt = gf.train.GradientDescentOptimizer(0.5) if optimizer == "sgd" else gf.train.MomentumOptimizer(0.5, 0.0)
        train = gf.group(opt.minimize(gf.reduce_sum(w * c)), count.assign_add(1.0))   # constant gradient c
        init = gf.global_variables_initializer()
    reads = []
    with gf.Session(graph=g, opt_level=opt_level, num_threads=2) as s:
        s.run(init)

        def work():
            for _ in range(100):
                wv = s.run(w)
                reads.append((wv, wv.copy()))
                s.run(train, {c: np.ones((50, 40))})

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wv, n = s.run([w, count])
    assert n == 400
    np.testing.assert_allclose(wv, -0.5 * 400)
    for fetched, copy in reads:
        np.testing.assert_array_equal(fetched, copy)
        assert (fetched == fetched[0, 0]).all()


# ---- aliasing between feeds, fetches and variables ----

VALUES = {
    "fed": lambda p: p, "identity": gf.identity, "times_one": lambda p: p * 1.0, "plus_zero": lambda p: p + 0.0,
    "reshaped": lambda p: gf.reshape(gf.reshape(p, (-1,)), (4, 3)), "sliced": lambda p: p[:, :],
    "transposed_twice": lambda p: gf.transpose(gf.transpose(p)), "stop_gradient": gf.stop_gradient,
    "expression": lambda p: p * 2.0 - 1.0, "tanh": gf.tanh, "product": lambda p: gf.matmul(p, gf.eye(3)),
    "concat": lambda p: gf.concat([p[:2], p[2:]], 0),
}


@pytest.mark.parametrize("opt_level", [0, 1, 2])
@pytest.mark.parametrize("value", sorted(VALUES))
def test_assigned_values_never_alias_feeds_or_fetched_arrays(opt_level, value):
    g = gf.Graph()
    with g.as_default():
        p = gf.placeholder(gf.float32, shape=(4, 3))
        v = gf.Variable(np.zeros((4, 3), np.float32))
        val = VALUES[value](p)
        assign = v.assign(val)
        other = val + 1.0   # a second consumer of the assigned value
    feed = np.arange(12, dtype=np.float32).reshape(4, 3)
    with gf.Session(graph=g, opt_level=opt_level) as s:
        want = s.run(val, {p: feed}).copy()
        for fetches in ([assign.op], [assign], [assign, other], [assign.op, other], [assign.op, v]):
            s.run(v.initializer)
            fed = feed.copy()
            out = s.run(fetches, {p: fed})
            fed[...] = -99.0                                   # the caller reuses its feed buffer
            for o in out:
                if isinstance(o, np.ndarray):
                    o[...] = 12345.0                           # and scribbles on what it fetched
            fetched_v = s.run(v)
            np.testing.assert_array_equal(fetched_v, want)
            fetched_v[...] = 7.0
            np.testing.assert_array_equal(s.run(v), want)
            keep = s.run([v, other], {p: feed})
            copies = [k.copy() for k in keep]
            s.run(assign.op, {p: feed * 3})
            s.run([v, other], {p: feed * 5})
            for k, c in zip(keep, copies):
                np.testing.assert_array_equal(k, c)


FETCHES = {
    "constant": lambda x, v: gf.constant(np.arange(6.0).reshape(2, 3)),
    "folded": lambda x, v: gf.constant(np.arange(6.0).reshape(2, 3)) * 2.0 + 1.0,
    "fed": lambda x, v: x, "fed_reshaped": lambda x, v: gf.reshape(x, (3, 2)), "fed_slice": lambda x, v: x[:, 1:],
    "variable": lambda x, v: v, "variable_reshaped": lambda x, v: gf.reshape(v, (3, 2)),
    "variable_slice": lambda x, v: v[1:], "broadcast": lambda x, v: gf.broadcast_to(gf.ones((3,), gf.float64), (2, 3)),
    "expression": lambda x, v: gf.tanh(x) + v, "assign": lambda x, v: v.assign(x),
}


@pytest.mark.parametrize("opt_level", [0, 1, 2])
@pytest.mark.parametrize("fetch", sorted(FETCHES))
def test_writing_into_a_fetched_array_never_changes_a_later_run(opt_level, fetch):
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, shape=(2, 3))
        v = gf.Variable(np.ones((2, 3)))
        y = FETCHES[fetch](x, v)
    with gf.Session(graph=g, opt_level=opt_level) as s:
        s.run(v.initializer)
        first = s.run(y, {x: np.arange(6.0).reshape(2, 3)})
        want = first.copy()
        first[...] = -777.0
        s.run(v.initializer)
        np.testing.assert_array_equal(s.run(y, {x: np.arange(6.0).reshape(2, 3)}), want)


@pytest.mark.parametrize("opt_level", [0, 2])
def test_a_failed_training_run_leaves_the_variables_unchanged(opt_level):
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, shape=(None, 3))
        w = gf.Variable(np.ones((3, 2)))
        step = gf.train.GradientDescentOptimizer(0.1).minimize(gf.reduce_sum(gf.square(gf.matmul(x, w))))
        broken = gf.reshape(x, (5,))
    with gf.Session(graph=g, opt_level=opt_level) as s:
        s.run(w.initializer)
        with pytest.raises(gf.errors.InvalidArgumentError):
            s.run([step, broken], {x: np.ones((4, 3))})
        np.testing.assert_array_equal(s.run(w), np.ones((3, 2)))


# ---- the kernel cache shared by processes ----

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import graphflow as gf
    rng = np.random.default_rng(0)
    outs = []
    for dt in (np.float32, np.float64):
        g = gf.Graph()
        with g.as_default():
            a = gf.placeholder(dt, shape=(None, 37)); w = gf.placeholder(dt, shape=(29, 37))
            c = gf.placeholder(dt, shape=(None, 29))
            y = gf.matmul(a, w, transpose_b=True)
            fetches = [y, gf.nn.softmax(gf.tanh(y + 1.0)) + gf.nn.log_softmax(y) * gf.erf(c),
                       gf.reduce_sum(gf.exp(-gf.abs(y)) * gf.sin(c), axis=0) + gf.reduce_max(gf.log1p(gf.abs(c)), axis=0),
                       gf.pow(gf.abs(c) + 1.0, 1.7) + gf.sigmoid(c) * gf.expm1(c * 0.1) + gf.nn.gelu(c),
                       gf.cast(gf.cast(c * 10.0, gf.int32) % 7, dt) + gf.cast(gf.logical_and(c > 0, y < 0), dt),
                       gf.matmul(gf.nn.relu(y), w)]
        feed = {a: rng.standard_normal((101, 37)).astype(dt), w: rng.standard_normal((29, 37)).astype(dt),
                c: rng.standard_normal((101, 29)).astype(dt)}
        with gf.Session(graph=g, num_threads=int(sys.argv[2])) as s:
            outs += [np.asarray(r, np.float64).ravel() for r in s.run(fetches, feed)]
    np.save(sys.argv[1], np.concatenate(outs))
""")


def _child(tmp_path, name, threads=1, **env):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / f"{name}.npy"
    full_env = {k: v for k, v in os.environ.items() if k not in ("GRAPHFLOW_CACHE", "GRAPHFLOW_CACHE_DIR")}
    full_env.update(env, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, str(script), str(out), str(threads)], env=full_env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return np.load(out)


@pytest.mark.slow
def test_processes_sharing_a_cache_dir_and_damaged_entries_give_the_same_bits(tmp_path):
    cache = tmp_path / "kernels"
    uncached = _child(tmp_path, "uncached", GRAPHFLOW_CACHE="0", GRAPHFLOW_CACHE_DIR=str(tmp_path / "unused"))
    assert not (tmp_path / "unused").exists() or not any((tmp_path / "unused").iterdir())
    cold = _child(tmp_path, "cold", GRAPHFLOW_CACHE_DIR=str(cache))
    entries = sorted(p for p in cache.iterdir() if p.is_file())
    assert entries
    warm = _child(tmp_path, "warm", threads=2, GRAPHFLOW_CACHE_DIR=str(cache))
    np.testing.assert_array_equal(cold, uncached)
    np.testing.assert_array_equal(warm, uncached)
    for i, entry in enumerate(entries):   # a truncated or scribbled entry is recompiled, never trusted
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2] if i % 2 else data[:-8] + b"\xff" * 8)
    np.testing.assert_array_equal(_child(tmp_path, "damaged", GRAPHFLOW_CACHE_DIR=str(cache)), uncached)
    np.testing.assert_array_equal(_child(tmp_path, "repaired", GRAPHFLOW_CACHE_DIR=str(cache)), uncached)


# ---- Keras ----

def _classifier(optimizer):
    m = K.Sequential([K.Input(shape=(12,)), K.layers.Dense(17, activation="relu"), K.layers.Dense(3, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _forward(ws, x):
    z = np.maximum(x @ ws[0] + ws[1], 0) @ ws[2] + ws[3]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _loss_acc(ws, x, y):
    p = _forward(ws, x)
    return np.mean(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1))), np.mean(p.argmax(1) == y)


def _data(n=203, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    return x, ((x[:, :3].sum(1) > 0).astype(np.int32) + (x[:, 3] > 1).astype(np.int32))


def test_fit_with_validation_split_callbacks_and_history_matching_numpy(tmp_path):
    x, y = _data()
    model = _classifier(K.optimizers.SGD(0.05, momentum=0.5))

    class Record(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights, self.epochs_begun, self.batches = [], 0, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs_begun += 1

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    rec = Record()
    csv_path, ckpt = tmp_path / "log.csv", tmp_path / "best.gfk"
    h = model.fit(x, y, batch_size=32, epochs=4, validation_split=0.25, shuffle=True, verbose=0,
                  callbacks=[rec, K.callbacks.CSVLogger(str(csv_path)),
                             K.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True)])
    n_train = int(len(x) * 0.75)   # Keras: the last 25% are the validation set, before shuffling
    assert rec.epochs_begun == 4 and rec.batches == 4 * -(-n_train // 32)
    for epoch, ws in enumerate(rec.weights):
        vl, va = _loss_acc(ws, x[n_train:], y[n_train:])
        assert h.history["val_loss"][epoch] == pytest.approx(vl, rel=1e-5)
        assert h.history["val_accuracy"][epoch] == pytest.approx(va, rel=1e-6)
    lines = csv_path.read_text().strip().splitlines()
    assert len(lines) == 5 and "val_loss" in lines[0]
    best = int(np.argmin(h.history["val_loss"]))
    restored = K.models.load_model(str(ckpt))
    assert restored.evaluate(x[n_train:], y[n_train:], verbose=0)[0] == pytest.approx(h.history["val_loss"][best], rel=1e-5)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert (loss, acc) == pytest.approx(_loss_acc(model.get_weights(), x, y), rel=1e-5)
    for batch_size in (1, 7, 32, 203, 500):
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size, verbose=0), _forward(model.get_weights(), x),
                                   rtol=1e-5, atol=1e-6)
    assert model.predict(x[:0], verbose=0).shape == (0, 3)
    model.save(str(tmp_path / "m.gfk"))
    again = K.models.load_model(str(tmp_path / "m.gfk"))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_fit_fast_path_and_batch_hook_path_give_identical_training(optimizer):
    """A batch hook turns off fit's fast path: the weights and the sample-weighted epoch losses agree."""
    x, y = _data()
    make = {"sgd": lambda: K.optimizers.SGD(0.1, momentum=0.9), "adam": lambda: K.optimizers.Adam(0.01),
            "rmsprop": lambda: K.optimizers.RMSprop(0.01)}[optimizer]
    fast, hooked = _classifier(make()), _classifier(make())
    hooked.set_weights(fast.get_weights())

    class BeforeEachBatch(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_train_batch_begin(self, batch, logs=None):
            self.weights.append(self.model.get_weights())

    rec = BeforeEachBatch()
    h_fast = fast.fit(x, y, batch_size=50, epochs=3, shuffle=False, verbose=0)
    h_hooked = hooked.fit(x, y, batch_size=50, epochs=3, shuffle=False, verbose=0, callbacks=[rec])
    assert h_fast.history == h_hooked.history
    for a, b in zip(fast.get_weights(), hooked.get_weights()):
        np.testing.assert_array_equal(a, b)
    batches = -(-len(x) // 50)
    for epoch in range(3):
        total = sum(_loss_acc(rec.weights[epoch * batches + i], x[i * 50:(i + 1) * 50], y[i * 50:(i + 1) * 50])[0]
                    * len(x[i * 50:(i + 1) * 50]) for i in range(batches))
        assert h_fast.history["loss"][epoch] == pytest.approx(total / len(x), rel=1e-5)


def test_early_stopping_restores_best_weights_and_training_resumes_from_set_and_loaded_weights(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((120, 6)).astype(np.float32)
    y = (x @ rng.standard_normal((6, 1))).astype(np.float32)
    xv, yv = rng.standard_normal((40, 6)).astype(np.float32), rng.standard_normal((40, 1)).astype(np.float32)
    model = K.Sequential([K.Input(shape=(6,)), K.layers.Dense(32, activation="relu"), K.layers.Dense(1)])
    model.compile(optimizer=K.optimizers.Adam(0.05), loss="mse")

    class Record(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    rec = Record()
    stop = K.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = model.fit(x, y, epochs=30, batch_size=16, validation_data=(xv, yv), verbose=0, callbacks=[rec, stop])
    best = int(np.argmin(h.history["val_loss"]))
    assert len(h.history["val_loss"]) < 30
    for a, b in zip(model.get_weights(), rec.weights[best]):
        np.testing.assert_array_equal(a, b)
    assert model.evaluate(xv, yv, verbose=0) == pytest.approx(h.history["val_loss"][best], rel=1e-6)

    model.set_weights([w * 0 for w in model.get_weights()])
    first = model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    assert first.history["loss"][0] == pytest.approx(float(np.mean(y ** 2)), rel=1e-6)

    model.save_weights(str(tmp_path / "w.gfk"))
    saved = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    model.load_weights(str(tmp_path / "w.gfk"))
    ws = model.get_weights()
    for a, b in zip(ws, saved):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x @ ws[0] + ws[1], 0) @ ws[2] + ws[3],
                               rtol=1e-5, atol=1e-6)
    model.compile(optimizer=K.optimizers.SGD(0.0), loss="mse")   # a new optimizer, learning rate 0
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n,batch_size,split", [(1, 32, 0.0), (5, 2, 0.0), (10, 3, 0.2), (7, 7, 0.0), (2, 1, 0.5),
                                                (33, 32, 0.0)])
def test_fit_evaluate_predict_at_batch_edges(n, batch_size, split):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((n, 4)).astype(np.float32), rng.standard_normal((n, 1)).astype(np.float32)
    model = K.Sequential([K.Input(shape=(4,)), K.layers.Dense(5, activation="relu"), K.layers.Dense(1)])
    model.compile(optimizer=K.optimizers.SGD(0.01), loss="mse")

    class BeforeEachBatch(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_train_batch_begin(self, batch, logs=None):
            self.weights.append(self.model.get_weights())

    def per_sample(ws, xs, ys):
        return ((np.maximum(xs @ ws[0] + ws[1], 0) @ ws[2] + ws[3] - ys) ** 2).mean(1)

    rec = BeforeEachBatch()
    h = model.fit(x, y, batch_size=batch_size, epochs=2, validation_split=split, shuffle=False, verbose=0,
                  callbacks=[rec])
    n_train = int(n * (1 - split)) if split else n
    batches = -(-n_train // batch_size)
    assert len(rec.weights) == 2 * batches
    total = sum(per_sample(rec.weights[i], x[i * batch_size:min((i + 1) * batch_size, n_train)],
                           y[i * batch_size:min((i + 1) * batch_size, n_train)]).sum() for i in range(batches))
    assert h.history["loss"][0] == pytest.approx(total / n_train, rel=1e-5)
    ws = model.get_weights()
    assert model.evaluate(x, y, batch_size=batch_size, verbose=0) == pytest.approx(per_sample(ws, x, y).mean(), rel=1e-5)
    np.testing.assert_allclose(model.predict(x, batch_size=batch_size, verbose=0),
                               np.maximum(x @ ws[0] + ws[1], 0) @ ws[2] + ws[3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_small_batch_runs_with_a_variable_reassigned_meanwhile(threads):
    """Batch 1-3 products (the bound fast calls) from four threads, while one thread re-assigns
    the weight: every result equals numpy for one of the weights the variable held from just
    before the run to just after it (several, when the thread that re-assigns it got ahead
    meanwhile: a busy machine can hold a thread off for many of the other's iterations)."""
    rng = np.random.default_rng(70)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(gf.float32, shape=(None, 64))
        w = gf.Variable(rng.standard_normal((64, 48)).astype(np.float32))
        w2 = gf.Variable(rng.standard_normal((48, 10)).astype(np.float32))
        h = gf.nn.relu(gf.matmul(a, w) + 0.1)
        y = gf.nn.softmax(gf.matmul(h, w2))
        shrink = w.assign(w * 0.999)
    failures = []
    with gf.Session(graph=g, num_threads=threads) as s:
        s.run([w.initializer, w2.initializer])
        w2v = s.run(w2)
        held = [s.run(w)]   # held[j]: the weight after j re-assignments (thread 0 alone appends)
        f = s.make_callable([y, h], feed_list=[a])

        def work(tid):
            r = np.random.default_rng(tid)
            for it in range(150):
                av = r.standard_normal((int(r.choice([1, 1, 2, 3])), 64)).astype(np.float32)
                if tid == 0 and it % 25 == 0:
                    s.run(shrink.op)
                    held.append(s.run(w))
                first = len(held) - 1
                out = f(av) if it % 2 else s.run([y, h], {a: av})
                ok = False
                latest = held[first:]   # and the next one, whose append may still be on its way:
                for wv in latest + [latest[-1] * np.float32(0.999)]:
                    hh = np.maximum(av @ wv + 0.1, 0)
                    zz = hh @ w2v
                    e = np.exp(zz - zz.max(1, keepdims=True))
                    ok |= np.allclose(out[0], e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-5) and \
                        np.allclose(out[1], hh, rtol=1e-4, atol=1e-5)
                if not ok:
                    failures.append((tid, it))

        workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    assert not failures


def test_concurrent_runs_of_different_batch_sizes_with_a_thread_switch_after_binding(monkeypatch):
    """Concurrent runs are part of the API. The bound fast calls of a one-block product are made
    per operand set; a thread switch right after a run publishes its binding (forced here with a
    sleep around the library's own `_bind_product`, test side only) must not make another
    run's binding execute instead of this run's."""
    import time

    from graphflow.compiler.fusion import fused_op

    original = fused_op.FusedKernel._bind_product

    def bind_then_yield(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        time.sleep(0.002)
        return result

    monkeypatch.setattr(fused_op.FusedKernel, "_bind_product", bind_then_yield)
    rng = np.random.default_rng(100)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(gf.float32, shape=(None, 64))
        y = gf.nn.relu(gf.matmul(a, gf.constant(w)) + 0.5)
    wrong = []
    with gf.Session(graph=g, num_threads=1) as s:
        run = s.make_callable(y, feed_list=[a])

        def work(tid):
            r = np.random.default_rng(tid)
            for it in range(150):
                x = r.standard_normal((1 + (it + tid) % 3, 64)).astype(np.float32)
                if not np.allclose(run(x), np.maximum(x @ w + 0.5, 0), rtol=1e-4, atol=1e-5):
                    wrong.append((tid, it))

        workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    assert not wrong


STALE_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import graphflow as gf
    from graphflow.compiler.fusion import emit, jit_kernels   # loaded, as in any running program
    if sys.argv[1] == "wait":
        print("ready", flush=True)
        sys.stdin.readline()
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, shape=(None,))
        y = gf.nn.relu6(x * 2.0) + 1.0
    xv = np.array([2.75, 3.0, 0.5, -1.0] * 5000, np.float32)
    print(float(gf.Session(graph=g, opt_level=0).run(y, {x: xv})[0]),
          float(gf.Session(graph=g, opt_level=2).run(y, {x: xv})[0]))
""")


def test_a_new_package_version_never_loads_kernels_emitted_by_an_old_running_process(tmp_path):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "graphflow", pkg / "graphflow", ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "child.py"
    script.write_text(STALE_CHILD)
    env = {k: v for k, v in os.environ.items() if k != "GRAPHFLOW_CACHE"}
    env.update(PYTHONPATH=str(pkg), GRAPHFLOW_CACHE_DIR=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    old = subprocess.Popen([sys.executable, str(script), "wait"], env=env, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert old.stdout.readline().strip() == "ready"
    act = pkg / "graphflow" / "ops" / "activations.py"    # the new version: relu6 clips at 5
    src = act.read_text()
    new = src.replace("_c(b, x, 6))", "_c(b, x, 5))")
    assert new != src
    act.write_text(new)
    out, err = old.communicate("go\n", timeout=300)
    assert old.returncode == 0, err[-2000:]
    assert out.split() == ["6.5", "6.5"]   # the old process computes the old semantics at both levels
    r = subprocess.run([sys.executable, str(script), "now"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["6.0", "6.0"]   # the new version, on the cache the old process wrote
