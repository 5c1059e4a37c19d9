"""TF1 optimizers: each one turns (gradient, variable) pairs into ordinary graph ops.

An update is built from Assign/AssignAdd/AssignSub and elementwise ops, so it is pruned,
fused and compiled like the rest of the graph, and (like every variable write) becomes
visible to other runs only when the run that applies it succeeds. Per-variable state
("slots": Adam's moments, the momentum accumulator, ...) lives in non-trainable global
Variables named as TF1 names them (`w/Adam`, `w/Adam_1`, `beta1_power`), so
`gf.global_variables_initializer()` built after `minimize` initializes them and a Saver
saves them.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..gradients import gradients
from ..graph import Graph, Operation, Tensor
from ..ops.array_ops import constant, ones, zeros
from ..ops.build import is_tensor_like
from ..ops.control import group
from ..ops.math_api import cast, sqrt, square
from ..variables import Variable, trainable_variables


@contextlib.contextmanager
def _outside_user_context(graph: Graph):
    """Build state (slots, accumulators) at the top level of `graph`: no name scope, no
    control dependencies and no gf.cond branch, whatever the caller has entered."""
    with graph.as_default(), graph.control_dependencies(None), graph._cond_branch(None), graph.name_scope(""):
        yield


def _graph_of_vars(variables) -> Graph:
    graphs = {v.graph for v in variables}
    if len(graphs) != 1:
        raise ValueError("the variables to optimize belong to different graphs: "
                         + ", ".join(v.op.name for v in variables))
    return graphs.pop()


def _learning_rate(learning_rate, lr, name, default=None):
    """TF1 spells it `learning_rate`; API.md writes `lr`: either keyword is accepted, not both."""
    if learning_rate is not None and lr is not None:
        raise TypeError(f"{name} optimizer: give learning_rate or lr, not both")
    value = learning_rate if learning_rate is not None else lr if lr is not None else default
    if value is None:
        raise TypeError(f"{name} optimizer: missing the learning_rate argument")
    return value


class Optimizer:
    """Base class: `minimize` = `compute_gradients` + `apply_gradients`.

    A subclass says which slots each variable needs (`_create_slots`), prepares its
    hyperparameters as tensors of one dtype (`_hyper`) and builds the update of one
    variable (`_apply_dense`); `_finish` adds what runs once after all updates.
    `use_locking` is accepted for TF1 compatibility: a run's variable writes are always
    published together, under the session's lock, when the run succeeds.
    """

    def __init__(self, use_locking: bool = False, name: str = "Optimizer"):
        if not name:
            raise ValueError("an optimizer needs a non-empty name")
        self._name = name
        self._slots: dict[str, dict[Variable, Variable]] = {}
        self._non_slot: dict[tuple, Variable] = {}
        self._hyper_cache: dict | None = None

    # ---- introspection (TF1 names) ----
    def get_name(self) -> str:
        return self._name

    def get_slot_names(self) -> list[str]:
        return sorted(self._slots)

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        return self._slots.get(name, {}).get(var)

    def variables(self) -> list[Variable]:
        """Every variable this optimizer created (slots and accumulators)."""
        out = list(self._non_slot.values())
        for per_var in self._slots.values():
            out.extend(per_var.values())
        return out

    # ---- the public steps ----
    def minimize(self, loss, var_list=None, global_step=None, name: str | None = None, grad_loss=None):
        """The training op: one update of `var_list` (default: the trainable variables)
        along the gradient of `loss`; increments `global_step` afterwards when given.

        The second positional argument may also be a TF1-style `global_step` (an integer
        Variable): `opt.minimize(loss, step)` works as in TF1."""
        if isinstance(var_list, Variable) and var_list.dtype.kind in "iu" and global_step is None:
            var_list, global_step = None, var_list
        grads_and_vars = self.compute_gradients(loss, var_list=var_list, grad_loss=grad_loss)
        missing = [v for g, v in grads_and_vars if g is None]
        if len(missing) == len(grads_and_vars):
            raise ValueError(f"{self._name}.minimize: no gradients for any variable; '{_name_of(loss)}' does not "
                             "depend on " + ", ".join(f"'{v.op.name}'" for v in missing))
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def compute_gradients(self, loss, var_list=None, grad_loss=None) -> list[tuple]:
        """[(gradient or None, variable)] for each variable in `var_list`."""
        if hasattr(loss, "_as_graph_element"):
            loss = loss._as_graph_element()
        if not isinstance(loss, Tensor):
            raise TypeError(f"{self._name}: loss must be a tensor, got {type(loss).__name__}")
        if loss.dtype.kind != "f":
            raise TypeError(f"{self._name}: loss '{loss.name}' has dtype {loss.dtype.name}; a float loss is needed")
        if var_list is None:
            var_list = trainable_variables(loss.graph)
        elif isinstance(var_list, Variable):
            var_list = [var_list]
        elif isinstance(var_list, dict):
            var_list = list(var_list.values())
        var_list = list(var_list)
        if not var_list:
            raise ValueError(f"{self._name}: there are no variables to optimize")
        for v in var_list:
            if not isinstance(v, Variable):
                raise TypeError(f"{self._name}: var_list must hold gf.Variable objects, got {type(v).__name__}")
            if v.dtype.kind != "f":
                raise TypeError(f"{self._name}: variable '{v.op.name}' has dtype {v.dtype.name}; only float "
                                "variables can be optimized")
        grads = gradients(loss, var_list, grad_ys=None if grad_loss is None else [grad_loss])
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name: str | None = None) -> Operation:
        """The op that applies each (gradient, variable) update once; pairs whose gradient
        is None are skipped."""
        pairs = [(g, v) for g, v in grads_and_vars]
        for g, v in pairs:
            if not isinstance(v, Variable):
                raise TypeError(f"{self._name}.apply_gradients: expected (gradient, gf.Variable) pairs, got a "
                                f"{type(v).__name__} as the variable")
        live = [(g, v) for g, v in pairs if g is not None]
        if not live:
            raise ValueError(f"{self._name}.apply_gradients: no gradients provided for any variable: "
                             + ", ".join(f"'{v.op.name}'" for _, v in pairs))
        if global_step is not None and not isinstance(global_step, Variable):
            raise TypeError(f"{self._name}: global_step must be a gf.Variable, got {type(global_step).__name__}")
        graph = _graph_of_vars([v for _, v in live])
        with _outside_user_context(graph):
            self._create_slots([v for _, v in live])
        with graph.as_default(), graph.name_scope(name or self._name) as scope:
            self._hyper_cache = {}
            try:
                updates = []
                for g, v in live:
                    if hasattr(g, "_as_graph_element"):
                        g = g._as_graph_element()
                    if not isinstance(g, Tensor) or g.dtype != v.dtype or g.graph is not graph:
                        raise TypeError(f"{self._name}: the gradient for '{v.op.name}' must be a {v.dtype.name} "
                                        f"tensor of the same graph, got {g!r}")
                    with graph.name_scope("update_" + v.op.name):
                        updates.append(self._apply_dense(g, v))
                # The returned op is named like the scope ("Adam"), as in TF1.
                if global_step is None:
                    return self._finish(updates, scope)
                train_op = self._finish(updates, "update")
                with graph.control_dependencies([train_op]):
                    return global_step.assign_add(1, name=scope).op
            finally:
                self._hyper_cache = None

    # ---- for subclasses ----
    def _create_slots(self, var_list: list[Variable]) -> None:
        """Create the per-variable state (called once per apply, at the graph's top level)."""

    def _apply_dense(self, grad: Tensor, var: Variable):
        raise NotImplementedError

    def _finish(self, update_ops: list, name: str) -> Operation:
        return group(*update_ops, name=name)

    def _slot(self, var: Variable, slot_name: str, init: str = "zeros") -> Variable:
        """The slot `slot_name` of `var`, created on first use as `<var>/<optimizer name>`."""
        per_var = self._slots.setdefault(slot_name, {})
        slot = per_var.get(var)
        if slot is None:
            fill = zeros if init == "zeros" else ones
            slot = Variable(fill(var.shape, var.dtype), trainable=False, name=f"{var.op.name}/{self._name}")
            per_var[var] = slot
        return slot

    def _non_slot_variable(self, name: str, initial, dtype) -> Variable:
        """One variable shared by all updates of this optimizer (e.g. Adam's beta1_power),
        created on first use with the value `initial` (a number or a tensor)."""
        key = (name, np.dtype(dtype))
        v = self._non_slot.get(key)
        if v is None:
            init = cast(initial, dtype) if is_tensor_like(initial) else constant(initial, dtype=dtype)
            v = self._non_slot[key] = Variable(init, trainable=False, name=name)
        return v

    def _hyper(self, key: str, value, dtype) -> Tensor:
        """Hyperparameter `value` (number, tensor, Variable or zero-argument callable) as a
        tensor of `dtype`, built once per apply_gradients call and dtype."""
        cache_key = (key, np.dtype(dtype))
        t = self._hyper_cache.get(cache_key)
        if t is None:
            if callable(value) and not is_tensor_like(value):
                value = value()
            if is_tensor_like(value):
                t = cast(value, dtype)
            else:
                t = constant(value, dtype=dtype, name=key)
            self._hyper_cache[cache_key] = t
        return t


def _name_of(t) -> str:
    return getattr(t, "name", repr(t))


class GradientDescentOptimizer(Optimizer):
    """var -= learning_rate * grad."""

    def __init__(self, learning_rate=None, use_locking: bool = False, name: str = "GradientDescent", *, lr=None):
        super().__init__(use_locking, name)
        self._lr = _learning_rate(learning_rate, lr, name)

    def _apply_dense(self, grad, var):
        # an Assign of the new value rather than an AssignSub of the step: the subtraction
        # fuses into the gradient's kernel (a matmul's epilogue) and the Assign keeps that
        # kernel's fresh output as the new value, where AssignSub made one more numpy pass
        return var.assign(var - self._hyper("learning_rate", self._lr, var.dtype) * grad).op


class MomentumOptimizer(Optimizer):
    """accum = momentum * accum + grad; var -= lr * accum
    (Nesterov: var -= lr * (grad + momentum * accum))."""

    def __init__(self, learning_rate=None, momentum=None, use_locking: bool = False, name: str = "Momentum",
                 use_nesterov: bool = False, *, lr=None):
        super().__init__(use_locking, name)
        if momentum is None:
            raise TypeError("MomentumOptimizer: missing the momentum argument")
        self._lr = _learning_rate(learning_rate, lr, name)
        self._momentum = momentum
        self._nesterov = bool(use_nesterov)

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "momentum")

    def _apply_dense(self, grad, var):
        lr = self._hyper("learning_rate", self._lr, var.dtype)
        mu = self._hyper("momentum", self._momentum, var.dtype)
        accum = self.get_slot(var, "momentum")
        accum_t = accum * mu + grad   # (a computed value, not the Assign's output: see AdamOptimizer)
        step = (grad + accum_t * mu) * lr if self._nesterov else accum_t * lr
        return group(var.assign(var - step), accum.assign(accum_t))


class AdamOptimizer(Optimizer):
    """Adam with TF1's update: the bias correction is folded into the step size,
    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), var -= lr_t * m / (sqrt(v) + epsilon)."""

    def __init__(self, learning_rate=None, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking: bool = False,
                 name: str = "Adam", *, lr=None):
        super().__init__(use_locking, name)
        self._lr = _learning_rate(learning_rate, lr, name, default=0.001)
        self._beta1 = beta1
        self._beta2 = beta2
        self._epsilon = epsilon
        self._powers: tuple = ()

    def _create_slots(self, var_list):
        if not self._powers:  # TF1: the first variable's dtype; they start at beta (step t = 1)
            dtype = var_list[0].dtype
            self._powers = (self._non_slot_variable("beta1_power", self._beta1, dtype),
                            self._non_slot_variable("beta2_power", self._beta2, dtype))
        for v in var_list:
            self._slot(v, "m")
            self._slot(v, "v")

    def _apply_dense(self, grad, var):
        dt = var.dtype
        b1 = self._hyper("beta1", self._beta1, dt)
        b2 = self._hyper("beta2", self._beta2, dt)
        eps = self._hyper("epsilon", self._epsilon, dt)
        lr_t = self._hyper_cache.get(("lr_t", np.dtype(dt)))
        if lr_t is None:
            lr = self._hyper("learning_rate", self._lr, dt)
            p1, p2 = (cast(p, dt) for p in self._powers)
            lr_t = self._hyper_cache[("lr_t", np.dtype(dt))] = lr * sqrt(1.0 - p2) / (1.0 - p1)
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        # the new moments feed the step as computed values, not as their Assigns' outputs
        # (equal), so the moments, the step and the new variable value fuse into one kernel
        # with the gradient (a matmul's epilogue) instead of stopping at each Assign: one
        # compiled call per variable instead of two plus an AssignSub
        m_new = m * b1 + grad * (1.0 - b1)
        v_new = v * b2 + square(grad) * (1.0 - b2)
        var_new = var - lr_t * m_new / (sqrt(v_new) + eps)
        return group(var.assign(var_new), m.assign(m_new), v.assign(v_new))

    def _finish(self, update_ops, name):
        graph = update_ops[0].graph
        p1, p2 = self._powers
        with graph.control_dependencies(update_ops):
            up1 = p1.assign(p1 * self._hyper("beta1", self._beta1, p1.dtype))
            up2 = p2.assign(p2 * self._hyper("beta2", self._beta2, p2.dtype))
        return group(*update_ops, up1, up2, name=name)


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp: ms = decay * ms + (1 - decay) * grad^2 (ms starts at one);
    mom = momentum * mom + lr * grad / sqrt(ms + epsilon); var -= mom.
    `centered` also tracks the mean gradient mg and uses ms - mg^2 in the root."""

    def __init__(self, learning_rate=None, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking: bool = False,
                 centered: bool = False, name: str = "RMSProp", *, lr=None):
        super().__init__(use_locking, name)
        self._lr = _learning_rate(learning_rate, lr, name)
        self._decay = decay
        self._momentum = momentum
        self._epsilon = epsilon
        self._centered = bool(centered)

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "rms", init="ones")
            self._slot(v, "momentum")
            if self._centered:
                self._slot(v, "mg")

    def _apply_dense(self, grad, var):
        dt = var.dtype
        lr = self._hyper("learning_rate", self._lr, dt)
        rho = self._hyper("decay", self._decay, dt)
        mu = self._hyper("momentum", self._momentum, dt)
        eps = self._hyper("epsilon", self._epsilon, dt)
        ms, mom = self.get_slot(var, "rms"), self.get_slot(var, "momentum")
        # computed values, not the Assigns' outputs (see AdamOptimizer)
        ms_t = ms * rho + square(grad) * (1.0 - rho)
        denom = ms_t
        updates = [ms.assign(ms_t)]
        if self._centered:
            mg = self.get_slot(var, "mg")
            mg_t = mg * rho + grad * (1.0 - rho)
            denom = ms_t - square(mg_t)
            updates.append(mg.assign(mg_t))
        mom_t = mom * mu + lr * grad / sqrt(denom + eps)
        return group(var.assign(var - mom_t), mom.assign(mom_t), *updates)
