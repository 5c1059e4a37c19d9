"""compile / fit / evaluate / predict: one training graph per model, run batch by batch.

`fit` adds ONE training computation to the model's graph (the training-mode trace, the
loss, `gf.gradients`, the optimizer update and the BatchNormalization moving-statistics
assignments) and runs it per batch through one `Session.make_callable`; batch dimensions
are None, so the last partial batch runs through the same compiled plan.
"""
from __future__ import annotations

import math

import numpy as np

import graphflow as gf

from .. import callbacks as callbacks_module
from .. import losses, metrics, optimizers, rng, tree
from ..layers.normalization import UPDATE_OPS
from ..progbar import Progbar


class _Step:
    """A compiled callable plus the log names of the scalars it returns first."""

    def __init__(self, fn, names: list[str]):
        self.fn, self.names = fn, names


class Trainer:
    """The training half of Model (mixed into it)."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.history = None
        self._compile_args: dict = {}
        self._steps: dict = {}

    def _reset_compiled_functions(self) -> None:
        self._steps = {}

    # ---- compile ----
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None) -> None:
        """Choose the optimizer, the loss (one, or a list with one per output; `loss_weights` scale them
        in the total) and the metrics."""
        if loss is None:
            raise ValueError(f"compile: model '{self.name}' needs a loss (e.g. loss='sparse_categorical_crossentropy')")
        self.optimizer = optimizers.get(optimizer)
        self.loss = loss
        self._losses = [losses.get(l) for l in loss] if isinstance(loss, (list, tuple)) else [losses.get(loss)]
        self._loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        self._metric_ids = list(metrics or [])
        self._compile_args = {"optimizer": optimizer, "loss": loss, "metrics": list(metrics or []),
                              "loss_weights": self._loss_weights}
        self.compiled = True
        self._steps = {}

    def _check_compiled(self):
        if not self.compiled:
            raise RuntimeError(f"model '{self.name}' must be compiled before training or evaluation: call "
                               "model.compile(optimizer=..., loss=...)")

    # ---- data ----
    def _input_arrays(self, x, runtime) -> list[np.ndarray]:
        if isinstance(x, dict):
            missing = [n for n in runtime.input_names if n not in x]
            if missing:
                raise ValueError(f"model '{self.name}': no data for input(s) {missing}; got keys {sorted(x)}")
            leaves = [x[n] for n in runtime.input_names]
        else:
            leaves = array_list(x, len(runtime.inputs))
        if len(leaves) != len(runtime.inputs):
            raise ValueError(f"model '{self.name}' expects {len(runtime.inputs)} input array(s), got {len(leaves)}")
        return [np.asarray(a, dtype=ph.dtype) if ph.dtype.kind == "f" or np.asarray(a).dtype.kind in "iub"
                else np.asarray(a) for a, ph in zip(leaves, runtime.inputs)]

    def _target_arrays(self, y, n_outputs: int) -> list[np.ndarray]:
        leaves = [y[k] for k in self.output_names] if isinstance(y, dict) else array_list(y, n_outputs)
        if len(leaves) != n_outputs:
            raise ValueError(f"model '{self.name}' has {n_outputs} output(s) but got {len(leaves)} target array(s)")
        out = []
        for a, loss in zip(leaves, self._loss_per_output(n_outputs)):
            a = np.asarray(a)
            out.append(a.astype(np.int32) if loss.sparse else np.asarray(a, dtype=np.float32))
        return out

    def _loss_per_output(self, n_outputs: int) -> list:
        if len(self._losses) == 1:
            return self._losses * n_outputs
        if len(self._losses) != n_outputs:
            raise ValueError(f"compile got {len(self._losses)} losses for a model with {n_outputs} outputs")
        return self._losses

    # ---- graph construction ----
    def _loss_and_metrics(self, outputs, y_arrays):
        """Target placeholders, the total loss, and the metric tensors with their log names."""
        targets = [gf.placeholder(gf.int32 if a.dtype.kind == "i" else gf.float32, (None,) + a.shape[1:],
                                  name="target") for a in y_arrays]
        names, tensors, total = ["loss"], [], None
        weights = self._loss_weights or [1.0] * len(outputs)
        if len(weights) != len(outputs):
            raise ValueError(f"compile got {len(weights)} loss_weights for a model with {len(outputs)} outputs")
        for i, (out, target, loss) in enumerate(zip(outputs, targets, self._loss_per_output(len(outputs)))):
            value = loss(target, out)
            weighted = value if weights[i] == 1.0 else value * weights[i]
            total = weighted if total is None else total + weighted
            prefix = f"{self.output_names[i]}_" if len(outputs) > 1 else ""
            if prefix:  # Keras logs each output's own loss too
                names.append(prefix + "loss")
                tensors.append(value)
            for ident in self._metric_ids:
                name, fn = metrics.get(ident, loss, out.shape, target.shape)
                names.append(prefix + name)
                tensors.append(fn(target, out))
        return targets, [total] + tensors, names

    @property
    def output_names(self) -> list[str]:
        outs = getattr(self, "outputs", None)
        if outs:
            return [t.node.layer.name for t in outs]
        return [f"output_{i}" for i in range(len(self._ensure_runtime().outputs))]

    def _train_step(self, runtime, y_arrays) -> _Step:
        key = ("train",) + tuple((a.dtype.kind, a.shape[1:]) for a in y_arrays)
        step = self._steps.get(key)
        if step is not None:
            return step
        g = runtime.graph
        with g.as_default(), g.name_scope("training"):
            n_updates = len(g.get_collection(UPDATE_OPS))
            if any(layer._is_training_dependent() for layer in [self] + self._all_layers()):
                outputs = tree.flatten(self._trace(self._pack_inputs(runtime.inputs), training=True))
            else:
                outputs = runtime.outputs
            updates = g.get_collection(UPDATE_OPS)[n_updates:]
            targets, scalars, names = self._loss_and_metrics(outputs, y_arrays)
            variables = [w.variable(g) for w in self.trainable_weights]
            grads = gf.gradients(scalars[0], variables)
            pairs = [(gr, v) for gr, v in zip(grads, variables) if gr is not None]
            if not pairs:
                raise ValueError(f"model '{self.name}': no trainable weight affects the loss")
            train_op = self.optimizer.apply_gradients(pairs)
        runtime.initialize_new_variables()
        for var, value in self.optimizer.initial_slot_values().items():
            runtime.session._set_variable(var, value)
        fn = runtime.session.make_callable(scalars + [train_op] + updates, feed_list=runtime.inputs + targets)
        step = self._steps[key] = _Step(fn, names)
        return step

    def _test_step(self, runtime, y_arrays) -> _Step:
        key = ("test",) + tuple((a.dtype.kind, a.shape[1:]) for a in y_arrays)
        step = self._steps.get(key)
        if step is None:
            g = runtime.graph
            with g.as_default(), g.name_scope("evaluation"):
                targets, scalars, names = self._loss_and_metrics(runtime.outputs, y_arrays)
            fn = runtime.session.make_callable(scalars, feed_list=runtime.inputs + targets)
            step = self._steps[key] = _Step(fn, names)
        return step

    # ---- loops ----
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0):
        """Train for `epochs` epochs; returns the History (per-epoch loss, metrics and val_ entries)."""
        self._check_compiled()
        batch_size = int(batch_size or 32)
        verbose = _verbosity(verbose)
        runtime = self._runtime_for_run(x)
        xs = self._input_arrays(x, runtime)
        ys = self._target_arrays(y, len(runtime.outputs))
        n = _num_samples(xs + ys, self.name, require=True)
        val = None
        if validation_data is not None:
            vx, vy = validation_data[0], validation_data[1]
            val = (self._input_arrays(vx, runtime), self._target_arrays(vy, len(runtime.outputs)))
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
            cut = int(math.floor(n * (1.0 - validation_split)))
            if cut == 0 or cut == n:
                raise ValueError(f"validation_split={validation_split} leaves no training or no validation "
                                 f"samples out of {n}")
            val = ([a[cut:] for a in xs], [a[cut:] for a in ys])
            xs, ys, n = [a[:cut] for a in xs], [a[:cut] for a in ys], cut
        step = self._train_step(runtime, ys)
        n_scalars = len(step.names)
        steps = max(1, math.ceil(n / batch_size))
        history = callbacks_module.History()
        cbs = list(callbacks or []) + [history]
        if verbose:
            cbs.append(callbacks_module.ProgbarLogger(verbose))
        cb = callbacks_module.CallbackList(cbs, self, {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        cb.on_train_begin()
        logs: dict = {}
        fn, names, batch_hooks = step.fn, step.names, cb.batch_hooks
        for epoch in range(initial_epoch, epochs):
            cb.on_epoch_begin(epoch)
            data = xs + ys
            if shuffle:  # one gather per epoch, then every batch is a contiguous view
                order = rng.generator().permutation(n)
                data = [a[order] for a in data]
            totals, seen = [0.0] * n_scalars, 0   # sample-weighted sums (float64) of the batch values
            runtime.claim()  # a callback may have run a model sharing these layers
            for b in range(steps):
                if batch_hooks:
                    cb.on_train_batch_begin(b)
                    runtime.claim()
                batch = [a[b * batch_size:(b + 1) * batch_size] for a in data]
                values = fn(*batch)
                k = len(batch[0])
                totals = [t + k * float(v) for t, v in zip(totals, values)]
                seen += k
                if batch_hooks:
                    logs = {name: t / seen for name, t in zip(names, totals)}
                    cb.on_train_batch_end(b, logs)
                if self.stop_training:
                    break
            logs = {name: t / seen for name, t in zip(names, totals)}
            if val is not None:
                logs.update({"val_" + k: v for k, v in self._evaluate_arrays(runtime, *val, batch_size).items()})
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end(logs)
        return history

    def _evaluate_arrays(self, runtime, xs, ys, batch_size, verbose=0) -> dict:
        runtime.claim()
        step = self._test_step(runtime, ys)
        batch_size = int(batch_size or 32)
        n = _num_samples(xs + ys, self.name, require=True)
        steps = math.ceil(n / batch_size)
        bar = Progbar(steps, verbose=_verbosity(verbose))
        totals, logs = np.zeros(len(step.names)), {}
        for b in range(steps):
            batch = [a[b * batch_size:(b + 1) * batch_size] for a in xs + ys]
            totals += len(batch[0]) * np.asarray(step.fn(*batch), dtype=np.float64)
            logs = {name: float(v) for name, v in zip(step.names, totals / min(n, (b + 1) * batch_size))}
            bar.update(b + 1, logs)
        bar.finish(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose=0, return_dict=False):
        """The loss (and metrics) on (x, y) in inference mode: a float, or [loss, metric, ...]."""
        self._check_compiled()
        runtime = self._runtime_for_run(x)
        logs = self._evaluate_arrays(runtime, self._input_arrays(x, runtime),
                                     self._target_arrays(y, len(runtime.outputs)), batch_size, verbose)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=32, verbose=0):
        """The model's outputs for `x`, computed in batches of `batch_size` (inference mode)."""
        runtime = self._runtime_for_run(x)
        xs = self._input_arrays(x, runtime)
        n = _num_samples(xs, self.name)
        batch_size = int(batch_size or 32)
        fn = runtime.predict_function()
        steps = math.ceil(n / batch_size)
        bar = Progbar(steps, verbose=_verbosity(verbose))
        chunks = []
        for b in range(steps):
            chunks.append(fn(*[a[b * batch_size:(b + 1) * batch_size] for a in xs]))
            bar.update(b + 1, {})
        bar.finish({})
        if not chunks:
            return tree.pack_like(runtime.output_struct,
                                  [np.zeros((0,) + tuple(t.shape[1:]), t.dtype) for t in runtime.outputs])
        outs = [np.concatenate([c[i] for c in chunks]) for i in range(len(runtime.outputs))]
        return tree.pack_like(runtime.output_struct, outs)

    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns the loss (or [loss, metrics...])."""
        self._check_compiled()
        runtime = self._runtime_for_run(x)
        ys = self._target_arrays(y, len(runtime.outputs))
        step = self._train_step(runtime, ys)
        values = step.fn(*self._input_arrays(x, runtime), *ys)[:len(step.names)]
        return float(values[0]) if len(values) == 1 else [float(v) for v in values]

    def test_on_batch(self, x, y):
        """The loss (or [loss, metrics...]) on one batch, in inference mode."""
        return self.evaluate(x, y, batch_size=_first_len(x))

    def predict_on_batch(self, x):
        """The outputs for one batch."""
        return self.predict(x, batch_size=_first_len(x))


def _verbosity(verbose) -> int:
    """Keras' verbose values: 0, 1, 2, or "auto" (= 1)."""
    return 1 if verbose == "auto" else int(verbose)


def _first_len(x) -> int:
    leaves = list(x.values()) if isinstance(x, dict) else array_list(x, None)
    return max(1, len(leaves[0]))


def array_list(data, expected: int | None) -> list:
    """The arrays of `data` for a model with `expected` inputs (or outputs): one array (which may be a
    nested Python list), or a list/tuple of arrays, one per input."""
    is_seq = isinstance(data, (list, tuple))
    if is_seq and all(hasattr(a, "shape") for a in data) and (expected is None or len(data) == expected):
        return list(data)
    if expected is not None and expected > 1 and is_seq:
        return list(data)
    return [data]


def _num_samples(arrays, name, require: bool = False) -> int:
    sizes = {len(a) for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"model '{name}': the input and target arrays have different numbers of samples "
                         f"{sorted(sizes)}")
    n = sizes.pop() if sizes else 0
    if require and n == 0:
        raise ValueError(f"model '{name}': got no samples (empty input arrays)")
    return n
