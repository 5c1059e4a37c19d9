"""Run a Program node by node with each op's kernel, allocating every value afresh.

The plain executor: it runs gf.cond branch sub-programs (through `RunState.run_program`)
and is the reference the ExecutionPlan's buffer reuse and in-place writes are tested
against. Sessions run their top-level programs through `execution_plan.ExecutionPlan`.
The steps are prepared once per program, so a repeated run does no graph walking.
"""
from __future__ import annotations

import threading
import time
import weakref

import numpy as np

from ..errors import InvalidArgumentError, OpError
from ..graph import shape_str
from ..compiler.program import Program


_cache: "weakref.WeakKeyDictionary[Program, Interpreter]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def interpreter_for(program: Program) -> "Interpreter":
    """The (cached) Interpreter of a sub-program such as a cond branch."""
    it = _cache.get(program)
    if it is None:
        with _cache_lock:
            it = _cache.get(program)
            if it is None:
                it = _cache[program] = Interpreter(program)
    return it


class Step:
    __slots__ = ("node", "kernel", "stateful", "inputs", "attrs", "outputs", "free")

    def __init__(self, node, kernel, stateful, inputs, attrs, outputs, free):
        self.node = node
        self.kernel = kernel
        self.stateful = stateful
        self.inputs = inputs
        self.attrs = attrs
        self.outputs = outputs
        self.free = free


class Interpreter:
    """An executable form of a Program: a flat list of steps over value slots."""

    def __init__(self, program: Program):
        self.program = program
        slot_of: dict = {}
        for n in program.nodes:
            for i in range(len(n.specs)):
                slot_of[(n.id, i)] = len(slot_of)
        self.n_slots = len(slot_of)
        self.feed_slots = [slot_of[(fid, 0)] for fid in program.feeds]
        self.output_slots = [slot_of[r] for r in program.outputs]
        last_use: dict[int, int] = {}
        steps_nodes = [n for n in program.nodes if n.op != "Feed"]
        for k, n in enumerate(steps_nodes):
            for r in n.inputs:
                last_use[slot_of[r]] = k
        keep = set(self.output_slots) | set(self.feed_slots)
        self.steps = []
        for k, n in enumerate(steps_nodes):
            d = n.op_def
            if d.kernel is None:
                raise InvalidArgumentError(f"'{n.name}' ({n.op}) has no value: it must be fed", n.name)
            free = tuple(s for s in {slot_of[r] for r in n.inputs} if last_use.get(s) == k and s not in keep)
            attrs = {k2: v for k2, v in n.attrs.items()}
            self.steps.append(Step(n, d.kernel, d.stateful, tuple(slot_of[r] for r in n.inputs), attrs,
                                   tuple(slot_of[(n.id, i)] for i in range(len(n.specs))), free))

    def run(self, feed_values, state, trace=None) -> list:
        values = [None] * self.n_slots
        for s, v in zip(self.feed_slots, feed_values):
            values[s] = v
        for step in self.steps:
            args = [values[s] for s in step.inputs]
            t0 = time.perf_counter() if trace is not None else 0.0
            try:
                if step.stateful:
                    out = step.kernel(state, *args, **step.attrs)
                else:
                    out = step.kernel(*args, **step.attrs)
            except OpError:
                raise
            except (ValueError, IndexError, TypeError, ZeroDivisionError, FloatingPointError) as exc:
                n = step.node
                where = f" (created at {n.source})" if n.source else ""
                shapes = ", ".join(shape_str(np.shape(a)) for a in args)
                raise InvalidArgumentError(f"'{n.name}' ({n.op}) failed on inputs of shapes [{shapes}]: "
                                           f"{exc}{where}", n.name) from exc
            if trace is not None:
                trace.append((step.node.name, step.node.op, t0, time.perf_counter(), threading.get_ident()))
            if len(step.outputs) == 1:
                values[step.outputs[0]] = out if not isinstance(out, tuple) else out[0]
            else:
                for s, v in zip(step.outputs, out):
                    values[s] = v
            for s in step.free:
                values[s] = None
        return [values[s] for s in self.output_slots]
