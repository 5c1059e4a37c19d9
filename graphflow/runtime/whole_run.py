"""A run of a plan made only of variable reads and fused kernels bound to their operands, as
ONE compiled call.

Why: at W4's batch 1 a run is three kernels of 2-18 us, and the Python around each (the
plan's shape lookups, the kernel's operand check, a ctypes call) cost ~9 us of ~40. After a
run in which every kernel ran through its binding (fusion/direct.py), their calls are joined
into one binding over the run's external arrays: the feeds, the variables' values, the
plan's constants and the fetched results; the intermediate results live in buffers of the
joined binding's own. A later run whose arrays are the same (or differ only in data pointers,
patched) runs it as one compiled call; anything else (a new shape, a dtype to convert, an
uninitialized variable) takes the plan's ordinary path, which also gives the errors.

While the store's version is the one a run read the variables at, a later run checks only
its feeds and results against the binding, not the variables read again (W4 at batch 1, A/B
in one process: 27.1 -> 24.2 us on 2 threads, 35.9 -> 32.4 on one). It holds the variables'
arrays of that version for the call, so a value replaced meanwhile by a concurrent run stays
alive (and is not recycled) until the call is done.
"""
from __future__ import annotations

import threading

from ..compiler.fusion.direct import DirectCall, Operand, Scratch, matcher
from ..runtime.pointers import address

MAX_BUILDS = 16   # joins per plan: a plan whose shapes keep changing stops trying


class WholeRun:
    """The joined binding of one plan (see the module docstring)."""

    def __init__(self, plan, pools: dict):
        self.plan = plan
        self.pools = pools           # fetched value -> its output pool (execution_plan._fresh_output)
        self.binding: DirectCall | None = None
        self.reads: tuple = ()       # variable names read, in operand order
        self.constants: tuple = ()   # plan constants read by kernels, in operand order
        self.outs: tuple = ()        # (pool, shape, dtype) of each fetched result
        # (store version, binding, the variables' and constants' arrays bound, and the binding's
        # refs, shapes and matcher of its feeds and results only): see the module docstring
        self.fast: tuple | None = None
        self.store = plan.store
        self.builds = 0
        self._lock = threading.Lock()

    @staticmethod
    def eligible(plan) -> bool:
        """Only variable reads and fused kernels, at least two kernels, every fetched value a
        kernel's result returned from an output pool."""
        kernels = [st for st in plan.steps if st.mode == "out"]
        pools = plan._pooled_outputs()
        return (len(kernels) >= 2
                and all(st.mode == "out" or (st.mode == "state" and st.fn[0] == "read_variable")
                        for st in plan.steps)
                and len(set(plan.output_values)) == len(plan.output_values)
                and all(v in pools for v in plan.output_values))

    def run(self, feeds, fresh) -> list | None:
        """The fetched results, or None when this run must take the ordinary path."""
        fast = self.fast
        if fast is None:
            return None
        version, b, held, refs, shapes, match = fast
        outs = [fresh(pool, shape, dtype) for pool, shape, dtype in self.outs]
        if version == self.store.version and match([*feeds, *outs], refs, shapes):
            b()   # (`held` keeps the variables' arrays of `version` alive meanwhile)
            return outs
        return self._run_checked(feeds, outs)

    def _run_checked(self, feeds, outs) -> list | None:
        """`run` with the variables read and every operand checked (rebound if need be)."""
        b = self.binding
        version = self.store.version   # (before the reads: a later write makes it stale, never wrong)
        values = self.store.values
        held = []
        for name in self.reads:
            v = values.get(name)
            if v is None:
                return None
            held.append(v)
        if self.store.rewritten_elsewhere():   # (its values, taken again after it: state.py)
            return None
        held += self.constants
        ops = [*feeds, *held, *outs]
        if not b.match(ops, b.refs, b.shapes):
            b = b.rebind(ops, b.budget)
            if b is None:
                return None
            self.binding = b
        ends = (*range(len(feeds)), *range(len(ops) - len(outs), len(ops)))
        self.fast = (version, b, tuple(held), tuple(b.refs[i] for i in ends), tuple(b.shapes[i] for i in ends),
                     matcher(len(ends)))
        b()
        return outs

    def learn(self) -> None:
        """Join the kernels' current bindings (after an ordinary run), when they allow it."""
        if self.builds >= MAX_BUILDS or not self._lock.acquire(blocking=False):
            return
        try:
            self.builds += 1
            joined = self._join()
            if joined is not None:
                self.binding, self.reads, self.constants, self.outs = joined
                self.fast = (-1, self.binding, (), (), (), None)   # (the next run checks every operand)
        finally:
            self._lock.release()

    def _join(self):
        plan = self.plan
        arrays: dict = {}   # value -> the array the kernels were bound to

        def same(v, a) -> bool:
            return arrays.setdefault(v, a) is a

        bindings = []
        for st in plan.steps:
            if st.mode != "out":
                continue
            b = getattr(st.kernel, "_direct", None)
            values = (*st.inputs, *st.outputs)
            if b is None or b.program is None or b.budget is not plan.budget or len(b.refs) != len(values):
                return None
            for v, r in zip(values, b.refs):
                a = r()
                if a is None or not same(v, a):
                    return None
            bindings.append((b, values))
        reads = [(st.fn[1][0], st.outputs[0]) for st in plan.steps if st.mode == "state"]
        constants = [v for v in arrays if v in plan.constants]
        external = list(plan.feed_values) + [v for _, v in reads] + constants + list(plan.output_values)
        if any(v not in arrays for v in external) or \
                any(arrays[v] is not plan.store.values.get(name) for name, v in reads):
            return None   # (a value no kernel reads, or a variable assigned since the kernels ran)
        index = {v: i for i, v in enumerate(external)}
        scratch = {v: Scratch(a.shape, a.dtype) for v, a in arrays.items() if v not in index}
        if not all(arrays[v].flags.c_contiguous for v in scratch):   # (the kernels' layouts assume it)
            return None
        calls, keep = [], []
        for b, values in bindings:
            calls += _templates(b, [Operand(index[v]) if v in index else scratch[v] for v in values])
            keep.append(b.keep)
        joined = DirectCall.bind([arrays[v] for v in external], calls, plan.budget, tuple(keep))
        if joined.program is None:
            return None
        outs = tuple((self.pools[v], arrays[v].shape, arrays[v].dtype) for v in plan.output_values)
        return (joined, tuple(name for name, _ in reads), tuple(plan.constants[v] for v in constants), outs)


def _templates(b: DirectCall, markers: list) -> list:
    """(function, argument template) pairs of binding `b`'s calls, its operands' pointers
    replaced by `markers` and its scratch buffers' by Scratch markers of their own."""
    prog = list(b.program)
    calls, at, where = [], 0, {}
    while prog[at] != 0:
        n = prog[at + 1]
        for p in range(n):
            where[at + 2 + p] = (len(calls), p)
        calls.append(list(prog[at + 2:at + 2 + n]))
        at += 2 + n
    for i, positions in enumerate(b.where):
        for q in positions:
            j, p = where[q]
            calls[j][p] = markers[i]
    own = {address(buf): Scratch(buf.shape, buf.dtype) for buf in b.buffers}
    for args in calls:
        for p, x in enumerate(args):
            if isinstance(x, int) and x in own:
                args[p] = own[x]
    return list(zip(b.fns, calls))


def wrap(plan, serial, fresh):
    """`serial` (the plan's generated runner) with the joined binding in front: `fresh` is
    execution_plan's output-pool allocator."""
    whole = WholeRun(plan, plan._pooled_outputs())

    def run(*feeds):
        out = whole.run(feeds, fresh)
        if out is None:
            out = serial(*feeds)
            whole.learn()
        return out
    run.whole = whole
    return run
