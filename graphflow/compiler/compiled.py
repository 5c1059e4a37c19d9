"""`gf.compile`: the optimized program of some fetches, for inspection.

A CompiledGraph is built through the same path a Session uses (`Session` -> runtime plan ->
`build_program`), so what it shows is exactly what `Session.run` would execute: the same
passes, the same kernels, the same memory plan. It explains itself: `stats`, `report()`
(text), `to_dot()` (Graphviz, fused kernels as clusters), `to_json()` and `llvm_ir`.
"""
from __future__ import annotations

import time

import numpy as np

from ..graph import Graph, Operation, Tensor, get_default_graph
from .program import FEED, Program, const_value
from .report import Report


class CompiledGraph:
    """The compiled form of `fetches` with `feed_list` fed, at `opt_level`."""

    def __init__(self, graph: Graph, fetch_names: list[str], feed_names: list[str], opt_level: int,
                 program: Program, report: Report, seconds: float, session=None, plan=None):
        self.graph = graph
        self.fetch_names = fetch_names
        self.feed_names = feed_names
        self.opt_level = opt_level
        self.program = program
        self.report_data = report
        self.compile_seconds = seconds
        self._session = session  # keeps the plan's resources (kernels, thread budget) alive
        self.plan = plan
        self.stats = self._stats()

    # ---- facts ----
    def _stats(self) -> dict:
        r = self.report_data
        passes = r.passes
        before = passes[0].ops_after if passes else len(self.program)
        counts = {kind: len(r.names(kind)) for kind in ("pruned", "folded", "merged", "simplified")}
        return {
            "ops_before": before,
            "ops_after": len(self.program),
            "kernels": len(r.kernels),
            "fused_ops": sum(len(k["members"]) for k in r.kernels),
            "unfused_ops": len(r.unfused),
            "ops_in_graph": passes[0].ops_before if passes else len(self.program),
            **counts,
            "opt_level": self.opt_level,
            "compile_seconds": self.compile_seconds,
            "pass_seconds": {name: s for name, (s, _) in r.pass_totals().items()},
            "peak_memory_bytes": r.peak_memory_bytes,
        }

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR of the generated kernels ("" below opt_level 2 or with nothing fused)."""
        return self.report_data.llvm_ir or ""

    def report(self) -> str:
        """What the compiler did: passes with times and op counts, every pruned, folded,
        merged and simplified op, every kernel with its member ops, every op left unfused
        with the reason, and peak memory when the runtime knows it."""
        s = self.stats
        header = [f"compiled {', '.join(self.fetch_names) or '(no fetches)'} at opt_level {self.opt_level}"
                  + (f", feeding {', '.join(self.feed_names)}" if self.feed_names else ""),
                  f"ops: {s['ops_before']} before, {s['ops_after']} after "
                  f"({s['ops_in_graph']} lowered from the graph)",
                  f"kernels: {s['kernels']} holding {s['fused_ops']} ops; {s['unfused_ops']} ops unfused",
                  f"compile time: {self.compile_seconds * 1e3:.2f} ms"]
        return self.report_data.render(header)

    def __repr__(self) -> str:
        s = self.stats
        return (f"<gf.CompiledGraph opt_level={self.opt_level} ops {s['ops_before']} -> {s['ops_after']}, "
                f"{s['kernels']} kernels>")

    # ---- views of the program ----
    def _kernels_by_name(self) -> dict:
        return {k["name"]: k for k in self.report_data.kernels}

    def to_json(self) -> dict:
        """The optimized graph as JSON-ready data (nodes with inputs, attrs, output specs)."""
        kernels = self._kernels_by_name()
        names = {n.id: n.name for n in self.program.nodes}

        def ref(r):
            return f"{names[r[0]]}:{r[1]}"

        nodes = []
        for n in self.program.nodes:
            entry = {"id": n.id, "name": n.name, "op": n.op,
                     "inputs": [ref(r) for r in n.inputs],
                     "control_inputs": [names[c] for c in n.control],
                     "outputs": [{"dtype": s.dtype.name, "shape": None if s.shape is None else list(s.shape)}
                                 for s in n.specs],
                     "attrs": {k: _json_value(v) for k, v in n.attrs.items()}}
            if n.name in kernels:
                entry["kernel"] = _json_value(kernels[n.name])
            if n.source:
                entry["source"] = n.source
            nodes.append(entry)
        return {"opt_level": self.opt_level, "fetches": list(self.fetch_names), "feeds": list(self.feed_names),
                "outputs": [ref(r) for r in self.program.outputs],
                "targets": [names[t] for t in self.program.targets],
                "nodes": nodes, "stats": _json_value(self.stats)}

    def to_dot(self) -> str:
        """Graphviz text of the optimized program; each fused kernel is a `subgraph
        cluster_*` holding its member ops, wired as they are in the user's graph."""
        kernels = self._kernels_by_name()
        lines = ["digraph graphflow {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica", fontsize=10];']
        out_of: dict = {}     # program ref -> dot node id producing it
        members_of: dict = {}  # kernel node id -> {member op name: dot id}
        for n in self.program.nodes:
            k = kernels.get(n.name)
            if k is None:
                did = f"n{n.id}"
                lines.append(f"  {did} [label={_q(_node_label(n))}{_style(n)}];")
                for i in range(len(n.specs)):
                    out_of[(n.id, i)] = did
                continue
            ids = {m: f"n{n.id}_{j}" for j, m in enumerate(k["members"])}
            members_of[n.id] = ids
            lines.append(f"  subgraph cluster_{n.id} {{")
            label = f"{n.name} [{k.get('kind', 'kernel')}]"
            lines.append(f"    label={_q(label)}; style=rounded; color=blue;")
            for m, did in ids.items():
                lines.append(f"    {did} [label={_q(self._member_label(m))}];")
            for m, did in ids.items():
                for src in self._member_inputs(m):
                    if src in ids:
                        lines.append(f"    {ids[src]} -> {did};")
            lines.append("  }")
            outs = k.get("outputs", ())
            first = next(iter(ids.values()), f"n{n.id}")
            for i in range(len(n.specs)):
                producer = outs[i].rpartition(":")[0] if i < len(outs) else None
                out_of[(n.id, i)] = ids.get(producer, first)
        for n in self.program.nodes:
            ids = members_of.get(n.id)
            for r in n.inputs:
                lines.extend(f"  {out_of[r]} -> {d};" for d in self._consumer_dots(n, r, ids))
            for c in n.control:
                src = out_of.get((c, 0), f"n{c}")
                lines.extend(f"  {src} -> {d} [style=dashed];" for d in self._consumer_dots(n, None, ids))
        for i, r in enumerate(self.program.outputs):
            lines.append(f"  fetch{i} [label={_q(self.fetch_names[i] if i < len(self.fetch_names) else 'fetch')}, "
                         "shape=oval];")
            lines.append(f"  {out_of[r]} -> fetch{i};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _consumer_dots(self, node, ref, ids) -> list[str]:
        """The dot ids that consume `ref`: the node, or every kernel member reading it."""
        if ids is None:
            return [f"n{node.id}"]
        if ref is not None:
            producer = self.program.node(ref[0])
            # a Feed node is named after the fed tensor ("x:0"); members read its op ("x")
            producer_name = producer.name.rpartition(":")[0] if producer.op == FEED else producer.name
            readers = [did for m, did in ids.items() if producer_name in self._member_inputs(m)]
            if readers:
                return readers
        return [next(iter(ids.values()))]

    def _graph_op(self, name: str) -> Operation | None:
        try:
            return self.graph.get_operation_by_name(name)
        except (KeyError, ValueError):
            return None

    def _member_inputs(self, member: str) -> list[str]:
        op = self._graph_op(member)
        return [] if op is None else [t.op.name for t in op.inputs]

    def _member_label(self, member: str) -> str:
        op = self._graph_op(member)
        return member if op is None else f"{member}\n{op.type}"


def _node_label(n) -> str:
    specs = ", ".join(f"{s.dtype.name}{list(s.shape) if s.shape is not None else '[?]'}" for s in n.specs)
    return f"{n.name}\n{n.op}" + (f"\n{specs}" if specs else "")


def _style(n) -> str:
    if n.op == FEED:
        return ", shape=oval, style=filled, fillcolor=lightyellow"
    if const_value(n) is not None:
        return ", style=filled, fillcolor=lightgrey"
    return ""


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _json_value(v):
    """Plain JSON data for an attribute: small arrays as lists, big ones summarized,
    dtypes by name, non-finite floats as strings, anything else by its str()."""
    if isinstance(v, np.ndarray):
        if v.size <= 64:
            return {"dtype": v.dtype.name, "shape": list(v.shape), "value": _json_value(v.tolist())}
        return {"dtype": v.dtype.name, "shape": list(v.shape)}
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, (np.generic,)):
        return _json_value(v.item())
    if isinstance(v, float):
        return v if np.isfinite(v) else str(v)
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, type) and issubclass(v, np.generic):
        return np.dtype(v).name
    for attr in ("name", "members", "kind"):
        if not hasattr(v, attr):
            return str(v)
    return {"name": v.name, "members": list(v.members), "kind": str(v.kind)}


def _graph_of(items, graph: Graph | None) -> Graph:
    if graph is not None:
        return graph
    for item in items:
        if hasattr(item, "_as_graph_element"):
            item = item._as_graph_element()
        if isinstance(item, (Tensor, Operation)):
            return item.graph
    return get_default_graph()


def _flat(x) -> list:
    if isinstance(x, dict):
        return [y for v in x.values() for y in _flat(v)]
    if isinstance(x, (list, tuple)):
        return [y for v in x for y in _flat(v)]
    return [x]


def compile(fetches, feed_list=(), graph: Graph | None = None, opt_level: int = 2) -> CompiledGraph:  # noqa: A001
    """Compile `fetches` (any nesting a Session accepts) with the tensors of `feed_list` fed,
    exactly as `Session(opt_level=opt_level).run` would, and return it for inspection.
    Without a feed_list, the placeholders the fetches depend on are the feeds (as the CLI does)."""
    from ..runtime.fetches import flatten_fetches
    from ..runtime.session import Session

    t0 = time.perf_counter()
    feed_list = list(feed_list or ())
    graph = _graph_of(_flat(fetches) + feed_list, graph)
    session = Session(graph=graph, opt_level=opt_level)
    elements, _ = flatten_fetches(graph, fetches)
    if not feed_list and elements:
        feed_list = needed_placeholders(elements)
    feeds = [session._feed_tensor(k) for k in feed_list]
    if len(set(feeds)) != len(feeds):
        raise ValueError("feed_list names the same tensor twice")
    plan = session._plan(tuple(elements), tuple(feeds))
    seconds = time.perf_counter() - t0
    return CompiledGraph(graph, [e.name for e in elements], [t.name for t in feeds], opt_level,
                         plan.program, plan.report, seconds, session, plan)


def needed_placeholders(fetches: list) -> list:
    """The Placeholder tensors the fetches depend on, in graph creation order."""
    seen: set = set()
    stack = [f if isinstance(f, Operation) else f.op for f in fetches]
    found = []
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type == "Placeholder":
            found.append(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    order = {op: i for i, op in enumerate(fetches[0].graph.get_operations())}  # creation order
    return [op.outputs[0] for op in sorted(found, key=order.__getitem__)]
