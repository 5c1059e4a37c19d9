"""Python operators on Tensor and Variable (`x + y`, `x @ w`, `x[1:, ::2]`, ...).

`==` and `!=` stay identity comparisons (as in TF1); use gf.equal / gf.not_equal.
"""
from __future__ import annotations

from ..graph import Tensor
from ..variables import Variable
from . import math_api as m
from .linalg import matmul
from .slicing import slice_tensor


def _binary(fn, reverse=False):
    if reverse:
        return lambda self, other: fn(other, self)
    return lambda self, other: fn(self, other)


def _getitem(self, key):
    return slice_tensor(self, key)


_OPERATORS = {
    "__add__": _binary(m.add), "__radd__": _binary(m.add, True),
    "__sub__": _binary(m.subtract), "__rsub__": _binary(m.subtract, True),
    "__mul__": _binary(m.multiply), "__rmul__": _binary(m.multiply, True),
    "__truediv__": _binary(m.divide), "__rtruediv__": _binary(m.divide, True),
    "__floordiv__": _binary(m.floordiv), "__rfloordiv__": _binary(m.floordiv, True),
    "__mod__": _binary(m.mod), "__rmod__": _binary(m.mod, True),
    "__pow__": _binary(m.pow), "__rpow__": _binary(m.pow, True),
    "__matmul__": _binary(matmul), "__rmatmul__": _binary(matmul, True),
    "__lt__": _binary(m.less), "__le__": _binary(m.less_equal),
    "__gt__": _binary(m.greater), "__ge__": _binary(m.greater_equal),
    "__and__": _binary(m.logical_and), "__rand__": _binary(m.logical_and, True),
    "__or__": _binary(m.logical_or), "__ror__": _binary(m.logical_or, True),
    "__neg__": lambda self: m.negative(self),
    "__abs__": lambda self: m.abs(self),
    "__invert__": lambda self: m.logical_not(self),
    "__getitem__": _getitem,
}

for _cls in (Tensor, Variable):
    for _name, _fn in _OPERATORS.items():
        setattr(_cls, _name, _fn)
