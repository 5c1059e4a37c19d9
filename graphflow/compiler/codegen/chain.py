"""One compiled call that runs a list of compiled calls: `gf_chain(program)`.

Why: a fused matmul kernel at batch 1 is two compiled calls (the product, then its
epilogue), and each ctypes call of ~10 arguments costs ~0.5 us of argument conversion, as
much as a small epilogue's work. A binding (fusion/direct.py) writes its calls once into a
program, an int64 array: for each call its function's address, its argument count and its
arguments (all 64-bit: the kernels declare every parameter i64 or ptr), then a 0; one ctypes
call with one argument runs them all, with no Python between them.
"""
from __future__ import annotations

import ctypes
import functools

from .pool import PARALLEL

MAX_ARGS = 24   # calls of more arguments run from Python instead


def module_ir() -> str:
    """gf_chain(ptr program): a loop over the program's calls, dispatching on argument count;
    an entry whose function is pool.PARALLEL hands its embedded job to gf_pool_run."""
    n = MAX_ARGS + 1
    out = ["define void @gf_chain(ptr %prog) nounwind {", "entry:", "  br label %loop",
           "loop:",
           "  %p = phi ptr [%prog, %entry], " + ", ".join(f"[%next{k}, %c{k}]" for k in range(n))
           + ", [%pnext, %parallel]",
           "  %fn = load ptr, ptr %p, align 8",
           "  %end = icmp eq ptr %fn, null",
           "  br i1 %end, label %exit, label %dispatch",
           "dispatch:",
           "  %pn = getelementptr i64, ptr %p, i64 1", "  %nargs = load i64, ptr %pn, align 8",
           "  %args = getelementptr i64, ptr %p, i64 2",
           f"  %par = icmp eq ptr %fn, inttoptr (i64 {PARALLEL} to ptr)",
           "  br i1 %par, label %parallel, label %serial",
           # (slot, chunks, spins, nap, gf_pool_run) then the job: see pool.entry_arguments
           "parallel:",
           "  %slot = load ptr, ptr %args, align 8",
           "  %pc = getelementptr i64, ptr %args, i64 1", "  %chunks = load i64, ptr %pc, align 8",
           "  %psp = getelementptr i64, ptr %args, i64 2", "  %spins = load i64, ptr %psp, align 8",
           "  %pna = getelementptr i64, ptr %args, i64 3", "  %nap = load ptr, ptr %pna, align 8",
           "  %pru = getelementptr i64, ptr %args, i64 4", "  %run = load ptr, ptr %pru, align 8",
           "  %job = getelementptr i64, ptr %args, i64 5",
           "  call void %run(ptr %slot, ptr %job, i64 %chunks, i64 %spins, ptr %nap)",
           "  %pnext = getelementptr i64, ptr %args, i64 %nargs",
           "  br label %loop",
           "serial:",
           "  switch i64 %nargs, label %exit [" + " ".join(f"i64 {k}, label %c{k}" for k in range(n)) + "]"]
    for k in range(n):
        out.append(f"c{k}:")
        for i in range(k):
            out += [f"  %q{k}_{i} = getelementptr i64, ptr %args, i64 {i}", f"  %a{k}_{i} = load i64, ptr %q{k}_{i}, align 8"]
        params = ", ".join(f"i64 %a{k}_{i}" for i in range(k))
        out += [f"  call void %fn({params})", f"  %next{k} = getelementptr i64, ptr %args, i64 {k}", "  br label %loop"]
    out += ["exit:", "  ret void", "}"]
    return "\n".join(out) + "\n"


@functools.lru_cache(maxsize=None)
def _compiled():
    from .jit import compile_module

    jit = compile_module(module_ir())
    return jit, ctypes.CFUNCTYPE(None, ctypes.c_void_p)(jit.address("gf_chain"))


def function():
    """chain(program_address): runs the program's calls in order."""
    return _compiled()[1]


def address_of(fn) -> int | None:
    """The machine address of a ctypes function `fn` (an int is one already, or pool.PARALLEL),
    or None (a Python callable)."""
    if isinstance(fn, ctypes._CFuncPtr):
        return ctypes.cast(fn, ctypes.c_void_p).value
    if isinstance(fn, int):
        return fn
    return None


def program(calls) -> ctypes.Array | None:
    """The program of `calls`, (function address, arguments) pairs, or None when a call has
    more than MAX_ARGS arguments."""
    flat: list = []
    for fn, args in calls:
        if len(args) > MAX_ARGS and fn != PARALLEL:
            return None
        flat += [fn, len(args), *args]
    flat.append(0)
    return (ctypes.c_int64 * len(flat))(*flat)   # (ints wrap to 64 bits, as void* arguments do)
