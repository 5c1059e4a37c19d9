"""`one_hot`: a composite (compare the indices with a range, then cast or select), so it
fuses with its consumer and out-of-range indices simply match nothing (all off_value)."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .array_ops import range as range_
from .build import convert_to_tensor, normalize_axis
from .composite import CompositeDef, register_composite
from .math_api import cast, equal, where
from .shape_ops import expand_dims, reshape


def one_hot(indices, depth, on_value=None, off_value=None, axis=-1, dtype=None, name=None):
    """A tensor with a new axis of size `depth` holding `on_value` (1) at each index and
    `off_value` (0) elsewhere; float32 unless `dtype` or the on/off values say otherwise."""
    idx = convert_to_tensor(indices)
    if idx.dtype not in _dt.INTS:
        raise TypeError(f"one_hot: indices '{idx.name}' must be int32 or int64, got {idx.dtype.name}")
    if idx.shape is None:
        raise ValueError(f"one_hot: the rank of '{idx.name}' must be known")
    depth = int(depth)
    if depth < 0:
        raise ValueError(f"one_hot: depth must be >= 0, got {depth}")
    if dtype is None:
        given = next((v for v in (on_value, off_value) if v is not None), None)
        dtype = _dt.as_dtype(given.dtype) if hasattr(given, "dtype") else _dt.float32
    dtype = _dt.as_dtype(dtype)
    axis = normalize_axis(-1 if axis is None else axis, len(idx.shape) + 1)
    with idx.graph.name_scope(name or "one_hot"):
        positions = range_(depth, dtype=idx.dtype)
        if axis != len(idx.shape):
            positions = reshape(positions, (depth,) + (1,) * (len(idx.shape) - axis))
        mask = equal(expand_dims(idx, axis), positions)
        if on_value is None and off_value is None:
            return cast(mask, dtype)
        on = convert_to_tensor(1 if on_value is None else on_value, dtype)
        off = convert_to_tensor(0 if off_value is None else off_value, dtype)
        return where(mask, on, off)


def _one_hot_reference(indices, *, depth, axis=-1):
    out = (np.expand_dims(indices, -1) == np.arange(depth)).astype(np.float32)
    return np.moveaxis(out, -1, axis)


register_composite(CompositeDef(
    name="one_hot", build=lambda indices, **attrs: one_hot(indices, **attrs), reference=_one_hot_reference,
    sample=("index",), dtypes=_dt.INTS, attrs_for_test=({"depth": 4}, {"depth": 3, "axis": 0})))
