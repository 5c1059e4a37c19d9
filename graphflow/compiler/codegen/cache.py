"""On-disk kernel cache: object code keyed by a hash of the IR and the target.

An entry is one file `<key>.gfk`: a fixed header (magic, format version, payload length,
sha256 of the payload, sha256 of the key) followed by the object-file bytes. A truncated or
corrupted file, or one copied under another key's name, fails the header check and is
treated as a miss (then overwritten), never loaded: object code that LLVM's linker takes
is trusted as it is, so nothing unchecked may reach it. Writes go to a
temporary file in the same directory and are renamed into place with `os.replace`, so two
processes writing the same entry at once each publish a complete file and readers never see
a partial one.

The directory is kept under a size cap: a load that hits touches its entry, and one store
in TRIM_EVERY (chosen by its key's digest, so no process needs a counter) removes the least
recently used entries until the directory holds at most TRIM_TO of the cap. Everything in it
can be rebuilt, so removing an entry another process is about to read costs a compile at
most (a reader holding the file open keeps reading it).

Environment: `GRAPHFLOW_CACHE_DIR` moves the cache (default `$XDG_CACHE_HOME/graphflow`, or
`~/.cache/graphflow`); `GRAPHFLOW_CACHE=0` turns the disk cache off (nothing is read or
written); `GRAPHFLOW_CACHE_MAX_MB` sets the cap (default 512; 0: no cap). They are read at
each call, so tests and users can change them at run time.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path

MAGIC = b"GFKCACHE"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<8sIQ32s32s")  # magic, version, payload length, sha256(payload), sha256(key)
SUFFIX = ".gfk"
DEFAULT_MAX_MB = 512   # ~25,000 kernel modules of ~20 KB (the test suite alone writes thousands)
TRIM_EVERY = 64        # stores per trim, on average
TRIM_TO = 0.8          # a trim leaves this fraction of the cap, so the next ones find little to do
STALE_TMP_SECONDS = 3600   # a writer's temporary file this old was left by a crash


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


def max_bytes() -> int | None:
    """The cache directory's size cap in bytes (GRAPHFLOW_CACHE_MAX_MB), None for no cap."""
    raw = os.environ.get("GRAPHFLOW_CACHE_MAX_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(mb * (1 << 20)) if mb > 0 else None


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
    path = entry_path(key)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    payload = decode_entry(key, data)
    if payload is not None:
        try:   # recently used: the last entries a trim removes
            os.utime(path)
        except OSError:
            pass
    return payload


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
    limit = max_bytes()
    if limit is not None and _key_digest(key)[0] % TRIM_EVERY == 0:
        trim(limit)
    return final


def trim(limit: int) -> int:
    """Remove the least recently used entries (by modification time: written, or touched by
    a load) until the directory's entries take at most TRIM_TO * `limit` bytes, once they
    take more than `limit`; and temporary files a crashed writer left. Returns the bytes
    removed. Errors (an entry another process removed first) are skipped."""
    entries, total, removed = [], 0, 0
    now = time.time()
    try:
        with os.scandir(cache_dir()) as it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.name.endswith(SUFFIX):
                    entries.append((st.st_mtime, st.st_size, e.path))
                    total += st.st_size
                elif e.name.endswith(".tmp") and now - st.st_mtime > STALE_TMP_SECONDS:
                    _remove_quietly(e.path)
    except OSError:
        return 0
    if total <= limit:
        return 0
    entries.sort()
    for _, size, path in entries:
        if total - removed <= TRIM_TO * limit:
            break
        try:
            os.unlink(path)
        except OSError:
            continue
        removed += size
    return removed


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
