"""Concurrent runs on one Session: every result right (each run has its own buffers), and
each run's variable updates applied as one."""
import threading

import numpy as np
import pytest

import graphflow as gf

THREADS, RUNS = 16, 200


def _hammer(fn, threads=THREADS):
    errors = []

    def worker(i):
        try:
            fn(i)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("opt_level", [0, 2])
def test_16_threads_x_200_runs_on_one_session(opt_level):
    x = gf.placeholder(gf.float32, (None, 4), name="x")
    h = gf.tanh(x * 0.5) + x
    y = gf.reduce_sum(h * h, axis=1)
    with gf.Session(opt_level=opt_level, num_threads=2) as sess:
        run = sess.make_callable([h, y], [x])

        def work(i):
            rng = np.random.default_rng(i)
            for r in range(RUNS):
                batch = 1 + (i + r) % 3  # batch sizes change between runs and threads
                data = rng.uniform(-1, 1, (batch, 4)).astype(np.float32)
                if r % 2:
                    hv, yv = run(data)
                else:
                    hv, yv = sess.run([h, y], {x: data})
                want_h = np.tanh(data * 0.5) + data
                np.testing.assert_allclose(hv, want_h, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(yv, (want_h * want_h).sum(axis=1), rtol=1e-5, atol=1e-6)

        _hammer(work)


def test_concurrent_runs_commit_their_variable_updates_atomically():
    a = gf.Variable(np.zeros(3, np.float32), name="a")
    b = gf.Variable(np.zeros(3, np.float32), name="b")
    x = gf.placeholder(gf.float32, (3,), name="x")
    both = gf.group(a.assign(x), b.assign(x * 2.0))
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        seen = []

        def work(i):
            for r in range(50):
                sess.run(both, {x: np.full(3, i * 100 + r, np.float32)})
                av, bv = sess.run([a, b])
                seen.append((av, bv))

        _hammer(work, threads=8)
        av, bv = sess.run([a, b])
        np.testing.assert_array_equal(bv, av * 2)  # the last commit wrote both variables together
        for av, bv in seen:
            assert np.all(av == av[0]) and np.all(bv == bv[0])


def test_concurrent_runs_on_the_inter_op_schedule():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    branches = [gf.reduce_sum(gf.exp(x * (0.1 * i)) * x, axis=1) for i in range(5)]
    y = branches[0]
    for b in branches[1:]:
        y = y * 0.5 + b
    with gf.Session(num_threads=3, opt_level=0) as sess:
        run = sess.make_callable(y, [x])
        run(np.zeros((2, 8), np.float32))
        (plan,) = sess._plans.values()
        assert plan.execution.parallel_ok
        plan.execution._times[0][:] = [1.0]  # as after a long run: every later run takes the pool schedule
        scheduled = []
        real = plan.execution.run_steps
        plan.execution.run_steps = lambda *a, **k: scheduled.append(1) or real(*a, **k)

        def work(i):
            rng = np.random.default_rng(i)
            for r in range(60):
                plan.execution._times[0][:], plan.execution._times[1][:] = [1.0], []
                data = rng.uniform(-1, 1, (1 + r % 4, 8)).astype(np.float32)
                want = (np.exp(data * 0.0) * data).sum(axis=1)
                for k in range(1, 5):
                    want = want * 0.5 + (np.exp(data * np.float32(0.1 * k)) * data).sum(axis=1)
                np.testing.assert_allclose(run(data), want, rtol=1e-4, atol=1e-5)

        _hammer(work, threads=8)
        assert len(scheduled) >= 60
