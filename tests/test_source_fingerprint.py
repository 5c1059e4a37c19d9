"""The on-disk cache is keyed by graphflow's source as imported: once the files change under a
running process, nothing it compiles by description is read from or written to disk."""
import numpy as np

import graphflow as gf
from graphflow import source_fingerprint
from graphflow.compiler.codegen import cache, jit


def test_fingerprint_is_stable_while_the_files_are_unchanged():
    first = source_fingerprint.fingerprint()
    assert first is not None and len(first) == 64
    assert source_fingerprint.fingerprint() == first


def test_changed_sources_keep_kernels_in_memory_only(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHFLOW_CACHE", "1")
    stale = list(source_fingerprint._AT_IMPORT)
    stale[0] = (-1, -1)   # as if the first file had been rewritten since import
    monkeypatch.setattr(source_fingerprint, "_AT_IMPORT", tuple(stale))
    assert source_fingerprint.fingerprint() is None
    assert jit.keyed_cache_key("anything") is None

    jit.clear_memory_cache()
    module = jit.compile_keyed("test-stale-source", lambda: "define i32 @f() {\n  ret i32 7\n}\n")
    assert module.address("f")
    assert not any(p.name.endswith(cache.SUFFIX) and "host" not in p.name for p in tmp_path.iterdir())

    x = gf.placeholder(gf.float32, shape=(None,))
    y = gf.tanh(x * 2.0) + 1.0
    value = np.linspace(-2, 2, 1000, dtype=np.float32)
    got = gf.Session(opt_level=2).run(y, {x: value})
    np.testing.assert_allclose(got, np.tanh(value * 2.0) + 1.0, rtol=1e-6, atol=1e-6)
    published = [p.name for p in tmp_path.iterdir() if p.name.endswith(cache.SUFFIX)]
    # only IR-keyed object code (the exact IR is its key) may be published, never IR by description
    assert not any(name.endswith(f"-ir{cache.SUFFIX}") for name in published)
