"""Keras callbacks: the hook base class, History, EarlyStopping, ModelCheckpoint, CSVLogger, ProgbarLogger."""
from __future__ import annotations

import csv
import math
import os
import sys
import warnings

import numpy as np

from .progbar import Progbar


class Callback:
    """Base class: override any of the Keras hooks; `self.model` and `self.params` are set by fit."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params: dict):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)  # Keras' older batch hooks still see training batches

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _has_hook(cb, hook: str) -> bool:
    """`cb` does something in `hook`: a Callback subclass (or instance) overriding the base no-op,
    or any other object with that method."""
    if not isinstance(cb, Callback):
        return hasattr(cb, hook)
    return hook in vars(cb) or getattr(type(cb), hook) is not getattr(Callback, hook)


class CallbackList:
    """Dispatches each hook to every callback in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        # fit skips the per-batch hooks, and the running logs they would see, when no callback has one
        self.batch_hooks = any(_has_hook(cb, h) for cb in self.callbacks for h in _BATCH_HOOKS)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)
        callbacks = self.callbacks

        def dispatch(*args, **kwargs):
            for cb in callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return dispatch


class History(Callback):
    """Records each epoch's logs: `history.history["loss"]`, `["val_accuracy"]`, ..."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        self.model.history = self


class ProgbarLogger(Callback):
    """Prints one progress line per epoch (see gf.keras.progbar); added by fit when verbose > 0."""

    def __init__(self, verbose: int = 1, stream=None):
        super().__init__()
        self.verbose, self.stream, self.bar = verbose, stream, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = Progbar(self.params["steps"], prefix=f"Epoch {epoch + 1}/{self.params['epochs']} ",
                           verbose=self.verbose, stream=self.stream if self.stream is not None else sys.stdout)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self.bar.finish(logs or {})


def _monitor_op(monitor: str, mode: str):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall")) else "min"
    return (np.greater, -math.inf) if mode == "max" else (np.less, math.inf)


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by `min_delta` for `patience` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.monitor_op, self._initial = _monitor_op(monitor, mode)
        self.min_delta = abs(float(min_delta)) * (1 if self.monitor_op is np.greater else -1)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = self._initial, None

    def _improved(self, value, reference) -> bool:
        return bool(self.monitor_op(value - self.min_delta, reference))

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping: the monitored metric '{self.monitor}' is not in the logs "
                          f"(available: {', '.join(sorted(logs or {}))})", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (or its weights) after each epoch to `filepath.format(epoch=..., **logs)`."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        super().__init__()
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.monitor_op, self.best = _monitor_op(monitor, mode)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"ModelCheckpoint: can save the best model only with '{self.monitor}' available, "
                              "skipping", stacklevel=2)
                return
            if not self.monitor_op(current, self.best):
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)


class CSVLogger(Callback):
    """Appends one row per epoch (epoch, then each log key) to a CSV file."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self.keys, self._file, self._writer = None, None, None

    def on_train_begin(self, logs=None):
        has_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._write_header = not has_rows
        self.keys, self._writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys, delimiter=self.sep)
            if self._write_header:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
