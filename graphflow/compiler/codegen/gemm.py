"""A register-tiled matrix multiply in LLVM IR: C[i0:i1, j0:j1] = A @ B for one block.

Why our own: numpy's BLAS runs its own threads, which spin after each call and steal the
cores our pool's workers need (W4/W5 at 2 threads ran 2x slower next to them), and each
numpy call on a block costs Python overhead. This kernel runs on the calling thread only,
so the Session's ThreadBudget splits a product into blocks with nothing else spinning.

The IR is generic LLVM vectors (<W x float> of the host vector width), so it is correct
on any target LLVM supports; the tile shape is chosen from the register count (32 vector
registers with AVX-512, else 16). A tile of MR rows x NV vectors of columns keeps
MR*NV accumulators in registers; each step of k loads NV vectors of a row of B (unit
column stride) and broadcasts one element of each of the MR rows of A (any strides, so a
transposed A needs no copy), with one fused multiply-add per accumulator.

Determinism: every element of C is one chain of fused multiply-adds over k = 0, 1, ...,
K-1 in order (K blocks only store and reload the float accumulator, which is exact), in
every tile variant, so the result of an element never depends on how the rows and
columns are split between threads, nor on where its tile lies.

Edges: a tile narrower than NV vectors uses a variant with fewer vectors whose last one is
masked; rows past the end repeat the last row (reading valid memory and storing the very
same bits to the same place), so no variant needs a row guard.

Variants, each in a module of its own compiled on first use: `store_function` applies an
elementwise epilogue in the tiles' stores (an SGD update: no pass over the product), and
`transposed_function` stores the tiles as C^T (a product A' @ B'^T computed as (B' @ A'^T)^T
without packing B'^T). Both keep every element's FMA chain, so their bits are the plain
tiles' followed by the same elementwise ops.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from .target import vector_bytes

# Most k per block (a KC x NR panel of B, 192 KB for float32 with AVX-512's 8x3 tile, stays in
# L2 while every row tile uses it); K is cut into equal blocks of at most KC. Measured on W4/W5
# shapes (one Zen 4 core): KC 128 -> 106 GFLOP/s, 256 -> 110, 512 -> 112, 1024 -> 113 (fewer
# reloads of the C tile).
KC = 1024
MC = 128   # rows per block of A (a 128 x 1024 float32 slice, 512 KB, stays in L2)
# Rows of B a tile prefetches ahead of its sums. The first row tile of a column panel reads
# the panel from L3 or memory (in a training step the other products evict it); the hardware
# prefetchers, one 4 KB page at a time, do not keep up with rows 2 KB apart. W5's step, A/B in
# one process on one Zen 4 core (blocks of steps alternating): 16 rows ahead with C's
# write prefetches (below) 0.947-0.959x, 8 rows 0.981x, 24 0.962x, 32 0.959x; either
# prefetch alone ~0.99x; 2 threads 0.941x; W4 at batch 256 unchanged (1.003x, 1.005x). The
# later tiles' prefetches hit L1 and cost a load slot of the 14 that each k's 12 cycles allow.
B_AHEAD = 16


class TileShape:
    """Rows (MR) and column vectors (NV) of one register tile, lanes per vector (W)."""

    def __init__(self, dtype: np.dtype):
        self.w = max(1, vector_bytes() // dtype.itemsize)
        registers = 32 if vector_bytes() >= 64 else 16
        # MR*NV accumulators + NV loaded vectors + one broadcast must fit the registers. With
        # 32 (AVX-512), measured on one Zen 4 core, alternating, GFLOP/s at 256x784 @ 784x512 /
        # 128x512 @ 512x512 / 784x128 @ 128x512 (A transposed): 8x3 113.5 / 115.5 / 112.5,
        # 6x4 112.4 / 112.4 / 113.2, 7x3 112.3 / 110.9 / 109.3, 4x6 109.6 / 112.0 / 112.8.
        self.mr, self.nv = (8, 3) if registers >= 32 else (6, 2)
        self.nr = self.nv * self.w


_LLVM_TYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


# Epilogues the tiles apply in their stores (`store_function`): name -> IR lines computing
# %{o} from the sum %{n}, D's vector %{d} and the splat scalar %ss, each op rounded as the
# unfused elementwise op computes it (operands in the fused kernel's order). (A dense layer's
# bias and relu here saved ~0.5% of W4 at batch 256, but a kernel that absorbs its epilogue
# must take every product the kernel sees, and one row runs faster on codegen/gemv.py.)
STORES = {
    "update": lambda vt, n, d, o: [f"  {o}_m = fmul {vt} %ss, {n}", f"  {o} = fsub {vt} {d}, {o}_m"],
}


def _tile_ir(t: str, w: int, mr: int, nv: int, masked: bool, name: str, store: str | None = None,
             transposed: bool = False) -> str:
    """One tile: C[0:mr, 0:nv*w] (+)= A[0:mr, 0:kc] @ B[0:kc, 0:nv*w]; the last vector masked
    to `last` lanes when `masked`. Rows r >= rows read and write row rows-1. With a `store`
    (STORES), the K block that finishes the sums (`fin`) stores that epilogue of them.
    `transposed`: the sums, from zero (one K block), are stored as C^T (`_transposed_stores`)."""
    vt = f"<{w} x {t}>"
    lanes = ", ".join(f"i64 {i}" for i in range(w))
    update = store is not None
    extra = f", ptr %d, i64 %drs, {t} %s, i1 %fin" if update else ""
    out = [f"define internal void @{name}(i64 %kc, ptr %a, i64 %ars, i64 %acs, ptr %b, i64 %brs, ptr %c, "
           f"i64 %crs, i64 %rows, i64 %last, i1 %acc{extra}) noinline nounwind {{",
           "entry:", *_splat("%lasts", "i64", w, "%last"),
           f"  %mask = icmp ult <{w} x i64> <{lanes}>, %lasts"]

    def vload(ptr, v, dst):
        if masked and v == nv - 1:
            return _masked_load(dst, t, w, ptr, "%mask")
        return f"  {dst} = load {vt}, ptr {ptr}, align 4"

    for r in range(mr):
        out += [f"  %rl{r} = sub i64 %rows, 1",
                f"  %rc{r} = call i64 @llvm.umin.i64(i64 {r}, i64 %rl{r})",
                f"  %ao{r} = mul i64 %rc{r}, %ars",
                f"  %pa{r} = getelementptr {t}, ptr %a, i64 %ao{r}"]
        if transposed:
            continue
        out += [f"  %co{r} = mul i64 %rc{r}, %crs",
                f"  %pc{r} = getelementptr {t}, ptr %c, i64 %co{r}"]
        for v in range(nv):
            out += [f"  %pc{r}_{v} = getelementptr {t}, ptr %pc{r}, i64 {v * w}",
                    vload(f"%pc{r}_{v}", v, f"%ci{r}_{v}"),
                    f"  %i{r}_{v} = select i1 %acc, {vt} %ci{r}_{v}, {vt} zeroinitializer"]
    # D's lines (to read) and C's (to write: a recycled buffer, cold) come into L2 while the sums
    # run (784 x 512 from 784 x 128^T @ 128 x 512, one Zen 4 core: D's prefetches 966 -> 944 us,
    # the product alone 914, median of 200; C's, in W5's step at 1 thread, see B_AHEAD)
    row_bytes = nv * w * (4 if t == "float" else 8)
    for r in range(mr if update else 0):
        out += [f"  %do{r} = mul i64 %rc{r}, %drs", f"  %pd{r} = getelementptr {t}, ptr %d, i64 %do{r}",
                f"  %pdend{r} = getelementptr i8, ptr %pd{r}, i64 {row_bytes - 1}",
                f"  %pcend{r} = getelementptr i8, ptr %pc{r}_0, i64 {row_bytes - 1}",
                _prefetch(f"%pdend{r}"), _prefetch(f"%pcend{r}", write=True)]
        for v in range(nv):
            out += [f"  %pd{r}_{v} = getelementptr {t}, ptr %pd{r}, i64 {v * w}",
                    _prefetch(f"%pd{r}_{v}"), _prefetch(f"%pc{r}_{v}", write=True)]
    out += ["  br label %loop", "loop:", "  %k = phi i64 [0, %entry], [%k1, %loop]"]
    for r in range(mr):
        for v in range(nv):
            out.append(f"  %s{r}_{v} = phi {vt} [{'zeroinitializer' if transposed else f'%i{r}_{v}'}, %entry], "
                       f"[%n{r}_{v}, %loop]")
    out += ["  %bo = mul i64 %k, %brs", f"  %pb = getelementptr {t}, ptr %b, i64 %bo", "  %ak = mul i64 %k, %acs"]
    for v in range(nv):
        out += [f"  %pb{v} = getelementptr {t}, ptr %pb, i64 {v * w}", vload(f"%pb{v}", v, f"%b{v}")]
    out += [f"  %kf = add i64 %k, {B_AHEAD}", "  %bfo = mul i64 %kf, %brs", f"  %pbf = getelementptr {t}, ptr %b, i64 %bfo"]
    for v in range(nv):   # past B's last row too: a prefetch never faults
        out += [f"  %pbf{v} = getelementptr {t}, ptr %pbf, i64 {v * w}", _prefetch(f"%pbf{v}", locality=3)]
    # A's first and last rows as far ahead: a transposed A (a weight gradient's X^T) is one line
    # per k, 3 KB apart, like B; W5's step at 1 thread 0.970-0.982x (three A/B runs), W4 at batch
    # 256 0.993x, 2 threads unchanged
    out += ["  %akf = mul i64 %kf, %acs"]
    for r in sorted({0, mr - 1}):
        out += [f"  %paf{r} = getelementptr {t}, ptr %pa{r}, i64 %akf", _prefetch(f"%paf{r}", locality=3)]
    for r in range(mr):
        out += [f"  %pak{r} = getelementptr {t}, ptr %pa{r}, i64 %ak", f"  %x{r} = load {t}, ptr %pak{r}, align 4",
                *_splat(f"%xs{r}", t, w, f"%x{r}")]
        for v in range(nv):
            out.append(f"  %n{r}_{v} = call {vt} @llvm.fma.v{w}{_suffix(t)}({vt} %xs{r}, {vt} %b{v}, {vt} %s{r}_{v})")
    out += ["  %k1 = add i64 %k, 1", "  %more = icmp ult i64 %k1, %kc", "  br i1 %more, label %loop, label %done",
            "done:"]
    if update:
        out += _splat("%ss", t, w, "%s")
    if transposed:
        return "\n".join(out + _transposed_stores(t, w, mr, nv, masked) + ["  ret void", "}"])
    for r in range(mr):
        for v in range(nv):
            value = f"%n{r}_{v}"
            if update:   # a clamped row takes its row's D as loaded before that row's store
                load = vload(f"%pd{r}_{v}", v, f"%d{r}_{v}" if r == 0 else f"%dl{r}_{v}")
                out += [load] if r == 0 else [
                    load, f"  %dup{r}_{v} = icmp eq i64 %rc{r}, %rc{r - 1}",
                    f"  %d{r}_{v} = select i1 %dup{r}_{v}, {vt} %d{r - 1}_{v}, {vt} %dl{r}_{v}"]
                out += [
                        *STORES[store](vt, f"%n{r}_{v}", f"%d{r}_{v}", f"%u{r}_{v}"),
                        f"  %o{r}_{v} = select i1 %fin, {vt} %u{r}_{v}, {vt} %n{r}_{v}"]
                value = f"%o{r}_{v}"
            if masked and v == nv - 1:
                out.append(_masked_store(value, t, w, f"%pc{r}_{v}", "%mask"))
            else:
                out.append(f"  store {vt} {value}, ptr %pc{r}_{v}, align 4")
    out += ["  ret void", "}"]
    return "\n".join(out)


def _prefetch(ptr: str, write: bool = False, locality: int = 2) -> str:
    return f"  call void @llvm.prefetch.p0(ptr {ptr}, i32 {int(write)}, i32 {locality}, i32 1)"


def _transposed_stores(t: str, w: int, mr: int, nv: int, masked: bool) -> list:
    """The tile's sums %n{r}_{v} (mr rows of nv vectors) stored as C^T: lane l of vector v of
    row r at c + (v*w + l)*crs + r, lanes of rows >= `rows` and, in the masked last vector,
    lanes >= `last` left alone. Each block of mr lanes of the mr row vectors is transposed
    in registers (`_transposed`, when mr is a power of two dividing w) into mr vectors of mr
    lanes, one masked store per row of C."""
    rt = f"<{mr} x {t}>"
    out = [*_splat("%rowsv", "i64", mr, "%rows"),
           f"  %rowmask = icmp ult <{mr} x i64> <{', '.join(f'i64 {i}' for i in range(mr))}>, %rowsv"]
    square = mr > 1 and not mr & (mr - 1) and w % mr == 0
    for v in range(nv):
        for h in range(w // mr if square else 1):
            lanes = range(h * mr, (h + 1) * mr) if square else range(w)
            if square:   # the mr x mr block of lanes h*mr.. of every row, transposed
                block = ", ".join(f"i32 {lane}" for lane in lanes)
                out += [f"  %h{v}_{h}_{r} = shufflevector <{w} x {t}> %n{r}_{v}, <{w} x {t}> poison, "
                        f"<{mr} x i32> <{block}>" for r in range(mr)]
                rounds, cols = _transposed(t, mr, f"%x{v}_{h}_", [f"%h{v}_{h}_{r}" for r in range(mr)])
                out += rounds
            else:        # element by element (a one-row tile, a tile shape that is no power of two)
                cols = []
                for lane in lanes:
                    prev = "poison"
                    for r in range(mr):
                        out += [f"  %e{v}_{lane}_{r} = extractelement <{w} x {t}> %n{r}_{v}, i64 {lane}",
                                f"  %g{v}_{lane}_{r} = insertelement {rt} {prev}, {t} %e{v}_{lane}_{r}, i64 {r}"]
                        prev = f"%g{v}_{lane}_{r}"
                    cols.append(prev)
            for lane, col in zip(lanes, cols):
                j = v * w + lane
                mask = "%rowmask"
                if masked and v == nv - 1:
                    out += [f"  %in{j} = icmp ult i64 {lane}, %last",
                            f"  %m{j} = select i1 %in{j}, <{mr} x i1> %rowmask, <{mr} x i1> zeroinitializer"]
                    mask = f"%m{j}"
                out += [f"  %to{j} = mul i64 {j}, %crs", f"  %pt{j} = getelementptr {t}, ptr %c, i64 %to{j}",
                        _masked_store(col, t, mr, f"%pt{j}", mask)]
    return out


def _suffix(t: str) -> str:
    return "f32" if t == "float" else "f64"


def _masked_load(dst: str, t: str, w: int, ptr: str, mask: str, align: int = 4) -> str:
    vt = f"<{w} x {t}>"
    return (f"  {dst} = call {vt} @llvm.masked.load.v{w}{_suffix(t)}.p0(ptr {ptr}, i32 {align}, <{w} x i1> {mask}, "
            f"{vt} zeroinitializer)")


def _masked_store(value: str, t: str, w: int, ptr: str, mask: str, align: int = 4) -> str:
    return (f"  call void @llvm.masked.store.v{w}{_suffix(t)}.p0(<{w} x {t}> {value}, ptr {ptr}, i32 {align}, "
            f"<{w} x i1> {mask})")


def _splat(dst: str, t: str, w: int, value: str) -> list:
    """dst = <w x t> with every lane `value` (insert + zero shuffle: one broadcast)."""
    return [f"  {dst}_i = insertelement <{w} x {t}> poison, {t} {value}, i64 0",
            f"  {dst} = shufflevector <{w} x {t}> {dst}_i, <{w} x {t}> poison, <{w} x i32> zeroinitializer"]


def _driver_ir(t: str, shape: TileShape, name: str, store: str | None = None, transposed: bool = False) -> str:
    """gemm(i0, i1, j0, j1, K, a, ars, acs, b, brs, c, crs): K blocks outermost, then blocks
    of MC rows, then column panels of NR (a KC x NR panel of B is reused by every row tile of
    the block), then row tiles of MR. With a `store`, three more arguments (d, drs, s_ptr):
    K is then one block and the tiles store that epilogue (see `store_function`). `transposed`: the
    arguments start j0, j1, i0, i1, K is one block and C^T is stored (`transposed_function`)."""
    update = store is not None
    mr, nv, w, nr = shape.mr, shape.nv, shape.w, shape.nr
    # one row (a matrix-vector product) has its own tile: MR clamped rows would do MR times the work
    variants = [(r, v, m) for r in (0, 1) for v in range(1, nv + 1) for m in (0, 1)]
    cases = " ".join(f"i64 {r * 4 * nv + v * 2 + m}, label %v{r}_{v}_{m}" for r, v, m in variants)
    ranges = "i64 %j0, i64 %j1, i64 %i0, i64 %i1" if transposed else "i64 %i0, i64 %i1, i64 %j0, i64 %j1"
    out = [f"define void @{name}({ranges}, i64 %K, ptr %a, i64 %ars, i64 %acs, "
           f"ptr %b, i64 %brs, ptr %c, i64 %crs{', ptr %d, i64 %drs, ptr %sp' if update else ''}) nounwind {{",
           "entry:",
           "  %empty = icmp sge i64 %i0, %i1", "  %empty2 = icmp sge i64 %j0, %j1", "  %empty3 = icmp sle i64 %K, 0",
           "  %e1 = or i1 %empty, %empty2", "  %e = or i1 %e1, %empty3",
           f"  %nkb0 = add i64 %K, {KC - 1}",
           # (a store epilogue reads D where it writes C: one K block, no partial sums in C)
           "  %nkb1 = add i64 1, 0" if transposed or update else f"  %nkb1 = udiv i64 %nkb0, {KC}",
           "  %nkb = call i64 @llvm.smax.i64(i64 %nkb1, i64 1)",   # K <= 0 exits below: no division by 0
           "  %kcb0 = add i64 %K, %nkb", "  %kcb1 = sub i64 %kcb0, 1", "  %kcb = udiv i64 %kcb1, %nkb",
           *([f"  %sv = load {t}, ptr %sp, align 4"] if update else []),
           "  br i1 %e, label %exit, label %kloop",
           "kloop:",
           "  %kb = phi i64 [0, %entry], [%kb1, %knext]",
           "  %krem = sub i64 %K, %kb",
           "  %kc = call i64 @llvm.smin.i64(i64 %krem, i64 %kcb)",
           "  %acc = icmp sgt i64 %kb, 0",
           *(["  %kend = add i64 %kb, %kcb", "  %fin = icmp sge i64 %kend, %K"] if update else []),
           "  %ako = mul i64 %kb, %acs", f"  %ak = getelementptr {t}, ptr %a, i64 %ako",
           "  %bko = mul i64 %kb, %brs", f"  %bk = getelementptr {t}, ptr %b, i64 %bko",
           "  br label %icloop",
           "icloop:",   # MC rows at a time: their KC-slice of A stays in L2 across the column panels
           "  %ic = phi i64 [%i0, %kloop], [%icend, %icnext]",
           f"  %icx = add i64 %ic, {MC}", "  %icend = call i64 @llvm.smin.i64(i64 %icx, i64 %i1)",
           "  br label %jloop",
           "jloop:",
           "  %jb = phi i64 [%j0, %icloop], [%jb1, %jnext]",
           "  %jrem = sub i64 %j1, %jb",
           f"  %ncols = call i64 @llvm.smin.i64(i64 %jrem, i64 {nr})",
           f"  %nvec = udiv i64 %ncols, {w}", f"  %tail = urem i64 %ncols, {w}",
           "  %hastail = icmp ne i64 %tail, 0", "  %tailv = zext i1 %hastail to i64",
           "  %nv = add i64 %nvec, %tailv",
           "  %nvm1 = sub i64 %nv, 1",
           f"  %lastfull = mul i64 %nvm1, {w}", "  %last = sub i64 %ncols, %lastfull",
           "  %sel2 = shl i64 %nv, 1", "  %sel = or i64 %sel2, %tailv",
           f"  %pbj = getelementptr {t}, ptr %bk, i64 %jb",
           "  br label %iloop",
           "iloop:",
           "  %ib = phi i64 [%ic, %jloop], [%ib1, %inext]",
           "  %irem = sub i64 %icend, %ib",
           f"  %rows = call i64 @llvm.smin.i64(i64 %irem, i64 {mr})",
           "  %aio = mul i64 %ib, %ars", f"  %pa = getelementptr {t}, ptr %ak, i64 %aio",
           f"  %cio = mul i64 {'%jb' if transposed else '%ib'}, %crs", f"  %pci = getelementptr {t}, ptr %c, i64 %cio",
           f"  %pc = getelementptr {t}, ptr %pci, i64 {'%ib' if transposed else '%jb'}",
           *(["  %dio = mul i64 %ib, %drs", f"  %pdi = getelementptr {t}, ptr %d, i64 %dio",
              f"  %pd = getelementptr {t}, ptr %pdi, i64 %jb"] if update else []),
           "  %many = icmp ugt i64 %rows, 1", "  %manyv = zext i1 %many to i64",
           f"  %rsel = mul i64 %manyv, {4 * nv}", "  %fsel = add i64 %sel, %rsel",
           f"  switch i64 %fsel, label %inext [{cases}]"]
    call_args = ("i64 %kc, ptr %pa, i64 %ars, i64 %acs, ptr %pbj, i64 %brs, ptr %pc, i64 %crs, i64 %rows, "
                 "i64 %last, i1 %acc" + (f", ptr %pd, i64 %drs, {t} %sv, i1 %fin" if update else ""))
    for r, v, m in variants:
        out += [f"v{r}_{v}_{m}:", f"  call void @{name}_r{mr if r else 1}_t{v}{'m' if m else ''}({call_args})",
                "  br label %inext"]
    out += ["inext:",
            f"  %ib1 = add i64 %ib, {mr}", "  %imore = icmp slt i64 %ib1, %icend",
            "  br i1 %imore, label %iloop, label %jnext",
            "jnext:",
            f"  %jb1 = add i64 %jb, {nr}", "  %jmore = icmp slt i64 %jb1, %j1",
            "  br i1 %jmore, label %jloop, label %icnext",
            "icnext:",
            "  %icmore = icmp slt i64 %icend, %i1",
            "  br i1 %icmore, label %icloop, label %knext",
            "knext:",
            "  %kb1 = add i64 %kb, %kcb", "  %kmore = icmp slt i64 %kb1, %K",
            "  br i1 %kmore, label %kloop, label %exit",
            "exit:", "  ret void", "}"]
    return "\n".join(out)


GEMV_UNROLL = 4   # rows of B one sweep over y adds in (4 sequential streams)


def _gemv_ir(t: str, w: int, name: str) -> str:
    """gemv(j0, j1, K, x, xs, b, brs, y): y[j0:j1] = x @ B[:, j0:j1] for one row x (element
    stride xs). Sweeps y (in L1) once per GEMV_UNROLL rows of B, so B streams row after row,
    as a BLAS gemv does; each y[j] is the same FMA chain over k in order as in the tiles
    (so one row gives the same bits whichever kernel computes it)."""
    vt, s, U = f"<{w} x {t}>", _suffix(t), GEMV_UNROLL
    lanes = ", ".join(f"i64 {i}" for i in range(w))

    def sweep(label: str, u: int, nxt: str) -> list:
        """y[j0:j1] (+)= sum over u rows from %k{label}, the first sweep (k == 0) from zero."""
        lines = [f"{label}:", f"  %k{label} = phi i64 [{{kin}}], [%k{label}n, %{label}jd]",
                 f"  %first{label} = icmp eq i64 %k{label}, 0"]
        for i in range(u):
            lines += [f"  %kk{label}{i} = add i64 %k{label}, {i}", f"  %xo{label}{i} = mul i64 %kk{label}{i}, %xs",
                      f"  %px{label}{i} = getelementptr {t}, ptr %x, i64 %xo{label}{i}",
                      f"  %x{label}{i} = load {t}, ptr %px{label}{i}, align 4",
                      *_splat(f"%xb{label}{i}", t, w, f"%x{label}{i}"),
                      f"  %bo{label}{i} = mul i64 %kk{label}{i}, %brs",
                      f"  %pb{label}{i} = getelementptr {t}, ptr %b, i64 %bo{label}{i}"]
        lines += [f"  br label %{label}j",
                  f"{label}j:", f"  %j{label} = phi i64 [%j0, %{label}], [%j{label}n, %{label}j]",
                  f"  %rem{label} = sub i64 %j1, %j{label}", *_splat(f"%rs{label}", "i64", w, f"%rem{label}"),
                  f"  %m{label} = icmp ult <{w} x i64> <{lanes}>, %rs{label}",
                  f"  %py{label} = getelementptr {t}, ptr %y, i64 %j{label}",
                  _masked_load(f"%yl{label}", t, w, f"%py{label}", f"%m{label}"),
                  f"  %a{label}_0 = select i1 %first{label}, {vt} zeroinitializer, {vt} %yl{label}"]
        for i in range(u):
            lines += [f"  %pbj{label}{i} = getelementptr {t}, ptr %pb{label}{i}, i64 %j{label}",
                      _masked_load(f"%b{label}{i}", t, w, f"%pbj{label}{i}", f"%m{label}"),
                      f"  %a{label}_{i + 1} = call {vt} @llvm.fma.v{w}{s}({vt} %xb{label}{i}, {vt} %b{label}{i}, "
                      f"{vt} %a{label}_{i})"]
        lines += [_masked_store(f"%a{label}_{u}", t, w, f"%py{label}", f"%m{label}"),
                  f"  %j{label}n = add i64 %j{label}, {w}", f"  %jm{label} = icmp slt i64 %j{label}n, %j1",
                  f"  br i1 %jm{label}, label %{label}j, label %{label}jd",
                  f"{label}jd:", f"  %k{label}n = add i64 %k{label}, {u}",
                  f"  %kr{label} = sub i64 %K, %k{label}n", f"  %km{label} = icmp sge i64 %kr{label}, {u}",
                  f"  br i1 %km{label}, label %{label}, label %{nxt}"]
        return lines

    main = sweep("u", U, "tailchk")
    main[1] = main[1].format(kin="0, %start")
    tail = sweep("s", 1, "exit")
    tail[1] = tail[1].format(kin="%kt, %tailchk")
    return "\n".join(
        [f"define void @{name}(i64 %j0, i64 %j1, i64 %K, ptr %x, i64 %xs, ptr %b, i64 %brs, ptr %y) nounwind {{",
         "entry:", "  %e1 = icmp sge i64 %j0, %j1", "  %e2 = icmp sle i64 %K, 0", "  %e = or i1 %e1, %e2",
         f"  %big = icmp sge i64 %K, {U}", "  br i1 %e, label %exit, label %start",
         "start:", "  br i1 %big, label %u, label %s0",
         "s0:", "  br label %tailchk"]
        + main
        + ["tailchk:", "  %kt = phi i64 [0, %s0], [%kun, %ujd]",
           "  %left = icmp slt i64 %kt, %K", "  br i1 %left, label %s, label %exit"]
        + tail + ["exit:", "  ret void", "}"])


PACK_TILE = 16   # a 16 x 16 tile of the source is read and written while in L1


def _transposed(t: str, w: int, prefix: str, vectors: list) -> tuple:
    """(IR lines, names): the w vectors of w lanes `vectors` transposed (lane r of result i
    is lane i of vector r) in log2(w) rounds of w two-source shuffles, each round swapping
    the off-diagonal blocks of one size; results named {prefix}{round}_{index}."""
    vt, out, cur, step, size = f"<{w} x {t}>", [], list(vectors), 0, 1
    while size < w:
        nxt = list(cur)
        for r in range(w):
            if r & size:
                continue
            p = r + size
            keep = ", ".join(f"i32 {lane if not lane & size else w + lane - size}" for lane in range(w))
            swap = ", ".join(f"i32 {lane + size if not lane & size else w + lane}" for lane in range(w))
            nxt[r], nxt[p] = f"{prefix}{step + 1}_{r}", f"{prefix}{step + 1}_{p}"
            out += [f"  {nxt[r]} = shufflevector {vt} {cur[r]}, {vt} {cur[p]}, <{w} x i32> <{keep}>",
                    f"  {nxt[p]} = shufflevector {vt} {cur[r]}, {vt} {cur[p]}, <{w} x i32> <{swap}>"]
        cur, step, size = nxt, step + 1, size * 2
    return out, cur


def _transpose_ir(t: str, w: int, name: str) -> str:
    """packt(rows, cols, src, scs, dst, drs) for rows and cols multiples of w and a source
    contiguous along its rows (a transposed view, element stride scs between columns):
    each w x w tile is w vector loads, log2(w) rounds of w two-source shuffles (each round
    swaps the off-diagonal blocks of one size), and w vector stores."""
    vt = f"<{w} x {t}>"
    out = [f"define void @{name}(i64 %rows, i64 %cols, ptr %src, i64 %scs, ptr %dst, i64 %drs) nounwind {{",
           "entry:", "  %e1 = icmp sle i64 %rows, 0", "  %e2 = icmp sle i64 %cols, 0", "  %e = or i1 %e1, %e2",
           "  br i1 %e, label %exit, label %ib",
           "ib:", "  %i0 = phi i64 [0, %entry], [%i0n, %ibn]", "  br label %jb",
           "jb:", "  %j0 = phi i64 [0, %ib], [%j0n, %jb]"]
    for j in range(w):
        out += [f"  %jj{j} = add i64 %j0, {j}", f"  %so{j} = mul i64 %jj{j}, %scs", f"  %sp{j} = add i64 %so{j}, %i0",
                f"  %ps{j} = getelementptr {t}, ptr %src, i64 %sp{j}", f"  %v0_{j} = load {vt}, ptr %ps{j}, align 4"]
    rounds, rows = _transposed(t, w, "%v", [f"%v0_{j}" for j in range(w)])
    out += rounds
    for i in range(w):
        out += [f"  %ii{i} = add i64 %i0, {i}", f"  %do{i} = mul i64 %ii{i}, %drs", f"  %dp{i} = add i64 %do{i}, %j0",
                f"  %pd{i} = getelementptr {t}, ptr %dst, i64 %dp{i}",
                f"  store {vt} {rows[i]}, ptr %pd{i}, align 4"]
    out += [f"  %j0n = add i64 %j0, {w}", "  %jm = icmp slt i64 %j0n, %cols", "  br i1 %jm, label %jb, label %ibn",
            "ibn:", f"  %i0n = add i64 %i0, {w}", "  %im = icmp slt i64 %i0n, %rows",
            "  br i1 %im, label %ib, label %exit",
            "exit:", "  ret void", "}"]
    return "\n".join(out)


def _pack_ir(t: str, name: str) -> str:
    """pack(rows, cols, src, srs, scs, dst, drs): dst (rows x cols, row stride drs) = src with
    element strides (srs, scs), by PACK_TILE-square tiles, so a strided source is read a few
    cache lines at a time instead of one line per element (numpy's copy of a transposed
    512 x 512 float32 array took ~600 us here, half the product it feeds). A transposed
    source takes `_transpose_ir` for all but its edges."""
    T = PACK_TILE
    return "\n".join([
        f"define void @{name}(i64 %rows, i64 %cols, ptr %src, i64 %srs, i64 %scs, ptr %dst, i64 %drs) nounwind {{",
        "entry:",
        "  %e1 = icmp sle i64 %rows, 0", "  %e2 = icmp sle i64 %cols, 0", "  %e = or i1 %e1, %e2",
        "  br i1 %e, label %exit, label %ib",
        "ib:", "  %i0 = phi i64 [0, %entry], [%i0n, %ibn]",
        f"  %i0e = add i64 %i0, {T}", "  %i1 = call i64 @llvm.smin.i64(i64 %i0e, i64 %rows)", "  br label %jb",
        "jb:", "  %j0 = phi i64 [0, %ib], [%j0n, %jbn]",
        f"  %j0e = add i64 %j0, {T}", "  %j1 = call i64 @llvm.smin.i64(i64 %j0e, i64 %cols)", "  br label %il",
        "il:", "  %i = phi i64 [%i0, %jb], [%in, %iln]",
        "  %so = mul i64 %i, %srs", f"  %srow = getelementptr {t}, ptr %src, i64 %so",
        "  %do = mul i64 %i, %drs", f"  %drow = getelementptr {t}, ptr %dst, i64 %do", "  br label %jl",
        "jl:", "  %j = phi i64 [%j0, %il], [%jn, %jl]",
        "  %sj = mul i64 %j, %scs", f"  %ps = getelementptr {t}, ptr %srow, i64 %sj",
        f"  %x = load {t}, ptr %ps, align 4", f"  %pd = getelementptr {t}, ptr %drow, i64 %j",
        f"  store {t} %x, ptr %pd, align 4",
        "  %jn = add i64 %j, 1", "  %jm = icmp slt i64 %jn, %j1", "  br i1 %jm, label %jl, label %iln",
        "iln:", "  %in = add i64 %i, 1", "  %im = icmp slt i64 %in, %i1", "  br i1 %im, label %il, label %jbn",
        "jbn:", f"  %j0n = add i64 %j0, {T}", "  %jm2 = icmp slt i64 %j0n, %cols",
        "  br i1 %jm2, label %jb, label %ibn",
        "ibn:", f"  %i0n = add i64 %i0, {T}", "  %im2 = icmp slt i64 %i0n, %rows",
        "  br i1 %im2, label %ib, label %exit",
        "exit:", "  ret void", "}"])


def _copy_ir(t: str, w: int, name: str, pack: str, packt: str) -> str:
    """copy(rows, cols, src, srs, scs, dst, drs): dst = src (element strides srs, scs) as
    `copy_into` makes it, in one call: a source contiguous along its rows (a transposed view)
    by the vector transpose `packt` for all but its right and bottom edges, else by `pack`.
    One call, so a binding (fusion/direct.py) packs an operand with its data pointer alone."""
    head = [f"define void @{name}(i64 %rows, i64 %cols, ptr %src, i64 %srs, i64 %scs, ptr %dst, i64 %drs) nounwind {{",
            "entry:"]
    plain = [f"  call void @{pack}(i64 %rows, i64 %cols, ptr %src, i64 %srs, i64 %scs, ptr %dst, i64 %drs)",
             "  ret void"]
    if w == 1:
        return "\n".join(head + plain + ["}"])
    return "\n".join(head + [
        "  %tr = icmp eq i64 %srs, 1", "  br i1 %tr, label %transposed, label %plain",
        "transposed:",
        f"  %rr = urem i64 %rows, {w}", "  %r = sub i64 %rows, %rr",
        f"  %cr = urem i64 %cols, {w}", "  %c = sub i64 %cols, %cr",
        f"  call void @{packt}(i64 %r, i64 %c, ptr %src, i64 %scs, ptr %dst, i64 %drs)",
        "  %so = mul i64 %c, %scs", f"  %s1 = getelementptr {t}, ptr %src, i64 %so",
        f"  %d1 = getelementptr {t}, ptr %dst, i64 %c",
        f"  call void @{pack}(i64 %rows, i64 %cr, ptr %s1, i64 %srs, i64 %scs, ptr %d1, i64 %drs)",
        f"  %s2 = getelementptr {t}, ptr %src, i64 %r",
        "  %do = mul i64 %r, %drs", f"  %d2 = getelementptr {t}, ptr %dst, i64 %do",
        f"  call void @{pack}(i64 %rr, i64 %c, ptr %s2, i64 %srs, i64 %scs, ptr %d2, i64 %drs)",
        "  ret void",
        "plain:", *plain, "}"])


def _declarations(t: str, w: int) -> list:
    s, vt = _suffix(t), f"<{w} x {t}>"
    return [f"declare {vt} @llvm.fma.v{w}{s}({vt}, {vt}, {vt})",
            f"declare {vt} @llvm.masked.load.v{w}{s}.p0(ptr, i32, <{w} x i1>, {vt})",
            f"declare void @llvm.masked.store.v{w}{s}.p0({vt}, ptr, i32, <{w} x i1>)",
            "declare i64 @llvm.umin.i64(i64, i64)", "declare i64 @llvm.smin.i64(i64, i64)",
            "declare i64 @llvm.smax.i64(i64, i64)", "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)"]


def _gemm_ir(t: str, shape: TileShape, name: str, store: str | None, transposed: bool = False) -> list:
    """The driver `name` and its tile variants."""
    parts = [_tile_ir(t, shape.w, mr, v, masked, f"{name}_r{mr}_t{v}{'m' if masked else ''}", store, transposed)
             for mr in (1, shape.mr) for v in range(1, shape.nv + 1) for masked in (False, True)]
    return parts + [_driver_ir(t, shape, name, store, transposed)]


def module_ir(dtype) -> str:
    """The LLVM module of the gemm for `dtype` (float32 or float64)."""
    dtype = np.dtype(dtype)
    t = _LLVM_TYPE[dtype]
    shape = TileShape(dtype)
    parts = _declarations(t, shape.w) + _gemm_ir(t, shape, f"gf_gemm_{dtype.name}", None)
    parts.append(_pack_ir(t, f"gf_pack_{dtype.name}"))
    parts.append(_transpose_ir(t, shape.w, f"gf_packt_{dtype.name}"))
    parts.append(_copy_ir(t, shape.w, f"gf_copy_{dtype.name}", f"gf_pack_{dtype.name}", f"gf_packt_{dtype.name}"))
    return "\n\n".join(parts) + "\n"


def store_module_ir(dtype, store: str) -> str:
    """The module of `store_function(dtype, store)` (its own: compiled when a kernel uses it)."""
    dtype = np.dtype(dtype)
    t = _LLVM_TYPE[dtype]
    shape = TileShape(dtype)
    return "\n\n".join(_declarations(t, shape.w) + _gemm_ir(t, shape, f"gf_gemm_{store}_{dtype.name}", store)) + "\n"


def _proto(nargs: int):
    # every argument declared void*: the same 64-bit register or stack slot as the i64
    # parameters, and ctypes converts a Python int to void* ~2x faster than to int64
    # (0.7 vs 1.3 us for the gemm's 12; negative strides wrap to the two's complement)
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nargs))


_PROTO, _COPY_PROTO = _proto(12), _proto(7)


@functools.lru_cache(maxsize=None)
def _compiled(dtype: np.dtype):
    from .jit import compile_module

    jit = compile_module(module_ir(dtype))
    return jit, _PROTO(jit.address(f"gf_gemm_{dtype.name}")), _COPY_PROTO(jit.address(f"gf_copy_{dtype.name}"))


def transposed_module_ir(dtype) -> str:
    """The module of `transposed_function(dtype)`."""
    dtype = np.dtype(dtype)
    t = _LLVM_TYPE[dtype]
    shape = TileShape(dtype)
    s = _suffix(t)
    stores = [f"declare void @llvm.masked.store.v{n}{s}.p0(<{n} x {t}>, ptr, i32, <{n} x i1>)"
              for n in sorted({1, shape.mr} - {shape.w})]
    return "\n\n".join(_declarations(t, shape.w) + stores
                       + _gemm_ir(t, shape, f"gf_gemm_t_{dtype.name}", None, transposed=True)) + "\n"


@functools.lru_cache(maxsize=None)
def _compiled_transposed(dtype: np.dtype):
    from .jit import compile_module

    jit = compile_module(transposed_module_ir(dtype))
    return jit, _PROTO(jit.address(f"gf_gemm_t_{dtype.name}"))


def transposed_function(dtype):
    """fn(r0, r1, c0, c1, K, a_ptr, ars, acs, b_ptr, brs, c_ptr, crs): C[r0:r1, c0:c1] =
    (A @ B)^T, i.e. C[r, c] = sum_k A[c, k] B[k, r] (A any strides, B unit column stride, C
    rows of stride crs): the register tiles of A @ B transposed in registers as they are
    stored, K in one block. Why: A' @ B'^T with the smaller A' is computed as (B' @ A'^T)^T
    (fusion/epilogue.py's swapped route), B' read by broadcasts instead of packed, and this
    writes C itself: one compiled call per block of C's rows, no scratch, no transposing
    pass. Bits: each element the same FMA chain as A' @ B'^T through the plain tiles."""
    return _compiled_transposed(np.dtype(dtype))[1]


@functools.lru_cache(maxsize=None)
def _compiled_store(dtype: np.dtype, store: str):
    from .jit import compile_module

    jit = compile_module(store_module_ir(dtype, store))
    return jit, _proto(15)(jit.address(f"gf_gemm_{store}_{dtype.name}"))


def store_function(dtype, store: str):
    """fn(i0, i1, j0, j1, K, a_ptr, ars, acs, b_ptr, brs, c_ptr, crs, d_ptr, d_row_stride,
    s_ptr): the block of C = the epilogue `store` (STORES) of A @ B applied in the tiles'
    stores: "update", D - s*(A @ B) with s the scalar at s_ptr (an SGD update fused into its
    weight gradient: no pass over the gradient, which W5 paid ~30-50 us per weight matrix
    for). D may be C itself, an update in place (a variable's value rewritten, no second
    1-2 MB array to stream: W5's step 0.96x): K is one block (no partial sums stored in C),
    each element of D is loaded before its C is stored, and the clamped rows of an edge tile
    take the D their row loaded; D must not overlap C otherwise. Each element is the
    product's own FMA chain and then the epilogue's ops rounded one by one, so the bits are
    those of the product followed by the unfused elementwise ops."""
    return _compiled_store(np.dtype(dtype), store)[1]


def block_function(dtype):
    """fn(i0, i1, j0, j1, K, a_ptr, a_row_stride, a_k_stride, b_ptr, b_k_stride, c_ptr,
    c_row_stride) for `dtype` (strides in elements; B and C have unit column stride)."""
    return _compiled(np.dtype(dtype))[1]


def packed(x: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of the 2-D array `x` (any element strides, e.g. a transposed view).
    Measured (512 x 512 float32, transposed): numpy's copy 590 us, scalar tiles 112 us, the
    vector transpose below 51 us (60 us median with its allocation on the shared 2-vCPU VM)."""
    out = np.empty(x.shape, x.dtype)
    copy_into(out, x)
    return out


def copy_into(out: np.ndarray, x: np.ndarray) -> None:
    """out[...] = x for 2-D arrays of one dtype and shape, `x` with any element strides, `out`
    rows of unit column stride (else numpy's copy), by the tiles of `packed`."""
    item = x.dtype.itemsize
    if not x.size or any(s % item for s in x.strides) or out.strides[1] != item or out.strides[0] % item:
        np.copyto(out, x)
        return
    copy_function(x.dtype)(*x.shape, x.ctypes.data, x.strides[0] // item, x.strides[1] // item, out.ctypes.data,
                           out.strides[0] // item)


def copy_function(dtype):
    """fn(rows, cols, src_ptr, src_row_stride, src_col_stride, dst_ptr, dst_row_stride) (strides
    in elements, any sign): the copy `copy_into` makes, as one compiled call."""
    return _compiled(np.dtype(dtype))[2]


def row_tile(dtype) -> int:
    """Rows of a register tile: a block of rows starting on a multiple computes no extra rows."""
    return TileShape(np.dtype(dtype)).mr


def panel_width(dtype) -> int:
    """Columns of a register tile: column ranges on multiples of it waste no lanes."""
    return TileShape(np.dtype(dtype)).nr


def lanes(dtype) -> int:
    """Elements of `dtype` per vector of the tiles (one vector is the narrowest tile)."""
    return TileShape(np.dtype(dtype)).w


SUPPORTED = frozenset(_LLVM_TYPE)
