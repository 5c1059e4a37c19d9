"""Elementwise activations (relu, relu6, leaky_relu, elu, selu, softplus, gelu).

Each is one primitive: its scalar program is the single definition of what it computes
(code generation emits it; the numpy kernel evaluates the same program with
NumpyScalarBuilder), and its gradient is built from other primitives, so gradients of
gradients work and fuse like any other elementwise chain.
"""
from __future__ import annotations

import math

from .. import dtypes as _dt
from . import math_api as m
from .build import apply_op, convert_to_tensor
from .registry import OpDef, OpKind, TensorSpec, register
from .scalar import NumpyScalarBuilder

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _c(b, x, value):
    return b.const(value, b.dtype(x))


def _relu(b, x):
    return b.max(x, _c(b, x, 0))


def _relu6(b, x):
    return b.min(b.max(x, _c(b, x, 0)), _c(b, x, 6))


def _leaky_relu(b, x, *, alpha):
    return b.select(b.gt(x, _c(b, x, 0)), x, b.mul(x, _c(b, x, alpha)))


def _elu(b, x):
    # expm1 of min(x, 0): the branch not taken never overflows
    return b.select(b.gt(x, _c(b, x, 0)), x, b.expm1(b.min(x, _c(b, x, 0))))


def _selu(b, x):
    neg = b.mul(_c(b, x, _SELU_ALPHA), b.expm1(b.min(x, _c(b, x, 0))))
    return b.mul(_c(b, x, _SELU_SCALE), b.select(b.gt(x, _c(b, x, 0)), x, neg))


def _softplus(b, x):
    # max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|
    return b.add(b.max(x, _c(b, x, 0)), b.log1p(b.exp(b.neg(b.abs(x)))))


def _gelu(b, x, *, approximate):
    half_x = b.mul(_c(b, x, 0.5), x)
    if approximate:
        inner = b.mul(_c(b, x, _GELU_C), b.add(x, b.mul(_c(b, x, _GELU_K), b.mul(x, b.mul(x, x)))))
        return b.mul(half_x, b.add(_c(b, x, 1), b.tanh(inner)))
    return b.mul(half_x, b.add(_c(b, x, 1), b.erf(b.mul(x, _c(b, x, _INV_SQRT2)))))


# ---- gradients, from primitives ----

def _relu_grad(op, dy):
    x = op.inputs[0]
    return [m.where(x > 0, dy, m.zeros_like(dy))]


def _relu6_grad(op, dy):
    x = op.inputs[0]
    return [m.where(m.logical_and(x > 0, x < 6), dy, m.zeros_like(dy))]


def _leaky_relu_grad(op, dy):
    return [m.where(op.inputs[0] > 0, dy, dy * op.attrs["alpha"])]


def _elu_grad(op, dy):
    return [m.where(op.inputs[0] > 0, dy, dy * (op.outputs[0] + 1.0))]


def _selu_grad(op, dy):
    return [m.where(op.inputs[0] > 0, dy * _SELU_SCALE, dy * (op.outputs[0] + _SELU_SCALE * _SELU_ALPHA))]


def _softplus_grad(op, dy):
    return [dy * m.sigmoid(op.inputs[0])]


def _gelu_grad(op, dy):
    x = op.inputs[0]
    if op.attrs["approximate"]:
        t = m.tanh(_GELU_C * (x + _GELU_K * x * x * x))
        dt = _GELU_C * (1.0 + 3.0 * _GELU_K * x * x)
        return [dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt)]
    cdf = 0.5 * (1.0 + m.erf(x * _INV_SQRT2))
    pdf = _INV_SQRT_2PI * m.exp(-0.5 * x * x)
    return [dy * (cdf + x * pdf)]


def _gate(grad):
    """Integer activations (relu of int32) have no gradient."""
    return lambda op, dy: grad(op, dy) if op.inputs[0].dtype.kind == "f" else [None]


def _infer(allowed):
    def infer(specs, attrs):
        (x,) = specs
        if x.dtype not in allowed:
            raise TypeError(f"input must have dtype in ({', '.join(d.name for d in allowed)}), got {x.dtype.name}")
        return TensorSpec(x.shape, x.dtype)
    return infer


def _kernel(scalar):
    builder = NumpyScalarBuilder()
    return lambda x, **attrs: scalar(builder, x, **attrs)


_ACTIVATIONS = [
    # type, default name, scalar program, gradient, dtypes, attrs_for_test
    ("Relu", "Relu", _relu, _relu_grad, _dt.NUMERIC, ()),
    ("Relu6", "Relu6", _relu6, _relu6_grad, _dt.NUMERIC, ()),
    ("LeakyRelu", "LeakyRelu", _leaky_relu, _leaky_relu_grad, _dt.FLOATS, ({"alpha": 0.2}, {"alpha": 1.5})),
    ("Elu", "Elu", _elu, _elu_grad, _dt.FLOATS, ()),
    ("Selu", "Selu", _selu, _selu_grad, _dt.FLOATS, ()),
    ("Softplus", "Softplus", _softplus, _softplus_grad, _dt.FLOATS, ()),
    ("Gelu", "Gelu", _gelu, _gelu_grad, _dt.FLOATS, ({"approximate": False}, {"approximate": True})),
]

for _t, _n, _s, _g, _d, _a in _ACTIVATIONS:
    register(OpDef(type=_t, default_name=_n, infer=_infer(_d), kernel=_kernel(_s), grad=_gate(_g),
                   kind=OpKind.ELEMENTWISE, scalar=_s, sample=("real",), dtypes=_d, attrs_for_test=_a))


def _activation(op_type, x, attrs, name):
    return apply_op(op_type, [convert_to_tensor(x)], attrs, name=name)


def relu(features, name=None):
    """max(features, 0)."""
    return _activation("Relu", features, {}, name)


def relu6(features, name=None):
    """min(max(features, 0), 6)."""
    return _activation("Relu6", features, {}, name)


def leaky_relu(features, alpha=0.2, name=None):
    """features where positive, else alpha * features."""
    return _activation("LeakyRelu", features, {"alpha": float(alpha)}, name)


def elu(features, name=None):
    """features where positive, else exp(features) - 1."""
    return _activation("Elu", features, {}, name)


def selu(features, name=None):
    """scale * elu-like(features) with the self-normalizing constants of Klambauer et al."""
    return _activation("Selu", features, {}, name)


def softplus(features, name=None):
    """log(1 + exp(features)), computed without overflow."""
    return _activation("Softplus", features, {}, name)


def gelu(features, approximate=False, name=None):
    """x * Phi(x) (erf form), or the tanh approximation when `approximate`."""
    return _activation("Gelu", features, {"approximate": bool(approximate)}, name)
