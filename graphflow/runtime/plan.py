"""Turn fetches and feeds into something a Session can run repeatedly."""
from __future__ import annotations

from ..compiler.pipeline import build_program
from .interpreter import Interpreter


class Plan:
    """A compiled program for one (fetches, feed keys) pair and the executor that runs it."""

    def __init__(self, program, report, executor, elements=(), tensors=()):
        self.program = program
        self.report = report
        self.executor = executor
        # position of each fetched element's value among the program outputs (None: an op)
        index = {t: i for i, t in enumerate(tensors)}
        self.gather = [index.get(e) for e in elements]

    def run(self, feed_values, state, trace=None):
        return self.executor.run(feed_values, state, trace)


def build_plan(graph, elements, tensors, ops, feeds, opt_level, session) -> Plan:
    program, report = build_program(graph, tensors, ops, feeds, opt_level)
    return Plan(program, report, Interpreter(program), elements, tensors)
