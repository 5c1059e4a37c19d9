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


def _fused_product(build, feeds):
    """The compiled kernel holding the product of `build(*placeholders)` and its inputs in
    the kernel's order, picked from `feeds` (name -> array) by the placeholders' names."""
    with gf.Graph().as_default():
        phs = {name: gf.placeholder(gf.float32, (None,) * v.ndim, name=name) for name, v in feeds.items()}
        compiled = gf.compile(build(**phs), feed_list=list(phs.values()), opt_level=2)
    kernel = next(n.attrs["kernel"] for n in compiled.program.nodes if n.op == "Fused" and n.attrs["kernel"]._lib is not None)
    return kernel, [feeds[op.name.split(":")[0]] for op in kernel.ir.inputs]


@pytest.mark.parametrize("transpose_b,batch", [(True, 5), (True, 40), (True, 100), (True, 200), (False, 100)])
@pytest.mark.parametrize("small_blocks", [False, True])
def test_bound_products_pack_their_operand_on_every_run(transpose_b, batch, small_blocks, monkeypatch):
    """x @ W^T takes the tiles with an operand packed (B, or op(A)^T when computed as C^T, the
    smaller A at batch 100 against W's 128 rows): the copy is a compiled call of the kernel's
    binding, made again on every run, so values written in place into an operand between
    runs are seen with the binding kept. Split into chunks of rows over 2 threads (a small
    TASK_NS) or into L2 blocks (a small BLOCK_BYTES, also on one thread), every element is
    the bits of one thread's single call."""
    from graphflow.compiler.fusion import fused_op
    from graphflow.runtime.threads import SERIAL, ThreadBudget

    monkeypatch.setattr(fused_op, "TASK_NS", 1)
    if small_blocks:
        monkeypatch.setattr(epilogue, "BLOCK_BYTES", 24 * 128 * 4)   # 24 rows per block
    w0 = RNG.standard_normal((128, 48) if transpose_b else (48, 128)).astype(np.float32)
    x0 = RNG.standard_normal((batch, 48)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        xv, wv = x0.copy(), w0.copy()
        kernel, inputs = _fused_product(
            lambda x, w: gf.nn.relu(gf.matmul(x, w, transpose_b=transpose_b) + 0.25), {"x": xv, "w": wv})
        budget = SERIAL if threads == 1 else ThreadBudget(threads)
        try:
            runs = []
            outs = [np.empty(shape, np.float32) for shape in kernel.output_shapes([a.shape for a in inputs])]
            for step in range(3):
                xv *= -0.75   # (in place, into the same output: the binding keeps its pointers)
                wv[step] += 1.0
                runs.append(kernel.run(inputs, outs, budget)[0].copy())
                bound = kernel._direct
                assert bound is not None and (step == 0 or bound is first), "the binding is made once and kept"
                first = bound
                want = np.maximum(xv.astype(np.float64) @ (wv.T if transpose_b else wv) + 0.25, 0)
                np.testing.assert_allclose(runs[-1], want, rtol=1e-4, atol=1e-4)
            results[threads] = runs
        finally:
            if threads > 1:
                budget.close()
    for a, b in zip(results[1], results[2]):
        assert np.array_equal(a, b)


def test_bound_update_with_a_packed_gradient_operand_matches_opt0_at_any_thread_count(monkeypatch):
    """W - lr * (dZ @ X^T), the SGD update of z = W @ X applied in the product's stores, packs
    X^T inside its binding: weights after a few steps have one thread's bits at 2 threads and
    agree with opt_level 0."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "TASK_NS", 1)
    w0 = RNG.standard_normal((64, 48)).astype(np.float32) / 8
    xv = RNG.standard_normal((48, 100)).astype(np.float32)
    yv = RNG.standard_normal((64, 100)).astype(np.float32)
    got = {}
    for opt, threads in ((0, 1), (2, 1), (2, 2)):
        with gf.Graph().as_default():
            x = gf.placeholder(gf.float32, (48, None), name="x")
            y = gf.placeholder(gf.float32, (64, None), name="y")
            w = gf.Variable(w0, name="w")
            loss = gf.reduce_mean(gf.square(gf.matmul(w, x) - y))
            train = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
            if opt == 2:
                compiled = gf.compile([loss, train], feed_list=[x, y], opt_level=2)
                assert any(n.attrs["kernel"]._absorbed for n in compiled.program.nodes
                           if n.op == "Fused" and n.attrs["kernel"]._lib is not None), compiled.report()
            with gf.Session(opt_level=opt, num_threads=threads) as s:
                s.run(gf.global_variables_initializer())
                for _ in range(3):
                    s.run(train, {x: xv, y: yv})
                got[opt, threads] = s.run(w)
    assert np.array_equal(got[2, 1], got[2, 2])
    np.testing.assert_allclose(got[2, 1], got[0, 1], rtol=1e-5, atol=1e-6)
