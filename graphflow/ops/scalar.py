"""Scalar programs: how an elementwise op computes one element, independent of backend.

An elementwise OpDef's `scalar` field is a function `scalar(b, *args, **attrs)` that builds
its result from the primitive methods of a scalar builder `b`. Code generation passes an
LLVM builder (compiler/codegen), so a fused kernel is "loop over elements, emit each
member's scalar program"; `NumpyScalarBuilder` evaluates the same programs on arrays, so
fusion can be tested without LLVM.

The builder interface (every backend implements all of it):
    const(value, dtype)                      a constant of `dtype`
    dtype(x)                                 the numpy dtype of a value
    add sub mul div(x, y)                    arithmetic (div is true division on floats)
    floordiv mod(x, y)                       Python/numpy floor semantics
    neg abs(x)
    min max(x, y)                            NaN-propagating, like numpy.minimum/maximum
    pow(x, y)
    exp log log1p expm1 tanh sigmoid erf sqrt rsqrt sin cos(x)
    floor ceil round(x)                      round: half to even
    sign(x)
    lt le gt ge eq ne(x, y) -> bool
    and_ or_(x, y), not_(x)                  on bools
    select(c, x, y)                          c ? x : y
    isnan isfinite(x) -> bool
    cast(x, dtype)
"""
from __future__ import annotations

import math

import numpy as np


class NumpyScalarBuilder:
    """Evaluates scalar programs elementwise on numpy arrays (the reference backend)."""

    def const(self, value, dtype):
        return np.asarray(value, dtype=dtype)

    def dtype(self, x):
        return np.asarray(x).dtype

    add = staticmethod(np.add)
    sub = staticmethod(np.subtract)
    mul = staticmethod(np.multiply)
    floordiv = staticmethod(np.floor_divide)
    mod = staticmethod(np.mod)
    neg = staticmethod(np.negative)
    abs = staticmethod(np.abs)
    min = staticmethod(np.minimum)
    max = staticmethod(np.maximum)
    pow = staticmethod(np.power)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    expm1 = staticmethod(np.expm1)
    tanh = staticmethod(np.tanh)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    round = staticmethod(np.round)
    sign = staticmethod(np.sign)
    lt = staticmethod(np.less)
    le = staticmethod(np.less_equal)
    gt = staticmethod(np.greater)
    ge = staticmethod(np.greater_equal)
    eq = staticmethod(np.equal)
    ne = staticmethod(np.not_equal)
    and_ = staticmethod(np.logical_and)
    or_ = staticmethod(np.logical_or)
    not_ = staticmethod(np.logical_not)
    isnan = staticmethod(np.isnan)
    isfinite = staticmethod(np.isfinite)

    def div(self, x, y):
        return np.true_divide(x, y).astype(np.result_type(x, y), copy=False)

    def rsqrt(self, x):
        return np.asarray(1, dtype=np.asarray(x).dtype) / np.sqrt(x)

    def sigmoid(self, x):
        from .elementwise import _sigmoid

        return _sigmoid(np.asarray(x))

    def erf(self, x):
        x = np.asarray(x)
        return np.asarray(np.frompyfunc(math.erf, 1, 1)(x), dtype=x.dtype)

    def select(self, c, x, y):
        return np.where(c, x, y)

    def cast(self, x, dtype):
        return np.asarray(x).astype(dtype)
