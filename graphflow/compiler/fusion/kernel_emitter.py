"""The machinery every fused kernel's LLVM function is emitted with.

Every kernel has the same C signature, so one ctypes prototype per operand count serves all:

    void kernel(i64 r0, i64 r1, i64 c0, i64 c1, i64* dims, i64* strides, ptr p0, ..., ptr pn)

`dims` holds the outer dims then the column count; `strides` holds, per pointer operand
(inputs, then the library block, then outputs), its outer strides then its column stride,
in elements. Row r decomposes into outer indices that place every operand's row. Each column
loop exists twice: a unit-stride version (the plain 1-D loop LLVM's vectorizer turns into
AVX-512 code) taken when every elementwise operand has column stride 1, and a general
strided version (stride 0 for broadcast axes). Pointer arguments are `noalias`; the only
aliasing the runtime creates is an elementwise output written in place over an input of the
same shape, where each element is read before it is written.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np
from llvmlite import ir

from ...ops.registry import OpKind, get_op_def
from ..codegen import mathlib
from ..codegen.irtypes import call_intrinsic, element_pointer, load_value, store_value
from ..codegen.scalar_llvm import LLVMScalarBuilder
from .kernel_ir import COL, FULL, LIB, REDUCERS, ROW_FORMS, KernelIR, nonpositive_slots, scratch_slots
from .layout import outer_rank

I64 = ir.IntType(64)
PTR = ir.PointerType()
# Only `reassoc` on the accumulating fadd/fmul: it lets the vectorizer reorder a row's
# accumulation (the order is still fixed by the code, so results do not depend on threads).
# Adding `nsz` would let InstCombine's FAddCombine simplify the whole operand tree under the
# root's flags (x - x becomes 0 even for x = inf), losing NaN propagation.
_FLOAT_FLAGS = ("reassoc",)


def pointer_operands(kir: KernelIR) -> list[tuple[int, str]]:
    """(slot, form) of each pointer argument in order: inputs, library block, outputs, and
    for a column kernel the accumulators of reductions it does not export (scratch)."""
    ops = [(i, o.form) for i, o in enumerate(kir.inputs) if o.form != LIB]
    if kir.library is not None:
        ops.append((len(kir.inputs) + kir.library, FULL))
    ops += [(s, kir.slot_form(s)) for s in kir.outputs]
    if kir.lead:
        ops += [(s, COL) for s in scratch_slots(kir)]
    return ops


_PER_ELEMENT = (FULL, COL)
STREAM_ALIGN = 64   # bytes: one cache line, and the alignment AVX-512 streaming stores need
_NAN_FLAG = ir.IntType(32)   # "a NaN was seen" accumulator of a max/min row reduction (or-reduced)


class KernelEmitter:
    """Emits one fused kernel's LLVM function: the loops, values and reductions that row and
    column kernels share (`RowKernelEmitter`, `ColumnKernelEmitter` emit the function body)."""

    def __init__(self, module: ir.Module, kir: KernelIR, markers: "LoopMarkers"):
        self.kir = kir
        self.markers = markers
        self.n_in = len(kir.inputs)
        self.ptr_ops = pointer_operands(kir)
        self.ro = outer_rank(kir)
        fnty = ir.FunctionType(ir.VoidType(), [I64] * 4 + [PTR, PTR] + [PTR] * len(self.ptr_ops))
        self.fn = ir.Function(module, fnty, name=kir.name)
        self.fn.attributes.add("nounwind")
        for a in self.fn.args[4:]:
            a.add_attribute("noalias")
        self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        # slots read from memory: inputs, the library block, a column kernel's accumulators
        self.memory_slots = {s for s, _ in self.ptr_ops if s < self.n_in}
        if kir.library is not None:
            self.memory_slots.add(self.n_in + kir.library)
        if kir.lead:
            self.memory_slots.update(self.n_in + i for i in kir.reductions)
        self.sb = LLVMScalarBuilder(self.b, module)
        self.nonpositive = nonpositive_slots(kir)
        self.levels = self._levels()
        self.lanes = None          # set while emitting an explicit-vector loop body
        self.streaming = False     # set while emitting the non-temporal-store loop
        self.stash_j = None        # pseudo operand of a row kernel's stash (`_stash_buffer`)
        self.ahead_j = None        # operand -> pseudo operand of its next row (`_ahead`)

    def _levels(self) -> list[int]:
        """Reduction stage after which each slot is available (0: before the first)."""
        lv = [0] * self.n_in
        for ins in self.kir.instrs:
            base = max((lv[a] for a in ins.args), default=0)
            lv.append(base + 1 if ins.op in REDUCERS else base)
        return lv

    # ---- helpers ----
    def _i64(self, v: int) -> ir.Constant:
        return ir.Constant(I64, v)

    def _load_i64(self, base, index: int):
        return self.b.load(self.b.gep(base, [self._i64(index)], inbounds=True, source_etype=I64), typ=I64)

    def _loop(self, lo, hi, init: list, body, name: str, scalar: bool = False, step: int = 1,
              cold: bool | None = None) -> list:
        """A counted loop i in [lo, hi) carrying accumulators; body(i, accs) -> new accs.
        Returns the accumulators' values after the loop. A `scalar` loop is marked so LLVM
        neither vectorizes nor unrolls it (the strided fallback: keeps compile time down).
        A `cold` loop (default: any scalar one) calls out-of-line math functions, keeping the
        inlining budget of `mathlib` for the hot vector loops."""
        b = self.b
        pre = b.block
        header = self.fn.append_basic_block(f"{name}.head")
        body_bb = self.fn.append_basic_block(f"{name}.body")
        exit_bb = self.fn.append_basic_block(f"{name}.exit")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64, name=f"{name}.i")
        i.add_incoming(lo, pre)
        accs = []
        for v in init:
            p = b.phi(v.type)
            p.add_incoming(v, pre)
            accs.append(p)
        b.cbranch(b.icmp_signed("<", i, hi), body_bb, exit_bb)
        b.position_at_end(body_bb)
        with mathlib.cold(self.fn.module) if (scalar if cold is None else cold) else contextlib.nullcontext():
            new = body(i, accs)
        nxt = b.add(i, self._i64(step), flags=("nsw",))
        latch = b.block
        i.add_incoming(nxt, latch)
        for p, v in zip(accs, new):
            p.add_incoming(v, latch)
        br = b.branch(header)
        if scalar:
            br.set_metadata("llvm.loop", self.markers.scalar_loop())
        b.position_at_end(exit_bb)
        return accs

    # ---- values ----
    def _compute(self, slot: int, env: dict, address):
        """The value of `slot`, emitting loads/ops as needed; `address(j, dtype)` gives the
        element pointer of pointer operand j in the current loop (None outside loops)."""
        if slot in env:
            return env[slot]
        kir = self.kir
        if slot in self.memory_slots:
            j = next(k for k, (s, _) in enumerate(self.ptr_ops) if s == slot)
            dtype = kir.slot_dtype(slot)
            value = load_value(self.b, address(j, dtype), dtype, self.lanes)
        else:
            ins = kir.instrs[slot - self.n_in]
            if ins.is_const:
                value = self.sb.const(np.asarray(ins.attrs["value"]).item(), ins.dtype)
            else:
                args = [self._compute(a, env, address) for a in ins.args]
                op_def = get_op_def(ins.op)
                # a fused reshape only re-labels a per-row value: the scalar is unchanged
                value = args[0] if op_def.kind is OpKind.INJECTIVE else op_def.scalar(self.sb, *args, **ins.attrs)
                if (isinstance(value, ir.Instruction) and value.opname == "fdiv" and ins.form == FULL
                        and kir.slot_form(ins.args[-1]) in ROW_FORMS):
                    # a per-row divisor: LLVM may hoist its reciprocal out of the column loop
                    # (<= 1 ulp from the exact quotient; vdivps per element costs more than the row)
                    value.flags.append("arcp")
                if slot in self.nonpositive:
                    self.sb.assume_nonpositive(value)
        env[slot] = value
        return value

    def _flags_nan(self, i: int) -> bool:
        """Whether reduction i is a float max/min accumulated by `_minmax_step` with a separate
        NaN flag (row kernels: the flag and the plain compare-select vectorize to one vmaxps
        and one vcmpunordps per vector, where llvm.maximum's NaN and signed-zero handling cost
        six dependent instructions per vector on the accumulator's chain)."""
        ins = self.kir.instrs[i]
        return REDUCERS[ins.op].combine in ("max", "min") and np.dtype(ins.dtype).kind == "f"

    def _minmax_step(self, combine: str, acc, x):
        """acc = max(acc, x) (or min) ignoring NaN and the sign of zero: the flags tell LLVM so,
        which makes the compare-select a vectorizable reduction; a NaN x is accounted for by
        the NaN flag (the result is replaced by NaN after the loop), a tie of zeros may give
        either zero (numpy's max picks one by position, equal in value)."""
        fmf = ("nnan", "nsz")
        better = self.b.fcmp_ordered(">" if combine == "max" else "<", x, acc, flags=fmf)
        return self.b.select(better, x, acc, flags=fmf)

    def _reduce_step(self, reducer, acc, x):
        if reducer.combine == "add":
            return self.b.fadd(acc, x, flags=_FLOAT_FLAGS)
        if reducer.combine == "mul":
            return self.b.fmul(acc, x, flags=_FLOAT_FLAGS)
        # llvm.maximum/minimum propagate NaN like numpy and vectorize as reductions
        return call_intrinsic(self.b, {"max": "maximum", "min": "minimum"}[reducer.combine], acc, x)

    def _column_loops(self, lo, hi, bases: list, col_strides: list, init: list, body, name):
        """Emit the unit-stride and the strided version of one column loop; returns the accs."""
        b = self.b
        full = [j for j, (_, f) in enumerate(self.ptr_ops) if f in _PER_ELEMENT]
        if not full:
            return self._loop(lo, hi, init, lambda c, accs: body(c, accs, self._addr(bases, None, c)), name)
        unit = self._all_unit(full, col_strides)
        unit_bb = self.fn.append_basic_block(f"{name}.unit")
        strided_bb = self.fn.append_basic_block(f"{name}.strided")
        join_bb = self.fn.append_basic_block(f"{name}.join")
        b.cbranch(unit, unit_bb, strided_bb)
        results = []
        for bb, strides in ((unit_bb, None), (strided_bb, col_strides)):
            b.position_at_end(bb)
            accs = self._loop(lo, hi, init, lambda c, accs, s=strides: body(c, accs, self._addr(bases, s, c)),
                              f"{name}.{'u' if strides is None else 's'}", scalar=strides is not None)
            results.append((list(accs), b.block))
            b.branch(join_bb)
        b.position_at_end(join_bb)
        merged = []
        for k, v in enumerate(init):
            p = b.phi(v.type)
            for accs, blk in results:
                p.add_incoming(accs[k], blk)
            merged.append(p)
        return merged

    def _store(self, value, ptr) -> None:
        if not self.streaming:
            store_value(self.b, value, ptr)
            return
        st = self.b.store(value, ptr, align=STREAM_ALIGN)
        st.set_metadata("nontemporal", self.markers.nontemporal)

    def _streaming_or_column_loops(self, lo, hi, bases, col_strides, body, flag, first_out) -> None:
        """The elementwise output loop with a streaming version: when the run-time flag is set,
        every operand has unit stride and all outputs share their alignment, peel scalar
        elements up to a 64-byte boundary of the outputs, then run an explicit-vector loop
        with aligned non-temporal stores, then the scalar tail (the kernel ends with a fence:
        streaming stores are weakly ordered). Otherwise the ordinary column loops."""
        b, kir = self.b, self.kir
        full = [j for j, (_, f) in enumerate(self.ptr_ops) if f in _PER_ELEMENT]
        outs = [first_out + k for k, s in enumerate(kir.outputs) if kir.slot_form(s) == FULL]
        item = max(np.dtype(kir.slot_dtype(self.ptr_ops[j][0])).itemsize for j in outs)
        lanes = STREAM_ALIGN // item

        def phase(j):
            dtype = kir.slot_dtype(self.ptr_ops[j][0])
            addr = b.ptrtoint(element_pointer(b, bases[j], dtype, lo), I64)
            return b.and_(addr, self._i64(STREAM_ALIGN - 1))

        first = phase(outs[0])
        cond = b.and_(flag, self._all_unit(full, col_strides))
        cond = b.and_(cond, b.icmp_signed("==", b.urem(first, self._i64(item)), self._i64(0)))
        for j in outs[1:]:
            cond = b.and_(cond, b.icmp_signed("==", phase(j), first))
        stream_bb = self.fn.append_basic_block("out.stream")
        normal_bb = self.fn.append_basic_block("out.normal")
        join_bb = self.fn.append_basic_block("out.done")
        b.cbranch(cond, stream_bb, normal_bb)
        b.position_at_end(normal_bb)
        self._column_loops(lo, hi, bases, col_strides, [], body, "out")
        b.branch(join_bb)
        b.position_at_end(stream_bb)
        peel = b.udiv(b.and_(b.sub(self._i64(STREAM_ALIGN), first), self._i64(STREAM_ALIGN - 1)), self._i64(item))
        start = b.add(lo, peel)
        start = b.select(b.icmp_signed("<", start, hi), start, hi)
        span = b.sub(hi, start)
        vec_end = b.add(start, b.sub(span, b.srem(span, self._i64(lanes))))
        unit = lambda c, accs: body(c, accs, self._addr(bases, None, c))   # noqa: E731
        self._loop(lo, start, [], unit, "out.peel", scalar=True)
        self.lanes, self.streaming = lanes, True
        self._loop(start, vec_end, [], unit, "out.nt", scalar=True, step=lanes, cold=False)
        self.lanes, self.streaming = None, False
        self._loop(vec_end, hi, [], unit, "out.tail", scalar=True)
        b.branch(join_bb)
        b.position_at_end(join_bb)

    def _all_unit(self, full, col_strides):
        b = self.b
        cond = b.icmp_signed("==", col_strides[full[0]], self._i64(1))
        for j in full[1:]:
            cond = b.and_(cond, b.icmp_signed("==", col_strides[j], self._i64(1)))
        return cond

    def _addr(self, bases, strides, c):
        """address(j, dtype) for column c: unit stride when `strides` is None."""
        def address(j, dtype):
            if j < len(self.ptr_ops) and self.ptr_ops[j][1] not in _PER_ELEMENT:
                return bases[j]
            idx = c if strides is None else self.b.mul(c, strides[j])
            return element_pointer(self.b, bases[j], dtype, idx)
        return address

    # ---- the kernel ----
    def _args(self):
        """(r0, r1, c0, c1, dims, cols, per-operand strides, column strides, pointers)."""
        r0, r1, c0, c1, dims_p, strides_p = self.fn.args[:6]
        ptrs = self.fn.args[6:]
        ro = self.ro
        dims = [self._load_i64(dims_p, d) for d in range(ro + 1)]
        st = [[self._load_i64(strides_p, j * (ro + 1) + d) for d in range(ro + 1)] for j in range(len(ptrs))]
        return r0, r1, c0, c1, dims, dims[ro], st, [s[ro] for s in st], ptrs

    def _ptr_index(self, slot: int) -> int:
        return next(k for k, (s, _) in enumerate(self.ptr_ops) if s == slot)

    def _reduction_init(self, idx: list) -> list:
        """Initial accumulators of reductions `idx`, then a NaN flag per float max/min."""
        kir = self.kir
        init = [self.sb.const(-0.0 if REDUCERS[kir.instrs[i].op].combine == "add"
                              else REDUCERS[kir.instrs[i].op].identity, kir.instrs[i].dtype) for i in idx]
        return init + [ir.Constant(_NAN_FLAG, 0)] * sum(1 for i in idx if self._flags_nan(i))

    def _reduction_step(self, idx: list, accs: list, env: dict, address) -> list:
        """One column's update of the accumulators of reductions `idx` (layout of `_reduction_init`)."""
        b, kir = self.b, self.kir
        flagged = [i for i in idx if self._flags_nan(i)]
        new, flags = [], list(accs[len(idx):])
        for i, acc in zip(idx, accs):
            x = self._compute(kir.instrs[i].args[0], env, address)
            if i in flagged:
                k = flagged.index(i)
                new.append(self._minmax_step(REDUCERS[kir.instrs[i].op].combine, acc, x))
                flags[k] = b.or_(flags[k], b.sext(b.fcmp_unordered("uno", x, x), flags[k].type))
            else:
                new.append(self._reduce_step(REDUCERS[kir.instrs[i].op], acc, x))
        return new + flags

    def _reduction_result(self, idx: list, accs: list, cols) -> list:
        """The values of reductions `idx` from their final accumulators: NaN where a float
        max/min saw one (and, in a kernel running its first stage ahead, a zero of either sign
        as +0: which zero a tie gives depends on the loop), sums divided by the count for means."""
        b, kir = self.b, self.kir
        flagged = [i for i in idx if self._flags_nan(i)]
        out = []
        for i, acc in zip(idx, accs):
            if i in flagged:
                flag = accs[len(idx) + flagged.index(i)]
                if self.ahead_j is not None:
                    acc = b.fadd(acc, self.sb.const(0.0, kir.instrs[i].dtype))   # -0 -> +0
                nan = self.sb.const(float("nan"), kir.instrs[i].dtype)
                acc = b.select(b.icmp_unsigned("!=", flag, ir.Constant(_NAN_FLAG, 0)), nan, acc)
            if REDUCERS[kir.instrs[i].op].mean:
                acc = b.fdiv(acc, b.sitofp(cols, acc.type))
            out.append(acc)
        return out

    def _row_values(self, env: dict, bases: list, stage: int) -> None:
        """Per-row values available after reduction `stage`: row operands, constants, and
        row-form instructions whose inputs are ready."""
        kir = self.kir
        for j, (slot, form) in enumerate(self.ptr_ops[:len(self.ptr_ops) - len(kir.outputs)]):
            if form in ROW_FORMS and slot not in env and slot < self.n_in:
                env[slot] = load_value(self.b, bases[j], kir.slot_dtype(slot))
        for i, ins in enumerate(kir.instrs):
            slot = self.n_in + i
            if (ins.form in ROW_FORMS and ins.op not in REDUCERS and slot not in env
                    and self.levels[slot] <= stage):
                self._compute(slot, env, None)

    def _row_bases(self, r, ptrs, dims, st) -> list:
        """Every pointer operand advanced to row r."""
        return [element_pointer(self.b, p, self.kir.slot_dtype(s), off)
                for p, (s, _f), off in zip(ptrs, self.ptr_ops, self._row_offsets(r, dims, st))]

    def _row_offsets(self, r, dims, st) -> list:
        """Element offset of row r in every pointer operand (outer strides times indices)."""
        b, ro = self.b, self.ro
        if ro == 0:
            return [self._i64(0)] * len(st)
        if ro == 1:
            return [b.mul(r, s[0]) for s in st]
        idx = []
        rem = r
        for d in reversed(range(ro)):
            idx.append((d, b.urem(rem, dims[d])))
            rem = b.udiv(rem, dims[d])
        offs = []
        for s in st:
            off = self._i64(0)
            for d, i in idx:
                off = b.add(off, b.mul(i, s[d]))
            offs.append(off)
        return offs


class LoopMarkers:
    """Loop-ID metadata for scalar loops. LLVM wants each loop ID to be a distinct node that
    lists itself first, which llvmlite cannot build: a named placeholder is emitted per loop
    and `finish` rewrites it in the module text."""

    _PLACEHOLDER = "graphflow.scalar_loop"

    def __init__(self, module: ir.Module):
        self.module = module
        self.count = 0
        self.nontemporal = module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        self.options = [module.add_metadata([ir.MetaDataString(module, "llvm.loop.vectorize.enable"),
                                             ir.Constant(ir.IntType(1), 0)]),
                        module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])]

    def scalar_loop(self):
        self.count += 1
        return self.module.add_metadata([ir.MetaDataString(self.module, f"{self._PLACEHOLDER}.{self.count}")])

    def finish(self, text: str) -> str:
        opts = ", ".join(o.get_reference() for o in self.options)
        pattern = re.compile(rf'^(!\d+) = !{{ ?!"{re.escape(self._PLACEHOLDER)}\.\d+" ?}}$', re.M)
        return pattern.sub(lambda m: f"{m.group(1)} = distinct !{{{m.group(1)}, {opts}}}", text)
