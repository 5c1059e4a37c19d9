"""Turn fetches and feeds into something a Session can run repeatedly: compile the program,
build its ExecutionPlan once, and record the plan's peak memory in the report."""
from __future__ import annotations

import os
import sys
import time

from ..compiler.pipeline import build_program
from .execution_plan import ExecutionPlan
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
    """Compile, plan and size the program computing `tensors` and running `ops` given `feeds`."""
    program, report = build_program(graph, tensors, ops, feeds, opt_level)
    t0 = time.perf_counter()
    execution = ExecutionPlan(program, feeds, convert=_converter(), store=getattr(session, "_store", None),
                              budget=getattr(session, "budget", SERIAL))
    report.stage_seconds["plan"] = time.perf_counter() - t0
    report.peak_memory_bytes = execution.peak_memory_bytes()
    if opt_level == 0:
        report.unfused_peak_memory_bytes = report.peak_memory_bytes
    else:
        unfused, _ = build_program(graph, tensors, ops, feeds, 0)
        report.unfused_peak_memory_bytes = ExecutionPlan(unfused, feeds, convert=_converter(),
                                                         generate=False).peak_memory_bytes()
    report.note("peak memory counts the plan's buffers and live per-run allocations, with unknown "
                "dimensions taken as 1")
    _debug(execution, report)
    return Plan(program, report, execution, elements, tensors)


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
