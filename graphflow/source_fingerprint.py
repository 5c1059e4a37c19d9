"""Which graphflow source this process runs, for keys of the on-disk kernel cache.

Kernels cached under a description (not under their IR) are only right for the code that
turns descriptions into IR: graphflow/compiler and graphflow/ops as this process imported
them. Hashing the files is the cheap way to name that code, but files can change under a
running process (a pip upgrade beneath a notebook or server, an edited checkout): hashing
them then would file the old code's kernels under the new code's key, and every later
process of the new version would load them. So the size and modification time of each file
are recorded when graphflow is imported, and `fingerprint()` answers only while the files
still match that record; after a change it answers None, and the process keeps what it
compiles to itself (memory only) instead of publishing it.
"""
from __future__ import annotations

import functools
import hashlib
import os

_ROOT = os.path.dirname(os.path.abspath(__file__))
_FOLDERS = ("compiler", "ops")


def _source_paths() -> tuple:
    paths = []
    for folder in _FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(_ROOT, folder)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            paths += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return tuple(paths)


def _stats(paths: tuple) -> tuple:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


_PATHS = _source_paths()
_AT_IMPORT = _stats(_PATHS)


@functools.lru_cache(maxsize=1)
def _content_hash() -> str:
    h = hashlib.sha256()
    for path in _PATHS:
        h.update(os.path.relpath(path, _ROOT).replace(os.sep, "/").encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def fingerprint() -> str | None:
    """sha256 of graphflow/compiler and graphflow/ops, or None when any of those files changed
    since graphflow was imported (checked at every call: a module imported lazily after a
    change would be new code under the old hash). The hash itself is read once."""
    if _stats(_PATHS) != _AT_IMPORT:
        return None
    digest = _content_hash()
    return digest if _stats(_PATHS) == _AT_IMPORT else None
