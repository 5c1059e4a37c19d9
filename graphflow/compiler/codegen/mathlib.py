"""Math functions as per-module internal LLVM functions, so big kernels stay cheap to compile.

Each use of exp/log/.../erf becomes a call to `graphflow.<name>.<type>` (e.g.
`graphflow.tanh.f32`, `graphflow.tanh.v16f32`), defined once per module from the emitters of
`mathfns`. The first few uses per function and dtype are marked `alwaysinline`: small kernels
get the code inlined and vectorized with the rest of the loop. Past that count the family
switches to `noinline`, and the scalar function advertises vector variants through the
`vector-function-abi-variant` attribute (kept alive by `@llvm.compiler.used`), so the loop
vectorizer still vectorizes the loop, calling one shared vector body. Inlining a polynomial
250 times made a 1000-op chain take ~8 s to compile; calls keep it well under a second.

Uses inside `cold(module)` (the scalar fallback loops of a kernel: strided operands, the
peel and tail of a streaming loop) call a separate out-of-line copy (`graphflow.tanh.f32.cold`)
and do not count: a kernel emits each op in several loop versions, and counting the cold
ones pushed even a two-function kernel like W1 over the limit, so its hot vector loop called
the polynomials (spilling every live register around each call) instead of inlining them.
"""
from __future__ import annotations

import contextlib
import weakref

from llvmlite import ir

from .irtypes import dtype_of, lanes, with_lanes
from .mathfns import EMITTERS, FloatOps
from .target import vector_width

INLINE_USES = 4  # per function and dtype in one module

_libraries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def call(b: ir.IRBuilder, module: ir.Module, name: str, x: ir.Value) -> ir.Value:
    """Emits `name(x)` at b's insertion point (in `module`), for a float32/float64 scalar or vector x."""
    library = _library(module)
    fn = library.cold_function(name, x.type) if library.cold else library.use(name, x.type)
    return b.call(fn, [x])


def _library(module: ir.Module) -> "_Library":
    library = _libraries.get(module)
    if library is None:
        library = _libraries[module] = _Library(module)
    return library


@contextlib.contextmanager
def cold(module: ir.Module):
    """Math calls emitted inside go to shared out-of-line copies and leave the inlining
    budget to the hot loops (for code that runs on a few elements or a slow path anyway)."""
    library = _library(module)
    outer, library.cold = library.cold, True
    try:
        yield
    finally:
        library.cold = outer


def _mangle(ty: ir.Type) -> str:
    elem = "f64" if dtype_of(ty).itemsize == 8 else "f32"
    n = lanes(ty)
    return elem if n is None else f"v{n}{elem}"


def _add_string_attribute(fn: ir.Function, key: str, value: str) -> None:
    # llvmlite accepts only the attribute names of its fixed list; LLVM also takes string
    # attributes ("key"="value"), so this one instance's list is extended with ours.
    attr = f'"{key}"="{value}"'
    fn.attributes._known = fn.attributes._known | {attr}
    fn.attributes.add(attr)


class _Library:
    """The math functions of one module, their use counts and inlining state."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.uses: dict[tuple[str, str], int] = {}
        self.functions: dict[tuple[str, str], dict[str, ir.Function]] = {}  # family -> mangled -> fn
        self.kept: list[ir.Function] = []
        self.announced: set[str] = set()
        self.cold = False
        self.cold_functions: dict[tuple[str, str], ir.Function] = {}

    def cold_function(self, name: str, ty: ir.Type) -> ir.Function:
        key = (name, _mangle(ty))
        fn = self.cold_functions.get(key)
        if fn is None:
            fn = self.cold_functions[key] = self._define(name, ty, ".cold")
            fn.attributes.add("noinline")
        return fn

    def use(self, name: str, ty: ir.Type) -> ir.Function:
        family = (name, dtype_of(ty).name)
        count = self.uses[family] = self.uses.get(family, 0) + 1
        fn = self._function(name, ty)
        if count == INLINE_USES + 1:
            self._stop_inlining(family)
        return fn

    def _function(self, name: str, ty: ir.Type) -> ir.Function:
        family = (name, dtype_of(ty).name)
        members = self.functions.setdefault(family, {})
        fn = members.get(_mangle(ty))
        if fn is None:
            fn = members[_mangle(ty)] = self._define(name, ty)
            inlining = self.uses.get(family, 0) <= INLINE_USES
            fn.attributes.add("alwaysinline" if inlining else "noinline")
            if lanes(ty) is None and not inlining:
                self._add_vector_variants(name, fn, ty)
        return fn

    def _define(self, name: str, ty: ir.Type, suffix: str = "") -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty]), f"graphflow.{name}.{_mangle(ty)}{suffix}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("readnone")
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        builder.ret(EMITTERS[name](FloatOps(builder, ty), fn.args[0]))
        return fn

    def _stop_inlining(self, family: tuple[str, str]) -> None:
        for fn in list(self.functions[family].values()):
            fn.attributes.discard("alwaysinline")
            fn.attributes.add("noinline")
            if lanes(fn.args[0].type) is None:
                self._add_vector_variants(family[0], fn, fn.args[0].type)

    def _add_vector_variants(self, name: str, scalar: ir.Function, ty: ir.Type) -> None:
        """Vector bodies at the host's full and half vector width, announced to the vectorizer."""
        if scalar.name in self.announced:
            return
        self.announced.add(scalar.name)
        widest = vector_width(dtype_of(ty))
        mappings = []
        for n in sorted({widest, widest // 2} - {0, 1}):
            vector = self._function(name, with_lanes(ty, n))
            self._keep(vector)
            mappings.append(f"_ZGV_LLVM_N{n}v_{scalar.name}({vector.name})")
        if mappings:
            _add_string_attribute(scalar, "vector-function-abi-variant", ",".join(mappings))

    def _keep(self, fn: ir.Function) -> None:
        """Lists `fn` in @llvm.compiler.used: only the attribute names it until vectorization."""
        if fn in self.kept:
            return
        self.kept.append(fn)
        used = self.module.globals.get("llvm.compiler.used")
        if used is None:
            used = ir.GlobalVariable(self.module, ir.ArrayType(ir.PointerType(), 1), "llvm.compiler.used")
            used.linkage = "appending"
            used.section = "llvm.metadata"
        used.value_type = ir.ArrayType(ir.PointerType(), len(self.kept))
        # llvmlite would print function constants with typed-pointer syntax: write them as `ptr`.
        used.initializer = ir.values.FormattedConstant(
            used.value_type, "[" + ", ".join(f"ptr {f.get_reference()}" for f in self.kept) + "]")
