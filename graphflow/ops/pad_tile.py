"""Ops that grow a tensor by repeating or surrounding it: pad (constant, reflect,
symmetric) and tile, each with the op that folds its gradient back."""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, convert_to_tensor, python_value_to_array
from .registry import OpDef, OpKind, TensorSpec, register
from .slicing import slice_tensor

_NP_MODE = {"CONSTANT": "constant", "REFLECT": "reflect", "SYMMETRIC": "symmetric"}


# ---- Pad ----

def _pad_infer(specs, attrs):
    (x,) = specs
    pads, mode = attrs["paddings"], attrs["mode"]
    if x.shape is None:
        return TensorSpec((None,) * len(pads), x.dtype)
    if len(pads) != len(x.shape):
        raise ValueError(f"paddings has {len(pads)} rows, the input has rank {len(x.shape)} (shape {x.shape})")
    out = []
    for k, (d, (lo, hi)) in enumerate(zip(x.shape, pads)):
        if d is not None and mode != "CONSTANT":
            limit = d - 1 if mode == "REFLECT" else d
            if lo > limit or hi > limit:
                raise ValueError(f"{mode} padding ({lo}, {hi}) of dimension {k} must be at most {limit} "
                                 f"for a dimension of size {d}")
        out.append(None if d is None else d + lo + hi)
    return TensorSpec(tuple(out), x.dtype)


def _pad_kernel(x, *, paddings, mode, constant_values):
    if not paddings:
        return np.array(x)
    if mode == "CONSTANT":
        return np.pad(x, paddings, mode="constant", constant_values=constant_values)
    return np.pad(x, paddings, mode=_NP_MODE[mode])


def _pad_grad(op, dy):
    x = op.inputs[0]
    if x.dtype.kind != "f":
        return [None]
    pads, mode = op.attrs["paddings"], op.attrs["mode"]
    if mode == "CONSTANT":
        return [slice_tensor(dy, tuple(slice(lo, -hi if hi else None) for lo, hi in pads))]
    return [apply_op("MirrorPadGrad", [dy, x], {"paddings": pads, "mode": mode})]


register(OpDef(type="Pad", default_name="Pad", infer=_pad_infer, kernel=_pad_kernel, grad=_pad_grad,
               kind=OpKind.OPAQUE, dtypes=_dt.ALL, sample=("real",),
               attrs_for_test=({"paddings": ((1, 0), (0, 2)), "mode": "CONSTANT", "constant_values": 0},
                               {"paddings": ((1, 1), (1, 0)), "mode": "REFLECT", "constant_values": 0},
                               {"paddings": ((0, 2), (2, 1)), "mode": "SYMMETRIC", "constant_values": 0})))


def _mirror_pad_grad_kernel(dy, x, *, paddings, mode):
    """Fold each mirrored border back onto the input positions it copied, axis by axis."""
    g = np.asarray(dy)
    shift = 1 if mode == "REFLECT" else 0
    for axis, (lo, hi) in enumerate(paddings):
        n = np.shape(x)[axis]
        g = np.moveaxis(g, axis, 0)
        core = np.array(g[lo:lo + n])
        if lo:
            np.add.at(core, lo - 1 + shift - np.arange(lo), g[:lo])
        if hi:
            np.add.at(core, n - 1 - shift - np.arange(hi), g[lo + n:])
        g = np.moveaxis(core, 0, axis)
    return g


register(OpDef(type="MirrorPadGrad", default_name="MirrorPadGrad", kernel=_mirror_pad_grad_kernel,
               infer=lambda specs, attrs: TensorSpec(specs[1].shape, specs[0].dtype), kind=OpKind.OPAQUE,
               grad=lambda op, ddx: [pad(ddx, op.attrs["paddings"], op.attrs["mode"]), None],
               extra={"shape_only_inputs": (1,)}))


def pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
    """Pad `tensor` with `paddings[i] = (before, after)` elements along axis i:
    zeros / `constant_values` (CONSTANT), or mirrored contents (REFLECT, SYMMETRIC)."""
    x = convert_to_tensor(tensor)
    mode = str(mode).upper()
    if mode not in _NP_MODE:
        raise ValueError(f"pad: mode must be CONSTANT, REFLECT or SYMMETRIC, got {mode!r}")
    pads = np.asarray(paddings)
    if pads.ndim != 2 or pads.shape[1] != 2 or pads.dtype.kind not in "iu":
        raise ValueError(f"pad: paddings must be integer pairs of shape (rank, 2), got {paddings!r}")
    if (pads < 0).any():
        raise ValueError(f"pad: paddings must be non-negative, got {pads.tolist()}")
    if x.shape is not None and len(x.shape) != pads.shape[0]:
        raise ValueError(f"pad: paddings has {pads.shape[0]} rows, '{x.name}' has shape {x.shape}")
    cv = python_value_to_array(constant_values, x.dtype, what="pad constant_values").item()
    attrs = {"paddings": tuple((int(a), int(b)) for a, b in pads), "mode": mode, "constant_values": cv}
    return apply_op("Pad", [x], attrs, name=name)


# ---- Tile ----

def _tile_infer(specs, attrs):
    (x,) = specs
    mult = attrs["multiples"]
    if x.shape is None:
        return TensorSpec((None,) * len(mult), x.dtype)
    if len(mult) != len(x.shape):
        raise ValueError(f"multiples {mult} must have one entry per dimension of shape {x.shape}")
    return TensorSpec(tuple(None if d is None else d * m for d, m in zip(x.shape, mult)), x.dtype)


def _tile_grad_kernel(dy, x, *, multiples):
    """Sum the tiled copies: view dy as (m0, d0, m1, d1, ...) and reduce the m axes."""
    dims = np.shape(x)
    split = [v for m, d in zip(multiples, dims) for v in (m, d)]
    return np.asarray(dy).reshape(split).sum(axis=tuple(range(0, 2 * len(dims), 2)))


register(OpDef(type="Tile", default_name="Tile", infer=_tile_infer,
               kernel=lambda x, *, multiples: np.tile(x, multiples),
               grad=lambda op, dy: [apply_op("TileGrad", [dy, op.inputs[0]], {"multiples": op.attrs["multiples"]})
                                    if op.inputs[0].dtype.kind == "f" else None],
               kind=OpKind.INJECTIVE, dtypes=_dt.ALL, sample=("real",),
               attrs_for_test=({"multiples": (2, 1)}, {"multiples": (1, 3)}, {"multiples": (2, 0)})))

register(OpDef(type="TileGrad", default_name="TileGrad", kernel=_tile_grad_kernel,
               infer=lambda specs, attrs: TensorSpec(specs[1].shape, specs[0].dtype), kind=OpKind.OPAQUE,
               grad=lambda op, ddx: [tile(ddx, op.attrs["multiples"]), None],
               extra={"shape_only_inputs": (1,)}))


def tile(input, multiples, name=None):  # noqa: A002 - TF's argument name
    """Repeat `input` `multiples[i]` times along axis i."""
    x = convert_to_tensor(input)
    mult = tuple(int(m) for m in np.asarray(multiples).reshape(-1))
    if any(m < 0 for m in mult):
        raise ValueError(f"tile: multiples must be non-negative, got {mult}")
    return apply_op("Tile", [x], {"multiples": mult}, name=name)
