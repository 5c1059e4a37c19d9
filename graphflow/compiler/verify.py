"""The invariant checker the pipeline runs after each pass when GRAPHFLOW_VERIFY=1.

A Program is valid when: node ids are unique; every data input and control dependency
names an earlier node (so the node order is topological, the graph acyclic and nothing
dangles) and an output that node has; every node's stored specs still agree with what its
OpDef.infer derives from its inputs' specs (same dtype, compatible shapes); the outputs,
targets and feeds name existing nodes. A violation is a compiler bug: InternalError naming
the pass that broke it.
"""
from __future__ import annotations

from ..errors import InternalError
from ..ops.registry import TensorSpec
from .program import FEED, Program


def _compatible(a, b) -> bool:
    """Static shapes that could describe the same run-time shape."""
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def verify(program: Program, pass_name: str = "?") -> None:
    """Raise InternalError if `program` breaks an invariant (see the module docstring)."""
    def fail(node, msg):
        who = f"'{node.name}' ({node.op}, %{node.id})" if node is not None else "program"
        raise InternalError(f"after pass '{pass_name}': {who}: {msg}",
                            None if node is None else node.name)

    placed: dict = {}
    for n in program.nodes:
        if n.id in placed:
            fail(n, "duplicate node id")
        for r in n.inputs:
            src = placed.get(r[0])
            if src is None:
                fail(n, f"input %{r[0]}:{r[1]} is not an earlier node (dangling or cyclic)")
            if not 0 <= r[1] < len(src.specs):
                fail(n, f"input %{r[0]}:{r[1]} names output {r[1]} of a node with {len(src.specs)} outputs")
        for c in n.control:
            if c not in placed:
                fail(n, f"control dependency %{c} is not an earlier node (dangling or cyclic)")
        specs = [placed[r[0]].specs[r[1]] for r in n.inputs]
        try:
            inferred = n.op_def.infer(specs, n.attrs)
        except (ValueError, TypeError) as exc:
            fail(n, f"shape/dtype inference fails on its inputs {specs}: {exc}")
        inferred = (inferred,) if isinstance(inferred, TensorSpec) else tuple(inferred)
        if len(inferred) != len(n.specs):
            fail(n, f"expected {len(inferred)} outputs, has {len(n.specs)}")
        for i, (want, have) in enumerate(zip(inferred, n.specs)):
            if want.dtype != have.dtype or not _compatible(want.shape, have.shape):
                fail(n, f"output {i} is stored as {have.dtype.name} {have.shape}, but its inputs give "
                        f"{want.dtype.name} {want.shape}")
        placed[n.id] = n
    for r in program.outputs:
        if r[0] not in placed or not 0 <= r[1] < len(placed[r[0]].specs):
            fail(None, f"fetched value %{r[0]}:{r[1]} does not exist")
    for t in program.targets:
        if t not in placed:
            fail(None, f"target %{t} does not exist")
    for f in program.feeds:
        if f not in placed or placed[f].op != FEED:
            fail(None, f"feed %{f} is not a Feed node")
