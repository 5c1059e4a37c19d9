"""`gf.cond` with TF1 semantics: only the taken branch is evaluated.

Ops built inside a branch function are recorded in that branch's context. They stay in
the user's graph (so they can be named and inspected), but lowering leaves them out of the
main program: the Cond op carries each branch as a sub-program over its captured inputs,
and the runtime runs only the branch the predicate selects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes as _dt
from ..graph import Operation, Tensor
from .array_ops import constant
from .build import convert_to_tensor
from .registry import OpDef, OpKind, TensorSpec, register


@dataclass(eq=False)
class CondBranch:
    """The ops one branch function built, and what the branch returns."""

    parent: "CondBranch | None"
    ops: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    captures: list = field(default_factory=list)

    def encloses(self, context) -> bool:
        while context is not None:
            if context is self:
                return True
            context = context.parent
        return False


def is_visible_from(op: Operation, context) -> bool:
    """True when `op` runs outside `context` (in it or in one of its enclosing scopes)."""
    c = op.cond_context
    return c is None or (context is not None and c.encloses(context))


def branch_closure(outputs, parent):
    """Walk back from `outputs`: the ops a branch must run (in graph order), the outer
    tensors it captures and the outer ops it has control dependencies on."""
    inside: dict[int, Operation] = {}
    captures: list[Tensor] = []
    seen_caps: set = set()
    control: list[Operation] = []
    stack = [t.op for t in outputs if not _captured(t, parent, captures, seen_caps)]
    while stack:
        op = stack.pop()
        if op._id in inside:
            continue
        inside[op._id] = op
        for t in op.inputs:
            if not _captured(t, parent, captures, seen_caps):
                stack.append(t.op)
        for c in op.control_inputs:
            if is_visible_from(c, parent):
                if c not in control:
                    control.append(c)
            else:
                stack.append(c)
    return [inside[k] for k in sorted(inside)], captures, control


def _captured(t: Tensor, parent, captures, seen) -> bool:
    if is_visible_from(t.op, parent):
        if t not in seen:
            seen.add(t)
            captures.append(t)
        return True
    return False


def _cond_infer(specs, attrs):
    pred = specs[0]
    if pred.dtype != _dt.bool or (pred.shape is not None and len(pred.shape) != 0):
        raise ValueError(f"the predicate must be a scalar bool, got {pred.dtype.name} of shape {pred.shape}")
    return tuple(attrs["out_specs"])


def _cond_kernel(state, pred, *captured, branches, n_true, **_):
    branch = branches[0] if bool(pred) else branches[1]
    values = captured[:n_true] if bool(pred) else captured[n_true:]
    return tuple(state.run_program(branch, values))


def _cond_grad(op, *dys):
    from ..gradients import gradients
    from .math_api import zeros_like

    pred = op.inputs[0]
    n_true = op.attrs["n_true"]
    tb, fb = op.attrs["graph_branches"]
    caps = list(op.inputs[1:])
    float_idx = [i for i, c in enumerate(caps) if c.dtype.kind == "f"]
    live = [i for i, d in enumerate(dys) if d is not None]
    if not float_idx or not live:
        return [None] * len(op.inputs)
    xs = [caps[i] for i in float_idx]

    def grad_fn(branch, lo, hi):
        def fn():
            ys = [branch.outputs[i] for i in live]
            gs = gradients(ys, xs, grad_ys=[dys[i] for i in live])
            return [g if g is not None and lo <= i < hi else zeros_like(x)
                    for i, g, x in zip(float_idx, gs, xs)]
        return fn

    grads = cond(pred, grad_fn(tb, 0, n_true), grad_fn(fb, n_true, len(caps)))
    if isinstance(grads, Tensor):
        grads = [grads]
    out = [None] * len(op.inputs)
    for i, g in zip(float_idx, grads):
        out[1 + i] = g
    return out


register(OpDef(type="Cond", default_name="cond", infer=_cond_infer, kernel=_cond_kernel, grad=_cond_grad,
               kind=OpKind.OPAQUE, stateful=True, extra={"has_branches": True, "writes_variables": True}))


def _flatten(result, what):
    if result is None:
        return [], "none"
    if isinstance(result, (list, tuple)):
        return list(result), type(result).__name__
    if isinstance(result, dict):  # as TF1's nest: values in sorted key order
        keys = tuple(sorted(result))
        return [result[k] for k in keys], ("dict", keys)
    return [result], "single"


def cond(pred, true_fn, false_fn, name=None):
    """Run `true_fn`'s ops if `pred` is true at run time, else `false_fn`'s; returns the
    chosen branch's outputs. Both functions must return the same structure and dtypes."""
    if not callable(true_fn) or not callable(false_fn):
        raise TypeError("cond: true_fn and false_fn must be callables that build each branch")
    pred = convert_to_tensor(pred)
    g = pred.graph
    parent = g.current_cond_context
    with g.name_scope(name or "cond"):
        branches = []
        for label, fn in (("true", true_fn), ("false", false_fn)):
            branch = CondBranch(parent)
            with g._cond_branch(branch), g.name_scope(label):
                result = fn()
                if isinstance(result, Operation):  # run for its effects (TF1: a train op or no_op)
                    with g.control_dependencies([result]):
                        outs, kind = [constant(True, name="done")], "op"
                else:
                    outs, kind = _flatten(result, label)
                with g.control_dependencies(None):
                    branch.outputs = [convert_to_tensor(o) for o in outs]
            branches.append((branch, kind))
        (tb, tkind), (fb, fkind) = branches
        if len(tb.outputs) != len(fb.outputs) or tkind != fkind:
            raise ValueError(f"cond: true_fn returns {len(tb.outputs)} value(s) ({tkind}) but false_fn returns "
                             f"{len(fb.outputs)} ({fkind}); both branches must return the same structure")
        specs = []
        for i, (a, b) in enumerate(zip(tb.outputs, fb.outputs)):
            if a.dtype != b.dtype:
                raise TypeError(f"cond: output {i} is {a.dtype.name} in true_fn ('{a.name}') but "
                                f"{b.dtype.name} in false_fn ('{b.name}')")
            specs.append(TensorSpec(_merge_shapes(a.shape, b.shape), a.dtype))
        _, tcaps, tctl = branch_closure(tb.outputs, parent)
        _, fcaps, fctl = branch_closure(fb.outputs, parent)
        tb.captures, fb.captures = tcaps, fcaps
        with g.control_dependencies(tctl + [c for c in fctl if c not in tctl]):
            op = g.create_op("Cond", [pred] + tcaps + fcaps,
                             {"graph_branches": (tb, fb), "out_specs": tuple(specs), "n_true": len(tcaps)},
                             name="Merge")
    outs = list(op.outputs)
    if tkind in ("none", "op"):
        return op
    if tkind == "single":
        return outs[0]
    if isinstance(tkind, tuple):
        return dict(zip(tkind[1], outs))
    return tuple(outs) if tkind == "tuple" else outs


def _merge_shapes(a, b):
    if a is None or b is None or len(a) != len(b):
        return None
    return tuple(x if x == y else None for x, y in zip(a, b))
