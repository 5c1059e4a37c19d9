"""gf.keras: a Keras-like front end whose models are graphflow graphs.

Layers, Sequential/functional/subclassed models, compile/fit/evaluate/predict, callbacks
and saving follow Keras 3; weights use Keras' order and shapes, so they can be copied to
and from Keras with get_weights/set_weights. Every model owns a `gf.Graph` (`model.graph`)
and a `gf.Session`; training runs one compiled graph per batch.
"""
from . import activations, callbacks, initializers, layers, losses, metrics, models, optimizers, saving, utils
from .layers import Input
from .models import Model, Sequential

__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "initializers", "layers", "losses",
           "metrics", "models", "optimizers", "saving", "utils"]
