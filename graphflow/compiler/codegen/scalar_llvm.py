"""The scalar-builder interface (graphflow/ops/scalar.py) emitting LLVM IR through llvmlite.

Each method takes and returns llvmlite IR values, scalars or vectors of float32, float64,
int32, int64 or bool (i1 in registers; see `irtypes.load_value/store_value` for the one-byte
memory form). Scalar operands are splatted to the lane count of vector operands, so a scalar
program emits explicit-vector code unchanged.

Semantics follow numpy, not C: min/max propagate NaN and pick like numpy on ties of signed
zeros; floordiv/mod floor (Python semantics, numpy's divmod algorithm for floats); integer
division by zero gives 0 and INT_MIN // -1 wraps, never trapping; round is half to even;
float -> int casts truncate (NaN or out-of-range give an unspecified value, as in numpy).
No fast-math flags are set on arithmetic, so results match numpy bit for bit where IEEE
defines them. exp/log/log1p/expm1/tanh/sigmoid/erf call the branch-free, vectorizable
polynomials of `mathfns` (through `mathlib`, which inlines or shares them); sin/cos/pow use
LLVM intrinsics (libm calls: those loops stay scalar).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ...errors import UnimplementedError
from . import mathlib
from .irtypes import (call_intrinsic, constant, dtype_of, element_type, ir_type, lanes, load_value, match,
                      memory_type, store_value, with_lanes)

__all__ = ["LLVMScalarBuilder", "ir_type", "memory_type", "load_value", "store_value"]

_BOOL = ir.IntType(1)


def _is_float(v: ir.Value) -> bool:
    return isinstance(element_type(v.type), (ir.FloatType, ir.DoubleType))


def _is_bool(v: ir.Value) -> bool:
    return element_type(v.type) == _BOOL


class LLVMScalarBuilder:
    """Scalar programs -> LLVM IR at the insertion point of `irbuilder` (no branches emitted)."""

    def __init__(self, irbuilder: ir.IRBuilder, module: ir.Module | None = None):
        self.b = irbuilder
        self.module = module if module is not None else irbuilder.module
        self._nonpositive: dict[int, ir.Value] = {}   # id -> value (kept alive: ids stay unique)

    def assume_nonpositive(self, x: ir.Value) -> None:
        """Tell the builder every element of `x` is <= 0 or NaN (the caller knows it from the
        program: x - max(x)); exp(x) then skips its overflow clamp."""
        self._nonpositive[id(x)] = x

    # ---- values ----
    def const(self, value, dtype) -> ir.Constant:
        return constant(ir_type(dtype), value)

    def dtype(self, x) -> np.dtype:
        return dtype_of(x)

    def _c(self, like: ir.Value, value) -> ir.Constant:
        return constant(like.type, value)

    # ---- arithmetic ----
    def add(self, x, y):
        x, y = match(self.b, x, y)
        if _is_float(x):
            return self.b.fadd(x, y)
        return self.b.or_(x, y) if _is_bool(x) else self.b.add(x, y)

    def sub(self, x, y):
        x, y = match(self.b, x, y)
        if _is_float(x):
            return self.b.fsub(x, y)
        return self.b.xor(x, y) if _is_bool(x) else self.b.sub(x, y)

    def mul(self, x, y):
        x, y = match(self.b, x, y)
        if _is_float(x):
            return self.b.fmul(x, y)
        return self.b.and_(x, y) if _is_bool(x) else self.b.mul(x, y)

    def div(self, x, y):
        """True division on floats; on ints, numpy's true_divide cast back: truncation, x/0 -> 0."""
        x, y = match(self.b, x, y)
        if _is_float(x):
            return self.b.fdiv(x, y)
        q, _ = self._int_divrem(x, y)
        return q

    def _int_divrem(self, x, y):
        """(sdiv, srem) that never trap: y == 0 gives (0, 0); MIN / -1 gives (MIN, 0) (wraps)."""
        b = self.b
        zero, one, minus_one = self._c(x, 0), self._c(x, 1), self._c(x, -1)
        y_zero = b.icmp_signed("==", y, zero)
        y_neg1 = b.icmp_signed("==", y, minus_one)
        safe = b.select(b.or_(y_zero, y_neg1), one, y)
        q = b.select(y_neg1, b.sub(zero, x), b.sdiv(x, safe))
        r = b.srem(x, safe)
        return b.select(y_zero, zero, q), r

    def floordiv(self, x, y):
        x, y = match(self.b, x, y)
        if _is_float(x):
            return self._float_divmod(x, y)[0]
        b = self.b
        q, r = self._int_divrem(x, y)
        return b.sub(q, b.zext(self._floor_adjust(r, y), q.type))

    def mod(self, x, y):
        x, y = match(self.b, x, y)
        if _is_float(x):
            return self._float_divmod(x, y)[1]
        b = self.b
        _, r = self._int_divrem(x, y)
        return b.select(self._floor_adjust(r, y), b.add(r, y), r)

    def _floor_adjust(self, r, y):
        """True where a truncated remainder r is nonzero with a sign different from y's."""
        b = self.b
        zero = self._c(r, 0)
        return b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, y), zero))

    def _float_divmod(self, a, b_):
        """numpy's npy_divmod: (floor_divide, remainder), exact for all IEEE inputs."""
        b = self.b
        zero, one = self._c(a, 0.0), self._c(a, 1.0)
        mod = b.frem(a, b_)
        div = b.fdiv(b.fsub(a, mod), b_)
        mod_nonzero = b.fcmp_unordered("!=", mod, zero)  # NaN counts as nonzero, like C's `if (mod)`
        flip = b.and_(mod_nonzero, b.icmp_unsigned("!=", b.fcmp_ordered("<", b_, zero),
                                                    b.fcmp_ordered("<", mod, zero)))
        mod = b.select(flip, b.fadd(mod, b_), mod)
        div = b.select(flip, b.fsub(div, one), div)
        mod = b.select(mod_nonzero, mod, self._copysign(zero, b_))
        floor = call_intrinsic(b, "floor", div)
        floor = b.select(b.fcmp_ordered(">", b.fsub(div, floor), self._c(a, 0.5)), b.fadd(floor, one), floor)
        quotient = b.fdiv(a, b_)
        floor = b.select(b.fcmp_unordered("!=", div, zero), floor, self._copysign(zero, quotient))
        b_zero = b.fcmp_ordered("==", b_, zero)
        return b.select(b_zero, quotient, floor), mod

    def _copysign(self, mag, sign):
        mag, sign = match(self.b, mag, sign)
        return call_intrinsic(self.b, "copysign", mag, sign)

    def neg(self, x):
        if _is_float(x):
            return self.b.fneg(x)
        return x if _is_bool(x) else self.b.sub(self._c(x, 0), x)

    def abs(self, x):
        if _is_float(x):
            return call_intrinsic(self.b, "fabs", x)
        if _is_bool(x):
            return x
        b = self.b
        return b.select(b.icmp_signed("<", x, self._c(x, 0)), b.sub(self._c(x, 0), x), x)

    def max(self, x, y):
        """numpy.maximum: x if x > y or x is NaN, else y (so NaN in y propagates too)."""
        return self._pick(x, y, ">")

    def min(self, x, y):
        return self._pick(x, y, "<")

    def _pick(self, x, y, op):
        b = self.b
        x, y = match(b, x, y)
        if _is_float(x):
            keep_x = b.or_(b.fcmp_ordered(op, x, y), self.isnan(x))
        elif _is_bool(x):
            keep_x = b.icmp_unsigned(op, x, y)
        else:
            keep_x = b.icmp_signed(op, x, y)
        return b.select(keep_x, x, y)

    def pow(self, x, y):
        x, y = match(self.b, x, y)
        if _is_float(x):
            return call_intrinsic(self.b, "pow", x, y)
        if _is_bool(x):
            return self.or_(x, self.not_(y))
        return self._int_pow(x, y)

    def _int_pow(self, x, e):
        """Integer power with wrapping like numpy, by squaring over every exponent bit (no loop).
        Negative exponents (an error in numpy) give the truncated real result: 1, -1 or 0."""
        b = self.b
        zero, one = self._c(x, 0), self._c(x, 1)
        result, base = one, x
        for bit in range(element_type(x.type).width - 1):
            take = b.icmp_unsigned("!=", b.and_(b.ashr(e, self._c(e, bit)), one), zero)
            result = b.select(take, b.mul(result, base), result)
            base = b.mul(base, base)
        odd = b.icmp_unsigned("!=", b.and_(e, one), zero)
        negative_power = b.select(b.icmp_signed("==", x, one), one,
                                  b.select(b.icmp_signed("==", x, self._c(x, -1)),
                                           b.select(odd, self._c(x, -1), one), zero))
        return b.select(b.icmp_signed("<", e, zero), negative_power, result)

    # ---- transcendental (polynomials, vectorizable) ----
    def _math(self, name, x):
        if not _is_float(x):
            raise UnimplementedError(f"LLVM codegen: {name} expects float32 or float64, got {dtype_of(x)}")
        return mathlib.call(self.b, self.module, name, x)

    def exp(self, x):
        return self._math("exp_nonpositive" if id(x) in self._nonpositive else "exp", x)

    def log(self, x):
        return self._math("log", x)

    def log1p(self, x):
        return self._math("log1p", x)

    def expm1(self, x):
        return self._math("expm1", x)

    def tanh(self, x):
        return self._math("tanh", x)

    def sigmoid(self, x):
        return self._math("sigmoid", x)

    def erf(self, x):
        return self._math("erf", x)

    def _float_intrinsic(self, name, x):
        if not _is_float(x):
            raise UnimplementedError(f"LLVM codegen: {name} expects float32 or float64, got {dtype_of(x)}")
        return call_intrinsic(self.b, name, x)

    def sqrt(self, x):
        return self._float_intrinsic("sqrt", x)

    def rsqrt(self, x):
        return self.b.fdiv(self._c(x, 1.0), self.sqrt(x))

    def sin(self, x):
        return self._float_intrinsic("sin", x)

    def cos(self, x):
        return self._float_intrinsic("cos", x)

    # ---- rounding ----
    def floor(self, x):
        return self._float_intrinsic("floor", x) if _is_float(x) else x

    def ceil(self, x):
        return self._float_intrinsic("ceil", x) if _is_float(x) else x

    def round(self, x):
        return self._float_intrinsic("roundeven", x) if _is_float(x) else x

    def sign(self, x):
        b = self.b
        if _is_bool(x):
            return x
        if _is_float(x):
            zero = self._c(x, 0.0)
            small = b.select(self.isnan(x), x, zero)  # sign(-0.0) is +0.0 in numpy
            return b.select(b.fcmp_ordered(">", x, zero), self._c(x, 1.0),
                            b.select(b.fcmp_ordered("<", x, zero), self._c(x, -1.0), small))
        zero = self._c(x, 0)
        return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type), b.zext(b.icmp_signed("<", x, zero), x.type))

    # ---- comparisons and logic ----
    def _compare(self, op, x, y):
        b = self.b
        x, y = match(b, x, y)
        if _is_float(x):
            # numpy: every comparison with NaN is False except !=, which is True.
            return b.fcmp_unordered(op, x, y) if op == "!=" else b.fcmp_ordered(op, x, y)
        if _is_bool(x):
            return b.icmp_unsigned(op, x, y)
        return b.icmp_signed(op, x, y)

    def lt(self, x, y):
        return self._compare("<", x, y)

    def le(self, x, y):
        return self._compare("<=", x, y)

    def gt(self, x, y):
        return self._compare(">", x, y)

    def ge(self, x, y):
        return self._compare(">=", x, y)

    def eq(self, x, y):
        return self._compare("==", x, y)

    def ne(self, x, y):
        return self._compare("!=", x, y)

    def and_(self, x, y):
        x, y = match(self.b, x, y)
        return self.b.and_(x, y)

    def or_(self, x, y):
        x, y = match(self.b, x, y)
        return self.b.or_(x, y)

    def not_(self, x):
        return self.b.xor(x, self._c(x, 1))

    def select(self, c, x, y):
        c, x, y = match(self.b, c, x, y)
        return self.b.select(c, x, y)

    def isnan(self, x):
        if not _is_float(x):
            return constant(with_lanes(_BOOL, lanes(x.type)), 0)
        return self.b.fcmp_unordered("uno", x, x)

    def isfinite(self, x):
        if not _is_float(x):
            return constant(with_lanes(_BOOL, lanes(x.type)), 1)
        return self.b.fcmp_ordered("<", self.abs(x), self._c(x, float("inf")))

    # ---- casts ----
    def cast(self, x, dtype):
        """numpy astype: float -> int truncates, x -> bool is x != 0 (NaN -> True)."""
        b = self.b
        src, dst = dtype_of(x), np.dtype(dtype)
        if src == dst:
            return x
        target = with_lanes(ir_type(dst), lanes(x.type))
        if dst == np.bool_:
            return self.ne(x, self._c(x, 0))
        if src == np.bool_:
            return b.uitofp(x, target) if dst.kind == "f" else b.zext(x, target)
        if src.kind == "f" and dst.kind == "f":
            return b.fpext(x, target) if dst.itemsize > src.itemsize else b.fptrunc(x, target)
        if src.kind == "f":
            return b.fptosi(x, target)
        if dst.kind == "f":
            return b.sitofp(x, target)
        return b.sext(x, target) if dst.itemsize > src.itemsize else b.trunc(x, target)
