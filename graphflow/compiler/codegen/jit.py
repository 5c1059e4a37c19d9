"""JIT compilation of LLVM IR text to machine code, through the kernel cache.

`compile_module(ir_text)` optimizes the module with LLVM's new pass manager (speed level 3,
loop and SLP vectorization, for the host CPU), emits an object file, and loads it into an
MCJIT execution engine. The object code is cached in memory (same IR in one process: same
JitModule) and on disk (see `cache`), keyed by sha256 of the IR text and the target
fingerprint (llvmlite and LLVM versions, CPU name and features). A process that finds the
entry on disk loads the object file directly: no IR parsing, no optimization, no codegen.

`compile_keyed(description, build_ir)` is the same cache keyed by the caller's description
of the module instead of its IR, so a hit also skips building the IR in Python (for a
1000-op kernel that is most of the warm-cache time). The key then also covers the source of
the code that turns descriptions into IR (graphflow/compiler and graphflow/ops, as this
process imported it: `source_fingerprint`), so editing an emitter never serves stale code.

Object code, fresh or cached, is mapped into the process by `objload` (no LLVM needed: a
warm process never imports llvmlite.binding); an object that loader does not handle, or
`GRAPHFLOW_OBJECT_LOADER=llvm`, goes to an MCJIT execution engine instead. Keep the
JitModule alive as long as any function pointer taken from it may be called: the machine
code lives in the mapping (or engine) it holds.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import time
from typing import Callable

from ... import source_fingerprint
from ...errors import InternalError, NotFoundError
from . import cache, objload
from .target import fingerprint, new_target_machine, target_machine


class JitModule:
    """Machine code of one LLVM module, mapped into this process. `loader` says by whom:
    "graphflow" (`objload`) or "llvm" (an MCJIT execution engine)."""

    def __init__(self, key: str, code, build_ir: Callable[[], str], *, loaded_from_cache: bool,
                 compile_seconds: float, optimized=None):
        self.key = key
        self.loaded_from_cache = loaded_from_cache
        self.compile_seconds = compile_seconds
        self.loader = "graphflow" if isinstance(code, objload.LoadedObject) else "llvm"
        self._code = code
        self._build_ir = build_ir
        self._optimized = optimized   # the optimized llvmlite ModuleRef, when compiled here

    def address(self, name: str) -> int:
        """Address of the compiled function `name` (for ctypes.CFUNCTYPE)."""
        address = self._code.address(name)
        if not address:
            raise NotFoundError(f"JIT module {self.key[:12]}: no function named {name!r}; "
                                "expected one defined (not just declared) in the IR")
        return address

    @functools.cached_property
    def ir_text(self) -> str:
        """The module's IR as compiled (built on first access after a keyed cache hit)."""
        return self._build_ir()

    def _optimized_module(self):
        # A module loaded from the cache has no IR in memory: rebuild it only when asked.
        if self._optimized is None:
            self._optimized = optimize(parse(self.ir_text))
        return self._optimized

    @property
    def optimized_ir(self) -> str:
        """The module's IR after the optimization pipeline (vectorized loops show here)."""
        return str(self._optimized_module())

    def has_vector_code(self, name: str) -> bool:
        """Whether the optimized function `name` computes on vector types (the loop or SLP
        vectorizer fired). Reads the optimized IR: far cheaper than generating `asm` again."""
        try:
            body = str(self._optimized_module().get_function(name))
        except NameError as e:
            raise NotFoundError(f"JIT module {self.key[:12]}: no function named {name!r}") from e
        return _VECTOR_TYPE.search(body) is not None

    @property
    def asm(self) -> str:
        """Host assembly of the optimized module."""
        return target_machine().emit_assembly(self._optimized_module())


_VECTOR_TYPE = re.compile(r"<\d+ x (?:float|double|i\d+)>")
_memory: dict[str, JitModule] = {}
_lock = threading.Lock()


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def cache_key(ir_text: str) -> str:
    """sha256 over the IR text and the target fingerprint."""
    return _digest(fingerprint(), ir_text)


def keyed_cache_key(description: str) -> str | None:
    """The cache key `compile_keyed` uses for `description`; None when graphflow's source
    changed since this process imported it (see `source_fingerprint`): no disk entry then."""
    source = source_fingerprint.fingerprint()
    return None if source is None else _digest(fingerprint(), "keyed", source, description)


def parse(ir_text: str):
    """Parses and verifies IR text (an llvmlite ModuleRef), retargeted at the host machine."""
    import llvmlite.binding as llvm

    try:
        module = llvm.parse_assembly(ir_text)
        module.verify()
    except RuntimeError as e:
        raise InternalError(f"generated LLVM IR does not verify: {e}") from e
    tm = target_machine()
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    return module


def optimize(module):
    """Runs the O3 pipeline with loop and SLP vectorization in place; returns `module`."""
    import llvmlite.binding as llvm

    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(target_machine(), pto)
    pb.getModulePassManager().run(module, pb)
    return module


class _Engine:
    """An MCJIT execution engine holding one object file (the loader of last resort)."""

    def __init__(self, object_code: bytes):
        import llvmlite.binding as llvm

        # the engine owns (and frees) its target machine: give it a fresh one
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)


def load_object(object_code: bytes, loader: str | None = None):
    """The object file mapped into the process: by `objload` unless it cannot (or `loader`,
    default env GRAPHFLOW_OBJECT_LOADER, is "llvm"), then by an MCJIT engine."""
    if (loader or os.environ.get("GRAPHFLOW_OBJECT_LOADER", "")) != "llvm":
        try:
            return objload.load(object_code)
        except objload.Unsupported:
            pass
    return _Engine(object_code)


def _compile(key: str, build_ir: Callable[[], str], *, disk: bool = True) -> JitModule:
    with _lock:
        hit = _memory.get(key)
        if hit is not None:
            return hit
        start = time.perf_counter()
        object_code = cache.load(key) if disk else None
        optimized = None
        loaded = object_code is not None
        if not loaded:
            ir_text = build_ir()
            build_ir = functools.partial(str, ir_text)
            optimized = optimize(parse(ir_text))
            object_code = target_machine().emit_object(optimized)
            if disk:
                cache.store(key, object_code)
        module = JitModule(key, load_object(object_code), build_ir, loaded_from_cache=loaded,
                           compile_seconds=time.perf_counter() - start, optimized=optimized)
        _memory[key] = module
        return module


def compile_module(ir_text: str) -> JitModule:
    """Machine code for `ir_text`, from the memory cache, the disk cache, or LLVM."""
    return _compile(cache_key(ir_text), functools.partial(str, ir_text))


def compile_keyed(description: str, build_ir: Callable[[], str]) -> JitModule:
    """Machine code for the module `build_ir()` returns, cached under `description`, which must
    determine that IR given graphflow's source (e.g. a canonical listing of the fused kernels).
    `build_ir` runs only when neither cache has the module, or when `.ir_text` is read."""
    key = keyed_cache_key(description)
    if key is None:   # unpublished: keyed in memory by the IR this process's code builds
        ir_text = build_ir()
        return _compile("local-" + cache_key(ir_text), functools.partial(str, ir_text), disk=False)
    return _compile(key, build_ir)


def clear_memory_cache() -> None:
    """Forgets in-process modules (their code stays valid while callers hold them)."""
    with _lock:
        _memory.clear()
