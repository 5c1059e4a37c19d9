"""The one-row product in LLVM IR: y[j0:j1] = x @ B[:, j0:j1] for one row x (a layer at batch 1).

Why its own kernel: at batch 1 the product streams B (W4's 784x512 and 512x512 float32
weights, 2.6 MB, from L3) once per call and does one FMA per element of B, so its speed is
how close it gets to one core's streaming rate: on this project's Zen 4 a bare read loop
streams 1.6 MB in 16.7 us and W4's three weights in 27.3 us (~98 GB/s, /tmp/s3/V/bw.py).
gemm.py's gemv, which sweeps y in memory once per 4 rows of B with masked loads and stores,
took 36.3 us for W4's three products in a row; this kernel 28.8 (one compiled call, median
of 21 alternating rounds, /tmp/s3/V/bench2.py). What made the difference, measured there:

- Vector loads of B that straddle two cache lines: numpy places a large array 16 bytes past
  a line, so every 64-byte load of such a B is split (aligned copies of the same weights:
  784x512 21.1 -> 18.8 us, 512x512 12.8 -> 10.6, its streaming bound). So the vectors start
  `lo` lanes before column j0, where B's rows have a vector-aligned address (when the row
  stride keeps every row on the same alignment), the first vector masked below `lo` and the
  last one above the end.
- Each row of B read in one pass, its lines in order: one block keeps all the vectors of y
  (up to NV_MAX) in registers for all K rows and stores them once; no load and store of y
  per row (W4's 512x10 head: 0.75 us, 1.6 through gemm.py's gemv).
- Not done: software prefetching 2 rows ahead (one prefetch per line) cost 3 us on the three
  products (the hardware prefetchers keep up with one pass in order).

A column range wider than one block (NV_MAX vectors, from B's alignment: decided per call)
would be read in several passes (blocks of at most NV_MAX vectors, balanced), each over part of every row, which streams worse than
gemm.py's gemv (y swept in memory, rows read whole): float32 3000x1000 201 vs 174 us, float64
784x512 44 vs 37; taking the rows in chunks that stay in L2 for the other blocks was worse
still (190-236 us: the sums stored and reloaded per chunk; /tmp/s3/V/shapes.py). So such a
range runs gemm.py's gemv, compiled into this module (`_sweep`). Then against gemm.py's gemv
alone (same script): float32 784x512 0.86x, 512x512 0.97x, 512x10 0.45x, 1024x100 0.54x,
64x64 0.79x, wider rows and float64 784x512 1.00-1.02x.

Determinism: y[j] is one chain of fused multiply-adds over k = 0, 1, ..., K-1 in order
from +0.0, as in gemm.py's register tiles, so a row gives the same bits through either
kernel, and whatever column range [j0, j1) a thread is given.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from . import gemm
from .target import vector_bytes

# Most vectors of y the block accumulates (REGISTER_VECTORS of them in registers): a row of B
# is best read in one pass, its lines in order. W4's 512 float32 columns starting 16 bytes
# past a line are 33 vectors; measured there (784x512, 512x512, 512x10 in a row, one compiled
# call, numpy's misaligned weights): blocks of at most 16 or 28 vectors (two or three passes
# over each row) 34.8 us, 33 or 40 (one pass) 29.8-30.2. Every width up to it is a function of
# the module: the float32 module compiles in ~0.5 s (once, then the disk cache).
NV_MAX = 34 if vector_bytes() >= 64 else 16

# Accumulators a block keeps in registers (all but the broadcast row element and one loaded
# vector); the rest live in stack slots, loaded and stored around their FMA each row. Left to
# LLVM, 33 accumulators made its allocator rotate ~30 register moves and a few spills through
# every iteration: W4's 784x512 took 17.7-18.3 us that way, 17.3 with explicit slots (three
# products in a row 30.3 -> 28.8 us; /tmp/s3/V/spill2.py, bench2.py).
REGISTER_VECTORS = 30 if vector_bytes() >= 64 else 14


_suffix, _splat = gemm._suffix, gemm._splat   # (the IR helpers the tiles use)


def _block_ir(t: str, w: int, item: int, nv: int, name: str) -> str:
    """block(K, x, xs, b, brs, y, lo, hi): for the nv vectors of columns starting at b and
    y, y = x @ B over K >= 1 rows, lanes below `lo` of the first vector and from `hi` on of the
    last left alone (neither loaded nor stored)."""
    vt, s = f"<{w} x {t}>", _suffix(t)
    lanes = ", ".join(f"i64 {i}" for i in range(w))
    first_mask = "%mlo" if nv > 1 else "%mboth"

    def edge(v: int) -> str | None:   # the lanes mask of vector v: the first and last are partial
        return first_mask if v == 0 else "%mhi" if v == nv - 1 else None
    held, slots = range(min(nv, REGISTER_VECTORS)), range(REGISTER_VECTORS, nv)
    out = [f"define internal void @{name}(i64 %K, ptr %x, i64 %xs, ptr %b, i64 %brs, ptr %y, i64 %lo, i64 %hi) "
           "noinline nounwind {",
           "entry:", *_splat("%los", "i64", w, "%lo"), *_splat("%his", "i64", w, "%hi"),
           f"  %mlo = icmp uge <{w} x i64> <{lanes}>, %los", f"  %mhi = icmp ult <{w} x i64> <{lanes}>, %his",
           f"  %mboth = and <{w} x i1> %mlo, %mhi",
           # volatile: the slots stay memory (LLVM would promote them back to spilled registers)
           *[f"  %slot{v} = alloca {vt}, align 64" for v in slots],
           *[f"  store volatile {vt} zeroinitializer, ptr %slot{v}" for v in slots],
           "  br label %loop",
           "loop:", "  %k = phi i64 [0, %entry], [%k1, %loop]"]
    out += [f"  %a{v} = phi {vt} [zeroinitializer, %entry], [%n{v}, %loop]" for v in held]
    out += ["  %xo = mul i64 %k, %xs", f"  %px = getelementptr {t}, ptr %x, i64 %xo", f"  %xk = load {t}, ptr %px",
            *_splat("%xb", t, w, "%xk"),
            "  %bo = mul i64 %k, %brs", f"  %pb = getelementptr {t}, ptr %b, i64 %bo"]
    for v in range(nv):
        out.append(f"  %pb{v} = getelementptr {t}, ptr %pb, i64 {v * w}")
        out.append(_load(f"%b{v}", t, w, item, f"%pb{v}", edge(v)))
        if v in slots:
            out.append(f"  %a{v} = load volatile {vt}, ptr %slot{v}")
        out.append(f"  %n{v} = call {vt} @llvm.fma.v{w}{s}({vt} %xb, {vt} %b{v}, {vt} %a{v})")
        if v in slots:
            out.append(f"  store volatile {vt} %n{v}, ptr %slot{v}")
    out += ["  %k1 = add i64 %k, 1", "  %more = icmp slt i64 %k1, %K", "  br i1 %more, label %loop, label %done",
            "done:"]
    out += [f"  %r{v} = phi {vt} [%n{v}, %loop]" for v in held]
    out += [f"  %r{v} = load volatile {vt}, ptr %slot{v}" for v in slots]
    for v in range(nv):
        out.append(f"  %py{v} = getelementptr {t}, ptr %y, i64 {v * w}")
        out.append(_store(f"%r{v}", t, w, item, f"%py{v}", edge(v)))
    out += ["  ret void", "}"]
    return "\n".join(out)


def _load(dst: str, t: str, w: int, item: int, ptr: str, mask: str | None) -> str:
    if mask:
        return gemm._masked_load(dst, t, w, ptr, mask, item)
    return f"  {dst} = load <{w} x {t}>, ptr {ptr}, align {item}"


def _store(value: str, t: str, w: int, item: int, ptr: str, mask: str | None) -> str:
    if mask:
        return gemm._masked_store(value, t, w, ptr, mask, item)
    return f"  store <{w} x {t}> {value}, ptr {ptr}, align {item}"


def _driver_ir(t: str, w: int, item: int, name: str) -> str:
    """gemv(j0, j1, K, x, xs, b, brs, y): the vectors covering columns [j0, j1), starting
    `lo` lanes before j0 when that aligns B's loads, as one block (its variant picked by a
    switch on its width), or gemm.py's gemv (`_sweep`) when they are more than NV_MAX."""
    vb = w * item
    cases = " ".join(f"i64 {nv}, label %v{nv}" for nv in range(1, NV_MAX + 1))
    out = [f"define void @{name}(i64 %j0, i64 %j1, i64 %K, ptr %x, i64 %xs, ptr %b, i64 %brs, ptr %y) nounwind {{",
           "entry:", "  %n = sub i64 %j1, %j0", "  %e1 = icmp sle i64 %n, 0", "  %e2 = icmp sle i64 %K, 0",
           "  %empty = or i1 %e1, %e2", "  br i1 %empty, label %exit, label %start",
           "start:",
           # lo: the lanes between the vector-aligned address at or below B[0, j0] and it, when
           # every row of B has that alignment (row stride a multiple of the vector bytes)
           f"  %bj = getelementptr {t}, ptr %b, i64 %j0", "  %addr = ptrtoint ptr %bj to i64",
           f"  %mis = and i64 %addr, {vb - 1}", f"  %odd = and i64 %addr, {item - 1}",
           f"  %rowb = mul i64 %brs, {item}", f"  %rowmis = and i64 %rowb, {vb - 1}",
           "  %bad0 = or i64 %odd, %rowmis", "  %aligned = icmp eq i64 %bad0, 0",
           f"  %lo0 = udiv i64 %mis, {item}", "  %lo = select i1 %aligned, i64 %lo0, i64 0",
           "  %c0 = sub i64 %j0, %lo",                     # column of the first vector's lane 0
           "  %lanes = add i64 %n, %lo",
           f"  %nv0 = add i64 %lanes, {w - 1}", f"  %nvec = udiv i64 %nv0, {w}",
           f"  %lastfull = mul i64 %nvec, {w}", "  %hi0 = sub i64 %lanes, %lastfull", f"  %hi = add i64 %hi0, {w}",
           f"  %pb0 = getelementptr {t}, ptr %b, i64 %c0", f"  %py0 = getelementptr {t}, ptr %y, i64 %c0",
           f"  switch i64 %nvec, label %sweep [{cases}]",
           "sweep:",
           f"  call void @{name}_sweep(i64 %j0, i64 %j1, i64 %K, ptr %x, i64 %xs, ptr %b, i64 %brs, ptr %y)",
           "  br label %exit"]
    args = "i64 %K, ptr %x, i64 %xs, ptr %pb0, i64 %brs, ptr %py0, i64 %lo, i64 %hi"
    for nv in range(1, NV_MAX + 1):
        out += [f"v{nv}:", f"  call void @{name}_b{nv}({args})", "  br label %exit"]
    out += ["exit:", "  ret void", "}"]
    return "\n".join(out)


def module_ir(dtype) -> str:
    """The LLVM module of the one-row product for `dtype` (float32 or float64)."""
    dtype = np.dtype(dtype)
    t, item = gemm._LLVM_TYPE[dtype], dtype.itemsize
    w = max(1, vector_bytes() // item)
    vt, s = f"<{w} x {t}>", _suffix(t)
    name = f"gf_gemv_{dtype.name}"
    parts = [f"declare {vt} @llvm.fma.v{w}{s}({vt}, {vt}, {vt})",
             f"declare {vt} @llvm.masked.load.v{w}{s}.p0(ptr, i32, <{w} x i1>, {vt})",
             f"declare void @llvm.masked.store.v{w}{s}.p0({vt}, ptr, i32, <{w} x i1>)"]
    parts += [_block_ir(t, w, item, nv, f"{name}_b{nv}") for nv in range(1, NV_MAX + 1)]
    parts.append(gemm._gemv_ir(t, w, f"{name}_sweep"))   # rows wider than one block (see above)
    parts.append(_driver_ir(t, w, item, name))
    return "\n\n".join(parts) + "\n"


# every argument declared void*, as gemm.py's: one 64-bit register or stack slot each, and
# ctypes converts an int to void* faster than to int64
_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 8))


@functools.lru_cache(maxsize=None)
def _compiled(dtype: np.dtype):
    from .jit import compile_module

    jit = compile_module(module_ir(dtype))
    return jit, _PROTO(jit.address(f"gf_gemv_{dtype.name}"))


def gemv_function(dtype):
    """fn(j0, j1, K, x_ptr, x_stride, b_ptr, b_k_stride, y_ptr): y[j0:j1] = x @ B[:, j0:j1]
    for one row x (B with unit column stride; strides in elements; K >= 1: with K <= 0 y is
    left as it is, as gemm.py's kernels leave C)."""
    return _compiled(np.dtype(dtype))[1]

