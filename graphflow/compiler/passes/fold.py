"""fold_constants: evaluate, at compile time, nodes whose inputs are all known.

The values come from the ops' own reference kernels (`OpDef.kernel`), so a folded program
computes exactly what the unfolded one would. Never folded: ops without a kernel
(Placeholder, Feed), random and stateful ops, ops that produce nothing, and anything whose
result would exceed the size cap (so `ones((20000, 20000))` stays a Fill instead of a
1.6 GB constant; the report says when the cap fired). A kernel that raises is left for
the run to raise, as opt_level 0 would.

Inputs an op reads only for their shape (`OpDef.extra["shape_only_inputs"]`, e.g.
`zeros_like(x)`) need only a fully known static shape. If such an input has side effects
upstream (a variable read, a control dependency), the folded constant waits on it, so
folding never drops a side effect the fetches depend on.
"""
from __future__ import annotations

import os

import numpy as np

from ...errors import GraphflowError
from ...ops.registry import TensorSpec
from ..program import CONST, Node, Program, const_value, make_const
from .rewrite import Rewrite

DEFAULT_LIMIT_BYTES = 1 << 22
# what a reference kernel raises on bad values (the runtime turns these into InvalidArgumentError)
_KERNEL_ERRORS = (ArithmeticError, ValueError, IndexError, KeyError, TypeError, GraphflowError)


def fold_limit_bytes() -> int:
    """The size cap on one folded result (bytes; env GRAPHFLOW_FOLD_LIMIT_BYTES)."""
    return int(os.environ.get("GRAPHFLOW_FOLD_LIMIT_BYTES", DEFAULT_LIMIT_BYTES))


def static_nbytes(specs) -> int | None:
    """Bytes of values of these specs, or None when a shape is not fully known."""
    total = 0
    for s in specs:
        if s.shape is None or any(d is None for d in s.shape):
            return None
        total += int(np.prod(s.shape, dtype=np.int64)) * s.dtype.itemsize
    return total


def _op_facts(d) -> tuple:
    """(stateful, foldable op type, shape-only input positions) of an OpDef: looked up once
    per op type and pass, not per node."""
    foldable = d.kernel is not None and not d.stateful and not d.random and not d.extra.get("accepts_out")
    return d.stateful, foldable, d.extra.get("shape_only_inputs", ())


def _shape_stand_in(spec: TensorSpec):
    """An array of `spec`'s (fully known) shape and dtype that costs no memory."""
    if spec.shape is None or any(d is None for d in spec.shape):
        return None
    return np.broadcast_to(np.zeros((), spec.dtype), spec.shape)


class _Folder:
    def __init__(self, program: Program, report):
        self.rw = Rewrite(program)
        self.report = report
        self.limit = fold_limit_bytes()
        self.effects: dict[int, bool] = {}   # node id -> it or something upstream has side effects
        self.folded: list[str] = []

    def run(self) -> Program:
        rw = self.rw
        effects, index = self.effects, rw.index
        facts: dict = {}
        for old in rw.program.nodes:
            node = rw.remap(old)
            f = facts.get(node.op)
            if f is None:
                f = facts[node.op] = _op_facts(node.op_def)
            stateful, foldable, shape_only = f
            effect = stateful or bool(node.control)
            if not effect:
                for r in node.inputs:
                    if effects[r[0]]:
                        effect = True
                        break
            effects[node.id] = effect
            # foldable: an op of a foldable type whose inputs are all Const (or read for shape only)
            if foldable and node.specs and node.op != CONST and all(
                    i in shape_only or index[r[0]].op == CONST for i, r in enumerate(node.inputs)):
                consts = self.fold(node)
                if consts is not None:
                    rw.keep(consts[0], old)
                    for c in consts[1:]:
                        rw.emit(c)
                    for c in consts:
                        self.effects[c.id] = bool(c.control)
                    if len(consts) > 1:
                        rw.alias(node, [(c.id, 0) for c in consts])
                    self.folded.append(node.name)
                    continue
            rw.keep(node, old)
        self.report.record("fold_constants", "folded", self.folded)
        return rw.finish(self.report, "fold_constants")

    def fold(self, node: Node) -> list[Node] | None:
        """The Const nodes replacing `node`, or None when it must stay."""
        rw = self.rw
        shape_only = node.op_def.extra.get("shape_only_inputs", ())
        args, specs, control = [], [], dict.fromkeys(node.control)
        for i, r in enumerate(node.inputs):
            producer = rw.node(r[0])
            value = const_value(producer)
            if value is not None:
                control.update(dict.fromkeys(producer.control))
            elif i in shape_only:
                value = _shape_stand_in(rw.spec(r))
                if value is None:
                    return None
                if self.effects[producer.id]:
                    control[producer.id] = None
            else:
                return None
            args.append(value)
            specs.append(TensorSpec(np.shape(value), value.dtype))
        try:
            out_specs = node.op_def.infer(specs, node.attrs)
        except (ValueError, TypeError):
            return None
        out_specs = (out_specs,) if isinstance(out_specs, TensorSpec) else tuple(out_specs)
        nbytes = static_nbytes(out_specs)
        if nbytes is None:
            self.report.record("fold_constants", "not folded", [node.name], "output size unknown at compile time")
            return None
        if nbytes > self.limit:
            self.report.record("fold_constants", "not folded", [node.name],
                               f"size cap: result would be {nbytes} bytes, cap {self.limit} "
                               "(GRAPHFLOW_FOLD_LIMIT_BYTES)")
            return None
        try:
            with np.errstate(all="ignore"):
                result = node.op_def.kernel(*args, **node.attrs)
        except _KERNEL_ERRORS as exc:  # the run raises it, as opt_level 0 would
            self.report.record("fold_constants", "not folded", [node.name], f"kernel raised {type(exc).__name__}")
            return None
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(values) != len(node.specs):
            return None
        values = [np.asarray(v) for v in values]
        for v, s in zip(values, out_specs):
            if v.dtype != s.dtype or v.shape != tuple(s.shape):
                self.report.record("fold_constants", "not folded", [node.name],
                                   f"kernel returned {v.dtype.name}{list(v.shape)}, declared "
                                   f"{s.dtype.name}{list(s.shape)}")
                return None
        control = tuple(control)
        first = make_const(node.id, node.name, values[0], control, node.source)
        rest = [make_const(rw.new_id(), f"{node.name}:{i}", v, control, node.source)
                for i, v in enumerate(values[1:], 1)]
        return [first] + rest


def fold_constants(program: Program, report) -> Program:
    return _Folder(program, report).run()
