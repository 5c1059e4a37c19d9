"""The compiled hand-off of parallel jobs (codegen/pool.py, ThreadBudget.parallel_entry):
every chunk runs exactly once whatever the thread count, concurrent jobs on one budget stay
correct, workers stop polling when idle, and queued Python work still reaches them."""
import ctypes
import threading
import time

import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.codegen import chain, gemm, pool
from graphflow.compiler.codegen.jit import compile_module
from graphflow.runtime.threads import ThreadBudget

RNG = np.random.default_rng(11)

# add(s, e, buf, v): buf[s:e] += v, so a chunk run twice or skipped shows in the result
_ADD_IR = """
define void @add(i64 %s, i64 %e, ptr %buf, i64 %v) {
entry:
  %none = icmp sge i64 %s, %e
  br i1 %none, label %exit, label %loop
loop:
  %i = phi i64 [%s, %entry], [%i1, %loop]
  %p = getelementptr i64, ptr %buf, i64 %i
  %x = load i64, ptr %p
  %y = add i64 %x, %v
  store i64 %y, ptr %p
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %e
  br i1 %more, label %loop, label %exit
exit:
  ret void
}

define void @add_at(ptr %buf, i64 %v, i64 %s, i64 %e) {
entry:
  call void @add(i64 %s, i64 %e, ptr %buf, i64 %v)
  ret void
}
"""


@pytest.fixture(scope="module")
def add():
    jit = compile_module(_ADD_IR)
    return jit, jit.address("add"), jit.address("add_at")


def _table(edges):
    return np.array([(s, e) for s, e in zip(edges, edges[1:])], np.int64).reshape(-1)


def _program(budget, calls):
    """A chain program of one parallel entry running the job of `calls` on `budget`'s threads,
    as a bound kernel holds it."""
    return chain.program([budget.parallel_entry(calls)])


def _run(budget, calls=None, program=None):
    """Run the job of `calls` (or a `program` of `_program`) as kernels run theirs; on one
    thread, its chunks one after another through the pool's own run (no workers)."""
    if budget.num_threads == 1:
        run, _ = pool.functions()
        slot, job = pool.new_slot(), np.array(pool.job_words(calls), np.int64)
        run(slot.ctypes.data, job.ctypes.data, len(calls[0][4]) // 2, 0, None)
        return
    program = program if program is not None else _program(budget, calls)
    budget.run_compiled(lambda: chain.function()(ctypes.addressof(program)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_chunk_runs_once(add, threads):
    _, fn, _ = add
    buf = np.zeros(10_000, np.int64)
    edges = sorted({0, 10_000, *RNG.integers(0, 10_000, 40).tolist()})
    table = _table(edges)
    budget = ThreadBudget(threads)
    try:
        for v in range(1, 200):
            _run(budget, [(fn, [0, 0, buf.ctypes.data, v], 0, 1, table)])
    finally:
        budget.close()
    assert (buf == sum(range(1, 200))).all()


def test_two_calls_per_chunk_and_empty_ranges_skipped(add):
    _, fn, fn_at = add
    a, b = np.zeros(100, np.int64), np.zeros(200, np.int64)
    rows = np.array([0, 50, 50, 50, 50, 100], np.int64)     # the middle chunk is empty
    calls = [(fn, [0, 0, a.ctypes.data, 1], 0, 1, rows),
             (fn_at, [b.ctypes.data, 7, 0, 0], 2, 3, rows * 2)]   # its range at arguments 2, 3
    budget = ThreadBudget(2)
    try:
        _run(budget, calls)
    finally:
        budget.close()
    assert (a == 1).all() and (b == 7).all()


def test_a_job_holds_its_tables(add):
    """The tables are copied into the job: a caller's temporary table may be gone by the time
    the job runs."""
    _, fn, _ = add
    buf = np.zeros(64, np.int64)
    budget = ThreadBudget(2)
    try:
        program = _program(budget, [(fn, [0, 0, buf.ctypes.data, 1], 0, 1, np.array([0, 32, 32, 64], np.int64))])
        junk = [np.full(4, 10 ** 9, np.int64) for _ in range(100)]   # reuse of the freed table's memory
        _run(budget, program=program)
    finally:
        budget.close()
    assert (buf == 1).all() and len(junk) == 100


def test_a_copy_of_a_job_is_a_job(add):
    """Tables are found by their offset from the job's start, so a copy made of a program (a
    binding patching new operands in copies its program) runs on its own, the original gone."""
    _, fn, _ = add
    buf = np.zeros(64, np.int64)
    budget = ThreadBudget(2)
    try:
        program = _program(budget, [(fn, [0, 0, buf.ctypes.data, 1], 0, 1, np.array([0, 32, 32, 64], np.int64))])
        copy = type(program).from_buffer_copy(program)
        ctypes.memset(program, 0, ctypes.sizeof(program))
        del program
        _run(budget, program=copy)
    finally:
        budget.close()
    assert (buf == 1).all()


def test_tables_of_one_job_must_have_as_many_chunks(add):
    _, fn, _ = add
    with pytest.raises(ValueError, match="same number"):
        pool.job_words([(fn, [0, 0, 0, 1], 0, 1, [0, 1, 1, 2]), (fn, [0, 0, 0, 1], 0, 1, [0, 1])])


def test_a_call_with_too_many_arguments_has_no_job(add):
    _, fn, _ = add
    budget = ThreadBudget(2)
    try:
        assert budget.parallel_entry([(fn, [0] * (pool.MAX_ARGS + 1), 0, 1, np.zeros(2, np.int64))]) is None
    finally:
        budget.close()


def test_concurrent_jobs_on_one_budget(add):
    """Runs from several threads share one slot, taking turns: every chunk of every job still
    runs once."""
    _, fn, _ = add
    budget = ThreadBudget(2)
    bufs = [np.zeros(4096, np.int64) for _ in range(6)]
    table = _table(list(range(0, 4097, 256)))
    errors = []

    def worker(buf):
        try:
            for _ in range(300):
                _run(budget, [(fn, [0, 0, buf.ctypes.data, 1], 0, 1, table)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b,)) for b in bufs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        budget.close()
    assert not errors
    assert all((b == 300).all() for b in bufs)


def test_idle_workers_stop_polling_and_queued_work_reaches_them(add):
    _, fn, _ = add
    budget = ThreadBudget(3)
    buf = np.zeros(1000, np.int64)
    try:
        _run(budget, [(fn, [0, 0, buf.ctypes.data, 1], 0, 1, _table([0, 300, 600, 1000]))])
        done = threading.Event()
        budget.submit(done.set)          # a worker may be polling the slot: the poke sends it to the queue
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while budget._slot[pool.SPINNING] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert budget._slot[pool.SPINNING] == 0   # no busy-waiting once idle
    finally:
        budget.close()
    assert (buf == 1).all()


def test_a_budget_publishing_work_sends_another_budgets_idle_workers_to_sleep(add, monkeypatch):
    """Workers of a budget that polls for long stop as soon as another budget of the process
    publishes a job (two Sessions used in turn never share the cores with polling workers)."""
    from graphflow.runtime import threads

    _, fn, _ = add
    monkeypatch.setattr(threads, "IDLE_US", 10_000_000)   # A's workers would poll for 10 s
    a, b = ThreadBudget(2), ThreadBudget(2)
    buf = np.zeros(1000, np.int64)
    calls = [(fn, [0, 0, buf.ctypes.data, 1], 0, 1, _table([0, 500, 1000]))]
    try:
        _run(a, calls)
        time.sleep(0.05)
        assert a._slot[pool.SPINNING] == 1   # still polling, well within its 10 s
        _run(b, calls)
        deadline = time.monotonic() + 5
        while a._slot[pool.SPINNING] and time.monotonic() < deadline:
            time.sleep(0.001)
        assert a._slot[pool.SPINNING] == 0
        _run(a, calls)   # and the next job of A still gets its worker back
    finally:
        a.close()
        b.close()
    assert (buf == 3).all()


@pytest.mark.parametrize("head", ["relu", "softmax"])
def test_matmul_epilogue_as_one_compiled_job_matches_one_thread(monkeypatch, head):
    """A product split over threads runs as one compiled job of (product rows, epilogue rows)
    chunks, bound as a chain entry: into the output it becomes (relu) or a scratch result (a
    softmax row epilogue)."""
    x = gf.placeholder(gf.float32, (None, 96), name="x")
    w = gf.constant(RNG.standard_normal((96, 80)).astype(np.float32) / 8)
    b = gf.constant(RNG.standard_normal(80).astype(np.float32))
    z = gf.matmul(x, w) + b
    out = gf.nn.relu(z) if head == "relu" else gf.nn.softmax(z)
    feeds = {x: RNG.standard_normal((3001, 96)).astype(np.float32)}
    jobs = []
    real = ThreadBudget.parallel_entry

    def spy(self, calls):
        jobs.append(len(calls))   # calls per chunk
        return real(self, calls)

    monkeypatch.setattr(ThreadBudget, "parallel_entry", spy)
    serial = gf.Session(num_threads=1).run(out, feeds)
    assert jobs == []
    for threads in (2, 3):
        with gf.Session(num_threads=threads) as sess:
            np.testing.assert_array_equal(sess.run(out, feeds), serial)
    assert jobs == [2, 2]   # the product and its epilogue
    np.testing.assert_allclose(serial, gf.Session(opt_level=0).run(out, feeds), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [320, 64])
def test_training_step_products_and_updates_as_compiled_jobs_match_one_thread(monkeypatch, batch):
    """W5's shape of work at a small size: forward products with epilogues, a product with B
    transposed (computed as C^T and stored transposed when A is the smaller, as at batch 64:
    epilogue.Route.swapped) and the SGD update applied in the product's stores, each split
    over threads as one compiled job: the variables come out with the same bits as at one
    thread."""
    rng = np.random.default_rng(3)
    w0 = (rng.standard_normal((256, 384)) / 16).astype(np.float32)
    w1 = (rng.standard_normal((384, 256)) / 16).astype(np.float32)
    xv = rng.standard_normal((batch, 256)).astype(np.float32)
    yv = rng.standard_normal((batch, 256)).astype(np.float32)
    jobs = []
    real = ThreadBudget.parallel_entry

    firsts = set()   # the first function of each job

    def spy(self, calls):
        jobs.append(len(calls))
        firsts.add(calls[0][0])
        return real(self, calls)

    monkeypatch.setattr(ThreadBudget, "parallel_entry", spy)
    results = []
    for threads in (1, 2, 3):
        g = gf.Graph()
        with g.as_default():
            x = gf.placeholder(gf.float32, (None, 256), name="x")
            y = gf.placeholder(gf.float32, (None, 256), name="y")
            v0, v1 = gf.Variable(w0, name="w0"), gf.Variable(w1, name="w1")
            out = gf.matmul(gf.nn.relu(gf.matmul(x, v0)), v1)
            loss = gf.reduce_mean(gf.square(out - y))
            train = gf.train.GradientDescentOptimizer(0.05).minimize(loss)
            init = gf.global_variables_initializer()
        with gf.Session(graph=g, num_threads=threads) as sess:
            sess.run(init)
            for _ in range(3):
                sess.run(train, {x: xv, y: yv})
            results.append(sess.run([v0, v1]))
        if threads == 1:
            assert jobs == []
    # per thread count (2 and 3), bound once and run every step: the two updates (one call
    # per chunk), the forward products with their epilogues (two calls per chunk)
    assert jobs.count(1) >= 2 * 2 and jobs.count(2) >= 2 * 2
    if batch == 64:
        assert chain.address_of(gemm.transposed_function(np.float32)) in firsts
    for split in results[1:]:
        for a, b in zip(split, results[0]):
            np.testing.assert_array_equal(a, b)

