"""The description of one fused kernel: a small scalar program over a 2-level iteration space.

A kernel iterates over a domain of static rank R whose trailing `reduced` axes are the
reduction axes (0 for a pure elementwise kernel). At run time the domain becomes
rows x cols: rows are the leading R - reduced axes (threads split over rows, so reductions
stay deterministic), cols the trailing ones. A column kernel (`lead`) reduces the leading
`reduced` axes instead: rows are those, and threads split over columns, each accumulating
its columns over all rows in memory. Every slot of the program has a *form*:

    FULL     one value per domain element (right-aligned numpy broadcasting)
    ROW      one value per row, in keepdims shape (trailing reduced axes are 1)
    DROP     one value per row, in reduced shape (the reduced axes dropped: left-aligned)
    COL      (column kernels) one value per kept index: broadcast over the leading reduced
             axes, so it is walked like FULL with stride 0 there
    UNIFORM  statically one element: the same for the whole kernel
    LIB      (operands only) read by the library instruction, never by the element loop

Slots 0..len(inputs)-1 are the kernel's input operands; instruction i writes slot
len(inputs) + i. A `library` instruction (matmul) produces a FULL value by blocks of rows
before the elementwise epilogue runs on that block.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, NamedTuple

import numpy as np

from ...ops.registry import OpKind, get_op_def

FULL, ROW, DROP, COL, UNIFORM, LIB = "full", "row", "drop", "col", "uniform", "lib"
ROW_FORMS = (ROW, DROP, UNIFORM)


class Operand(NamedTuple):
    """One input of the kernel: which value of the program feeds it and how it is aligned.
    (NamedTuples here, not dataclasses: this module is imported by a process's first fused
    compile, where generating dataclass methods cost ~2 ms, and an Instr is made per member.)"""

    ref: tuple          # (node id, output index) in the unfused program
    name: str           # tensor name, for the report
    form: str
    dtype: Any
    shape: tuple        # static shape


class Instr(NamedTuple):
    """One member op applied to slots. `op` is the registered op type; `const` instructions
    (op == "Const") carry an inlined scalar constant in attrs["value"]."""

    op: str
    name: str
    args: tuple
    attrs: Mapping
    dtype: Any
    form: str
    shape: tuple        # static shape of the result

    @property
    def is_const(self) -> bool:
        return self.op == "Const"


class KernelIR:
    """A fused kernel. `outputs` are the slots it writes, in the fused node's output order.
    Immutable. Derived on construction: `library`, the index of the library instruction (the
    epilogue's producer) or None, and `reductions`, the indices of the reduction instructions.

    name, kind (elementwise | reduction | row | epilogue), rank, reduced, lead (the reduced
    axes are the leading ones: a column kernel), inputs (Operands), instrs (Instrs),
    outputs (slots), output_names, members (original op names). A plain class: a frozen
    dataclass costs ~1 ms to define when a process's first fused compile imports it."""

    __slots__ = ("name", "kind", "rank", "reduced", "lead", "inputs", "instrs", "outputs", "output_names",
                 "members", "library", "reductions")

    def __init__(self, name: str, kind: str, rank: int, reduced: int, lead: bool, inputs: tuple, instrs: tuple,
                 outputs: tuple, output_names: tuple, members: tuple):
        lib = [i for i, ins in enumerate(instrs) if not ins.is_const and get_op_def(ins.op).kind is OpKind.LIBRARY]
        values = (name, kind, rank, reduced, lead, inputs, instrs, outputs, output_names, members,
                  lib[0] if lib else None, tuple(i for i, ins in enumerate(instrs) if ins.op in REDUCERS))
        for slot, value in zip(self.__slots__, values):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"KernelIR is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return f"KernelIR({self.name!r}, {self.kind!r}, {len(self.instrs)} instructions)"

    def slot_form(self, slot: int) -> str:
        n = len(self.inputs)
        return self.inputs[slot].form if slot < n else self.instrs[slot - n].form

    def slot_dtype(self, slot: int):
        n = len(self.inputs)
        return self.inputs[slot].dtype if slot < n else self.instrs[slot - n].dtype

    def describe(self) -> str:
        """Readable listing for GRAPHFLOW_DEBUG and failing tests."""
        n = len(self.inputs)
        side = "leading" if self.lead else "trailing"
        lines = [f"kernel {self.name} ({self.kind}, rank {self.rank}, {self.reduced} {side} axes reduced)"]
        lines += [f"  %{i} = input {o.name} {o.form} {_dtype_name(o.dtype)}{o.shape}"
                  for i, o in enumerate(self.inputs)]
        for i, ins in enumerate(self.instrs, n):   # (the warm-start cache key: kept to plain string work)
            if ins.op == "Const":
                what = f"const {np.asarray(ins.attrs['value']).item()!r}"
            else:
                what = f"{ins.op}(%{', %'.join(map(str, ins.args))})" if ins.args else f"{ins.op}()"
                if ins.attrs:
                    what += " {" + ", ".join(f"{k}={v!r}" for k, v in sorted(ins.attrs.items())) + "}"
            lines.append(f"  %{i} = {what} {ins.form} {_dtype_name(ins.dtype)}{ins.shape}  # {ins.name}")
        lines.append("  outputs " + ", ".join(f"%{s}" for s in self.outputs))
        return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def _dtype_name(dtype) -> str:
    """np.dtype(dtype).name, remembered: numpy computes it in Python on every access, and
    describe() (the kernel cache key of a warm start) asks once per instruction."""
    return np.dtype(dtype).name


class Reducer(NamedTuple):
    """How a reduction op combines elements: a scalar-builder method, its identity, and
    whether the result is divided by the element count (mean)."""

    combine: str
    identity: float
    mean: bool = False


# Backends dispatch on op type here, outside the op definitions (as PyTensor's backends do):
# these are the reductions a row kernel knows how to accumulate.
REDUCERS = {
    "Sum": Reducer("add", 0.0),
    "Mean": Reducer("add", 0.0, mean=True),
    "Max": Reducer("max", -np.inf),
    "Min": Reducer("min", np.inf),
    "Prod": Reducer("mul", 1.0),
}


SUBTRACT = "Sub"   # the op whose result `nonpositive_slots` recognizes, with REDUCERS' "max"


def nonpositive_slots(kir: KernelIR) -> frozenset:
    """Slots computed as `a - max(a)`, the max a row reduction of the same slot `a`: every
    element is <= 0 (or NaN, where `a` or its row has one). Softmax and log_softmax take exp
    of such a difference, which then needs no overflow clamp."""
    n = len(kir.inputs)
    row_max = {n + i: kir.instrs[i].args[0] for i in kir.reductions if REDUCERS[kir.instrs[i].op].combine == "max"}
    return frozenset(n + i for i, ins in enumerate(kir.instrs)
                     if ins.op == SUBTRACT and len(ins.args) == 2 and row_max.get(ins.args[1]) == ins.args[0])


def scratch_slots(kir: KernelIR) -> list[int]:
    """Reduction results a column kernel keeps in caller-provided scratch (not exported)."""
    n = len(kir.inputs)
    return [n + i for i in kir.reductions if n + i not in kir.outputs] if kir.lead else []


STREAM_MIN_ELEMENTS = 1 << 20   # below this static size a streaming-store loop cannot pay


def streams(kir: KernelIR) -> bool:
    """Whether an elementwise kernel also has a streaming (non-temporal store) version of its
    loop, taken at run time for outputs too big for the caches: stores then skip the
    read-for-ownership of each output line (a quarter of W1's memory traffic)."""
    outs = [s for s in kir.outputs if kir.slot_form(s) == FULL]
    if kir.kind not in ("elementwise", "row") or not outs or any(np.dtype(kir.slot_dtype(s)) == np.bool_ for s in outs):
        return False
    size = 1
    for d in kir.instrs[outs[0] - len(kir.inputs)].shape:
        if d is None:
            return True
        size *= d
    return size >= STREAM_MIN_ELEMENTS

