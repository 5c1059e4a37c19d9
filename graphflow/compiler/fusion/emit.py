"""LLVM IR for fused kernels: one module holding every kernel of a compiled graph.

Each kernel is one function (the signature and loop structure: `kernel_emitter`) whose body
loops over rows and columns calling each member's scalar program: `row_kernels` for
elementwise kernels and reductions over trailing axes, `column_kernels` for reductions over
leading axes.
"""
from __future__ import annotations

from llvmlite import ir

from ...errors import UnimplementedError
from .column_kernels import ColumnKernelEmitter
from .jit_kernels import UNSUPPORTED
from .kernel_emitter import LoopMarkers
from .kernel_ir import KernelIR
from .row_kernels import RowKernelEmitter


def emit_module(kernels: list[KernelIR]) -> str:
    """One LLVM module holding every kernel of a compiled graph, as IR text. A kernel whose
    ops have no LLVM lowering is left out, named on a leading `UNSUPPORTED` comment line
    with the reason (it keeps its numpy evaluation)."""
    module = ir.Module(name="graphflow_fused")
    markers = LoopMarkers(module)
    skipped = []
    for kir in kernels:
        try:
            (ColumnKernelEmitter if kir.lead else RowKernelEmitter)(module, kir, markers).emit()
        except UnimplementedError as exc:
            module.globals.pop(kir.name, None)
            skipped.append(f"{UNSUPPORTED}{kir.name}: {' '.join(str(exc).split())}\n")
    return "".join(skipped) + markers.finish(str(module))
