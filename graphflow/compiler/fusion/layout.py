"""Run-time shapes and strides of a fused kernel's operands: turning concrete arrays into the
rows x cols arguments a compiled kernel takes (sizes and strides are arguments, so a new
batch size never recompiles).

Dimensions of size 1 are dropped and adjacent dimensions that every operand walks with
matching strides are merged, so the common contiguous case becomes one flat loop and
broadcasting is expressed by stride 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ops.registry import TensorSpec, get_op_def
from .kernel_ir import DROP, KernelIR


def inner_axes(ir: KernelIR) -> int:
    """How many trailing domain axes the column loop covers."""
    if ir.lead:
        return ir.rank - ir.reduced
    return ir.reduced if ir.reduced else min(1, ir.rank)


def outer_rank(ir: KernelIR) -> int:
    return ir.rank - inner_axes(ir)


def slot_shapes(ir: KernelIR, input_shapes) -> list[tuple]:
    """Concrete shape of every slot, by each member op's own shape rule. When the inputs
    have exactly their static shapes and every member's static shape is fully known, those
    are the answer (the graph inferred them by the same rules from the same shapes): a
    plan's build asks this for each kernel, and a 250-op kernel's inference costs ~1 ms."""
    shapes = [tuple(s) for s in input_shapes]
    if (len(shapes) == len(ir.inputs) and all(s == o.shape and None not in s for s, o in zip(shapes, ir.inputs))
            and all(None not in ins.shape for ins in ir.instrs)):
        return shapes + [tuple(ins.shape) for ins in ir.instrs]
    for ins in ir.instrs:
        if ins.is_const:
            shapes.append(tuple(ins.shape))
            continue
        specs = [TensorSpec(shapes[a], ir.slot_dtype(a)) for a in ins.args]
        try:
            out = get_op_def(ins.op).infer(specs, dict(ins.attrs))
        except (ValueError, TypeError) as exc:   # name the member op, not only the kernel
            raise type(exc)(f"'{ins.name}' ({ins.op}) in kernel {ir.name}: {exc}") from None
        shapes.append(tuple(out.shape))
    return shapes


def element_strides(arr: np.ndarray, form: str, domain: tuple, reduced: int) -> list[int] | None:
    """Strides (in elements) of `arr` walked over `domain`; 0 on broadcast axes. None when a
    byte stride is not a multiple of the item size."""
    shape, strides = arr.shape, arr.strides
    item = arr.itemsize
    if form == DROP:
        shape, strides = shape + (1,) * reduced, strides + (0,) * reduced
    lead = len(domain) - len(shape)
    out = [0] * lead
    for n, s in zip(shape, strides):
        if n == 1:
            out.append(0)
        elif s % item:
            return None
        else:
            out.append(s // item)
    return out


def merge_axes(dims: list, strides: list[list]) -> tuple[list, list[list]]:
    """Drop size-1 axes and merge neighbours every operand walks contiguously relative to each
    other (stride[i] == stride[i+1] * dims[i+1])."""
    out_dims: list = []
    out_strides: list[list] = [[] for _ in strides]
    for d, n in enumerate(dims):
        if n == 1:
            continue
        if out_dims and all(o[-1] == s[d] * n for o, s in zip(out_strides, strides)):
            out_dims[-1] *= n
            for o, s in zip(out_strides, strides):
                o[-1] = s[d]
        else:
            out_dims.append(n)
            for o, s in zip(out_strides, strides):
                o.append(s[d])
    return out_dims, out_strides


@dataclass
class CallLayout:
    """Arguments of one kernel call: outer dims (padded to the kernel's outer rank), the column
    count, and per pointer operand its outer strides then its column stride."""

    rows: int
    cols: int
    dims: np.ndarray        # int64 [outer..., cols, streaming-store flag]
    strides: np.ndarray     # int64 [operand][outer..., col]

    mode: str = ""          # how FusedKernel splits the call (set with the layout, cached with it)
    tasks: int = 0
    grain: int = 1
    chunks: tuple | None = None            # (table, count) of a compiled parallel job: rows, columns, flat

    def __post_init__(self):
        self.dims_ptr = self.dims.ctypes.data          # the arrays live as long as the layout
        self.strides_ptr = self.strides.ctypes.data


def call_layout(ir: KernelIR, domain: tuple, arrays: list, forms: list, separate_columns: bool) -> CallLayout | None:
    """The layout for `arrays` (pointer operands, with their forms) over `domain`; None when an
    operand's inner axes cannot be walked with one stride (the caller evaluates with numpy).
    `separate_columns` keeps the column axis apart from the rows even in an elementwise
    kernel (an epilogue's blocks are whole rows)."""
    per = []
    for a, f in zip(arrays, forms):
        s = element_strides(a, f, domain, ir.reduced)
        if s is None:
            return None
        per.append(s)
    ro = outer_rank(ir)
    odims, ostr = list(domain[:ro]), [s[:ro] for s in per]
    idims, istr = list(domain[ro:]), [s[ro:] for s in per]
    if not separate_columns and not ir.reduced:
        # elementwise: merge everything; the last merged axis becomes the column axis
        dims, strides = merge_axes(odims + idims, [o + i for o, i in zip(ostr, istr)])
        odims, ostr = dims[:-1], [s[:-1] for s in strides]
        idims, istr = dims[-1:], [s[-1:] for s in strides]
    else:
        odims, ostr = merge_axes(odims, ostr)
        idims, istr = merge_axes(idims, istr)
    if len(idims) > 1:
        return None
    if not idims:
        idims, istr = [1], [[0] for _ in per]
    pad = ro - len(odims)
    odims = [1] * pad + odims
    ostr = [[0] * pad + s for s in ostr]
    rows = int(np.prod(odims, dtype=np.int64)) if odims else 1
    dims = np.array(odims + idims + [0], dtype=np.int64)   # the last slot: streaming-store flag
    strides = np.array([o + i for o, i in zip(ostr, istr)], dtype=np.int64).reshape(len(per), ro + 1)
    return CallLayout(rows, int(idims[0]), dims, strides)
