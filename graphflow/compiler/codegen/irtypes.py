"""numpy dtype <-> LLVM type mapping, vector splats and intrinsic calls shared by the emitters.

Values may be scalars or llvmlite vector types: every helper here works lane-wise, so the
same scalar programs build both the per-element loop body and explicit-vector code.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ...errors import UnimplementedError

_BY_DTYPE = {
    np.dtype("float32"): ir.FloatType(),
    np.dtype("float64"): ir.DoubleType(),
    np.dtype("int32"): ir.IntType(32),
    np.dtype("int64"): ir.IntType(64),
    np.dtype("bool"): ir.IntType(1),
}
_BY_TYPE = {str(t): d for d, t in _BY_DTYPE.items()}
I8 = ir.IntType(8)


def ir_type(dtype) -> ir.Type:
    """The register type of `dtype` (bool is i1)."""
    try:
        return _BY_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise UnimplementedError(f"LLVM codegen: expected a dtype in "
                                 f"({', '.join(str(d) for d in _BY_DTYPE)}), got {np.dtype(dtype)}") from None


def memory_type(dtype) -> ir.Type:
    """The in-memory element type of `dtype` (bool is stored as one byte, like numpy)."""
    return I8 if np.dtype(dtype) == np.bool_ else ir_type(dtype)


def element_type(ty: ir.Type) -> ir.Type:
    return ty.element if isinstance(ty, ir.VectorType) else ty


def lanes(ty: ir.Type) -> int | None:
    """Vector length of `ty`, None for a scalar type."""
    return ty.count if isinstance(ty, ir.VectorType) else None


def dtype_of(value_or_type) -> np.dtype:
    """numpy dtype of an IR value or type (the element type for vectors)."""
    ty = value_or_type if isinstance(value_or_type, ir.Type) else value_or_type.type
    return _BY_TYPE[str(element_type(ty))]


def with_lanes(ty: ir.Type, n: int | None) -> ir.Type:
    """`ty`'s element type, as a vector of n lanes (scalar when n is None)."""
    elem = element_type(ty)
    return elem if n is None else ir.VectorType(elem, n)


def splat(b: ir.IRBuilder, value: ir.Value, n: int | None) -> ir.Value:
    """`value` broadcast to n lanes (unchanged when n is None or it already has lanes)."""
    if n is None or isinstance(value.type, ir.VectorType):
        return value
    vty = ir.VectorType(value.type, n)
    if isinstance(value, ir.Constant):
        return ir.Constant(vty, [value.constant] * n)
    one = b.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return b.shuffle_vector(one, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n))


def match(b: ir.IRBuilder, *values: ir.Value) -> list[ir.Value]:
    """Splats scalar operands to the lane count of the vector operands, if any."""
    n = next((lanes(v.type) for v in values if lanes(v.type)), None)
    return [splat(b, v, n) for v in values]


def constant(ty: ir.Type, value) -> ir.Constant:
    """A constant of `ty` (splatted over the lanes of a vector type)."""
    elem = element_type(ty)
    if isinstance(elem, ir.IntType) and elem.width == 1:
        value = int(bool(value))
    elif isinstance(elem, ir.IntType):  # wrapped into the signed range, as numpy's casts do
        half = 1 << (elem.width - 1)
        value = (int(value) + half) % (2 * half) - half
    else:
        value = float(value)
    n = lanes(ty)
    return ir.Constant(elem, value) if n is None else ir.Constant(ty, [value] * n)


def _mangle(ty: ir.Type) -> str:
    elem = element_type(ty)
    name = {"float": "f32", "double": "f64"}.get(str(elem)) or f"i{elem.width}"
    n = lanes(ty)
    return name if n is None else f"v{n}{name}"


def call_intrinsic(b: ir.IRBuilder, name: str, *args: ir.Value, ret: ir.Type | None = None) -> ir.Value:
    """Calls the overloaded LLVM intrinsic `llvm.<name>` on `args` (overloaded on args[0]'s type)."""
    module = b.module
    full = f"llvm.{name}.{_mangle(args[0].type)}"
    fn = module.globals.get(full)
    if fn is None:
        fnty = ir.FunctionType(ret or args[0].type, [a.type for a in args])
        fn = ir.Function(module, fnty, full)
    return b.call(fn, args)


def load_value(b: ir.IRBuilder, ptr: ir.Value, dtype, lanes_: int | None = None) -> ir.Value:
    """Loads one element (or `lanes_` consecutive elements) of `dtype` at `ptr` as register values.
    Only element alignment is assumed (a vector type's own alignment would need 64-byte buffers)."""
    mty = memory_type(dtype)
    ty = mty if lanes_ is None else ir.VectorType(mty, lanes_)
    value = b.load(ptr, typ=ty, align=np.dtype(dtype).itemsize)
    if np.dtype(dtype) == np.bool_:
        return b.icmp_unsigned("!=", value, constant(ty, 0))
    return value


def store_value(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value) -> None:
    """Stores a register value (bools widened to one byte each) at `ptr`, element-aligned."""
    align = dtype_of(value).itemsize
    if element_type(value.type) == ir.IntType(1):
        value = b.zext(value, with_lanes(I8, lanes(value.type)))
    b.store(value, ptr, align=align)


def element_pointer(b: ir.IRBuilder, base: ir.Value, dtype, index: ir.Value) -> ir.Value:
    """Address of element `index` of a `dtype` array at `base` (typed gep, opaque pointers)."""
    return b.gep(base, [index], inbounds=True, source_etype=memory_type(dtype))
