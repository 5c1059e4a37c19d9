"""The thread budget: how many threads and why, parallel_for's contract, one persistent
pool per Session, nested use without deadlock, no busy-waiting, inter-op execution."""
import contextlib
import threading
import time

import numpy as np
import pytest

import graphflow as gf
from graphflow.runtime.threads import MAX_CHUNKS, SERIAL, ThreadBudget, available_cpus, chunk_bounds, \
    resolve_num_threads


def test_num_threads_from_argument_env_and_cpus(monkeypatch):
    assert resolve_num_threads(3) == (3, "num_threads argument")
    monkeypatch.setenv("GRAPHFLOW_NUM_THREADS", "5")
    assert resolve_num_threads(None) == (5, "GRAPHFLOW_NUM_THREADS")
    monkeypatch.delenv("GRAPHFLOW_NUM_THREADS")
    n, why = resolve_num_threads(None)
    assert (n, why) == available_cpus() and n >= 1 and "CPU" in why
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_threads"):
            resolve_num_threads(bad)
    monkeypatch.setenv("GRAPHFLOW_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="GRAPHFLOW_NUM_THREADS"):
        resolve_num_threads(None)


def test_session_exposes_its_threads_and_why(monkeypatch):
    with gf.Session(num_threads=2) as sess:
        assert (sess.num_threads, sess.num_threads_reason) == (2, "num_threads argument")
        assert sess.budget.num_threads == 2
    monkeypatch.setenv("GRAPHFLOW_NUM_THREADS", "3")
    with gf.Session() as sess:
        assert sess.num_threads == 3 and "GRAPHFLOW_NUM_THREADS" in sess.num_threads_reason


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("total,grain", [(0, 1), (5, 10), (10, 3), (1000, 7), (64, 64), (65, 32)])
def test_parallel_for_covers_the_range_once_in_chunks_of_at_least_grain(threads, total, grain):
    budget = ThreadBudget(threads)
    seen = []
    budget.parallel_for(lambda a, b: seen.append((a, b)), total, grain)
    budget.close()
    covered = sorted(i for a, b in seen for i in range(a, b))
    assert covered == list(range(total))
    if total > grain:
        assert all(b - a >= grain for a, b in seen)
    else:
        assert len(seen) == (1 if total else 0)
    if threads > 1 and total >= 2 * grain:   # chunks of the split, whatever the thread count
        bounds = chunk_bounds(total, grain)
        assert sorted(seen) == list(zip(bounds[:-1], bounds[1:]))
    else:
        assert len(seen) == (1 if total else 0)


def test_chunks_depend_on_total_and_grain_only_and_are_capped():
    assert chunk_bounds(10, 3) == [0, 4, 7, 10]
    bounds = chunk_bounds(10 ** 6, 7)
    assert len(bounds) == MAX_CHUNKS + 1 and bounds[0] == 0 and bounds[-1] == 10 ** 6
    sizes = {b - a for a, b in zip(bounds[:-1], bounds[1:])}
    assert max(sizes) - min(sizes) <= 1


def test_a_slow_thread_takes_fewer_chunks():
    """Chunks are claimed dynamically: the thread stuck in chunk 0 waits until the other
    thread has run every other chunk (with fixed shares, that would never happen)."""
    budget = ThreadBudget(2)
    by_thread: dict = {}
    rest_done = threading.Event()
    done = []

    def work(a, b):
        by_thread.setdefault(threading.current_thread().name, []).append(a)
        if a == 0:
            assert rest_done.wait(20), "no other thread took the remaining chunks"
        else:
            done.append(a)
            if len(done) == MAX_CHUNKS - 1:
                rest_done.set()

    budget.parallel_for(work, MAX_CHUNKS, 1)
    budget.close()
    assert sorted(len(v) for v in by_thread.values()) == [1, MAX_CHUNKS - 1]


def test_parallel_for_uses_the_pool_and_reraises_errors():
    budget = ThreadBudget(4)
    names = set()

    def work(a, b):
        names.add(threading.current_thread().name)
        time.sleep(0.01)

    budget.parallel_for(work, 4, 1)
    assert len(names) > 1  # the calling thread and at least one worker

    def boom(a, b):
        raise ZeroDivisionError("chunk failed")

    with pytest.raises(ZeroDivisionError, match="chunk failed"):
        budget.parallel_for(boom, 8, 1)
    budget.close()


def test_nested_parallel_for_on_busy_workers_does_not_deadlock():
    budget = ThreadBudget(3)
    total = [0]
    lock = threading.Lock()

    def inner(a, b):
        with lock:
            total[0] += b - a

    def outer(a, b):
        for _ in range(a, b):
            budget.parallel_for(inner, 100, 10)

    done = threading.Event()
    t = threading.Thread(target=lambda: (budget.parallel_for(outer, 6, 1), done.set()), daemon=True)
    t.start()
    assert done.wait(20), "nested parallel_for deadlocked"
    assert total[0] == 600
    budget.close()


def test_one_pool_of_num_threads_minus_one_workers_that_sleep_when_idle():
    budget = ThreadBudget(4)
    budget.parallel_for(lambda a, b: None, 8, 1)
    workers = [t for t in threading.enumerate() if t.name.startswith("graphflow-worker")]
    assert len(budget._workers) == 3 and all(w.is_alive() for w in budget._workers)
    assert len(workers) >= 3
    cpu0 = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu0 < 0.1  # blocked on a queue, not spinning
    budget.close()
    for w in budget._workers:
        w.join(2)
    assert SERIAL.num_threads == 1


def test_inter_op_runs_independent_steps_on_several_threads_with_the_same_results():
    x = gf.placeholder(gf.float32, (None, 32), name="x")
    branches = [gf.reduce_sum(gf.tanh(x * float(i + 1)) * x, axis=1) for i in range(6)]
    y = branches[0]
    for b in branches[1:]:
        y = y + b
    data = np.random.default_rng(0).normal(size=(50, 32)).astype(np.float32)
    with gf.Session(num_threads=1, opt_level=0) as serial:
        want = serial.run(y, {x: data})
    with gf.Session(num_threads=4, opt_level=0) as sess:
        sess.run(y, {x: data})
        (plan,) = sess._plans.values()
        ex = plan.execution
        assert ex.parallel_ok
        threads = set()
        for _ in range(20):
            trace = []
            np.testing.assert_allclose(ex.run_steps([data], trace, parallel=True)[0], want, rtol=1e-5)
            threads |= {t for *_, t in trace}
        assert len(threads) >= 1
        # a long run switches the session's plan to the inter-op schedule on its own
        _measured(ex, [1.0], [])
        np.testing.assert_allclose(sess.run(y, {x: data}), want, rtol=1e-5)


def test_blas_steps_are_barriers_in_the_inter_op_schedule():
    x = gf.placeholder(gf.float32, (8, 8), name="x")
    a = gf.exp(x)
    b = gf.tanh(x)
    m = gf.matmul(a, b)
    c = gf.sigmoid(m) + gf.square(x)
    with gf.Session(num_threads=4, opt_level=0) as sess:
        sess.run(c, {x: np.eye(8, dtype=np.float32)})
        (plan,) = sess._plans.values()
        ex = plan.execution
        deps = ex.dependencies()
        (k,) = [s.index for s in ex.steps if s.blas is not None]
        before = {j for j in range(k)}
        reach = set()
        stack = list(deps[k])
        while stack:
            j = stack.pop()
            if j not in reach:
                reach.add(j)
                stack.extend(deps[j])
        assert reach == before  # everything earlier finishes first
        for j in range(k + 1, len(ex.steps)):  # everything later waits for it
            seen, stack = set(), list(deps[j])
            while stack:
                i = stack.pop()
                if i not in seen:
                    seen.add(i)
                    stack.extend(deps[i])
            assert k in seen


def test_blas_threads_follow_the_step_kind_and_are_restored_after_the_run(monkeypatch):
    from graphflow.runtime import threads

    if threads.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS this process can reach")
    default = threads.blas_threads()
    seen = _blas_spy(monkeypatch, "graphflow.runtime.execution_plan.limit_blas_threads")
    a = gf.placeholder(gf.float32, (None, None), name="a")
    y = gf.matmul(a, a)
    for n in (1, 3):
        with gf.Session(num_threads=n, opt_level=0) as sess:
            for size, want in ((4, 1), (512, n)):
                seen.clear()
                sess.run(y, {a: np.eye(size, dtype=np.float32)})
                # a whole-op BLAS call gets the session's threads when it has the work for them
                assert seen[0] == want
                assert threads.blas_threads() == default  # and numpy gets its own setting back


def test_a_step_failing_on_the_inter_op_schedule_raises_and_the_plan_stays_usable():
    a = gf.placeholder(gf.float32, (None, None), name="a")
    b = gf.placeholder(gf.float32, (None, None), name="b")
    sums = [gf.reduce_sum(gf.exp(a * float(i))) for i in range(4)]
    prod = gf.reduce_sum(gf.matmul(a, b, name="mm"))
    total = sums[0] + sums[1] + sums[2] + sums[3] + prod
    with gf.Session(num_threads=3, opt_level=0) as sess:
        ok = [np.zeros((2, 3), np.float32), np.ones((3, 2), np.float32)]
        sess.run(total, {a: ok[0], b: ok[1]})
        (plan,) = sess._plans.values()
        ex = plan.execution
        for _ in range(5):
            with pytest.raises(gf.errors.InvalidArgumentError, match="mm"):
                ex.run_steps([ok[0], np.ones((4, 2), np.float32)], parallel=True)
            assert ex.run_steps(ok, parallel=True)[0] == 4 * 6


def test_long_runs_keep_whichever_mode_was_faster():
    with _counted_schedule() as (run, data, ex, scheduled):
        _measured(ex, [1e-4], [])  # short (set, not timed: a loaded machine can stretch any run)
        run(data)
        assert not scheduled  # a short run stays on the calling thread
        _measured(ex, [1.0], [5.0])  # long, and the schedule was measured slower
        ex._calls = 1
        run(data)
        assert not scheduled
        _measured(ex, [1.0], [0.5])  # long, and the schedule was measured faster
        ex._calls = 1
        run(data)
        assert scheduled
        want = np.exp(1.0) * 12 + np.tanh(1.0) * 12
        np.testing.assert_allclose(run(data), want, rtol=1e-5)


def test_library_calls_get_the_session_threads_only_with_the_work_for_them():
    from graphflow.runtime.threads import PARALLEL_LIBRARY_WORK, library_threads

    small = np.ones((32, 64), np.float32), np.ones((64, 128), np.float32)
    big = np.broadcast_to(np.float32(1), (1024, 1024)), np.broadcast_to(np.float32(1), (1024, 1024))
    assert 1024 ** 3 >= PARALLEL_LIBRARY_WORK > 32 * 64 * 128
    assert library_threads(4, *small) == 1
    assert library_threads(4, *big) == 4
    assert library_threads(1, *big) == 1
    assert library_threads(4, np.float32(3.0)) == 1  # a scalar operand


def test_a_fused_product_on_numpys_route_runs_blas_on_one_thread_per_block(monkeypatch):
    """A fused matmul epilogue sets BLAS threads only when a block goes to numpy (a product
    narrower than half a vector), not on every run, and the run gives numpy its setting back."""
    from graphflow.compiler.fusion import epilogue
    from graphflow.runtime import threads

    if threads.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS this process can reach")
    default = threads.blas_threads()
    seen = _blas_spy(monkeypatch, epilogue.__name__ + ".limit_blas_threads")
    x = gf.placeholder(gf.float32, (None, 40), name="x")
    wv = np.arange(40 * 4, dtype=np.float32).reshape(40, 4) / 100
    y = gf.nn.relu(gf.matmul(x, gf.constant(wv)) - 1.0)
    xv = np.random.default_rng(0).standard_normal((3000, 40)).astype(np.float32)
    with gf.Session(num_threads=2) as sess:
        np.testing.assert_allclose(sess.run(y, {x: xv}), np.maximum(xv @ wv - 1.0, 0), rtol=1e-5, atol=1e-5)
    assert seen and set(seen) == {1}
    assert threads.blas_threads() == default


def _blas_spy(monkeypatch, target: str) -> list:
    """Replace the limit_blas_threads that `target` names with one recording each setting."""
    from graphflow.runtime import threads

    seen = []

    def spy(n):
        seen.append(n)
        threads.limit_blas_threads(n)

    monkeypatch.setattr(target, spy)
    return seen


def test_a_mode_is_judged_by_its_fastest_recent_run():
    """Slow runs of the chosen mode (another process on the machine) do not flip it, nor does
    one probe of the other mode that is not clearly faster than the chosen mode's best."""
    with _counted_schedule() as (run, data, ex, scheduled):
        _measured(ex, [1.0, 3.0, 3.0, 3.0], [0.95])   # a slow spell; the schedule once, barely faster
        ex._calls = 1
        run(data)
        assert not scheduled
        assert len(ex._times[0]) == 4   # the oldest run dropped for the newest


@contextlib.contextmanager
def _counted_schedule():
    """(run, data, plan, list growing by one per run on the inter-op schedule) of a small plan
    with two independent reductions, on a 2-thread session."""
    x = gf.placeholder(gf.float32, (None, 4), name="x")
    y = gf.reduce_sum(gf.exp(x)) + gf.reduce_sum(gf.tanh(x))
    with gf.Session(num_threads=2, opt_level=0) as sess:
        run = sess.make_callable(y, [x])
        data = np.ones((3, 4), np.float32)
        run(data)
        ex = sess._plans[next(iter(sess._plans))].execution
        scheduled = []
        real = ex.run_steps
        ex.run_steps = lambda *a, **k: scheduled.append(1) or real(*a, **k)
        yield run, data, ex, scheduled


def _measured(ex, serial, parallel):
    """Set a plan's recent run times of each mode (seconds)."""
    ex._times[0][:], ex._times[1][:] = serial, parallel
