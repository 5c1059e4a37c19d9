"""Compiled hand-off of one parallel job between a Session's threads: chunks claimed with
atomics, run by function pointer, no Python between them.

Why: handing a chunk to a worker through Python costs a queue wake-up (a futex, 10-50 us on a
VM), the worker's wait for the GIL, and a few microseconds of Python and ctypes per chunk.
W2's softmax (4096 x 1024) took 0.71 ms at 2 threads against 0.58 ms for two processes each
running half the rows at once: the difference was that hand-off. Here a job is a table of
compiled calls that every thread runs straight from machine code:

- the *slot* (one per ThreadBudget, an int64 array) holds the published job and one atomic
  word: generation (high 32 bits), chunk count (bits 16-31) and next unclaimed chunk (bits
  0-15). A thread claims chunk i by a compare-and-swap of that word, so a thread still
  looking at the previous generation can never claim a chunk of the next one;
- `gf_pool_run(slot, job, n, spins, nap)` (the caller's thread) publishes, runs chunks until
  none is left, then waits for the chunks others claimed (polling, then napping: NAP_US);
- `gf_pool_serve(slot, spins, poke, owner, me)` (a worker, GIL released) runs chunks as they
  are published, and returns after `spins` empty polls (the worker then blocks in Python: no
  busy-waiting when idle), as soon as the slot's poke counter differs from `poke` (Python
  work was queued for it), or once idle while the word at `owner` is not `me` (another
  pool of the process published work since: its threads get the cores).

A job (int64 words, `job_words`, inline in a chain program's entry): the number of calls,
then per call its function address, argument count, the positions of the start and end
arguments, the offset of its table of (start, end) pairs (one per chunk, stored after the
calls, found from the job's start: a copy of a job is a job) and its arguments. Chunk i
calls every function with its table's i-th pair in place of the start and end arguments,
and skips a call whose range is empty. Every parameter is 64-bit (i64 or ptr), as in
chain.py.
"""
from __future__ import annotations

import ctypes
import functools
import platform

import numpy as np

MAX_ARGS = 24     # calls of more arguments go through Python's pool instead
MAX_CHUNKS = 0xFFFF
# The caller's wait for chunks other threads claimed polls for as long as a worker polls for
# work, then naps this long between polls: a worker that lost its core to another process
# (a shared machine) gets the caller's core instead of the caller spinning on it.
NAP_US = 20

# slot layout, in int64 words (the claim word and the done counter on their own cache lines)
WORD, DONE, JOB, POKE, SPINNING = 0, 8, 16, 17, 18
SLOT_WORDS = 24


def _pause() -> tuple[list, str]:
    """(declarations, call) of the spin-wait hint: x86's pause, else nothing."""
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        return ["declare void @llvm.x86.sse2.pause()"], "  call void @llvm.x86.sse2.pause()"
    return [], ""


def _run_chunk_ir() -> list:
    """@run_chunk(job, i): every call of the job over chunk i's ranges. A call's arguments are
    copied to a local buffer, the chunk's start and end stored over theirs, and the call made
    through a switch on the argument count (as chain.py does)."""
    out = ["declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
           "define internal void @run_chunk(ptr %job, i64 %i) nounwind {",
           "entry:",
           f"  %buf = alloca [{MAX_ARGS} x i64], align 8",
           "  %ncalls = load i64, ptr %job, align 8",
           "  %first = getelementptr i64, ptr %job, i64 1",
           "  br label %loop",
           "loop:",
           "  %c = phi i64 [0, %entry], [%c1, %next_call], [%c1, %skip]",
           "  %p = phi ptr [%first, %entry], [%next, %next_call], [%next, %skip]",
           "  %more = icmp slt i64 %c, %ncalls",
           "  br i1 %more, label %call, label %exit",
           "call:",
           "  %c1 = add i64 %c, 1",
           "  %fn = load ptr, ptr %p, align 8",
           "  %pn = getelementptr i64, ptr %p, i64 1", "  %nargs = load i64, ptr %pn, align 8",
           "  %pps = getelementptr i64, ptr %p, i64 2", "  %ps = load i64, ptr %pps, align 8",
           "  %ppe = getelementptr i64, ptr %p, i64 3", "  %pe = load i64, ptr %ppe, align 8",
           "  %ptab = getelementptr i64, ptr %p, i64 4", "  %tab0 = load i64, ptr %ptab, align 8",
           "  %args = getelementptr i64, ptr %p, i64 5",
           "  %next = getelementptr i64, ptr %args, i64 %nargs",
           "  %tab = getelementptr i64, ptr %job, i64 %tab0",   # (a table's offset from the job's start)
           "  %i2 = shl i64 %i, 1",
           "  %ts = getelementptr i64, ptr %tab, i64 %i2", "  %s = load i64, ptr %ts, align 8",
           "  %te = getelementptr i64, ptr %ts, i64 1", "  %e = load i64, ptr %te, align 8",
           "  %empty = icmp sge i64 %s, %e",
           "  br i1 %empty, label %skip, label %fill",
           "skip:",
           "  br label %loop",
           "fill:",
           "  %bytes = shl i64 %nargs, 3",
           "  call void @llvm.memcpy.p0.p0.i64(ptr %buf, ptr %args, i64 %bytes, i1 false)",
           "  %bs = getelementptr i64, ptr %buf, i64 %ps", "  store i64 %s, ptr %bs, align 8",
           "  %be = getelementptr i64, ptr %buf, i64 %pe", "  store i64 %e, ptr %be, align 8",
           "  switch i64 %nargs, label %exit [" + " ".join(f"i64 {k}, label %a{k}" for k in range(MAX_ARGS + 1)) + "]"]
    for k in range(MAX_ARGS + 1):
        out.append(f"a{k}:")
        for j in range(k):
            out += [f"  %q{k}_{j} = getelementptr i64, ptr %buf, i64 {j}",
                    f"  %v{k}_{j} = load i64, ptr %q{k}_{j}, align 8"]
        params = ", ".join(f"i64 %v{k}_{j}" for j in range(k))
        out += [f"  call void %fn({params})", "  br label %next_call"]
    out += ["next_call:", "  br label %loop",
            "exit:", "  ret void", "}"]
    return out


def module_ir() -> str:
    decls, pause = _pause()
    word, done, job, poke, spinning = (f"getelementptr i64, ptr %slot, i64 {k}"
                                       for k in (WORD, DONE, JOB, POKE, SPINNING))
    lines = decls + _run_chunk_ir() + [
        # claim and run chunks of the published generation until none is left; how many ran
        "define i64 @gf_pool_work(ptr %slot) nounwind {",
        "entry:",
        f"  %pw = {word}", f"  %pd = {done}", f"  %pj = {job}",
        "  br label %poll",
        "poll:",
        "  %ran = phi i64 [0, %entry], [%ran, %retry], [%ran1, %claimed]",
        "  %w = load atomic i64, ptr %pw acquire, align 8",
        "  %idx = and i64 %w, 65535",
        "  %n0 = lshr i64 %w, 16", "  %n = and i64 %n0, 65535",
        "  %left = icmp ult i64 %idx, %n",
        "  br i1 %left, label %claim, label %exit",
        "claim:",
        "  %w1 = add i64 %w, 1",
        "  %cx = cmpxchg ptr %pw, i64 %w, i64 %w1 acq_rel acquire",
        "  %ok = extractvalue { i64, i1 } %cx, 1",
        "  br i1 %ok, label %claimed, label %retry",
        "retry:",
        "  br label %poll",
        "claimed:",
        "  %jb = load ptr, ptr %pj, align 8",
        "  call void @run_chunk(ptr %jb, i64 %idx)",
        "  %d = atomicrmw add ptr %pd, i64 1 release",
        "  %ran1 = add i64 %ran, 1",
        "  br label %poll",
        "exit:",
        "  ret i64 %ran",
        "}",
        "",
        # the caller's thread: publish `job` as n chunks, run chunks, wait for the others' chunks:
        # `spins` polls, then `nap(NAP_US)` between polls (when a null pointer, polls only)
        "define void @gf_pool_run(ptr %slot, ptr %jobp, i64 %n, i64 %spins, ptr %nap) nounwind {",
        "entry:",
        f"  %pw = {word}", f"  %pd = {done}", f"  %pj = {job}",
        "  store ptr %jobp, ptr %pj, align 8",
        "  store atomic i64 0, ptr %pd monotonic, align 8",
        "  %old = load i64, ptr %pw, align 8",
        "  %gen0 = lshr i64 %old, 32", "  %gen1 = add i64 %gen0, 1", "  %gen = and i64 %gen1, 4294967295",
        "  %g = shl i64 %gen, 32", "  %nn = shl i64 %n, 16", "  %new = or i64 %g, %nn",
        "  store atomic i64 %new, ptr %pw release, align 8",
        "  %r = call i64 @gf_pool_work(ptr %slot)",
        "  br label %wait",
        "wait:",
        "  %polls = phi i64 [0, %entry], [%polls1, %spin], [%polls1, %sleep]",
        "  %dn = load atomic i64, ptr %pd acquire, align 8",
        "  %all = icmp uge i64 %dn, %n",
        "  br i1 %all, label %exit, label %poll",
        "poll:",
        "  %polls1 = add i64 %polls, 1",
        "  %long = icmp uge i64 %polls, %spins",
        "  %can = icmp ne ptr %nap, null",
        "  %tired = and i1 %long, %can",
        "  br i1 %tired, label %sleep, label %spin",
        "spin:",
        pause,
        "  br label %wait",
        "sleep:",
        f"  %slept = call i32 %nap(i32 {NAP_US})",
        "  br label %wait",
        "exit:",
        "  ret void",
        "}",
        "",
        # a worker: run published chunks until `spins` empty polls in a row or, once idle, the
        # owner word is not `me` (returns 0), or the poke counter differs from `poke0` (returns 1)
        "define i64 @gf_pool_serve(ptr %slot, i64 %spins, i64 %poke0, ptr %owner, i64 %me) nounwind {",
        "entry:",
        f"  %pp = {poke}", f"  %ps = {spinning}",
        "  %in = atomicrmw add ptr %ps, i64 1 monotonic",
        "  br label %loop",
        "loop:",
        "  %idle = phi i64 [0, %entry], [%idle1, %spin]",
        "  %ran = call i64 @gf_pool_work(ptr %slot)",
        "  %busy = icmp ne i64 %ran, 0",
        "  %idle0 = select i1 %busy, i64 0, i64 %idle",
        "  %pk = load atomic i64, ptr %pp monotonic, align 8",
        "  %poked = icmp ne i64 %pk, %poke0",
        "  br i1 %poked, label %out, label %check",
        "check:",
        "  %long = icmp uge i64 %idle0, %spins",
        "  %ow = load atomic i64, ptr %owner monotonic, align 8",
        "  %other = icmp ne i64 %ow, %me",
        "  %idle_now = icmp eq i64 %ran, 0",
        "  %yield = and i1 %other, %idle_now",
        "  %tired = or i1 %long, %yield",
        "  br i1 %tired, label %out, label %spin",
        "spin:",
        pause,
        "  %idle1 = add i64 %idle0, 1",
        "  br label %loop",
        "out:",
        "  %res = zext i1 %poked to i64",
        "  %out1 = atomicrmw sub ptr %ps, i64 1 monotonic",
        "  ret i64 %res",
        "}"]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=None)
def _compiled():
    from .jit import compile_module

    jit = compile_module(module_ir())
    p = ctypes.c_void_p
    run = ctypes.CFUNCTYPE(None, p, p, p, p, p)(jit.address("gf_pool_run"))
    serve = ctypes.CFUNCTYPE(ctypes.c_int64, p, p, p, p, p)(jit.address("gf_pool_serve"))
    return jit, run, serve


def functions():
    """(run(slot, job, n, spins, nap), serve(slot, spins, poke, owner, me) -> 1 if poked else
    0): see the module docstring; `nap` is `nap_address()`."""
    return _compiled()[1:]


# In a chain program (codegen/chain.py), a call whose function address is PARALLEL runs a
# job on the pool: its arguments are (slot, chunks, spins, nap, gf_pool_run's address) then
# the job itself (`entry_arguments`).
PARALLEL = 1


def entry_arguments(slot: int, spins: int, nap: int, calls) -> tuple | None:
    """The arguments of a PARALLEL chain entry running the job of `calls` (`job_words`) on the
    pool whose slot is at `slot`; None when a call has more than MAX_ARGS arguments."""
    words = job_words(calls)
    if words is None:
        return None
    run = ctypes.cast(functions()[0], ctypes.c_void_p).value
    return (slot, len(calls[0][4]) // 2, spins, nap, run, *words)


@functools.lru_cache(maxsize=None)
def nap_address() -> int | None:
    """Address of the C library's usleep, or None (the caller then polls only)."""
    try:
        return ctypes.cast(ctypes.CDLL(None).usleep, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


def new_slot() -> np.ndarray:
    """A zeroed slot, its claim word at the start of a 64-byte cache line."""
    raw = np.zeros(SLOT_WORDS + 8, np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + SLOT_WORDS]


def _check_positions(ps: int, pe: int, args) -> None:
    """The chunk's range goes into arguments ps and pe: both must be among the call's (the
    compiled side copies them into a stack buffer of MAX_ARGS)."""
    if not (0 <= ps < len(args) and 0 <= pe < len(args)):
        raise ValueError(f"range positions {ps}, {pe} outside the call's {len(args)} arguments")


def job_words(calls) -> list | None:
    """The words of the job of `calls`: (function address, arguments, start position, end
    position, table) with the table a sequence of (start, end) pairs, one per chunk,
    flattened, every table as long; None when a call has more than MAX_ARGS arguments. The
    tables follow the calls, each found by its offset from the job's start: no absolute
    pointer into the job, so a copy of it (a chain program's rebinding) holds everything it
    points to but its arguments' data. The arguments are kept as given (a binding's markers)."""
    flat, at = [len(calls)], []
    for fn, args, ps, pe, table in calls:
        if len(args) > MAX_ARGS:
            return None
        _check_positions(ps, pe, args)
        at.append(len(flat) + 4)   # where the call's table offset goes
        flat += [fn, len(args), ps, pe, 0, *args]
    sizes = {len(c[4]) for c in calls}
    if len(sizes) != 1 or sizes.pop() % 2:
        raise ValueError("every call of a job needs a table of the same number of (start, end) pairs")
    for slot, table in zip(at, (c[4] for c in calls)):
        flat[slot] = len(flat)
        flat += [int(t) for t in table]
    return flat
