"""Turn an optimized Program into boxes, clusters and edges for `report.html`.

Each program node is a box, except a fused kernel (a node named like one of the report's
kernels), which becomes a cluster holding one box per member op of the user's graph.
Edges between program nodes are attached to the member that produces or consumes the
tensor, found through the original graph, so the drawing shows real data flow inside and
across kernels.
"""
from __future__ import annotations

from ..graph import Graph, shape_str as shape_text
from .graph_layout import MAX_MEMBERS_DRAWN, Box, Cluster, Drawing, lay_out

_ROLE_OF_TYPE = {"Feed": "feed", "Placeholder": "feed", "Const": "const", "VariableV2": "variable"}


def program_drawing(program, graph: Graph, kernels: list, fetch_names: list) -> Drawing:
    """Boxes and clusters of `program`, laid out; `kernels` are the report's kernel dicts."""
    kernel_of = {k["name"]: k for k in kernels}
    boxes: dict = {}
    clusters: dict = {}
    items: list = []
    edges: list = []
    inner_edges: list = []
    box_of_output: dict = {}  # (node id, output index) -> Box id producing it
    box_of_node: dict = {}  # node id -> the Box standing for it in control edges
    control_edges: list = []
    for node in program.nodes:
        kernel = kernel_of.get(node.name)
        if kernel is None:
            bid = f"n{node.id}"
            boxes[bid] = Box(bid, node.name, node.op, _ROLE_OF_TYPE.get(node.op, "op"), _tooltip(node))
            items.append(bid)
            for i in range(len(node.specs)):
                box_of_output[(node.id, i)] = bid
            targets = {r: [bid] for r in node.inputs}
            box_of_node[node.id] = bid
        else:
            cluster, member_ids, member_edges = _kernel_cluster(node, kernel, graph, boxes)
            clusters[cluster.id] = cluster
            items.append(cluster.id)
            inner_edges += member_edges
            for i, tensor in enumerate(kernel.get("outputs", ())):
                box_of_output[(node.id, i)] = member_ids.get(tensor.rpartition(":")[0], cluster.members[-1])
            targets = {r: _consumers_in(kernel, graph, _tensor_name(program, r), member_ids, cluster)
                       for r in node.inputs}
            box_of_node[node.id] = cluster.members[-1]
        control_edges += [(box_of_node[c], box_of_node[node.id]) for c in node.control if c in box_of_node]
        for ref, target_ids in targets.items():
            source = box_of_output.get(tuple(ref))
            if source is not None:
                edges += [(source, t) for t in target_ids]
    for i, ref in enumerate(program.outputs):
        source = box_of_output.get(tuple(ref))
        name = fetch_names[i] if i < len(fetch_names) else f"output {i}"
        bid = f"fetch{i}"
        boxes[bid] = Box(bid, name, "fetch", "fetch", f"fetched tensor {name}", w=140, h=30)
        items.append(bid)
        if source is not None:
            edges.append((source, bid))
    return lay_out(items, edges, boxes, clusters, inner_edges, control_edges)


def _kernel_cluster(node, kernel: dict, graph: Graph, boxes: dict):
    """The cluster of one fused kernel, its member boxes, and the edges between members."""
    members = list(kernel.get("members", ()))
    shown = members
    if len(members) > MAX_MEMBERS_DRAWN:
        head = MAX_MEMBERS_DRAWN * 2 // 3
        tail = MAX_MEMBERS_DRAWN - head
        shown = members[:head] + members[-tail:]
    member_ids: dict = {}
    ops = graph._ops_by_name
    for name in shown:
        op = ops.get(name)
        bid = f"k{node.id}:{name}"
        boxes[bid] = Box(bid, name, op.type if op else "?", "op", _op_tooltip(op, name))
        member_ids[name] = bid
    ids = [member_ids[n] for n in shown]
    edges = []
    for name in shown:
        op = ops.get(name)
        for t in (op.inputs if op is not None else ()):
            if t.op.name in member_ids:
                edges.append((member_ids[t.op.name], member_ids[name]))
    if len(shown) < len(members):
        hidden = len(members) - len(shown)
        bid = f"k{node.id}:elided"
        boxes[bid] = Box(bid, f"... {hidden} more ops ...", "", "elided", f"{hidden} member ops not drawn")
        head_ids, tail_ids = ids[:MAX_MEMBERS_DRAWN * 2 // 3], ids[MAX_MEMBERS_DRAWN * 2 // 3:]
        edges += [(head_ids[-1], bid), (bid, tail_ids[0])]
        ids = head_ids + [bid] + tail_ids
    vectorized = kernel.get("vectorized")
    io = f"inputs {', '.join(kernel.get('inputs', ()))}; outputs {', '.join(kernel.get('outputs', ()))}"
    cluster = Cluster(f"c{node.id}", kernel["name"], kernel.get("kind", "fused"), vectorized, len(members), ids,
                      f"fused kernel {kernel['name']}: {io}")
    return cluster, member_ids, edges


def _tensor_name(program, ref) -> str:
    """The user-graph name of the tensor a ref denotes (Feed nodes are named by their tensor)."""
    node = program.node(ref[0])
    return node.name if ":" in node.name else f"{node.name}:{ref[1]}"


def _consumers_in(kernel: dict, graph: Graph, tensor: str, member_ids: dict, cluster: Cluster) -> list:
    """The member boxes of a kernel that read `tensor`; its first box when none is known."""
    found = []
    for name, bid in member_ids.items():
        op = graph._ops_by_name.get(name)
        if op is not None and any(t.name == tensor for t in op.inputs):
            found.append(bid)
    return found or [cluster.members[0]]


def _tooltip(node) -> str:
    specs = ", ".join(f"{s.dtype} {shape_text(s.shape)}" for s in node.specs)
    where = f"  (built at {node.source})" if node.source else ""
    return f"{node.name}: {node.op} -> {specs}{where}"


def _op_tooltip(op, name: str) -> str:
    if op is None:
        return name
    outs = ", ".join(f"{t.dtype} {shape_text(t.shape)}" for t in op.outputs)
    where = f"  (built at {op.source})" if op.source else ""
    return f"{op.name}: {op.type} -> {outs}{where}"
