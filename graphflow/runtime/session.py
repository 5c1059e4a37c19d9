"""`gf.Session`: owns variable values, caches one plan per (fetches, feed keys), runs them.

A run converts and validates every feed before anything executes, runs the plan against a
private view of the variables, and commits that view only when the whole run succeeded.
"""
from __future__ import annotations

import threading

import numpy as np

from ..errors import FailedPreconditionError, InvalidArgumentError
from ..graph import Graph, Tensor, get_default_graph, shape_str
from .fetches import flatten_fetches, split_elements
from .state import VariableStore
from .threads import ThreadBudget, resolve_num_threads

_local = threading.local()


def get_default_session():
    """The innermost session entered with `with sess:` / `sess.as_default()` on this thread."""
    stack = getattr(_local, "stack", None)
    if not stack:
        raise ValueError("no default session: use `with gf.Session() as sess:` or pass session=")
    return stack[-1]


class _DefaultSession:
    def __init__(self, sess):
        self.sess = sess

    def __enter__(self):
        if not hasattr(_local, "stack"):
            _local.stack = []
        _local.stack.append(self.sess)
        return self.sess

    def __exit__(self, *exc):
        _local.stack.pop()
        return False


class Session:
    """Runs parts of a graph: `run(fetches, feed_dict)`, `make_callable(fetches, feed_list)`."""

    def __init__(self, target: str = "", graph: Graph | None = None, config=None, opt_level: int = 2,
                 num_threads: int | None = None):
        if opt_level not in (0, 1, 2):
            raise ValueError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")
        self.graph = graph if graph is not None else get_default_graph()
        if not isinstance(self.graph, Graph):
            raise TypeError(f"graph must be a gf.Graph, got {type(self.graph).__name__}")
        self.opt_level = opt_level
        self.num_threads, self.num_threads_reason = resolve_num_threads(num_threads)
        self.budget = ThreadBudget(self.num_threads)  # the one pool every plan of this session uses
        self._store = VariableStore()
        self._plans: dict = {}
        self._runners: dict = {}  # (fetches, *feed keys) -> function of the feed values
        self._lock = threading.RLock()
        self._closed = False
        self._context = None

    # ---- lifecycle ----
    def close(self) -> None:
        """Release the plans and variable values; later runs raise."""
        with self._lock:
            self._closed = True
            for plan in self._plans.values():
                close = getattr(plan, "close", None)
                if close:
                    close()
            self._plans.clear()
            self._runners.clear()
            self.budget.close()

    def __enter__(self):
        self._context = _DefaultSession(self)
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        self._context.__exit__(*exc)
        self.close()
        return False

    def as_default(self):
        """A context manager making this the default session (it stays open afterwards)."""
        return _DefaultSession(self)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- planning ----
    def _plan(self, elements: tuple, feeds: tuple):
        key = (elements, feeds)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        with self._lock:
            self._check_open()
            plan = self._plans.get(key)
            if plan is None:
                from .plan import build_plan

                tensors, ops = split_elements(elements)
                plan = build_plan(self.graph, elements, tensors, ops, list(feeds), self.opt_level, self)
                self._plans[key] = plan
            return plan

    def _check_open(self):
        if self._closed:
            raise FailedPreconditionError("attempted to use a closed Session")

    # ---- feeds ----
    def _feed_tensor(self, key) -> Tensor:
        try:
            t = self.graph.as_graph_element(key, allow_operation=False)
        except TypeError as exc:
            raise TypeError(f"feed_dict key {key!r}: {exc}") from None
        return t

    # ---- running ----
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Compute `fetches` (any nesting of tensors, ops, variables or names) given `feed_dict`."""
        if options is None and run_metadata is None:
            # repeated calls: one dict lookup finds the function that checks the feeds and runs the plan
            cls = fetches.__class__
            f = (cls, *fetches) if cls is list or cls is tuple else fetches
            try:
                runner = self._runners[(f, *feed_dict) if feed_dict else (f,)]
            except (KeyError, TypeError):
                pass
            else:
                if self._closed:
                    self._check_open()
                return runner(*feed_dict.values()) if feed_dict else runner()
        return self._run(fetches, feed_dict, options, run_metadata)

    def _run(self, fetches, feed_dict, options, run_metadata):
        self._check_open()
        elements, rebuild = flatten_fetches(self.graph, fetches)
        feed_tensors, feed_values = [], []
        if feed_dict:
            for key, value in feed_dict.items():
                t = self._feed_tensor(key)
                if t in feed_tensors:
                    raise ValueError(f"tensor '{t.name}' is fed twice (by name and by tensor)")
                feed_tensors.append(t)
                feed_values.append(convert_feed(t, value))
        plan = self._plan(tuple(elements), tuple(feed_tensors))
        trace = [] if (options is not None and getattr(options, "trace", False)) else None
        values = plan.run(feed_values, trace)
        if trace is not None and run_metadata is not None:
            from .trace import StepEvent

            run_metadata.step_stats.extend(
                StepEvent(n, op, t0 * 1e6, t1 * 1e6, tid) for n, op, t0, t1, tid in trace)
        if options is None and run_metadata is None:
            self._remember_runner(fetches, feed_dict, plan, elements, rebuild)
        return rebuild(values)

    def _remember_runner(self, fetches, feed_dict, plan, elements, rebuild) -> None:
        cls = fetches.__class__
        if isinstance(fetches, tuple) and cls is not tuple or (
                cls in (list, tuple) and any(isinstance(e, tuple) for e in fetches)):
            return  # a namedtuple equals a plain tuple as a key: such structures take the general path
        f = (cls, *fetches) if cls is list or cls is tuple else fetches
        key = (f, *feed_dict) if feed_dict else (f,)
        try:
            hash(key)
        except TypeError:  # nested lists or dicts: these runs take the general path
            return
        self._runners[key] = _runner(plan, fetches, elements, rebuild)

    def make_callable(self, fetches, feed_list=None, accept_options=False):
        """A function f(*feed_values) that runs `fetches` with the tensors of `feed_list` fed."""
        self._check_open()
        elements, rebuild = flatten_fetches(self.graph, fetches)
        feeds = [self._feed_tensor(k) for k in (feed_list or [])]
        if len(set(feeds)) != len(feeds):
            raise ValueError("feed_list names the same tensor twice")
        plan = self._plan(tuple(elements), tuple(feeds))
        ex = plan.execution.runner
        single = _is_single(plan, fetches, elements)
        flat = _flat_gather(plan, fetches)
        n = len(feeds)
        names = ", ".join(t.name for t in feeds)

        def call(*args):
            if len(args) != n:
                raise TypeError(f"this callable takes {n} feed value(s) ({names}), got {len(args)}")
            if self._closed:
                self._check_open()
            if single:
                return ex(*args)[0]
            if flat is not None:
                return flat(ex(*args))
            return rebuild(plan.run(args))

        return call

    # ---- variables (used by Saver and gf.keras to load values without building ops) ----
    def _set_variable(self, var, value) -> None:
        value = np.asarray(value)
        if value.shape != tuple(var.shape):
            raise ValueError(f"variable '{var.name}' has shape {shape_str(var.shape)}, got a value of shape "
                             f"{shape_str(value.shape)}")
        self._store.set(var.op.name, value.astype(var.dtype, copy=False))

    def _get_variable(self, var) -> np.ndarray:
        v = self._store.current(var.op.name)
        if v is None:
            raise FailedPreconditionError(f"variable '{var.name}' is not initialized", var.op.name)
        return np.array(v)

    def __repr__(self):
        return f"<gf.Session opt_level={self.opt_level} num_threads={self.num_threads}>"


def _runner(plan, fetches, elements, rebuild):
    """The function of the feed values (in plan feed order) that returns `fetches`' structure."""
    ex = plan.execution.runner
    if _is_single(plan, fetches, elements):
        return lambda *feeds: ex(*feeds)[0]
    return lambda *feeds: rebuild(plan.run(feeds))


def _flat_gather(plan, fetches):
    """For a plain list of single fetches (a training step's [loss, metrics..., train_op]):
    the function of the plan's outputs that gives that list (None for an operation), without
    the general structure rebuild; None for any other structure."""
    if fetches.__class__ is not list or any(isinstance(f, (list, tuple, dict)) for f in fetches):
        return None
    if plan.identity_gather:
        return _same
    gather = plan.gather
    return lambda outs: [None if i is None else outs[i] for i in gather]


def _same(outs):
    return outs


def _is_single(plan, fetches, elements) -> bool:
    """`fetches` is one tensor: its value is the plan's only output, returned bare."""
    return len(elements) == 1 and plan.identity_gather and not isinstance(fetches, (list, tuple, dict))


def convert_feed(t: Tensor, value) -> np.ndarray:
    """Convert a fed value to `t`'s dtype (never losing information) and check its shape."""
    dtype = t.dtype
    if isinstance(value, np.ndarray) and value.dtype == dtype:
        arr = value
    else:
        if isinstance(value, Tensor) or hasattr(value, "_as_graph_element"):
            raise TypeError(f"the value fed for '{t.name}' is a symbolic tensor; feed a numpy array, list or "
                            "number (run the tensor first to get its value)")
        arr = _convert_value(t, value)
    shape = t.shape
    if shape is not None:
        ashape = arr.shape
        if len(ashape) != len(shape) or any(d is not None and d != a for d, a in zip(shape, ashape)):
            raise InvalidArgumentError(
                f"cannot feed a value of shape {shape_str(ashape)} for tensor '{t.name}', which has shape "
                f"{shape_str(shape)}", t.op.name)
    return arr


def _convert_value(t: Tensor, value) -> np.ndarray:
    dtype = t.dtype
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"cannot convert the value fed for '{t.name}' to an array: {exc}") from None
    src = arr.dtype
    if src == dtype:
        return arr
    ok = (src.kind == dtype.kind and src.kind in "fiub") or (src.kind in "iub" and dtype.kind == "f") \
        or (src.kind in "iub" and dtype.kind in "iu")  # integers: checked against the range below
    if ok and dtype.kind in "iu" and src.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        ok = bool(arr.min() >= info.min and arr.max() <= info.max)
    if not ok:
        raise TypeError(f"cannot feed a value of dtype {src.name if src.kind != 'O' else type(value).__name__} "
                        f"for tensor '{t.name}' of dtype {dtype.name} without losing information; "
                        f"convert it first (for example np.asarray(value, dtype='{dtype.name}'))")
    return arr.astype(dtype)
