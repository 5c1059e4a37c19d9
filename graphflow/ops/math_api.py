"""Public elementwise builders (`gf.add`, `gf.exp`, `gf.where`, ...)."""
from __future__ import annotations

from .. import dtypes as _dt
import numpy as np

from .build import apply_op, convert_same_dtype, convert_to_tensor
from .composite import CompositeDef, register_composite
from .elementwise import binary, unary

negative = unary("Neg")
abs = unary("Abs")  # noqa: A001 - public name
exp = unary("Exp")
log = unary("Log")
log1p = unary("Log1p")
expm1 = unary("Expm1")
sqrt = unary("Sqrt")
rsqrt = unary("Rsqrt")
square = unary("Square")
reciprocal = unary("Reciprocal")
sin = unary("Sin")
cos = unary("Cos")
tanh = unary("Tanh")
sigmoid = unary("Sigmoid")
erf = unary("Erf")
sign = unary("Sign")
floor = unary("Floor")
ceil = unary("Ceil")
round = unary("Round")  # noqa: A001 - public name
logical_not = unary("LogicalNot")
isnan = unary("IsNan")
isfinite = unary("IsFinite")

add = binary("Add", "add")
subtract = binary("Sub", "subtract")
multiply = binary("Mul", "multiply")
floordiv = binary("FloorDiv", "floordiv")
mod = binary("FloorMod", "mod")
maximum = binary("Maximum", "maximum")
minimum = binary("Minimum", "minimum")
equal = binary("Equal", "equal")
not_equal = binary("NotEqual", "not_equal")
less = binary("Less", "less")
less_equal = binary("LessEqual", "less_equal")
greater = binary("Greater", "greater")
greater_equal = binary("GreaterEqual", "greater_equal")
logical_and = binary("LogicalAnd", "logical_and")
logical_or = binary("LogicalOr", "logical_or")
_pow = binary("Pow", "pow")
_real_div = binary("RealDiv", "divide")


def divide(x, y, name=None):
    """True division; integer inputs are converted to float64 first (as TF1's truediv)."""
    a, b = convert_same_dtype([x, y], "divide")
    if a.dtype.kind in "iu":
        a, b = cast(a, _dt.float64), cast(b, _dt.float64)
    return apply_op("RealDiv", [a, b], name=name)


def pow(x, y, name=None):  # noqa: A001 - public name
    """x ** y elementwise (float dtypes)."""
    return _pow(x, y, name=name)


def cast(x, dtype, name=None):
    """Convert `x` to `dtype` elementwise (a no-op when the dtype already matches)."""
    x = convert_to_tensor(x)
    dtype = _dt.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply_op("Cast", [x], {"dtype": dtype}, name=name)


def where(condition, x, y, name=None):
    """Elementwise select: `x` where `condition` is true, else `y` (numpy broadcasting)."""
    c = convert_to_tensor(condition)
    a, b = convert_same_dtype([x, y], "where")
    if c.dtype != _dt.bool:
        raise TypeError(f"where: condition '{c.name}' must be bool, got {c.dtype.name}")
    return apply_op("Select", [c, a, b], name=name)


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """min(max(t, lo), hi) elementwise; the gradient passes where lo <= t <= hi."""
    t = convert_to_tensor(t)
    return minimum(maximum(t, clip_value_min), clip_value_max, name=name)


register_composite(CompositeDef(
    name="clip_by_value", build=lambda x, lo, hi: clip_by_value(x, lo, hi),
    reference=lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), sample=("real", "real", "real"),
    dtypes=_dt.NUMERIC, grad_inputs=(0, 1, 2)))


def zeros_like(x, dtype=None, name=None):
    from .array_ops import zeros_like as _zl

    return _zl(x, dtype=dtype, name=name)


def ones_like(x, dtype=None, name=None):
    from .array_ops import ones_like as _ol

    return _ol(x, dtype=dtype, name=name)
