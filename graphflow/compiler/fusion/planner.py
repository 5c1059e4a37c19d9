"""Which ops fuse into which kernel: classification from the op registry, then greedy
producer-into-consumer merging (XLA's loop and input fusion, plus row kernels and
library epilogues), with legality checked on static shapes.

A group has a domain (static shape D, K reduced axes: trailing for row kernels, leading
for column kernels such as batch-norm moments). Merging a producer group
into a consumer group is legal when every member's result fits the merged domain (see
kernel_ir's forms), the union stays convex (no path leaves it and comes back), it holds at
most one library op, and the caps on members and operands hold. A member whose value is
needed outside its group is materialized as an extra output (never recomputed).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...ops.registry import OpKind
from ..program import const_value
from .epilogue import ROW_BLOCKED
from .kernel_ir import COL, DROP, FULL, REDUCERS, ROW, ROW_FORMS, UNIFORM

# Pure reshapes: inside a kernel they only re-label a per-row value (keepdims or not), so a
# Squeeze/ExpandDims between a reduction and its consumers does not split a row kernel.
RESHAPES = ("Reshape", "Squeeze", "ExpandDims")
INJECTIVE_REASON = "injective shape op (runs as a numpy view or copy between kernels)"

MAX_MEMBERS = 256     # ops per kernel: bounds LLVM compile time of one function
MAX_OPERANDS = 24     # inputs + outputs per kernel: bounds the call's argument list

_INPUT_FORMS = {FULL: (FULL, ROW, COL, UNIFORM), ROW: (ROW, UNIFORM), DROP: (DROP, UNIFORM), COL: (COL, UNIFORM),
                UNIFORM: (UNIFORM,)}
_SUPPORTED_DTYPES = {np.dtype(t) for t in ("float32", "float64", "int32", "int64", "bool")}


def is_unit(shape) -> bool:
    """Statically exactly one element."""
    return shape is not None and all(d == 1 for d in shape)


def fit(shape, domain, reduced, lead=False) -> str | None:
    """The form of a value of static `shape` in the domain, or None when it does not fit."""
    if shape is None:
        return None
    if shape == domain:
        return FULL
    if is_unit(shape) and len(shape) <= len(domain):
        return UNIFORM
    if reduced and lead:
        kept = domain[reduced:]
        return COL if shape in (kept, (1,) * reduced + kept) else None
    if reduced:
        keep = domain[:len(domain) - reduced]
        if shape == keep + (1,) * reduced:
            return ROW
        if shape == keep:
            return DROP
    return None


def inlinable_constant(node) -> bool:
    """A one-element constant: emitted as an immediate instead of a kernel operand."""
    value = const_value(node)
    return isinstance(value, np.ndarray) and value.size == 1 and value.dtype in _SUPPORTED_DTYPES


def reduced_run(axes, rank: int) -> tuple[int, bool] | None:
    """(K, lead) when `axes` (None: all) are exactly the trailing K axes (lead False) or
    the leading K < rank axes (lead True) of a rank-`rank` input; None otherwise."""
    axes = tuple(range(rank)) if axes is None else tuple(sorted(a % rank for a in axes))
    if not axes:
        return None
    if axes == tuple(range(rank - len(axes), rank)):
        return len(axes), False
    if axes == tuple(range(len(axes))):
        return len(axes), True
    return None


class Role(NamedTuple):
    """What the planner may do with one node: 'elementwise', 'reduction', 'library' or
    'reshape' (a per-row value changing between keepdims and reduced shape)."""

    kind: str
    domain: tuple
    reduced: int = 0
    lead: bool = False


def classify(node, program, targets: set) -> tuple[Role | None, str | None]:
    """(role, None) for a fusable node; (None, reason) for one that stays alone."""
    d = node.op_def
    if d.kind is OpKind.SOURCE:
        return None, "source op (nothing to compute: its value is an input of the kernels)"
    if d.stateful:
        return None, "has side effects"
    if node.id in targets:
        return None, "run as a target"
    if d.kind is OpKind.INJECTIVE:
        if node.op in RESHAPES and len(node.inputs) == 1 and node.specs[0].shape is not None:
            return Role("reshape", tuple(node.specs[0].shape)), None
        return None, INJECTIVE_REASON
    if d.kind is OpKind.OPAQUE:
        return None, f"opaque op {node.op} (no scalar program or row rule)"
    if len(node.specs) != 1:
        return None, "has several outputs"
    out = node.specs[0]
    in_specs = [program.spec(r) for r in node.inputs]
    if out.shape is None or any(s.shape is None for s in in_specs):
        return None, "unknown rank"
    if out.dtype not in _SUPPORTED_DTYPES or any(s.dtype not in _SUPPORTED_DTYPES for s in in_specs):
        return None, f"dtype {out.dtype} has no code generation"
    if d.kind is OpKind.ELEMENTWISE:
        if d.scalar is None:
            return None, f"elementwise op {node.op} has no scalar program"
        return Role("elementwise", tuple(out.shape)), None
    if d.kind is OpKind.REDUCTION:
        if node.op not in REDUCERS:
            return None, f"reduction {node.op} has no accumulation rule"
        (x,) = in_specs
        if x.dtype.kind != "f":
            return None, f"reduction over {x.dtype.name} (fused reductions are float-only)"
        run = reduced_run(node.attrs.get("axes"), len(x.shape))
        if run is None:
            return None, (f"reduces axes {node.attrs.get('axes')} of a rank-{len(x.shape)} input: only a "
                          "non-empty run of trailing (row kernel) or leading (column kernel) axes fuses")
        return Role("reduction", tuple(x.shape), *run), None
    if d.kind is OpKind.LIBRARY:
        blocked = ROW_BLOCKED.get(node.op)
        if blocked is None or not blocked.accepts([tuple(s.shape) for s in in_specs], tuple(out.shape)):
            return None, f"library op {node.op} with a rank-{len(out.shape)} result has no blocked epilogue"
        if out.dtype.kind != "f":
            return None, f"library op {node.op} on {out.dtype.name}: epilogues are float-only"
        return Role("library", tuple(out.shape)), None
    return None, f"op kind {d.kind.value} does not fuse"


class Group:
    """A set of node ids that will become one kernel, with what merging needs incrementally:
    each member's form, the refs it reads from outside, the members it exports, and the
    topological position of its last member. (A plain class: one is made per fusable node.)"""

    __slots__ = ("members", "domain", "reduced", "lead", "library", "forms", "ext", "exports", "last")

    def __init__(self, members: set, domain: tuple, reduced: int, lead: bool, library: int | None, forms: dict,
                 ext: set, exports: set, last: int):
        self.members = members
        self.domain = domain
        self.reduced = reduced
        self.lead = lead
        self.library = library
        self.forms = forms
        self.ext = ext
        self.exports = exports
        self.last = last


class Planner:
    """Greedy fusion over a Program in topological order."""

    def __init__(self, program, keep_lifetimes: bool = False):
        """`keep_lifetimes`: never merge groups when that would compute a member before an
        outside reader of the group runs (see `_hoists`); the runtime asks for it when the
        default plan would peak above the unfused one."""
        self.program = program
        self.keep_lifetimes = keep_lifetimes
        self.pos = {n.id: i for i, n in enumerate(program.nodes)}
        self.succ: dict[int, list[int]] = {n.id: [] for n in program.nodes}
        for n in program.nodes:
            for r in n.inputs:
                self.succ[r[0]].append(n.id)
            for c in n.control:
                self.succ[c].append(n.id)
        self.output_ids = {r[0] for r in program.outputs}
        self.roles: dict[int, Role] = {}
        self.unfused: dict[str, str] = {}
        targets = set(program.targets)
        for n in program.nodes:
            role, reason = classify(n, program, targets)
            if role is None:
                self.unfused[n.name] = reason
            else:
                self.roles[n.id] = role
        self.group_of: dict[int, Group] = {}
        self.cap_events: list = []

    def plan(self) -> list[Group]:
        roles, group_of, node = self.roles, self.group_of, self.program.node
        for n in self.program.nodes:
            role = roles.get(n.id)
            if role is None:
                continue
            ext = {r for r in n.inputs if not inlinable_constant(node(r[0]))}
            exports = {n.id} if (self.succ[n.id] or n.id in self.output_ids) else set()
            form = fit(tuple(n.specs[0].shape), role.domain, role.reduced, role.lead)
            group_of[n.id] = Group({n.id}, role.domain, role.reduced, role.lead,
                                   n.id if role.kind == "library" else None, {n.id: form}, ext, exports, self.pos[n.id])
            producers = [r[0] for r in n.inputs if r[0] in roles]
            for p in (dict.fromkeys(producers) if len(producers) > 1 else producers):
                self._try_merge(group_of[p], group_of[n.id])
        self._join_lone_reshapes()
        groups = list({id(g): g for g in self.group_of.values()}.values())
        kept = []
        for g in groups:
            lone = g.library is not None and len(g.members) == 1
            if lone and not ROW_BLOCKED[self.program.node(g.library).op].alone:
                node = self.program.node(g.library)
                self.unfused[node.name] = "library op with no elementwise consumer to fuse into its epilogue"
            elif all(self.roles[m].kind == "reshape" for m in g.members):
                self.unfused.update((self.program.node(m).name, INJECTIVE_REASON) for m in g.members)
            else:
                kept.append(g)
        kept.sort(key=lambda g: g.last)
        return kept

    def _join_lone_reshapes(self) -> None:
        """Merge each group of nothing but reshapes into its consumers' groups, now that
        their domains are known. When its consumer was first visited, that consumer's group
        was still elementwise (N, C), where a per-row (N, 1) value does not fit; the rows of
        the reduction that joined it later take it. Left alone, the reshape runs as a Python
        kernel between two compiled ones: W5's step had three. The label's expand_dims before
        the pick of its logit now joins; the two in the loss's gradient feed the bias
        gradient's column kernel, which has no form for a per-row value, and stay."""
        group_of, roles = self.group_of, self.roles
        for n in self.program.nodes:
            g = group_of.get(n.id)
            if g is None or not all(roles[m].kind == "reshape" for m in g.members):
                continue
            for c in self.succ[n.id]:
                if c in group_of:
                    self._try_merge(group_of[n.id], group_of[c])

    # ---- legality ----
    def _domain(self, a: Group, b: Group):
        if a.library is not None and b.library is not None:
            return None
        if a.reduced and b.reduced:
            if (a.domain, a.reduced, a.lead) != (b.domain, b.reduced, b.lead):
                return None
            return b.domain, b.reduced, b.lead
        if a.reduced or b.reduced:
            g = a if a.reduced else b
            if g.lead and (a.library is not None or b.library is not None):
                return None
            return g.domain, g.reduced, g.lead
        if a.library is not None or b.library is not None:
            g = a if a.library is not None else b
            return g.domain, 0, False
        return b.domain, 0, False

    def _member_ok(self, m: int, form: str, form_of, inside, domain, reduced, lead) -> bool:
        """Whether member m with result form `form` fits, given its in-group inputs' forms."""
        node = self.program.node(m)
        role = self.roles[m]
        if role.kind == "reduction":
            return ((role.domain, role.reduced, role.lead) == (domain, reduced, lead) and form != FULL
                    and all(form_of(r[0]) == FULL for r in node.inputs if inside(r[0])))
        if role.kind == "library":
            return form == FULL and reduced <= 1 and not any(inside(r[0]) for r in node.inputs)
        if role.kind == "reshape":
            allowed = (FULL,) if form == FULL else ROW_FORMS + (COL,)
            return all((form_of(r[0]) if inside(r[0]) else
                        fit(tuple(self.program.spec(r).shape), domain, reduced, lead)) in allowed
                       for r in node.inputs)
        allowed = _INPUT_FORMS[form]
        return all(form_of(r[0]) in allowed for r in node.inputs if inside(r[0]))

    def _forms(self, members, domain, reduced, lead):
        """member id -> form for a whole candidate group, or None when some member does not fit."""
        forms = {}
        for m in members:
            f = fit(tuple(self.program.node(m).specs[0].shape), domain, reduced, lead)
            if f is None:
                return None
            forms[m] = f
        for m in members:
            if not self._member_ok(m, forms[m], forms.get, forms.__contains__, domain, reduced, lead):
                return None
        return forms

    def _merged_forms(self, a: Group, b: Group, domain, reduced, lead):
        """Forms of a | b, as (forms, added): the union's forms are `forms` updated with
        `added` (None when `forms` is already the whole union). When neither domain changes,
        only the edges between the two groups need checking (the smaller group's side), and
        the bigger group's forms are kept as they are, which keeps long chains linear."""
        dom = (domain, reduced, lead)
        if (a.domain, a.reduced, a.lead) != dom or (b.domain, b.reduced, b.lead) != dom:
            forms = self._forms(a.members | b.members, *dom)
            return None if forms is None else (forms, None)
        small, big = _by_size(a, b)

        def form_of(x):
            return small.forms.get(x) or big.forms.get(x)

        def inside(x):
            return x in small.members or x in big.members

        for m in small.members:
            if not self._member_ok(m, small.forms[m], form_of, inside, *dom):
                return None
            for c in self.succ[m]:
                if c in big.members and not self._member_ok(c, big.forms[c], form_of, inside, *dom):
                    return None
        return big.forms, small.forms

    def _creates_cycle(self, a: Group, b: Group) -> bool:
        """True when a path leaves a | b and comes back (the union would not be convex).

        The walk runs over groups, not nodes: reaching any member of an outside group
        continues from all its members, because that group becomes one kernel too (a -> x,
        y -> b with x and y in one other group is a cycle between kernels even though no
        path of nodes joins x to y)."""
        def inside(x):
            return x in a.members or x in b.members

        limit = max(a.last, b.last)
        am, bm, pos, succ = a.members, b.members, self.pos, self.succ
        stack = [c for m in a.exports | b.exports for c in succ[m] if c not in am and c not in bm and pos[c] < limit]
        if not stack:   # (the usual case: nothing leaves the union before its end)
            return False
        seen = set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            group = self.group_of.get(x)
            for y in (group.members if group is not None else (x,)):
                seen.add(y)
                for c in self.succ[y]:
                    if inside(c):
                        return True
                    if self.pos[c] < limit and c not in seen:
                        stack.append(c)
        return False

    def _hoists(self, exports, inside, last: int) -> bool:
        """True when an outside op reads a member's value before the union's last member: the
        kernel would then run before that reader, computing the later members early and
        keeping their results (and the inputs they read) alive longer than the unfused plan
        does, which can raise its peak memory (a ReLU's gradient mask fused into the forward
        ReLU lives through the whole backward pass)."""
        return any(self.pos[c] < last and not inside(c) for m in exports for c in self.succ[m])

    def _try_merge(self, a: Group, b: Group) -> None:
        if a is b:
            return
        dom = self._domain(a, b)
        if dom is None:
            return
        merged = self._merged_forms(a, b, *dom)
        if merged is None or self._creates_cycle(a, b):
            return

        def inside(x):
            return x in a.members or x in b.members

        am, bm, succ, fetched = a.members, b.members, self.succ, self.output_ids
        ext = {r for r in a.ext | b.ext if r[0] not in am and r[0] not in bm}
        exports = set()
        for m in a.exports | b.exports:
            if m in fetched:
                exports.add(m)
                continue
            for c in succ[m]:
                if c not in am and c not in bm:
                    exports.add(m)
                    break
        if self.keep_lifetimes and self._hoists(exports, inside, max(a.last, b.last)):
            return
        size = len(a.members) + len(b.members)
        if size > MAX_MEMBERS or len(ext) + len(exports) > MAX_OPERANDS:
            last = max(b.members, key=self.pos.get)
            why = (f"group-size cap {MAX_MEMBERS} reached" if size > MAX_MEMBERS
                   else f"operand cap {MAX_OPERANDS} reached")
            self.cap_events.append(([self.program.node(last).name], why))
            return
        small, big = _by_size(a, b)
        forms, added = merged
        if added is not None:   # forms is big.forms (same domain): extended in place
            forms.update(added)
        big.members |= small.members
        big.domain, big.reduced, big.lead = dom
        big.library = a.library if a.library is not None else b.library
        big.forms, big.ext, big.exports = forms, ext, exports
        big.last = max(a.last, b.last)
        for m in small.members:
            self.group_of[m] = big


def _by_size(a: Group, b: Group) -> tuple[Group, Group]:
    """(smaller, bigger) of two groups; `a` first on a tie (merging keeps the bigger object)."""
    return (a, b) if len(a.members) <= len(b.members) else (b, a)
