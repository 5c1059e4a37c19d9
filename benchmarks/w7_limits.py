"""W7: what the machine can do, measured in the same run so every other figure can be read
as a fraction of it: the FMA peak (GFLOP/s of independent vector multiply-adds in
registers, the most any float32 kernel can compute), sgemm 2048^3 through numpy, and a
STREAM triad `a = b + s*c` on 2**24 float32 (GB/s counting 3 arrays).

The peak is one LLVM loop of CHAINS independent FMA chains on the host's widest vectors
(enough in flight to hide the FMA latency), its iterations split over Python threads as the
triad's are. Its operands are arguments, so LLVM cannot fold the chains away.

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
PEAK_ITERATIONS, QUICK_PEAK_ITERATIONS = 1 << 21, 1 << 17   # (every chain counts them exactly in float32)
CHAINS = 24
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


def peak_ir(lanes: int, chains: int = CHAINS) -> str:
    """@peak(n, x, y, out): `chains` vector accumulators, each acc = fma(acc, x, y) n times
    (x = y = 1 counts n exactly); out[0] = the first chain's first lane."""
    vec = f"<{lanes} x float>"
    lines = [f"declare {vec} @llvm.fma.v{lanes}f32({vec}, {vec}, {vec})",
             "define void @peak(i64 %n, float %x, float %y, ptr %out) {",
             "entry:",
             f"  %xv0 = insertelement {vec} poison, float %x, i64 0",
             f"  %xv = shufflevector {vec} %xv0, {vec} poison, <{lanes} x i32> zeroinitializer",
             f"  %yv0 = insertelement {vec} poison, float %y, i64 0",
             f"  %yv = shufflevector {vec} %yv0, {vec} poison, <{lanes} x i32> zeroinitializer",
             "  %any = icmp sgt i64 %n, 0",
             "  br i1 %any, label %loop, label %exit",
             "loop:",
             "  %i = phi i64 [ 0, %entry ], [ %next, %loop ]"]
    lines += [f"  %a{j} = phi {vec} [ zeroinitializer, %entry ], [ %b{j}, %loop ]" for j in range(chains)]
    lines += [f"  %b{j} = call {vec} @llvm.fma.v{lanes}f32({vec} %a{j}, {vec} %xv, {vec} %yv)"
              for j in range(chains)]
    lines += ["  %next = add nsw i64 %i, 1", "  %more = icmp slt i64 %next, %n",
              "  br i1 %more, label %loop, label %done", "done:"]
    total = "%b0"
    for j in range(1, chains):   # (every chain is used, so none is dead code)
        lines.append(f"  %s{j} = fadd {vec} {total}, %b{j}")
        total = f"%s{j}"
    lines += [f"  %first = extractelement {vec} %b0, i64 0",
              f"  %all = extractelement {vec} {total}, i64 0",
              f"  %check = fcmp oeq float %all, 0.0",
              "  %keep = select i1 %check, float %all, float %first",
              "  store float %keep, ptr %out, align 4",
              "  br label %exit",
              "exit:",
              "  ret void",
              "}"]
    return "\n".join(lines) + "\n"


PEAK_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_void_p)


def llvm_peak_system(iterations: int) -> System:
    def factory(threads: int):
        from graphflow.compiler.codegen.jit import compile_module

        module = compile_module(peak_ir(_lanes()))
        peak = PEAK_SIGNATURE(module.address("peak"))
        counts = np.zeros(threads, dtype=np.float32)
        bounds = [int(v) for v in np.linspace(0, iterations, threads + 1)]
        pool = ThreadPoolExecutor(threads)
        part = lambda k: peak(bounds[k + 1] - bounds[k], 1.0, 1.0, counts[k:].ctypes.data)  # noqa: E731

        def run():
            if threads == 1:
                part(0)
            else:
                list(pool.map(part, range(threads)))
            return np.array([counts.sum(dtype=np.float64)])

        run.keep_alive = (module, pool)
        return run

    return System("LLVM FMA loop (peak)", factory)


def _lanes() -> int:
    from graphflow.compiler.codegen.target import vector_bytes

    return vector_bytes() // 4


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
    iterations = QUICK_PEAK_ITERATIONS if quick else PEAK_ITERATIONS
    flops = 2 * CHAINS * _lanes() * iterations
    peak = Case("W7", f"FMA peak: {CHAINS} vector FMA chains per thread", lambda: np.array([float(iterations)]),
                lambda s: flops / s / 1e9, "GFLOP/s", [llvm_peak_system(iterations)], rtol=0, atol=0)
    return [peak, gemm, triad]
