"""`gf.Variable`: a named value that lives in each Session, and the variable collections."""
from __future__ import annotations

import numpy as np

from . import dtypes as _dt
from .graph import Tensor, get_default_graph
from .ops.build import convert_to_tensor, is_tensor_like

GLOBAL_VARIABLES = "variables"
TRAINABLE_VARIABLES = "trainable_variables"


class Variable:
    """A mutable tensor whose value persists across `Session.run` calls of one session.

    Usable wherever a tensor is (its value op is named after the variable: `w:0`).
    `initializer` assigns `initial_value`; `assign`, `assign_add` and `assign_sub` build ops.
    """

    __array_priority__ = 100  # `ndarray + Variable` builds an op, as with a Tensor

    def __init__(self, initial_value, trainable: bool = True, name: str | None = None, dtype=None,
                 validate_shape: bool = True):
        base = name or "Variable"
        g = initial_value.graph if is_tensor_like(initial_value) else get_default_graph()
        # As TF1's init_scope: a variable's ops never depend on the control dependencies or
        # the gf.cond branch the caller is in (the variable outlives both).
        with g.as_default(), g.control_dependencies(None), g._cond_branch(None):
            if callable(initial_value) and not is_tensor_like(initial_value):
                initial_value = initial_value()
            init = self._initial_tensor(initial_value, dtype)
            shape = init.shape
            if validate_shape and (shape is None or any(d is None for d in shape)):
                raise ValueError(f"variable '{base}': the initial value '{init.name}' has a partly unknown shape "
                                 f"{shape}; give a fully defined initial value (or validate_shape=False)")
            self._op = g.create_op("VariableV2", [], {"var": None, "shape": shape, "dtype": init.dtype}, base)
            self._op.attrs["var"] = self._op.name
            self._value = self._op.outputs[0]
            self.initial_value = init
            self.trainable = bool(trainable)
            with g.name_scope(self._op.name + "/"):
                self.initializer = self._assign_op("Assign", init, "Assign", validate_shape).op
        g.add_to_collection(GLOBAL_VARIABLES, self)
        if self.trainable:
            g.add_to_collection(TRAINABLE_VARIABLES, self)

    @staticmethod
    def _initial_tensor(value, dtype) -> Tensor:
        """The initial value as a tensor of `dtype`: Python/numpy values are converted
        directly (so 0.1 stays exact in float64), tensors of another dtype are cast."""
        dtype = None if dtype is None else _dt.as_dtype(dtype)
        if not is_tensor_like(value):
            return convert_to_tensor(value, dtype=dtype)
        init = convert_to_tensor(value)
        if dtype is not None and init.dtype != dtype:
            from .ops.math_api import cast

            init = cast(init, dtype)
        return init

    # ---- tensor-like behaviour ----
    def _as_graph_element(self) -> Tensor:
        # As a TF1 variable, a use inside a control-dependency block reads the value after
        # those ops ran (`with control_dependencies([v.assign(1)]): identity(v)` sees 1).
        if self.graph._state.control:
            return self.read_value()
        return self._value

    def value(self) -> Tensor:
        return self._value

    def read_value(self) -> Tensor:
        """A new read of the variable (ordered by the control dependencies in scope)."""
        g = self.graph
        return g.create_op("VariableV2", [], dict(self._op.attrs), self._op.name + "/read").outputs[0]

    @property
    def name(self) -> str:
        return self._value.name

    @property
    def op(self):
        return self._op

    @property
    def dtype(self):
        return self._value.dtype

    @property
    def shape(self):
        return self._value.shape

    def get_shape(self):
        return self.shape

    @property
    def graph(self):
        return self._op.graph

    # ---- assignment ops ----
    def _assign_op(self, op_type, value, name, validate_shape=True) -> Tensor:
        value = convert_to_tensor(value, dtype=None)
        if value.dtype != self.dtype:
            raise TypeError(f"cannot assign '{value.name}' of dtype {value.dtype.name} to the variable "
                            f"'{self._op.name}' of dtype {self.dtype.name}; use gf.cast")
        attrs = {"var": self._op.name, "shape": self.shape, "dtype": self.dtype, "validate_shape": validate_shape}
        return self.graph.create_op(op_type, [value], attrs, name).outputs[0]

    def assign(self, value, name=None) -> Tensor:
        return self._assign_op("Assign", self._convert(value), name)

    def assign_add(self, delta, name=None) -> Tensor:
        return self._assign_op("AssignAdd", self._convert(delta), name)

    def assign_sub(self, delta, name=None) -> Tensor:
        return self._assign_op("AssignSub", self._convert(delta), name)

    def _convert(self, value):
        if isinstance(value, (Tensor, Variable)):
            return value
        from .ops.build import python_value_to_array

        with self.graph.as_default():
            return convert_to_tensor(python_value_to_array(value, self.dtype, what=f"value for '{self.name}'"))

    def eval(self, session=None):
        return self._value.eval(session=session)

    def load(self, value, session=None):
        """Set the variable's value in `session` without adding ops (TF1's Variable.load)."""
        from .runtime.session import get_default_session

        (session or get_default_session())._set_variable(self, np.asarray(value))

    def __repr__(self):
        return f"<gf.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}>"

    __hash__ = object.__hash__


def global_variables(graph=None) -> list[Variable]:
    return (graph or get_default_graph()).get_collection(GLOBAL_VARIABLES)


def trainable_variables(graph=None) -> list[Variable]:
    return (graph or get_default_graph()).get_collection(TRAINABLE_VARIABLES)


def variables_initializer(var_list, name="init"):
    from .ops.control import group, no_op

    if not var_list:
        return no_op(name=name)
    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer():
    """One op that runs every global variable's initializer."""
    return variables_initializer(global_variables(), name="init")
