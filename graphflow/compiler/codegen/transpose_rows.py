"""`gf_trows(b0, b1, n, src, m, dst)`: rows [b0, b1) of dst (n columns) = columns [b0, b1) of
src (n x m, row stride m), transposed, as one compiled call per row range.

Why: a product A @ B^T with the smaller A is computed transposed (fusion/epilogue.py's
swapped route: C^T = B @ A^T, then C^T transposed into C). Split over threads, each chunk of
C's rows is then two compiled calls, the product's columns of C^T and this copy, so the
whole split runs as one compiled job (codegen/pool.py) with no Python per chunk. The tiles
are gemm.py's packing loops: w x w vector transposes inside, scalar tiles at the edges.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from . import gemm


def module_ir(dtype) -> str:
    dtype = np.dtype(dtype)
    t, w = gemm._LLVM_TYPE[dtype], gemm.lanes(dtype)   # (the codegen package's own helpers)
    body = [
        f"define void @gf_trows(i64 %b0, i64 %b1, i64 %n, ptr %src, i64 %m, ptr %dst) nounwind {{",
        "entry:",
        "  %rows = sub i64 %b1, %b0",
        f"  %rrem = urem i64 %rows, {w}", "  %rr = sub i64 %rows, %rrem",
        f"  %crem = urem i64 %n, {w}", "  %c = sub i64 %n, %crem",
        f"  %s0 = getelementptr {t}, ptr %src, i64 %b0",
        "  %doff = mul i64 %b0, %n", f"  %d0 = getelementptr {t}, ptr %dst, i64 %doff",
        "  call void @packt(i64 %rr, i64 %c, ptr %s0, i64 %m, ptr %d0, i64 %n)",
        # the right edge: columns [c, n) of every row
        "  %s1off = mul i64 %c, %m", f"  %s1 = getelementptr {t}, ptr %s0, i64 %s1off",
        f"  %d1 = getelementptr {t}, ptr %d0, i64 %c",
        "  call void @pack(i64 %rows, i64 %crem, ptr %s1, i64 1, i64 %m, ptr %d1, i64 %n)",
        # the bottom edge: rows [rr, rows) of columns [0, c)
        f"  %s2 = getelementptr {t}, ptr %s0, i64 %rr",
        "  %d2off = mul i64 %rr, %n", f"  %d2 = getelementptr {t}, ptr %d0, i64 %d2off",
        "  call void @pack(i64 %rrem, i64 %c, ptr %s2, i64 1, i64 %m, ptr %d2, i64 %n)",
        "  ret void",
        "}"]
    return "\n\n".join(["declare i64 @llvm.smin.i64(i64, i64)", gemm._transpose_ir(t, w, "packt"),
                        gemm._pack_ir(t, "pack"), "\n".join(body)]) + "\n"


@functools.lru_cache(maxsize=None)
def _compiled(dtype: np.dtype):
    from .jit import compile_module

    jit = compile_module(module_ir(dtype))
    return jit, ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 6))(jit.address("gf_trows"))


def function(dtype):
    """fn(b0, b1, n, src_ptr, m, dst_ptr) for `dtype` (float32 or float64)."""
    return _compiled(np.dtype(dtype))[1]
