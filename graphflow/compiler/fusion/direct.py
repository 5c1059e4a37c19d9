"""A fused kernel's compiled calls bound to its operands' data pointers, reused while the
operands stay the same arrays.

Why: at batch 1 a kernel's compiled work is ~2-20 us, and redoing the per-call Python of
`FusedKernel.run` (shape keys, layout and route lookups, a data pointer per operand, the
argument lists) cost about as much again. A plan passes the same arrays call after call
(its arena buffers; a variable's value until it is assigned), so the calls' argument
tuples are made once and kept; an operand that is a different array (a new feed, a
re-assigned variable, a fresh output) costs one pointer lookup and a patch of the
arguments it appears in, and only when its shape, strides and dtype are those the calls
were made for.

The calls run as one compiled call of a program listing them (codegen/chain.py) when every
one is compiled code, else one after another from Python (a product split over threads).

Operands are held weakly (a dead or replaced array never matches, so a stale pointer is
never used) and a binding is never changed once made: a run that sees other operands
makes a new one and publishes it with one assignment, so concurrent runs stay correct
(scratch buffers, shared along a chain of bindings, are used under a lock). Arrays whose
shape is reassigned in place keep their identity: the shapes are compared too. (Numpy's
in-place `strides` assignment is deprecated and not followed.)
"""
from __future__ import annotations

import ctypes
import functools
import threading
import weakref
from operator import attrgetter

import numpy as np

from ...runtime.pointers import address
from ...errors import InternalError
from ..codegen import chain
from ..codegen.pool import PARALLEL

_SHAPE = attrgetter("shape")


class Operand:
    """In a call's argument template: the data pointer of operand `index`."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class Scratch:
    """In a call's argument template: the data pointer of a buffer of the binding's own."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple, dtype):
        self.shape, self.dtype = shape, np.dtype(dtype)


@functools.lru_cache(maxsize=None)
def matcher(n: int):
    """match(ops, refs, shapes) for n operands, unrolled (twice as fast as a loop over zips)."""
    a, r, s = (", ".join(f"{c}{i}" for i in range(n)) + ("," if n == 1 else "") for c in "ars")
    test = " and ".join(f"r{i}() is a{i} and a{i}.shape == s{i}" for i in range(n)) or "True"
    ns: dict = {}
    exec(f"def match(ops, refs, shapes):\n    {a} = ops\n    {r} = refs\n    {s} = shapes\n"   # noqa: S102
         f"    return {test}\n", ns)
    return ns["match"]


class DirectCall:
    """Compiled calls for operands (inputs then outputs) of fixed shapes, strides and dtypes,
    bound to the data pointers of particular arrays."""

    # a run uses a binding when `budget is b.budget and b.match(ops, b.refs, b.shapes)`: the
    # very arrays (and shapes) the calls were made for

    __slots__ = ("refs", "shapes", "specs", "fns", "args", "where", "buffers", "lock", "match", "budget", "keep",
                 "program", "run", "parallel")

    @classmethod
    def bind(cls, ops: list, calls: list, budget, keep) -> "DirectCall":
        """A binding to the ndarrays `ops` of `calls`: (function, argument template) pairs whose
        templates hold plain values, `Operand` and `Scratch` markers; `keep`: objects whose
        memory the arguments point into (the layout's dims and strides)."""
        self = cls()
        self.specs = tuple((a.strides, a.dtype) for a in ops)
        self.budget, self.keep, self.match = budget, keep, matcher(len(ops))
        where: list = [[] for _ in ops]
        scratch: dict = {}   # Scratch -> its positions (one buffer however many calls use it)
        self.fns, args = tuple(f for f, _ in calls), [list(t) for _, t in calls]
        for j, template in enumerate(args):
            for p, x in enumerate(template):
                if isinstance(x, Operand):
                    where[x.index].append((j, p))
                elif isinstance(x, Scratch):
                    scratch.setdefault(x, []).append((j, p))
        self.where = tuple(map(tuple, where))
        # scratch buffers are shared by the bindings made from this one (rebinding allocates
        # nothing): the lock keeps concurrent runs from computing into them at once
        self.buffers = tuple(np.empty(x.shape, x.dtype) for x in scratch)
        self.lock = threading.Lock() if scratch else None
        for buf, at in zip(self.buffers, scratch.values()):
            ptr = address(buf)
            for j, p in at:
                args[j][p] = ptr
        refs, self.program = [None] * len(ops), None
        self._patch(ops, range(len(ops)), args, refs)
        self.args = tuple(map(tuple, args))
        self.refs, self.shapes = tuple(refs), tuple(map(_SHAPE, ops))
        entries = tuple(map(chain.address_of, self.fns))
        self.program = None if None in entries else chain.program(zip(entries, self.args))
        # entries split over the budget's threads (pool.PARALLEL): run through budget.run_compiled
        self.parallel = PARALLEL in entries
        if self.parallel and self.program is None:
            raise InternalError("a split product's chain entry needs every call of its binding compiled")
        if self.program is not None:   # one compiled call runs them all
            starts = [2]
            for a in self.args[:-1]:
                starts.append(starts[-1] + len(a) + 2)
            self.where = tuple(tuple(starts[j] + p for j, p in at) for at in self.where)
        self._ready()
        return self

    def _patch(self, ops, changed, seq, refs) -> None:
        """Set the pointers of the `changed` operands in `seq` (argument lists, or the program)."""
        flat = self.program is not None
        for i in changed:
            a = ops[i]
            refs[i] = weakref.ref(a)
            ptr = address(a)
            for at in self.where[i]:
                if flat:
                    seq[at] = ptr
                else:
                    seq[at[0]][at[1]] = ptr

    def _ready(self) -> None:
        self.run = self._each if self.program is None else \
            functools.partial(chain.function(), ctypes.addressof(self.program))

    def _each(self) -> None:
        for f, args in zip(self.fns, self.args):
            f(*args)

    def rebind(self, ops, budget) -> "DirectCall | None":
        """A binding to `ops` made from this one (pointer lookups for the arrays that changed
        only), or None when their shapes, strides or dtypes differ."""
        if budget is not self.budget or len(ops) != len(self.refs):
            return None
        changed = []
        shapes, specs = self.shapes, self.specs
        for i, r in enumerate(self.refs):
            a = ops[i]
            if r() is not a:
                if a.__class__ is not np.ndarray or a.shape != shapes[i] or (a.strides, a.dtype) != specs[i]:
                    return None
                changed.append(i)
            elif a.shape != shapes[i]:
                return None
        new = DirectCall()
        for name in ("specs", "fns", "where", "buffers", "lock", "match", "keep", "shapes", "parallel"):
            setattr(new, name, getattr(self, name))
        new.budget, refs = budget, list(self.refs)
        if self.program is None:
            new.program, args = None, [list(a) for a in self.args]
            new._patch(ops, changed, args, refs)
            new.args = tuple(map(tuple, args))
        else:
            new.program = type(self.program).from_buffer_copy(self.program)
            new._patch(ops, changed, new.program, refs)
        new.refs = tuple(refs)
        new._ready()
        return new

    def __call__(self) -> None:
        if self.parallel:
            self.budget.run_compiled(self._locked)
        else:
            self._locked()

    def _locked(self) -> None:
        if self.lock is None:
            self.run()
        else:
            with self.lock:
                self.run()
