"""The op registry: one `OpDef` per op type, holding everything the system knows about it.

Passes, lowering, the runtime and the tests read these fields; nothing else keeps lists
of op names. Adding an op means registering one definition (and, automatically, getting
its conformance and gradient tests, which iterate over this registry and fail until the
op has a reference there). Ops that are expansions into primitives (softmax, moments, ...)
are registered as composites instead, see composite.py.
"""
from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple


class TensorSpec(NamedTuple):
    """Static facts about one tensor: shape (tuple, `None` entries unknown; `None` = unknown rank) and dtype."""

    shape: Any
    dtype: Any


class OpKind(enum.Enum):
    """How the fusion planner may treat an op."""

    ELEMENTWISE = "elementwise"  # out[i] = f(in[i], ...) with numpy broadcasting
    INJECTIVE = "injective"      # a pure re-indexing: reshape, transpose, slice, ...
    REDUCTION = "reduction"      # reduces some axes of one input
    LIBRARY = "library"          # matmul, conv: a tuned kernel, epilogue may fuse
    SOURCE = "source"            # no data inputs: constant, placeholder, variable read
    OPAQUE = "opaque"            # everything else (gather, control flow, state updates, ...)


@dataclass(frozen=True)
class OpDef:
    """Everything about one op type.

    infer(specs, attrs) -> TensorSpec | tuple[TensorSpec, ...]: shapes and dtypes of the
        outputs; raises ValueError/TypeError (the graph prefixes the op's name).
    kernel(*arrays, **attrs): the numpy reference; returns an array or a tuple of arrays.
        For a stateful op it is called as kernel(state, *arrays, **attrs), where `state` is
        the run's view of the session (variables, random streams).
    grad(op, *output_grads) -> list of input gradients (Tensor or None); None = not
        differentiable.
    scalar: for elementwise ops, the scalar program used by code generation
        (`scalar(b, *args)` with `b` a scalar builder), see compiler/codegen.
    sample: the input domain used by the generated tests ("real", "positive", "unit",
        "nonzero", "int", "bool", ...), one entry per input.
    """

    type: str
    default_name: str
    infer: Callable
    kernel: Callable | None
    grad: Callable | None = None
    kind: OpKind = OpKind.OPAQUE
    stateful: bool = False
    random: bool = False
    scalar: Callable | None = None
    sample: tuple = ()
    dtypes: tuple = ()   # accepted input dtypes for the generated tests (empty: not tested by type)
    attrs_for_test: tuple = ()  # a few attribute dicts the conformance tests try
    doc: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_elementwise(self) -> bool:
        return self.kind is OpKind.ELEMENTWISE

    @property
    def has_side_effects(self) -> bool:
        return self.stateful


_REGISTRY: dict[str, OpDef] = {}
_ORIGIN: dict[str, str] = {}


def register(op_def: OpDef) -> OpDef:
    """Add `op_def` to the registry (once per op type)."""
    if op_def.type in _REGISTRY:
        raise ValueError(f"op type '{op_def.type}' is registered twice")
    _REGISTRY[op_def.type] = op_def
    # which module defined the op: the generated op tests cover everything from graphflow.ops
    _ORIGIN[op_def.type] = sys._getframe(1).f_globals.get("__name__", "")
    return op_def


def op_origin(op_type: str) -> str:
    """The module that registered `op_type` (e.g. 'graphflow.ops.elementwise')."""
    return _ORIGIN[op_type]


def get_op_def(op_type: str) -> OpDef:
    try:
        return _REGISTRY[op_type]
    except KeyError:
        raise KeyError(f"no op type '{op_type}' is registered") from None


def all_op_defs() -> list[OpDef]:
    return list(_REGISTRY.values())
