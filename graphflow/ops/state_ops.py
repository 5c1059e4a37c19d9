"""Ops that touch session state: reading and assigning variables."""
from __future__ import annotations

import numpy as np

from .build import broadcast_shapes
from .registry import OpDef, OpKind, TensorSpec, register


def _var_infer(specs, attrs):
    return TensorSpec(attrs["shape"], attrs["dtype"])


def _var_kernel(state, *, var, shape, dtype):
    return state.read_variable(var)


def _var_state_call(attrs, input_specs):
    """For execution plans: the kernel as one RunState method call, (method, leading args)."""
    return "read_variable", (attrs["var"],)


register(OpDef(type="VariableV2", default_name="Variable", infer=_var_infer, kernel=_var_kernel,
               kind=OpKind.SOURCE, stateful=True, extra={"state_call": _var_state_call}))


def _assign_infer(specs, attrs):
    (v,) = specs
    if v.dtype != attrs["dtype"]:
        raise TypeError(f"cannot assign a {v.dtype.name} value to the {attrs['dtype'].name} variable "
                        f"'{attrs['var']}'")
    want = attrs["shape"]
    if attrs.get("validate_shape", True) and v.shape is not None and want is not None:
        if len(v.shape) != len(want) or any(a is not None and b is not None and a != b
                                             for a, b in zip(v.shape, want)):
            raise ValueError(f"cannot assign a value of shape {v.shape} to the variable '{attrs['var']}' "
                             f"of shape {want}")
    return TensorSpec(want, attrs["dtype"])


def _check_shape(var, want, got):
    if want is not None and tuple(got) != tuple(want):
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"cannot assign a value of shape {tuple(got)} to the variable "
                                   f"'{var}' of shape {tuple(want)}", var)


def _assign_kernel(state, value, *, var, shape, dtype, validate_shape=True, owned=False):
    """`owned`: the plan hands over a fresh array nothing else writes (see "adopts_input")."""
    value = np.asarray(value, dtype=dtype)
    if validate_shape:
        _check_shape(var, shape, value.shape)
    state.write_variable(var, value, owned=owned)
    return value


def _assign_state_call(attrs, input_specs):
    """The kernel as `state.write_variable(var, value)` when the value's static dtype and shape
    are the variable's (its checks cannot fail), else None (the kernel runs)."""
    (spec,) = input_specs
    if spec.dtype != attrs["dtype"] or spec.shape is None or attrs["shape"] is None or \
            None in spec.shape or tuple(spec.shape) != tuple(attrs["shape"]):
        return None
    return "write_variable", (attrs["var"],)


def _assign_update(sign):
    def kernel(state, delta, *, var, shape, dtype, validate_shape=True):
        old = state.read_variable(var)
        new = np.asarray(old + delta if sign > 0 else old - delta, dtype=dtype)
        _check_shape(var, old.shape, new.shape)
        state.write_variable(var, new, owned=True)  # a fresh array: no second copy
        return new
    return kernel


def _update_infer(specs, attrs):
    (d,) = specs
    if d.dtype != attrs["dtype"]:
        raise TypeError(f"cannot add a {d.dtype.name} value to the {attrs['dtype'].name} variable '{attrs['var']}'")
    if d.shape is not None and attrs["shape"] is not None and len(d.shape) <= len(attrs["shape"]):
        out = broadcast_shapes(d.shape, attrs["shape"])
        if out != tuple(attrs["shape"]) and None not in out:
            raise ValueError(f"an update of shape {d.shape} does not fit the variable '{attrs['var']}' "
                             f"of shape {attrs['shape']}")
    return TensorSpec(attrs["shape"], attrs["dtype"])


register(OpDef(type="Assign", default_name="Assign", infer=_assign_infer, kernel=_assign_kernel,
               kind=OpKind.OPAQUE, stateful=True,
               extra={"writes_variables": True, "adopts_input": True, "state_call": _assign_state_call}))
register(OpDef(type="AssignAdd", default_name="AssignAdd", infer=_update_infer, kernel=_assign_update(+1),
               kind=OpKind.OPAQUE, stateful=True, extra={"writes_variables": True}))
register(OpDef(type="AssignSub", default_name="AssignSub", infer=_update_infer, kernel=_assign_update(-1),
               kind=OpKind.OPAQUE, stateful=True, extra={"writes_variables": True}))
