"""The benchmark model: a workload has cases; a case has inputs, a numpy reference, a derived
figure, and the systems that compute it. Running a case checks each system's output against
numpy, then times all systems in alternation (so machine noise hits them alike).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np


@dataclass
class System:
    """One way to compute a case. `factory(threads)` returns a zero-argument callable that
    computes the case's output (or raises ImportError when its library is missing).
    `isolated` systems name their library (jax, tensorflow): they run in a worker process
    per library and thread count, where thread settings are made before the import. Systems sharing a `group`
    alternate call by call; every other system is timed in a block of its own, after a
    warm-up, so that one library's still-spinning thread pool does not slow the next."""

    name: str
    factory: Callable[[int], Callable[[], object]]
    isolated: str = ""
    group: str = ""  # systems of one non-empty group are timed in alternation (graphflow's levels)


@dataclass
class Case:
    workload: str
    title: str
    reference: Callable[[], object] | None  # numpy output(s) of `calls_checked` consecutive calls
    figure: Callable[[float], float]  # seconds per call -> derived figure
    unit: str
    systems: list = field(default_factory=list)
    rtol: float = 1e-4
    atol: float = 1e-5
    calls_checked: int = 1
    one_shot: bool = False  # see measure_once (W5 fit, W6 compile): no check, no alternation
    per_thread: bool = True  # False: measured once, at the first thread count
    flops: float | None = None  # floating-point operations per call: the tables give "% of FMA peak" (W7)


@dataclass
class Row:
    workload: str
    case: str
    system: str
    threads: int
    median_s: float | None = None
    min_s: float | None = None
    figure: float | None = None
    unit: str = ""
    status: str = "ok"
    note: str = ""
    flops: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Settings:
    repeat: int = 7
    min_sample_s: float = 0.02  # a sample loops a fast call until it lasts this long
    # Untimed calls before each sample of systems timed in alternation (before the first sample of
    # a system timed in a block of its own): a BLAS pool woken by one
    # system (numpy's OpenBLAS under graphflow's opt 0) busy-waits for ~0.1 s after its last call and
    # would otherwise take a core from the next system's sample. They are calls, not a pause: on this
    # VM a second core left idle for 50 ms or more runs slowly for the next ~100 ms (W2 softmax at
    # 2 threads: 0.71 ms per call after calls, 1.24 ms after a 0.25 s sleep, 1.14 ms even with 30 ms
    # of calls after the sleep; /tmp/w2j.py), which a sleep would charge to the multithreaded sample.
    # 0.15 s was not enough after opt 0's large products: W4 at batch 256 on 2 threads, opt 2 after
    # 0.15 s of its own calls ran 3.4 ms in 4 samples of 6 (one core's speed) and 1.6 ms after 0.4 s
    # (/tmp/s3/bimodal3.py).
    settle_s: float = 0.4


def max_difference(got, want, rtol: float, atol: float) -> tuple[bool, float]:
    """(all close, worst |got - want|) over matching lists of arrays."""
    got_list = got if isinstance(got, (list, tuple)) else [got]
    want_list = want if isinstance(want, (list, tuple)) else [want]
    if len(got_list) != len(want_list):
        return False, float("inf")
    ok, worst = True, 0.0
    for g, w in zip(got_list, want_list):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return False, float("inf")
        if g.size:
            worst = max(worst, float(np.max(np.abs(g - w))))
            ok = ok and bool(np.allclose(g, w, rtol=rtol, atol=atol))
    return ok, worst


def _guarded(row: Row, thunk: Callable):
    """thunk() or None, with the row saying why (a missing peer or a failure is a result to
    print, not a crash of the suite)."""
    try:
        return thunk()
    except ImportError as exc:
        row.status, row.note = "skipped", f"not installed ({exc.name or exc})"
    except Exception as exc:
        text = str(exc).strip().splitlines()
        row.status, row.note = "error", f"{type(exc).__name__}: {text[0] if text else ''}"[:160]
    return None


def prepare(case: Case, system: System, threads: int, reference) -> tuple[Callable | None, Row]:
    """Build a system's callable and check its output against numpy's before it is timed."""
    row = Row(case.workload, case.title, system.name, threads, unit=case.unit, flops=case.flops)
    built = _guarded(row, lambda: _build_and_call(case, system, threads))
    if built is None:
        return None, row
    fn, got = built
    ok, worst = max_difference(got[0] if case.calls_checked == 1 else got, reference, case.rtol, case.atol)
    if not ok:
        row.status, row.note = "wrong", f"max abs diff vs numpy {worst:.3g}"
        return None, row
    row.note = f"max abs diff {worst:.1e}" if worst else ""
    return fn, row


def _build_and_call(case: Case, system: System, threads: int):
    fn = system.factory(threads)
    return fn, [_as_numpy(fn()) for _ in range(case.calls_checked)]


def measure_once(case: Case, system: System, threads: int) -> Row:
    """A one-shot case: the system's callable does the work and returns
    {"seconds": s, "figure": f, "note": text} (compile time, a whole `fit`)."""
    row = Row(case.workload, case.title, system.name, threads, unit=case.unit)
    result = _guarded(row, lambda: system.factory(threads)())
    if result is not None:
        row.median_s = row.min_s = result["seconds"]
        row.figure = result.get("figure", case.figure(result["seconds"]))
        row.note = result.get("note", "")
    return row


def _as_numpy(value):
    """Peer outputs (torch tensors, jax arrays, lists of them) as numpy arrays."""
    if isinstance(value, (list, tuple)):
        return [_as_numpy(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach()
    return np.asarray(value)


def time_alternating(fns: dict, settings: Settings) -> dict:
    """name -> seconds per call for each of `settings.repeat` rounds; each round calls every
    function once (or a calibrated number of times, for calls too fast to time alone)."""
    number = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        number[name] = max(1, int(settings.min_sample_s / max(time.perf_counter() - t0, 1e-9)))
    samples: dict = {name: [] for name in fns}
    alternating = len(fns) > 1
    for i in range(settings.repeat):
        for name, fn in fns.items():
            k = number[name]
            if alternating or i == 0:   # a block of its own settles once, before its first sample
                _run_for(fn, settings.settle_s)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
    return samples


def _run_for(fn: Callable, seconds: float) -> None:
    """Untimed calls of fn for about `seconds` (none when 0)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()


def run_case(case: Case, systems: list, threads: int, settings: Settings) -> list:
    """Check then time `systems` (a subset of case.systems) on one case at `threads`."""
    if case.one_shot:
        return [measure_once(case, system, threads) for system in systems]
    reference = case.reference()
    rows, blocks = [], {}
    for i, system in enumerate(systems):
        fn, row = prepare(case, system, threads, reference)
        rows.append(row)
        if fn is not None:
            blocks.setdefault(system.group or i, {})[system.name] = fn
    samples: dict = {}
    for fns in blocks.values():
        samples.update(time_alternating(fns, settings))
    for row in rows:
        if row.system in samples:
            s = samples[row.system]
            row.median_s, row.min_s = statistics.median(s), min(s)
            row.figure = case.figure(row.median_s)
    return rows
