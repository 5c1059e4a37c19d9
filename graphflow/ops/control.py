"""Graph control: identity, stop_gradient, no_op, group (cond lives in cond.py)."""
from __future__ import annotations

from .. import dtypes as _dt
from ..graph import Tensor, get_default_graph
from .build import apply_op, convert_to_tensor
from .registry import OpDef, OpKind, register

register(OpDef(type="Identity", default_name="Identity", kind=OpKind.ELEMENTWISE, dtypes=_dt.ALL,
               infer=lambda specs, attrs: specs[0], kernel=lambda x: x, grad=lambda op, dy: [dy],
               scalar=lambda b, x: x,
               sample=("real",)))
register(OpDef(type="StopGradient", default_name="StopGradient", kind=OpKind.ELEMENTWISE, dtypes=_dt.ALL,
               infer=lambda specs, attrs: specs[0], kernel=lambda x: x, grad=lambda op, dy: [None],
               scalar=lambda b, x: x,
               sample=("real",)))
register(OpDef(type="NoOp", default_name="NoOp", kind=OpKind.OPAQUE,
               infer=lambda specs, attrs: (), kernel=lambda: ()))


def identity(x, name=None):
    return apply_op("Identity", [convert_to_tensor(x)], name=name)


def stop_gradient(x, name=None):
    """The same value, but gf.gradients treats it as a constant."""
    return apply_op("StopGradient", [convert_to_tensor(x)], name=name)


def no_op(name=None):
    return get_default_graph().create_op("NoOp", [], {}, name)


def group(*inputs, name=None):
    """An op that runs after all of `inputs` (ops or tensors) and produces nothing."""
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = tuple(inputs[0])
    ops = []
    for i in inputs:
        if i is None:
            continue
        if hasattr(i, "_as_graph_element"):
            i = i._as_graph_element()
        ops.append(i.op if isinstance(i, Tensor) else i)
    g = ops[0].graph if ops else get_default_graph()
    with g.control_dependencies(ops):
        return g.create_op("NoOp", [], {}, name or "group_deps")
