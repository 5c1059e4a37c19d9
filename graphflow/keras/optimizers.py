"""Keras optimizers mapped onto the TF1-style `gf.train` optimizers (same update rules).

Keras' Adam is TF1's Adam with epsilon 1e-7; Keras' SGD momentum `v = m*v - lr*g; w += v`
equals TF1's `a = m*a + g; w -= lr*a` for a constant learning rate (Nesterov likewise).
"""
from __future__ import annotations

import numpy as np

import graphflow as gf


class Optimizer:
    """Base class: `apply_gradients(pairs)` adds the update ops to the gradients' graph."""

    def __init__(self, learning_rate: float, name: str):
        self.learning_rate = float(learning_rate)
        self.name = name

    def _train_optimizer(self):
        raise NotImplementedError

    def apply_gradients(self, grads_and_vars):
        """The training op applying `(gradient, variable)` pairs (a fresh gf.train optimizer per graph)."""
        self._applied = self._train_optimizer()
        self._applied_vars = [v for _, v in grads_and_vars]
        return self._applied.apply_gradients(list(grads_and_vars))

    def initial_slot_values(self) -> dict:
        """Slot values to set after the slots' own initializers ran, where Keras starts elsewhere than TF1."""
        return {}

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SGD(Optimizer):
    """Keras SGD: plain gradient descent, or with (Nesterov) momentum."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD"):
        super().__init__(learning_rate, name)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _train_optimizer(self):
        if self.momentum == 0.0:
            return gf.train.GradientDescentOptimizer(self.learning_rate)
        if self.nesterov:
            return gf.train.MomentumOptimizer(self.learning_rate, self.momentum, use_nesterov=True)
        return gf.train.MomentumOptimizer(self.learning_rate, self.momentum)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Keras Adam (the TF1 update with epsilon 1e-7 by default)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="adam"):
        super().__init__(learning_rate, name)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _train_optimizer(self):
        return gf.train.AdamOptimizer(self.learning_rate, self.beta_1, self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """Keras RMSprop (the TF1 update with the mean square starting at zero)."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, name="rmsprop"):
        super().__init__(learning_rate, name)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)

    def _train_optimizer(self):
        return gf.train.RMSPropOptimizer(self.learning_rate, decay=self.rho, momentum=self.momentum,
                                         epsilon=self.epsilon)

    def initial_slot_values(self):
        # TF1 starts the mean square at one, Keras at zero; the update rules are otherwise the same.
        slots = [self._applied.get_slot(v, "rms") for v in self._applied_vars]
        return {s: np.zeros(s.shape, s.dtype) for s in slots if s is not None}

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon}


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier) -> Optimizer:
    """An optimizer from a name ("adam", "sgd", "rmsprop"), an instance, or a serialized dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; expected one of {sorted(_BY_NAME)} or an instance")
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise TypeError(f"cannot interpret {identifier!r} as an optimizer")


def serialize(optimizer: Optimizer) -> dict:
    """An optimizer as {class_name, config}."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
