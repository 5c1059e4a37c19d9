"""Checkpoints: variable values saved as one `.npz` of plain arrays plus a JSON index.

Never pickle: arrays go through `np.savez` and are read back with `allow_pickle=False`,
everything else is JSON. A save writes each file under a temporary name in the target
directory and `os.replace`s it into place, data first and index last; the data file's
name carries a hash of its contents and the index records that name and hash, so an
interrupted save leaves either the old checkpoint or the new one, never a mix, and a
damaged file is reported as `DataLossError` instead of a numpy or zipfile traceback.

Layout for `save(sess, "dir/model")`:
    dir/model.index.json            {"format", "version", "data", "sha256", "variables": {name: {key, shape, dtype}}}
    dir/model.data-<hash>.npz       one array per variable
    dir/checkpoint                  JSON: the latest checkpoint and the ones kept (for latest_checkpoint)
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from ..errors import DataLossError, InvalidArgumentError, NotFoundError
from ..graph import shape_str
from ..variables import Variable, global_variables

FORMAT = "graphflow-checkpoint"
VERSION = 1
INDEX_SUFFIX = ".index.json"
STATE_FILE = "checkpoint"


# ---- files ----

def _atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the complete new one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _prefix_of(path: str) -> str:
    path = os.fspath(path)
    return path[: -len(INDEX_SUFFIX)] if path.endswith(INDEX_SUFFIX) else path


def _read_index(prefix: str) -> dict:
    index_path = prefix + INDEX_SUFFIX
    try:
        with open(index_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        hint = " (it is a directory: pass gf.train.latest_checkpoint(dir))" if os.path.isdir(prefix) else ""
        raise NotFoundError(f"checkpoint '{prefix}' not found: there is no file '{index_path}'{hint}") from None
    except OSError as exc:
        raise NotFoundError(f"cannot read the checkpoint index '{index_path}': {exc}") from None
    try:
        index = json.loads(raw.decode("utf-8"))
        ok = (isinstance(index, dict) and index.get("format") == FORMAT and isinstance(index.get("data"), str)
              and isinstance(index.get("variables"), dict) and isinstance(index.get("sha256"), str))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataLossError(f"the checkpoint index '{index_path}' is corrupted (not valid JSON: {exc})") from None
    if not ok:
        raise DataLossError(f"the checkpoint index '{index_path}' is corrupted: expected a {FORMAT} JSON object "
                            "with 'data', 'sha256' and 'variables'")
    if index.get("version", 0) > VERSION:
        raise DataLossError(f"the checkpoint '{prefix}' has format version {index['version']}; this graphflow "
                            f"reads version {VERSION} and older")
    return index


def _read_arrays(prefix: str, index: dict) -> dict[str, np.ndarray]:
    """Name -> array for every variable of the checkpoint, after checking the data file's hash."""
    data_path = os.path.join(os.path.dirname(prefix) or ".", os.path.basename(index["data"]))
    try:
        with open(data_path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataLossError(f"checkpoint '{prefix}': its data file '{data_path}' cannot be read ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != index["sha256"]:
        raise DataLossError(f"checkpoint '{prefix}': the data file '{data_path}' is corrupted or truncated "
                            "(its checksum does not match the index)")
    out = {}
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            for name, entry in index["variables"].items():
                arr = npz[entry["key"]]
                if list(arr.shape) != list(entry["shape"]) or arr.dtype != np.dtype(entry["dtype"]):
                    raise DataLossError(f"checkpoint '{prefix}': the stored array of '{name}' has shape "
                                        f"{shape_str(arr.shape)} {arr.dtype.name}, its index says "
                                        f"{shape_str(tuple(entry['shape']))} {entry['dtype']}")
                out[name] = arr
    except DataLossError:
        raise
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataLossError(f"checkpoint '{prefix}': cannot read the data file '{data_path}' ({exc})") from None
    return out


def list_variables(ckpt_path: str) -> list[tuple[str, list[int]]]:
    """[(variable name, shape)] stored in the checkpoint `ckpt_path` (a prefix or a directory)."""
    prefix = _resolve(ckpt_path)
    return sorted((name, list(e["shape"])) for name, e in _read_index(prefix)["variables"].items())


def load_variable(ckpt_path: str, name: str) -> np.ndarray:
    """The value of variable `name` in the checkpoint `ckpt_path` (a prefix or a directory)."""
    prefix = _resolve(ckpt_path)
    index = _read_index(prefix)
    if name not in index["variables"]:
        raise NotFoundError(f"checkpoint '{prefix}' has no variable '{name}'; it holds: "
                            + ", ".join(sorted(index["variables"])))
    return _read_arrays(prefix, index)[name]


def _resolve(path: str) -> str:
    """A checkpoint prefix from a prefix, an index file name or a checkpoint directory."""
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.exists(path + INDEX_SUFFIX):
        latest = latest_checkpoint(path)
        if latest is None:
            raise NotFoundError(f"the directory '{path}' holds no checkpoint")
        return latest
    return _prefix_of(path)


# ---- the state file: which checkpoints a directory holds ----

def _read_state(directory: str, latest_filename: str = STATE_FILE) -> dict | None:
    try:
        with open(os.path.join(directory, latest_filename), "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("model_checkpoint_path"), str):
        return None
    return state


def latest_checkpoint(checkpoint_dir: str, latest_filename: str = STATE_FILE) -> str | None:
    """The prefix of the newest checkpoint saved in `checkpoint_dir`, or None."""
    state = _read_state(os.fspath(checkpoint_dir), latest_filename)
    if state is None:
        return None
    prefix = os.path.join(checkpoint_dir, state["model_checkpoint_path"])
    return prefix if os.path.exists(prefix + INDEX_SUFFIX) else None


def _remove_checkpoint(prefix: str) -> None:
    """Delete a checkpoint: the index first, so a half-deleted one reads as missing."""
    try:
        index = _read_index(prefix)
    except (NotFoundError, DataLossError):
        index = None
    _remove_file(prefix + INDEX_SUFFIX)
    if index:
        _remove_file(os.path.join(os.path.dirname(prefix) or ".", index["data"]))


def _remove_file(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class Saver:
    """Saves and restores variables: `save(sess, path)` / `restore(sess, path)`.

    `var_list`: None (every global variable at construction), a list of Variables (saved
    under their op names, e.g. "dense/kernel"), or a dict {name in the checkpoint: Variable}.
    `max_to_keep`: how many recent checkpoints `save` keeps (None or 0: all).
    """

    def __init__(self, var_list=None, max_to_keep: int | None = 5, name: str | None = None):
        if var_list is None:
            var_list = global_variables()
            if not var_list:
                raise ValueError("Saver: there are no variables to save")
        if isinstance(var_list, dict):
            items = list(var_list.items())
        else:
            items = [(v.op.name if isinstance(v, Variable) else repr(v), v) for v in var_list]
        self._vars: dict[str, Variable] = {}
        for key, var in items:
            if not isinstance(var, Variable):
                raise TypeError(f"Saver: var_list must hold gf.Variable objects, got {type(var).__name__} "
                                f"for '{key}'")
            if key in self._vars:
                raise ValueError(f"Saver: two variables would be saved under the name '{key}'")
            self._vars[key] = var
        self.max_to_keep = max_to_keep
        self.name = name or "save"  # TF1's name; this Saver builds no graph ops, it reads the session
        self._last: list[str] = []

    @property
    def last_checkpoints(self) -> list[str]:
        """Prefixes of the checkpoints this Saver wrote and still keeps, oldest first."""
        return list(self._last)

    def save(self, sess, save_path: str, global_step=None, latest_filename: str = STATE_FILE,
             write_state: bool = True) -> str:
        """Write the variables' values in `sess`; returns the checkpoint prefix
        (`save_path`, or `save_path-<step>` with `global_step`)."""
        prefix = os.fspath(save_path)
        if global_step is not None:
            step = global_step if isinstance(global_step, (int, np.integer)) else sess.run(global_step)
            prefix = f"{prefix}-{int(step)}"
        directory = os.path.dirname(prefix) or "."
        os.makedirs(directory, exist_ok=True)
        arrays, entries = {}, {}
        for i, (name, var) in enumerate(self._vars.items()):
            if var.graph is not sess.graph:
                raise ValueError(f"Saver: variable '{name}' belongs to another graph than the session's")
            value = np.array(sess._get_variable(var), order="C")
            key = f"v{i}"
            arrays[key] = value
            entries[name] = {"key": key, "shape": list(value.shape), "dtype": value.dtype.name}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        data_name = f"{os.path.basename(prefix)}.data-{digest[:16]}.npz"
        try:
            previous = _read_index(prefix)["data"]
        except (NotFoundError, DataLossError):
            previous = None
        _atomic_write(os.path.join(directory, data_name), data)
        index = {"format": FORMAT, "version": VERSION, "data": data_name, "sha256": digest, "variables": entries}
        _atomic_write(prefix + INDEX_SUFFIX, json.dumps(index, indent=1, sort_keys=True).encode("utf-8"))
        if previous and previous != data_name:  # this prefix was saved before: its old data is unreferenced now
            _remove_file(os.path.join(directory, previous))
        self._remember(prefix)
        if write_state:
            state = {"model_checkpoint_path": os.path.basename(prefix),
                     "all_model_checkpoint_paths": [os.path.basename(p) for p in self._last
                                                    if os.path.dirname(p) == os.path.dirname(prefix)]}
            _atomic_write(os.path.join(directory, latest_filename),
                          json.dumps(state, indent=1).encode("utf-8"))
        return prefix

    def _remember(self, prefix: str) -> None:
        if prefix in self._last:
            self._last.remove(prefix)
        self._last.append(prefix)
        if self.max_to_keep:
            while len(self._last) > self.max_to_keep:
                _remove_checkpoint(self._last.pop(0))

    def restore(self, sess, save_path: str) -> None:
        """Load every variable of this Saver from the checkpoint `save_path` (a prefix, or a
        directory meaning its latest checkpoint). Checks everything before changing anything."""
        if save_path is None:
            raise ValueError("Saver.restore: save_path is None (gf.train.latest_checkpoint found no checkpoint?)")
        prefix = _resolve(save_path)
        index = _read_index(prefix)
        stored = index["variables"]
        missing = [name for name in self._vars if name not in stored]
        if missing:
            raise NotFoundError(
                f"checkpoint '{prefix}' has no value for variable(s) "
                + ", ".join(f"'{n}' (expected {shape_str(tuple(self._vars[n].shape))} {self._vars[n].dtype.name})"
                            for n in missing)
                + "; it holds: " + (", ".join(sorted(stored)) or "nothing"), missing[0])
        wrong = []
        for name, var in self._vars.items():
            entry = stored[name]
            if tuple(entry["shape"]) != tuple(var.shape) or entry["dtype"] != var.dtype.name:
                wrong.append(f"'{name}': expected shape {shape_str(tuple(var.shape))} {var.dtype.name}, got "
                             f"shape {shape_str(tuple(entry['shape']))} {entry['dtype']}")
        if wrong:
            raise InvalidArgumentError(f"checkpoint '{prefix}' does not fit the graph's variables: "
                                       + "; ".join(wrong), None)
        arrays = _read_arrays(prefix, index)
        for name, var in self._vars.items():
            if var.graph is not sess.graph:
                raise ValueError(f"Saver: variable '{name}' belongs to another graph than the session's")
        for name, var in self._vars.items():
            sess._set_variable(var, arrays[name])
