"""The loop vectorizer really vectorizes fused-style loops: packed ops on the host's widest
vector registers in the assembly, and no scalar libm calls left in the loop."""
import re

import numpy as np
import pytest

from codegen_harness import elementwise
from graphflow.compiler.codegen.target import vector_bytes, vector_width

REGISTER = {64: "zmm", 32: "ymm", 16: "xmm"}[vector_bytes()]
SUFFIX = {"float32": "ps", "float64": "pd"}


def fused_chain(b, x, y):
    """tanh(x*0.5 + y) * sigmoid(x) + sqrt(abs(y) + 1)"""
    half, one = b.const(0.5, b.dtype(x)), b.const(1, b.dtype(x))
    return b.add(b.mul(b.tanh(b.add(b.mul(x, half), y)), b.sigmoid(x)), b.sqrt(b.add(b.abs(y), one)))


def packed_ops(asm, dtype):
    """Packed (SIMD) float instructions on the widest registers, e.g. `vfmadd213ps %zmm1, ...`."""
    return re.findall(rf"\bv\w+{SUFFIX[dtype]}\s[^\n]*%{REGISTER}", asm)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_chain_uses_vector_registers(dtype):
    fn = elementwise(fused_chain, [dtype, dtype], dtype)
    asm = fn.module.asm
    assert len(packed_ops(asm, dtype)) > 20, asm[:2000]
    assert not re.search(r"\bcall", asm), "a libm call is left in the loop"
    assert fn.module.has_vector_code("kernel")
    lanes = vector_width(dtype)
    assert f"<{lanes} x {'float' if dtype == 'float32' else 'double'}>" in fn.module.optimized_ir
    x = np.linspace(-5, 5, 1001).astype(dtype)
    y = np.linspace(3, -2, 1001).astype(dtype)
    want = np.tanh(x * 0.5 + y) / (1 + np.exp(-x)) + np.sqrt(np.abs(y) + 1)
    np.testing.assert_allclose(fn(x, y), want, rtol=10 * np.finfo(dtype).eps)


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "expm1", "tanh", "sigmoid", "erf"])
def test_each_math_function_vectorizes(name):
    fn = elementwise(lambda b, x: getattr(b, name)(x), ["float32"], "float32")
    assert packed_ops(fn.module.asm, "float32"), f"{name}: no packed {REGISTER} ops"


def test_integer_and_bool_loops_vectorize():
    def program(b, x, y):
        return b.select(b.gt(x, y), b.add(x, y), b.mul(x, y))

    fn = elementwise(program, ["int32", "int32"], "int32")
    assert re.search(rf"\bvp\w+\s[^\n]*%{REGISTER}", fn.module.asm)
    x = np.arange(-50, 50, dtype=np.int32)
    np.testing.assert_array_equal(fn(x, x[::-1].copy()), np.where(x > x[::-1], x + x[::-1], x * x[::-1]))


def test_many_uses_call_one_shared_vector_body():
    """Past mathlib.INLINE_USES uses, the loop calls a vector variant instead of inlining."""
    from graphflow.compiler.codegen.mathlib import INLINE_USES

    def program(b, x):
        for _ in range(INLINE_USES + 4):
            x = b.add(b.tanh(x), b.const(0.25, b.dtype(x)))
        return x

    fn = elementwise(program, ["float32"], "float32")
    lanes = vector_width("float32")
    assert f"call <{lanes} x float> @graphflow.tanh.v{lanes}f32" in fn.module.optimized_ir
    x = np.linspace(-3, 3, 999).astype(np.float32)
    want = x.astype(np.float64)
    for _ in range(INLINE_USES + 4):
        want = np.tanh(want) + 0.25
    np.testing.assert_allclose(fn(x), want, rtol=1e-6, atol=1e-6)


def test_has_vector_code_is_false_for_scalar_code():
    from graphflow.compiler.codegen import jit

    module = jit.compile_module("define double @twice(double %x) {\n  %y = fadd double %x, %x\n  ret double %y\n}\n")
    assert not module.has_vector_code("twice")
    with pytest.raises(KeyError, match="no function named 'nope'"):
        module.has_vector_code("nope")
