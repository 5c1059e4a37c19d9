"""Lay out a compiled program for drawing: boxes in layers by data flow, kernels as clusters.

The drawing has two levels. The outer level is the optimized program (one item per
program node, plus one terminal per fetch); a fused kernel is one item there, drawn as a
box holding its member ops, which are laid out inside it by the same layered layout over
the original graph's edges. Layers come from the longest path from the sources in a
topological order (networkx), so data flows top to bottom; within a layer, items are
ordered by the mean position of their neighbours (sweeping down and up), which keeps
most edges short and uncrossed, and sources (weights, constants) sit just above their
first consumer rather than all on the top row.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

BOX_W, BOX_H = 168, 40
GAP_X, GAP_Y = 28, 46
PAD, TITLE_H = 14, 34
MAX_MEMBERS_DRAWN = 40  # a kernel of a 1000-op chain is drawn as its head, "...", its tail
SWEEPS = 4  # down, up, down, up: enough to untangle the graphs people draw


@dataclass
class Box:
    """One drawn op, placeholder, or fetch terminal."""

    id: str
    label: str
    kind: str  # op type, shown under the label
    role: str  # "op", "feed", "fetch", "const", "variable", "elided"
    tooltip: str = ""
    x: float = 0.0
    y: float = 0.0
    w: float = BOX_W
    h: float = BOX_H


@dataclass
class Cluster:
    """A fused kernel drawn as a coloured box around its member ops."""

    id: str
    name: str
    kind: str
    vectorized: object
    op_count: int
    members: list = field(default_factory=list)  # Box ids (an elided run counts as one)
    tooltip: str = ""

    @property
    def detail(self) -> str:
        """The line under the kernel's name: kind, vectorization, size."""
        vec = {True: " \u00b7 vectorized", False: " \u00b7 scalar"}.get(self.vectorized, "")
        return f"{self.kind} kernel{vec} \u00b7 {self.op_count} ops"
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


@dataclass
class Drawing:
    boxes: dict
    clusters: dict
    edges: list  # (source box id, target box id): data flow
    control_edges: list = field(default_factory=list)  # (before, after): control dependencies
    width: float = 0.0
    height: float = 0.0


def layered_positions(order: list, edges: list, sizes: dict) -> tuple[dict, float, float]:
    """Top-left corners for items `order` (a topological order) of `sizes[id] = (w, h)`;
    returns (positions, total width, total height)."""
    g = nx.DiGraph()
    g.add_nodes_from(order)
    g.add_edges_from((a, b) for a, b in edges if a != b and a in sizes and b in sizes)
    layer: dict = {}
    topo = list(nx.topological_sort(g))
    for n in topo:
        layer[n] = max((layer[p] + 1 for p in g.predecessors(n)), default=0)
    for n in reversed(topo):  # sources (weights, constants) sit just above their first consumer
        if g.in_degree(n) == 0 and g.out_degree(n):
            layer[n] = min(layer[s] for s in g.successors(n)) - 1
    rows: list[list] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in order:
        rows[layer[n]].append(n)
    row_widths = [sum(sizes[n][0] for n in row) + GAP_X * (len(row) - 1) for row in rows]
    width = max(row_widths, default=0)
    centre: dict = {}

    def place(row: list, row_width: float) -> None:
        x = (width - row_width) / 2
        for n in row:
            centre[n] = x + sizes[n][0] / 2
            x += sizes[n][0] + GAP_X

    for row, row_width in zip(rows, row_widths):
        place(row, row_width)
    for sweep in range(SWEEPS):  # barycentre ordering, alternately by predecessors and by successors
        down = sweep % 2 == 0
        neighbours = g.predecessors if down else g.successors
        indices = range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)
        for i in indices:
            key = {n: _mean([centre[m] for m in neighbours(n)]) for n in rows[i]}
            rows[i].sort(key=lambda n: centre[n] if key[n] is None else key[n])
            place(rows[i], row_widths[i])
    positions: dict = {}
    y = 0.0
    for row in rows:
        for n in row:
            positions[n] = (centre[n] - sizes[n][0] / 2, y)
        y += max(sizes[n][1] for n in row) + GAP_Y
    return positions, width, max(y - GAP_Y, 0.0)


def _mean(values: list):
    return sum(values) / len(values) if values else None


def lay_out(items: list, edges: list, boxes: dict, clusters: dict, inner_edges: list,
            control_edges: list = ()) -> Drawing:
    """Place program-level `items` (Box or Cluster ids) and the members inside each cluster.

    `edges` and `control_edges` join box ids (members stand for their cluster at the outer
    level); `inner_edges` join members of the same cluster."""
    owner = {m: c.id for c in clusters.values() for m in c.members}
    for c in clusters.values():
        member_edges = [(a, b) for a, b in inner_edges if owner.get(a) == c.id and owner.get(b) == c.id]
        pos, w, h = layered_positions(c.members, member_edges, {m: (boxes[m].w, boxes[m].h) for m in c.members})
        for m, (x, y) in pos.items():
            boxes[m].x, boxes[m].y = x + PAD, y + PAD + TITLE_H
        c.w, c.h = max(w, 7.4 * len(c.name), 6.2 * len(c.detail)) + 2 * PAD, h + 2 * PAD + TITLE_H
        for m in c.members:  # centre the members when the title is the widest thing
            boxes[m].x += (c.w - w - 2 * PAD) / 2
    sizes = {i: ((clusters[i].w, clusters[i].h) if i in clusters else (boxes[i].w, boxes[i].h)) for i in items}
    outer_edges = [(owner.get(a, a), owner.get(b, b)) for a, b in list(edges) + list(control_edges)]
    pos, width, height = layered_positions(items, outer_edges, sizes)
    for i, (x, y) in pos.items():
        x, y = x + PAD, y + PAD
        if i in clusters:
            c = clusters[i]
            c.x, c.y = x, y
            for m in c.members:
                boxes[m].x += x
                boxes[m].y += y
        else:
            boxes[i].x, boxes[i].y = x, y
    return Drawing(boxes, clusters, edges + inner_edges, list(control_edges), width + 2 * PAD, height + 2 * PAD)
