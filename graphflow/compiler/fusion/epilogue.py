"""Library ops computed by blocks along the first axis of their result (rows of a matmul,
images of a convolution's batch), so a fused epilogue runs on each block while it is still
in cache (no extra pass over the activations).

Backends dispatch on op type here, outside the op definitions: each entry computes the
result's block [b0, b1) along axis 0 into `out` from the op's inputs and attributes.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ...ops.registry import get_op_def


def _matmul_rows(a: np.ndarray, b: np.ndarray, b0: int, b1: int, out: np.ndarray, *,
                 transpose_a: bool, transpose_b: bool) -> None:
    a_rows = a[:, b0:b1].T if transpose_a else a[b0:b1]
    np.matmul(a_rows, b.T if transpose_b else b, out=out)


def _batch_block(op: str):
    """A block of an op whose batch axis is axis 0 of its first input and of its result."""
    kernel = get_op_def(op).kernel

    def rows(x, *rest_and_range, **attrs):
        *rest, b0, b1, out = rest_and_range
        np.copyto(out, kernel(x[b0:b1], *rest, **attrs))
    return rows


class Blocked(NamedTuple):
    """How to compute blocks of a library op, and for which static shapes that is valid."""

    rows: Callable
    accepts: Callable   # (input shapes, output shape) -> bool


ROW_BLOCKED = {
    "MatMul": Blocked(_matmul_rows, lambda ins, out: len(out) == 2 and all(len(s) == 2 for s in ins)),
    "Conv2D": Blocked(_batch_block("Conv2D"), lambda ins, out: True),
}

BLOCK_BYTES = 1 << 20   # one block of the library result: stays in L2 (1-2 MB) for the epilogue
MATMUL_FLOPS_PER_NS = 60.0   # one core's sgemm through numpy's BLAS, conservatively (W7: 40-118)


def block_size(item_bytes: int, n: int = 0, threads: int = 1) -> int:
    """Indices along axis 0 per block: a block of the library result fits in L2, and `n`
    indices make at least `threads` blocks (each block is one single-threaded library call
    on a pool thread, so W4's 256-row matmuls use both cores)."""
    block = max(1, BLOCK_BYTES // max(1, item_bytes))
    if n and threads > 1:
        block = min(block, -(-n // threads))
    return block


def library_ns(op: str, args: list, attrs) -> float:
    """Estimated time of the library op per index along axis 0 of its result (the pool's
    cost model splits an epilogue only when a task gets ~100 us of work): the flops of one
    matmul row; 0 (the epilogue's own cost decides) for the others."""
    if op != "MatMul":
        return 0.0
    b = args[1]
    k, n = b.shape[::-1] if attrs.get("transpose_b") else b.shape
    return 2.0 * k * n / MATMUL_FLOPS_PER_NS


def block_function(op: str) -> Callable:
    """fn(*args, b0, b1, out, **attrs): block [b0, b1) along axis 0 of library op `op`'s
    result into `out` (looked up once per kernel, not per block)."""
    return ROW_BLOCKED[op].rows

