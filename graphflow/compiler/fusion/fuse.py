"""The `fuse` pass (opt_level 2): plan kernels, compile them all in one LLVM module, and
replace each group of nodes by one `Fused` node.

The report gets one entry per kernel (members, inputs, outputs, kind, vectorized: whether
its assembly uses packed vector instructions), a reason for every op left unfused, the
caps that fired, and the module's IR. GRAPHFLOW_DEBUG=2 prints each kernel's
description, 3 also the LLVM IR.
"""
from __future__ import annotations

import heapq
import os
import re
import sys
import time

from ...errors import InternalError
from ..program import FEED, Node, Program
from ..report import Report
from .fused_op import FusedKernel
from .jit_kernels import compile_kernels
from .kernel_ir import DROP, FULL, LIB, ROW, UNIFORM, Instr, KernelIR, Operand
from .planner import Group, Planner, fit, inlinable_constant, is_unit


class _Plan:
    """The fusion plan of one program (the main one or a gf.cond branch)."""

    def __init__(self, program: Program, first_index: int, keep_lifetimes: bool = False):
        self.program = program
        self.planner = Planner(program, keep_lifetimes)
        self.groups = self.planner.plan()
        self.kernels, self.exports = [], []
        for i, g in enumerate(self.groups):
            kir, export = build_kernel_ir(g, self.planner, _kernel_name(first_index + i, program, g, self.planner))
            k = FusedKernel(kir)
            k.static_specs = tuple(program.node(m).specs[0] for m in export)
            self.kernels.append(k)
            self.exports.append(export)


def _plans(program: Program, plans: list, keep_lifetimes: bool) -> None:
    """Plan `program` and, depth first, the branch programs of its gf.cond nodes."""
    for n in program.nodes:
        if n.op_def.extra.get("has_branches"):
            for branch in n.attrs["branches"]:
                _plans(branch, plans, keep_lifetimes)
    plans.append(_Plan(program, sum(len(p.kernels) for p in plans), keep_lifetimes))


def fuse(program: Program, report: Report, keep_lifetimes: bool = False) -> Program:
    """Replace fusable groups of `program` (and of its gf.cond branches) by Fused nodes whose
    kernels are compiled together in one LLVM module. `keep_lifetimes`: no merge that
    computes a member early (the planner's `_hoists`), for plans that must not raise peak memory."""
    plans: list[_Plan] = []
    _plans(program, plans, keep_lifetimes)
    kernels = [k for p in plans for k in p.kernels]
    debug = os.environ.get("GRAPHFLOW_DEBUG", "0")
    if kernels and debug in ("2", "3"):
        print("\n".join(k.ir.describe() for k in kernels), file=sys.stderr)
    if kernels:
        t0 = time.perf_counter()
        report.llvm_ir = compile_kernels(kernels, report)
        if debug == "3":
            print(report.llvm_ir, file=sys.stderr)
        report.stage_seconds["codegen"] = report.stage_seconds.get("codegen", 0.0) + time.perf_counter() - t0
    rewritten: dict = {}
    for p in plans:   # branches come before the programs holding them
        out = _rewrite(_with_branches(p.program, rewritten), p.groups, p.kernels, p.exports, p.planner)
        rewritten[id(p.program)] = out
        live = {n.name for n in out.nodes if n.op != FEED}
        for name, why in p.planner.unfused.items():
            if name in live:
                report.unfused[name] = why
        for names, why in p.planner.cap_events:
            report.record("fuse", "capped", names, why)
        for k in p.kernels:
            report.record("fuse", "fused", k.members, f"into {k.name} ({k.kind})")
            report.kernels.append({"name": k.name, "members": list(k.members),
                                   "inputs": [o.name for o in k.ir.inputs],
                                   "outputs": list(k.ir.output_names), "vectorized": k.vectorized, "kind": k.kind})
    return rewritten[id(program)]


def _with_branches(program: Program, rewritten: dict) -> Program:
    """`program` with its gf.cond nodes holding the fused versions of their branches."""
    if not any(id(b) in rewritten for n in program.nodes if n.op_def.extra.get("has_branches")
               for b in n.attrs["branches"]):
        return program
    nodes = [n.with_(attrs=dict(n.attrs, branches=tuple(rewritten.get(id(b), b) for b in n.attrs["branches"])))
             if n.op_def.extra.get("has_branches") else n for n in program.nodes]
    return program.with_nodes(nodes)


def _kernel_name(i: int, program: Program, g: Group, planner: Planner) -> str:
    last = max(g.members, key=planner.pos.get)
    return f"fused_{i}_" + re.sub(r"\W", "_", program.node(last).name)[-40:]


def tensor_name(program: Program, ref) -> str:
    node = program.node(ref[0])
    return node.name if node.op == FEED else f"{node.name}:{ref[1]}"


def _operand_form(shape, consumer_form: str, g: Group, role: str) -> str:
    """How an input is walked: a reshape's input by its own shape; consumers of row values
    in reduced shape align it left (DROP); otherwise it is right-aligned, one value per row
    when its reduced axes are all 1."""
    reduced = g.reduced
    if role == "library":
        return LIB
    if role == "reshape":
        return fit(shape, g.domain, reduced, g.lead)
    if is_unit(shape):
        return UNIFORM
    if consumer_form == DROP:
        return DROP
    if reduced and not g.lead and all(d == 1 for d in shape[-reduced:]):
        return ROW
    last = g.domain[-1] if g.domain else None
    if not reduced and shape and shape[-1] == 1 and isinstance(last, int) and last > 1:
        # constant along the (merged) column axis whatever the run-time sizes: loaded once per
        # row, so the column loop keeps unit strides and vectorizes
        return ROW
    return FULL


def build_kernel_ir(g: Group, planner: Planner, name: str) -> tuple[KernelIR, list[int]]:
    """The KernelIR of group `g`, and the member ids whose values it exports (in order).

    One sweep over the members in order: each member's one-element constant inputs become
    Const instructions just before it, its other outside inputs operands (numbered in
    first-use order). Instruction slots follow the operands, so an instruction argument is
    recorded as ~(instruction index) until the operand count is known."""
    program, roles, node_of = planner.program, planner.roles, planner.program.node
    members = sorted(g.members, key=planner.pos.get)
    inside, forms = g.members, g.forms
    operands: dict = {}
    operand_list: list[Operand] = []
    pending: list = []          # Instr fields, args not yet numbered
    instr_of: dict = {}         # member id -> its instruction's index
    for m in members:
        node = node_of(m)
        role = roles[m].kind
        inline = role != "library"    # the library reads arrays, never immediates
        args = []
        for r in node.inputs:
            if r[0] in inside:
                args.append(~instr_of[r[0]])
                continue
            p = node_of(r[0])
            if inline and inlinable_constant(p):
                value = p.attrs["value"]
                pending.append(["Const", p.name, (), {"value": value.reshape(())}, value.dtype, UNIFORM,
                                tuple(value.shape)])
                args.append(~(len(pending) - 1))
                continue
            spec = p.specs[r[1]]
            form = _operand_form(tuple(spec.shape), forms[m], g, role)
            k = operands.get((r, form))
            if k is None:
                k = operands[(r, form)] = len(operand_list)
                operand_list.append(Operand(r, tensor_name(program, r), form, spec.dtype, tuple(spec.shape)))
            args.append(k)
        spec = node.specs[0]
        instr_of[m] = len(pending)
        pending.append([node.op, node.name, args, dict(node.attrs), spec.dtype, forms[m], tuple(spec.shape)])
    n_in = len(operand_list)
    for fields in pending:
        fields[2] = tuple([a if a >= 0 else n_in + ~a for a in fields[2]])
    instrs = tuple([Instr(*fields) for fields in pending])
    export = sorted(g.exports, key=planner.pos.get)   # the members read outside the group, or fetched
    has_red = any(roles[m].kind == "reduction" for m in members)
    if g.library is not None:
        kind = "epilogue"
    elif has_red and any(forms[m] == FULL for m in members):
        kind = "row"
    elif has_red:
        kind = "reduction"
    else:
        kind = "elementwise"
    kir = KernelIR(name, kind, len(g.domain), g.reduced, g.lead, tuple(operand_list), instrs,
                   tuple(n_in + instr_of[m] for m in export), tuple(tensor_name(program, (m, 0)) for m in export),
                   tuple(node_of(m).name for m in members))
    return kir, export


def _rewrite(program: Program, groups, kernels, exports, planner: Planner) -> Program:
    """The program with each group replaced by its Fused node, re-sorted topologically."""
    next_id = max((n.id for n in program.nodes), default=-1) + 1
    remap: dict = {}
    fused_at: dict = {}
    member_of: dict = {}
    for i, (g, k, export) in enumerate(zip(groups, kernels, exports)):
        fid = next_id + i
        for j, m in enumerate(export):
            remap[(m, 0)] = (fid, j)
        for m in g.members:
            member_of[m] = i
        last = max(g.members, key=planner.pos.get)
        fused_at[last] = Node(fid, "Fused", tuple(o.ref for o in k.ir.inputs), {"kernel": k}, k.static_specs,
                              k.name, source=program.node(last).source)
    fused_id = {m: next_id + i for m, i in member_of.items()}

    def control_of(ids, own=None):
        """Control dependencies on members become dependencies on their Fused node."""
        return tuple(dict.fromkeys(c2 for c2 in (fused_id.get(c, c) for c in ids) if c2 != own))

    for i, g in enumerate(groups):
        last = max(g.members, key=planner.pos.get)
        ctl = [c for m in sorted(g.members, key=planner.pos.get) for c in program.node(m).control]
        fused_at[last] = fused_at[last].with_(control=control_of(ctl, next_id + i))
    nodes = []
    for n in program.nodes:
        if n.id in fused_at:
            nodes.append(fused_at[n.id])
        elif n.id not in member_of:
            nodes.append(n.with_(control=control_of(n.control)) if n.control else n)
    nodes = [n.with_(inputs=tuple(remap.get(r, r) for r in n.inputs)) for n in nodes]
    outputs = tuple(remap.get(r, r) for r in program.outputs)
    targets = tuple(dict.fromkeys(fused_id.get(t, t) for t in program.targets))
    used = {r[0] for n in nodes for r in n.inputs} | {r[0] for r in outputs} | set(targets)
    used |= {c for n in nodes for c in n.control}
    nodes = [n for n in nodes if n.id in used or not inlinable_constant(n)]
    return program.with_nodes(_toposort(nodes), outputs=outputs, targets=targets)


def _toposort(nodes: list[Node]) -> list[Node]:
    """Stable topological order (Kahn's algorithm, earliest original position first)."""
    pos = {n.id: i for i, n in enumerate(nodes)}
    deps = {n.id: {r[0] for r in n.inputs} | set(n.control) for n in nodes}
    users: dict = {}
    for nid, ds in deps.items():
        for d in ds:
            users.setdefault(d, []).append(nid)
    ready = [pos[nid] for nid, ds in deps.items() if not ds]
    heapq.heapify(ready)
    order = []
    waiting = {nid: len(ds) for nid, ds in deps.items()}
    while ready:
        n = nodes[heapq.heappop(ready)]
        order.append(n)
        for u in users.get(n.id, ()):
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, pos[u])
    if len(order) != len(nodes):
        raise InternalError("fuse: the rewritten program has a cycle")
    return order
