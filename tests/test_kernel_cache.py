"""The kernel cache: memory and disk, keyed by IR + target; damaged entries are recompiled,
GRAPHFLOW_CACHE=0 writes nothing, concurrent writers never leave a partial entry, and the
directory stays under its size cap (least recently used entries go first)."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from graphflow.compiler.codegen import cache, jit

REPO = Path(__file__).resolve().parents[1]

# A kernel heavy enough that compiling it costs far more than loading it: a 200-op chain with
# polynomial exps, built by the codegen harness.
CHILD = textwrap.dedent("""
    import json, sys, time, ctypes
    sys.path.insert(0, {tests!r})
    import numpy as np
    from codegen_harness import build_module
    from graphflow.compiler.codegen import jit

    def chain(b, x):
        for i in range(200):
            x = b.exp(b.mul(x, b.const(0.5, b.dtype(x)))) if i % 4 == 0 else b.add(x, b.const(i, b.dtype(x)))
        return x

    ir_text = build_module(chain, ["float64"], "float64")
    start = time.perf_counter()
    module = jit.compile_module(ir_text)
    seconds = time.perf_counter() - start
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(module.address("kernel"))
    x = np.linspace(-1, 1, 5)
    out = np.empty_like(x)
    fn(out.ctypes.data, x.ctypes.data, 5)
    print(json.dumps({{"loaded": module.loaded_from_cache, "seconds": seconds, "out": out.tolist()}}))
""").format(tests=str(REPO / "tests"))


def run_child(env_extra):
    env = dict(os.environ, **env_extra)
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


SIMPLE_IR = """
define double @triple(double %x) {
  %y = fmul double %x, 3.0
  ret double %y
}
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(tmp_path / "kernels"))
    monkeypatch.delenv("GRAPHFLOW_CACHE", raising=False)
    jit.clear_memory_cache()
    yield tmp_path / "kernels"
    jit.clear_memory_cache()


def module_entries(cache_dir):
    """The cache's object-code entries (not the host record target.py keeps beside them)."""
    return [p for p in cache_dir.glob("*" + cache.SUFFIX) if not p.name.startswith("host-")]


def call_triple(module):
    import ctypes
    return ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(module.address("triple"))(2.5)


def test_second_process_loads_instead_of_compiling(cache_dir):
    env = {"GRAPHFLOW_CACHE_DIR": str(cache_dir)}
    cold = run_child(env)
    warm = run_child(env)
    assert not cold["loaded"] and warm["loaded"]
    assert warm["out"] == cold["out"]
    assert warm["seconds"] < cold["seconds"] / 3, (cold, warm)
    assert len(module_entries(cache_dir)) == 1


def test_memory_cache_returns_the_same_module(cache_dir):
    first = jit.compile_module(SIMPLE_IR)
    assert jit.compile_module(SIMPLE_IR) is first
    assert call_triple(first) == 7.5
    assert "fmul" in first.optimized_ir and "triple" in first.asm


def test_key_covers_ir_and_target():
    assert jit.cache_key(SIMPLE_IR) == jit.cache_key(SIMPLE_IR)
    assert jit.cache_key(SIMPLE_IR) != jit.cache_key(SIMPLE_IR.replace("3.0", "4.0"))
    from graphflow.compiler.codegen.target import fingerprint
    assert "llvmlite=" in fingerprint() and "cpu=" in fingerprint() and "features=" in fingerprint()


@pytest.mark.parametrize("damage", ["truncate", "flip_payload", "flip_header", "empty"])
def test_damaged_entry_is_recompiled_not_loaded(cache_dir, damage):
    jit.compile_module(SIMPLE_IR)
    (entry,) = module_entries(cache_dir)
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_payload":
        data[-10] ^= 0xFF
    elif damage == "flip_header":
        data[0] ^= 0xFF
    else:
        data = bytearray()
    entry.write_bytes(bytes(data))
    jit.clear_memory_cache()
    module = jit.compile_module(SIMPLE_IR)
    assert not module.loaded_from_cache
    assert call_triple(module) == 7.5
    assert cache.decode_entry(entry.name[: -len(cache.SUFFIX)], entry.read_bytes()) is not None  # rewritten intact
    jit.clear_memory_cache()
    assert jit.compile_module(SIMPLE_IR).loaded_from_cache


def test_entry_under_another_keys_name_is_not_loaded(cache_dir):
    other_ir = SIMPLE_IR.replace("3.0", "4.0")
    jit.compile_module(SIMPLE_IR)
    jit.compile_module(other_ir)
    mine, other = (cache.entry_path(jit.cache_key(t)) for t in (SIMPLE_IR, other_ir))
    mine.write_bytes(other.read_bytes())  # a valid entry, but of the other kernel
    jit.clear_memory_cache()
    module = jit.compile_module(SIMPLE_IR)
    assert not module.loaded_from_cache and call_triple(module) == 7.5


def test_optimized_ir_and_asm_available_after_a_cache_load(cache_dir):
    jit.compile_module(SIMPLE_IR)
    jit.clear_memory_cache()
    module = jit.compile_module(SIMPLE_IR)
    assert module.loaded_from_cache
    assert "define double @triple" in module.optimized_ir and "triple:" in module.asm


def test_cache_off_writes_nothing(cache_dir, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_CACHE", "0")
    module = jit.compile_module(SIMPLE_IR)
    assert call_triple(module) == 7.5 and not module.loaded_from_cache
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_unwritable_cache_directory_does_not_fail_the_compile(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(blocker / "kernels"))
    jit.clear_memory_cache()
    module = jit.compile_module(SIMPLE_IR)
    assert call_triple(module) == 7.5 and not module.loaded_from_cache
    jit.clear_memory_cache()


def test_default_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "graphflow"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "graphflow"


WRITER = textwrap.dedent("""
    import sys
    from graphflow.compiler.codegen import cache
    seed = int(sys.argv[1])
    payload = bytes([seed]) * (1 << 18)
    for _ in range(20):
        cache.store("samekey", payload)
        data = cache.load("samekey")
        assert data is None or (len(data) == 1 << 18 and len(set(data)) == 1), "partial or mixed entry"
""")


def test_concurrent_writers_never_leave_a_partial_entry(cache_dir):
    env = dict(os.environ, GRAPHFLOW_CACHE_DIR=str(cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(seed)], env=env, cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2, 3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    data = cache.load("samekey")
    assert data is not None and data[0] in (1, 2, 3) and len(set(data)) == 1
    assert [p.name for p in cache_dir.iterdir()] == ["samekey" + cache.SUFFIX]  # no temp files left


KEYED_CHILD = textwrap.dedent("""
    import json
    from graphflow.compiler.codegen import jit
    built = []

    def build():
        built.append(1)
        return {ir!r}

    module = jit.compile_keyed("triple kernel v1", build)
    print(json.dumps({{"loaded": module.loaded_from_cache, "built": len(built)}}))
""").format(ir=SIMPLE_IR)


def test_keyed_compile_skips_building_the_ir_on_a_hit(cache_dir):
    env = dict(os.environ, GRAPHFLOW_CACHE_DIR=str(cache_dir))
    results = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", KEYED_CHILD], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert results == [{"loaded": False, "built": 1}, {"loaded": True, "built": 0}]


def test_keyed_module_builds_its_ir_only_when_asked(cache_dir):
    calls = []

    def build():
        calls.append(1)
        return SIMPLE_IR

    jit.compile_keyed("triple", build)
    jit.clear_memory_cache()
    module = jit.compile_keyed("triple", build)
    assert module.loaded_from_cache and calls == [1] and call_triple(module) == 7.5
    assert module.ir_text == SIMPLE_IR and calls == [1, 1]
    assert jit.keyed_cache_key("triple") != jit.keyed_cache_key("triple v2") != jit.cache_key(SIMPLE_IR)


def _aged_entries(count: int, size: int) -> list:
    """`count` entries of `size` payload bytes, the first the least recently used."""
    keys = [f"{i:064x}" for i in range(count)]
    now = time.time()
    for i, key in enumerate(keys):
        path = cache.store(key, bytes(size))
        os.utime(path, (now - 1000 + i, now - 1000 + i))
    return keys


def test_trim_removes_the_least_recently_used_entries_down_to_the_cap(cache_dir):
    keys = _aged_entries(20, 10_000)
    entry = cache.entry_path(keys[0]).stat().st_size
    limit = 10 * entry
    removed = cache.trim(limit)
    left = sorted(p.name for p in cache_dir.glob("*" + cache.SUFFIX))
    assert removed == (20 - len(left)) * entry and len(left) * entry <= cache.TRIM_TO * limit
    assert left == sorted(f"{k}{cache.SUFFIX}" for k in keys[20 - len(left):])   # the newest stay
    assert cache.trim(limit) == 0   # under the cap: nothing to do


def test_a_load_that_hits_keeps_its_entry_through_a_trim(cache_dir):
    keys = _aged_entries(20, 10_000)
    assert cache.load(keys[0]) == bytes(10_000)   # the oldest, used again now
    cache.trim(10 * cache.entry_path(keys[0]).stat().st_size)
    assert cache.load(keys[0]) == bytes(10_000) and cache.load(keys[1]) is None


def test_stores_keep_the_directory_under_the_cap(cache_dir, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_CACHE_MAX_MB", "0.5")
    monkeypatch.setattr(cache, "TRIM_EVERY", 1)
    cache_dir.mkdir(parents=True)
    stale = cache_dir / ".abandoned.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * cache.STALE_TMP_SECONDS,) * 2)
    for i in range(100):
        cache.store(f"{i:064x}", bytes(20_000))
        assert sum(p.stat().st_size for p in cache_dir.iterdir()) <= cache.max_bytes()
    assert not stale.exists()   # a crashed writer's temporary file goes too


@pytest.mark.parametrize("value, expected", [("", cache.DEFAULT_MAX_MB << 20), ("2", 2 << 20), ("0", None),
                                             ("lots", cache.DEFAULT_MAX_MB << 20)])
def test_the_cap_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("GRAPHFLOW_CACHE_MAX_MB", value)
    assert cache.max_bytes() == expected
