"""The numpy evaluation of a fused kernel: each member op's reference kernel, in order.

This is the specification a compiled kernel must match, the path that runs when a call's
operands cannot be walked with one stride per axis (rare: broadcasting inside several
reduced axes) or when the problem is too small for a compiled call to pay (W8's one add),
and what makes fusion testable without LLVM. It is generated as one straight-line Python
function per kernel: it runs on per-call paths, where a loop over the instructions with
registry lookups costs more than the ops themselves.
"""
from __future__ import annotations

import numpy as np

from ...ops.registry import get_op_def
from .kernel_ir import KernelIR


def _fresh(value, shape, dtype) -> np.ndarray:
    out = np.empty(shape, dtype)
    np.copyto(out, value, casting="unsafe")
    return out


def numpy_function(ir: KernelIR, out_shapes=None, out_dtypes=None):
    """The numpy evaluation of `ir` (the specification of its compiled kernel) as one generated
    straight-line function of the inputs returning the output values; with `out_shapes`,
    fresh arrays of those shapes and `out_dtypes` (a result that is a view, an input, a
    scalar or of another shape is copied). Member ops whose reference kernel is a ufunc
    giving the instruction's dtype are called directly."""
    n = len(ir.inputs)
    args = [f"x{i}" for i in range(n)]
    ns = {"NDARRAY": np.ndarray, "ASARRAY": np.asarray, "FRESH": _fresh}
    lines = [f"def evaluate({', '.join(args)}):"]
    for i, ins in enumerate(ir.instrs):
        slot = f"x{n + i}"
        args.append(slot)
        ns[f"D{i}"] = dtype = np.dtype(ins.dtype)
        if ins.is_const:
            ns[f"C{i}"] = np.asarray(ins.attrs["value"], dtype=dtype).reshape(ins.shape)
            lines.append(f"    {slot} = C{i}")
            continue
        kernel = get_op_def(ins.op).kernel
        ns[f"K{i}"] = kernel
        call = f"K{i}({', '.join(args[a] for a in ins.args)}{', **A' + str(i) if ins.attrs else ''})"
        ns[f"A{i}"] = dict(ins.attrs)
        if not (isinstance(kernel, np.ufunc) and not ins.attrs and _ufunc_gives(kernel, ir, ins.args, dtype)):
            call = f"ASARRAY({call}, D{i})"
        lines.append(f"    {slot} = {call}")
    outs = []
    for j, slot in enumerate(ir.outputs):
        o = args[slot]
        outs.append(o)
        if out_shapes is None:
            continue
        ns[f"S{j}"], ns[f"OD{j}"] = tuple(out_shapes[j]), out_dtypes[j]
        inputs = "".join(f" or {o} is x{i}" for i in range(n))
        lines.append(f"    if {o}.__class__ is not NDARRAY or {o}.base is not None or {o}.shape != S{j} "
                     f"or {o}.dtype != OD{j}{inputs}: {o} = FRESH({o}, S{j}, OD{j})")
    lines.append(f"    return ({', '.join(outs)},)")
    exec(compile("\n".join(lines), f"<graphflow numpy kernel {ir.name}>", "exec"), ns)  # noqa: S102 - our own source
    return ns["evaluate"]


def _ufunc_gives(kernel: np.ufunc, ir: KernelIR, args, dtype) -> bool:
    try:
        return kernel.nout == 1 and kernel.resolve_dtypes(
            tuple(np.dtype(ir.slot_dtype(a)) for a in args) + (None,))[-1] == dtype
    except (TypeError, ValueError):
        return False
