"""LLVMScalarBuilder against NumpyScalarBuilder: every interface method, every dtype, with the
IEEE special values, on scalar loops and on explicit vectors."""
import numpy as np
import pytest
from llvmlite import ir

from codegen_harness import elementwise
from graphflow.compiler.codegen.irtypes import ir_type, memory_type
from graphflow.compiler.codegen.scalar_llvm import LLVMScalarBuilder
from graphflow.ops.scalar import NumpyScalarBuilder

FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
NP = NumpyScalarBuilder()


def float_values(dtype, n=200, seed=0):
    f = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, -7.0,
               f.tiny, -f.smallest_subnormal, f.max, 1e-3, 0.1]
    rng = np.random.default_rng(seed)
    return np.concatenate([np.array(special, dtype), (rng.standard_normal(n) * 10).astype(dtype)])


def int_values(dtype, n=200, seed=0):
    i = np.iinfo(dtype)
    special = [0, 1, -1, 2, -2, 7, -7, 3, i.min, i.max, i.min + 1]
    rng = np.random.default_rng(seed)
    return np.concatenate([np.array(special, dtype), rng.integers(-100, 100, n).astype(dtype)])


def values(dtype, seed=0):
    if dtype == "bool":
        return np.array([True, False, True, True, False, False])
    return float_values(dtype, seed=seed) if dtype in FLOATS else int_values(dtype, seed=seed)


def pairs(dtype):
    x = values(dtype)
    a, b = np.meshgrid(x[:30], x[:30])
    return (np.concatenate([a.ravel(), x]), np.concatenate([b.ravel(), values(dtype, seed=1)]))


def assert_same(got, want, exact=True):
    want = np.asarray(want)
    assert got.dtype == want.dtype
    if want.dtype.kind == "f":
        if exact:
            np.testing.assert_array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0]))
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=4 * np.finfo(want.dtype).eps, atol=0)
    else:
        np.testing.assert_array_equal(got, want)


def method(name):
    return lambda b, *args: getattr(b, name)(*args)


UNARY_FLOAT = ["neg", "abs", "floor", "ceil", "round", "sign", "sqrt", "rsqrt", "isnan", "isfinite"]
BINARY_NUMERIC = ["add", "sub", "mul", "floordiv", "mod", "min", "max", "lt", "le", "gt", "ge", "eq", "ne"]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", UNARY_FLOAT)
def test_unary_float(name, dtype):
    x = values(dtype)
    with np.errstate(all="ignore"):
        want = getattr(NP, name)(x)
    fn = elementwise(method(name), [dtype], want.dtype)
    assert_same(fn(x), want)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["sin", "cos"])
def test_libm_unary(name, dtype):
    x = values(dtype)
    fn = elementwise(method(name), [dtype], dtype)
    with np.errstate(all="ignore"):
        assert_same(fn(x), getattr(NP, name)(x), exact=False)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("name", BINARY_NUMERIC)
def test_binary(name, dtype):
    x, y = pairs(dtype)
    with np.errstate(all="ignore"):
        want = getattr(NP, name)(x, y)
    fn = elementwise(method(name), [dtype, dtype], want.dtype)
    assert_same(fn(x, y), want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_true_division_and_pow(dtype):
    x, y = pairs(dtype)
    with np.errstate(all="ignore"):
        assert_same(elementwise(method("div"), [dtype] * 2, dtype)(x, y), NP.div(x, y))
        assert_same(elementwise(method("pow"), [dtype] * 2, dtype)(x, y), NP.pow(x, y), exact=False)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_division_never_traps(dtype):
    i = np.iinfo(dtype)
    x = np.array([7, -7, 7, -7, i.min, i.min, 5, 0, i.max], dtype)
    y = np.array([2, 2, -2, -2, -1, 0, 0, 0, -1], dtype)
    fdiv = elementwise(method("floordiv"), [dtype] * 2, dtype)
    fmod = elementwise(method("mod"), [dtype] * 2, dtype)
    with np.errstate(all="ignore"):
        assert_same(fdiv(x, y), np.floor_divide(x, y))
        assert_same(fmod(x, y), np.mod(x, y))
    # true division on ints truncates toward zero; x / 0 is 0
    tdiv = elementwise(method("div"), [dtype] * 2, dtype)
    np.testing.assert_array_equal(tdiv(x, y)[:4], [3, -3, -3, 3])
    assert tdiv(x, y)[5] == 0


@pytest.mark.parametrize("dtype", INTS)
def test_integer_unary_and_pow(dtype):
    x = values(dtype)
    for name in ("neg", "abs", "sign", "floor", "round"):
        assert_same(elementwise(method(name), [dtype], dtype)(x), getattr(NP, name)(x))
    for name in ("isnan", "isfinite"):
        assert_same(elementwise(method(name), [dtype], "bool")(x), getattr(NP, name)(x))
    base = np.array([2, -3, 5, 0, 1, -1, 7, 3, 1, -1, 2], dtype)
    exp = np.array([10, 3, 0, 5, 9, 7, 20, 40, -2, -3, -1], dtype)
    got = elementwise(method("pow"), [dtype] * 2, dtype)(base, exp)
    with np.errstate(all="ignore"):
        want = np.power(base[:8], exp[:8])  # numpy raises on negative exponents
    np.testing.assert_array_equal(got[:8], want)
    np.testing.assert_array_equal(got[8:], [1, -1, 0])


def test_bool_logic_and_select():
    a, b = np.meshgrid([True, False], [True, False])
    a, b = a.ravel(), b.ravel()
    for name in ("and_", "or_", "eq", "ne"):
        assert_same(elementwise(method(name), ["bool"] * 2, "bool")(a, b), getattr(NP, name)(a, b))
    assert_same(elementwise(method("not_"), ["bool"], "bool")(a), np.logical_not(a))
    x, y = values("float32"), values("float32", seed=3)
    c = np.arange(x.size) % 3 == 0
    fn = elementwise(method("select"), ["bool", "float32", "float32"], "float32")
    assert_same(fn(c, x, y), np.where(c, x, y))


CASTS = [(s, d) for s in FLOATS + INTS + ("bool",) for d in FLOATS + INTS + ("bool",) if s != d]


@pytest.mark.parametrize("src,dst", CASTS)
def test_cast_like_astype(src, dst):
    x = values(src)
    if src in FLOATS and dst in INTS:  # NaN / out of range is undefined in numpy too
        x = x[np.isfinite(x) & (np.abs(x) < 2 ** 31)]
    fn = elementwise(lambda b, v: b.cast(v, np.dtype(dst)), [src], dst)
    with np.errstate(over="ignore"):
        assert_same(fn(x), x.astype(dst))


def test_constants_splat_into_vectors():
    """A scalar program mixing vector values and scalar constants emits explicit vector code."""
    def program(b, x, y):
        t = b.add(b.mul(x, b.const(0.5, b.dtype(x))), y)
        return b.select(b.gt(t, b.const(0, b.dtype(t))), b.max(t, x), b.floordiv(y, b.const(3, b.dtype(y))))

    x, y = values("float32"), values("float32", seed=2)
    with np.errstate(all="ignore"):
        want = program(NP, x, y)
    fn = elementwise(program, ["float32"] * 2, "float32", lanes=16)
    assert "<16 x float>" in fn.module.ir_text
    assert_same(fn(x, y), want)


@pytest.mark.parametrize("dtype", FLOATS + INTS + ("bool",))
def test_vector_lanes_every_dtype(dtype):
    x, y = values(dtype), values(dtype, seed=5)
    name = "and_" if dtype == "bool" else "max"
    fn = elementwise(method(name), [dtype] * 2, dtype, lanes=8)
    assert_same(fn(x, y), getattr(NP, name)(x, y))


def test_types_and_bool_memory_form():
    assert ir_type(np.float32) == ir.FloatType() and ir_type("int64") == ir.IntType(64)
    assert ir_type(np.bool_) == ir.IntType(1) and memory_type(np.bool_) == ir.IntType(8)
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.DoubleType()]), "f")
    b = LLVMScalarBuilder(ir.IRBuilder(fn.append_basic_block()))
    assert b.dtype(fn.args[0]) == np.float64
    assert b.dtype(b.const(True, np.bool_)) == np.bool_
    with pytest.raises(Exception, match="float32 or float64"):
        b.exp(b.const(1, np.int32))
