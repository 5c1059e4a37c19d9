"""Buffer planning: liveness, alias analysis, buffer reuse, in-place writes, peak memory.

Works on a plain description of the plan (`StepInfo` over numbered values) so that the
same analysis sizes the fused plan and the unfused one for the report. Rules:

* a value written by a step that accepts an output buffer lives in a numbered *buffer*
  the plan owns; a buffer is reused once every value that may alias it is dead;
* a step's output takes over an input's buffer (in place) when that input dies at the
  step, is the buffer's own value (not a view of it), has the same static shape and
  dtype, and the step allows that pair;
* results of other kernels may be views of their inputs (reshape, identity, ...), so they
  keep their inputs' buffers alive;
* fetched values, and every buffer a fetched value may alias, are allocated fresh each
  run: the caller gets arrays no later run overwrites. Feeds, constants and variable
  values are never written.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class StepInfo(NamedTuple):
    """What the buffer planner needs to know about one step (a NamedTuple: one is made per
    step of every plan, and a frozen dataclass costs ~4x as much to construct)."""

    inputs: tuple            # value ids read
    outputs: tuple           # value ids written
    writes_out: bool         # the step writes into buffers the plan hands it
    inplace: tuple = ()      # (input position, output position) pairs that may share memory
    stateful: bool = False   # results may alias session state (variable values)


class MemoryPlan:
    """Where every value lives. `buffer_of[v]` is a buffer id, or None for values the
    kernels allocate themselves (and for fresh per-run outputs, `fresh[v]` True).

    buffer_of, fresh: per value; n_buffers; inplace_steps: steps writing over an input;
    end[v]: last step at which the value or a view of it is read (n_steps: fetched);
    external_alias[v]: v may alias a feed, constant or variable value; aliases[v]: values
    that may alias v (itself included); readers[v]: steps reading it; previous[v]: the value
    in its buffer before it, or None."""

    def __init__(self, buffer_of: list, fresh: list, n_buffers: int, inplace_steps: int, end: list,
                 external_alias: list, aliases: list, readers: list, previous: list):
        self.buffer_of = buffer_of
        self.fresh = fresh
        self.n_buffers = n_buffers
        self.inplace_steps = inplace_steps
        self.end = end
        self.external_alias = external_alias
        self.aliases = aliases
        self.readers = readers
        self.previous = previous

    def peak_bytes(self, specs, steps, external, dim: int = 1) -> int:
        """Bytes held at the busiest moment of a run: every plan buffer (they are kept
        between runs) plus the live per-run allocations; unknown dims count as `dim`."""
        size = [value_nbytes(s, dim) for s in specs]
        arena = [0] * self.n_buffers
        for v, b in enumerate(self.buffer_of):
            if b is not None:
                arena[b] = max(arena[b], size[v])
        n = len(steps)
        delta = [0] * (n + 2)
        for k, st in enumerate(steps):
            for v in st.outputs:
                if self.buffer_of[v] is None and not external[v]:
                    end = max(self.end[v], k)
                    delta[k] += size[v]
                    delta[end + 1] -= size[v]
        live = peak = 0
        for d in delta:
            live += d
            peak = max(peak, live)
        return sum(arena) + peak


def value_nbytes(spec, dim: int) -> int:
    shape, dtype = spec
    n = 1
    if shape is None:
        return np.dtype(dtype).itemsize
    for d in shape:
        n *= dim if d is None else d
    return n * np.dtype(dtype).itemsize


def plan_memory(steps: list[StepInfo], specs: list, external: list, fetched: list) -> MemoryPlan:
    """Assign buffers to the values of `steps` (in execution order).

    specs[v]: (static shape, dtype) of value v; external[v]: v is a feed, constant or
    other value the plan does not own; fetched: values returned to the caller.
    """
    nv, n = len(specs), len(steps)
    last_use = [-1] * nv
    readers: list = [[] for _ in range(nv)]
    producer = [None] * nv
    for k, st in enumerate(steps):
        for v in st.inputs:
            last_use[v] = k
            readers[v].append(k)
        for v in st.outputs:
            producer[v] = k
    for v in fetched:
        last_use[v] = n

    # alias analysis: which out-step values (buffers) each value may be a view of
    src: list = [frozenset()] * nv
    ext = list(external)
    for st in steps:
        if st.writes_out:
            for v in st.outputs:
                src[v] = frozenset((v,))
        else:
            s = frozenset().union(*(src[u] for u in st.inputs)) if st.inputs else frozenset()
            e = st.stateful or any(ext[u] for u in st.inputs)
            for v in st.outputs:
                src[v], ext[v] = s, e
    aliases: list = [[v] for v in range(nv)]
    for v in range(nv):
        for u in src[v]:
            if u != v:
                aliases[u].append(v)
    end = [max([last_use[w] for w in aliases[v]] + [producer[v] if producer[v] is not None else -1])
           for v in range(nv)]

    fresh = [False] * nv
    for v in fetched:
        for u in src[v]:
            fresh[u] = True

    buffer_of: list = [None] * nv
    previous: list = [None] * nv
    occupants: list = []
    occupant_end: list = []          # buffer id -> end step of its current occupant
    free: dict = {}                  # (shape, dtype) -> buffer ids free for reuse
    is_free: set = set()
    expires: dict = {}               # step -> buffers whose occupant dies there
    inplace_steps = 0

    for k, st in enumerate(steps):
        if not st.writes_out:
            continue
        for kk in [e for e in expires if e < k]:
            for b in expires.pop(kk):
                if occupant_end[b] == kk and b not in is_free:
                    is_free.add(b)
                    free.setdefault(specs[occupants[b][-1]], []).append(b)
        used = set()
        for j, v in enumerate(st.outputs):
            if fresh[v]:
                continue
            b = None
            for ip, op in st.inplace:
                if op != j or ip >= len(st.inputs):
                    continue
                u = st.inputs[ip]
                bu = buffer_of[u]
                if (bu is not None and bu not in used and occupant_end[bu] == k and occupants[bu][-1] == u
                        and specs[u] == specs[v] and _sole_alias(st.inputs, u, bu, src, buffer_of)):
                    b = bu
                    inplace_steps += 1
                    break
            if b is None:
                pool = free.get(specs[v])
                if pool:
                    b = pool.pop()
                    is_free.discard(b)
                else:
                    b = len(occupants)
                    occupants.append([])
                    occupant_end.append(-1)
            used.add(b)
            buffer_of[v] = b
            if occupants[b]:
                previous[v] = occupants[b][-1]
            occupants[b].append(v)
            occupant_end[b] = end[v]
            expires.setdefault(end[v], []).append(b)

    return MemoryPlan(buffer_of, fresh, len(occupants), inplace_steps, end, ext, aliases, readers,
                      previous)


def _sole_alias(inputs, u, b, src, buffer_of) -> bool:
    """No input other than `u` itself may be a view of buffer `b`."""
    return not any(w != u and any(buffer_of[x] == b for x in src[w]) for w in inputs)
