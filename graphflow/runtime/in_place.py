"""The arrays a run writes variables' next values into: the variable's own array (an SGD
step's W - lr*dW into W) where a run keeps its all-or-nothing promise while doing so, else
a recycled one (`recycled`).

Why: an update into a fresh array streams a second copy of the weights through the caches
each step: W5's training step (784-512-512-10, batch 128), A/B in one process, 0.963x on one
thread and 0.962x on two with its two weight updates in place.

Which steps (`sections`): a fused kernel that computes a variable's next value (one that the
plan's write_variable adopts) from the value the run read, and whose output may be its input
(`inplace_ok`: it reads each element before writing it). The value read has no later reader
and only fused kernels read it (none makes a view of it), and every step from the first such kernel to the end of the plan (the section) is a fused
kernel or a variable write: nothing there checks a value or calls Python ops.

When, per run of the serial runner (`InPlace`):
- the section's input shapes are ones a run has got through before (`passed`). A fused
  kernel's output shapes follow from its input shapes alone, so no shape check in the
  section can fail half-way, after an array has been rewritten;
- the array is held by nothing but the store and this run (its reference count): a value
  fetched earlier, one another thread's run is reading, a joined run's binding
  (whole_run.py) keep their array, and the update goes to a fresh one as before;
- while the section runs, the store names this thread as its writer: a reader on another
  thread that took a value meanwhile waits for the run to end and takes the value again
  (`VariableStore.current`);
- a Ctrl-C in the section is held back until the run has committed, then raised: an
  interrupt never leaves some variables stepped and others not. For that, the first such
  run on the main thread puts a SIGINT handler in front of the one installed, which it
  calls for every interrupt outside a section.
"""
from __future__ import annotations

import _signal
import signal
import sys
import threading
from _thread import get_ident

import numpy as np

SHAPES_KEPT = 64   # input-shape combinations a plan remembers having run its section with
# references to a variable's array when the plan offers it as a kernel's output: the store's
# dict, the run's local, the kernel's input list, this function's argument and getrefcount's
# (and the plan's pool of fresh arrays for the variable, when the array came from there)
HELD = 5
_MAIN = threading.main_thread().ident


class InPlace:
    """The in-place section of one plan's serial runner (see the module docstring)."""

    __slots__ = ("store", "shapes")

    def __init__(self, store):
        self.store = store
        self.shapes: set = set()

    def begin(self, shapes: tuple) -> bool:
        """Whether this run writes in place: its section's input shapes have run before."""
        if shapes not in self.shapes:
            return False
        me = get_ident()
        if me == _MAIN:
            _hold_interrupts()
        self.store.writer = me
        return True

    def end(self) -> None:
        """After the run's commit (or its failure): readers may go on, an interrupt is raised."""
        self.store.writer = 0
        if get_ident() == _MAIN:
            _release_interrupts()

    def passed(self, shapes: tuple) -> None:
        """A run got through the section with these input shapes."""
        if len(self.shapes) >= SHAPES_KEPT:
            self.shapes.clear()
        self.shapes.add(shapes)


def output(on: bool, value, pool: list | None, shape: tuple, dtype) -> np.ndarray:
    """The array a kernel writes a variable's next value into: `value`, the variable's
    current one, made writable, when this run writes in place and nothing else holds the
    array, else one from `pool` (`recycled`; a new one for a variable too small for a pool)."""
    if on and value.__class__ is np.ndarray and value.shape == shape and value.dtype == dtype \
            and value.base is None and value.flags.c_contiguous \
            and sys.getrefcount(value) == HELD + (0 if pool is None else sum(x is value for x in pool)):
        value.flags.writeable = True
        return value
    return np.empty(shape, dtype) if pool is None else recycled(pool, shape, dtype)


def recycled(pool: list, shape: tuple, dtype) -> np.ndarray:
    """A new array for a variable's next value (a value the plan's Assign adopts) where it is
    not written in place, as execution_plan's `_fresh_output` gives for a fetched result,
    from a pool of two: the variable holds its
    value until the next update replaces it, so the array of two updates ago is the one free
    again. Its first touch would cost a page fault per 4 KB where the allocator maps it fresh
    (a 64 MB weight's SGD step, one thread: 41.4 -> 38.6 ms; W5's 1-1.6 MB weights came from
    the heap already). A value is read-only while the variable holds it: writable again here,
    once nothing else refers to it."""
    for _ in range(len(pool)):
        try:
            x = pool.pop(0)
        except IndexError:   # emptied by a concurrent run meanwhile
            break
        if sys.getrefcount(x) > 2:   # held outside the pool (`x` and the argument are 2): kept for later
            pool.append(x)
        elif x.shape == shape and x.dtype == dtype:
            x.flags.writeable = True
            pool.append(x)
            return x
    x = np.empty(shape, dtype)
    pool.append(x)
    if len(pool) > 2:
        try:
            pool.pop(0)
        except IndexError:
            pass
    return x


def sections(plan) -> dict:
    """step index -> {output position: input value} of the plan's in-place updates (see the
    module docstring); empty when it has none."""
    steps = plan.steps
    reads = {st.outputs[0]: st.fn[1][0] for st in steps if st.mode == "state" and st.fn[0] == "read_variable"}
    writes = {st.inputs[0]: st.fn[1][0] for st in steps if st.mode == "state" and st.fn[0] == "write_variable"}
    fetched = set(plan.output_values)
    readers: dict = {}
    for st in steps:
        for u in st.inputs:
            readers.setdefault(u, []).append(st)
    start = 0   # steps before `start` may fail or read a variable: the section begins after them
    for st in steps:
        if not (st.mode == "out" or (st.mode == "state" and st.fn[0] == "write_variable")):
            start = st.index + 1
    found: dict = {}
    for st in steps[start:]:
        for i, j in st.info.inplace:
            v, u = st.outputs[j], st.inputs[i]
            if v in plan.adopted and writes.get(v) is not None and writes[v] == reads.get(u) \
                    and u not in fetched and st.inputs.count(u) == 1 and readers[u][-1] is st \
                    and all(r.mode == "out" for r in readers[u]) and j not in found.get(st.index, {}):
                found.setdefault(st.index, {})[j] = u
    return found


class _Interrupts:
    """SIGINT held back while the main thread runs an in-place section."""

    depth = 0
    pending: tuple | None = None
    previous = None


def _handler(signum, frame):
    if _Interrupts.depth:
        _Interrupts.pending = (signum, frame)
    else:
        _Interrupts.previous(signum, frame)


def _hold_interrupts() -> None:
    handler = _signal.getsignal(signal.SIGINT)   # (signal.getsignal's enum lookup: 2 us, this 0.04)
    if handler is not _handler and callable(handler):   # (SIG_DFL ends the process, SIG_IGN nothing)
        _Interrupts.previous = handler
        signal.signal(signal.SIGINT, _handler)
    _Interrupts.depth += 1


def _release_interrupts() -> None:
    _Interrupts.depth -= 1
    pending = _Interrupts.pending
    if pending is not None and not _Interrupts.depth:
        _Interrupts.pending = None
        _Interrupts.previous(*pending)
