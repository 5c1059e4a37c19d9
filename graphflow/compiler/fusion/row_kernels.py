"""Row kernels: elementwise kernels and reductions over the trailing axes (softmax, layer norm).

For each row r in [r0, r1) the kernel loads the per-row operands, runs one column loop per
reduction stage (accumulating in registers), computes the per-row values, then one column
loop over [c0, c1) storing the elementwise outputs. A first stage of max/min reductions runs
one row ahead, in the last stage's loop of the row before (`_ahead`); a value the last
stage computes anyway is stashed for the output loop (`_stash`); large outputs stream.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ..codegen.irtypes import load_value, memory_type, store_value
from .kernel_emitter import PTR, STREAM_ALIGN, KernelEmitter
from .kernel_ir import FULL, REDUCERS, ROW_FORMS, streams

_STASH_BYTES = 16 << 10   # a row kernel's stash row on the stack (L1-resident), up to this size


class RowKernelEmitter(KernelEmitter):
    """The function body of a row (or plain elementwise) kernel."""

    def emit(self) -> None:
        kir, b = self.kir, self.b
        r0, r1, c0, c1, dims_p, strides_p = self.fn.args[:6]
        ptrs = self.fn.args[6:]
        ro = self.ro
        dims = [self._load_i64(dims_p, d) for d in range(ro + 1)]
        cols = dims[ro]
        stream_flag = b.icmp_signed("!=", self._load_i64(dims_p, ro + 1), self._i64(0)) if streams(kir) else None
        st = [[self._load_i64(strides_p, j * (ro + 1) + d) for d in range(ro + 1)] for j in range(len(ptrs))]
        col_strides = [s[ro] for s in st]
        stages = sorted({self.levels[self.n_in + i] for i in kir.reductions})
        at_stage = {stage: [i for i in kir.reductions if self.levels[self.n_in + i] == stage] for stage in stages}
        full_outputs = [s for s in kir.outputs if kir.slot_form(s) == FULL]
        first_out = len(self.ptr_ops) - len(kir.outputs)
        stash = self._stash(stages)
        if stash:
            col_strides.append(self._stash_buffer(stash, cols, col_strides[first_out + stash[1]]))
        ahead = self._ahead(stages)
        if ahead:   # pseudo operands: each operand's next row, after the stash
            self.ahead_j = {j: len(col_strides) + j for j in range(len(self.ptr_ops))}
            col_strides += col_strides[:len(self.ptr_ops)]

        def reduce_row(r):
            """The first stage's values for row r, alone (before the first row of the range)."""
            bases = self._row_bases(r, ptrs, dims, st)
            env: dict = {}
            self._row_values(env, bases, 0)
            accs = self._column_loops(self._i64(0), cols, bases, col_strides, self._reduction_init(at_stage[stages[0]]),
                                      lambda c, accs, address: self._reduction_step(at_stage[stages[0]], accs,
                                                                                    dict(env), address),
                                      "ahead0")
            return self._reduction_result(at_stage[stages[0]], accs, cols)

        def row_body(r, carried):
            bases = self._row_bases(r, ptrs, dims, st)
            if stash:
                bases.append(b.select(self.stash_local, self.stash_row, bases[first_out + stash[1]]))
            row_env: dict = {}
            self._row_values(row_env, bases, 0)
            todo = stages
            if ahead:
                first = at_stage[stages[0]]
                row_env.update((self.n_in + i, v) for i, v in zip(first, carried))
                self._row_values(row_env, bases, stages[0])
                todo = stages[1:]
                # the next row of the range (this row again for the last: its values are unused)
                nxt = b.add(r, self._i64(1))
                next_bases = self._row_bases(b.select(b.icmp_signed("<", nxt, r1), nxt, r), ptrs, dims, st)
                bases += next_bases
                next_env: dict = {}
                self._row_values(next_env, next_bases, 0)
                next_address = lambda address: lambda j, dtype: address(self.ahead_j[j], dtype)  # noqa: E731
            for stage in todo:
                idx = at_stage[stage]
                last = stage == stages[-1]
                init = self._reduction_init(idx)
                k = len(init)   # this row's accumulators; then, in the last stage, the next row's
                if ahead and last:
                    init += self._reduction_init(first)

                def reduce_body(c, accs, address, idx=idx, last=last, k=k):
                    env = dict(row_env)
                    new = self._reduction_step(idx, accs[:k], env, address)
                    if last and stash:
                        slot, _ = stash
                        store_value(b, env[slot], address(self.stash_j, kir.slot_dtype(slot)))
                    if ahead and last:
                        new += self._reduction_step(first, accs[k:], dict(next_env), next_address(address))
                    return new

                accs = self._column_loops(self._i64(0), cols, bases, col_strides, init, reduce_body, f"stage{stage}")
                if ahead and last:
                    carried = self._reduction_result(first, accs[k:], cols)
                row_env.update((self.n_in + i, v) for i, v in zip(idx, self._reduction_result(idx, accs[:k], cols)))
                self._row_values(row_env, bases, stage)
            if full_outputs:
                def out_body(c, accs, address):
                    env = dict(row_env)
                    if stash:
                        slot, _ = stash
                        env[slot] = load_value(b, address(self.stash_j, kir.slot_dtype(slot)), kir.slot_dtype(slot),
                                               self.lanes)
                    for k, s in enumerate(kir.outputs):
                        if kir.slot_form(s) == FULL:
                            self._store(self._compute(s, env, address), address(first_out + k, kir.slot_dtype(s)))
                    return []
                lo, hi = (self._i64(0), cols) if kir.reductions else (c0, c1)
                if streams(kir):
                    self._streaming_or_column_loops(lo, hi, bases, col_strides, out_body, stream_flag, first_out)
                else:
                    self._column_loops(lo, hi, bases, col_strides, [], out_body, "out")
            for k, s in enumerate(kir.outputs):
                if kir.slot_form(s) in ROW_FORMS:
                    store_value(b, self._compute(s, row_env, None), bases[first_out + k])
            return carried

        self._loop(r0, r1, self._if_rows(r0, r1, lambda: reduce_row(r0)) if ahead else [], row_body, "row")
        if streams(kir):
            b.fence("seq_cst")   # streaming stores are weakly ordered: once per call, not per row
        b.ret_void()

    def _if_rows(self, r0, r1, values) -> list:
        """`values()` (emitted) when the range [r0, r1) has a row, else zeros (never read)."""
        b = self.b
        pre = b.block
        first_bb = self.fn.append_basic_block("ahead.first")
        rows_bb = self.fn.append_basic_block("ahead.rows")
        b.cbranch(b.icmp_signed("<", r0, r1), first_bb, rows_bb)
        b.position_at_end(first_bb)
        got = values()
        done = b.block
        b.branch(rows_bb)
        b.position_at_end(rows_bb)
        out = []
        for v in got:
            p = b.phi(v.type)
            p.add_incoming(ir.Constant(v.type, None), pre)
            p.add_incoming(v, done)
            out.append(p)
        return out

    def _ahead(self, stages) -> bool:
        """Whether the first reduction stage of each row runs one row ahead, inside the last
        stage's column loop of the row before (after a stand-alone pass for the range's first
        row). That loop is compute-bound (softmax's exp) and the first stage memory-bound (its
        max reads the row from memory): together the row's loads overlap the arithmetic.
        Only for max/min first stages, whose value does not depend on the order of the loop
        (zeros of both signs are made +0 in `_reduction_result`): a row gives the same bits
        whichever loop reduced it, so results stay independent of how rows are split."""
        if len(stages) < 2:
            return False
        return all(REDUCERS[self.kir.instrs[i].op].combine in ("max", "min")
                   for i in self.kir.reductions if self.levels[self.n_in + i] == stages[0])

    def _stash_buffer(self, stash, cols, out_stride):
        """Where the stash goes: a row buffer on the stack when the row fits (the output's
        final loop may then stream, its lines never read for ownership), else the output row
        itself. Sets the pseudo operand `stash_j` (its base is chosen per row); returns its
        column stride."""
        b, kir = self.b, self.kir
        dtype = kir.slot_dtype(stash[0])
        cap = _STASH_BYTES // np.dtype(dtype).itemsize
        row = b.alloca(ir.ArrayType(memory_type(dtype), cap))
        row.align = STREAM_ALIGN
        row.type = PTR   # llvmlite types it [cap x T]*; the module uses opaque pointers
        self.stash_row = row
        self.stash_local = b.icmp_signed("<=", cols, self._i64(cap))
        self.stash_j = len(self.ptr_ops)
        return b.select(self.stash_local, self._i64(1), out_stride)

    def _cone(self, slot: int) -> set:
        """The elementwise (FULL) instructions `slot` is computed from within one column loop."""
        out, stack = set(), [slot]
        while stack:
            x = stack.pop()
            if x < self.n_in or x in out or self.kir.slot_form(x) != FULL or x - self.n_in == self.kir.library:
                continue
            out.add(x)
            stack.extend(self.kir.instrs[x - self.n_in].args)
        return out

    def _stash(self, stages) -> tuple | None:
        """(slot, output position) of a value the last reduction stage computes anyway and an
        elementwise output needs (softmax's exp(x - max)): the stage stores it into that output
        and the final loop reads it back instead of recomputing it. Only for values of two or
        more ops, where recomputing costs more than a store and a load of an L1-resident row."""
        kir = self.kir
        if not stages:
            return None
        last = [i for i in kir.reductions if self.levels[self.n_in + i] == stages[-1]]
        computed = set().union(*(self._cone(kir.instrs[i].args[0]) for i in last))
        for k, s in enumerate(kir.outputs):
            if kir.slot_form(s) != FULL:
                continue
            shared = [v for v in self._cone(s) & computed
                      if np.dtype(kir.slot_dtype(v)) == np.dtype(kir.slot_dtype(s)) and len(self._cone(v)) >= 2]
            if shared:
                return max(shared, key=lambda v: len(self._cone(v))), k
        return None
