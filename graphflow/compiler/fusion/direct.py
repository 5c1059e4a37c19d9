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

Operands are held weakly (a dead or replaced array never matches, so a stale pointer is
never used) and a binding is never changed once made: a run that sees other operands
makes a new one and publishes it with one assignment, so concurrent runs stay correct
(each binding has its own scratch buffers). Arrays whose shape is reassigned in place keep
their identity: the shapes are compared too. (Numpy's in-place `strides` assignment is
deprecated and not followed.)
"""
from __future__ import annotations

import weakref
from operator import attrgetter, call, is_

import numpy as np

from ...runtime.pointers import address

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


class DirectCall:
    """Compiled calls for operands (inputs then outputs) of fixed shapes, strides and dtypes,
    bound to the data pointers of particular arrays."""

    __slots__ = ("refs", "shapes", "specs", "fns", "args", "where", "scratch", "buffers", "budget", "keep")

    @classmethod
    def bind(cls, ops: list, calls: list, budget, keep) -> "DirectCall":
        """A binding to the ndarrays `ops` of `calls`: (function, argument template) pairs whose
        templates hold plain values, `Operand` and `Scratch` markers; `keep`: objects whose
        memory the arguments point into (the layout's dims and strides)."""
        self = cls()
        self.specs = tuple((a.strides, a.dtype) for a in ops)
        self.budget, self.keep = budget, keep
        where: list = [[] for _ in ops]
        scratch: dict = {}   # Scratch -> its positions (one buffer however many calls use it)
        self.fns, args = tuple(f for f, _ in calls), [list(t) for _, t in calls]
        for j, template in enumerate(args):
            for p, x in enumerate(template):
                if isinstance(x, Operand):
                    where[x.index].append((j, p))
                elif isinstance(x, Scratch):
                    scratch.setdefault(x, []).append((j, p))
        self.where, self.scratch = tuple(map(tuple, where)), tuple((s, tuple(at)) for s, at in scratch.items())
        self._fill(ops, range(len(ops)), args, [None] * len(ops))
        return self

    def _fill(self, ops, changed, args, refs) -> None:
        """Set the pointers of the `changed` operands and fresh scratch buffers in `args`."""
        for i in changed:
            a = ops[i]
            refs[i] = weakref.ref(a)
            ptr = address(a)
            for j, p in self.where[i]:
                args[j][p] = ptr
        self.buffers = tuple(np.empty(s.shape, s.dtype) for s, _ in self.scratch)
        for buf, (_, at) in zip(self.buffers, self.scratch):
            ptr = address(buf)
            for j, p in at:
                args[j][p] = ptr
        self.refs = tuple(refs)
        self.shapes = tuple(map(_SHAPE, ops))
        self.args = tuple(map(tuple, args))

    def matches(self, ops, budget) -> bool:
        """Whether these are the very arrays (and shapes) the calls were made for."""
        return (budget is self.budget and all(map(is_, map(call, self.refs), ops))
                and tuple(map(_SHAPE, ops)) == self.shapes)

    def rebind(self, ops, budget) -> "DirectCall | None":
        """A binding to `ops` made from this one (pointer lookups for the arrays that changed
        only), or None when their shapes, strides or dtypes differ."""
        if budget is not self.budget or len(ops) != len(self.refs):
            return None
        changed = []
        for i, (r, a, s, spec) in enumerate(zip(self.refs, ops, self.shapes, self.specs)):
            if r() is not a:
                if a.__class__ is not np.ndarray or a.shape != s or (a.strides, a.dtype) != spec:
                    return None
                changed.append(i)
            elif a.shape != s:
                return None
        new = DirectCall()
        new.specs, new.fns, new.where, new.scratch = self.specs, self.fns, self.where, self.scratch
        new.budget, new.keep = budget, self.keep
        new._fill(ops, changed, [list(a) for a in self.args], list(self.refs))
        return new

    def __call__(self) -> None:
        for f, args in zip(self.fns, self.args):
            f(*args)
