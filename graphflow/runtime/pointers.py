"""Data pointers of numpy arrays for compiled calls, cheaply.

`ctypes.c_char.from_buffer` gives a pointer ~3x faster than `a.ctypes.data`, but only for
a writable, contiguous, non-empty buffer. Variable values are read-only (a run must never
write into session state), so their pointers are remembered by identity, weakly: when the
run state stores a new value (`remember`, while the array is still writable) and
otherwise on first use. Plans remember their arena buffers too (they live across runs):
a remembered pointer is found ~3x faster than `from_buffer` gives it. When the table is
full, the entries of dead arrays are swept out and the live ones kept, so long-lived
arrays stay remembered however many short-lived ones (each training step's new variable
values) come and go.
"""
from __future__ import annotations

import ctypes
import weakref

import numpy as np

_addressof, _from_buffer = ctypes.addressof, ctypes.c_char.from_buffer
_KNOWN: dict = {}     # id -> (weak reference, data pointer)
_KNOWN_MAX = 1024     # entries: past this the dead ones are swept out (all, if most are alive)


def address(a: np.ndarray) -> int:
    """The data pointer of `a`."""
    known = _KNOWN.get(id(a))
    if known is not None and known[0]() is a:
        return known[1]
    try:
        return _addressof(_from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return _remember(a, a.ctypes.data)


def remember(a: np.ndarray) -> None:
    """Record the pointer of `a` (writable, about to be made read-only) for later calls."""
    try:
        _remember(a, _addressof(_from_buffer(a)))
    except (TypeError, ValueError, BufferError):
        pass


def _remember(a: np.ndarray, address: int) -> int:
    try:
        ref = weakref.ref(a)
    except TypeError:
        return address
    if len(_KNOWN) >= _KNOWN_MAX:
        _sweep()
    _KNOWN[id(a)] = (ref, address)
    return address


def _sweep() -> None:
    """Keep the entries of live arrays only (every one, when that would not free half the table).
    Other threads may add entries meanwhile: one lost here only takes the slower path later."""
    live = [(k, e) for k, e in list(_KNOWN.items()) if e[0]() is not None]   # list(): one atomic copy
    _KNOWN.clear()
    if len(live) < _KNOWN_MAX // 2:
        _KNOWN.update(live)
