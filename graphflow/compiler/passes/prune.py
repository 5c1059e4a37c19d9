"""prune: keep only what the fetches need (data inputs and control dependencies)."""
from __future__ import annotations

from ..program import Program


def needed_ids(program: Program) -> set[int]:
    """Ids of the nodes the outputs and targets depend on (iterative walk)."""
    keep: set[int] = set()
    stack = [r[0] for r in program.outputs] + list(program.targets)
    while stack:
        nid = stack.pop()
        if nid in keep:
            continue
        keep.add(nid)
        node = program.node(nid)
        stack.extend(r[0] for r in node.inputs)
        stack.extend(node.control)
    return keep


def prune(program: Program, report) -> Program:
    keep = needed_ids(program)
    kept, dropped = [], []
    for n in program.nodes:
        (kept if n.id in keep or n.op == "Feed" else dropped).append(n)
    report.record("prune", "pruned", [n.name for n in dropped if n.op != "Feed"])
    return program.with_nodes(kept)


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
    labels = [start_label[chain[0]]] if chain[0] in start_label else []
    labels += [program.node(c).name for c in chain[1:]] if labels else [program.node(c).name for c in chain]
    spec = program.node(found).specs[0]
    from ...graph import shape_str

    labels[-1] = (f"{program.node(found).name} (placeholder, needs a feed)")
    if len(chain) == 1:
        labels = [f"{program.node(found).name}:0 (placeholder, needs a feed)"]
    raise InvalidArgumentError(
        f"you must feed a value for placeholder '{program.node(found).name}:0' "
        f"(dtype {spec.dtype.name}, shape {shape_str(spec.shape)}): " + " <- ".join(labels),
        program.node(found).name)
