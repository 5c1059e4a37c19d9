"""Fetch structures: flatten any nesting of list/tuple/dict/namedtuple of fetchable things
into a flat list of graph elements, and rebuild the same structure around the results."""
from __future__ import annotations

import collections
from typing import Callable

from ..graph import Graph, Operation, Tensor


def flatten_fetches(graph: Graph, fetches) -> tuple[list, Callable[[list], object]]:
    """Return (elements, rebuild) where rebuild(values) has the shape of `fetches`."""
    elements: list = []

    def visit(f):
        if isinstance(f, dict):
            keys = list(f.keys())
            builders = [visit(f[k]) for k in keys]
            cls = type(f)

            def build_dict(vals):
                d = {k: b(vals) for k, b in zip(keys, builders)}
                if cls is dict:
                    return d
                if isinstance(f, collections.defaultdict):  # its constructor wants the factory first
                    return cls(f.default_factory, d)
                return cls(d)
            return build_dict
        if isinstance(f, tuple) and hasattr(f, "_fields"):  # namedtuple
            builders = [visit(x) for x in f]
            cls = type(f)
            return lambda vals: cls(*[b(vals) for b in builders])
        if isinstance(f, (list, tuple)):
            builders = [visit(x) for x in f]
            cls = type(f)
            return lambda vals: cls(b(vals) for b in builders)
        if f is None:
            raise TypeError("cannot fetch None; fetches are tensors, operations, variables or their names")
        elem = graph.as_graph_element(f)
        i = len(elements)
        elements.append(elem)
        if isinstance(elem, Operation):
            return lambda vals: None
        return lambda vals: vals[i]

    rebuild = visit(fetches)
    return elements, rebuild


def split_elements(elements) -> tuple[list[Tensor], list[Operation]]:
    """Tensors to fetch and operations to run, each once, in first-seen order."""
    tensors, ops = [], []
    for e in elements:
        if isinstance(e, Tensor):
            if e not in tensors:
                tensors.append(e)
        elif e not in ops:
            ops.append(e)
    return tensors, ops
