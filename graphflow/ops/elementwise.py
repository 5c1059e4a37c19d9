"""Elementwise ops: one registered definition each, with numpy broadcasting.

Each definition pairs the numpy reference with its gradient, side by side; the scalar
programs used by code generation are attached by `graphflow.compiler.codegen`'s table
through the `scalar` field where present.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from .build import apply_op, broadcast_shapes, convert_same_dtype, convert_to_tensor
from .registry import OpDef, OpKind, TensorSpec, register

FLOATS = _dt.FLOATS
NUMERIC = _dt.NUMERIC
SIGNED = _dt.NUMERIC
BOOL = (_dt.bool,)
ALL = _dt.ALL


# ---- shape/dtype rules ----

def _check_dtype(spec: TensorSpec, allowed, label: str):
    if spec.dtype not in allowed:
        raise TypeError(f"{label} must have dtype in ({', '.join(d.name for d in allowed)}), "
                        f"got {spec.dtype.name}")


def _unary_infer(allowed, out_dtype=None):
    def infer(specs, attrs):
        (x,) = specs
        _check_dtype(x, allowed, "input")
        return TensorSpec(x.shape, out_dtype or x.dtype)
    return infer


def _nary_infer(allowed, out_dtype=None, first_bool=False):
    def infer(specs, attrs):
        data = specs[1:] if first_bool else specs
        if first_bool:
            _check_dtype(specs[0], BOOL, "condition")
        for s in data[1:]:
            if s.dtype != data[0].dtype:
                raise TypeError(f"dtypes {data[0].dtype.name} and {s.dtype.name} do not match; use gf.cast")
        _check_dtype(data[0], allowed, "inputs")
        shape = specs[0].shape
        for s in specs[1:]:
            shape = broadcast_shapes(shape, s.shape)
        return TensorSpec(shape, out_dtype or data[0].dtype)
    return infer


def _method(name):
    """The scalar program that applies builder method `name` to the op's inputs."""
    return lambda b, *args, **attrs: getattr(b, name)(*args)


# op type -> scalar builder method (see ops/scalar.py)
_SCALAR_METHOD = {
    "Neg": "neg", "Abs": "abs", "Exp": "exp", "Log": "log", "Log1p": "log1p", "Expm1": "expm1",
    "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Sin": "sin", "Cos": "cos", "Tanh": "tanh", "Sigmoid": "sigmoid",
    "Erf": "erf", "Sign": "sign", "Floor": "floor", "Ceil": "ceil", "Round": "round",
    "LogicalNot": "not_", "IsNan": "isnan", "IsFinite": "isfinite",
    "Add": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div", "FloorDiv": "floordiv", "FloorMod": "mod",
    "Pow": "pow", "Maximum": "max", "Minimum": "min",
    "Equal": "eq", "NotEqual": "ne", "Less": "lt", "LessEqual": "le", "Greater": "gt", "GreaterEqual": "ge",
    "LogicalAnd": "and_", "LogicalOr": "or_", "Select": "select",
}
_SCALAR_SPECIAL = {
    "Square": lambda b, x: b.mul(x, x),
    "Reciprocal": lambda b, x: b.div(b.const(1, b.dtype(x)), x),
}


def _ew(op_type, name, kernel, grad, allowed, n_in, out_dtype=None, sample=None, first_bool=False):
    infer = _unary_infer(allowed, out_dtype) if n_in == 1 else _nary_infer(allowed, out_dtype, first_bool)
    scalar = _SCALAR_SPECIAL.get(op_type) or _method(_SCALAR_METHOD[op_type])
    return register(OpDef(type=op_type, default_name=name, infer=infer, kernel=kernel, grad=grad,
                          kind=OpKind.ELEMENTWISE, sample=sample or ("real",) * n_in, dtypes=allowed,
                          scalar=scalar))


# ---- gradient helpers (built from the public ops; imported lazily to avoid cycles) ----

def _m():
    from . import math_api
    return math_api


def _unbroadcast(grad, x, partners=()):
    from .reduction import sum_to_shape_of
    return sum_to_shape_of(grad, x, partners)


def _float_only(op):
    return op.inputs[0].dtype.kind == "f"


def _erf(x):
    out = np.frompyfunc(math.erf, 1, 1)(x)
    return out.astype(np.asarray(x).dtype) if np.ndim(x) else np.asarray(out, dtype=np.asarray(x).dtype)


def _sigmoid(x):
    x = np.asarray(x)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _gate(fn):
    """A gradient rule applied only to float inputs (integer ops have no gradient)."""
    def grad(op, dy):
        return [fn(op, dy) if _float_only(op) else None]
    return grad


_SQRT_PI_2 = 2.0 / math.sqrt(math.pi)

# type, default name, numpy kernel, gradient (op, dy) -> dx, dtypes, test domain
_UNARY = [
    ("Neg", "Neg", np.negative, lambda op, dy: -dy, SIGNED, "real"),
    ("Abs", "Abs", np.abs, lambda op, dy: dy * _m().sign(op.inputs[0]), SIGNED, "nonzero"),
    ("Exp", "Exp", np.exp, lambda op, dy: dy * op.outputs[0], FLOATS, "real"),
    ("Log", "Log", np.log, lambda op, dy: dy / op.inputs[0], FLOATS, "positive"),
    ("Log1p", "Log1p", np.log1p, lambda op, dy: dy / (op.inputs[0] + 1.0), FLOATS, "positive"),
    ("Expm1", "Expm1", np.expm1, lambda op, dy: dy * (op.outputs[0] + 1.0), FLOATS, "real"),
    ("Sqrt", "Sqrt", np.sqrt, lambda op, dy: dy * 0.5 / op.outputs[0], FLOATS, "positive"),
    ("Rsqrt", "Rsqrt", lambda x: 1.0 / np.sqrt(x),
     lambda op, dy: dy * -0.5 * op.outputs[0] * op.outputs[0] * op.outputs[0], FLOATS, "positive"),
    ("Square", "Square", np.square, lambda op, dy: dy * 2.0 * op.inputs[0], SIGNED, "real"),
    ("Reciprocal", "Reciprocal", np.reciprocal,
     lambda op, dy: -dy * op.outputs[0] * op.outputs[0], FLOATS, "nonzero"),
    ("Sin", "Sin", np.sin, lambda op, dy: dy * _m().cos(op.inputs[0]), FLOATS, "real"),
    ("Cos", "Cos", np.cos, lambda op, dy: -dy * _m().sin(op.inputs[0]), FLOATS, "real"),
    ("Tanh", "Tanh", np.tanh, lambda op, dy: dy * (1.0 - op.outputs[0] * op.outputs[0]), FLOATS, "real"),
    ("Sigmoid", "Sigmoid", _sigmoid,
     lambda op, dy: dy * op.outputs[0] * (1.0 - op.outputs[0]), FLOATS, "real"),
    ("Erf", "Erf", _erf,
     lambda op, dy: dy * _SQRT_PI_2 * _m().exp(-_m().square(op.inputs[0])), FLOATS, "real"),
]

for _t, _n, _k, _g, _d, _s in _UNARY:
    _ew(_t, _n, _k, _gate(_g), _d, 1, sample=(_s,))

# Piecewise-constant ops: no gradient (None), as in TF1.
for _t, _k, _d in [("Sign", np.sign, SIGNED), ("Floor", np.floor, FLOATS),
                   ("Ceil", np.ceil, FLOATS), ("Round", np.round, FLOATS)]:
    _ew(_t, _t, _k, lambda op, dy: [None], _d, 1)

_ew("LogicalNot", "LogicalNot", np.logical_not, None, BOOL, 1, sample=("bool",))
_ew("IsNan", "IsNan", np.isnan, None, FLOATS, 1, out_dtype=_dt.bool)
_ew("IsFinite", "IsFinite", np.isfinite, None, FLOATS, 1, out_dtype=_dt.bool)


def _binary_grad(fx, fy):
    def grad(op, dy):
        x, y = op.inputs
        if x.dtype.kind != "f":
            return [None, None]
        gx = _unbroadcast(fx(op, dy), x, (y,)) if fx else None
        gy = _unbroadcast(fy(op, dy), y, (x,)) if fy else None
        return [gx, gy]
    return grad


def _pow_grad_y(op, dy):
    x, y = op.inputs
    m = _m()
    safe_log = m.where(x > 0, m.log(m.where(x > 0, x, m.ones_like(x))), m.zeros_like(x))
    return dy * op.outputs[0] * safe_log


def _select_grad(pick_x):
    def f(op, dy):
        x, y = op.inputs
        m = _m()
        mask = m.greater_equal(x, y) if pick_x == "max" else m.less_equal(x, y)
        return m.where(mask, dy, m.zeros_like(dy))

    def g(op, dy):
        x, y = op.inputs
        m = _m()
        mask = m.greater_equal(x, y) if pick_x == "max" else m.less_equal(x, y)
        return m.where(mask, m.zeros_like(dy), dy)
    return f, g


def _checked_int_division(fn):
    """Integer division by zero is an error (as in TF), not numpy's silent 0."""
    def kernel(x, y):
        if np.asarray(y).dtype.kind in "iu" and not np.all(y):
            raise ZeroDivisionError("integer division by zero")
        return fn(x, y)
    return kernel


def _true_divide(x, y):
    return np.true_divide(x, y).astype(np.result_type(x, y), copy=False)


_BINARY = [
    ("Add", "add", np.add, lambda op, dy: dy, lambda op, dy: dy, NUMERIC),
    ("Sub", "sub", np.subtract, lambda op, dy: dy, lambda op, dy: -dy, NUMERIC),
    ("Mul", "mul", np.multiply, lambda op, dy: dy * op.inputs[1], lambda op, dy: dy * op.inputs[0], NUMERIC),
    ("RealDiv", "truediv", _true_divide, lambda op, dy: dy / op.inputs[1],
     lambda op, dy: -dy * op.outputs[0] / op.inputs[1], FLOATS),
    ("FloorDiv", "floordiv", _checked_int_division(np.floor_divide), None, None, NUMERIC),
    ("FloorMod", "mod", _checked_int_division(np.mod), lambda op, dy: dy,
     lambda op, dy: -dy * _m().floor(op.inputs[0] / op.inputs[1]), NUMERIC),
    ("Pow", "pow", np.power,
     lambda op, dy: dy * op.inputs[1] * _m().pow(op.inputs[0], op.inputs[1] - 1.0), _pow_grad_y, NUMERIC),
    ("Maximum", "Maximum", np.maximum, *_select_grad("max"), NUMERIC),
    ("Minimum", "Minimum", np.minimum, *_select_grad("min"), NUMERIC),
]

_BINARY_SAMPLES = {"RealDiv": ("real", "nonzero"), "FloorDiv": ("real", "nonzero"),
                   "FloorMod": ("real", "nonzero"), "Pow": ("positive", "index")}  # integer exponents >= 0 (negative ones are an error, as in TF)

for _t, _n, _k, _fx, _fy, _d in _BINARY:
    _ew(_t, _n, _k, _binary_grad(_fx, _fy) if _fx else None, _d, 2,
        sample=_BINARY_SAMPLES.get(_t, ("real", "real")))

for _t, _n, _k in [("Equal", "Equal", np.equal), ("NotEqual", "NotEqual", np.not_equal),
                   ("Less", "Less", np.less), ("LessEqual", "LessEqual", np.less_equal),
                   ("Greater", "Greater", np.greater), ("GreaterEqual", "GreaterEqual", np.greater_equal)]:
    _ew(_t, _n, _k, None, ALL if _t in ("Equal", "NotEqual") else NUMERIC, 2, out_dtype=_dt.bool)

_ew("LogicalAnd", "LogicalAnd", np.logical_and, None, BOOL, 2, sample=("bool", "bool"))
_ew("LogicalOr", "LogicalOr", np.logical_or, None, BOOL, 2, sample=("bool", "bool"))


def _where_grad(op, dy):
    c, a, b = op.inputs
    if a.dtype.kind != "f":
        return [None, None, None]
    m = _m()
    z = m.zeros_like(dy)
    return [None, _unbroadcast(m.where(c, dy, z), a, (c, b)), _unbroadcast(m.where(c, z, dy), b, (c, a))]


_ew("Select", "Select", np.where, _where_grad, ALL, 3, first_bool=True, sample=("bool", "real", "real"))


def _cast_infer(specs, attrs):
    (x,) = specs
    return TensorSpec(x.shape, _dt.as_dtype(attrs["dtype"]))


def _cast_kernel(x, dtype):
    return np.asarray(x).astype(dtype)


def _cast_grad(op, dy):
    x = op.inputs[0]
    if x.dtype.kind == "f" and dy.dtype.kind == "f":
        return [_m().cast(dy, x.dtype)]
    return [None]


register(OpDef(type="Cast", default_name="Cast", infer=_cast_infer, kernel=_cast_kernel, grad=_cast_grad,
               kind=OpKind.ELEMENTWISE, scalar=lambda b, x, *, dtype: b.cast(x, dtype), sample=("real",), dtypes=ALL,
               attrs_for_test=({"dtype": _dt.float32}, {"dtype": _dt.int32}, {"dtype": _dt.bool},
                               {"dtype": _dt.float64}, {"dtype": _dt.int64})))


# ---- builders ----

def unary(op_type: str):
    def build(x, name=None):
        return apply_op(op_type, [convert_to_tensor(x)], name=name)
    return build


def binary(op_type: str, label: str):
    def build(x, y, name=None):
        a, b = convert_same_dtype([x, y], label)
        return apply_op(op_type, [a, b], name=name)
    return build
