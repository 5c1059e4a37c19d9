"""Column kernels: reductions over the leading axes (batch norm's moments over the batch).

Threads split the columns; each call accumulates its columns [c0, c1) over all rows into
accumulators in memory (one reduction stage after another), then runs the elementwise
pass, so a column's sum never depends on how columns are split.
"""
from __future__ import annotations

from ..codegen.irtypes import load_value, store_value
from .kernel_emitter import KernelEmitter
from .kernel_ir import COL, FULL, REDUCERS, UNIFORM, scratch_slots


class ColumnKernelEmitter(KernelEmitter):
    """The function body of a column kernel (`KernelIR.lead`)."""

    def emit(self) -> None:
        """A column kernel: for each reduction stage, accumulate over all rows into the
        accumulators of columns [c0, c1) (in memory), then the elementwise pass."""
        kir, b = self.kir, self.b
        r0, r1, c0, c1, dims, cols, st, col_strides, ptrs = self._args()
        bases0 = list(ptrs)   # row 0: column values have stride 0 on the reduced axes
        env0: dict = {}
        self._row_values(env0, bases0, 0)
        stages = sorted({self.levels[self.n_in + i] for i in kir.reductions})
        for stage in stages:
            idx = [i for i in kir.reductions if self.levels[self.n_in + i] == stage]
            acc = {i: self._ptr_index(self.n_in + i) for i in idx}

            def init_body(c, accs, address, idx=idx, acc=acc):
                for i in idx:
                    red = REDUCERS[kir.instrs[i].op]
                    ident = -0.0 if red.combine == "add" else red.identity
                    store_value(b, self.sb.const(ident, kir.instrs[i].dtype), address(acc[i], kir.instrs[i].dtype))
                return []

            self._column_loops(c0, c1, bases0, col_strides, [], init_body, f"init{stage}")

            def row_body(r, _, idx=idx, acc=acc, stage=stage):
                bases = self._row_bases(r, ptrs, dims, st)

                def acc_body(c, accs, address):
                    env = dict(env0)
                    for i in idx:
                        dtype = kir.instrs[i].dtype
                        v = self._compute(kir.instrs[i].args[0], env, address)
                        ptr = address(acc[i], dtype)
                        store_value(b, self._reduce_step(REDUCERS[kir.instrs[i].op], load_value(b, ptr, dtype), v), ptr)
                    return []

                self._column_loops(c0, c1, bases, col_strides, [], acc_body, f"acc{stage}")
                return []

            self._loop(r0, r1, [], row_body, f"rows{stage}")
            means = [i for i in idx if REDUCERS[kir.instrs[i].op].mean]
            if means:
                def mean_body(c, accs, address, means=means, acc=acc):
                    for i in means:
                        dtype = kir.instrs[i].dtype
                        ptr = address(acc[i], dtype)
                        v = load_value(b, ptr, dtype)
                        store_value(b, b.fdiv(v, b.sitofp(b.sub(r1, r0), v.type)), ptr)
                    return []
                self._column_loops(c0, c1, bases0, col_strides, [], mean_body, f"mean{stage}")
        first_out = len(self.ptr_ops) - len(kir.outputs) - len(scratch_slots(kir))
        col_outs = [(k, s) for k, s in enumerate(kir.outputs)
                    if kir.slot_form(s) == COL and s not in self.memory_slots]
        if col_outs:
            def col_body(c, accs, address):
                env = dict(env0)
                for k, s in col_outs:
                    store_value(b, self._compute(s, env, address), address(first_out + k, kir.slot_dtype(s)))
                return []
            self._column_loops(c0, c1, bases0, col_strides, [], col_body, "colout")
        full_outs = [(k, s) for k, s in enumerate(kir.outputs) if kir.slot_form(s) == FULL]
        if full_outs:
            def out_row(r, _):
                bases = self._row_bases(r, ptrs, dims, st)

                def out_body(c, accs, address):
                    env = dict(env0)
                    for k, s in full_outs:
                        store_value(b, self._compute(s, env, address), address(first_out + k, kir.slot_dtype(s)))
                    return []

                self._column_loops(c0, c1, bases, col_strides, [], out_body, "out")
                return []
            self._loop(r0, r1, [], out_row, "outrows")
        at_zero = self._addr(bases0, None, self._i64(0))
        for k, s in enumerate(kir.outputs):
            if kir.slot_form(s) == UNIFORM and s not in self.memory_slots:
                store_value(b, self._compute(s, env0, at_zero), bases0[first_out + k])
        b.ret_void()
