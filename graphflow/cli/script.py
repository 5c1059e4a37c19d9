"""Run a user's model script and find what the CLI should compile in it.

The script runs as `python MODEL.py` would (runpy, from its own directory, with that
directory on `sys.path`, so it can import its neighbours and read files next to it), except
that `__name__` is not "__main__": code under the main guard (training, a demo) is skipped,
and its prints go to stderr, keeping stdout for the report. What to compile is
taken, in order, from `--fetch` names, a module-level `model` (a `gf.keras` model: its
inference outputs, fed through its inputs), or module-level `outputs` (with optional
`inputs`). Without `inputs`, the feeds are the placeholders the fetches depend on.
"""
from __future__ import annotations

import contextlib
import os
import runpy
import sys
import traceback
from dataclasses import dataclass

from ..compiler.compiled import needed_placeholders
from ..graph import Graph, Operation, Tensor, get_default_graph


class UsageError(Exception):
    """Bad input from the command line user: reported as one line, exit status 2."""


def rejected(action: str, target: "Target", exc: Exception) -> UsageError:
    """The UsageError for a graph that graphflow refuses to compile or run (first line of why)."""
    return UsageError(f"cannot {action} {', '.join(t.name for t in target.fetches)}: {_first_line(exc)}")


@dataclass
class Target:
    """What one CLI command compiles: `fetches` computed from `feeds` in `graph`."""

    graph: Graph
    fetches: list  # Tensors, and Operations run for their effect
    feeds: list
    origin: str  # how the fetches were found, for the report header
    session: object = None  # a Session already holding the variables' values (a gf.keras model's)


def run_script(path: str) -> dict:
    """Execute the script at `path` and return its module globals."""
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    path = os.path.abspath(path)
    script_dir = os.path.dirname(path)
    with _script_environment(script_dir):
        try:
            return runpy.run_path(path, run_name="__graphflow_script__")
        except SystemExit as exc:
            if exc.code in (0, None):
                raise UsageError(f"{os.path.basename(path)} called sys.exit() before defining what to compile") \
                    from None
            raise UsageError(f"{os.path.basename(path)} exited with status {exc.code}") from None
        except Exception as exc:
            raise UsageError(f"{_where(exc, path)} raised {type(exc).__name__}: {_first_line(exc)}") from exc


@contextlib.contextmanager
def _script_environment(script_dir: str):
    """cwd and sys.path[0] at the script's directory; its prints go to stderr, so stdout
    holds only the report (JSON output stays parseable)."""
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(script_dir)
    sys.path.insert(0, script_dir)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def _where(exc: BaseException, path: str) -> str:
    """`model.py:12`: the script's own innermost line in the traceback (or just its name)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.abspath(frame.filename) == path:
            return f"{os.path.basename(path)}:{frame.lineno}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{os.path.basename(path)}:{exc.lineno}"
    return os.path.basename(path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


def find_target(namespace: dict, fetch_names: list[str] | None) -> Target:
    """The fetches and feeds to compile from a script's globals (see the module docstring)."""
    model = namespace.get("model")
    outputs = namespace.get("outputs")
    if fetch_names:
        base = _model_target(model) if model is not None else None
        graph = base.graph if base is not None else _graph_of_script(namespace, outputs)
        fetches = [_resolve_fetch(graph, name) for name in fetch_names]
        return Target(graph, fetches, needed_placeholders(fetches), "--fetch " + " ".join(fetch_names),
                      base.session if base is not None else None)
    if model is not None:
        return _model_target(model)
    if outputs is not None:
        fetches = _tensor_list(outputs, "outputs")
        graph = fetches[0].graph
        inputs = namespace.get("inputs")
        feeds = _tensor_list(inputs, "inputs") if inputs is not None else needed_placeholders(fetches)
        for t in fetches + feeds:
            if t.graph is not graph:
                raise UsageError(f"'{t.name}' belongs to another graph than '{fetches[0].name}'")
        return Target(graph, fetches, feeds, "module-level `outputs`")
    raise UsageError("nothing to compile: the script defines no module-level `model` or `outputs`; "
                     "define one of them or pass --fetch NAME")


def _model_target(model) -> Target:
    """A gf.keras model's inference graph: its outputs fed through its input placeholders."""
    from ..keras import Model

    if not isinstance(model, Model):
        raise UsageError(f"module-level `model` is a {type(model).__name__}, not a gf.keras model; name it "
                         "differently, or define `outputs` (and `inputs`) instead")
    try:
        graph = model.graph  # builds the inference graph on first use
    except ValueError as exc:
        raise UsageError(f"module-level `model` cannot be built: {str(exc).splitlines()[0]}") from None
    runtime = model._runtime  # gf.keras' GraphRuntime: the input placeholders and inference outputs
    fetches = _tensor_list(runtime.outputs, "model outputs")
    feeds = _tensor_list(runtime.inputs, "model inputs")
    return Target(graph, fetches, feeds, f"module-level `model` ({type(model).__name__} '{model.name}')",
                  runtime.session)


def _tensor_list(value, what: str) -> list:
    """`value` (one item, a list, or a dict's values) as gf Tensors and Operations (ops are
    run for their effect, like a training op); Variables stand for their value."""
    if isinstance(value, dict):
        value = list(value.values())
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise UsageError(f"`{what}` is empty")
    out = []
    for item in items:
        if hasattr(item, "_as_graph_element"):
            item = item._as_graph_element()
        if not isinstance(item, (Tensor, Operation)):
            raise UsageError(f"`{what}` must hold gf tensors or operations, got {type(item).__name__}")
        out.append(item)
    return out


def _graph_of_script(namespace: dict, outputs) -> Graph:
    """The graph --fetch names refer to: that of `outputs`, else the one Graph the script
    defines at module level, else the default graph."""
    if outputs is not None:
        return _tensor_list(outputs, "outputs")[0].graph
    graphs = {id(v): v for v in namespace.values() if isinstance(v, Graph)}
    return next(iter(graphs.values())) if len(graphs) == 1 else get_default_graph()


def _resolve_fetch(graph: Graph, name: str):
    """A fetch name is a tensor name ('add:0') or an op name ('add': its first output; an op
    without outputs, such as a training op, is run for its effect)."""
    try:
        element = graph.as_graph_element(name)
    except (LookupError, ValueError) as exc:
        raise UsageError(f"unknown fetch name '{name}': {exc}") from None
    if isinstance(element, Operation) and element.outputs:
        element = element.outputs[0]
    return element
