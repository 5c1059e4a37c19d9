"""The user's program: a Graph of Operations connected by Tensors.

Nothing executes while a graph is built. Every op is created through
`Graph.create_op`, which asks the op's registered definition for the output shapes and
dtypes, so a bad shape is reported at build time, naming the op.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from . import dtypes as _dt
from .ops.registry import TensorSpec, get_op_def

Shape = "tuple[int | None, ...] | None"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class Tensor:
    """One output of an Operation: a symbolic value with a static dtype and shape."""

    __slots__ = ("op", "value_index", "dtype", "shape", "__weakref__")
    __array_priority__ = 100  # numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, op: "Operation", value_index: int, dtype: np.dtype, shape):
        self.op = op
        self.value_index = value_index
        self.dtype = dtype
        self.shape = shape

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    @property
    def graph(self) -> "Graph":
        return self.op.graph

    @property
    def ndim(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def get_shape(self):
        return self.shape

    def consumers(self) -> list["Operation"]:
        return [op for op in self.graph._consumers.get(self, ())]

    def eval(self, feed_dict=None, session=None):
        """Run this tensor in `session` (or the default session), as TF1's `Tensor.eval`."""
        from .runtime.session import get_default_session

        sess = session or get_default_session()
        return sess.run(self, feed_dict=feed_dict)

    def __repr__(self) -> str:
        return f"<gf.Tensor '{self.name}' shape={_shape_str(self.shape)} dtype={self.dtype.name}>"

    def __bool__(self):
        raise TypeError(
            f"using the symbolic tensor '{self.name}' as a Python bool is not allowed: "
            "it has no value until a Session runs it; use gf.cond or gf.where")

    def __iter__(self):
        raise TypeError(f"tensor '{self.name}' is not iterable; use gf.split or gf.unstack-like "
                        "slicing (x[i]) instead")

    def __len__(self):
        raise TypeError(f"len() of tensor '{self.name}' is not defined; use gf.shape(x)")

    __hash__ = object.__hash__

    # Operators are attached by graphflow.ops.operators (they need the op builders).


class Operation:
    """One node of a Graph: an op type applied to input tensors, with attributes."""

    __slots__ = ("name", "type", "inputs", "outputs", "attrs", "control_inputs", "graph",
                 "_id", "cond_context", "source", "__weakref__")

    def __init__(self, graph: "Graph", name: str, op_type: str, inputs: tuple, attrs: dict,
                 specs: Sequence[TensorSpec], control_inputs: list, op_id: int,
                 cond_context, source: str | None):
        self.graph = graph
        self.name = name
        self.type = op_type
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.control_inputs = list(control_inputs)
        self._id = op_id
        self.cond_context = cond_context
        self.source = source
        self.outputs = tuple(Tensor(self, i, s.dtype, s.shape) for i, s in enumerate(specs))

    @property
    def op_def(self):
        return get_op_def(self.type)

    def get_attr(self, name: str) -> Any:
        return self.attrs[name]

    def run(self, feed_dict=None, session=None):
        """Run this operation in `session` (or the default session), as TF1's `Operation.run`."""
        from .runtime.session import get_default_session

        (session or get_default_session()).run(self, feed_dict=feed_dict)

    def __repr__(self) -> str:
        return f"<gf.Operation '{self.name}' type={self.type}>"

    __hash__ = object.__hash__


class Graph:
    """A dataflow graph: the ops a script builds, their names, scopes and collections."""

    def __init__(self):
        self._ops: list[Operation] = []
        self._ops_by_name: dict[str, Operation] = {}
        self._used_names: dict[str, int] = {}
        self._consumers: dict[Tensor, list[Operation]] = {}
        self._collections: dict[str, list] = {}
        self._finalized = False
        self._lock = threading.RLock()
        self._local = threading.local()
        self._ids = itertools.count()
        self.seed: int | None = None
        self.version = 0  # bumped on every change, so cached plans can tell they are stale

    # ---- per-thread building state (scopes, control dependencies, cond branches) ----
    @property
    def _state(self):
        st = self._local.__dict__
        if "scope" not in st:
            st["scope"] = ""
            st["control"] = []
            st["cond"] = None
        return self._local

    @contextlib.contextmanager
    def as_default(self) -> Iterator["Graph"]:
        """Make this graph the default one for ops created in the `with` block."""
        _default_stack().append(self)
        try:
            yield self
        finally:
            _default_stack().pop()

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """Prefix the names of ops created in the block with `name/` (made unique)."""
        state = self._state
        old = state.scope
        if name is None or name == "":
            scope = ""
        elif name.endswith("/"):
            scope = name  # re-entering an existing scope, as in TF1
        else:
            scope = self.unique_name(old + name, mark_used=True) + "/"
        state.scope = scope
        try:
            yield scope
        finally:
            state.scope = old

    @contextlib.contextmanager
    def control_dependencies(self, control_inputs) -> Iterator[None]:
        """Ops created in the block run only after every op in `control_inputs`."""
        state = self._state
        old = state.control
        if control_inputs is None:
            state.control = []
        else:
            ops = list(old)
            for c in control_inputs:
                op = _as_operation(c)
                if op.graph is not self:
                    raise ValueError(f"control input '{op.name}' belongs to another graph")
                if op not in ops:
                    ops.append(op)
            state.control = ops
        try:
            yield
        finally:
            state.control = old

    @contextlib.contextmanager
    def _cond_branch(self, context) -> Iterator[None]:
        state = self._state
        old = state.cond
        state.cond = context
        try:
            yield
        finally:
            state.cond = old

    @property
    def current_cond_context(self):
        return self._state.cond

    def unique_name(self, name: str, mark_used: bool = True) -> str:
        """`name` if unused, else `name_1`, `name_2`, ... as TF1 does."""
        with self._lock:
            if name not in self._used_names:
                if mark_used:
                    self._used_names[name] = 0
                return name
            i = self._used_names[name] + 1
            while f"{name}_{i}" in self._used_names:
                i += 1
            if mark_used:
                self._used_names[name] = i
                self._used_names[f"{name}_{i}"] = 0
            return f"{name}_{i}"

    # ---- building ----
    def create_op(self, op_type: str, inputs: Sequence[Tensor], attrs: dict | None = None,
                  name: str | None = None) -> Operation:
        """Add one op; its definition infers the outputs (errors name the op)."""
        op_def = get_op_def(op_type)
        attrs = dict(attrs or {})
        if self._finalized:
            raise RuntimeError(f"graph is finalized and cannot be modified (adding op '{name or op_def.default_name}')")
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TypeError(f"{op_type}: inputs must be Tensors, got {type(t).__name__}")
            if t.graph is not self:
                raise ValueError(f"{op_type}: tensor '{t.name}' belongs to another graph; "
                                 "build every op of a computation in one graph")
        state = self._state
        base = name if name else op_def.default_name
        with self._lock:
            full = self._op_name(state.scope, base)
            try:
                specs = op_def.infer([TensorSpec(t.shape, t.dtype) for t in inputs], attrs)
            except (ValueError, TypeError) as exc:
                kind = type(exc)
                names = ", ".join(f"'{t.name}' {_shape_str(t.shape)} {t.dtype.name}" for t in inputs)
                msg = f"{full} ({op_type}): {exc}"
                if names:
                    msg += f" [inputs: {names}]"
                src = _user_source()
                if src:
                    msg += f" (created at {src})"
                raise kind(msg) from None
            if isinstance(specs, TensorSpec):
                specs = (specs,)
            op = Operation(self, full, op_type, tuple(inputs), attrs, specs, state.control,
                           next(self._ids), state.cond, _user_source())
            self._ops.append(op)
            self._ops_by_name[full] = op
            for t in inputs:
                self._consumers.setdefault(t, []).append(op)
            if state.cond is not None:
                state.cond.ops.append(op)
            self.version += 1
        return op

    def _op_name(self, scope: str, base: str) -> str:
        """`scope + base` made unique; a name ending in "/" (what `name_scope` yields) is
        taken as the exact, absolute op name, as in TF1."""
        if base.endswith("/"):
            full = base[:-1]
            _check_name(full)
            if full in self._ops_by_name:
                raise ValueError(f"an operation named '{full}' already exists; names ending in '/' are used "
                                 "exactly and must be new")
            self._used_names.setdefault(full, 0)
            return full
        _check_name(base)
        return self.unique_name(scope + base)

    def finalize(self) -> None:
        """Make the graph read-only: adding an op afterwards raises RuntimeError."""
        self._finalized = True

    @property
    def finalized(self) -> bool:
        return self._finalized

    # ---- lookups ----
    def get_operations(self) -> list[Operation]:
        return list(self._ops)

    def get_operation_by_name(self, name: str) -> Operation:
        from .errors import NotFoundError

        try:
            return self._ops_by_name[name]
        except KeyError:
            if ":" in name:
                raise ValueError(f"'{name}' looks like a tensor name; use get_tensor_by_name") from None
            raise NotFoundError(f"the graph has no operation named '{name}'{_suggest(name, self._ops_by_name)}") from None

    def get_tensor_by_name(self, name: str) -> Tensor:
        from .errors import NotFoundError

        op_name, sep, index = name.rpartition(":")
        if not sep or not index.isdigit():
            raise ValueError(f"'{name}' is not a tensor name: expected '<op name>:<output index>', "
                             f"for example '{name}:0'")
        op = self._ops_by_name.get(op_name)
        if op is None:
            raise NotFoundError(f"the graph has no tensor named '{name}': no operation "
                                f"'{op_name}'{_suggest(op_name, self._ops_by_name)}")
        i = int(index)
        if i >= len(op.outputs):
            raise NotFoundError(f"the graph has no tensor named '{name}': operation '{op_name}' "
                                f"has {len(op.outputs)} output(s)")
        return op.outputs[i]

    def as_graph_element(self, obj, allow_operation: bool = True):
        """Resolve a Tensor, Operation, Variable or name to a Tensor or Operation of this graph."""
        if hasattr(obj, "_as_graph_element"):
            obj = obj._as_graph_element()
        if isinstance(obj, str):
            if ":" in obj:
                return self.get_tensor_by_name(obj)
            if allow_operation:
                return self.get_operation_by_name(obj)
            raise ValueError(f"'{obj}' names an operation; a tensor name looks like '{obj}:0'")
        if isinstance(obj, (Tensor, Operation)):
            if obj.graph is not self:
                raise ValueError(f"'{obj.name}' belongs to another graph than this session's")
            if isinstance(obj, Operation) and not allow_operation:
                raise TypeError(f"'{obj.name}' is an operation; a tensor is expected here")
            return obj
        raise TypeError(f"cannot interpret {type(obj).__name__} {obj!r} as a tensor or operation")

    # ---- collections ----
    def add_to_collection(self, name: str, value) -> None:
        self._collections.setdefault(name, []).append(value)

    def get_collection(self, name: str) -> list:
        return list(self._collections.get(name, ()))

    def get_collection_ref(self, name: str) -> list:
        return self._collections.setdefault(name, [])

    def __repr__(self) -> str:
        return f"<gf.Graph with {len(self._ops)} ops>"


# ---- the default-graph stack (per thread, over one global default) ----
_global_default: list[Graph] = [Graph()]
_thread_local = threading.local()


def _default_stack() -> list[Graph]:
    stack = getattr(_thread_local, "stack", None)
    if stack is None:
        stack = _thread_local.stack = []
    return stack


def get_default_graph() -> Graph:
    """The innermost graph entered with `as_default()`, else the global default graph."""
    stack = _default_stack()
    return stack[-1] if stack else _global_default[0]


def reset_default_graph() -> None:
    """Replace the global default graph by a new empty one."""
    if _default_stack():
        raise AssertionError("do not call reset_default_graph() inside a `with graph.as_default()` block")
    _global_default[0] = Graph()


def name_scope(name: str | None):
    """`gf.name_scope(name)`: a name scope in the default graph."""
    return get_default_graph().name_scope(name)


def control_dependencies(control_inputs):
    """`gf.control_dependencies([...])`: a control-dependency block in the default graph."""
    g = _graph_of(control_inputs) if control_inputs else get_default_graph()
    return g.control_dependencies(control_inputs)


def _graph_of(items) -> Graph:
    for item in items:
        op = _as_operation(item)
        return op.graph
    return get_default_graph()


def _as_operation(obj) -> Operation:
    if hasattr(obj, "_as_graph_element"):
        obj = obj._as_graph_element()
    if isinstance(obj, Operation):
        return obj
    if isinstance(obj, Tensor):
        return obj.op
    raise TypeError(f"expected an Operation or Tensor, got {type(obj).__name__}")


def _check_name(name: str) -> None:
    if not name or ":" in name or "\n" in name or name[0] == "/":
        raise ValueError(f"'{name}' is not a valid op name (no ':' and no leading '/')")


def _shape_str(shape) -> str:
    if shape is None:
        return "<unknown rank>"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _suggest(name: str, names) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=3)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


_SOURCE_LABELS: dict[str, str | None] = {}


def _source_label(filename: str) -> str | None:
    """The base name of a user's file, None for graphflow's own files (cached per file: op
    creation is hot and `abspath` is not cheap)."""
    try:
        return _SOURCE_LABELS[filename]
    except KeyError:
        inside = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
        label = _SOURCE_LABELS[filename] = None if inside else os.path.basename(filename)
        return label


def _user_source() -> str | None:
    """`file:line` of the first stack frame outside graphflow (where the user built the op)."""
    frame = sys._getframe(1)
    while frame is not None:
        label = _source_label(frame.f_code.co_filename)
        if label is not None:
            return f"{label}:{frame.f_lineno}"
        frame = frame.f_back
    return None


shape_str = _shape_str
