"""The LLVM matrix multiply (compiler/codegen/gemm.py) and the matmul epilogues that run on
it: against numpy over odd shapes, transposes, strided and non-finite inputs; a result
that does not depend on how rows and columns are split (bitwise), so fused matmuls give
the same bits at 1 and 2 threads; differential against opt_level=0."""
import itertools

import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.codegen import gemm
from graphflow.compiler.fusion import epilogue
from graphflow.runtime.pointers import address

SIZES = (1, 3, 17, 64, 100, 257)
RNG = np.random.default_rng(11)


def _llvm(A, B, i0=0, i1=None, j0=0, j1=None, out=None):
    """A @ B (2-D views; B with unit column stride) on the kernel, rows [i0, i1) x cols [j0, j1)."""
    m, k = A.shape
    n = B.shape[1]
    item = A.dtype.itemsize
    out = np.full((m, n), np.nan, A.dtype) if out is None else out
    gemm.block_function(A.dtype)(i0, m if i1 is None else i1, j0, n if j1 is None else j1, k, A.ctypes.data,
                                 A.strides[0] // item, A.strides[1] // item, B.ctypes.data, B.strides[0] // item,
                                 address(out), n)
    return out


def _tol(k, dtype):
    return (2e-5 if dtype == np.float32 else 1e-12) * max(k, 1) ** 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_numpy_on_odd_shapes(dtype):
    for m, n, k in itertools.product(SIZES, SIZES, (1, 17, 257)):
        A = RNG.standard_normal((m, k)).astype(dtype)
        B = RNG.standard_normal((k, n)).astype(dtype)
        ref = A.astype(np.float64) @ B.astype(np.float64)
        got = _llvm(A, B)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, rtol=_tol(k, dtype), atol=_tol(k, dtype), err_msg=f"{m}x{k}@{k}x{n}")


def test_long_k_runs_in_several_blocks():
    """K above the kernel's K block (1024): the accumulator is stored and reloaded between
    blocks, which changes no bit of the FMA chain."""
    A = RNG.standard_normal((19, 2100)).astype(np.float32)
    B = RNG.standard_normal((2100, 40)).astype(np.float32)
    got = _llvm(A, B)
    np.testing.assert_allclose(got, A.astype(np.float64) @ B, rtol=2e-3, atol=2e-3)
    expect = np.zeros((19, 40), np.float32)
    for k in range(2100):   # the same chain, one fused multiply-add at a time (float32 throughout)
        expect = (A[:, k:k + 1].astype(np.float64) * B[k] + expect).astype(np.float32)
    assert np.abs(got - expect).max() <= 1e-3


def test_kernel_reads_strided_and_transposed_a():
    base = RNG.standard_normal((300, 260)).astype(np.float32)
    B = RNG.standard_normal((100, 70)).astype(np.float32)
    for A in (base[:257:2, :100], base[:100, :257].T, base[::-3, 5:105]):
        np.testing.assert_allclose(_llvm(A, B), A @ B, rtol=1e-4, atol=1e-4)


def test_empty_ranges_and_zero_k_write_nothing():
    A = RNG.standard_normal((5, 3)).astype(np.float32)
    B = RNG.standard_normal((3, 20)).astype(np.float32)
    for i0, i1, j0, j1, k in ((0, 5, 0, 20, 0), (3, 3, 0, 20, 3), (0, 5, 7, 7, 3), (4, 2, 0, 20, 3)):
        out = np.full((5, 20), 7.0, np.float32)
        gemm.block_function(np.float32)(i0, i1, j0, j1, k, A.ctypes.data, 3, 1, B.ctypes.data, 20, out.ctypes.data, 20)
        assert (out == 7.0).all()


def test_split_does_not_change_a_single_bit():
    """Any split of rows and columns gives the bits of the whole product (each element is one
    fused multiply-add chain over k in order, whichever tile variant computes it)."""
    A = RNG.standard_normal((257, 300)).astype(np.float32)
    B = RNG.standard_normal((300, 100)).astype(np.float32)
    whole = _llvm(A, B)
    parts = np.full_like(whole, np.nan)
    for i0, i1 in ((0, 1), (1, 7), (7, 130), (130, 257)):
        for j0, j1 in ((0, 5), (5, 64), (64, 100)):
            _llvm(A, B, i0, i1, j0, j1, out=parts)
    assert np.array_equal(whole.view(np.uint32), parts.view(np.uint32))


def test_non_finite_values_propagate():
    A = RNG.standard_normal((17, 33)).astype(np.float32)
    B = RNG.standard_normal((33, 40)).astype(np.float32)
    A[3, 5], A[8, 0], B[7, 30] = np.nan, np.inf, -np.inf
    with np.errstate(invalid="ignore"):
        ref = A @ B
    got = _llvm(A, B)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_copies_any_strides(dtype):
    """Transposed views take the vector transpose for whole tiles and scalar edges."""
    x = RNG.standard_normal((70, 90)).astype(dtype)
    y = RNG.standard_normal((64, 32)).astype(dtype)
    for view in (x.T, x[::2, ::3], x[::-1], x[:0], x[:5, :3].T, y.T, x[:, 1:].T):
        got = gemm.packed(view)
        assert got.flags.c_contiguous and np.array_equal(got, view)


@pytest.mark.parametrize("ta,tb", list(itertools.product((False, True), repeat=2)))
def test_matmul_blocks_all_transposes(ta, tb):
    for m, n, k in ((1, 64, 17), (3, 17, 100), (100, 257, 64), (257, 3, 1), (64, 100, 0), (64, 10, 100),
                    (1, 10, 100), (33, 64, 5)):
        a = RNG.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = RNG.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        ref = (a.T if ta else a) @ (b.T if tb else b)
        out = np.full((m, n), np.nan, np.float32)
        fn = epilogue.block_function("MatMul", {"transpose_a": ta, "transpose_b": tb})(a, b)
        for b0 in range(0, m, 40):   # blocks of rows, as the epilogue runs them
            fn(b0, min(b0 + 40, m), out[b0:b0 + 40])
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4, err_msg=f"{m}x{k}@{k}x{n}")


@pytest.mark.parametrize("ta", [False, True])
def test_swapped_route_gives_the_packed_route_bits(ta):
    """A @ B^T with the smaller A computed as (B @ A^T)^T: every element is the same FMA chain
    as through a packed B^T, so the bits match; blocks of rows of any alignment, and rows of
    `out` with a stride of their own."""
    for m, n, k in ((16, 200, 40), (100, 257, 300), (37, 300, 1000), (128, 512, 512)):
        a = RNG.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = RNG.standard_normal((n, k)).astype(np.float32)
        prepare = epilogue.block_function("MatMul", {"transpose_a": ta, "transpose_b": True})
        assert prepare.route_of(a, b).swapped, (m, n, k)
        ref = _llvm(a.T if ta else a, gemm.packed(b.T))
        out = np.full((m, n + 5), np.nan, np.float32)[:, :n]
        rows = prepare(a, b)
        for b0, b1 in ((0, 16), (16, min(m, 21)), (min(m, 21), m)):
            rows(b0, b1, out[b0:b1])
        assert np.array_equal(out.view(np.uint32), ref.view(np.uint32)), (m, n, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_kernel_stores_the_tiles_product_transposed(dtype):
    """gemm.transposed_function writes (A @ B)^T: the bits of the plain tiles' product, for
    any block of C's rows, odd shapes and one-row tiles, nothing outside the block touched."""
    fn = gemm.transposed_function(dtype)
    for rows, cols, k in ((128, 512, 512), (53, 37, 100), (3, 5, 17), (16, 1, 4), (1, 9, 3), (257, 100, 1100)):
        A = RNG.standard_normal((cols, k)).astype(dtype)     # C's columns are A's rows
        B = RNG.standard_normal((k, rows)).astype(dtype)
        expect = _llvm(A, B).T
        C = np.full((rows, cols + 3), np.nan, dtype)
        for r0 in range(0, rows, 16):
            r1 = min(rows, r0 + 16)
            fn(r0, r1, 0, cols, k, A.ctypes.data, k, 1, B.ctypes.data, rows, C.ctypes.data, (cols + 3))
        assert np.array_equal(C[:, :cols], expect) and np.isnan(C[:, cols:]).all(), (rows, cols, k)


def _dense(ta, tb, m, n, k, strided):
    x = gf.placeholder(gf.float32, (None, None), name="x")
    wv = RNG.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    w = gf.Variable(wv, name="w")
    bias = gf.Variable(RNG.standard_normal(n).astype(np.float32), name="b")
    out = gf.nn.relu(gf.matmul(x, w, transpose_a=ta, transpose_b=tb) + bias)
    xv = RNG.standard_normal((2 * k, 2 * m) if ta else (2 * m, 2 * k)).astype(np.float32)
    xv = xv[::2, ::2] if strided else np.ascontiguousarray(xv[:k, :m] if ta else xv[:m, :k])
    xv.flat[::7] = np.nan
    return out, x, xv


@pytest.mark.parametrize("ta,tb", list(itertools.product((False, True), repeat=2)))
def test_fused_dense_layer_against_opt0_and_across_threads(ta, tb, monkeypatch):
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "TASK_NS", 1)   # split even these small products over 2 threads
    for m, n, k, strided in ((257, 100, 64, False), (17, 257, 100, True), (64, 17, 3, False), (2, 64, 257, True)):
        with gf.Graph().as_default():
            out, x, xv = _dense(ta, tb, m, n, k, strided)
            results = {}
            for level, threads in ((0, 1), (2, 1), (2, 2)):
                with gf.Session(opt_level=level, num_threads=threads) as sess:
                    sess.run(gf.global_variables_initializer())
                    results[level, threads] = sess.run(out, {x: xv})
        np.testing.assert_allclose(results[2, 1], results[0, 1], rtol=1e-4, atol=1e-4)
        assert np.array_equal(results[2, 1].view(np.uint32), results[2, 2].view(np.uint32)), (m, n, k)


def test_softmax_head_epilogue_splits_rows_identically(monkeypatch):
    """A row-kernel epilogue (softmax) computes each chunk's product into scratch: same bits
    at 1 and 2 threads, close to opt_level=0."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "TASK_NS", 1)
    with gf.Graph().as_default():
        x = gf.placeholder(gf.float32, (None, 100), name="x")
        w = gf.Variable(RNG.standard_normal((100, 33)).astype(np.float32))
        out = gf.nn.softmax(gf.matmul(x, w) + 0.5)
        xv = RNG.standard_normal((257, 100)).astype(np.float32)
        results = {}
        for level, threads in ((0, 1), (2, 1), (2, 2)):
            with gf.Session(opt_level=level, num_threads=threads) as sess:
                sess.run(gf.global_variables_initializer())
                results[level, threads] = sess.run(out, {x: xv})
    np.testing.assert_allclose(results[2, 1], results[0, 1], rtol=1e-5, atol=1e-6)
    assert np.array_equal(results[2, 1].view(np.uint32), results[2, 2].view(np.uint32))


def test_lone_matmul_runs_as_a_kernel_of_its_own(monkeypatch):
    """A matmul with no elementwise consumer (a fetched product, a chain of products) is a
    kernel of its own on the LLVM matmul, against opt_level=0 and across threads."""
    from graphflow.compiler.fusion import fused_op

    monkeypatch.setattr(fused_op, "TASK_NS", 1)
    with gf.Graph().as_default():
        x = gf.placeholder(gf.float32, (None, 100), name="x")
        w1 = gf.Variable(RNG.standard_normal((100, 64)).astype(np.float32))
        w2 = gf.Variable(RNG.standard_normal((48, 64)).astype(np.float32))
        h = gf.matmul(x, w1)
        out = gf.matmul(h, w2, transpose_b=True)
        compiled = gf.compile([h, out], feed_list=[x], opt_level=2)
        assert compiled.stats["kernels"] == 2, compiled.report()
        xv = RNG.standard_normal((257, 100)).astype(np.float32)
        results = {}
        for level, threads in ((0, 1), (2, 1), (2, 2)):
            with gf.Session(opt_level=level, num_threads=threads) as sess:
                sess.run(gf.global_variables_initializer())
                results[level, threads] = sess.run([h, out], {x: xv})
    for got, ref, same in zip(results[2, 1], results[0, 1], results[2, 2]):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)
        assert np.array_equal(got.view(np.uint32), same.view(np.uint32))


def test_transposed_kernel_with_the_16_register_tile(monkeypatch):
    """With 16 vector registers (AVX2: 6-row tiles, no power of two) the transposed stores go
    element by element: still the plain tiles' bits, transposed."""
    from graphflow.compiler.codegen.jit import compile_module

    monkeypatch.setattr(gemm, "vector_bytes", lambda: 32)
    assert gemm.TileShape(np.dtype(np.float32)).mr == 6
    jit = compile_module(gemm.transposed_module_ir(np.float32))
    fn = gemm._PROTO(jit.address("gf_gemm_t_float32"))
    plain = gemm._PROTO(compile_module(gemm.module_ir(np.float32)).address("gf_gemm_float32"))
    for rows, cols, k in ((40, 13, 50), (7, 6, 3), (1, 1, 9)):
        A = RNG.standard_normal((cols, k)).astype(np.float32)
        B = RNG.standard_normal((k, rows)).astype(np.float32)
        expect = np.zeros((cols, rows), np.float32)
        plain(0, cols, 0, rows, k, A.ctypes.data, k, 1, B.ctypes.data, rows, expect.ctypes.data, rows)
        C = np.full((rows, cols + 2), np.nan, np.float32)
        fn(0, rows, 0, cols, k, A.ctypes.data, k, 1, B.ctypes.data, rows, C.ctypes.data, cols + 2)
        assert np.array_equal(C[:, :cols], expect.T) and np.isnan(C[:, cols:]).all(), (rows, cols, k)
