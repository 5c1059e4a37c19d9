"""Compiling a graph's kernels: one LLVM module for all of them, compiled once.

Emitting the IR in Python is the slow part of a warm start, so the module's IR text is
kept in memory and in the kernel cache under a key made of the kernels' descriptions and
a fingerprint of the code that emits them (op scalar programs, codegen, fusion): a second
process with a warm cache neither emits nor optimizes, it loads object code. Whether each
function vectorized (read from its optimized IR) is cached the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

from ..report import Report
from .kernel_ir import KernelIR


UNSUPPORTED = "; graphflow-unsupported "   # heads a line of the module text per kernel left out
_texts: dict = {}
_flags: dict = {}


def module_text(kernels) -> str:
    """The LLVM IR of one module holding `kernels` (KernelIRs), emitted or from the cache."""
    from ... import source_fingerprint
    from ..codegen import cache
    from ..codegen.target import fingerprint

    # the emitted IR depends on the host too (vector widths, LLVM version): its fingerprint is in the key;
    # after graphflow's files changed under this process, its IR stays in memory, unpublished
    source = source_fingerprint.fingerprint()
    key = hashlib.sha256("\n".join([fingerprint(), source or "local"] + [k.describe() for k in kernels])
                         .encode()).hexdigest()
    text = _texts.get(key)
    if text is None:
        raw = cache.load(key + "-ir") if source is not None else None
        if raw is not None:
            text = raw.decode()
        else:
            from .emit import emit_module

            text = emit_module(kernels)
            if source is not None:
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

    symbols = [f"{SYMBOL}{i}" for i in range(len(kernels))]
    text = module_text([_anonymous(k.ir, sym) for k, sym in zip(kernels, symbols)])
    skipped = unsupported_kernels(text)
    for k, sym in zip(kernels, symbols):
        if sym in skipped:
            report.note(f"kernel {k.name} runs its numpy evaluation: no LLVM lowering ({skipped[sym]})")
    compiled = [(k, sym) for k, sym in zip(kernels, symbols) if sym not in skipped]
    if compiled:
        jit = compile_module(text)
        vec = vector_flags(jit, [sym for _, sym in compiled])
        named = _Renamed(jit, {k.name: sym for k, sym in compiled})
        for k, sym in compiled:
            k.bind(named, vec.get(sym))
    return _named(text, [k.name for k in kernels])


# The module names its functions by position (SYMBOL + index) and its cache key leaves out
# every op and tensor name, so a graph of the same structure under other names (a new Keras
# model: dense_3/... instead of dense/...) finds the module compiled for the first one,
# in memory or on disk, instead of a cold LLVM compile (~1 s for W5's training step).
SYMBOL = "gf.kernel."


def _anonymous(kir: KernelIR, symbol: str) -> KernelIR:
    """`kir` with the function name `symbol` and no op or tensor names (what the IR and the
    cache key are made of)."""
    return KernelIR(symbol, kir.kind, kir.rank, kir.reduced, kir.lead,
                    tuple(o._replace(name="") for o in kir.inputs), tuple(i._replace(name="") for i in kir.instrs),
                    kir.outputs, (), ())


class _Renamed:
    """A JitModule seen under the kernels' own names (what FusedKernel.bind looks up); holding
    it keeps the module alive."""

    def __init__(self, jit, symbols: dict):
        self.jit, self.symbols = jit, symbols

    def address(self, name: str) -> int:
        return self.jit.address(self.symbols[name])


_SYMBOL_RE = re.compile('(@"|' + re.escape(UNSUPPORTED) + ")" + re.escape(SYMBOL) + r'(\d+)(?=[":])')


def _named(text: str, names: list) -> str:
    """The module text as the report shows it: each function under its kernel's name."""
    return _SYMBOL_RE.sub(lambda m: m.group(1) + names[int(m.group(2))], text)


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
        flags = cache.load_json(jit.key + "-vec")
        if flags is None:
            flags = {name: jit.has_vector_code(name) for name in names}
            cache.store(jit.key + "-vec", json.dumps(flags).encode())
        _flags[jit.key] = flags
    return flags
