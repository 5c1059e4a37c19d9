"""Session state (variable values, random streams) and each run's private view of it.

A run reads through an overlay and writes only into it; `commit` applies the overlay
under the store's lock once the whole run has succeeded, so a failed run changes nothing
and concurrent runs each apply their updates atomically.
"""
from __future__ import annotations

import secrets
import threading
from _thread import get_ident

import numpy as np

from ..errors import FailedPreconditionError
from .pointers import remember


class VariableStore:
    """The values of a session's variables and the position of each random stream."""

    def __init__(self):
        self.values: dict[str, np.ndarray] = {}
        # changes with every write of `values` (under `lock`): a run that saw this version
        # may take the values it read then as still current (runtime/whole_run.py)
        self.version = 0
        self.random_counters: dict[tuple, int] = {}
        self.entropy = secrets.randbits(63)  # for ops with neither a graph nor an op seed
        self.lock = threading.Lock()
        self.update_lock = threading.RLock()  # held by whole runs that write variables
        # the thread of a run (holding update_lock) that rewrites values in their arrays, or 0:
        # runtime/in_place.py
        self.writer = 0

    def set(self, name: str, value: np.ndarray) -> None:
        value = np.array(value, copy=True)
        value.setflags(write=False)
        with self.lock:
            self.values[name] = value
            self.version += 1

    def current(self, name: str) -> np.ndarray | None:
        """The value of `name` (None when uninitialized), taken when no run of another thread is
        rewriting values in place: such a run may be rewriting this one, so a value taken
        during it is taken again after it (in_place.py: a value taken first, with the writer
        checked after, is one whose array that run leaves alone)."""
        v = self.values.get(name)
        while self.rewritten_elsewhere():
            with self.update_lock:   # (held by the writing run until it ends)
                pass
            v = self.values.get(name)
        return v

    def rewritten_elsewhere(self) -> bool:
        """Whether a run of another thread is rewriting values in their arrays now."""
        writer = self.writer
        return bool(writer) and writer != get_ident()


class RunState:
    """One run's view of the store: reads see this run's own writes first."""

    __slots__ = ("store", "writes")

    def __init__(self, store: VariableStore):
        self.store = store
        self.writes: dict[str, np.ndarray] = {}

    def run_program(self, program, inputs) -> list:
        """Run a sub-program (a gf.cond branch) against this run's state."""
        from .interpreter import interpreter_for

        return interpreter_for(program).run(list(inputs), self)

    def read_variable(self, name: str) -> np.ndarray:
        v = self.writes.get(name)
        if v is None:
            store = self.store
            v = store.values.get(name)
            if store.writer:
                v = store.current(name)
            if v is None:
                raise FailedPreconditionError(
                    f"attempting to use the uninitialized variable '{name}' ('{name}:0'); run "
                    "gf.global_variables_initializer() (or the variable's initializer) first", name)
        return v

    def write_variable(self, name: str, value: np.ndarray, owned: bool = False) -> np.ndarray:
        """Stage `value` as the variable's new value and return the staged (read-only) array.
        `owned`: the caller hands over a fresh array nothing else writes (an update's
        `old - delta`, a plan's fresh kernel output), kept without a copy."""
        if not (owned and value.__class__ is np.ndarray and value.base is None and value.flags.owndata):
            value = np.array(value, copy=True)
        remember(value)  # compiled kernels reading it next find its pointer at once
        value.setflags(write=False)
        self.writes[name] = value
        return value

    def random_stream(self, seeds: tuple) -> np.random.Generator:
        """A generator for the next draw of the random op seeded by `seeds`: the same
        (graph seed, op seed) gives the same sequence of draws in every new session, while
        an op with no seed at all (graph seed None) differs from session to session.

        The draw number is taken from the store at once (not at commit), so runs on
        several threads never reuse a draw; as in TF1, a failed run still advances it."""
        with self.store.lock:
            n = self.store.random_counters.get(seeds, 0)
            self.store.random_counters[seeds] = n + 1
        graph_seed = self.store.entropy if seeds[0] is None else seeds[0]
        return np.random.default_rng([graph_seed, seeds[1], n])

    def commit(self) -> None:
        """Publish this run's variable writes (all together, under the store's lock)."""
        if not self.writes:
            return
        with self.store.lock:
            self.store.values.update(self.writes)
            self.store.version += 1
