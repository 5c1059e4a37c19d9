"""Composite ops: public ops defined as expansions into registered primitives.

`softmax`, `moments`, the cross-entropies and the like need no kernel, gradient or
lowering of their own: they build primitive ops (so gradients come from the primitives and
the fusion planner sees the reduce-then-elementwise patterns). They are still first-class
definitions: registered here once, each with a numpy reference and a test input domain,
so the generated conformance and gradient tests iterate over composites as over primitives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class CompositeDef:
    """One composite op.

    build(*tensors, **attrs): builds the expansion in the tensors' graph; returns a Tensor or
        a tuple of Tensors.
    reference(*arrays, **attrs): the numpy reference computation.
    sample: the test input domain per input (as OpDef.sample).
    dtypes: accepted dtypes of the first input (empty: not tested by type).
    attrs_for_test: attribute dicts the generated tests try.
    grad_inputs: indices of the inputs the op is differentiable in (empty: not differentiable).
    random: the op draws random numbers (its values are checked statistically, not exactly).
    """

    name: str
    build: Callable
    reference: Callable | None
    sample: tuple = ()
    dtypes: tuple = ()
    attrs_for_test: tuple = ({},)
    grad_inputs: tuple = ()
    random: bool = False
    doc: str = ""


_COMPOSITES: dict[str, CompositeDef] = {}


def register_composite(cdef: CompositeDef) -> CompositeDef:
    """Add a composite definition (once per name)."""
    if cdef.name in _COMPOSITES:
        raise ValueError(f"composite '{cdef.name}' is registered twice")
    _COMPOSITES[cdef.name] = cdef
    return cdef


def get_composite(name: str) -> CompositeDef:
    try:
        return _COMPOSITES[name]
    except KeyError:
        raise KeyError(f"no composite '{name}' is registered") from None


def all_composites() -> list[CompositeDef]:
    """Every registered composite (import graphflow first, so that all are defined)."""
    return list(_COMPOSITES.values())
