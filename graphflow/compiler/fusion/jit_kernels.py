"""Compiling a graph's kernels: one LLVM module for all of them, compiled once.

Emitting the IR in Python is the slow part of a warm start, so the module's IR text is
kept in memory and in the kernel cache under a key made of the kernels' descriptions and
a fingerprint of the code that emits them (op scalar programs, codegen, fusion): a second
process with a warm cache neither emits nor optimizes, it loads object code. Whether each
function vectorized (read from its optimized IR) is cached the same way.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..report import Report


@functools.lru_cache(maxsize=None)
def emitter_fingerprint() -> str:
    """Hash of the sources that decide the emitted IR (ops, codegen, fusion)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for folder in ("ops", "compiler/codegen", "compiler/fusion"):
        for f in sorted((root / folder).glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


UNSUPPORTED = "; graphflow-unsupported "   # heads a line of the module text per kernel left out
_texts: dict = {}
_flags: dict = {}


def module_text(kernels) -> str:
    """The LLVM IR of one module holding `kernels` (KernelIRs), emitted or from the cache."""
    from ..codegen import cache
    from ..codegen.target import fingerprint

    # the emitted IR depends on the host too (vector widths, LLVM version): its fingerprint is in the key
    key = hashlib.sha256("\n".join([fingerprint(), emitter_fingerprint()] + [k.describe() for k in kernels])
                         .encode()).hexdigest()
    text = _texts.get(key)
    if text is None:
        raw = cache.load(key + "-ir")
        if raw is not None:
            text = raw.decode()
        else:
            from .emit import emit_module

            text = emit_module(kernels)
            cache.store(key + "-ir", text.encode())
        _texts[key] = text
    return text


def compile_kernels(kernels, report: Report) -> str:
    """Emit all kernels into one module, compile it once, bind each kernel; returns the IR.
    With GRAPHFLOW_FUSION_NUMPY=1 all kernels, and a kernel holding an op without an LLVM
    lowering, keep their numpy evaluation (noted in the report)."""
    if os.environ.get("GRAPHFLOW_FUSION_NUMPY") == "1":
        report.note("GRAPHFLOW_FUSION_NUMPY=1: fused kernels run their numpy evaluation")
        return ""
    from ..codegen.jit import compile_module

    text = module_text([k.ir for k in kernels])
    skipped = unsupported_kernels(text)
    for name, why in skipped.items():
        report.note(f"kernel {name} runs its numpy evaluation: no LLVM lowering ({why})")
    compiled = [k for k in kernels if k.name not in skipped]
    if compiled:
        jit = compile_module(text)
        vec = vector_flags(jit, [k.name for k in compiled])
        for k in compiled:
            k.bind(jit, vec.get(k.name))
    return text


def unsupported_kernels(text: str) -> dict[str, str]:
    """name -> reason for the kernels `emit_module` left out of `text` (read here, so that a
    warm start never imports the emitter)."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(UNSUPPORTED):
            break
        name, _, why = line[len(UNSUPPORTED):].partition(": ")
        out[name] = why
    return out


def vector_flags(jit, names) -> dict:
    """name -> whether the function computes on vector types after optimization (read from
    the optimized IR the compile just made: generating the assembly would be a second
    code generation, about a fifth of a cold compile)."""
    from ..codegen import cache

    flags = _flags.get(jit.key)
    if flags is None:
        raw = cache.load(jit.key + "-vec")
        try:
            flags = json.loads(raw) if raw else None
        except ValueError:
            flags = None
        if flags is None:
            flags = {name: jit.has_vector_code(name) for name in names}
            cache.store(jit.key + "-vec", json.dumps(flags).encode())
        _flags[jit.key] = flags
    return flags
