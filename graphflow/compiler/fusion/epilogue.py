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


def block_size(item_bytes: int) -> int:
    """Indices along axis 0 per block, so a block of the library result fits in L2."""
    return max(1, BLOCK_BYTES // max(1, item_bytes))


def block_function(op: str) -> Callable:
    """fn(*args, b0, b1, out, **attrs): block [b0, b1) along axis 0 of library op `op`'s
    result into `out` (looked up once per kernel, not per block)."""
    return ROW_BLOCKED[op].rows

