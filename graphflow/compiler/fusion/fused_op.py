"""The `Fused` op that replaces each group of fused nodes, and its kernel object.

`FusedKernel.run(inputs, outputs, budget)` works out the rows x cols layout of the call,
then runs the compiled function over ranges, as one compiled job over the budget's threads
(a parallel chain entry bound to the operands, codegen/pool.py): elementwise kernels over
blocks of `FLAT_BLOCK` elements (block boundaries are multiples of the vector step, so every
element takes the same code path whatever the thread count: results are bitwise
independent of it), row kernels over whole rows (a reduction is never split, so it is
deterministic too), epilogues over blocks of rows of the library result, each block's
product then its epilogue (`_bind_product`). The chunks depend on the sizes only, never on
the thread count.
"""
from __future__ import annotations

import ctypes
import math

import numpy as np

from ...ops.registry import OpDef, OpKind, register
from ...runtime.fpstate import IGNORE, quiet_fp, restore_fp
from ...runtime.pointers import address as _address
from ...runtime.threads import MAX_CHUNKS, SERIAL, chunk_bounds
from ..codegen import chain
from . import epilogue
from .direct import DirectCall, Operand, Scratch
from .evaluate import numpy_function
from .kernel_ir import COL, DROP, FULL, LIB, UNIFORM, KernelIR, scratch_slots, streams
from .layout import call_layout, slot_shapes

FLAT_BLOCK = 1024          # elements; a multiple of every vector step (16 lanes x 4 interleave x ...)
TASK_NS = 100_000          # ~100 us of work per parallel task (XLA's rule of thumb)
# The cost model (calibrated on this project's W1/W2/W3 kernels with AVX-512): a member op
# costs ~0.05 ns per element on average once vectorized (polynomial transcendentals
# included), a reduction's extra sweep over the row like two ops (the row is in cache by
# then), and each byte streamed from memory ~0.08 ns (~12 GB/s per core).
_OP_NS = 0.05
_BYTE_NS = 0.08
_LAYOUT_CACHE = 64
STREAM_BYTES = 8 << 20     # outputs this big bypass the caches (non-temporal stores)
# Per-call costs: a compiled call ~5 us of Python and ctypes (~9 us with an epilogue's
# blocking), a numpy op on a small array ~1.5 us. Kernels of a few ops over at most
# SMALL_ELEMENTS elements run their numpy evaluation instead (W8's one-add graph, batch-1
# dense layers).
SMALL_ELEMENTS = 1024
_CALL_US, _EPILOGUE_CALL_US, _NUMPY_OP_US = 5.0, 9.0, 1.5


_NO_LAYOUT = object()   # these strides cannot be walked by the compiled loop: numpy evaluation


class _Strided:
    """Shape/strides of a buffer that does not exist yet (the library block's scratch)."""

    def __init__(self, shape, strides, itemsize):
        self.shape, self.strides, self.itemsize = shape, strides, itemsize


def _chunk_table(layout) -> tuple[np.ndarray, int]:
    """(table, chunks): the (start, end) arguments of each parallel chunk of a rows, columns
    or flat layout (a parallel entry's table), from `chunk_bounds`: independent of the thread count."""
    bounds = chunk_bounds(layout.tasks, layout.grain)
    if layout.mode == "rows":
        pairs = [(s, e) for s, e in zip(bounds, bounds[1:])]
    else:
        pairs = [(s * FLAT_BLOCK, min(e * FLAT_BLOCK, layout.cols)) for s, e in zip(bounds, bounds[1:])]
    return np.array(pairs, np.int64).reshape(-1), len(pairs)


def _balanced_rows(n: int, rows: int) -> int:
    """Rows per chunk of an n-row product, at least `rows`, such that the chunks
    (`chunk_bounds`) number a power of two: they share out evenly over 2, 4 or 8 threads,
    where chunks of near-equal cost claimed dynamically cannot rebalance an odd count. W5's
    products at batch 128 came in 5 chunks of 24-32 rows, 3 on one thread and 2 on the other:
    1.6x one thread's speed instead of ~1.9x. Never depends on the thread count."""
    count = max(1, min(n // max(rows, 1), MAX_CHUNKS))
    return max(rows, n // (1 << (count.bit_length() - 1)))


def _epilogue_chunk_tables(n: int, grain: int, block: int, unit: int, align: int):
    """(product rows, epilogue rows, chunks): the tables of `_bind_product`'s calls:
    `chunk_bounds(n, grain)` with edges rounded up to multiples of the product's row tile
    `align` (as `_run_epilogue`'s tasks round them), each cut into blocks of at most `block`
    rows; the epilogue's ranges in its own rows (`unit` per row of the product)."""
    bounds = [min(n, -(-b // align) * align) for b in chunk_bounds(n, grain)]
    pairs = [(b0, min(b0 + block, e)) for s, e in zip(bounds, bounds[1:]) for b0 in range(s, e, block)]
    rows = np.array(pairs, np.int64).reshape(-1)
    return rows, rows * unit, len(pairs)


class FusedKernel:
    """One fused kernel: the contract object of a `Fused` node (see CONTRACTS.md B)."""

    def __init__(self, ir: KernelIR):
        self.ir = ir
        self.name = ir.name
        self.members = ir.members
        self.kind = ir.kind
        self.vectorized: bool | None = None
        self.static_specs: tuple = ()      # TensorSpecs of the outputs, set by the fuse pass
        self._fn = None
        self._address = None
        self._jit = None
        n = len(ir.inputs)
        self._ptr_inputs = [i for i, o in enumerate(ir.inputs) if o.form != LIB]
        self._lib = ir.library
        self._out_forms = [ir.slot_form(s) for s in ir.outputs]
        self._out_dtypes = [np.dtype(ir.slot_dtype(s)) for s in ir.outputs]
        self._scratch = scratch_slots(ir)
        self._streams = streams(ir)
        self._forms = ([ir.inputs[i].form for i in self._ptr_inputs] + ([FULL] if self._lib is not None else [])
                       + self._out_forms + [COL] * len(self._scratch))
        self.inplace_ok = tuple((i, j) for i, o in enumerate(ir.inputs) for j, s in enumerate(ir.outputs)
                                if ir.kind == "elementwise" and o.form == FULL and self._out_forms[j] == FULL
                                and np.dtype(o.dtype) == self._out_dtypes[j])
        nbytes = sum(np.dtype(ir.slot_dtype(s)).itemsize for s in range(n)) + sum(d.itemsize for d in self._out_dtypes)
        ops = sum(1 for ins in ir.instrs if not ins.is_const) + 2 * len(ir.reductions)
        self._elem_ns = _OP_NS * max(ops, 1) + _BYTE_NS * nbytes
        self._shapes_cache: dict = {}
        call_us = _EPILOGUE_CALL_US if self._lib is not None else _CALL_US
        # (a kernel holding a matmul always runs compiled: the product dominates, and numpy's
        # evaluation of it costs a copy of each operand on top)
        self._numpy_is_cheaper = (self._lib is None
                                  and _NUMPY_OP_US * sum(1 for ins in ir.instrs if not ins.is_const) < call_us)
        self._layout_cache: dict = {}
        self._static_fns: dict = {}   # static input shapes -> numpy function with fresh outputs
        self._evaluate = None          # the numpy evaluation (generated on first use)
        self._direct: DirectCall | None = None   # the last run's calls, bound to its operands
        if self._lib is not None:  # read once here, not on every call
            lib = ir.instrs[self._lib]
            self._lib_block = epilogue.block_function(lib.op, lib.attrs)
            self._lib_args, self._lib_attrs, self._lib_dtype = lib.args, lib.attrs, np.dtype(lib.dtype)
            # a lone library op computed straight into its output has nothing left to run
            self._lib_only = len(ir.instrs) == 1
            # an output the library result may be computed straight into (no scratch block):
            # an elementwise epilogue reads each element of the result once, before writing
            # the same element of that output (the in-place rule the kernels accept)
            self._lib_into = next((j for j, s in enumerate(ir.outputs) if not ir.reductions and not ir.lead
                                   and self._out_forms[j] == FULL and self._out_dtypes[j] == self._lib_dtype),
                                  None)
            # an epilogue the product applies in its own stores (an SGD update): no epilogue pass
            absorbed = epilogue.absorbed(ir) if self._lib_into is not None else None
            self._absorbed = absorbed is not None
            if absorbed is not None:
                self._lib_block, self._lib_args = absorbed
                self._lib_only = True
                # the stores read each element of D before writing it (gemm.store_function)
                self.inplace_ok += ((absorbed[1][2], 0),)

    # ---- binding to compiled code ----
    def bind(self, jit, vectorized: bool | None) -> None:
        """Use function `self.name` of the JitModule `jit` (kept alive with this kernel)."""
        # every argument is declared void*: the same 64-bit register or stack slot as the
        # function's i64 parameters, and ctypes converts a Python int to void* ~2x faster
        # than to int64 (negative ints wrap, as the two's complement i64 expects)
        nptr = len(self._forms)
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (6 + nptr)))
        self._address = jit.address(self.name)
        self._fn = proto(self._address)
        self._jit = jit
        self._direct = None
        self.vectorized = vectorized

    # ---- shapes ----
    def _analysis(self, input_shapes: tuple):
        """(slot shapes, domain, small): the domain None when the compiled loop cannot take
        these shapes; `small` when the problem is so small that the numpy evaluation of a few
        ops costs less than an unbound compiled call (a plan then calls that evaluation
        directly for static shapes: `static_call`)."""
        hit = self._shapes_cache.get(input_shapes)
        if hit is None:
            shapes = slot_shapes(self.ir, input_shapes)
            domain = self._domain(shapes)
            small = domain is None or (self._numpy_is_cheaper and int(np.prod(domain)) <= SMALL_ELEMENTS)
            hit = (shapes, domain, small)
            if len(self._shapes_cache) > _LAYOUT_CACHE:
                self._shapes_cache.clear()
            self._shapes_cache[input_shapes] = hit
        return hit

    def _domain(self, shapes):
        ir = self.ir
        n = len(ir.inputs)
        if ir.reductions:
            cands = {shapes[ir.instrs[i].args[0]] for i in ir.reductions}
            if len(cands) != 1:
                return None
            (domain,) = cands
        elif self._lib is not None:
            domain = shapes[n + self._lib]
        else:
            full = [shapes[n + i] for i, ins in enumerate(ir.instrs) if ins.form == FULL]
            # each distinct shape once: np.broadcast_shapes makes an array per argument
            domain = np.broadcast_shapes(*dict.fromkeys(full or [shapes[s] for s in ir.outputs]))
            domain = (1,) * (ir.rank - len(domain)) + tuple(domain)
        if len(domain) != ir.rank:
            return None
        k = ir.reduced
        for s in range(n + len(ir.instrs)):
            form = ir.slot_form(s)
            if form == LIB:
                continue
            shape = shapes[s] + (1,) * k if form == DROP else shapes[s]
            if shape == domain:   # (most slots of a long chain)
                continue
            if len(shape) > len(domain):
                return None
            lead = len(domain) - len(shape)
            if any(d != 1 and d != domain[lead + i] for i, d in enumerate(shape)):
                return None
            if form == FULL and ir.reduced and s >= n and tuple(shapes[s]) != tuple(domain):
                return None
        return tuple(domain)

    def output_shapes(self, input_shapes) -> list[tuple]:
        try:  # ndarray shapes are tuples already: the list is the cache key as it is
            shapes = self._analysis(tuple(input_shapes))[0]
        except TypeError:
            shapes = self._analysis(tuple(tuple(s) for s in input_shapes))[0]
        return [shapes[s] for s in self.ir.outputs]

    # ---- running ----
    def run(self, inputs, outputs=None, budget=None) -> list[np.ndarray]:
        """Compute the outputs (into `outputs` when given), split over `budget`'s threads."""
        bound = self._direct
        if bound is not None:
            fresh = outputs is None   # (a variable's next value, a fetched result: new arrays each run)
            if fresh:
                outputs = [np.empty(s, d) for s, d in zip(bound.shapes[len(inputs):], self._out_dtypes)]
            ops = [*inputs, *outputs]
            budget = budget or SERIAL
            if budget is not bound.budget or not bound.match(ops, bound.refs, bound.shapes):
                bound = bound.rebind(ops, budget)   # (a pointer patch, not a new binding: ~4 vs ~20 us)
                if bound is not None:
                    self._direct = bound
            if bound is not None:
                bound()
                return outputs
            if fresh:
                outputs = None
        inputs = [a if a.__class__ is np.ndarray else np.asarray(a) for a in inputs]
        in_shapes = tuple([a.shape for a in inputs])
        hit = self._shapes_cache.get(in_shapes)
        shapes, domain, _ = hit if hit is not None else self._analysis(in_shapes)
        if outputs is None:
            outputs = [np.empty(shapes[s], dtype=d) for s, d in zip(self.ir.outputs, self._out_dtypes)]
        if domain is None or self._fn is None:
            return self._run_numpy(inputs, outputs)
        # pointer operands in call order: inputs read by the loop, outputs, then scratch
        arrays = [inputs[i] for i in self._ptr_inputs] + list(outputs)
        key = (in_shapes, tuple([a.strides for a in arrays]), tuple([o.shape for o in outputs]))
        if self._scratch:
            arrays += [np.empty(shapes[s], dtype=self.ir.slot_dtype(s)) for s in self._scratch]
        layout = self._layout_cache.get(key)
        if layout is None:
            layout = self._new_layout(key, domain, arrays)
        if layout is _NO_LAYOUT:
            return self._run_numpy(inputs, outputs)
        addresses = [_address(a) for a in arrays]
        mode = layout.mode
        if mode == "epilogue":
            self._run_epilogue(inputs, outputs, addresses, shapes, layout, domain, budget or SERIAL)
            return outputs
        if mode == "empty":
            return outputs
        split = mode != "whole" and budget is not None and budget.num_threads > 1 and layout.chunks[1] > 1
        # one call over the whole range (every element takes the code path it takes in any
        # split) or one compiled job of chunks: rows, whole rows per chunk; columns (a column
        # kernel), whole columns, so sums never split (deterministic); flat, blocks of
        # FLAT_BLOCK elements. Bound to these operands for the next runs (see `_direct`).
        bound = self._bind_call(inputs, outputs, shapes, layout, budget or SERIAL, split)
        if bound is not None:
            bound()
            return outputs
        fn, dims, strides, cols = self._fn, layout.dims_ptr, layout.strides_ptr, layout.cols
        if mode == "rows":
            budget.parallel_for(lambda s, e: fn(s, e, 0, cols, dims, strides, *addresses), layout.rows, layout.grain)
        else:
            rows = layout.rows   # (1 in flat mode)
            budget.parallel_for(lambda s, e: fn(0, rows, s * FLAT_BLOCK, min(e * FLAT_BLOCK, cols), dims, strides,
                                                 *addresses), layout.tasks, layout.grain)
        return outputs

    def _bind_call(self, inputs, outputs, shapes, layout, budget, split: bool) -> DirectCall | None:
        """Keep the kernel's call bound to these operands (direct.py): one call over the whole
        range, or with `split` the layout's chunks as one parallel chain entry; None when the
        call has too many arguments for a job (the chunks then run from Python). At W5's batch
        the loss and bias-gradient kernels are 0.1-10 us of work, and their per-call Python
        (shape keys, the layout lookup, a pointer per operand) or numpy's evaluation cost
        more, several times more in the cold caches a large product leaves behind (the loss's
        mean: 35 us in the training step, 10 us run again at once)."""
        scratch = [Scratch(shapes[s], self.ir.slot_dtype(s)) for s in self._scratch]
        call = self._marked_call(layout.rows, layout.cols, layout, len(inputs), len(outputs), (), scratch)
        if split:
            at = 0 if layout.mode == "rows" else 2   # the chunk's range replaces arguments at, at + 1
            call = budget.parallel_entry([(self._address, call[1], at, at + 1, layout.chunks[0])])
            if call is None:
                return None
        self._direct = bound = DirectCall.bind([*inputs, *outputs], [call], budget, layout)
        return bound

    def _marked_call(self, rows: int, cols: int, layout, n_in: int, n_out: int, lib: tuple, scratch) -> tuple:
        """(function, argument template) of this kernel over rows [0, rows), its operands as
        direct.py markers: the loop's inputs, then `lib` (the library result's marker, if any),
        the outputs and `scratch`."""
        return (self._fn, (0, rows, 0, cols, layout.dims_ptr, layout.strides_ptr,
                           *[Operand(i) for i in self._ptr_inputs], *lib,
                           *[Operand(n_in + j) for j in range(n_out)], *scratch))

    def _new_layout(self, key, domain, arrays):
        """The call layout for these shapes and strides, with how to split it (cached);
        `arrays`: the pointer operands as `run` passes them (inputs, outputs, scratch)."""
        n = len(self._ptr_inputs)
        outputs = arrays[n:n + len(self._out_dtypes)]
        if self._lib is not None:
            item = np.dtype(self.ir.instrs[self._lib].dtype).itemsize
            arrays = arrays[:n] + [_Strided(domain, tuple(int(np.prod(domain[d + 1:], dtype=np.int64)) * item
                                                          for d in range(len(domain))), item)] + arrays[n:]
        layout = call_layout(self.ir, domain, arrays, self._forms, separate_columns=self._lib is not None)
        if layout is None:
            layout = _NO_LAYOUT
        else:
            rows, cols = layout.rows, layout.cols
            if self._lib is not None:
                layout.mode, layout.epilogue = "epilogue", None
                j = self._lib_into
                layout.into = j if j is not None and outputs[j].shape == tuple(domain) and \
                    outputs[j].flags.c_contiguous and not self._streams else None
            elif self.ir.lead:
                layout.mode, layout.tasks = "columns", -(-cols // FLAT_BLOCK)
                layout.grain = max(1, int(TASK_NS / (self._elem_ns * FLAT_BLOCK * max(rows, 1))))
            elif not self.ir.reduced and rows == 1:
                layout.mode, layout.tasks = "flat", -(-cols // FLAT_BLOCK)
                layout.grain = max(1, int(TASK_NS / (self._elem_ns * FLAT_BLOCK)))
            else:
                layout.mode, layout.tasks = "rows", rows
                layout.grain = max(1, math.ceil(TASK_NS / (self._elem_ns * max(cols, 1))))
            if self._streams and sum(o.nbytes for o in outputs) >= STREAM_BYTES:
                layout.dims[-1] = 1
            if layout.mode != "epilogue" and layout.tasks <= layout.grain:
                layout.mode = "whole"
            if layout.mode in ("rows", "columns", "flat"):
                layout.chunks = _chunk_table(layout)
            if layout.rows == 0 and not self.ir.lead:
                # an empty domain: nothing to loop over (a column kernel still writes identities);
                # a one-element output is still due, from the numpy evaluation
                layout.mode = "empty"
                if UNIFORM in self._out_forms:
                    layout = _NO_LAYOUT
        if layout is not _NO_LAYOUT and layout.mode == "epilogue" and layout.into is None and self._absorbed:
            layout = _NO_LAYOUT   # (an absorbed epilogue's product stores the final values: only into the output)
        if len(self._layout_cache) > _LAYOUT_CACHE:
            self._layout_cache.clear()
        self._layout_cache[key] = layout
        return layout

    def _run_epilogue(self, inputs, outputs, addresses, shapes, layout, domain, budget) -> None:
        """Blocks along axis 0 of the library result (matmul rows, conv images): compute a
        block (into the output it becomes, when the layout allows, else into a scratch
        buffer), then run the fused kernel on its rows while in cache. Bound to these
        operands for the next runs where the library op is compiled calls (`_bind_product`)."""
        n = domain[0]
        if n == 0:
            return
        lib_args = [inputs[a] for a in self._lib_args]
        static = layout.epilogue
        if static is None:
            static = layout.epilogue = self._epilogue_static(layout, domain, lib_args)
        cols, unit, block, k, into, grain = static
        fn, dims, strides = self._fn, layout.dims_ptr, layout.strides_ptr
        if budget.num_threads == 1:
            grain = n
        bound = self._bind_product(inputs, outputs, shapes, layout, domain, grain, budget)
        if bound is not None:   # (the binding made here: a concurrent run may publish its own meanwhile)
            bound()
            return
        compute = self._lib_block(*lib_args)
        if into is not None and n <= block and n < 2 * grain:   # one block, in the output it becomes
            compute(0, n, outputs[into])
            if not self._lib_only:
                fn(0, n * unit, 0, cols, dims, strides, *addresses[:k], addresses[k + into], *addresses[k:])
            return
        ptrs, outs = addresses[:k], addresses[k:]
        target = outputs[into] if into is not None else None
        dtype = self._lib_dtype
        item_bytes = unit * cols * dtype.itemsize
        rest = tuple(domain[1:])
        align = getattr(compute, "align", 1)
        epilogue_fn = not (self._lib_only and target is not None)

        def task(s: int, e: int) -> None:
            # chunk edges on multiples of the product's row tile (every chunk rounds the same
            # shared edge the same way, so the chunks still tile [0, n) exactly)
            s, e = min(n, -(-s // align) * align), min(n, -(-e // align) * align)
            if s >= e:
                return
            if target is None:
                scratch = np.empty((min(block, e - s),) + rest, dtype=dtype)
                base = _address(scratch)
            for b0 in range(s, e, block):
                b1 = min(b0 + block, e)
                if target is None:   # the block's rows of the library result at the scratch's start
                    part, lib = scratch[:b1 - b0], base - b0 * item_bytes
                else:                # computed in place in the output it becomes
                    part, lib = (target[b0:b1] if b1 - b0 < n else target), outs[into]
                compute(b0, b1, part)
                if epilogue_fn:
                    fn(b0 * unit, b1 * unit, 0, cols, dims, strides, *ptrs, lib, *outs)

        if n < 2 * grain:
            task(0, n)
        else:   # chunks claimed dynamically: a core slowed by another process takes fewer
            budget.parallel_for(task, n, grain)

    def _bind_product(self, inputs, outputs, shapes, layout, domain, grain, budget) -> DirectCall | None:
        """Keep the compiled calls of the library product and its epilogue bound to these
        operands (see direct.py): the product (after a copy of an operand the tiles read
        packed) into the output it becomes, else into a scratch result of the binding's own,
        then the epilogue over its rows. Several chunks of rows (`chunk_bounds(n, grain)`, cut
        into blocks of at most the layout's block) run their product rows and then their
        epilogue rows while in cache: over the budget's threads as one compiled job, claimed
        dynamically, or one after another on one thread; one block may split the product's
        columns instead (epilogue.split_columns). None where the library op is not compiled
        calls (numpy's route, a convolution) or a call has too many arguments."""
        lib = getattr(self._lib_block, "bound", None)
        product = lib(*[inputs[a] for a in self._lib_args]) if lib is not None else None
        if product is None:
            return None
        cols, unit, block, _, into, _ = layout.epilogue
        n, n_in, n_out = domain[0], len(inputs), len(outputs)
        pc = Operand(n_in + into) if into is not None else Scratch(domain, self._lib_dtype)
        *calls, product_call = product.calls(*[Operand(i) for i in self._lib_args], pc)
        scratch = [Scratch(shapes[s], self.ir.slot_dtype(s)) for s in self._scratch]
        rest = [] if self._lib_only and into is not None else \
            [self._marked_call(n * unit, cols, layout, n_in, n_out, (pc,), scratch)]
        rows, scaled, count = _epilogue_chunk_tables(n, grain, block, unit, product.route.align)
        if budget.num_threads > 1 and n >= 2 * grain:
            job = [(chain.address_of(f), args, 0, 1, table) for (f, args), table in zip([product_call, *rest],
                                                                                        (rows, scaled))]
            entry = budget.parallel_entry(job)
            if entry is None:
                return None
            calls.append(entry)
        elif count == 1:
            calls += [epilogue.split_columns(budget, product.route, product_call), *rest]
        else:
            for i in range(0, 2 * count, 2):
                for (f, args), table in zip([product_call, *rest], (rows, scaled)):
                    calls.append((f, (int(table[i]), int(table[i + 1]), *args[2:])))
        self._direct = bound = DirectCall.bind([*inputs, *outputs], calls, budget, layout)
        return bound

    def _epilogue_static(self, layout, domain, lib_args) -> tuple:
        """What `_run_epilogue` needs that depends only on the layout's shapes (cached on it):
        (cols, kernel rows per index of axis 0, indices per L2 block, number of pointer
        inputs, output the result is computed into or None, rows per parallel chunk)."""
        n, cols = domain[0], layout.cols
        unit = layout.rows // n
        item_bytes = unit * cols * self._lib_dtype.itemsize
        row_ns = self._elem_ns * max(unit * cols, 1) + epilogue.library_ns(self.ir.instrs[self._lib].op, lib_args,
                                                                             self._lib_attrs)
        # a product stored straight into the output with nothing run after it needs no L2 blocks
        # (one block is one bound call: W5's 784-row absorbed update paid ~20 us of Python for two)
        block = max(n, 1) if self._lib_only and layout.into is not None else epilogue.block_size(item_bytes)
        return (cols, unit, block, len(self._ptr_inputs), layout.into,
                _balanced_rows(n, epilogue.task_rows(n, row_ns, TASK_NS)))

    def static_call(self, input_shapes):
        """For inputs of exactly these (static) shapes: a function f(*inputs) -> tuple of
        fresh output arrays when the numpy evaluation is this kernel's path for them (a tiny
        problem of a few ops: W8's one add), so a plan calls it directly, without `run`'s
        per-call layout work; None when the compiled loop runs them."""
        try:
            _, _, small = self._analysis(tuple(tuple(s) for s in input_shapes))
        except Exception:  # noqa: BLE001 - `run` raises it at run time, naming the member op
            return None
        if not small and self._fn is not None:
            return None
        key = tuple(tuple(s) for s in input_shapes)
        fn = self._static_fns.get(key)
        if fn is None:
            fn = self._static_fns[key] = numpy_function(self.ir, self.output_shapes(key), self._out_dtypes)
        return fn

    def _run_numpy(self, inputs, outputs) -> list[np.ndarray]:
        if self._evaluate is None:
            self._evaluate = numpy_function(self.ir)
        tok = quiet_fp(IGNORE)   # quiet, like the compiled loops (IEEE results, no warnings)
        try:
            for out, value in zip(outputs, self._evaluate(*inputs)):
                np.copyto(out, value, casting="unsafe")
        finally:
            restore_fp(tok)
        return outputs

    def __repr__(self) -> str:
        return f"FusedKernel({self.name}: {', '.join(self.members)})"


def _fused_infer(specs, attrs):
    return attrs["kernel"].static_specs


def _fused_kernel(*arrays, kernel: FusedKernel, out=None, budget=None, **_):
    return tuple(kernel.run(list(arrays), out, budget))


register(OpDef(type="Fused", default_name="fused", infer=_fused_infer, kernel=_fused_kernel, kind=OpKind.OPAQUE,
               doc="A group of fused ops run as one compiled kernel (graphflow.compiler.fusion).",
               extra={"accepts_out": True}))
