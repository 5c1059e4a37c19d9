"""The compile pipeline: lower the graph, then run the passes `opt_level` selects, in order."""
from __future__ import annotations

import time

from .passes.prune import check_feeds, prune
from .program import Program, lower_graph
from .report import Report


def build_program(graph, outputs, targets, feeds, opt_level: int = 2) -> tuple[Program, Report]:
    """Lower what the fetches need and optimize it; raises for unfed placeholders."""
    report = Report()
    t0 = time.perf_counter()
    program = lower_graph(graph, outputs, targets, feeds)
    before = len(program)
    program = prune(program, report)
    report.timed("prune", time.perf_counter() - t0, before, len(program))
    check_feeds(program)
    return program, report
