"""The one-row product kernel (codegen/gemv.py): numpy's x @ B to rounding, the same bits as
gemm.py's register tiles (one FMA chain per element), whatever column range a thread gets,
for odd sizes, strided x, B with a row stride above its width and misaligned starts (the
kernel aligns its loads by masking lanes outside the columns: those are never touched)."""
from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np
import pytest

from graphflow.compiler.codegen import gemm, gemv

DTYPES = [np.float32, np.float64]


def _operands(rng, dtype, k: int, n: int, offset: int = 0, pad: int = 0, x_step: int = 1):
    """x (element stride x_step) and B (k x n, row stride n + pad) starting `offset` elements
    into a buffer, so its rows sit at every alignment the tests want."""
    raw = rng.standard_normal(k * (n + pad) + offset + 16).astype(dtype)
    b = raw[offset:offset + k * (n + pad)].reshape(k, n + pad)[:, :n]
    x = rng.standard_normal(k * x_step).astype(dtype)[::x_step]
    return x, b


def _gemv(x, b, j0: int = 0, j1: int | None = None, out=None):
    n = b.shape[1]
    j1 = n if j1 is None else j1
    item = b.dtype.itemsize
    y = np.full(n, 7, b.dtype) if out is None else out
    gemv.gemv_function(b.dtype)(j0, j1, b.shape[0], x.ctypes.data, x.strides[0] // item, b.ctypes.data,
                                b.strides[0] // item, y.ctypes.data)
    return y


def _tiles(x, b):
    """The same row through gemm.py's register tiles (the batch > 1 path)."""
    k, n = b.shape
    item = b.dtype.itemsize
    y = np.empty((1, n), b.dtype)
    gemm.block_function(b.dtype)(0, 1, 0, n, k, x.ctypes.data, 0, x.strides[0] // item, b.ctypes.data,
                                 b.strides[0] // item, y.ctypes.data, n)
    return y[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3, 17, 784])
@pytest.mark.parametrize("n", [1, 3, 17, 512, 1023])
def test_matches_numpy_and_the_tiles_bitwise(dtype, k, n):
    rng = np.random.default_rng(k * 7919 + n)
    for offset, pad, x_step in [(0, 0, 1), (1, 0, 2), (3, 5, 1), (4, 16, 3)]:
        x, b = _operands(rng, dtype, k, n, offset, pad, x_step)
        y = _gemv(x, b)
        want = x.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(y, want, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=(1e-4 if dtype == np.float32 else 1e-12) * np.sqrt(k))
        np.testing.assert_array_equal(y, _tiles(x, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_ranges_give_the_same_bits_and_leave_the_rest(dtype):
    """A thread's range [j0, j1) computes exactly those columns, with the bits of the whole."""
    rng = np.random.default_rng(1)
    x, b = _operands(rng, dtype, 37, 1023, offset=3, pad=1)
    whole = _gemv(x, b)
    for j0, j1 in [(0, 1), (0, 512), (512, 1023), (5, 6), (17, 700), (1022, 1023), (300, 300)]:
        y = _gemv(x, b, j0, j1)
        want = np.full(1023, 7, dtype)
        want[j0:j1] = whole[j0:j1]
        np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_and_signed_zero_follow_the_fma_chain(dtype):
    rng = np.random.default_rng(2)
    x, b = _operands(rng, dtype, 40, 33, offset=1)
    b[3, 5], b[7, 9], x[11] = np.nan, np.inf, -np.inf
    y = _gemv(x, b)
    np.testing.assert_array_equal(y, _tiles(x, b))
    assert np.isnan(y[5]) and np.isnan(y).sum() >= 1
    zero = _gemv(np.zeros(5, dtype), -np.ones((5, 3), dtype))
    assert not np.signbit(zero).any()   # fma chain from +0.0: 0 * -1 + 0 = +0, as in the tiles


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [20, 1000])
def test_no_rows_leave_y_alone(dtype, n):
    """K <= 0 writes nothing, as gemm.py's kernels (the matmul route never passes it)."""
    y = np.full(n, 7, dtype)
    gemv.gemv_function(dtype)(0, n, 0, 0, 1, 0, n, y.ctypes.data)
    np.testing.assert_array_equal(y, np.full(n, 7, dtype))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_lanes_never_touch_memory_past_the_operands(dtype):
    """B's last row and y end where an unreadable page starts: the masked last vectors must
    not fault (the first vector's masked lanes lie in B's first line, always mapped)."""
    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    item = np.dtype(dtype).itemsize
    k, n = 9, 21
    for name in ("b", "y"):
        region = mmap.mmap(-1, 2 * page)
        base = ctypes.addressof(ctypes.c_char.from_buffer(region))
        try:
            assert libc.mprotect(base + page, page, 0) == 0
            count = k * n if name == "b" else n
            guarded = np.frombuffer(region, dtype, count, page - count * item)
            rng = np.random.default_rng(3)
            x, b = _operands(rng, dtype, k, n, offset=1)
            if name == "b":
                guarded[:] = b.ravel()
                b = guarded.reshape(k, n)
                y = _gemv(x, b)
            else:
                y = _gemv(x, b, out=guarded)
            np.testing.assert_array_equal(y, _tiles(x, b))
        finally:
            libc.mprotect(base + page, page, 3)   # readable and writable again (unmapped when collected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [17, 512, 1023])
def test_reversed_rows_and_x(dtype, n):
    """Negative strides (B[::-1], x[::-1] views): the alignment test holds for every row."""
    rng = np.random.default_rng(n)
    x, b = _operands(rng, dtype, 33, n, offset=5)
    xr, br = x[::-1], b[::-1]
    y = _gemv(xr, br)
    np.testing.assert_array_equal(y, _tiles(np.ascontiguousarray(xr), np.ascontiguousarray(br)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_row_products_route_here(dtype):
    """A matmul of one row (a layer at batch 1) runs this kernel (fusion/epilogue.py's route)."""
    from graphflow.compiler.fusion import epilogue

    a, b = np.ones((1, 784), dtype), np.ones((784, 512), dtype)
    route = epilogue._matmul_route(a.dtype, a.shape, a.strides, b.shape, b.strides, False, False)
    assert route.fn is gemv.gemv_function(dtype)
