"""The five dtypes graphflow supports, as plain numpy dtypes.

Using numpy's own dtype objects keeps `gf.float32` interchangeable with `np.float32`
everywhere (comparisons, `astype`, feeds) without a conversion table.
"""
from __future__ import annotations

import numpy as np

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool = np.dtype("bool")  # noqa: A001 - the public name mirrors tf.bool

ALL = (float32, float64, int32, int64, bool)
FLOATS = (float32, float64)
INTS = (int32, int64)
NUMERIC = FLOATS + INTS


def as_dtype(value) -> np.dtype:
    """Return the supported numpy dtype named by `value` (a dtype, type or string)."""
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"expected a dtype (one of {_names()}), got {value!r}") from None
    if dt not in ALL:
        raise TypeError(f"unsupported dtype {dt.name}; graphflow supports {_names()}")
    return dt


def is_floating(dt: np.dtype) -> bool:
    return dt.kind == "f"


def is_integer(dt: np.dtype) -> bool:
    return dt.kind in "iu"


def is_bool(dt: np.dtype) -> bool:
    return dt.kind == "b"


def _names() -> str:
    return ", ".join(d.name for d in ALL)
