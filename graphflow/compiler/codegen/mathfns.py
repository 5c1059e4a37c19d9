"""Vectorizable approximations of exp, log, log1p, expm1, tanh, sigmoid and erf in LLVM IR.

A call to libm (`expf`, `tanhf`) is opaque to LLVM's loop vectorizer, so a loop calling one
stays scalar. These emitters write each function as straight-line IR (bit manipulation,
polynomials, `select` instead of branches), which the vectorizer turns into AVX-512 code.
Every emitter works on float32 and float64, scalars or vectors, and handles the IEEE special
cases explicitly: NaN in -> the same NaN out, +-inf, +-0 (sign kept where numpy keeps it),
denormal inputs and outputs, and the overflow/underflow thresholds (exp(88.72f) is finite,
exp(89f) is inf, exp(-104f) is the denormal numpy gives).

Methods (polynomial coefficients are Taylor coefficients, or least-squares fits for erf and
the float32 exp/expm1 polynomials):
- exp: k = rint(x/ln2) by the 1.5*2^mant addition (k's integer read from the bit pattern),
  r = x - k*ln2 (Cody-Waite, two constants), exp(r) by a polynomial on |r| <= ln2/2, scaled
  by 2^k rounded once (llvm.ldexp = vscalef, or two exact steps) so denormal results are
  rounded once and 2^128 / 2^1024 never appear as an intermediate; NaN flows through.
- log: x = m*2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(f/(2+f)) (f = m-1) arranged as
  f - (f^2/2 - s(f^2/2 + R)) as in fdlibm; denormal inputs are pre-scaled by 2^23 / 2^52.
- log1p: log(u) + (x - (u-1))/u with u = 1 + x (the rounding error of u, corrected).
- expm1: same reduction as exp; expm1(r) = r + r^2 q(r); 2^k expm1(r) + (2^k - 1) with one fma.
- tanh: expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x (|x| clamped to 20, where tanh = 1).
- sigmoid: e = exp(-|x|); 1/(1+e) for x >= 0, e/(1+e) below (no overflow, denormal tails kept).
- erf: x + x (P(x^2) - 1) on |x| < 1, 1 - exp(-x^2) Q(1/|x|) on pieces up to the point where
  erf rounds to 1 (4 in float32, 6 in float64).
float64 uses the same methods with longer polynomials (no libm fallback). The only fast-math
liberty is llvm.fmuladd in polynomials and reductions (fused multiply-add where the CPU has
it); no nnan/ninf flags, so NaN and inf go through the IEEE paths above.

Measured maximum error, in ulps of the result (docs/accuracy.md): float32 over all 2^32
inputs against float64 references; float64 over a dense sweep against long double (erf:
math.erf, itself ~1 ulp):
    function  float32  float64        function  float32  float64
    exp       0.91     0.86           tanh      2.42     2.50
    log       0.84     0.73           sigmoid   2.40     2.16
    log1p     1.44     1.44           erf       1.06     1.00
    expm1     1.44     1.79
"""
from __future__ import annotations

import decimal
import functools
import math

import llvmlite.binding as llvm
from llvmlite import ir

from .irtypes import call_intrinsic, constant, element_type, lanes, with_lanes
from .target import vector_bytes


class FloatOps:
    """IR arithmetic on one float type (scalar or vector) with splatted constants."""

    def __init__(self, b: ir.IRBuilder, ty: ir.Type):
        self.b = b
        self.ty = ty
        self.is64 = isinstance(element_type(ty), ir.DoubleType)
        self.mant = 52 if self.is64 else 23
        self.bias = 1023 if self.is64 else 127
        self.ity = with_lanes(ir.IntType(64 if self.is64 else 32), lanes(ty))

    def c(self, v):
        return constant(self.ty, v)

    def ic(self, v):
        return constant(self.ity, v)

    def add(self, x, y):
        return self.b.fadd(x, y)

    def sub(self, x, y):
        return self.b.fsub(x, y)

    def mul(self, x, y):
        return self.b.fmul(x, y)

    def div(self, x, y):
        return self.b.fdiv(x, y)

    def fma(self, x, y, z):
        """x*y + z, fused where the target has FMA (llvm.fmuladd)."""
        return call_intrinsic(self.b, "fmuladd", x, y, z)

    def poly(self, x, coeffs):
        """sum(coeffs[i] * x**i) by Horner's rule."""
        acc = self.c(coeffs[-1])
        for a in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(a))
        return acc

    def cmp(self, op, x, y):
        """Ordered comparison: False when either side is NaN."""
        return self.b.fcmp_ordered(op, x, y)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def sel(self, cond, x, y):
        return self.b.select(cond, x, y)

    def clamp(self, x, lo, hi):
        """x limited to [lo, hi]; NaN becomes lo (callers restore NaN at the end)."""
        x = self.sel(self.cmp(">", x, self.c(lo)), x, self.c(lo))
        return self.sel(self.cmp("<", x, self.c(hi)), x, self.c(hi))

    def abs(self, x):
        return call_intrinsic(self.b, "fabs", x)

    def copysign(self, mag, sign):
        return call_intrinsic(self.b, "copysign", mag, sign)

    def to_float(self, i):
        return self.b.sitofp(i, self.ty)

    def bits(self, x):
        return self.b.bitcast(x, self.ity)

    def from_bits(self, i):
        return self.b.bitcast(i, self.ty)

    def pow2(self, k):
        """2**k for an integer k in the normal exponent range, built from its bit pattern."""
        return self.from_bits(self.b.shl(self.b.add(k, self.ic(self.bias)), self.ic(self.mant)))

    def scale(self, p, k):
        """p * 2**k rounded once (|k| < 2*bias), so 2**k itself may be out of range and denormal
        results round like the exact product. With AVX-512 this is llvm.ldexp, one vscalef
        (LLVM 22 lowers it so; older LLVMs call libm's ldexp); otherwise two exact steps,
        p * 2**(k/2) * 2**(k - k/2). Both give the same bits."""
        if _native_ldexp():
            return self.ldexp(p, k)
        k1 = self.b.ashr(k, self.ic(1))
        k2 = self.b.sub(k, k1)
        return self.mul(self.mul(p, self.pow2(k1)), self.pow2(k2))

    def ldexp(self, p, k):
        i32 = with_lanes(ir.IntType(32), lanes(self.ty))
        if self.is64:
            k = self.b.trunc(k, i32)
        name = f"llvm.ldexp.{_mangle_type(self.ty)}.{_mangle_type(i32)}"
        fn = self.b.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.b.module, ir.FunctionType(self.ty, [self.ty, i32]), name)
        return self.b.call(fn, [p, k])

    def ln2_parts(self):
        return _LN2_PARTS[self.is64]

    def reduce_ln2(self, x):
        """(k, r) with x = k*ln2 + r, |r| <= ln2/2, k an integer (|x| < 2^(mant-1) ln2).
        k = rint(x / ln2) by adding 1.5 * 2^mant in one multiply-add: the sum's last bits
        are k, read from its bit pattern (no rint, no fptosi: defined for NaN as well, and
        the float k is the sum minus the constant)."""
        magic = 1.5 * 2.0 ** self.mant
        t = self.fma(x, self.c(1 / math.log(2)), self.c(magic))
        k = self.sub(t, self.c(magic))
        ki = self.b.sub(self.bits(t), self.bits(self.c(magic)))
        hi, lo = self.ln2_parts()
        return ki, self.fma(k, self.c(-lo), self.fma(k, self.c(-hi), x))


def _mangle_type(ty: ir.Type) -> str:
    n = lanes(ty)
    elem = element_type(ty)
    name = {ir.FloatType: "f32", ir.DoubleType: "f64"}.get(type(elem)) or f"i{elem.width}"
    return name if n is None else f"v{n}{name}"


@functools.lru_cache(maxsize=None)
def _native_ldexp() -> bool:
    """Whether llvm.ldexp compiles to one instruction here (AVX-512 vscalef, LLVM >= 22)."""
    return vector_bytes() == 64 and llvm.llvm_version_info >= (22,)


def _ln2_split(keep_bits: int) -> tuple[float, float]:
    """ln2 = hi + lo with hi's mantissa cut to `keep_bits` bits, so k*hi is exact for small k."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        ln2 = decimal.Decimal(2).ln()
        m, e = math.frexp(float(ln2))
        hi = math.ldexp(math.floor(math.ldexp(m, keep_bits)), e - keep_bits)
        return hi, float(ln2 - decimal.Decimal(hi))


# float32: k needs 8 bits, keep 16 of 24; float64: k needs 11 bits, keep 32 of 53.
_LN2_PARTS = {False: _ln2_split(16), True: _ln2_split(32)}

# Clamp ranges for exp's argument: wide enough to overflow to inf and underflow to 0 on their
# own, narrow enough that k stays in the range `scale` handles.
_EXP_RANGE = {False: (-110.0, 90.0), True: (-760.0, 720.0)}


def _taylor(first: int, last: int) -> list[float]:
    return [1 / math.factorial(n) for n in range(first, last + 1)]


# exp(r) on |r| <= ln2/2: truncation below 0.05 ulp. float32: 1 + r + r^2 S(r) with S of
# degree 4 fitted near-minimax (Lawson-weighted least squares on 2000 Chebyshev nodes against
# 40-digit mpmath values, relative error 3.1e-9), one multiply-add fewer than Taylor's degree 7.
_EXP_POLY = {False: [1.0, 1.0, 0.49999993412469673, 0.1666652010762646, 0.0416683942174201,
                     0.008368780429081735, 0.0013814466739976953],
             True: _taylor(0, 13)}
# expm1(r) = r + r^2 q(r), q = 1/2! + r/3! + ...; float32: q of degree 5 fitted the same way
# (relative error of expm1 2.4e-10; Taylor needs degree 6).
_EXPM1_Q = {False: [0.500000004439985, 0.16666666368860283, 0.04166635981936179, 0.008333389572059853,
                    0.001394072006258966, 0.00019845885171919294],
            True: _taylor(2, 15)}
# log: R(z) = sum_{k>=1} 2/(2k+1) z^k, z = s^2 <= 0.0295.
_LOG_R = {False: [2 / (2 * k + 1) for k in range(1, 6)], True: [2 / (2 * k + 1) for k in range(1, 13)]}


def exp(f: FloatOps, x: ir.Value, nonpositive: bool = False) -> ir.Value:
    """NaN flows through every step (the clamp keeps it, and k's integer comes from a bit
    pattern, not fptosi) and comes out of the scaling as NaN: no final select. Callers that
    know x <= 0 (sigmoid's -|x|, erf's -x^2) skip the upper clamp (same results)."""
    lo, hi = _EXP_RANGE[f.is64]
    xc = f.sel(f.cmp("<", x, f.c(lo)), f.c(lo), x)
    if not nonpositive:
        xc = f.sel(f.cmp(">", xc, f.c(hi)), f.c(hi), xc)
    k, r = f.reduce_ln2(xc)
    return f.scale(f.poly(r, _EXP_POLY[f.is64]), k)


def _log_finite(f: FloatOps, x: ir.Value) -> ir.Value:
    """log(x) for positive finite x (anything else gives garbage, overridden by `log`)."""
    b = f.b
    tiny = f.cmp("<", x, f.c(math.ldexp(1.0, 1 - f.bias)))
    xs = f.sel(tiny, f.mul(x, f.c(math.ldexp(1.0, f.mant))), x)
    e_adjust = f.sel(tiny, f.ic(-f.mant), f.ic(0))
    one_bits = f.bias << f.mant
    sqrt_half_bits = _SQRT_HALF_BITS[f.is64]
    ix = b.add(f.bits(xs), f.ic(one_bits - sqrt_half_bits))
    e = b.add(b.sub(b.ashr(ix, f.ic(f.mant)), f.ic(f.bias)), e_adjust)
    m = f.from_bits(b.add(b.and_(ix, f.ic((1 << f.mant) - 1)), f.ic(sqrt_half_bits)))
    fm = f.sub(m, f.c(1.0))
    s = f.div(fm, f.add(f.c(2.0), fm))
    z = f.mul(s, s)
    big_r = f.mul(z, f.poly(z, _LOG_R[f.is64]))
    hfsq = f.mul(f.c(0.5), f.mul(fm, fm))
    dk = f.to_float(e)
    hi, lo = f.ln2_parts()
    tail = f.sub(f.sub(hfsq, f.fma(s, f.add(hfsq, big_r), f.mul(dk, f.c(lo)))), fm)
    return f.fma(dk, f.c(hi), f.b.fneg(tail))


_SQRT_HALF_BITS = {False: 0x3F3504F3, True: 0x3FE6A09E667F3BCD}


def _log_specials(f: FloatOps, x: ir.Value, res: ir.Value, minus_inf_at: float) -> ir.Value:
    """NaN below the domain, -inf at its edge, +inf at +inf, NaN passed through."""
    res = f.sel(f.cmp("<", x, f.c(minus_inf_at)), f.c(math.nan), res)
    res = f.sel(f.cmp("==", x, f.c(minus_inf_at)), f.c(-math.inf), res)
    res = f.sel(f.cmp("==", x, f.c(math.inf)), x, res)
    return f.sel(f.isnan(x), x, res)


def log(f: FloatOps, x: ir.Value) -> ir.Value:
    return _log_specials(f, x, _log_finite(f, x), 0.0)


def log1p(f: FloatOps, x: ir.Value) -> ir.Value:
    u = f.add(f.c(1.0), x)
    correction = f.div(f.sub(x, f.sub(u, f.c(1.0))), u)
    res = f.add(_log_finite(f, u), correction)
    res = f.sel(f.cmp("==", x, f.c(0.0)), x, res)  # keeps -0.0
    return _log_specials(f, x, res, -1.0)


def _expm1_parts(f: FloatOps, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(p, k) with expm1(x) = 2^k (p + 1) - 1 and p = expm1(r), r = x - k ln2 (x clamped)."""
    k, r = f.reduce_ln2(x)
    return f.fma(f.mul(r, r), f.poly(r, _EXPM1_Q[f.is64]), r), k


def _expm1_small(f: FloatOps, p: ir.Value, k: ir.Value) -> ir.Value:
    """2^k p + (2^k - 1) with one rounding, for |k| <= 60 (2^k and 2^k - 1 are normal)."""
    two = f.pow2(k)
    return f.fma(two, p, f.sub(two, f.c(1.0)))


def expm1(f: FloatOps, x: ir.Value) -> ir.Value:
    b = f.b
    p, k = _expm1_parts(f, f.clamp(x, -50.0, _EXP_RANGE[f.is64][1]))
    # Large k: the -1 is below half an ulp of 2^k (p + 1), which `scale` builds without overflow.
    large = b.icmp_signed(">", k, f.ic(60))
    small = _expm1_small(f, p, b.select(large, f.ic(60), k))
    res = f.sel(large, f.scale(f.add(p, f.c(1.0)), k), small)
    res = f.sel(f.cmp("<", x, f.c(-45.0)), f.c(-1.0), res)  # exp(-45) < half an ulp of 1 (float64)
    res = f.sel(f.cmp("==", x, f.c(0.0)), x, res)  # keeps -0.0
    return f.sel(f.isnan(x), x, res)


def tanh(f: FloatOps, x: ir.Value) -> ir.Value:
    a = f.abs(x)
    a = f.sel(f.cmp(">", a, f.c(20.0)), f.c(20.0), a)  # tanh(20) rounds to 1 in float64; NaN stays
    e = _expm1_small(f, *_expm1_parts(f, f.add(a, a)))  # 2|x| <= 40: k <= 58, no special cases
    # a NaN x makes p NaN (k, read from bits, is then some integer): e and the result are NaN
    return f.copysign(f.div(e, f.add(e, f.c(2.0))), x)


def sigmoid(f: FloatOps, x: ir.Value) -> ir.Value:
    e = exp(f, f.b.fneg(f.abs(x)), nonpositive=True)
    numerator = f.sel(f.cmp(">=", x, f.c(0.0)), f.c(1.0), e)  # one division for both branches
    return f.div(numerator, f.add(f.c(1.0), e))


# erf coefficients: weighted least-squares fits on 300 Chebyshev nodes, solved with mpmath at
# 40 digits. Small piece: erf(x)/x as a polynomial in x^2 on [0, 1] (relative error weight).
# Large pieces (lo, hi, t_mid, t_half, coeffs): erfc(x) exp(x^2) as a polynomial in
# y = (1/x - t_mid) / t_half, which maps [lo, hi] onto [-1, 1], weighted by exp(-x^2)/erf(x) so
# the fit minimizes the error of erf itself. Beyond the last piece erf rounds to +-1.
_ERF_SMALL = {
    False: (1.1283791665100522, -0.3761262884332505, 0.11283612428243786, -0.026854808537173327,
            0.005190053577738831, -0.0008024354127814559, 7.898210204194508e-05),
    True: (1.1283791670955126, -0.3761263890318375, 0.11283791670954918, -0.026866170645082618,
           0.005223977624864885, -0.0008548326983129658, 0.0001205533118448466, -1.4925596812620454e-05,
           1.646102263904003e-06, -1.635052451892407e-07, 1.4661070022041527e-08, -1.1377426318364696e-09,
           5.964297463636965e-11),
}
_ERF_LARGE = {
    False: ((1.0, 4.0, 0.625, 0.375,
             (0.30595299229992895, 0.14335640792771245, -0.024243012675735674, 0.0023081612676842966,
              0.00046134226476187497, -0.00034898156502296044, 0.00012048250302067492, -2.595877216842779e-05,
              7.10265472311843e-07, 2.0151840145570813e-06, -5.825497423809196e-07)),),
    True: ((1.0, 2.5, 0.7, 0.3,
            (0.3336736525414603, 0.10715869844076227, -0.014574460697139342, 0.0013084127773136272,
             7.272850937132199e-05, -7.39238269526797e-05, 2.2542345137240892e-05, -4.651859683752795e-06,
             5.714672706497633e-07, 4.6496590661970526e-08, -5.752493478290836e-08, 2.2705391836575484e-08,
             -6.39342220123116e-09, 1.347329202478182e-09, -1.7098416989154106e-10, -1.85485298865834e-11,
             2.8375613334532106e-11, -1.4870880650135718e-11, 3.3406102071466688e-12)),
           (2.5, 6.0, 0.2833333333333333, 0.11666666666666668,
            (0.1540874111691922, 0.059153618997491074, -0.0023316669965923334, -0.00013617635130262212,
             3.595721894623282e-05, -2.6339758451410713e-06, -2.2465965196835515e-07, 8.961157423798999e-08,
             -1.1133066949558319e-08, -8.183302341586621e-11, 3.268834311508738e-10, -7.258543175773964e-11,
             8.342733050748265e-12, -4.0883733422964596e-13))),
}


def erf(f: FloatOps, x: ir.Value) -> ir.Value:
    a = f.abs(x)
    z = f.mul(a, a)
    small = _ERF_SMALL[f.is64]
    # a + a (P(z) - 1): the leading 1.128... is split so its rounding does not reach the result.
    res = f.fma(a, f.poly(z, (small[0] - 1.0,) + small[1:]), a)
    tail = exp(f, f.b.fneg(z), nonpositive=True)
    inv = f.div(f.c(1.0), a)
    pieces = _ERF_LARGE[f.is64]
    for lo, _hi, t_mid, t_half, coeffs in pieces:
        y = f.mul(f.sub(inv, f.c(t_mid)), f.c(1 / t_half))
        large = f.sub(f.c(1.0), f.mul(tail, f.poly(y, coeffs)))
        res = f.sel(f.cmp(">=", a, f.c(lo)), large, res)
    res = f.sel(f.cmp(">=", a, f.c(pieces[-1][1])), f.c(1.0), res)
    return f.sel(f.isnan(x), x, f.copysign(res, x))


def exp_nonpositive(f: FloatOps, x: ir.Value) -> ir.Value:
    """exp of an argument known to be <= 0 or NaN (softmax's x - max(x)): no upper clamp."""
    return exp(f, x, nonpositive=True)


EMITTERS = {"exp": exp, "exp_nonpositive": exp_nonpositive, "log": log, "log1p": log1p, "expm1": expm1,
            "tanh": tanh, "sigmoid": sigmoid, "erf": erf}
