"""How many threads a Session uses, and why; the persistent pool those threads live in.

One `ThreadBudget` per Session holds `num_threads - 1` worker threads (the thread that
calls `Session.run` is the last one). The same workers run independent plan steps
(inter-op) and the chunks of parallel kernels (intra-op), so a session never runs more
than `num_threads` of its own threads at once.

Compiled kernels are split through `parallel_entry`: a chain program's entry whose chunks
are claimed and run in machine code (codegen/pool.py), by the calling thread and by workers
that poll the budget's slot for IDLE_US after their last chunk, with the GIL released,
before blocking on the queue. A run of several parallel kernels in a row (or a loop of runs)
so never waits for a thread to wake up, and an idle session's workers sleep. Python
callables go through `parallel_for` and `submit`, over the queue.

Every wait is "helping": a thread that waits for work it handed out first runs what is
left of that work itself, so nested use (a step running on a worker that calls
`parallel_for`) cannot deadlock even when every worker is busy.

numpy's BLAS keeps its own threads, so the plan sets how many it may use (through numpy's
bundled OpenBLAS, with ctypes: `limit_blas_threads`) before each step that calls it:
a step that is one BLAS call over the whole op (the reference MatMul) gives BLAS the
session's `num_threads`; a fused epilogue kernel, which splits the product into row
blocks over this pool, gives BLAS one thread per block. Either way the step runs alone
(BLAS steps are barriers in the inter-op schedule), so at most `num_threads` threads
compute at any time. The setting is process-wide: sessions with different budgets that
run BLAS at the same moment can still exceed one budget. An unknown BLAS (MKL) keeps its
own default.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import itertools
import os
import queue
import threading
import time
import weakref

import numpy as np

from ..compiler.codegen import pool


def available_cpus() -> tuple[int, str]:
    """CPUs this process may use: affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
        why = f"{n} CPUs in this process's affinity mask"
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
        why = f"{n} CPUs reported by the OS"
    quota = _cgroup_quota()
    if quota is not None and quota < n:
        n = quota
        why += f", capped to {quota} by the cgroup CPU quota"
    return max(n, 1), why


def _cgroup_quota() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, period = f.read().split()[:2]
        if q != "max":
            return max(1, int(int(q) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            q = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if q > 0:
            return max(1, q // period)
    except (OSError, ValueError):
        pass
    return None


def resolve_num_threads(requested: int | None) -> tuple[int, str]:
    """(threads, reason): the argument, else GRAPHFLOW_NUM_THREADS, else the usable CPUs."""
    if requested is not None:
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise ValueError(f"num_threads must be a positive int or None, got {requested!r}")
        return requested, "num_threads argument"
    env = os.environ.get("GRAPHFLOW_NUM_THREADS")
    if env:
        try:
            n = int(env)
            if n < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"GRAPHFLOW_NUM_THREADS must be a positive integer, got {env!r}") from None
        return n, "GRAPHFLOW_NUM_THREADS"
    return available_cpus()


# ---- numpy's BLAS ----

def _blas_functions():
    """numpy's bundled OpenBLAS (set_num_threads, get_num_threads), or (None, None) for an
    unknown BLAS (MKL, Accelerate): it then keeps its own default."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None, None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                               ("openblas", "")):
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                return setter, getter
    return None, None


_blas = {"functions": None, "threads": None, "default": None}
_blas_lock = threading.Lock()


def _blas_fns():
    if _blas["functions"] is None:
        with _blas_lock:
            if _blas["functions"] is None:
                setter, getter = _blas["functions"] = _blas_functions()
                if getter is not None:
                    _blas["threads"] = _blas["default"] = getter()
    return _blas["functions"]


def limit_blas_threads(n: int) -> None:
    """Let numpy's BLAS use at most `n` threads (process-wide; a no-op when unchanged)."""
    if _blas["threads"] == n:
        return
    setter, _ = _blas_fns()
    if setter is not None:
        setter(n)
    _blas["threads"] = n


def restore_blas_threads() -> None:
    """Give numpy's BLAS back the thread count it had before graphflow changed it, so
    numpy code outside a run keeps its usual speed."""
    if _blas["default"] is not None:
        limit_blas_threads(_blas["default"])


# A BLAS call this small runs on one thread: ~1 ms of single-threaded sgemm. Below that,
# waking BLAS's own threads costs more than they save, and on a machine busy with other
# processes their spin-waiting turns a 0.3 ms product into tens of milliseconds.
PARALLEL_LIBRARY_WORK = 1 << 25   # multiply-adds, estimated as below


def library_threads(num_threads: int, x, *rest) -> int:
    """Threads for one library call (matmul, convolution) on operands `x, *rest`: its work
    is estimated as x.size times the last dimension of the second operand (exact for a
    matmul: M*K*N; a convolution's patch size is left out, which only errs towards one
    thread)."""
    if num_threads == 1:
        return 1
    work = np.size(x)
    if rest and np.ndim(rest[0]):
        work *= np.shape(rest[0])[-1]
    return num_threads if work >= PARALLEL_LIBRARY_WORK else 1


def blas_threads() -> int | None:
    """How many threads numpy's BLAS may use now (None: not an OpenBLAS we can ask)."""
    _, getter = _blas_fns()
    return None if getter is None else getter()


# ---- the pool ----

# A parallel_for is cut into up to this many chunks, claimed one at a time by whichever
# thread is free: a core that is slow (another process on it, a late wake-up) takes fewer,
# instead of the whole call waiting for its fixed share. A chunk costs a few microseconds
# of Python and ctypes (measured on W2 at 2 threads: 64 chunks ~5% slower than 2 on a quiet
# machine, 16 chunks ~1%), so the cap keeps several chunks per thread for a few threads.
MAX_CHUNKS = 16


def chunk_bounds(total: int, grain: int) -> list[int]:
    """Boundaries of the chunks of `parallel_for(fn, total, grain)`: as many near-equal chunks
    as fit at least `grain` each, at most MAX_CHUNKS. They depend on (total, grain) only, never
    on the thread count, so a caller whose chunks feed a reduction gets the same result at
    any number of threads above one."""
    n = max(1, min(total // grain, MAX_CHUNKS))
    step, extra = divmod(total, n)
    return [i * step + min(i, extra) for i in range(n + 1)]


# A worker polls for new chunks this long after its last one before it blocks: longer than
# the Python between two parallel kernels of a run or two runs of a loop, far shorter than
# anything a person would call idle. A worker going back to sleep (and its wake-up) is Python
# work that takes the GIL from the thread running the plan: W5's training step on 2 threads,
# whose loss and gradient head (~300 us of small kernels) sits between its split products,
# ran 5-7% slower with 100 us than with 1000 (/tmp/s4/abspin.py, blocks of 40 steps
# alternating in one process: 2.63-2.75 vs 2.46-2.56 ms; 400 us: 2.53 vs 2.59).
IDLE_US = 1000
# A thread waiting for chunks other threads claimed polls this long, then naps (pool.NAP_US)
# between polls, so that a worker which lost its core to another process gets this one.
SPIN_US = 100
_WAKE = object()   # queued to get a blocked worker polling the slot again


# Which budget of the process published work last (its id): another budget's idle workers
# stop polling at once instead of after IDLE_US, so that two Sessions used in turn (a training
# and an evaluation session, the benchmark's opt levels) never have one's polling workers
# take the cores from the other's.
_OWNER = pool.new_slot()   # (word 0, on a cache line of its own)
_IDS = itertools.count(1)


@functools.lru_cache(maxsize=None)
def _spins_per_us() -> float:
    """Empty polls of the slot per microsecond on this machine (measured once, ~1 ms)."""
    _, serve = pool.functions()
    slot, n = pool.new_slot(), 20_000
    owner = np.zeros(1, np.int64)   # (owned by "budget 0", the caller: it polls all `n` times)
    t0 = time.perf_counter()
    serve(slot.ctypes.data, n, 0, owner.ctypes.data, 0)
    return n / max((time.perf_counter() - t0) * 1e6, 1.0)


class _Job:
    """Chunks of one `parallel_for` call, taken by whichever thread asks next."""

    __slots__ = ("fn", "bounds", "next", "left", "done", "error", "lock")

    def __init__(self, fn, bounds):
        self.fn = fn
        self.bounds = bounds
        self.next = itertools.count()  # next() is atomic under the GIL
        self.left = len(bounds) - 1
        self.done = threading.Event()
        self.error = None
        self.lock = threading.Lock()

    def work(self) -> None:
        bounds, fn = self.bounds, self.fn
        last = len(bounds) - 1
        while True:
            i = next(self.next)
            if i >= last:
                return
            try:
                if self.error is None:
                    fn(bounds[i], bounds[i + 1])
            except BaseException as exc:  # re-raised by the caller of parallel_for
                self.error = exc
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.done.set()


class ThreadBudget:
    """The threads one Session may use. Kernels split work through `parallel_for`.

    This is the contract fused kernels code against: `parallel_for(fn, total, grain)`
    calls fn(start, end) over disjoint ranges covering [0, total), each at least `grain`
    long (`chunk_bounds`), and returns when all calls are done; one call over the whole
    range, inline, when there is no room for two chunks or with one thread. `submit(fn)`
    hands a callable to a worker (used by the plan's inter-op scheduler); the workers
    start on first use and stop at `close()`.
    """

    def __init__(self, num_threads: int = 1):
        self.num_threads = num_threads
        self._queue: queue.SimpleQueue | None = None
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._slot = pool.new_slot() if num_threads > 1 else None
        self._slot_lock = threading.Lock()   # one compiled job in the slot at a time
        self._pokes = itertools.count(1)
        self._id = next(_IDS)
        self._spins = 0   # a waiting caller's polls of the slot in SPIN_US (set when the workers start)

    # -- workers --
    def _start(self) -> queue.SimpleQueue:
        with self._lock:
            if self._queue is None:
                q = queue.SimpleQueue()
                self._spins = max(1, int(SPIN_US * _spins_per_us()))
                idle = max(1, int(IDLE_US * _spins_per_us()))
                for i in range(self.num_threads - 1):
                    t = threading.Thread(target=_worker_loop, args=(q, self._slot, idle, self._id),
                                         name=f"graphflow-worker-{i}", daemon=True)
                    t.start()
                    self._workers.append(t)
                self._queue = q
                _STARTED.add(self)
            return self._queue

    def submit(self, fn) -> None:
        """Run fn() on a worker thread (fn must not raise; it reports its own errors)."""
        q = self._queue or self._start()
        q.put(fn)
        self._poke()

    def _poke(self) -> None:
        """Get workers polling the slot back to the queue (after a put)."""
        if self._slot is not None:
            _OWNER[0] = self._id
            self._slot[pool.POKE] = next(self._pokes)

    def close(self) -> None:
        """Stop the workers (they finish what they are running first)."""
        with self._lock:
            q, self._queue = self._queue, None
            workers, self._workers = self._workers, []
        if q is not None:
            for _ in workers:
                q.put(None)
            self._poke()

    @property
    def started(self) -> bool:
        return self._queue is not None

    # -- intra-op --
    def parallel_for(self, fn, total: int, grain: int) -> None:
        if total <= 0:
            return
        grain = max(int(grain), 1)
        if self.num_threads == 1 or total < 2 * grain:
            fn(0, total)
            return
        bounds = chunk_bounds(total, grain)
        job = _Job(fn, bounds)
        q = self._queue or self._start()
        for _ in range(min(self.num_threads, len(bounds) - 1) - 1):
            q.put(job.work)
        self._poke()
        job.work()
        job.done.wait()
        if job.error is not None:
            raise job.error

    def parallel_entry(self, calls) -> tuple | None:
        """(pool.PARALLEL, arguments): a chain program entry (codegen/chain.py) running the job
        of `calls` (pool.job_words: compiled functions' addresses, their arguments, the
        positions of each chunk's start and end among them, and a (start, end) table per call,
        one pair per chunk) on this budget's threads; None when a call has too many arguments.
        A program holding one runs through `run_compiled`."""
        self._queue or self._start()
        args = pool.entry_arguments(self._slot.ctypes.data, self._spins, pool.nap_address() or 0, calls)
        return None if args is None else (pool.PARALLEL, args)

    def run_compiled(self, program) -> None:
        """program(): a compiled program with parallel entries, run holding the slot with the
        workers polling it (concurrent programs take turns). (A plain lock, not a generator
        context manager: ~0.2 vs ~1.2 us, on the path of every W4 batch-1 run.)"""
        with self._slot_lock:
            self._wake_pollers(len(self._workers))
            program()

    def _wake_pollers(self, wanted: int) -> None:
        """Get up to `wanted` workers polling the slot (the caller holds it): one queued wake-up
        for each that is blocked rather than polling."""
        q = self._queue or self._start()
        _OWNER[0] = self._id
        for _ in range(min(wanted, len(self._workers)) - int(self._slot[pool.SPINNING])):
            q.put(_WAKE)

    def __repr__(self):
        return f"<ThreadBudget num_threads={self.num_threads}>"


def _worker_loop(q: queue.SimpleQueue, slot: np.ndarray, idle: int, me: int) -> None:
    np.seterr(all="ignore")  # this thread's own floating-point state: kernels never warn
    _, serve = pool.functions()
    address, owner = slot.ctypes.data, _OWNER.ctypes.data
    while True:
        fn = q.get()
        if fn is None:
            return
        if fn is not _WAKE:
            fn()
        while True:   # poll the slot until idle for IDLE_US (or another budget's turn), or poked: queue work
            poke = int(slot[pool.POKE])
            if not q.empty() or not serve(address, idle, poke, owner, me):
                break


SERIAL = ThreadBudget(1)
_STARTED: weakref.WeakSet = weakref.WeakSet()   # budgets whose workers run


@atexit.register
def _stop_workers() -> None:
    """At interpreter exit, get workers out of compiled code (polling for work) and blocked
    in Python, before the interpreter tears down what that code lives in."""
    for budget in list(_STARTED):
        budget.close()
