"""Saving and loading: one zip file holding `config.json` and `model.weights.npz` (never pickle).

The config names each layer's class and constructor arguments, so `load_model` rebuilds
built-in layers without the defining script; custom layers and functions are found through
`register_keras_serializable` or `custom_objects=`. Files are written to a temporary name
and moved into place, so an interrupted save never leaves a half-written model behind.
"""
from __future__ import annotations

import io
import json
import os
import threading
import zipfile
import zlib

import numpy as np

FORMAT = "graphflow.keras"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.weights.npz"

_registry: dict[str, object] = {}
_scope = threading.local()


# ---- registration of custom classes and functions ----
def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Decorator: make a custom layer/function loadable by name ("package>Name") in load_model."""
    def decorate(obj):
        key = f"{package}>{name or obj.__name__}"
        _registry[key] = obj
        obj._registered_name = key
        return obj

    return decorate


register = register_keras_serializable


class custom_object_scope:  # noqa: N801 - Keras' name
    """`with custom_object_scope({"MyLayer": MyLayer}):` makes the names resolvable while loading."""

    def __init__(self, custom_objects: dict | None):
        self.custom_objects = dict(custom_objects or {})

    def __enter__(self):
        stack = _scope.__dict__.setdefault("stack", [])
        stack.append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _scope.stack.pop()
        return False


def _lookup(class_name: str, registered_name: str | None):
    for objs in reversed(getattr(_scope, "stack", [])):
        for key in (registered_name, class_name):
            if key in objs:
                return objs[key]
    if registered_name in _registry:
        return _registry[registered_name]
    from . import layers, models

    builtin = getattr(layers, class_name, None) or getattr(models, class_name, None)
    if isinstance(builtin, type):
        return builtin
    return None


def serialize_callable(fn) -> dict:
    """A registered function as a reference load_model can resolve."""
    key = getattr(fn, "_registered_name", None)
    if key is None:
        raise ValueError(f"cannot save the function {getattr(fn, '__name__', fn)!r}: register it with "
                         "@gf.keras.saving.register_keras_serializable() so it can be found again when loading")
    return {"class_name": "function", "registered_name": key}


def deserialize_callable(config: dict):
    """The function a serialized reference names (custom_objects first, then the registry)."""
    fn = _lookup(config["registered_name"].split(">")[-1], config["registered_name"])
    if fn is None:
        raise ValueError(f"unknown function {config['registered_name']!r}: pass it in custom_objects= or "
                         "register it with @gf.keras.saving.register_keras_serializable()")
    return fn


# ---- layers and models ----
def serialize_layer(layer) -> dict:
    """A layer as {class_name, registered_name, config}."""
    return {"class_name": type(layer).__name__, "registered_name": type(layer).__dict__.get("_registered_name"),
            "config": layer.get_config()}


def deserialize_layer(config: dict, custom_objects: dict | None = None):
    """Rebuild a layer (or model) from serialize_layer's dict."""
    with custom_object_scope(custom_objects):
        cls = _lookup(config["class_name"], config.get("registered_name"))
        if cls is None:
            raise ValueError(f"unknown layer class {config['class_name']!r}: pass custom_objects="
                             f"{{'{config['class_name']}': {config['class_name']}}} or register the class with "
                             "@gf.keras.saving.register_keras_serializable()")
        from .models import Model

        if isinstance(cls, type) and issubclass(cls, Model) and "custom_objects" in \
                cls.from_config.__code__.co_varnames:
            return cls.from_config(config["config"], custom_objects)
        return cls.from_config(config["config"])


def _encode(struct, where: dict):
    from .layers.input_layer import KerasTensor

    if isinstance(struct, KerasTensor):
        return {"tensor": list(where[id(struct)])}
    if isinstance(struct, (list, tuple)):
        return {"list": [_encode(s, where) for s in struct], "tuple": isinstance(struct, tuple)}
    if isinstance(struct, dict):
        return {"dict": {k: _encode(v, where) for k, v in struct.items()}}
    return {"value": struct}


def _decode(enc: dict, produced: dict):
    if "tensor" in enc:
        node, index = enc["tensor"]
        return produced[node][index]
    if "list" in enc:
        items = [_decode(e, produced) for e in enc["list"]]
        return tuple(items) if enc.get("tuple") else items
    if "dict" in enc:
        return {k: _decode(v, produced) for k, v in enc["dict"].items()}
    return enc["value"]


def functional_config(model) -> dict:
    """The layers (once each) and the call nodes of a functional model, in replay order."""
    from . import tree

    names = [layer.name for layer in model.layers]
    if len(set(names)) != len(names):
        raise ValueError(f"model '{model.name}' has several layers with the same name; give them unique names "
                         "to save it")
    where, nodes = {}, []
    for pos, node in enumerate(model._nodes):
        nodes.append({"layer": node.layer.name, "inputs": _encode(node.inputs, where), "args": list(node.args),
                      "kwargs": node.kwargs})
        for i, t in enumerate(tree.flatten(node.outputs)):
            where[id(t)] = (pos, i)
    return {"name": model.name, "trainable": model.trainable,
            "layers": [serialize_layer(layer) for layer in model.layers], "nodes": nodes,
            "inputs": _encode(model._inputs_struct, where), "outputs": _encode(model._outputs_struct, where)}


def functional_from_config(config: dict, custom_objects=None):
    """Rebuild a functional model by replaying its saved call nodes."""
    from . import tree
    from .layers.input_layer import InputLayer
    from .models.functional import Functional

    layers = {c["config"]["name"]: deserialize_layer(c, custom_objects) for c in config["layers"]}
    produced = {}
    for pos, node in enumerate(config["nodes"]):
        layer = layers[node["layer"]]
        if isinstance(layer, InputLayer):
            produced[pos] = [layer.output]
            continue
        outs = layer(_decode(node["inputs"], produced), *node["args"], **node["kwargs"])
        produced[pos] = tree.flatten(outs)
    return Functional(_decode(config["inputs"], produced), _decode(config["outputs"], produced),
                      name=config.get("name"), trainable=config.get("trainable", True))


# ---- files ----
def _write_atomically(path: str, write) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _npz_bytes(arrays: list[np.ndarray], names: list[str]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"{i:04d}_{n.replace('/', '.')}": a for i, (a, n) in enumerate(zip(arrays, names))})
    return buf.getvalue()


def _read_npz(data, path: str) -> list[np.ndarray]:
    try:
        with np.load(data, allow_pickle=False) as npz:
            keys = sorted(npz.files, key=lambda k: int(k.split("_", 1)[0]))
            return [npz[k] for k in keys]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise ValueError(f"{path}: the weights are unreadable (not a graphflow weights file, or truncated): "
                         f"{exc}") from None


def _compile_config(model) -> dict | None:
    if not model.compiled:
        return None
    from . import losses, optimizers

    args = model._compile_args
    loss = args["loss"]
    if not isinstance(loss, (str, list, tuple)):
        loss = losses.serialize(losses.get(loss))
    if not all(isinstance(m, str) for m in args["metrics"]):
        return None
    return {"optimizer": optimizers.serialize(model.optimizer), "loss": loss, "metrics": args["metrics"],
            "loss_weights": args["loss_weights"]}


def save_model(model, filepath) -> None:
    """Write `model` (architecture, weights, compile arguments) to one zip file at `filepath`."""
    path = os.fspath(filepath)
    runtime = model._ensure_runtime()
    config = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "model": serialize_layer(model), "compile": _compile_config(model),
              "input_specs": [[list(s), d.name] for _, s, d in model._input_specs() or
                              [(None, ph.shape, ph.dtype) for ph in runtime.inputs]],
              "weights": [w.path for w in model.weights]}
    text = json.dumps(config, indent=1)
    blob = _npz_bytes(model.get_weights(), config["weights"])

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(CONFIG_NAME, text)
            zf.writestr(WEIGHTS_NAME, blob)

    _write_atomically(path, write)


def _open_model_file(path: str) -> tuple[dict, bytes]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if CONFIG_NAME not in names or WEIGHTS_NAME not in names:
                raise ValueError(f"{path}: not a graphflow model file: the archive has no {CONFIG_NAME} and "
                                 f"{WEIGHTS_NAME} (it holds {names[:5]})")
            text, blob = zf.read(CONFIG_NAME), zf.read(WEIGHTS_NAME)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a graphflow model file, or a truncated/corrupted one "
                         f"(it is not a readable zip archive: {exc})") from None
    try:
        config = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {CONFIG_NAME} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path}: not a graphflow model file ({CONFIG_NAME} does not say format '{FORMAT}')")
    return config, blob


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True):  # noqa: A002 - Keras' name
    """Rebuild a model saved with `model.save(filepath)`, with its weights (and compiled, if it was)."""
    path = os.fspath(filepath)
    config, blob = _open_model_file(path)
    with custom_object_scope(custom_objects):
        model = deserialize_layer(config["model"], custom_objects)
        if model._input_specs() is None and config.get("input_specs"):
            shapes = [tuple(s) for s, _ in config["input_specs"]]
            model._build_input_shape = shapes[0] if len(shapes) == 1 else shapes
        weights = _read_npz(io.BytesIO(blob), path)
        if len(weights) != len(model.weights):
            raise ValueError(f"{path}: the file holds {len(weights)} weight arrays but the rebuilt model "
                             f"'{model.name}' has {len(model.weights)}")
        model._ensure_runtime()
        model.set_weights(weights)
        if compile and config.get("compile"):
            from . import losses, optimizers

            c = config["compile"]
            loss = c["loss"] if isinstance(c["loss"], (str, list)) else (
                deserialize_callable(c["loss"]) if c["loss"].get("class_name") == "function" else losses.get(c["loss"]))
            model.compile(optimizer=optimizers.get(c["optimizer"]), loss=loss, metrics=c["metrics"],
                          loss_weights=c.get("loss_weights"))
    return model


def save_weights(model, filepath) -> None:
    """Write the weights (Keras order) as an .npz archive (name it e.g. "model.weights.npz"; the
    format is npz whatever the name says)."""
    path = os.fspath(filepath)
    blob = _npz_bytes(model.get_weights(), [w.path for w in model.weights])
    _write_atomically(path, lambda f: f.write(blob))


def load_weights(model, filepath) -> None:
    """Load weights written by `save_weights` (or the weights inside a `save` file) into `model`."""
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if WEIGHTS_NAME in zf.namelist():
                _, blob = _open_model_file(path)
                path_data = io.BytesIO(blob)
            else:
                path_data = path
    else:
        path_data = path
    weights = _read_npz(path_data, path)
    model._ensure_runtime()
    if len(weights) != len(model.weights):
        raise ValueError(f"{path}: the file holds {len(weights)} weight arrays but model '{model.name}' has "
                         f"{len(model.weights)}")
    model.set_weights(weights)
