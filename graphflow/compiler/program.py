"""The compiler's own immutable program: nodes in topological order over value refs.

The user's Graph is never changed by compilation. `lower_graph` copies what a run needs
into a Program: each fed tensor becomes a `Feed` node (cutting off its upstream), ops built
inside `gf.cond` branches become sub-programs of their Cond node, and every other op
becomes one Node. Passes return new Programs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..ops.registry import OpDef, OpKind, TensorSpec, get_op_def, register

Ref = tuple  # (node id, output index)

FEED = "Feed"    # a fed value: the run supplies it, its upstream is cut off
CONST = "Const"  # a value known at compile time (attrs["value"])


@dataclass(frozen=True, eq=False, init=False)
class Node:
    """One op application in a Program. `inputs` are (node id, output index) refs."""

    id: int
    op: str
    inputs: tuple
    attrs: Mapping
    specs: tuple
    name: str
    control: tuple = ()
    source: str | None = None

    def __init__(self, id: int, op: str, inputs: tuple, attrs: Mapping, specs: tuple, name: str,
                 control: tuple = (), source: str | None = None):
        # fields stored directly: a frozen dataclass's own __init__ goes through
        # object.__setattr__ per field, and lowering makes a Node per graph op
        self.__dict__.update(id=id, op=op, inputs=inputs, attrs=attrs, specs=specs, name=name, control=control,
                             source=source)

    @property
    def op_def(self) -> OpDef:
        return get_op_def(self.op)

    def with_(self, **changes) -> "Node":
        """A copy with `changes` (field name -> value). Passes call this for every rewritten
        node; a frozen dataclass without __post_init__ is just its fields, so the copy is
        made by copying them (dataclasses.replace re-runs the frozen __init__, ~4x slower)."""
        if not changes.keys() <= _NODE_FIELDS:
            raise TypeError(f"Node has no field(s) {sorted(changes.keys() - _NODE_FIELDS)}")
        node = object.__new__(Node)
        fields = node.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return node


_NODE_FIELDS = frozenset(Node.__dataclass_fields__)


@dataclass(frozen=True, eq=False)
class Program:
    """Nodes in topological order; `outputs` are the fetched refs, `targets` the node ids
    run only for their effects, `feeds` the Feed node ids in feed order."""

    nodes: tuple
    outputs: tuple
    targets: tuple = ()
    feeds: tuple = ()
    _index: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {n.id: n for n in self.nodes})

    def node(self, node_id: int) -> Node:
        return self._index[node_id]

    def has(self, node_id: int) -> bool:
        return node_id in self._index

    def spec(self, ref: Ref) -> TensorSpec:
        return self._index[ref[0]].specs[ref[1]]

    def consumers(self) -> dict[int, list[Node]]:
        """node id -> the nodes that read one of its outputs."""
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for r in n.inputs:
                out.setdefault(r[0], []).append(n)
        return out

    def with_nodes(self, nodes: Iterable[Node], outputs=None, targets=None, feeds=None) -> "Program":
        return Program(tuple(nodes), self.outputs if outputs is None else tuple(outputs),
                       self.targets if targets is None else tuple(targets),
                       self.feeds if feeds is None else tuple(feeds))

    def __len__(self) -> int:
        return len(self.nodes)

    def dump(self) -> str:
        """One line per node, for GRAPHFLOW_DEBUG and failing tests."""
        lines = []
        for n in self.nodes:
            ins = ", ".join(f"%{r[0]}:{r[1]}" for r in n.inputs)
            ctl = f" ^{','.join(str(c) for c in n.control)}" if n.control else ""
            outs = ", ".join(f"{s.dtype.name}{list(s.shape) if s.shape is not None else '[?]'}" for s in n.specs)
            lines.append(f"%{n.id} = {n.op}({ins}){ctl} -> {outs}  # {n.name}")
        lines.append("outputs: " + ", ".join(f"%{r[0]}:{r[1]}" for r in self.outputs)
                     + ("; targets: " + ", ".join(f"%{t}" for t in self.targets) if self.targets else ""))
        return "\n".join(lines)



def const_value(node: Node):
    """The array a Const node holds, or None for any other node."""
    return node.attrs["value"] if node.op == CONST else None


def make_const(node_id: int, name: str, value, control=(), source=None) -> Node:
    """A Const node holding `value` (made read-only: plans hand it out without copying)."""
    import numpy as np

    value = np.asarray(value)
    value.setflags(write=False)
    return Node(node_id, CONST, (), {"value": value}, (TensorSpec(value.shape, value.dtype),), name,
                tuple(control), source)


register(OpDef(type=FEED, default_name="Feed", kind=OpKind.SOURCE, kernel=None,
               infer=lambda specs, attrs: attrs["spec"]))


class _Lowering:
    """Copies graph ops into Nodes, numbering them as it goes."""

    def __init__(self):
        self.ids = itertools.count()

    def program(self, ops, feeds, outputs, targets=()) -> Program:
        """`feeds`: tensors that become Feed nodes; `outputs`: tensors to fetch;
        `targets`: operations run for their effects."""
        nodes: list[Node] = []
        ref_of: dict = {}
        node_of_op: dict = {}
        feed_ids = []
        for i, t in enumerate(feeds):
            if t in ref_of:
                raise ValueError(f"tensor '{t.name}' is fed twice")
            nid = next(self.ids)
            nodes.append(Node(nid, FEED, (), {"index": i, "spec": TensorSpec(t.shape, t.dtype)},
                              (TensorSpec(t.shape, t.dtype),), t.name))
            ref_of[t] = (nid, 0)
            feed_ids.append(nid)
        branching: dict = {}   # op type -> whether its ops carry gf.cond branches
        for op in ops:
            try:
                inputs = tuple([ref_of[t] for t in op.inputs])
            except KeyError:
                t = next(t for t in op.inputs if t not in ref_of)
                raise ValueError(f"'{op.name}' uses '{t.name}', which was built inside a gf.cond "
                                 "branch; use the cond's outputs outside the branch instead") from None
            nid = next(self.ids)
            attrs = op.attrs
            has_branches = branching.get(op.type)
            if has_branches is None:
                has_branches = branching[op.type] = bool(op.op_def.extra.get("has_branches"))
            if has_branches:
                attrs = dict(attrs, branches=tuple(self.branch(b) for b in attrs["graph_branches"]))
            control = tuple([node_of_op[c] for c in op.control_inputs if c in node_of_op]) if op.control_inputs else ()
            results = op.outputs
            nodes.append(Node(nid, op.type, inputs, attrs, tuple([TensorSpec(t.shape, t.dtype) for t in results]),
                              op.name, control, op.source))
            node_of_op[op] = nid
            for t in results:
                if t not in ref_of:
                    ref_of[t] = (nid, t.value_index)
        outs = []
        for t in outputs:
            if t not in ref_of:
                raise RuntimeError(f"internal: fetch '{t.name}' was not lowered")
            outs.append(ref_of[t])
        tgts = tuple(node_of_op[o] for o in targets)
        return Program(tuple(nodes), tuple(outs), tgts, tuple(feed_ids))

    def branch(self, branch) -> Program:
        from ..ops.cond import branch_closure

        ops, captures, _ = branch_closure(branch.outputs, branch.parent)
        return self.program(ops, captures, branch.outputs)


def lower_graph(graph, outputs, targets, feeds) -> Program:
    """The Program for fetching `outputs` (tensors) and running `targets` (operations)
    with `feeds` (tensors) fed. Includes every op of the graph; `prune` removes the rest."""
    ops = [op for op in list(graph._ops) if op.cond_context is None]
    return _Lowering().program(ops, feeds, outputs, targets)
