"""Fused matmul kernels whose compiled calls stay bound to their operands' data pointers
between runs (compiler/fusion/direct.py): differential against opt_level=0 at small batches
with epilogues, softmax heads and fetched intermediates, while the operands change between
calls (new feed arrays, a feed written in place, re-assigned variables, batch sizes, strided
feeds, concurrent runs), and bitwise the same at 1 and 2 threads with the product's columns
split over the threads."""
import ctypes
import threading

import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.fusion import epilogue
from graphflow.compiler.codegen import chain
from graphflow.compiler.codegen import gemv as gemv_kernel
from graphflow.runtime.pointers import address

RNG = np.random.default_rng(5)
SIZES = (37, 48, 33, 10)   # odd widths: masked vector tails in the gemv and the epilogues


def _mlp(dtype=np.float32, sizes=SIZES):
    """x -> relu(x W0 + b0) -> relu(. W1 + b1) -> softmax(. W2 + b2); returns (x, hidden, probs, vars)."""
    x = gf.placeholder(dtype, (None, sizes[0]), name="x")
    h, hidden, vs = x, [], []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = gf.Variable(RNG.standard_normal((k, n)).astype(dtype) / float(np.sqrt(k)), name=f"w{i}")
        b = gf.Variable(RNG.standard_normal(n).astype(dtype) * 0.1, name=f"b{i}")
        vs += [w, b]
        h = gf.matmul(h, w) + b
        if i < len(sizes) - 2:
            h = gf.nn.relu(h)
            hidden.append(h)
    return x, hidden, gf.nn.softmax(h), vs


def _sessions(**kw):
    return {lvl: gf.Session(opt_level=lvl, **kw) for lvl in (0, 2)}


def _close(a, b, dtype=np.float32):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_new_feed_arrays_and_fetched_intermediates_match_opt0(dtype, batch):
    with gf.Graph().as_default():
        x, hidden, probs, _ = _mlp(dtype)
        sess = _sessions(num_threads=1)
        for s in sess.values():
            s.run(gf.global_variables_initializer())
        fns = {lvl: s.make_callable([probs, *hidden], feed_list=[x]) for lvl, s in sess.items()}
        kept = []
        for _ in range(5):   # a new feed array (new data pointer) every call
            xv = RNG.standard_normal((batch, SIZES[0])).astype(dtype)
            got, ref = fns[2](xv), fns[0](xv)
            for g, r in zip(got, ref):
                _close(g, r, dtype)
            kept.append((got, ref))
        for got, ref in kept:   # earlier results were not written over by later runs
            for g, r in zip(got, ref):
                _close(g, r, dtype)


def test_feed_written_in_place_and_batch_size_changes():
    with gf.Graph().as_default():
        x, hidden, probs, _ = _mlp()
        sess = _sessions(num_threads=1)
        for s in sess.values():
            s.run(gf.global_variables_initializer())
        xv = RNG.standard_normal((1, SIZES[0])).astype(np.float32)
        for batch in (1, 1, 3, 1, 2, 2, 1):
            if xv.shape[0] == batch:
                xv[...] = RNG.standard_normal(xv.shape)   # same array, same pointer, new values
            else:
                xv = RNG.standard_normal((batch, SIZES[0])).astype(np.float32)
            _close(sess[2].run(probs, {x: xv}), sess[0].run(probs, {x: xv}))


def test_strided_and_transposed_feeds():
    with gf.Graph().as_default():
        x, hidden, probs, _ = _mlp()
        sess = _sessions(num_threads=1)
        for s in sess.values():
            s.run(gf.global_variables_initializer())
        big = RNG.standard_normal((6, 2 * SIZES[0])).astype(np.float32)
        for xv in (big[:1, ::2], big[:3, 1::2], np.ascontiguousarray(big[:2, :SIZES[0]]),
                   np.asfortranarray(big[:3, :SIZES[0]]), big[:1, :SIZES[0]]):
            _close(sess[2].run(probs, {x: xv}), sess[0].run(probs, {x: xv}))


def test_reassigned_variable_is_read_at_its_new_address():
    """A variable's value is a new array after an assignment: a binding to the old pointer
    would compute with the old weights."""
    with gf.Graph().as_default():
        x, hidden, probs, vs = _mlp()
        w0, b2 = vs[0], vs[-1]
        new_w = gf.placeholder(gf.float32, w0.shape)
        new_b = gf.placeholder(gf.float32, b2.shape)
        assigns = [w0.assign(new_w), b2.assign(new_b)]
        sess = _sessions(num_threads=1)
        for s in sess.values():
            s.run(gf.global_variables_initializer())
        fns = {lvl: s.make_callable(probs, feed_list=[x]) for lvl, s in sess.items()}
        xv = RNG.standard_normal((1, SIZES[0])).astype(np.float32)
        before = fns[2](xv).copy()
        for step in range(3):
            wv = RNG.standard_normal(w0.shape).astype(np.float32)
            bv = RNG.standard_normal(b2.shape).astype(np.float32) * float(step + 1)
            for s in sess.values():
                s.run(assigns, {new_w: wv, new_b: bv})
            got = fns[2](xv)
            _close(got, fns[0](xv))
            assert not np.array_equal(got, before)
            before = got.copy()


def test_dropped_outputs_and_variables_leave_no_stale_pointer():
    """Operands are held weakly: arrays freed between calls (and new ones perhaps at the same
    addresses) are never confused with the bound ones."""
    with gf.Graph().as_default():
        x, hidden, probs, _ = _mlp()
        sess = _sessions(num_threads=1)
        for s in sess.values():
            s.run(gf.global_variables_initializer())
        for i in range(20):
            xv = np.full((1, SIZES[0]), 0.01 * i, np.float32)
            _close(sess[2].run([probs, hidden[-1]], {x: xv})[0], sess[0].run(probs, {x: xv}))


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_column_split_over_threads_is_bitwise_one_thread(batch, monkeypatch):
    """Forced on for small products, the split over columns gives the same bits as one thread,
    down to odd widths and tails of a vector."""
    monkeypatch.setattr(epilogue, "SPLIT_MIN_BYTES", 0)
    with gf.Graph().as_default():
        x, hidden, probs, _ = _mlp(sizes=(70, 100, 75, 40))
        xv = RNG.standard_normal((batch, 70)).astype(np.float32)
        res = {}
        for threads in (1, 2, 3):
            with gf.Session(opt_level=2, num_threads=threads) as s:
                s.run(gf.global_variables_initializer())
                f = s.make_callable([probs, *hidden], feed_list=[x])
                res[threads] = [f(xv) for _ in range(3)]
        with gf.Session(opt_level=0, num_threads=1) as s:
            s.run(gf.global_variables_initializer())
            ref = s.run([probs, *hidden], {x: xv})
        for threads in (2, 3):
            for run, run1 in zip(res[threads], res[1]):
                for a, b in zip(run, run1):
                    assert np.array_equal(a, b)
        for a, r in zip(res[1][0], ref):
            _close(a, r)


def test_concurrent_runs_with_their_own_feeds():
    with gf.Graph().as_default():
        x, hidden, probs, _ = _mlp()
        sess = _sessions(num_threads=2)
        for s in sess.values():
            s.run(gf.global_variables_initializer())
        feeds = [RNG.standard_normal((1 + i % 3, SIZES[0])).astype(np.float32) for i in range(8)]
        refs = [sess[0].run(probs, {x: xv}) for xv in feeds]
        errors = []

        def worker(i):
            try:
                for r in range(40):
                    j = (i + r) % len(feeds)
                    got = sess[2].run(probs, {x: feeds[j].copy()})
                    _close(got, refs[j])
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]


def test_chain_runs_its_calls_in_order():
    """One compiled call of a program runs each listed call with its arguments, in order
    (the second product reads the first's result)."""
    a = RNG.standard_normal((1, 37)).astype(np.float32)
    b1 = RNG.standard_normal((37, 21)).astype(np.float32)
    b2 = RNG.standard_normal((21, 5)).astype(np.float32)
    y1, y2 = np.zeros((1, 21), np.float32), np.zeros((1, 5), np.float32)
    gemv = chain.address_of(gemv_kernel.gemv_function(np.float32))
    prog = chain.program([(gemv, (0, 21, 37, address(a), 1, address(b1), 21, address(y1))),
                          (gemv, (0, 5, 21, address(y1), 1, address(b2), 5, address(y2)))])
    chain.function()(ctypes.addressof(prog))
    _close(y1, a @ b1)
    _close(y2, (a @ b1) @ b2)
    assert chain.address_of(lambda: None) is None
    assert chain.program([(gemv, (0,) * (chain.MAX_ARGS + 1))]) is None
