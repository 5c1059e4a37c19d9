"""Library ops computed by blocks of rows, so a fused epilogue runs on each block while it
is still in cache (no extra pass over the activations).

Backends dispatch on op type here, outside the op definitions: each entry computes rows
[r0, r1) of the op's 2-D result into `out` from the op's inputs and attributes.
"""
from __future__ import annotations

import numpy as np


def _matmul_rows(a: np.ndarray, b: np.ndarray, r0: int, r1: int, out: np.ndarray, *,
                 transpose_a: bool, transpose_b: bool) -> None:
    a_rows = a[:, r0:r1].T if transpose_a else a[r0:r1]
    np.matmul(a_rows, b.T if transpose_b else b, out=out)


ROW_BLOCKED = {"MatMul": _matmul_rows}

BLOCK_BYTES = 256 * 1024   # one block of the library result: stays in L2 for the epilogue


def block_rows(cols: int, itemsize: int) -> int:
    """Rows per block so a block of the library result fits in L2."""
    return max(1, BLOCK_BYTES // max(1, cols * itemsize))


def compute_rows(op: str, args: list, attrs, r0: int, r1: int, out: np.ndarray) -> None:
    """Rows [r0, r1) of library op `op` into `out` (shape (r1 - r0, cols))."""
    ROW_BLOCKED[op](*args, r0, r1, out, **attrs)
