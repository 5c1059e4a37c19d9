"""Remembered data pointers: right for every array, and long-lived arrays (plan buffers,
current variable values) stay remembered through the churn of short-lived ones."""
import numpy as np

from graphflow.runtime import pointers


def test_long_lived_arrays_stay_remembered_through_churn():
    keep = [np.empty((3, 5), np.float32) for _ in range(8)]
    for a in keep:
        pointers.remember(a)
    for _ in range(5 * pointers._KNOWN_MAX):
        pointers.remember(np.empty(4, np.float32))   # dies at once, like each step's old values
    assert all(id(a) in pointers._KNOWN for a in keep)
    assert len(pointers._KNOWN) < pointers._KNOWN_MAX
    for a in keep:
        assert pointers.address(a) == a.ctypes.data


def test_addresses_of_readonly_views_and_reused_ids_are_right():
    for _ in range(3):
        a = np.arange(12, dtype=np.float64)
        pointers.remember(a)
        a.setflags(write=False)
        assert pointers.address(a) == a.ctypes.data
        view = a[2:]
        assert pointers.address(view) == view.ctypes.data
        del a, view   # a new array may get the same id: its entry must not be trusted
    b = np.zeros(5)
    assert pointers.address(b) == b.ctypes.data


def test_when_most_entries_are_alive_the_table_is_emptied():
    pointers._KNOWN.clear()   # entries left by earlier tests would shift when the table fills
    alive = [np.empty(2) for _ in range(pointers._KNOWN_MAX)]
    for a in alive:
        pointers.remember(a)
    extra = np.empty(2)
    pointers.remember(extra)
    assert len(pointers._KNOWN) <= 1 + pointers._KNOWN_MAX // 2
    assert pointers.address(extra) == extra.ctypes.data and pointers.address(alive[0]) == alive[0].ctypes.data
