"""The numpy evaluation of a fused kernel: each member op's reference kernel, in order.

This is the specification a compiled kernel must match, the path that runs when a call's
operands cannot be walked with one stride per axis (rare: broadcasting inside several
reduced axes), and what makes fusion testable without LLVM.
"""
from __future__ import annotations

import numpy as np

from ...ops.registry import get_op_def
from .kernel_ir import KernelIR


def evaluate(ir: KernelIR, inputs: list) -> list[np.ndarray]:
    """The kernel's outputs for `inputs`, computed by the members' numpy references."""
    values = list(inputs)
    for ins in ir.instrs:
        if ins.is_const:
            values.append(np.asarray(ins.attrs["value"]).reshape(ins.shape))
            continue
        out = get_op_def(ins.op).kernel(*[values[a] for a in ins.args], **ins.attrs)
        values.append(np.asarray(out, dtype=ins.dtype))
    return [values[s] for s in ir.outputs]
