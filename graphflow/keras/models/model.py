"""`gf.keras.Model`: a layer that owns a Graph and a Session.

The model's graph holds one placeholder per input, the inference trace of the layers, and
(once `fit` runs) the training trace, loss, gradients and optimizer update. Every weight
becomes one Variable of that graph whose live value sits in the model's Session.
"""
from __future__ import annotations

import numpy as np

import graphflow as gf

from .. import tree
from ..layers.base import Layer
from .training import Trainer


class GraphRuntime:
    """A model materialized as a graphflow graph: input placeholders, inference outputs, a Session."""

    def __init__(self, model: "Model", specs: list[tuple]):
        self.graph = gf.Graph()
        with self.graph.as_default():
            self.inputs = [gf.placeholder(dtype, shape, name=name) for name, shape, dtype in specs]
            self.input_names = [name for name, _, _ in specs]
            outputs = model._trace(model._pack_inputs(self.inputs), training=False)
        self.output_struct = outputs
        self.outputs = tree.flatten(outputs)
        self.session = gf.Session(graph=self.graph, opt_level=2)
        self._weights = [(w, w.variable(self.graph)) for w in model._all_weights()]
        self._predict_fn = None
        self.claim()

    def claim(self) -> None:
        """Make this session hold the live value of every weight of the model.

        A layer shared with another model (a nested or reused sub-model) may have been
        trained or set there since; its current value moves here before this model runs.
        """
        session = self.session
        for w, var in self._weights:
            home = w._home
            if home is None or home[0] is not session:
                session._set_variable(var, w.numpy())
                w.set_home(session, var)

    def initialize_new_variables(self) -> None:
        """Initialize the variables the optimizer just added (slots, step counters): one whose
        initial value is a constant source (zeros, a number) is set directly, the others by
        running their initializers (compiling a plan for a few fills costs more than the fills)."""
        store = self.session._store.values
        fresh = []
        for v in gf.global_variables(self.graph):
            if v.op.name in store:
                continue
            value = _constant_value(v.initial_value)
            if value is None:
                fresh.append(v.initializer)
            else:
                self.session._set_variable(v, value)
        if fresh:
            self.session.run(fresh)

    def predict_function(self):
        if self._predict_fn is None:
            self._predict_fn = self.session.make_callable(self.outputs, feed_list=self.inputs)
        return self._predict_fn


def _constant_value(t):
    """The value of `t` when its op is a constant source (no inputs, no state, no randomness), else None."""
    op = t.op
    d = op.op_def
    if op.inputs or op.control_inputs or d.stateful or d.random or d.kernel is None or len(op.outputs) != 1:
        return None
    try:
        value = d.kernel(**op.attrs)
    except Exception:  # noqa: BLE001 - the initializer's run then reports it, naming the op
        return None
    return value if isinstance(value, np.ndarray) and value.shape == tuple(t.shape) else None


class Model(Trainer, Layer):
    """A trainable stack of layers: functional (`Model(inputs, outputs)`), Sequential, or subclassed with call()."""

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional

            return object.__new__(Functional)
        return object.__new__(cls)

    def __init__(self, *, name: str | None = None, trainable: bool = True, **kwargs):
        Layer.__init__(self, name=name, trainable=trainable, **kwargs)
        Trainer.__init__(self)
        self._runtime: GraphRuntime | None = None
        self._build_input_shape = None
        self._user_build_started = False
        self.stop_training = False

    # ---- what subclasses may override ----
    def _input_specs(self, data=None) -> list[tuple] | None:
        """(name, batch shape, dtype) per input; from `build()` or, failing that, from sample data."""
        if self._build_input_shape is not None:
            shapes = self._build_input_shape
            shapes = [shapes] if _is_shape(shapes) else list(shapes)
            return [(f"input_{i}" if i else "input", tuple(s), self._default_input_dtype()) for i, s in
                    enumerate(shapes)]
        if data is None:
            return None
        from .training import array_list

        leaves = [np.asarray(a) for a in (list(data.values()) if isinstance(data, dict) else array_list(data, None))]
        return [(f"input_{i}" if i else "input", (None,) + tuple(a.shape[1:]), self._default_input_dtype())
                for i, a in enumerate(leaves)]

    def _default_input_dtype(self):
        return gf.float32

    def _pack_inputs(self, placeholders: list):
        return placeholders[0] if len(placeholders) == 1 else list(placeholders)

    def _trace(self, inputs, training: bool):
        """Add the forward computation to the current graph (subclassed models: their call())."""
        if self._accepts("training"):
            return self.call(inputs, training=training)
        return self.call(inputs)

    # ---- materialization ----
    @property
    def graph(self) -> gf.Graph:
        """The graphflow graph this model runs in (built on first use)."""
        return self._require_runtime().graph

    @property
    def session(self) -> gf.Session:
        return self._require_runtime().session

    def build(self, input_shape) -> None:
        """Build the model for inputs of `input_shape` (with the batch dimension, e.g. (None, 784)).
        The batch dimension is left open, so any batch size runs through the same graph."""
        def open_batch(shape):
            return (None,) + tuple(shape)[1:]

        self._build_input_shape = open_batch(input_shape) if _is_shape(input_shape) else \
            [open_batch(s) for s in input_shape]
        self._ensure_runtime()
        self.built = True

    def _ensure_runtime(self, data=None) -> GraphRuntime:
        if self._runtime is None:
            specs = self._input_specs(data)
            if specs is None:
                raise ValueError(f"model '{self.name}' has not been built yet: its input shape is unknown; call "
                                 "build(input_shape), give the first layer input_shape= (or start with "
                                 "gf.keras.Input(shape=...)), or call fit/predict on data first")
            if type(self).build is not Model.build and not self._user_build_started:
                # a subclass's own build() creates weights first; it usually ends in super().build()
                self._user_build_started = True
                shapes = [shape for _, shape, _ in specs]
                self.build(shapes[0] if len(shapes) == 1 else shapes)
                if self._runtime is not None:
                    return self._runtime
            self._runtime = GraphRuntime(self, specs)
            self.built = True
        return self._runtime

    @property
    def weights(self):
        """All weights in Keras order (building the model first when its input shape is known)."""
        if self._runtime is None and self._input_specs() is not None:
            self._ensure_runtime()
        return self._all_weights()

    def _require_runtime(self) -> GraphRuntime:
        return self._ensure_runtime()

    def _runtime_for_run(self, data=None) -> GraphRuntime:
        """The runtime, holding the current value of every weight (see GraphRuntime.claim)."""
        runtime = self._ensure_runtime(data)
        runtime.claim()
        return runtime

    def _invalidate_runtime(self) -> None:
        """Forget the graph (after the layer list changed); weights keep their current values."""
        if self._runtime is not None:
            for w in self.weights:
                w._value = w.numpy()
                w._home = None
            self._runtime = None
        self._reset_compiled_functions()

    def _all_layers(self) -> list[Layer]:
        """Every layer under this model, depth first."""
        out, stack = [], list(reversed(self._layers))
        while stack:
            layer = stack.pop()
            out.append(layer)
            stack.extend(reversed(layer._layers))
        return out

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called `name` (or at position `index` of `layers`)."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"model '{self.name}' has no layer named {name!r}; its layers are "
                         f"{[l.name for l in self.layers]}")

    def summary(self, line_length: int | None = None, print_fn=None) -> None:
        """Print the Keras-style table: layer (type), output shape, parameter count, then totals."""
        from .summary import format_summary

        self._require_runtime()
        text = format_summary(self, line_length or 65)
        (print_fn or print)(text)

    def get_config(self) -> dict:
        raise NotImplementedError(f"model '{self.name}' ({type(self).__name__}) is a subclassed model: implement "
                                  "get_config() and from_config() (and register the class with "
                                  "gf.keras.saving.register_keras_serializable) to save it whole, or use "
                                  "save_weights()")

    def save(self, filepath) -> None:
        """Write config + weights as one zip file (see gf.keras.saving)."""
        from ..saving import save_model

        save_model(self, filepath)

    def save_weights(self, filepath) -> None:
        from ..saving import save_weights

        save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        from ..saving import load_weights

        load_weights(self, filepath)


def _is_shape(s) -> bool:
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)
