"""`gf.gradients`: symbolic reverse-mode differentiation that adds nodes to the graph.

Walks the ops between `xs` and `ys` in reverse creation order (creation order is a
topological order, so no recursion is needed), calls each op's registered gradient and
sums the contributions of every consumer of a tensor (fan-out).
"""
from __future__ import annotations

from .graph import Tensor, get_default_graph
from .ops.build import convert_to_tensor


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _as_tensor(x) -> Tensor:
    if hasattr(x, "_as_graph_element"):
        x = x._as_graph_element()
    if not isinstance(x, Tensor):
        raise TypeError(f"gradients: expected tensors or variables, got {type(x).__name__}")
    return x


def _between(ys, xs, stop):
    """Ops on some path from an x to a y (creation-ordered)."""
    back = set()
    stack = [y.op for y in ys]
    while stack:
        op = stack.pop()
        if op in back:
            continue
        back.add(op)
        for t in op.inputs:
            if t not in stop:
                stack.append(t.op)
    fwd = set()
    g = ys[0].graph
    stack = [c for x in xs for c in g._consumers.get(x, ())]
    while stack:
        op = stack.pop()
        if op in fwd or op not in back:
            continue
        fwd.add(op)
        for t in op.outputs:
            stack.extend(g._consumers.get(t, ()))
    return sorted(fwd, key=lambda op: op._id, reverse=True)


def _variable_reads(g, xs) -> dict[Tensor, list[Tensor]]:
    """For each x that is a variable's value, the variable's other reads (`read_value`, uses
    inside control-dependency blocks): a gradient with respect to the variable flows through all."""
    names = {x.op.attrs["var"]: x for x in xs if x.op.type == "VariableV2"}
    if not names:
        return {}
    reads: dict[Tensor, list[Tensor]] = {}
    for op in g.get_operations():
        x = names.get(op.attrs.get("var")) if op.type == "VariableV2" else None
        if x is not None and op is not x.op:
            reads.setdefault(x, []).append(op.outputs[0])
    return reads


def _sum(grads: list[Tensor]) -> Tensor:
    out = grads[0]
    for g in grads[1:]:
        out = out + g
    return out


def gradients(ys, xs, grad_ys=None, name: str = "gradients", stop_gradients=None):
    """d(sum of ys)/d(xs) as a list aligned with `xs`; None where an x does not affect the ys."""
    ys = [_as_tensor(y) for y in _as_list(ys)]
    xs = [_as_tensor(x) for x in _as_list(xs)]
    if not ys:
        return [None] * len(xs)
    g = ys[0].graph
    reads = _variable_reads(g, xs)
    stop = set(_as_tensor(s) for s in _as_list(stop_gradients)) if stop_gradients is not None else set()
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    grad_ys = _as_list(grad_ys)
    if len(grad_ys) != len(ys):
        raise ValueError(f"gradients: {len(ys)} ys but {len(grad_ys)} grad_ys")
    with g.as_default(), g.name_scope(name):
        acc: dict[Tensor, list[Tensor]] = {}
        for y, gy in zip(ys, grad_ys):
            if y.dtype.kind != "f":
                raise TypeError(f"gradients: '{y.name}' has dtype {y.dtype.name}; only float tensors can be "
                                "differentiated")
            if gy is None:
                from .ops.array_ops import ones_like

                gy = ones_like(y)
            else:
                gy = convert_to_tensor(gy, dtype=y.dtype)
            acc.setdefault(y, []).append(gy)
        for op in _between(ys, xs + [r for x in xs for r in reads.get(x, ())], stop):
            out_grads = [_sum(acc[t]) if t in acc else None for t in op.outputs]
            if all(d is None for d in out_grads):
                continue
            grad_fn = op.op_def.grad
            float_inputs = [t for t in op.inputs if t.dtype.kind == "f" and t not in stop]
            if grad_fn is None:
                if float_inputs and any(t.dtype.kind == "f" for t in op.outputs):
                    raise LookupError(f"gradients: no gradient is defined for '{op.name}' (op type {op.type}), "
                                      "which lies between the xs and ys; wrap it in gf.stop_gradient if that is "
                                      "intended")
                continue
            if len(op.outputs) > 1:
                from .ops.array_ops import zeros_like

                out_grads = [d if d is not None else zeros_like(t) for d, t in zip(out_grads, op.outputs)]
            with g.name_scope(op.name + "_grad"):
                in_grads = grad_fn(op, *out_grads)
            if len(in_grads) != len(op.inputs):
                raise RuntimeError(f"internal: gradient of {op.type} returned {len(in_grads)} values for "
                                   f"{len(op.inputs)} inputs")
            for t, gi in zip(op.inputs, in_grads):
                if gi is None or t in stop or t.dtype.kind != "f":
                    continue
                gi = convert_to_tensor(gi)
                if gi.dtype != t.dtype:
                    raise RuntimeError(f"internal: gradient for '{t.name}' has dtype {gi.dtype.name}, "
                                       f"expected {t.dtype.name} (op {op.type})")
                acc.setdefault(t, []).append(gi)
        out = []
        for x in xs:
            grads = [d for t in (x, *reads.get(x, ())) for d in acc.get(t, ())]
            out.append(_sum(grads) if grads else None)
        return out
