"""ExecutionPlan: a Program turned into an ordered list of steps over numbered buffers.

Built once per (fetches, feed keys, opt_level) and reused by every later run. Building
does all the static work: numbering values, choosing how each step is called (a numpy
ufunc with `out=`, a fused kernel with `out=` and the thread budget, or a plain
reference kernel), buffer planning (`memory.plan_memory`), constants evaluated once, and
the inter-op dependency graph. It then generates one small Python function that runs the
whole plan straight through: feed checks, steps and the returned values, with no loops,
dictionaries or graph lookups left in a repeated run.

Buffers live in an *arena* (a list indexed by buffer id). Each run checks an arena out
of a pool and returns it afterwards, so concurrent runs never share a buffer, and a run
with the same batch size as the one before finds every buffer already allocated.
"""
from __future__ import annotations

import threading
import time
from sys import getrefcount
from collections import deque
from functools import partial

import numpy as np

from ..compiler.passes.fold import fold_limit_bytes, static_nbytes
from ..compiler.program import const_value
from ..errors import InvalidArgumentError, OpError
from ..graph import shape_str
from ..ops.registry import OpKind
from .fpstate import IGNORE as _FP_IGNORE
from .fpstate import quiet_fp as _fp_set
from .fpstate import restore_fp as _fp_reset
from .memory import StepInfo, plan_memory
from .pointers import remember
from .state import RunState
from .threads import SERIAL, library_threads, limit_blas_threads, restore_blas_threads
from . import in_place, whole_run
from .whole_run import WholeRun

_KERNEL_ERRORS = (ValueError, IndexError, TypeError, ZeroDivisionError, FloatingPointError)
PARALLEL_MIN_SECONDS = 2e-3   # a run this long may be worth spreading over the pool
PROBE_EVERY = 32              # runs between tries of the mode not chosen
PARALLEL_GAIN = 0.9           # the inter-op schedule runs when measured this much faster
RECENT_RUNS = 4               # runs of each mode whose fastest is that mode's time
_bcast_cache: dict = {}
_ufunc_out_dtype: dict = {}  # (ufunc, input dtypes) -> its output dtype, or False


def _broadcast(a: tuple, b: tuple) -> tuple:
    try:
        return _bcast_cache[(a, b)]
    except KeyError:
        if len(_bcast_cache) > 4096:
            _bcast_cache.clear()
        s = _bcast_cache[(a, b)] = tuple(np.broadcast_shapes(a, b))
        return s


def _new_buffer(A: list, b: int, dtype, shape: tuple) -> np.ndarray:
    """A new arena buffer. Its data pointer is remembered at once: buffers live across runs
    and compiled kernels ask for their pointers on every call (`pointers.address`: a
    remembered one is found ~3x faster; a training step asks ~100 times)."""
    x = A[b] = np.empty(shape, dtype)
    remember(x)
    return x


def _buffer(A: list, b: int, dtype, shape: tuple) -> np.ndarray:
    """Buffer b of this run's arena, (re)allocated only when its shape changed."""
    x = A[b]
    if x is None or x.shape != shape:
        x = _new_buffer(A, b, dtype, shape)
    return x


def _buffer_1(A: list, b: int, dtype, x) -> np.ndarray:
    """The buffer for a unary elementwise result (`_buffer` inlined: this runs per step)."""
    s = x.shape
    out = A[b]
    if out is None or out.shape != s:
        out = _new_buffer(A, b, dtype, s)
    return out


def _buffer_2(A: list, b: int, dtype, x, y) -> np.ndarray:
    """The buffer for a binary elementwise result of the inputs' broadcast shape."""
    s, t = x.shape, y.shape
    if s != t:
        s = _broadcast(s, t)
    out = A[b]
    if out is None or out.shape != s:
        out = _new_buffer(A, b, dtype, s)
    return out


POOL_MIN_BYTES = 1 << 20   # a fetched value statically smaller is returned through the lean path


def _fresh_output(pool: list, shape: tuple, dtype) -> np.ndarray:
    """A new array for a fetched kernel result. The last one is reused when nothing outside
    `pool` holds it any more (the caller dropped the previous result): a large np.empty is
    a fresh mmap whose first touch costs a page fault per 4 KB, ~5 ms for W1's 64 MB output,
    a third of the kernel; and a kernel bound to its operands (fusion/direct.py) keeps its
    binding instead of making one for a new array every run (W4 at batch 1, one thread:
    44.6 -> 39.9 us per run, /tmp/s3/ab_pool_small.py). Concurrent runs are safe: a pooled
    array is taken out of `pool` (an atomic pop) before its references are counted, and one
    in use is never reused."""
    if pool:   # (an empty pool, the usual case of small results, costs no exception)
        try:
            x = pool.pop()
        except IndexError:   # emptied by a concurrent run meanwhile
            pass
        else:
            if x.shape == shape and x.dtype == dtype and getrefcount(x) == 2:  # `x` and the argument
                pool.append(x)
                return x
    x = np.empty(shape, dtype)
    pool.append(x)
    return x


SHAPES_CACHED = 64   # input shape combinations whose output shapes a step remembers


def _output_shapes(kernel, cache: dict, key: tuple) -> list:
    """A fused step's output shapes for input shapes `key`, remembered in the step's `cache`
    (a dict lookup in the runner, where asking the kernel costs ~0.6 us per step)."""
    if len(cache) >= SHAPES_CACHED:
        cache.clear()
    shapes = cache[key] = kernel.output_shapes(list(key))
    return shapes


def _buffer_n(A: list, b: int, dtype, *xs) -> np.ndarray:
    return _buffer(A, b, dtype, tuple(np.broadcast_shapes(*(x.shape for x in xs))))


def _finish(v):
    """A fetched value the kernels allocated: an ndarray, or a numpy scalar for 0-d."""
    if v.__class__ is not np.ndarray:
        v = np.asarray(v)
    return v[()] if v.ndim == 0 else v


def _copy_out(v):
    """A fetched value that may share memory with a feed, constant or variable."""
    v = np.array(v)
    return v[()] if v.ndim == 0 else v


_code_cache: dict = {}   # generated source -> its code object
_CODE_CACHE_MAX = 256


def _compiled(source: str, filename: str):
    """The code object of a generated runner. The source holds no names or values (kernels,
    variable names and dtypes come from the namespace it runs in), so plans of the same
    structure share it: a model rebuilt with new layer names (every `fit` of a new model)
    skips Python's compile, about half of building its plan."""
    code = _code_cache.get(source)
    if code is None:
        if len(_code_cache) >= _CODE_CACHE_MAX:
            _code_cache.clear()
        code = _code_cache[source] = compile(source, filename, "exec")
    return code


def _serialized(fn, lock):
    def run(*args, **kwargs):
        with lock:
            return fn(*args, **kwargs)
    return run


class Step:
    """One node of the program as the plan runs it."""

    __slots__ = ("index", "node", "mode", "fn", "kernel", "inputs", "outputs", "stateful", "blas",
                 "info", "dtypes")

    def __init__(self, index, node, mode, fn, kernel, inputs, outputs, stateful, blas, info, dtypes):
        self.index = index
        self.node = node
        # "ufunc" | "out" | "static" (a kernel's numpy function) | "call" | "state" (the op's
        # OpDef extra "state_call": fn is (RunState method, leading constant args, keyword args))
        self.mode = mode
        self.fn = fn
        self.kernel = kernel      # the fused kernel object for mode "out"
        self.inputs = inputs
        self.outputs = outputs
        self.stateful = stateful
        # numpy BLAS use: "own" (one BLAS call over the whole op: BLAS gets the session's
        # threads) or "split" (row blocks spread over the pool: BLAS gets one thread each);
        # either way the step runs alone in the inter-op schedule
        self.blas = blas
        self.info = info
        self.dtypes = dtypes


def _ufunc_fits(kernel, node, specs_in) -> bool:
    """The reference kernel is a numpy ufunc computing the node's output dtype directly."""
    if not isinstance(kernel, np.ufunc) or kernel.nout != 1 or kernel.nin != len(node.inputs):
        return False
    if len(node.specs) != 1 or node.attrs or not specs_in:
        return False
    key = (kernel, tuple(np.dtype(s.dtype) for s in specs_in))
    out = _ufunc_out_dtype.get(key)
    if out is None:
        try:
            out = _ufunc_out_dtype[key] = kernel.resolve_dtypes(key[1] + (None,))[-1]
        except (TypeError, ValueError, AttributeError):
            out = _ufunc_out_dtype[key] = False
    return out is not False and out == np.dtype(node.specs[0].dtype)


def _is_constant(node, op_def) -> bool:
    return (not node.inputs and not op_def.stateful and not op_def.random and op_def.kernel is not None
            and not op_def.extra.get("has_branches"))


def _small_or_held(node) -> bool:
    """A constant evaluated at build time: one the node already holds (Const), or a computed
    one (Fill, Eye, ...) within the compiler's folding cap, which left bigger ones unfolded
    so that building a plan never materializes, say, `ones((20000, 20000))`."""
    if const_value(node) is not None:
        return True
    nbytes = static_nbytes(node.specs)
    return nbytes is not None and nbytes <= fold_limit_bytes()


class ExecutionPlan:
    """Runs one Program; `__call__(*feed_values) -> list of fetched values`."""

    def __init__(self, program, feed_tensors=(), convert=None, store=None, budget=SERIAL, generate=True):
        """`feed_tensors` in program feed order; `convert(tensor, value)` turns a fed value
        that is not already an ndarray of the right dtype and shape into one (or raises).
        `generate=False` plans buffers only (to size a plan that never runs)."""
        self.program = program
        self.feed_tensors = list(feed_tensors)
        self.convert = convert
        self.store = store
        self.budget = budget
        self._build(generate)

    # ---------------------------------------------------------------- building
    def _build(self, generate: bool) -> None:
        program = self.program
        value_of: dict = {}
        specs: list = []
        for n in program.nodes:
            for i, s in enumerate(n.specs):
                value_of[(n.id, i)] = len(specs)
                specs.append((s.shape, np.dtype(s.dtype)))
        nv = len(specs)
        self.n_values = nv
        external = [False] * nv
        self.constants: dict = {}
        self.feed_values = [value_of[(fid, 0)] for fid in program.feeds]
        for v in self.feed_values:
            external[v] = True
        steps: list[Step] = []
        node_step: dict = {}
        for n in program.nodes:
            if n.op == "Feed":
                continue
            d = n.op_def
            if d.kernel is None:
                raise InvalidArgumentError(f"'{n.name}' ({n.op}) has no value: it must be fed", n.name)
            outs = tuple(value_of[(n.id, i)] for i in range(len(n.specs)))
            if _is_constant(n, d) and _small_or_held(n) and (not generate or self._fold(n, d, outs)):
                # evaluated once, now (sizing only: no need to evaluate); a big source runs per run
                for v in outs:
                    external[v] = True
                continue
            ins = tuple(value_of[r] for r in n.inputs)
            specs_in = [program.spec(r) for r in n.inputs]
            blas = "own" if d.kind is OpKind.LIBRARY else None
            kernel_obj = None
            if d.extra.get("accepts_out"):
                mode, fn = "out", None
                kernel_obj = n.attrs["kernel"]
                if getattr(kernel_obj, "kind", None) == "epilogue":
                    blas = "split"
                inplace = tuple(getattr(kernel_obj, "inplace_ok", ()))
                info = StepInfo(ins, outs, True, inplace)
                # static input shapes the kernel runs as plain numpy: called directly ("static")
                shapes = [specs[v][0] for v in ins]
                if hasattr(kernel_obj, "static_call") and all(s is not None and None not in s for s in shapes):
                    fn = kernel_obj.static_call(shapes)
                    if fn is not None:
                        mode = "static"
            elif not d.stateful and _ufunc_fits(d.kernel, n, specs_in):
                mode, fn = "ufunc", d.kernel
                same = tuple((i, 0) for i in range(len(ins)))
                info = StepInfo(ins, outs, True, same)
            else:
                mode = "call"
                fn = partial(d.kernel, **n.attrs) if n.attrs else d.kernel
                info = StepInfo(ins, outs, False, (), d.stateful)
                direct = d.extra.get("state_call")
                call = direct(n.attrs, specs_in) if direct is not None and len(outs) == 1 else None
                if call is not None:  # a variable read or write: one method call of the run state
                    mode, fn = "state", (call[0], tuple(call[1]), {})
            node_step[n.id] = len(steps)
            steps.append(Step(len(steps), n, mode, fn, kernel_obj, ins, outs, d.stateful or d.random, blas,
                              info, [specs[v][1] for v in outs]))
        self.steps = steps
        self.output_values = [value_of[r] for r in program.outputs]
        self.specs = specs
        self.external = external
        adopted = self._adopted_values()
        self.adopted = frozenset(adopted)
        self.memory = plan_memory([s.info for s in steps], specs, external, self.output_values + adopted)
        # step -> {output position: the variable's value it may be written over}: in_place.py
        self.in_place = in_place.sections(self)
        self._in_place_runs = in_place.InPlace(self.store) if self.in_place else None
        self.n_buffers = self.memory.n_buffers
        self.stateful = any(s.stateful for s in steps)
        self.uses_numpy = any(s.mode != "out" for s in steps)
        self.uses_blas = any(s.blas is not None for s in steps)
        self._control = {node_step[n.id]: [node_step[c] for c in n.control if c in node_step]
                         for n in program.nodes if n.id in node_step and n.control}
        self._arenas: list = []
        self._out_pools = None      # value -> reusable output arrays (`_pooled_outputs`)
        self._deps = self._tables = None
        self.parallel_ok = False
        if generate:
            self._generate()
            self.parallel_ok = self.budget.num_threads > 1 and self._has_parallelism()
            if any(s.node.op_def.extra.get("writes_variables") for s in steps):
                # runs that update variables hold the store's update lock from their first read
                # to their commit, so concurrent read-modify-write runs (assign_add, optimizer
                # steps) never lose an update; runs that only read stay lock-free
                self._run_serial = _serialized(self._run_serial, self.store.update_lock)
                self.run_steps = _serialized(self.run_steps, self.store.update_lock)
            if WholeRun.eligible(self):   # reads and fused kernels only: joined into one call
                self._run_serial = whole_run.wrap(self, self._run_serial, _fresh_output)
        # the fastest entry point: the generated function itself unless runs may go parallel
        self.runner = self.__call__ if self.parallel_ok else getattr(self, "_run_serial", None)
        self._times = ([], [])  # recent run times (s): serial, on the inter-op schedule
        self._calls = 0

    def _adopted_values(self) -> list:
        """Values a state-writing step keeps as the variable's new value without copying
        (OpDef extra "adopts_input": its kernel takes `owned=True`): its input, when a step
        writing into plan-given outputs computes it and it is not fetched. Such a value is
        allocated fresh each run, like a fetched one, never in a reused buffer (the variable
        store holds it after the run); its step's kernel is told it owns the array."""
        written = {v for st in self.steps if st.info.writes_out for v in st.outputs}
        fetched = set(self.output_values)
        adopted = []
        for st in self.steps:
            if st.node.op_def.extra.get("adopts_input") and st.inputs and st.fn is not None:
                v = st.inputs[0]
                if v in written and v not in fetched:
                    adopted.append(v)
                    if st.mode == "state":
                        st.fn[2]["owned"] = True
                    else:
                        st.fn = partial(st.fn, owned=True)
        return adopted

    def _fold(self, node, op_def, outs) -> bool:
        """Evaluate a source node without inputs (a constant) once, now."""
        try:
            with np.errstate(all="ignore"):
                value = op_def.kernel(**node.attrs)
        except Exception:  # left to fail (with its message) at run time, like any step
            return False
        values = value if isinstance(value, tuple) and len(outs) > 1 else (value,)
        for v, x in zip(outs, values):
            self.constants[v] = np.asarray(x)  # never written: no step writes a constant, fetches copy it
        return True

    def peak_memory_bytes(self, dim: int = 1) -> int:
        """The plan's peak memory: its buffers plus live per-run allocations (unknown dims = dim)."""
        return self.memory.peak_bytes(self.specs, [s.info for s in self.steps], self.external, dim)

    # ---------------------------------------------------------------- code generation
    def _step_lines(self, st: Step, name, free: bool, blas_line: bool = True, over: dict | None = None) -> list[str]:
        """Python source for one step; `name(v)` spells value v (a local or a list item);
        `blas_line`: set numpy's BLAS threads for this step (a serial run skips repeats);
        `over`: output position -> the variable's value the output may be written over (the
        serial runner's in-place updates, in_place.py)."""
        k = st.index
        mem = self.memory
        ins = ", ".join(name(v) for v in st.inputs)
        lines = []
        if st.blas == "own" and blas_line:
            # one BLAS call over the whole op: the session's threads only for enough work. (A
            # "split" step's blocks set one BLAS thread themselves, only when a block goes to
            # numpy: epilogue._numpy_rows. Setting it on every run, then restoring it, kept
            # OpenBLAS's threads spinning: W4 at batch 256 on 2 threads ran at one core's speed
            # for as long as they did, 3.4 vs 1.65 ms.)
            lines.append(f"LIMIT(OWN_THREADS(NT, {ins}))")
        if st.mode == "state":  # constant arguments (variable names) come from the namespace: C{k}_{i}
            method, const, kw = st.fn
            args = [f"C{k}_{i}" for i in range(len(const))] + [name(v) for v in st.inputs] + \
                [f"{key}={c!r}" for key, c in kw.items()]
            lines.append(f"{name(st.outputs[0])} = S.{method}({', '.join(args)})")
        elif st.mode == "call":
            args = ("S, " if st.node.op_def.stateful else "") + ins
            if len(st.outputs) == 1:
                o = name(st.outputs[0])
                lines += [f"{o} = K{k}({args})", f"if {o}.__class__ is tuple: {o} = {o}[0]"]
            else:
                lines.append(f"{', '.join(name(v) for v in st.outputs)}, = K{k}({args})")
        elif st.mode == "static":  # fresh outputs of the kernel's numpy function
            lines.append(f"{', '.join(name(v) for v in st.outputs)}, = K{k}({ins})")
        elif st.mode == "ufunc":
            o = st.outputs[0]
            b = mem.buffer_of[o]
            if b is None:
                lines.append(f"{name(o)} = K{k}({ins})")
            else:
                helper = {1: "OUT1", 2: "OUT2"}.get(len(st.inputs), "OUTN")
                lines.append(f"{name(o)} = K{k}({ins}, out={helper}(A, {b}, D{k}_0, {ins}))")
        else:
            bufs = [mem.buffer_of[v] for v in st.outputs]
            pooled = self._pooled_outputs()
            if all(b is None and v not in pooled for v, b in zip(st.outputs, bufs)) and not over:
                outs = "None"
            else:
                key = "(" + "".join(f"{name(v)}.shape, " for v in st.inputs) + ")"
                lines.append(f"_s = SH{k}.get({key}) or SHAPES(KO{k}, SH{k}, {key})")
                def alloc(j, v, b) -> str:
                    if b is not None:
                        return f"OUT(A, {b}, D{k}_{j}, _s[{j}])"
                    if over and j in over:
                        return f"IPOUT(_ip, {name(over[j])}, {f'P{v}' if v in pooled else None}, _s[{j}], D{k}_{j})"
                    if v in pooled:
                        return f"{'RECYCLED' if v in self.adopted else 'FRESH'}(P{v}, _s[{j}], D{k}_{j})"
                    return f"EMPTY(_s[{j}], D{k}_{j})"
                outs = "[" + ", ".join(alloc(j, v, b) for j, (v, b) in enumerate(zip(st.outputs, bufs))) + "]"
            lines.append(f"{', '.join(name(v) for v in st.outputs)}, = KO{k}.run([{ins}], {outs}, BUDGET)")
        if free:  # drop per-run allocations as soon as they are dead
            dead = [name(v) for v in dict.fromkeys(st.inputs)
                    if mem.end[v] == k and mem.buffer_of[v] is None and not self.external[v]]
            if dead:
                lines.append(" = ".join(dead) + " = None")
        return lines

    def _pooled_outputs(self) -> dict:
        """value -> its pool of output arrays (`_fresh_output`), for values of rank > 0 that a
        fused kernel writes into a per-run allocation which outlives the run as it is (fetched,
        or adopted as a variable's value), unless their static shape says they stay below
        POOL_MIN_BYTES (tiny graphs, W8's, keep their lean path)."""
        if self._out_pools is None:
            mem = self.memory

            def may_be_large(v) -> bool:
                shape, dtype = self.specs[v]
                if shape is None or len(shape) == 0:   # unknown rank, or 0-d: returned through FIN
                    return False
                if any(d is None for d in shape):
                    return True
                return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize >= POOL_MIN_BYTES

            outlives = set(self.output_values) | self.adopted
            self._out_pools = {v: [] for st in self.steps if st.mode == "out" for v in st.outputs
                               if v in outlives and mem.buffer_of[v] is None and not mem.external_alias[v]
                               and may_be_large(v)}
        return self._out_pools

    def _output_expr(self, v: int, name, call_results) -> str:
        if self.memory.external_alias[v]:
            return f"COPY({name(v)})"
        shape = self.specs[v][0]
        if self.memory.buffer_of[v] is None and shape is not None and len(shape) > 0 and v not in call_results:
            return name(v)  # a fresh ndarray of rank > 0 from an out=-capable kernel
        return f"FIN({name(v)})"

    def _feed_check(self, i: int, v: int) -> str:
        shape, dtype = self.specs[v]
        p = f"v{v}"
        cond = f"{p}.__class__ is not NDARRAY or {p}.dtype is not D_feed{i}"
        if shape is not None:
            if all(d is not None for d in shape):
                cond += f" or {p}.shape != {tuple(shape)!r}"
            else:
                cond += f" or len({p}.shape) != {len(shape)}"
                cond += "".join(f" or {p}.shape[{j}] != {d}" for j, d in enumerate(shape) if d is not None)
        return f"    if {cond}: {p} = CONV{i}({p})"

    def _namespace(self) -> dict:
        ns = {"NDARRAY": np.ndarray, "EMPTY": np.empty, "OUT": _buffer, "OUT1": _buffer_1, "OUT2": _buffer_2,
              "OUTN": _buffer_n, "COPY": _copy_out, "FIN": _finish, "BUDGET": self.budget, "RunState": RunState,
              "STORE": self.store, "FPSET": _fp_set, "FPRESET": _fp_reset, "IGNORE": _FP_IGNORE,
              "ERRORS": _KERNEL_ERRORS, "OpError": OpError, "STEP_ERROR": self._serial_error,
              "ARENAS": self._arenas, "LIMIT": limit_blas_threads, "NT": self.budget.num_threads,
              "OWN_THREADS": library_threads, "RESTORE": restore_blas_threads, "FRESH": _fresh_output,
              "RECYCLED": in_place.recycled, "SHAPES": _output_shapes, "IP": self._in_place_runs,
              "IPOUT": in_place.output}
        for v, pool in self._pooled_outputs().items():
            ns[f"P{v}"] = pool
        for v, x in self.constants.items():
            ns[f"v{v}"] = x
        for st in self.steps:
            ns[f"K{st.index}"] = st.fn
            ns[f"KO{st.index}"] = st.kernel
            if st.mode == "out":
                ns[f"SH{st.index}"] = {}
            if st.mode == "state":
                for i, c in enumerate(st.fn[1]):
                    ns[f"C{st.index}_{i}"] = c
            for j, dt in enumerate(st.dtypes):
                ns[f"D{st.index}_{j}"] = dt
        for i, v in enumerate(self.feed_values):
            ns[f"D_feed{i}"] = self.specs[v][1]
            ns[f"CONV{i}"] = partial(self.convert, self.feed_tensors[i])
        return ns

    def _generate(self) -> None:
        """The straight-line serial runner, the feed checker and the output gatherer."""
        ns = self._namespace()
        params = ", ".join(f"v{v}" for v in self.feed_values)
        checks = [self._feed_check(i, v) for i, v in enumerate(self.feed_values)]
        local = lambda v: f"v{v}"  # noqa: E731
        item = lambda v: f"v[{v}]"  # noqa: E731
        call_results = {v for st in self.steps if st.mode == "call" for v in st.outputs}

        src = [f"def run({params}):"] + checks
        if self.n_buffers:
            src += ["    try:", "        A = ARENAS.pop()", "    except IndexError:",
                    f"        A = [None] * {self.n_buffers}"]
        src.append("    S = RunState(STORE)" if self.stateful else "    S = None")
        if self.in_place:
            src.append("    _ip = False")
        src += ["    tok = FPSET(IGNORE)" if self.uses_numpy else "    tok = None", "    try:"]
        first = len(src) + 1  # line numbers start at 1
        self._line_step: list = []  # body line -> step index (a failing line names its step)
        blas = None
        section = min(self.in_place, default=None)
        for st in self.steps:
            lines = self._step_lines(st, local, free=True, blas_line=st.blas == "own" or st.blas not in (None, blas),
                                     over=self.in_place.get(st.index))
            if st.index == section:   # the in-place section's input shapes: in_place.py
                made = {v for s in self.steps[section:] for v in s.outputs}
                ins = dict.fromkeys(v for s in self.steps[section:] for v in s.inputs
                                    if v not in made and v not in self.constants)
                lines = [f"_ipk = ({''.join(f'v{v}.shape, ' for v in ins)})", "_ip = IP.begin(_ipk)"] + lines
            blas = st.blas or blas
            src += ["        " + line for line in lines]
            self._line_step += [st.index] * len(lines)
        self._first_body_line = first
        if not self.steps:
            src.append("        pass")
        if self.in_place:   # committed before the section ends (IP.end lets readers in)
            src += ["        S.commit()", "        if not _ip: IP.passed(_ipk)"]
        src += ["    except OpError:", "        raise",
                "    except ERRORS as exc:", "        STEP_ERROR(exc, locals())",
                "    finally:"]
        src.append("        FPRESET(tok)" if self.uses_numpy else "        pass")
        if self.uses_blas:
            src.append("        RESTORE()")
        if self.n_buffers:
            src.append("        ARENAS.append(A)")
        if self.in_place:
            src.append("        if _ip: IP.end()")
        elif self.stateful:
            src.append("    S.commit()")
        outs = ", ".join(self._output_expr(v, local, call_results) for v in self.output_values)
        src += [f"    return [{outs}]", ""]
        src += [f"def check({params}):"] + checks + [f"    return [{params}]", ""]
        src.append(f"def outputs(v):\n    return [{', '.join(self._output_expr(v, item, call_results) for v in self.output_values)}]")
        self.source = "\n".join(src)
        exec(_compiled(self.source, "<graphflow plan>"), ns)  # noqa: S102 - our own source
        self._run_serial = ns["run"]
        self.check = ns["check"]
        self._outputs = ns["outputs"]
        self._fns = None
        self._fns_lock = threading.Lock()

    @property
    def step_fns(self) -> list:
        """One function per step, fn(values, arena, state), for traced and inter-op runs
        (generated on first use: most plans never need them)."""
        if self._fns is None:
            with self._fns_lock:
                if self._fns is None:
                    item = lambda v: f"v[{v}]"  # noqa: E731
                    src = []
                    for st in self.steps:
                        src.append(f"def step{st.index}(v, A, S):")
                        src += ["    " + line for line in self._step_lines(st, item, free=False)]
                    ns = self._namespace()
                    exec(_compiled("\n".join(src), "<graphflow plan steps>"), ns)  # noqa: S102
                    self._fns = [ns[f"step{st.index}"] for st in self.steps]
        return self._fns

    def _serial_error(self, exc: BaseException, frame: dict):
        """Name the step whose line in the serial runner raised `exc`."""
        line = exc.__traceback__.tb_lineno - self._first_body_line
        if not 0 <= line < len(self._line_step):
            raise exc
        self._step_error(self._line_step[line], exc, frame)

    def _step_error(self, k: int, exc: BaseException, frame: dict):
        st = self.steps[k]
        n = st.node
        where = f" (created at {n.source})" if n.source else ""
        shapes = ", ".join(shape_str(np.shape(frame.get(f"v{v}", self.constants.get(v)))) for v in st.inputs)
        members = getattr(st.kernel, "members", None)
        what = f"{n.op} of {', '.join(members)}" if members else n.op
        raise InvalidArgumentError(f"'{n.name}' ({what}) failed on inputs of shapes [{shapes}]: {exc}{where}",
                                   n.name) from exc

    # ---------------------------------------------------------------- running
    def __call__(self, *feeds) -> list:
        if not self.parallel_ok:
            return self._run_serial(*feeds)
        # runs long enough to be worth spreading out try the inter-op schedule, then keep
        # whichever mode was faster, trying the other one now and then (shapes change). A mode's
        # time is the fastest of its last RECENT_RUNS: another process only ever slows a run
        # down, so the fastest is what the mode can do. (Believing a faster run at once and a
        # slower one only partly let a slow spell lift the serial estimate until one lucky probe
        # flipped W5's step at 2 threads onto the schedule, ~13% slower: its products are split
        # over the threads already.)
        serial = min(self._times[0], default=0.0)
        parallel = min(self._times[1], default=0.0)
        self._calls += 1
        if serial < PARALLEL_MIN_SECONDS:
            mode = 0
        else:
            mode = int(parallel < PARALLEL_GAIN * serial)
            if self._calls % PROBE_EVERY == 0:
                mode = 1 - mode
        t0 = time.perf_counter()
        out = self.run_steps(feeds, None, parallel=True) if mode else self._run_serial(*feeds)
        times = self._times[mode]
        times.append(time.perf_counter() - t0)
        if len(times) > RECENT_RUNS:
            del times[0]
        return out

    def run_steps(self, feeds, trace=None, parallel: bool | None = None) -> list:
        """Run through the step functions (traced and/or on the pool); same results as `__call__`."""
        feeds = self.check(*feeds)
        if parallel is None:
            parallel = self.parallel_ok
        v = [None] * self.n_values
        for i, x in self.constants.items():
            v[i] = x
        for i, x in zip(self.feed_values, feeds):
            v[i] = x
        try:
            A = self._arenas.pop()
        except IndexError:
            A = [None] * self.n_buffers
        S = RunState(self.store) if self.stateful else None
        tok = _fp_set(_FP_IGNORE)
        try:
            if parallel:
                _Schedule(self, v, A, S, trace).run()
            else:
                for st, fn in zip(self.steps, self.step_fns):
                    self._run_step(st, fn, v, A, S, trace)
        finally:
            _fp_reset(tok)
            self._arenas.append(A)
            if self.uses_blas:
                restore_blas_threads()
        if S is not None:
            S.commit()
        return self._outputs(v)

    def _run_step(self, st, fn, v, A, S, trace) -> None:
        t0 = time.perf_counter() if trace is not None else 0.0
        try:
            fn(v, A, S)
        except OpError:
            raise
        except _KERNEL_ERRORS as exc:
            self._step_error(st.index, exc, {f"v{i}": v[i] for i in st.inputs})
        if trace is not None:
            trace.append((st.node.name, st.node.op, t0, time.perf_counter(), threading.get_ident()))

    # ---------------------------------------------------------------- inter-op schedule
    def dependencies(self) -> list[list[int]]:
        """deps[k]: the steps step k waits for (data, control, state order, buffer reuse, BLAS)."""
        if self._deps is not None:
            return self._deps
        mem = self.memory
        producer = {}
        for st in self.steps:
            for v in st.outputs:
                producer[v] = st.index
        deps: list[set] = [set() for _ in self.steps]
        last_state = None
        barrier, segment, has_succ = None, set(), set()
        for st in self.steps:
            k = st.index
            d = deps[k]
            d.update(producer[v] for v in st.inputs if v in producer)
            d.update(self._control.get(k, ()))
            if st.stateful:
                if last_state is not None:
                    d.add(last_state)
                last_state = k
            # a buffer written here must be free: every reader of its earlier values is done
            for v in st.outputs:
                u = mem.previous[v]  # the value in this buffer before (earlier ones: covered transitively)
                if u is not None:
                    for w in mem.aliases[u]:
                        d.update(mem.readers[w])
                    d.add(producer[u])
            d.discard(k)
            if st.blas is not None:
                d.update(j for j in segment if j not in has_succ)
                barrier, segment, has_succ = k, set(), set()
            else:
                if barrier is not None and not any(j in segment for j in d):
                    d.add(barrier)
                has_succ.update(j for j in d if j in segment or j == barrier)
                segment.add(k)
        self._deps = [sorted(d) for d in deps]
        return self._deps

    def schedule_tables(self) -> tuple:
        """(successors of each step, how many steps each waits for, the steps waiting for none)."""
        if self._tables is None:
            deps = self.dependencies()
            succ: list = [[] for _ in deps]
            for k, d in enumerate(deps):
                for j in d:
                    succ[j].append(k)
            self._tables = (succ, [len(d) for d in deps], [k for k, d in enumerate(deps) if not d])
        return self._tables

    def _has_parallelism(self) -> bool:
        """Some two steps that compute may run at the same time (neither waits for the other).
        Variable reads and writes (a dictionary access each) do not count: W4's MLP reads six
        variables at once, and its chain of three kernels then took the inter-op mode's
        runner, with its timing of every run, for nothing."""
        deps = self.dependencies()
        level = [0] * len(deps)
        count: dict = {}
        for k, d in enumerate(deps):
            level[k] = 1 + max((level[j] for j in d), default=-1)
            if self.steps[k].mode != "state":
                count[level[k]] = count.get(level[k], 0) + 1
                if count[level[k]] > 1:
                    return True
        return False


class _Schedule:
    """One run's inter-op execution: ready steps go to a shared queue that the calling
    thread and pool helpers drain; the caller sleeps on a condition when nothing is ready."""

    def __init__(self, plan, v, A, S, trace):
        self.plan = plan
        self.v, self.A, self.S, self.trace = v, A, S, trace
        self.succ, waiting, sources = plan.schedule_tables()
        self.waiting = list(waiting)
        self.ready = deque(sources)
        self.left = len(waiting)
        self.error = None
        self.started = self.finished = 0
        self.helpers = 0  # helpers submitted to the pool and not yet gone
        self.cond = threading.Condition(threading.Lock())

    def run(self) -> None:
        budget = self.plan.budget
        while True:
            with self.cond:
                while not self.ready and self.left and self.error is None:
                    self.cond.wait()
                if self.error is not None:
                    break
                if not self.left:   # (a helper may hold this schedule a while: not the run's values)
                    self.v = self.A = self.S = None
                    return
                k = self.ready.popleft()
                self.started += 1
                extra = min(len(self.ready), budget.num_threads - 1 - self.helpers)
                self.helpers += max(extra, 0)
            for _ in range(extra):
                budget.submit(self.help)
            self.execute(k)
        with self.cond:  # wait for steps still running on helpers before handing the arena back
            while self.started > self.finished:
                self.cond.wait()
        raise self.error

    def help(self) -> None:
        while True:
            with self.cond:
                if not self.ready or self.error is not None:
                    self.helpers -= 1
                    return
                k = self.ready.popleft()
                self.started += 1  # counted with the pop: a failing run waits for this step
            self.execute(k)

    def execute(self, k: int) -> None:
        plan = self.plan
        try:
            plan._run_step(plan.steps[k], plan.step_fns[k], self.v, self.A, self.S, self.trace)
        except BaseException as exc:  # handed to the calling thread
            with self.cond:
                self.finished += 1
                if self.error is None:
                    self.error = exc
                self.cond.notify_all()
            return
        with self.cond:
            self.finished += 1
            self.left -= 1
            for s in self.succ[k]:
                self.waiting[s] -= 1
                if self.waiting[s] == 0:
                    self.ready.append(s)
            self.cond.notify_all()
