"""prune: keep only what the fetches need (data inputs and control dependencies).

Fed tensors are Feed nodes (lowering cut their upstream off), so feeds prune what only
they needed. Control dependencies are followed like data edges: a side effect that a
fetch waits on is never dropped. Also here: the missing-feed check, which runs on the
pruned program before any optimization, so every opt_level reports the same chain.
"""
from __future__ import annotations

from ..program import FEED, Program


def needed_ids(index: dict, outputs, targets) -> set[int]:
    """Ids of the nodes (of `index`: id -> Node) that `outputs` and `targets` depend on."""
    keep: set[int] = set()
    stack = [r[0] for r in outputs] + list(targets)
    push, add = stack.append, keep.add
    while stack:
        nid = stack.pop()
        if nid in keep:
            continue
        add(nid)
        node = index[nid]
        for r in node.inputs:
            if r[0] not in keep:
                push(r[0])
        if node.control:
            stack.extend(node.control)
    return keep


def prune(program: Program, report) -> Program:
    """Drop what neither the fetches nor the targets need; raise for a needed unfed placeholder."""
    keep = needed_ids(program._index, program.outputs, program.targets)
    kept, dropped = [], []
    for n in program.nodes:
        (kept if n.id in keep or n.op == FEED else dropped).append(n)
    out = program
    if dropped:
        fed_names = {n.name for n in program.nodes if n.op == FEED}
        fed = {n.name for n in dropped if any(f"{n.name}:{i}" in fed_names for i in range(len(n.specs)))}
        report.record("prune", "pruned", [n.name for n in dropped if n.name in fed], "fed")
        report.record("prune", "pruned", [n.name for n in dropped if n.name not in fed], "not needed by the fetches")
        out = program.with_nodes(kept)
    check_feeds(out)
    return out


def check_feeds(program: Program) -> None:
    """Raise InvalidArgumentError for the first unfed placeholder the fetches need,
    showing the chain from the fetch to it, e.g. `loss:0 <- Mean <- sub <- x (placeholder, needs a feed)`."""
    placeholders = [n for n in program.nodes if n.op == "Placeholder"]
    if not placeholders:
        return
    from ...errors import InvalidArgumentError

    parent: dict[int, int | None] = {}
    start_label: dict[int, str] = {}
    queue = []
    for r in program.outputs:
        if r[0] not in parent:
            parent[r[0]] = None
            start_label[r[0]] = f"{program.node(r[0]).name}:{r[1]}"
            queue.append(r[0])
    for t in program.targets:
        if t not in parent:
            parent[t] = None
            start_label[t] = program.node(t).name
            queue.append(t)
    i = 0
    found = None
    while i < len(queue):
        nid = queue[i]
        i += 1
        node = program.node(nid)
        if node.op == "Placeholder":
            found = nid
            break
        for src in [r[0] for r in node.inputs] + list(node.control):
            if src not in parent:
                parent[src] = nid
                queue.append(src)
    if found is None:
        return
    chain = []
    nid = found
    while nid is not None:
        chain.append(nid)
        nid = parent[nid]
    chain.reverse()
    labels = [start_label[chain[0]]] + [program.node(c).name for c in chain[1:]]
    name = program.node(found).name
    spec = program.node(found).specs[0]
    from ...graph import shape_str

    labels[-1] = f"{name}:0 (placeholder, needs a feed)" if len(chain) == 1 else f"{name} (placeholder, needs a feed)"
    raise InvalidArgumentError(
        f"you must feed a value for placeholder '{name}:0' "
        f"(dtype {spec.dtype.name}, shape {shape_str(spec.shape)}): " + " <- ".join(labels), name)
