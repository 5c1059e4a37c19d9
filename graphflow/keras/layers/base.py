"""The Layer contract (`__init__` / `build(input_shape)` / `call` / `get_config`) and layer weights.

A layer is independent of any graph. Its weights hold numpy values until a model owns
them; calling the layer on graphflow tensors adds its ops to the tensors' graph, and each
weight becomes one `gf.Variable` per graph it is used in (so the training and inference
traces of a model share variables). Calling it on symbolic `KerasTensor`s (functional API)
traces it into a throwaway graph to learn the output shapes and records a `Node`.
"""
from __future__ import annotations

import contextlib
import inspect
import re
import weakref

import numpy as np

import graphflow as gf

from graphflow.ops.operators import _OPERATORS as _TENSOR_OPERATORS

from .. import initializers, tree

_name_counts: dict[str, int] = {}


def unique_object_name(base: str) -> str:
    """Keras-style names: `dense`, `dense_1`, `dense_2`, ... (per process)."""
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def snake_case(name: str) -> str:
    """Keras' layer-name form of a class name: Conv2D -> conv2d."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


class Weight:
    """One layer weight: its value, and the Variable standing for it in each graph it is traced into.

    The live value sits in the session of the model that owns the weight (`home`); before a
    model owns it, in `_value`.
    """

    def __init__(self, layer: "Layer", name: str, value: np.ndarray, trainable: bool):
        self.layer = layer
        self.name = name
        self._value = value
        self.shape = tuple(value.shape)
        self.dtype = value.dtype
        self._trainable = trainable
        self._variables: "weakref.WeakKeyDictionary[gf.Graph, gf.Variable]" = weakref.WeakKeyDictionary()
        self._home = None  # (session, variable)

    @property
    def path(self) -> str:
        return f"{self.layer.name}/{self.name}"

    @property
    def trainable(self) -> bool:
        return self._trainable and self.layer.trainable

    def variable(self, graph: gf.Graph) -> gf.Variable:
        """This weight's Variable in `graph`, created (initialized to the current value) on first use."""
        var = self._variables.get(graph)
        if var is None:
            with graph.as_default():
                # a shape-inference graph needs no values: a fill keeps it from copying the weight
                initial = gf.zeros(self.shape, self.dtype) if _is_scratch(graph) else self.numpy()
                var = gf.Variable(initial, name=self.name, trainable=self._trainable)
            self._variables[graph] = var
        return var

    def _as_graph_element(self):
        return self.variable(gf.get_default_graph())._as_graph_element()

    def set_home(self, session: gf.Session, variable: gf.Variable) -> None:
        self._home = (session, variable)

    def numpy(self) -> np.ndarray:
        """The current value (a copy)."""
        if self._home is not None:
            session, var = self._home
            return session._get_variable(var)
        return self._value.copy()

    def assign(self, value) -> None:
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(f"weight '{self.path}' has shape {self.shape}, got a value of shape {value.shape}")
        value = value.astype(self.dtype)
        if self._home is not None:
            session, var = self._home
            session._set_variable(var, value)
        else:
            self._value = value

    def __repr__(self):
        return f"<Weight '{self.path}' shape={self.shape} dtype={self.dtype.name}>"

    __hash__ = object.__hash__


# A weight stands for its Variable in the graph being built, so it takes the tensor operators
# too (`inputs * self.gamma` in a custom layer).
for _name, _fn in _TENSOR_OPERATORS.items():
    setattr(Weight, _name, _fn)


class Layer:
    """Base class of every layer; subclasses override `build`, `call` and `get_config`."""

    input_dtype = gf.float32  # what a model feeds when this layer is its first (Embedding: int32)

    def __init__(self, name: str | None = None, trainable: bool = True, dtype="float32",
                 input_shape=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        self.__dict__.setdefault("_layers", [])
        self.name = name or unique_object_name(snake_case(type(self).__name__))
        self.trainable = trainable
        self.dtype = gf.dtypes.as_dtype(dtype)
        self.built = False
        self._own_weights: list[Weight] = []
        self._inbound_nodes: list = []
        self._batch_input_shape = None if input_shape is None else (None,) + tuple(input_shape)
        self._output_shape = None

    # ---- tracking of sub-layers assigned as attributes ----
    def __setattr__(self, name, value):
        layers = self.__dict__.setdefault("_layers", [])
        candidates = value if isinstance(value, (list, tuple)) else [value]
        for v in candidates:
            if isinstance(v, Layer) and v is not self and not any(v is l for l in layers):
                layers.append(v)
        object.__setattr__(self, name, value)

    # ---- the contract ----
    def build(self, input_shape) -> None:
        """Create the weights for inputs of `input_shape` (called once, on the first call)."""
        self.built = True

    def call(self, inputs, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs)")

    def get_config(self) -> dict:
        """The constructor arguments that rebuild this layer (JSON-serializable)."""
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable: bool = True,
                   name: str | None = None) -> Weight:
        """Create a weight whose initial value is drawn now, in numpy (Keras 3's signature; the default
        initializer is glorot_uniform for floats and zeros otherwise, as in Keras)."""
        if shape is None:
            raise ValueError(f"{self.name}: add_weight needs a shape")
        dtype = gf.dtypes.as_dtype(dtype or self.dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dtype.kind == "f" else "zeros"
        name = name or f"variable_{len(self._own_weights)}"
        shape = tuple(int(d) for d in shape)
        value = np.asarray(initializers.get(initializer)(shape, dtype), dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"{self.name}: initializer for '{name}' returned shape {value.shape}, expected {shape}")
        w = Weight(self, name, value, trainable)
        self._own_weights.append(w)
        return w

    # ---- calling ----
    def __call__(self, inputs, *args, **kwargs):
        from .input_layer import KerasTensor

        leaves = tree.flatten(inputs)
        if any(isinstance(t, KerasTensor) for t in leaves):
            return self._symbolic_call(inputs, args, kwargs)
        if all(isinstance(t, np.ndarray) for t in leaves):
            return self._eager_call(inputs, args, kwargs)
        return self._graph_call(inputs, args, kwargs)

    def _eager_call(self, inputs, args, kwargs):
        """Call on numpy arrays (`model(x)`, `layer(x)`): trace into a one-off graph and run it."""
        graph = gf.Graph()
        with graph.as_default():
            fed = tree.map_structure(lambda a: gf.placeholder(_eager_dtype(a), a.shape), inputs)
            outputs = self._graph_call(fed, args, kwargs)
            with gf.Session(graph=graph, opt_level=0) as session:  # run once: no compilation
                session.run(gf.global_variables_initializer())
                return session.run(outputs, dict(zip(tree.flatten(fed), tree.flatten(inputs))))

    def _graph_call(self, inputs, args, kwargs):
        inputs = tree.map_structure(_as_tensor, inputs)
        graph = tree.flatten(inputs)[0].graph
        if "training" in kwargs and not self._accepts("training"):
            kwargs = {k: v for k, v in kwargs.items() if k != "training"}
        with graph.as_default(), graph.name_scope(self.name):
            if not self.built:
                self.build(tree.map_structure(lambda t: t.shape, inputs))
                self.built = True
            for w in self._own_weights:
                w.variable(graph)
            outputs = self.call(inputs, *args, **kwargs)
        self._output_shape = tree.map_structure(lambda t: _as_tensor(t).shape, outputs)
        return outputs

    def _symbolic_call(self, inputs, args, kwargs):
        from .input_layer import KerasTensor, Node

        with self._scratch_graph():
            fed = tree.map_structure(
                lambda t: gf.placeholder(t.dtype, t.shape) if isinstance(t, KerasTensor) else t, inputs)
            outs = self._graph_call(fed, args, dict(kwargs))
        outputs = tree.map_structure(lambda t: KerasTensor(t.shape, t.dtype), outs)
        Node(self, inputs, outputs, args, kwargs)
        return outputs

    @contextlib.contextmanager
    def _scratch_graph(self):
        """A throwaway default graph for shape inference; the weights forget their Variables in it after."""
        scratch = gf.Graph()
        scratch._keras_scratch = True
        try:
            with scratch.as_default():
                yield scratch
        finally:
            for w in self._all_weights():
                w._variables.pop(scratch, None)

    @classmethod
    def _accepts(cls, arg: str) -> bool:
        cache = cls.__dict__.get("_accepts_cache")
        if cache is None:
            cache = {}
            type.__setattr__(cls, "_accepts_cache", cache)
        if arg not in cache:
            params = inspect.signature(cls.call).parameters
            cache[arg] = arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        return cache[arg]

    @classmethod
    def _is_training_dependent(cls) -> bool:
        """Whether call() may differ between training and inference: it takes a `training` argument."""
        return cls._accepts("training")

    def compute_output_shape(self, input_shape):
        """The output shape for inputs of `input_shape`, found by tracing into a scratch graph."""
        with self._scratch_graph():
            is_shape = lambda s: isinstance(s, tuple) and all(d is None or isinstance(d, int) for d in s)  # noqa: E731
            fed = (gf.placeholder(self.dtype, input_shape) if is_shape(input_shape)
                   else [gf.placeholder(self.dtype, s) for s in input_shape])
            out = self._graph_call(fed, (), {})
        return tree.map_structure(lambda t: t.shape, out)

    # ---- weights ----
    @property
    def layers(self) -> list["Layer"]:
        return list(self._layers)

    def _all_weights(self) -> list[Weight]:
        own = [w for w in self._own_weights if w._trainable] + [w for w in self._own_weights if not w._trainable]
        out, seen = [], set()
        for w in own + [w for layer in self._layers for w in layer.weights]:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    @property
    def weights(self) -> list[Weight]:
        """All weights in Keras order: own trainable, own non-trainable, then the sub-layers'."""
        return self._all_weights()

    @property
    def trainable_weights(self) -> list[Weight]:
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Weight]:
        return [w for w in self.weights if not w.trainable]

    # Keras 3's names for the same lists
    variables = property(lambda self: self.weights)
    trainable_variables = property(lambda self: self.trainable_weights)
    non_trainable_variables = property(lambda self: self.non_trainable_weights)

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights) -> None:
        mine = self.weights
        weights = list(weights)
        if len(weights) != len(mine):
            raise ValueError(f"layer '{self.name}' expects {len(mine)} weight arrays "
                             f"({', '.join(w.name + str(w.shape) for w in mine) or 'none'}), got {len(weights)}")
        for w, value in zip(mine, weights):
            if tuple(np.shape(value)) != w.shape:
                raise ValueError(f"layer '{self.name}': weight '{w.name}' has shape {w.shape}, got an array of "
                                 f"shape {tuple(np.shape(value))}")
        for w, value in zip(mine, weights):
            w.assign(value)

    def count_params(self) -> int:
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    @property
    def output_shape(self):
        return self._output_shape

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _eager_dtype(array: np.ndarray):
    """float32 for any float array (Keras' floatx), int32 for ints, bool for bools."""
    return {"f": gf.float32, "i": gf.int32, "u": gf.int32, "b": gf.bool}.get(array.dtype.kind, gf.float32)


def _is_scratch(graph) -> bool:
    return getattr(graph, "_keras_scratch", False)


def _as_tensor(value):
    if isinstance(value, gf.Tensor):
        return value
    from graphflow.ops.build import convert_to_tensor

    return convert_to_tensor(value)
