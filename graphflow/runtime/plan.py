"""Turn fetches and feeds into something a Session can run repeatedly: compile the program,
build its ExecutionPlan once, and record the plan's peak memory in the report."""
from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import threading
import time

from ..compiler.fusion import fuse
from ..compiler.pipeline import build_stages, fill_unfused
from ..compiler.report import Report
from ..compiler.verify import verify
from ..compiler.program import FEED
from .execution_plan import ExecutionPlan
from .memory import value_nbytes
from .threads import SERIAL


class Plan:
    """A compiled program for one (fetches, feed keys) pair and the ExecutionPlan that runs it.

    `gather[i]` is the position of fetched element i among the program outputs (None for
    an operation, which fetches as None).
    """

    def __init__(self, program, report, execution: ExecutionPlan, elements=(), tensors=()):
        self.program = program
        self.report = report
        self.execution = execution
        index = {t: i for i, t in enumerate(tensors)}
        self.gather = [index.get(e) for e in elements]
        self.identity_gather = self.gather == list(range(len(tensors)))

    def run(self, feed_values, trace=None) -> list:
        """Values of the fetched elements in fetch order (checks and converts the feeds)."""
        ex = self.execution
        outs = ex(*feed_values) if trace is None else ex.run_steps(feed_values, trace)
        if self.identity_gather:
            return outs
        return [None if i is None else outs[i] for i in self.gather]


def build_plan(graph, elements, tensors, ops, feeds, opt_level, session=None) -> Plan:
    """Compile, plan and size the program computing `tensors` and running `ops` given `feeds`.

    The plan's peak memory is never above the unfused (opt_level 0) plan's: when the
    optimized program's would be, fusion is planned again without computing any member
    early (`fuse(..., keep_lifetimes=True)`), then the lower levels' programs are tried, at
    worst the unfused one itself (equal by definition); the report says which and why."""
    with _gc_paused():
        return _build_plan(graph, elements, tensors, ops, feeds, opt_level, session)


def _build_plan(graph, elements, tensors, ops, feeds, opt_level, session) -> Plan:
    programs, report = build_stages(graph, tensors, ops, feeds, opt_level)
    t0 = time.perf_counter()
    make = functools.partial(ExecutionPlan, feed_tensors=feeds, convert=_converter(),
                             store=getattr(session, "_store", None), budget=getattr(session, "budget", SERIAL))
    program = programs[-1]
    execution = make(program)
    peak = unfused_peak = execution.peak_memory_bytes()
    if program is not programs[0]:
        size_unfused = functools.partial(_unfused_peak, programs[0], feeds)
        if peak <= unfused_peak_floor(programs[0]):
            unfused_peak = size_unfused   # not above it, whatever it is: sized if the report is read
        else:
            unfused_peak = size_unfused()
        if not callable(unfused_peak) and peak > unfused_peak:
            why = f"the optimized plan's peak memory ({peak} bytes) was above the unfused plan's ({unfused_peak} bytes)"
            for candidate, replan in _fallbacks(programs):
                execution = make(candidate)
                peak = execution.peak_memory_bytes()
                if peak <= unfused_peak:
                    break
            program = candidate
            _describe_fallback(report, program, replan, programs.index(candidate) if replan is None else None, why)
    report.stage_seconds["plan"] = time.perf_counter() - t0
    report.peak_memory_bytes = peak
    report.unfused_peak_memory_bytes = unfused_peak
    report.note("peak memory counts the plan's buffers and live per-run allocations, with unknown "
                "dimensions taken as 1")
    _debug(execution, report)
    return Plan(program, report, execution, elements, tensors)


def _unfused_peak(program, feeds) -> int:
    return ExecutionPlan(program, feeds, generate=False).peak_memory_bytes()


def unfused_peak_floor(program) -> int:
    """A lower bound of `ExecutionPlan(program).peak_memory_bytes()`, read off the fetches
    alone: every fetched value a step computes is held at the end of a run, and while the
    step computing one runs, its computed inputs are held too (in plan buffers or as live
    allocations; only feeds and constants, produced by nodes without inputs, are not
    counted). Unknown dims count as 1, as in the peak itself."""
    def size(ref) -> int:
        spec = program.spec(ref)
        return value_nbytes((spec.shape, spec.dtype), 1)

    def computed(ref) -> bool:
        return bool(program.node(ref[0]).inputs)

    fetched = [r for r in dict.fromkeys(program.outputs) if computed(r)]
    floor = sum(size(r) for r in fetched)
    held = set(fetched)
    for r in fetched:
        inputs = [u for u in dict.fromkeys(program.node(r[0]).inputs) if computed(u) and u not in held]
        floor = max(floor, size(r) + sum(size(u) for u in inputs))
    return floor


def _fallbacks(programs):
    """(program, its fusion report or None) to try in turn when the optimized plan peaks above
    the unfused one: fusion without early computation, then each lower level's program."""
    if len(programs) > 2 and programs[-1] is not programs[1]:
        replan = Report()
        program = fuse(programs[1], replan, keep_lifetimes=True)
        if os.environ.get("GRAPHFLOW_VERIFY", "0") not in ("", "0"):   # as the pipeline checks every pass
            verify(program, "fuse (keep_lifetimes)")
        yield program, replan
    seen = {id(programs[-1])}
    for level in range(len(programs) - 2, -1, -1):
        if id(programs[level]) not in seen:
            seen.add(id(programs[level]))
            yield programs[level], None


_gc_lock = threading.Lock()
_gc_state = {"depth": 0, "was_enabled": True}


@contextlib.contextmanager
def _gc_paused():
    """Compiling allocates many small objects that all stay alive until the plan exists, so
    the cyclic collector's passes over them free nothing and cost about a fifth of a warm
    W6 compile: it is paused while any plan is being built (reference counting still frees
    everything that dies) and resumed afterwards, as it was."""
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


def _describe_fallback(report, program, replan, level, why: str) -> None:
    """Make the report describe the program the plan runs instead of the optimized one: the
    re-planned fusion (`replan`, its report) or the opt_level `level` program."""
    if replan is not None:
        report.note(f"{why}: fusion planned again without computing any op early")
        report.events[:] = [e for e in report.events if e[0] != "fuse"] + replan.events
        report.kernels[:] = replan.kernels
        report.llvm_ir = replan.llvm_ir
        report.unfused.clear()
        report.unfused.update(replan.unfused)
        fill_unfused(report, program, 2)
        return
    report.note(f"{why}: running the opt_level {level} program")
    kept = {n.name for n in program.nodes}
    if not any(k["name"] in kept for k in report.kernels):
        report.kernels.clear()
        report.llvm_ir = ""
        report.unfused.clear()
        report.unfused.update((n.name, f"fusion undone: {why}") for n in program.nodes if n.op != FEED)


def _debug(execution: ExecutionPlan, report) -> None:
    """GRAPHFLOW_DEBUG=1: one line per plan; 3: also the generated runner."""
    try:
        level = int(os.environ.get("GRAPHFLOW_DEBUG", "0") or 0)
    except ValueError:
        return
    if level >= 1:
        mem = execution.memory
        print(f"[graphflow] plan: {len(execution.steps)} steps, {mem.n_buffers} buffers, {mem.inplace_steps} in "
              f"place, peak {report.peak_memory_bytes} bytes (unfused {report.unfused_peak_memory_bytes}), "
              f"{'inter-op capable' if execution.parallel_ok else 'serial'}", file=sys.stderr)
    if level >= 3:
        print(execution.source, file=sys.stderr)


def _converter():
    from .session import convert_feed  # the one place the feed conversion rules live

    return convert_feed
