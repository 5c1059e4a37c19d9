"""Test harness for the LLVM backend: JIT-compiles a loop applying a scalar program to arrays.

`elementwise(program, in_dtypes, out_dtype, lanes=None)` returns a Python function of numpy
arrays. The loop body is the scalar program emitted by LLVMScalarBuilder, on scalars
(`lanes=None`: the loop vectorizer decides) or on explicit <lanes x T> vectors (inputs are
padded to a multiple of `lanes`). Used by the codegen tests and by `python tests/codegen_harness.py`,
which prints the accuracy table of docs/accuracy.md.
"""
from __future__ import annotations

import ctypes
import functools
import math
import sys

import numpy as np
from llvmlite import ir

from graphflow.compiler.codegen import jit
from graphflow.compiler.codegen.irtypes import element_pointer, load_value, store_value
from graphflow.compiler.codegen.scalar_llvm import LLVMScalarBuilder

I64 = ir.IntType(64)


def build_module(program, in_dtypes, out_dtype, lanes=None, name="kernel") -> str:
    """IR text of `void name(ptr out, ptr in..., i64 n)` computing out[i] = program(in[i]...)."""
    module = ir.Module(name="harness")
    ptr = ir.PointerType()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * (1 + len(in_dtypes)) + [I64]), name)
    out, *ins, n = fn.args
    for a in (out, *ins):
        a.add_attribute("noalias")
    entry, loop, done = fn.append_basic_block("entry"), fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    step = ir.Constant(I64, lanes or 1)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    sb = LLVMScalarBuilder(b, module)
    args = [load_value(b, element_pointer(b, p, dt, i), dt, lanes) for p, dt in zip(ins, in_dtypes)]
    result = program(sb, *args)
    store_value(b, result, element_pointer(b, out, out_dtype, i))
    nxt = b.add(i, step)
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return str(module)


def elementwise(program, in_dtypes, out_dtype, lanes=None):
    """A numpy-level function running the compiled loop; returns (function, JitModule)."""
    in_dtypes = [np.dtype(d) for d in in_dtypes]
    out_dtype = np.dtype(out_dtype)
    jm = jit.compile_module(build_module(program, in_dtypes, out_dtype, lanes))
    cfn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (1 + len(in_dtypes)), ctypes.c_int64)(jm.address("kernel"))

    def run(*arrays):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=d) for a, d in zip(arrays, in_dtypes)])
        shape = arrays[0].shape
        n = int(np.prod(shape))
        padded = n if lanes is None else -(-n // lanes) * lanes
        flat = []
        for a in arrays:
            buf = np.zeros(padded, a.dtype)
            buf[:n] = a.ravel()
            flat.append(buf)
        out = np.empty(padded, out_dtype)
        cfn(out.ctypes.data, *[a.ctypes.data for a in flat], padded)
        return out[:n].reshape(shape)

    run.module = jm
    return run


@functools.lru_cache(maxsize=None)
def unary_math(name: str, dtype: str, lanes=None):
    """The compiled elementwise loop of mathfns function `name` (cached per process)."""
    return elementwise(lambda b, x: getattr(b, name)(x), [dtype], dtype, lanes)


# ---- accuracy measurement ----

MATH_FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "sigmoid", "erf")


def _sigmoid(x):
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def reference(name: str, x: np.ndarray, dtype) -> np.ndarray:
    """A more precise result: float64 for float32 inputs, long double (or math.erf) for float64."""
    if name == "erf":
        return np.frompyfunc(math.erf, 1, 1)(x.astype(np.float64)).astype(np.float64)
    wide = np.float64 if np.dtype(dtype) == np.float32 else np.longdouble
    fn = _sigmoid if name == "sigmoid" else getattr(np, name)
    with np.errstate(all="ignore"):
        return fn(x.astype(wide))


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in units of the last place of `dtype` at ref (denormal spacing at the bottom).
    The reference overflows where it does once rounded to `dtype`; agreeing NaNs/infs count 0,
    a NaN or inf where the other is not counts as inf."""
    dtype = np.dtype(dtype)
    finfo = np.finfo(dtype)
    with np.errstate(all="ignore"):  # signaling NaNs warn when widened
        got = got.astype(ref.dtype)
        ref = np.where(np.isinf(ref.astype(dtype)), ref.astype(dtype), ref)
        mag = np.abs(ref)
        exponent = np.floor(np.log2(np.maximum(mag, finfo.tiny)))
        ulp = np.exp2(exponent - finfo.nmant)
        err = np.abs(got - ref) / ulp
    same_special = (np.isnan(got) & np.isnan(ref)) | (np.isinf(ref) & (got == ref))
    err = np.where(same_special, 0.0, err)
    err = np.where(np.isfinite(ref) != np.isfinite(got), np.inf, err)
    return err


SWEEP_RANGES = {
    "exp": (-104.0, 89.0), "log": (0.0, 1e30), "log1p": (-1.0, 1e30), "expm1": (-90.0, 89.0),
    "tanh": (-20.0, 20.0), "sigmoid": (-105.0, 100.0), "erf": (-6.5, 6.5),
}


def sweep(name: str, dtype, count: int) -> np.ndarray:
    """`count` test points: every `stride`-th float of `dtype` in the function's range (by bit
    pattern, so all binades and the denormals are covered) plus a linear grid."""
    dtype = np.dtype(dtype)
    lo, hi = SWEEP_RANGES[name]
    itype = np.int32 if dtype == np.float32 else np.int64
    pos_hi = np.array(max(abs(lo), abs(hi)), dtype).view(itype)
    bits = np.linspace(0, int(pos_hi), count // 2, dtype=np.float64).astype(itype)
    mags = bits.view(dtype)
    points = np.concatenate([mags, -mags, np.linspace(lo, hi, count // 4).astype(dtype)])
    return points[(points >= lo) & (points <= hi)]


def special_values(dtype) -> np.ndarray:
    f = np.finfo(dtype)
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.tiny, -f.tiny, f.smallest_subnormal,
                     -f.smallest_subnormal, f.max, -f.max, 1.0, -1.0, 0.5, 88.72, 89.0, -103.9, -104.0,
                     709.78, 710.0, -745.0, -746.0, 1e-30, -1e-30, 20.0, -20.0, 9.1, -9.1], dtype)


def measure(name: str, dtype, count: int = 400_000) -> float:
    """Maximum ulp error of the compiled `name` over the sweep and the special values."""
    x = np.concatenate([sweep(name, dtype, count), special_values(dtype)])
    got = unary_math(name, np.dtype(dtype).name)(x)
    return float(np.max(ulp_error(got, reference(name, x, dtype), dtype)))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
    print("| function | float32 max ulp | float64 max ulp |")
    print("| --- | --- | --- |")
    for fn_name in MATH_FUNCTIONS:
        print(f"| {fn_name} | {measure(fn_name, 'float32', count):.2f} | {measure(fn_name, 'float64', count):.2f} |")
