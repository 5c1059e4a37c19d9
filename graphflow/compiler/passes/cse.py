"""cse: merge nodes that compute the same thing, found by a structural hash.

Two nodes are the same when they have the same op, the same attributes, the same
(already merged) inputs and the same control dependencies. One sweep in topological order
suffices: inputs are canonical before their consumers are hashed. Random and stateful ops
(each call draws or touches state), ops without a kernel (each Placeholder and Feed is its
own value) and ops producing nothing are never merged.

Attribute keys are exact: floats by their bits (0.0 and -0.0 differ, NaN equals itself),
arrays by dtype, shape and bytes, Python types kept apart (True is not 1).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..program import Program
from .rewrite import Rewrite


_INLINE_BYTES = 64


class _ArrayKey:
    """Hashable stand-in for an array: equal exactly when dtype, shape and bytes are."""

    __slots__ = ("array", "digest")

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array)
        self.digest = (array.dtype.str, array.shape, hashlib.blake2b(self.array.view(np.uint8).data
                                                                     if self.array.size else b"",
                                                                     digest_size=16).digest())

    def __hash__(self):
        return hash(self.digest)

    def __eq__(self, other):
        return (isinstance(other, _ArrayKey) and self.digest == other.digest
                and self.array.tobytes() == other.array.tobytes())


def attr_key(value):
    """A hashable key that is equal for two attribute values exactly when they are the same."""
    if isinstance(value, np.ndarray):
        if value.nbytes <= _INLINE_BYTES:   # small (scalar constants): a plain tuple holding the bytes
            return ("ndarray", value.dtype.str, value.shape, value.tobytes())
        return ("ndarray", _ArrayKey(value))
    if isinstance(value, (float, np.floating)):
        return (type(value).__name__, np.asarray(value).tobytes())
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(attr_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, attr_key(v)) for k, v in value.items())))
    if isinstance(value, (bool, int, str, bytes, type(None), np.integer, np.bool_, np.dtype)):
        return (type(value).__name__, value)
    return ("object", id(value))  # anything else (kernels, sub-programs): only itself


def _attrs_key(attrs) -> tuple:
    """attr_key of a node's attribute mapping (most have one entry, e.g. a Const's value)."""
    if len(attrs) == 1:
        ((k, v),) = attrs.items()
        return ((k, attr_key(v)),)
    return tuple(sorted((k, attr_key(v)) for k, v in attrs.items()))


def _mergeable_op(d) -> bool:
    return d.kernel is not None and not d.stateful and not d.random


def cse(program: Program, report) -> Program:
    rw = Rewrite(program)
    seen: dict = {}
    merged: list[str] = []
    mergeable: dict = {}   # op type -> whether its nodes may merge (decided once per type)
    for old in program.nodes:
        node = rw.remap(old)
        ok = mergeable.get(node.op)
        if ok is None:
            ok = mergeable[node.op] = _mergeable_op(node.op_def)
        if ok and node.specs:
            attrs = _attrs_key(node.attrs) if node.attrs else ()
            key = (node.op, attrs, node.inputs, tuple(sorted(node.control)) if node.control else ())
            first = seen.get(key)
            if first is not None:
                rw.alias(node, [(first.id, i) for i in range(len(node.specs))])
                merged.append(f"{node.name} -> {first.name}")
                continue
            seen[key] = node
        rw.keep(node, old)
    report.record("cse", "merged", merged)
    return rw.finish(report, "cse")
