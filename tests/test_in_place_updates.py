"""Variable updates written over the variable's own array (runtime/in_place.py): the weights
of a training step are those of fresh arrays to the bit, a held value is never written, a
Ctrl-C inside the update waits for the run's commit, and a reader on another thread never
takes a value while a run rewrites it."""
import signal
import threading
import time
import weakref

import numpy as np
import pytest

import graphflow as gf
from graphflow.runtime import in_place
from graphflow.runtime.state import RunState, VariableStore

RNG = np.random.default_rng(11)


def _mlp_step(batch=40):
    """An SGD step of a 30-64-48-5 MLP whose two large weights are updated in their products."""
    x = gf.placeholder(gf.float32, (None, 30), name="x")
    y = gf.placeholder(gf.int32, (None,), name="y")
    h = x
    for i, (n_in, n_out) in enumerate(((30, 64), (64, 48), (48, 5))):
        w = gf.Variable((RNG.standard_normal((n_in, n_out)) * 0.3).astype(np.float32), name=f"w{i}")
        h = gf.matmul(h, w) + gf.Variable(np.zeros(n_out, np.float32), name=f"b{i}")
        if i < 2:
            h = gf.nn.relu(h)
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    train = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
    feed = {x: RNG.uniform(-1, 1, (batch, 30)).astype(np.float32), y: RNG.integers(0, 5, batch).astype(np.int32)}
    return loss, train, feed


def _values(sess):
    return {name: sess._store.values[name] for name in ("w0", "w1", "w2")}


def _bits(x):
    return x.view(np.uint32)


@pytest.mark.parametrize("threads", [1, 2])
def test_training_updates_weights_in_place_with_the_bits_of_fresh_arrays(threads, monkeypatch):
    graph = gf.Graph()
    with graph.as_default():
        loss, train, feed = _mlp_step()
        init = gf.global_variables_initializer()
    results = {}
    for mode in ("in place", "fresh", "opt 0"):
        if mode == "fresh":
            monkeypatch.setattr(in_place.InPlace, "begin", lambda self, shapes: False)
        with gf.Session(graph=graph, opt_level=0 if mode == "opt 0" else 2, num_threads=threads) as sess:
            sess.run(init)
            step = sess.make_callable([loss, train], feed_list=list(feed))
            arrays = []
            for _ in range(4):
                step(*feed.values())
                arrays.append({k: id(v) for k, v in _values(sess).items()})
            results[mode] = {k: v.copy() for k, v in _values(sess).items()}
        if mode == "in place" and threads == 1:   # the first run computes into new arrays, the later
            # ones in place (on 2 threads, runs on the inter-op schedule, when it measures faster, do not)
            assert arrays[1]["w0"] == arrays[2]["w0"] == arrays[3]["w0"]
            assert arrays[1]["w1"] == arrays[2]["w1"] == arrays[3]["w1"]
        if mode == "fresh":
            assert arrays[2]["w0"] != arrays[3]["w0"]
    for k in results["fresh"]:
        assert np.array_equal(_bits(results["in place"][k]), _bits(results["fresh"][k])), k
        np.testing.assert_allclose(results["in place"][k], results["opt 0"][k], rtol=1e-5, atol=1e-6)


def test_a_held_value_is_never_written_and_a_new_batch_size_runs_once_before():
    graph = gf.Graph()
    with graph.as_default():
        loss, train, feed = _mlp_step()
        w0 = [v for v in gf.global_variables() if v.op.name == "w0"][0]
        with gf.Session(opt_level=2, num_threads=1) as sess:
            sess.run(gf.global_variables_initializer())
            step = sess.make_callable([loss, train], feed_list=list(feed))
            for _ in range(3):
                step(*feed.values())
            held = sess._store.values["w0"]     # as a fetched value or a reader's would be
            kept = held.copy()
            step(*feed.values())
            assert sess._store.values["w0"] is not held
            np.testing.assert_array_equal(held, kept)
            del held
            before = weakref.ref(sess._store.values["w0"])
            step(*feed.values())
            assert sess._store.values["w0"] is before()   # in place again
            other = {t: v[:7] for t, v in feed.items()}   # a batch size of its own: first run fresh
            step(*other.values())
            assert sess._store.values["w0"] is not before()
            after = weakref.ref(sess._store.values["w0"])
            step(*other.values())
            assert sess._store.values["w0"] is after()
            np.testing.assert_array_equal(sess.run(w0), sess._store.values["w0"])


def test_an_interrupt_inside_the_update_is_raised_after_the_commit(monkeypatch):
    """A SIGINT arriving while the step rewrites its weights is held back: the run finishes
    and commits every update, then raises KeyboardInterrupt; a later interrupt outside a
    step reaches Python's own handler."""
    graph = gf.Graph()
    with graph.as_default():
        loss, train, feed = _mlp_step()
        init = gf.global_variables_initializer()
    finals = []
    for interrupt in (False, True):
        with gf.Session(graph=graph, opt_level=2, num_threads=1) as sess:
            sess.run(init)
            step = sess.make_callable([loss, train], feed_list=list(feed))
            for _ in range(2):
                step(*feed.values())
            if interrupt:
                write = RunState.write_variable

                def interrupted(self, name, value, owned=False):
                    if value is self.store.values[name]:   # rewritten in place: inside the section
                        signal.raise_signal(signal.SIGINT)
                    return write(self, name, value, owned)
                step(*feed.values())
                monkeypatch.setattr(RunState, "write_variable", interrupted)
                with pytest.raises(KeyboardInterrupt):
                    step(*feed.values())
                monkeypatch.setattr(RunState, "write_variable", write)
            else:
                for _ in range(2):
                    step(*feed.values())
            finals.append({k: v.copy() for k, v in sess._store.values.items()})
    for k in finals[0]:
        assert np.array_equal(finals[0][k], finals[1][k]), k
    assert signal.getsignal(signal.SIGINT) is in_place._handler
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_reader_on_another_thread_waits_for_the_writer():
    store = VariableStore()
    store.set("w", np.zeros(4, np.float32))
    started, done = threading.Event(), threading.Event()
    taken = []

    def writer():
        with store.update_lock:
            store.writer = threading.get_ident()
            started.set()
            time.sleep(0.2)
            value = store.values["w"]
            value.flags.writeable = True
            value[:] = 1.0   # rewritten in place
            value.flags.writeable = False
            store.writer = 0
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait()
    taken.append(store.current("w"))
    assert done.is_set()
    np.testing.assert_array_equal(taken[0], 1.0)
    thread.join()
    store.writer = threading.get_ident()   # the writer's own thread reads without waiting
    np.testing.assert_array_equal(store.current("w"), 1.0)
    store.writer = 0
