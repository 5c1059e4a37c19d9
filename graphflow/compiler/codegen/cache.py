"""On-disk kernel cache: object code keyed by a hash of the IR and the target.

An entry is one file `<key>.gfk`: a fixed header (magic, format version, payload length,
sha256 of the payload, sha256 of the key) followed by the object-file bytes. A truncated or
corrupted file, or one copied under another key's name, fails the header check and is
treated as a miss (then overwritten), never loaded: object code that LLVM's linker takes
is trusted as it is, so nothing unchecked may reach it. Writes go to a
temporary file in the same directory and are renamed into place with `os.replace`, so two
processes writing the same entry at once each publish a complete file and readers never see
a partial one.

Environment: `GRAPHFLOW_CACHE_DIR` moves the cache (default `$XDG_CACHE_HOME/graphflow`, or
`~/.cache/graphflow`); `GRAPHFLOW_CACHE=0` turns the disk cache off (nothing is read or
written). Both are read at each call, so tests and users can change them at run time.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

MAGIC = b"GFKCACHE"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<8sIQ32s32s")  # magic, version, payload length, sha256(payload), sha256(key)
SUFFIX = ".gfk"


def is_enabled() -> bool:
    """False when GRAPHFLOW_CACHE is set to 0/false/off/no."""
    return os.environ.get("GRAPHFLOW_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    """The directory holding cache entries (not created until something is written)."""
    explicit = os.environ.get("GRAPHFLOW_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphflow"


def entry_path(key: str) -> Path:
    return cache_dir() / f"{key}{SUFFIX}"


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def encode_entry(key: str, payload: bytes) -> bytes:
    """Header + payload, the exact bytes of the cache file of `key`."""
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest(), _key_digest(key))
    return header + payload


def decode_entry(key: str, data: bytes) -> bytes | None:
    """The payload of `key`'s cache file, or None when it is not a complete, intact entry of `key`."""
    if len(data) < _HEADER.size:
        return None
    magic, version, length, digest, key_digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if magic != MAGIC or version != FORMAT_VERSION or length != len(payload) or key_digest != _key_digest(key):
        return None
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def load(key: str) -> bytes | None:
    """The cached object code for `key`, or None (cache off, missing, or damaged entry)."""
    if not is_enabled():
        return None
    try:
        data = entry_path(key).read_bytes()
    except OSError:
        return None
    return decode_entry(key, data)


def load_json(key: str):
    """The JSON value cached under `key`, or None (cache off, missing, damaged, or not JSON)."""
    raw = load(key)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def store(key: str, payload: bytes) -> Path | None:
    """Atomically writes the entry for `key`; returns its path, or None if the cache is off
    or the directory is not writable (a cache failure never fails a compile)."""
    if not is_enabled():
        return None
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(encode_entry(key, payload))
            final = entry_path(key)
            os.replace(tmp, final)
        except BaseException:
            _remove_quietly(tmp)
            raise
    except OSError:
        return None
    return final


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
