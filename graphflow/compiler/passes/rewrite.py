"""One topological sweep that builds the next Program: the machinery every rewriting pass shares.

A pass walks the old nodes in order. For each it calls `remap(node)` (inputs and control
deps renamed by the decisions taken so far), then decides: `keep` it (possibly changed),
`alias` its outputs to earlier values (the node disappears), or `emit` extra nodes before
keeping. `finish` renames the fetches, drops nodes nothing needs any more (reporting
them), and returns the old Program unchanged when the pass did nothing, so the pipeline's
fixed-point loop can stop by identity.

Removing a node that others wait on through a control dependency moves those waits to the
producers of its replacement values; passes only alias nodes without control deps of
their own, so no ordering constraint is lost.
"""
from __future__ import annotations

from ..program import FEED, Node, Program
from .prune import needed_ids


class Rewrite:
    """Builder of the Program that follows `program` (see the module docstring)."""

    def __init__(self, program: Program):
        self.program = program
        self.nodes: list[Node] = []
        self.index: dict[int, Node] = {}
        self.refs: dict = {}          # old ref -> new ref
        self.waits: dict = {}         # removed node id -> ids to wait on instead
        self.changed = False
        self._next_id = max((n.id for n in program.nodes), default=-1) + 1

    def new_id(self) -> int:
        nid = self._next_id
        self._next_id += 1
        return nid

    def remap(self, node: Node) -> Node:
        """`node` with inputs and control deps renamed by earlier aliases (the node itself
        when none applies: the common case, checked without building anything)."""
        refs, waits = self.refs, self.waits
        inputs = node.inputs
        if refs:
            for r in inputs:
                if r in refs:
                    inputs = tuple([refs.get(r, r) for r in inputs])
                    break
        control = node.control
        if control and waits and any(c in waits for c in control):
            seen: dict[int, None] = {}
            for c in control:
                for w in waits.get(c, (c,)):
                    seen[w] = None
            control = tuple(seen)
        if inputs is node.inputs and control == node.control:
            return node
        return node.with_(inputs=inputs, control=control)

    def node(self, node_id: int) -> Node:
        """A node of the program being built (already swept)."""
        return self.index[node_id]

    def spec(self, ref):
        return self.index[ref[0]].specs[ref[1]]

    def keep(self, node: Node, original: Node | None = None) -> None:
        """Append `node`; `original` is the old node it came from (to notice changes)."""
        if original is not None and node is not original:
            self.changed = True
        self.nodes.append(node)
        self.index[node.id] = node

    def emit(self, node: Node) -> None:
        """Append a new node (e.g. one more Const of a multi-output fold)."""
        self.changed = True
        self.nodes.append(node)
        self.index[node.id] = node

    def alias(self, node: Node, refs) -> None:
        """Drop `node`: its outputs become `refs` (values computed earlier in the sweep)."""
        self.changed = True
        nid = node.id
        if len(refs) == 1:   # (the usual case, spelled out: CSE aliases every duplicate constant)
            self.refs[(nid, 0)] = refs[0]
            self.waits[nid] = (refs[0][0],)
            return
        for i, r in enumerate(refs):
            self.refs[(nid, i)] = r
        self.waits[nid] = tuple(dict.fromkeys(r[0] for r in refs))

    def finish(self, report, pass_name: str) -> Program:
        """The new Program without dead nodes; the old one when nothing changed."""
        old = self.program
        outputs = tuple(self.refs.get(r, r) for r in old.outputs)
        targets = tuple(dict.fromkeys(w for t in old.targets for w in self.waits.get(t, (t,))))
        keep = needed_ids(self.index, outputs, targets)
        nodes = [n for n in self.nodes if n.id in keep or n.op == FEED]
        dead = [n.name for n in self.nodes if not (n.id in keep or n.op == FEED)]
        if not self.changed and not dead:
            return old
        report.record(pass_name, "pruned", dead, f"no longer needed after {pass_name}")
        return old.with_nodes(nodes, outputs, targets)
