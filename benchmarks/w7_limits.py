"""W7: what the machine can do, measured in the same run so every other figure can be read
as a fraction of it: sgemm 2048^3 through numpy (GFLOP/s) and a STREAM triad
`a = b + s*c` on 2**24 float32 (GB/s counting 3 arrays).

The triad is one LLVM loop (vectorized for the host CPU) split over Python threads, each
calling it through ctypes (which releases the GIL): a single pass over memory, the way
STREAM measures it. numpy's triad (two passes: a temporary for s*c) is shown beside it."""
from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .suite import Case, System
from .systems import numpy_system

GEMM_N, QUICK_GEMM_N = 2048, 512
TRIAD_N, QUICK_TRIAD_N = 2 ** 24, 2 ** 20
SCALAR = np.float32(3.0)

TRIAD_IR = """
define void @triad(ptr noalias nocapture %a, ptr noalias nocapture readonly %b,
                   ptr noalias nocapture readonly %c, float %s, i64 %start, i64 %end) {
entry:
  %nonempty = icmp slt i64 %start, %end
  br i1 %nonempty, label %loop, label %exit
loop:
  %i = phi i64 [ %start, %entry ], [ %next, %loop ]
  %pb = getelementptr inbounds float, ptr %b, i64 %i
  %pc = getelementptr inbounds float, ptr %c, i64 %i
  %pa = getelementptr inbounds float, ptr %a, i64 %i
  %vb = load float, ptr %pb, align 4
  %vc = load float, ptr %pc, align 4
  %sc = fmul float %vc, %s
  %r = fadd float %vb, %sc
  store float %r, ptr %pa, align 4
  %next = add nsw i64 %i, 1
  %more = icmp slt i64 %next, %end
  br i1 %more, label %loop, label %exit
exit:
  ret void
}
"""
TRIAD_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float,
                                   ctypes.c_int64, ctypes.c_int64)


def llvm_triad_system(a, b, c) -> System:
    def factory(threads: int):
        from graphflow.compiler.codegen.jit import compile_module

        module = compile_module(TRIAD_IR)
        triad = TRIAD_SIGNATURE(module.address("triad"))
        pointers = [x.ctypes.data for x in (a, b, c)]
        bounds = [int(v) for v in np.linspace(0, len(a), threads + 1)]
        pool = ThreadPoolExecutor(threads)
        part = lambda k: triad(*pointers, SCALAR, bounds[k], bounds[k + 1])  # noqa: E731

        def run():
            if threads == 1:
                part(0)
            else:
                list(pool.map(part, range(threads)))
            return a

        run.keep_alive = (module, pool)  # the machine code and threads live as long as the callable
        return run

    return System("LLVM loop (STREAM triad)", factory)


def cases(quick: bool) -> list:
    n = QUICK_GEMM_N if quick else GEMM_N
    rng = np.random.default_rng(0)
    ga, gb = (rng.uniform(-1, 1, size=(n, n)).astype(np.float32) for _ in range(2))
    gemm = Case("W7", f"sgemm {n}^3", lambda: ga @ gb, lambda s: 2 * n ** 3 / s / 1e9, "GFLOP/s",
                [numpy_system(np.matmul, [ga, gb])], rtol=1e-4, atol=1e-3)
    m = QUICK_TRIAD_N if quick else TRIAD_N
    a = np.empty(m, dtype=np.float32)
    b, c = (rng.uniform(-1, 1, size=m).astype(np.float32) for _ in range(2))
    triad = Case("W7", f"triad a = b + s*c, N=2**{m.bit_length() - 1}", lambda: b + SCALAR * c,
                 lambda s: 3 * 4 * m / s / 1e9, "GB/s",
                 [llvm_triad_system(a, b, c), numpy_system(lambda bb, cc: bb + SCALAR * cc, [b, c])])
    return [gemm, triad]
