"""Library ops computed by blocks along the first axis of their result (rows of a matmul,
images of a convolution's batch), so a fused epilogue runs on each block while it is still
in cache (no extra pass over the activations).

Backends dispatch on op type here, outside the op definitions: each entry makes, once per
kernel, a `prepare(*inputs)` that runs once per call (checks, packing) and returns
fn(b0, b1, out) computing the result's block [b0, b1) along axis 0 into `out`. A matmul's
`prepare.bound(a, b)` instead gives the whole product as compiled calls on data pointers
(`Product`), which a kernel keeps bound between runs (direct.py), split into chunks of rows
over threads as one compiled job (fused_op, codegen/pool.py), with no per-call Python.

A float matmul runs on graphflow's own LLVM kernel (codegen/gemm.py) rather than numpy's
BLAS, chosen by measurement on this project's machine (AMD EPYC Zen 4, one thread, median
of 15-25 alternating calls, `OPENBLAS_NUM_THREADS=1`, float32): 256x784 @ 784x512 113
GFLOP/s vs 104 for numpy; 128x512 @ 512x512 115 vs 104; 784x128 @ 128x512 (a weight
gradient, A transposed) 110 vs 103; 4x784 @ 784x512 49 us vs 113 us; 128x512 @ (512x512)^T
703 us vs 795 (B transposed: packed first, 51 us; now computed transposed, B's rows read as
they are: see Route.swapped). A single row runs on codegen/gemv.py
(B's loads aligned, each row read in one pass: W4's three products at batch 1 in 29.8 us,
36.3 through gemm.py's gemv, which streamed B as BLAS does; 1x784 @ 784x512 22.4 us like
numpy, the register tiles 34). Results narrower than one vector still gain (W4's softmax head,
256x512 @ 512x10 with its epilogue: 66 us vs 99; W5's, 128 rows: 50 vs 54; A transposed,
512x128 @ 128x10: 41 vs 41), down to half a vector; narrower ones stay on numpy (128x512 @
512x4 with a relu: 15.5 us vs 24.5). Any K takes the tiles, even K = 1, where OpenBLAS is at
its slowest (128x1 @ 1x512 with a mask: 91 -> 14.6 us; 128x10 @ 10x512, W5's dh2 = dz3 @ W3^T:
31 -> 23 us hot, 54 -> 30 us inside the training step). The LLVM
kernel also never wakes BLAS's own threads, whose spinning steals the cores the Session's
pool splits blocks over.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from ...ops.registry import get_op_def
from ...runtime.fpstate import IGNORE, quiet_fp, restore_fp
from ...runtime.pointers import address
from ...runtime.threads import limit_blas_threads
from ..codegen import chain, gemm, gemv
from .direct import Scratch
from .kernel_ir import FULL


def _quiet(rows: Callable) -> Callable:
    """A numpy block function that runs with floating-point warnings off (IEEE results, like
    the compiled loops; the LLVM kernels never touch numpy's error state)."""
    def quiet(b0: int, b1: int, out: np.ndarray) -> None:
        tok = quiet_fp(IGNORE)
        try:
            rows(b0, b1, out)
        finally:
            restore_fp(tok)
    return quiet


def _numpy_rows(A: np.ndarray, B: np.ndarray) -> Callable:
    """Blocks of A @ B by numpy's BLAS, on one BLAS thread each (the blocks are spread over
    the Session's pool; the plan gives BLAS its own setting back after the run)."""
    def rows(b0: int, b1: int, out: np.ndarray) -> None:
        limit_blas_threads(1)
        np.matmul(A[b0:b1], B, out=out)
    return _quiet(rows)


class Route(NamedTuple):
    """How the LLVM kernels compute a product C = op(A) @ op(B) (strides in elements)."""

    pack: bool       # the kernel's B is copied first (its rows loaded as vectors need unit stride)
    fn: Callable     # gemm.block_function or gemv.gemv_function
    m: int
    n: int
    k: int
    ars: int         # the kernel's A: row and k strides
    acs: int
    brs: int         # the kernel's B: k stride (as packed)
    align: int       # rows of C a chunk of rows starts on, wasting no work
    swapped: bool    # fn (gemm.transposed_function) computes C^T = op(B)^T @ op(A)^T (A, B above)
    one_row: bool    # fn is the one-row kernel (gemv's arguments)
    dtype: np.dtype


def _matmul_route(dtype, a_shape, a_strides, b_shape, b_strides, transpose_a: bool, transpose_b: bool,
                  tiles: bool = False):
    """How a product of operands with these shapes and strides is computed: None (numpy), or
    a Route; with `tiles`, the register tiles wherever they can take the operands (a store
    epilogue needs them). Static per shapes and strides, so `_matmul_preparer` caches it."""
    if dtype not in gemm.SUPPORTED:
        return None
    item = dtype.itemsize
    (m, k), a_st = (a_shape[::-1], a_strides[::-1]) if transpose_a else (a_shape, a_strides)
    (_, n), b_st = (b_shape[::-1], b_strides[::-1]) if transpose_b else (b_shape, b_strides)
    if any(s % item for s in a_st) or k == 0:   # (the tiles store nothing for k == 0: numpy's zeros)
        return None
    if not tiles and 2 * n < gemm.lanes(dtype):
        return None
    if m == 2 and not tiles:
        # Two rows fill a quarter of a register tile and numpy's BLAS streams B once for both:
        # W4's MLP at batch 2 took 114 us through the tile vs 75 us through numpy (1 thread,
        # /tmp/smallb.py in one process); from 3 rows on the tile wins (116 vs 180 us).
        return None
    pack = n > 1 and b_st[1] != item or b_st[0] % item != 0   # the kernel loads rows of B as vectors
    one_row = m == 1 and not tiles
    fn = gemv.gemv_function(dtype) if one_row else gemm.block_function(dtype)
    if pack and m >= gemm.lanes(dtype) and k <= gemm.KC and not tiles and not any(s % item for s in b_st):
        # C^T = op(B)^T @ op(A)^T reads op(B)'s rows by broadcasts (any strides) and packs op(A)^T
        # unless its rows are contiguous, its tiles stored transposed into C (K in one block):
        # cheaper than packing op(B) when A is the smaller (W5's dX = dZ @ W^T, 128x512 @
        # (512x512)^T: 648 -> 610 us, one Zen 4 core; the bits are the same, each element the
        # same FMA chain)
        pack_a = a_st[0] != item
        if not pack_a or m < n:
            return Route(pack_a, gemm.transposed_function(dtype), m, n, k, b_st[1] // item, b_st[0] // item,
                         m if pack_a else a_st[1] // item, gemm.lanes(dtype), True, False, dtype)
    return Route(pack, fn, m, n, k, a_st[0] // item, a_st[1] // item, n if pack else b_st[0] // item,
                 gemm.row_tile(dtype), False, one_row, dtype)


class Product(NamedTuple):
    """A whole product C = op(A) @ op(B) as compiled calls on data pointers (a binding's
    markers, direct.py), into a C-contiguous C."""

    calls: Callable   # (*operand pointers, pc) -> [(function, arguments)]: copies of an operand the
    #                   tiles read packed (into Scratch buffers), then the product, with C's rows at
    #                   its arguments 0, 1 and its columns at 2, 3 (the one-row kernel: columns at 0, 1)
    route: Route


def _packing(x: np.ndarray) -> Callable | None:
    """pack(ptr) -> (the call copying a 2-D array of x's shape and strides at `ptr` into a
    Scratch buffer, that buffer's marker): a B the tiles read packed, per run, in compiled
    code (gemm.copy_function); None for strides that are not whole elements."""
    item = x.dtype.itemsize
    if any(st % item for st in x.strides):
        return None
    (rows, cols), (srs, scs) = x.shape, (st // item for st in x.strides)
    fn = gemm.copy_function(x.dtype)

    def pack(ptr) -> tuple:
        buf = Scratch((rows, cols), x.dtype)
        return (fn, (rows, cols, ptr, srs, scs, buf, cols)), buf
    return pack


def _bound(route: Route, op_a: np.ndarray, op_b: np.ndarray, fn: Callable) -> Product | None:
    """The `Product` of `route` for operands laid out as op_a and op_b, computed by `fn` (the
    route's kernel, or a store variant of it taking more arguments after C's, passed to
    `calls` after pc); None when the operand to pack cannot be."""
    kernel_b = op_a.T if route.swapped else op_b   # (the swapped route's B is op(A)^T)
    pack = _packing(kernel_b) if route.pack else None
    if route.pack and pack is None:
        return None
    m, n, k, ars, acs, brs = route.m, route.n, route.k, route.ars, route.acs, route.brs

    def calls(pa, pb, pc, *tail) -> list:
        tile_a, tile_b = (pb, pa) if route.swapped else (pa, pb)   # (a view starts where its base does)
        packs = []
        if pack is not None:
            copy, tile_b = pack(tile_b)
            packs.append(copy)
        if route.one_row:
            return [*packs, (fn, (0, n, k, tile_a, acs, tile_b, brs, pc, *tail))]
        return [*packs, (fn, (0, m, 0, n, k, tile_a, ars, acs, tile_b, brs, pc, n, *tail))]
    return Product(calls, route)


ROUTES_MAX = 64   # shapes/strides remembered per kernel
# numpy's route copies a small transposed B first. It was measured for K below one vector, which
# now takes the tiles; on the narrow results left to numpy it is mixed (one Zen 4 core, with a
# relu: 256x64 @ (7x64)^T 21.0 -> 15.0 us, 128x512 @ (4x512)^T 15.2 -> 18.3 us), so it stays.
SMALL_B_COPY_BYTES = 64 << 10


def _matmul_preparer(transpose_a: bool, transpose_b: bool, tiles: bool = False) -> Callable:
    """prepare(a, b) for one kernel's matmul: the route of each new shape/stride combination
    is worked out once (a dict hit afterwards), then bound to this call's data pointers.
    `prepare.bound(a, b)` gives the whole product as compiled calls on data pointers instead.
    `tiles`: as `_matmul_route`'s."""
    routes: dict = {}

    def route_of(a: np.ndarray, b: np.ndarray):
        key = (a.shape, a.strides, b.shape, b.strides, a.dtype, b.dtype)
        route = routes.get(key, False)
        if route is False:
            route = None if a.dtype != b.dtype else _matmul_route(a.dtype, a.shape, a.strides, b.shape, b.strides,
                                                                   transpose_a, transpose_b, tiles)
            if len(routes) >= ROUTES_MAX:
                routes.clear()
            routes[key] = route
        return route

    def prepare(a: np.ndarray, b: np.ndarray) -> Callable:
        route = route_of(a, b)
        if route is None:
            op_b = b.T if transpose_b else b
            if not op_b.flags.c_contiguous and op_b.nbytes <= SMALL_B_COPY_BYTES:
                op_b = np.ascontiguousarray(op_b)
            return _numpy_rows(a.T if transpose_a else a, op_b)
        if route.swapped:
            return _swapped_rows(route, a.T if transpose_a else a, b.T if transpose_b else b)
        fn, n, k, ars, acs, brs = route.fn, route.n, route.k, route.ars, route.acs, route.brs
        if route.pack:
            b = gemm.packed(b.T if transpose_b else b)
        pa, pb = address(a), address(b)   # a transposed view starts where its base does
        if route.one_row:
            def rows(b0: int, b1: int, out: np.ndarray) -> None:
                fn(0, n, k, pa, acs, pb, brs, address(out))
        else:
            item = a.dtype.itemsize

            def rows(b0: int, b1: int, out: np.ndarray) -> None:
                crs = out.strides[0] // item
                # the kernel indexes C by absolute row: shift the block's pointer back to "row 0"
                fn(b0, b1, 0, n, k, pa, ars, acs, pb, brs, address(out) - b0 * crs * item, crs)
            rows.align = route.align   # blocks starting on a tile edge waste no rows
        rows.keep = b   # a packed copy of B lives as long as the function
        return rows

    def bound(a: np.ndarray, b: np.ndarray) -> Product | None:
        """The whole product for operands of a's and b's shapes and strides as compiled calls
        on data pointers (`Product`), so a caller may keep them while the pointers hold; None
        on numpy's route."""
        route = route_of(a, b)
        if route is None:
            return None
        return _bound(route, a.T if transpose_a else a, b.T if transpose_b else b, route.fn)

    prepare.bound, prepare.route_of = bound, route_of
    return prepare


def split_columns(budget, route: Route, call: tuple) -> tuple:
    """The product `call` (function, arguments) of `route`'s argument layout as it is, or,
    when a split pays (`column_parts`), one chain entry running it over column ranges on the
    budget's threads (budget.parallel_entry: no Python between them)."""
    fn, args = call
    dtype = route.dtype
    step = gemm.lanes(dtype) if route.one_row else gemm.row_tile(dtype) if route.swapped else gemm.panel_width(dtype)
    parts = column_parts(budget, route.m, route.n, route.k, dtype.itemsize, step)
    if parts == 1:
        return call
    at = 0 if route.one_row else 2
    entry = budget.parallel_entry([(chain.address_of(fn), args, at, at + 1, _column_table(route.n, step, parts))])
    return call if entry is None else entry


def absorbed(ir) -> tuple | None:
    """(prepare, input slots) computing the whole result of the epilogue kernel `ir` in its
    product's register-tile stores, when its epilogue is one the gemm applies there
    (gemm.STORES), else None: the SGD update of a weight gradient, D - s*(A @ B) with s a
    constant (W5's training step: its separate pass over a 784 x 512 gradient cost ~30-50 us
    of the ~1 ms product). `prepare(a, b, d)` -> rows(b0, b1, out) like a product's, with
    `direct(a, b, d, budget)`; the kernel runs no epilogue after it, so the product always
    takes the register tiles (any K, any rows: a small batch makes a small K). A dense
    layer's bias and relu in the stores saved ~0.5% of W4 at batch 256 but would cost batch
    1 its one-row kernel (46 -> 80 us, the epilogue then by numpy): not absorbed."""
    lib = ir.library
    if ir.kind != "epilogue" or lib is None or ir.reductions or len(ir.outputs) != 1 or \
            ir.instrs[lib].op != "MatMul":
        return None
    n = len(ir.inputs)
    slot = {i + n: ins for i, ins in enumerate(ir.instrs)}
    product, dtype = lib + n, np.dtype(ir.instrs[lib].dtype)
    if dtype not in gemm.SUPPORTED or any(np.dtype(ins.dtype) != dtype for ins in ir.instrs):
        return None
    match = _update_of(ir, slot, product)
    if match is None:
        return None
    store, d, scale = match
    attrs = ir.instrs[lib].attrs
    a, b = ir.instrs[lib].args
    return _store_preparer(store, attrs.get("transpose_a", False), attrs.get("transpose_b", False),
                           np.asarray(scale, dtype).reshape(1)), (a, b, d)


def _input(ir, slot: int, shape: tuple) -> bool:
    """Whether `slot` is an input of the kernel read whole, of static shape `shape`."""
    return slot < len(ir.inputs) and ir.inputs[slot].form == FULL and tuple(ir.inputs[slot].shape) == shape


def _update_of(ir, slot: dict, product: int) -> tuple | None:
    """("update", D's slot, s) for an epilogue Sub(D, Mul(s, product)), s a constant."""
    if len(ir.instrs) != 4:
        return None
    sub = slot[ir.outputs[0]]
    mul = slot.get(sub.args[1]) if sub.op == "Sub" else None
    if mul is None or mul.op != "Mul" or product not in mul.args:
        return None
    const = slot.get(mul.args[0] if mul.args[1] == product else mul.args[1])
    if const is None or not const.is_const or np.size(const.attrs["value"]) != 1 or \
            not _input(ir, sub.args[0], tuple(slot[product].shape)):
        return None
    return "update", sub.args[0], const.attrs["value"]


def _two_pass(store: str, d: np.ndarray, s: np.ndarray) -> Callable:
    """epilogue(b0, b1, p, out): rows [b0, b1) of the store `store` of the product rows `p`
    into `out` by numpy (the gemm's ops, rounded as it rounds them)."""
    return {"update": lambda b0, b1, p, out: np.subtract(d[b0:b1], np.multiply(s[0], p, out=p), out=out)}[store]


def _store_preparer(store: str, transpose_a: bool, transpose_b: bool, s: np.ndarray) -> Callable:
    """prepare(a, b, d) -> rows(b0, b1, out): rows [b0, b1) of the epilogue `store` of A @ B
    (gemm.STORES, scalar s) into `out`, in the gemm's stores (`gemm.store_function`) where
    the product takes the LLVM tiles and D their layout, else the product's rows then the
    epilogue by numpy (the same IEEE roundings either way)."""
    product = _matmul_preparer(transpose_a, transpose_b, tiles=True)

    def d_fits(route: Route, d: np.ndarray, item: int) -> bool:
        return d.shape == (route.m, route.n) and d.strides[1] == item and d.strides[0] % item == 0

    def in_two_passes(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> Callable:
        rows, epilogue = product(a, b), _two_pass(store, d, s)

        def two_pass(b0: int, b1: int, out: np.ndarray) -> None:
            p = np.empty_like(out) if np.may_share_memory(out, d) else out   # (D is read after the product)
            rows(b0, b1, p)
            tok = quiet_fp(IGNORE)
            try:
                epilogue(b0, b1, p, out)
            finally:
                restore_fp(tok)
        two_pass.align = getattr(rows, "align", 1)
        return two_pass

    def prepare(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> Callable:
        route = product.route_of(a, b)
        item = a.dtype.itemsize
        if route is None or d.dtype != a.dtype or not d_fits(route, d, item):
            return in_two_passes(a, b, d)
        n, k, ars, acs, brs = route.n, route.k, route.ars, route.acs, route.brs
        fn = gemm.store_function(a.dtype, store)
        tiles_b = gemm.packed(b.T if transpose_b else b) if route.pack else b
        pa, pb, pd, ps = address(a), address(tiles_b), address(d), address(s)
        drs = d.strides[0] // item
        shared: list = []   # the two-pass function, made for an `out` overlapping D

        def rows(b0: int, b1: int, out: np.ndarray) -> None:
            crs = out.strides[0] // item
            pc = address(out) - b0 * crs * item
            # (the stores take D itself as C, an update in place, but no other overlap)
            if (pc != pd or crs != drs) and np.may_share_memory(out, d):
                if not shared:
                    shared.append(in_two_passes(a, b, d))
                shared[0](b0, b1, out)
                return
            fn(b0, b1, 0, n, k, pa, ars, acs, pb, brs, pc, crs, pd, drs, ps)

        rows.align = route.align
        rows.keep = tiles_b, d
        return rows

    def bound(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> Product | None:
        """The whole result as the product's `bound` gives it, calls(pa, pb, pd, pc), into a
        C-contiguous result that is D itself (an update in place) or does not overlap it;
        None where the stores cannot take it."""
        route = product.route_of(a, b)
        if route is None or d.dtype != a.dtype or not d_fits(route, d, a.dtype.itemsize):
            return None
        inner = _bound(route, a.T if transpose_a else a, b.T if transpose_b else b,
                       gemm.store_function(a.dtype, store))
        if inner is None:
            return None
        drs, ps = d.strides[0] // a.dtype.itemsize, address(s)   # (s lives with `prepare`)
        return Product(lambda pa, pb, pd, pc: inner.calls(pa, pb, pc, pd, drs, ps), route)

    prepare.bound, prepare.route_of = bound, product.route_of
    return prepare


def _swapped_rows(route: Route, op_a: np.ndarray, op_b: np.ndarray) -> Callable:
    """rows(b0, b1, out) of C = op_a @ op_b by a swapped route: the register tiles of
    C^T = op_b^T @ op_a^T stored transposed into C's rows [b0, b1), one compiled call per
    block (gemm.transposed_function)."""
    fn, n, k, item = route.fn, route.n, route.k, op_a.dtype.itemsize
    kernel_b = gemm.packed(op_a.T) if route.pack else op_a.T
    pa, pb = address(op_b), address(kernel_b)   # (a transposed view starts where its base does)
    args = (k, pa, route.ars, route.acs, pb, route.brs)

    def rows(b0: int, b1: int, out: np.ndarray) -> None:
        crs = out.strides[0] // item   # (the kernel indexes C by absolute row, as the plain route's)
        fn(b0, b1, 0, n, *args, address(out) - b0 * crs * item, crs)
    rows.align = route.align   # (columns of C^T on whole vectors)
    rows.keep = kernel_b
    return rows


# A product's columns are split over threads when B is at least this big: a 512 x 256 float32
# B streams in ~8 us from L3 on one Zen 4 core, and the compiled hand-off of a chain entry
# (budget.parallel_entry) costs ~1 us. On this project's 2-vCPU VM, whose cores share L3
# bandwidth, 512 x 512 took 11.6 us whole and 7.1 split (4 calls: 46 vs 28 us); W4 at batch
# 1 on 2 threads 28.7 us split, 34.6 us not (/tmp/s4/ab.py w4b1 2 no_split, 80 rounds). A
# one-time timing used to decide this per machine; it said "no" whenever the pool's workers
# were still starting, or another library's threads spun on the other core (right after a
# BLAS call), so a whole process kept W4 at one thread's speed.
SPLIT_MIN_BYTES = 512 << 10


def column_parts(budget, m: int, n: int, k: int, item: int, step: int) -> int:
    """Column ranges (multiples of `step`) a product of one block is split into: one per
    thread when B's bytes (what a few rows' product streams) reach SPLIT_MIN_BYTES. Every
    element is one FMA chain over k whatever its range, so the split never changes bits."""
    threads = budget.num_threads
    if threads < 2 or k * n * item < SPLIT_MIN_BYTES or n < 2 * step:
        return 1
    return min(threads, n // step)


def _column_table(n: int, step: int, parts: int) -> np.ndarray:
    """(start, end) pairs of `parts` column ranges covering [0, n), edges on multiples of `step`."""
    per = -(-(-(-n // step)) // parts) * step
    return np.array([(min(n, i * per), min(n, (i + 1) * per)) for i in range(parts)], np.int64).reshape(-1)

def _batch_preparer(op: str) -> Callable:
    """Blocks of an op whose batch axis is axis 0 of its first input and of its result."""
    kernel = get_op_def(op).kernel

    def preparer(**attrs):
        def prepare(x, *rest):
            return _quiet(lambda b0, b1, out: np.copyto(out, kernel(x[b0:b1], *rest, **attrs)))
        return prepare
    return preparer


class Blocked(NamedTuple):
    """How to compute blocks of a library op, and for which static shapes that is valid."""

    preparer: Callable   # (**attrs) -> prepare(*inputs) -> fn(b0, b1, out): once per kernel, per call
    accepts: Callable    # (input shapes, output shape) -> bool
    alone: bool          # worth a kernel even with no epilogue (the LLVM matmul beats a BLAS call)


ROW_BLOCKED = {
    "MatMul": Blocked(_matmul_preparer, lambda ins, out: len(out) == 2 and all(len(s) == 2 for s in ins), True),
    "Conv2D": Blocked(_batch_preparer("Conv2D"), lambda ins, out: True, False),
}

BLOCK_BYTES = 1 << 20   # one block of the library result: stays in L2 (1-2 MB) for the epilogue
MATMUL_FLOPS_PER_NS = 60.0   # one core's sgemm, conservatively (W7: 40-118)


def block_size(item_bytes: int) -> int:
    """Indices along axis 0 per block: a block of the library result fits in L2."""
    return max(1, BLOCK_BYTES // max(1, item_bytes))


CHUNKS = 8   # chunks of a product split over threads: enough to rebalance a slowed core
# Rows per chunk at least: each chunk streams all of B again; one Zen 4 core, 256x784 @
# 784x512 as one call 1835 us, in blocks of 30 rows 1865, of 18 rows 1900.
MIN_CHUNK_ROWS = 24


def task_rows(n: int, row_ns: float, task_ns: float) -> int:
    """Rows per parallel chunk of an n-row result costing `row_ns` per row: about `task_ns`
    of work at least, and about CHUNKS chunks, so that threads claim them dynamically
    (W4 at 256 rows: chunks of 32). Independent of the thread count."""
    return max(MIN_CHUNK_ROWS, math.ceil(task_ns / max(row_ns, 1e-9)), -(-n // CHUNKS))


def library_ns(op: str, args: list, attrs) -> float:
    """Estimated time of the library op per index along axis 0 of its result (the pool's
    cost model splits an epilogue only when a task gets ~100 us of work): the flops of one
    matmul row; 0 (the epilogue's own cost decides) for the others."""
    if op != "MatMul":
        return 0.0
    b = args[1]
    k, n = b.shape[::-1] if attrs.get("transpose_b") else b.shape
    return 2.0 * k * n / MATMUL_FLOPS_PER_NS


def block_function(op: str, attrs) -> Callable:
    """prepare(*inputs) -> fn(b0, b1, out) for one kernel's library op `op` with these
    attributes: the per-call setup (checks, packing), returning the function that computes
    a block [b0, b1) along axis 0 of the result into `out` (made once per kernel)."""
    return ROW_BLOCKED[op].preparer(**attrs)
