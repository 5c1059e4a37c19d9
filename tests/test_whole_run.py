"""A plan of variable reads and fused kernels runs as one joined compiled call
(runtime/whole_run.py) once its kernels are bound; every result equals the ordinary path's,
whatever changes between runs: feed arrays, variable values, shapes, held results, threads."""
import threading

import numpy as np
import pytest

import graphflow as gf

RNG = np.random.default_rng(21)
SIZES = (48, 40, 24, 10)


def _mlp():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, (None, SIZES[0]), name="x")
        h, variables = x, []
        for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
            w = gf.Variable((RNG.standard_normal((n_in, n_out)) / 4).astype(np.float32), name=f"w{i}")
            b = gf.Variable(RNG.standard_normal(n_out).astype(np.float32), name=f"b{i}")
            variables += [w, b]
            h = gf.matmul(h, w) + b
            h = gf.nn.relu(h) if i < len(SIZES) - 2 else gf.nn.softmax(h)
        init = gf.global_variables_initializer()
    return g, x, h, variables, init


def _reference(values, xv):
    h = xv.astype(np.float64)
    for i in range(0, len(values), 2):
        h = h @ values[i] + values[i + 1]
        if i < len(values) - 2:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(params=[1, 2])
def model(request):
    g, x, y, variables, init = _mlp()
    sess = gf.Session(graph=g, num_threads=request.param)
    sess.run(init)
    yield sess, x, y, variables
    sess.close()


def _whole(sess):
    runners = [p.execution._run_serial for p in sess._plans.values() if hasattr(p, "execution")]
    return [getattr(r, "whole", None) for r in runners]


def test_runs_as_one_call_with_the_same_results(model):
    sess, x, y, variables = model
    f = sess.make_callable(y, feed_list=[x])
    xv = RNG.standard_normal((1, SIZES[0])).astype(np.float32)
    first = f(xv).copy()
    assert any(w is not None and w.binding is not None for w in _whole(sess))
    values = sess.run(variables)
    for _ in range(3):
        np.testing.assert_array_equal(f(xv), first)
    np.testing.assert_allclose(first, _reference(values, xv), rtol=1e-4, atol=1e-6)


def test_new_feeds_shapes_dtypes_and_held_results(model):
    sess, x, y, variables = model
    f = sess.make_callable(y, feed_list=[x])
    values = sess.run(variables)
    held = []
    for batch in (1, 1, 3, 1, 3, 2):
        xv = RNG.standard_normal((batch, SIZES[0])).astype(np.float32)
        out = f(xv)
        held.append((out, out.copy(), xv))
        np.testing.assert_allclose(out, _reference(values, xv), rtol=1e-4, atol=1e-6)
    as_list = RNG.standard_normal((1, SIZES[0])).tolist()          # converted on the ordinary path
    np.testing.assert_allclose(f(as_list), _reference(values, np.array(as_list, np.float32)), rtol=1e-4, atol=1e-6)
    for out, copy, _ in held:                                       # results the caller holds stay intact
        np.testing.assert_array_equal(out, copy)


@pytest.mark.parametrize("how", ["assign", "load"])
def test_variable_updates_are_seen(model, how):
    """A value assigned by another run, or written by Variable.load outside any run (the
    store's version changes either way), is what the next joined call reads, not the arrays
    it was bound to."""
    sess, x, y, variables = model
    f = sess.make_callable(y, feed_list=[x])
    xv = RNG.standard_normal((1, SIZES[0])).astype(np.float32)
    f(xv)
    f(xv)
    w = variables[0 if how == "assign" else 2]
    if how == "assign":
        sess.run(w.assign(w * 2.0))
    else:
        w.load(sess.run(w) * -1.5, sess)
    np.testing.assert_allclose(f(xv), _reference(sess.run(variables), xv), rtol=1e-4, atol=1e-6)


def test_runs_beside_a_thread_updating_the_variables(model):
    """One thread flips a weight's sign run after run while another runs the joined call: each
    result is the model's output for one of the two values, never a mix or freed memory."""
    sess, x, y, variables = model
    f = sess.make_callable(y, feed_list=[x])
    w = variables[0]
    flip = sess.make_callable(w.assign(w * -1.0).op)
    xv = RNG.standard_normal((1, SIZES[0])).astype(np.float32)
    values = sess.run(variables)
    want = [_reference(values, xv), _reference([-values[0]] + values[1:], xv)]
    stop, errors = threading.Event(), []

    def flipping():
        while not stop.is_set():
            flip()

    t = threading.Thread(target=flipping)
    t.start()
    try:
        for _ in range(300):
            got = f(xv)
            if not any(np.allclose(got, ref, rtol=1e-4, atol=1e-6) for ref in want):
                errors.append(got.copy())
    finally:
        stop.set()
        t.join()
    assert not errors


def test_uninitialized_variables_still_fail_clearly():
    g, x, y, _, _ = _mlp()
    with gf.Session(graph=g) as sess:
        with pytest.raises(gf.errors.FailedPreconditionError, match="uninitialized"):
            sess.run(y, {x: np.zeros((1, SIZES[0]), np.float32)})


def test_concurrent_runs_get_their_own_results(model):
    sess, x, y, variables = model
    f = sess.make_callable(y, feed_list=[x])
    values = sess.run(variables)
    feeds = [RNG.standard_normal((1, SIZES[0])).astype(np.float32) for _ in range(8)]
    want = [_reference(values, xv) for xv in feeds]
    f(feeds[0])
    _each_on_its_own_thread(f, feeds, want, 200)


def test_products_split_over_threads_inside_the_one_call(monkeypatch):
    """Where one-row products are split over columns (forced here for small ones), each is a
    parallel entry of the joined program (pool.PARALLEL, run by chain.py on the pool): the
    results are the one-thread bits, across new feeds and variable updates."""
    from graphflow.compiler.codegen import pool
    from graphflow.compiler.fusion import epilogue

    monkeypatch.setattr(epilogue, "SPLIT_MIN_BYTES", 0)
    g, x, y, variables, init = _mlp()
    feeds = [RNG.standard_normal((1, SIZES[0])).astype(np.float32) for _ in range(3)]
    results = []
    for threads in (1, 2):
        with gf.Session(graph=g, num_threads=threads) as sess:
            sess.run(init)
            f = sess.make_callable(y, feed_list=[x])
            got = [f(v).copy() for v in feeds + feeds]
            (whole,) = [w for w in _whole(sess) if w is not None]
            assert (pool.PARALLEL in _functions(whole.binding.program)) == (threads == 2)
            sess.run(variables[0].assign(variables[0] * 0.5))
            got.append(f(feeds[0]).copy())
            results.append((got, sess.run(variables)))
    (one, values), (two, _) = results
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(two[-1], _reference(values, feeds[0]), rtol=1e-4, atol=1e-6)



def test_split_products_under_concurrent_runs(monkeypatch):
    """Programs with split products take turns at the pool's slot: 6 threads x 60 runs, each
    with its own feed, all get their own results."""
    from graphflow.compiler.fusion import epilogue

    monkeypatch.setattr(epilogue, "SPLIT_MIN_BYTES", 0)
    g, x, y, variables, init = _mlp()
    with gf.Session(graph=g, num_threads=2) as sess:
        sess.run(init)
        values = sess.run(variables)
        f = sess.make_callable(y, feed_list=[x])
        feeds = [RNG.standard_normal((1, SIZES[0])).astype(np.float32) for _ in range(6)]
        want = [_reference(values, v) for v in feeds]
        f(feeds[0])
        f(feeds[0])
        _each_on_its_own_thread(f, feeds, want, 60)


def _each_on_its_own_thread(f, feeds, want, runs: int) -> None:
    """Run f(feeds[i]) `runs` times on thread i for every i, all at once, checking each result."""
    errors = []

    def worker(i):
        try:
            for _ in range(runs):
                np.testing.assert_allclose(f(feeds[i]), want[i], rtol=1e-4, atol=1e-6)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def _functions(program) -> list:
    """The function slots of a chain program (codegen/chain.py): address, count, arguments..."""
    prog, at, fns = list(program), 0, []
    while prog[at] != 0:
        fns.append(prog[at])
        at += 2 + prog[at + 1]
    return fns
