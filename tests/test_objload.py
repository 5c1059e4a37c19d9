"""The object loader (codegen/objload.py) against LLVM's own (MCJIT) on the same object code,
what it refuses, the fallback to MCJIT, and the warm start that never imports LLVM."""
import ctypes
import gc
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.codegen import cache, jit, objload, target

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not objload.host_supported(), reason="the loader reads x86-64 Linux objects only")

# code, constant tables, writable and zero-initialized data, function pointers stored in data,
# calls into the C library (sin; memset for a run-time length), an intrinsic's constant pool
FEATURES_IR = """
@table = private unnamed_addr constant [4 x double] [double 1.5, double -2.0, double 3.25, double 8.0]
@counter = global i64 0
@scratch = global [64 x i8] zeroinitializer
@init = global [2 x i32] [i32 7, i32 9]
@fptrs = global [2 x ptr] [ptr @twice, ptr @neg]

declare double @sin(double)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)

define double @twice(double %x) noinline {
  %y = fmul double %x, 2.0
  ret double %y
}

define double @neg(double %x) noinline {
  %y = fneg double %x
  ret double %y
}

define double @lookup(i64 %i) {
  %p = getelementptr [4 x double], ptr @table, i64 0, i64 %i
  %v = load double, ptr %p
  ret double %v
}

define i64 @bump() {
  %c = load i64, ptr @counter
  %n = add i64 %c, 1
  store i64 %n, ptr @counter
  ret i64 %n
}

define double @call_sin(double %x) {
  %r = call double @sin(double %x)
  ret double %r
}

define double @dispatch(i64 %i, double %x) {
  %p = getelementptr [2 x ptr], ptr @fptrs, i64 0, i64 %i
  %f = load ptr, ptr %p
  %r = call double %f(double %x)
  ret double %r
}

define i64 @fill(i8 %b, i64 %n) {
  call void @llvm.memset.p0.i64(ptr @scratch, i8 %b, i64 %n, i1 false)
  %p = getelementptr [64 x i8], ptr @scratch, i64 0, i64 63
  %last = load i8, ptr %p
  %a = load i32, ptr @init
  %q = getelementptr [2 x i32], ptr @init, i64 0, i64 1
  %c = load i32, ptr %q
  %s = add i32 %a, %c
  %s64 = zext i32 %s to i64
  %l64 = zext i8 %last to i64
  %r = add i64 %s64, %l64
  ret i64 %r
}

define void @scale(ptr noalias %out, ptr noalias %x, i64 %n) {
entry:
  %go = icmp sgt i64 %n, 0
  br i1 %go, label %loop, label %done
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %px = getelementptr float, ptr %x, i64 %i
  %v = load float, ptr %px
  %w = fmul float %v, 1.25
  %z = fadd float %w, 0.5
  %po = getelementptr float, ptr %out, i64 %i
  store float %z, ptr %po
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""

# the code models LLVM may emit: the JIT default (large: 64-bit absolute addresses), and small
# position-independent code (PC-relative, PLT calls, GOT loads)
MODELS = {"jit-large": dict(jit=True), "small-pic": dict(reloc="pic", codemodel="small")}


def emit_object(ir_text: str, **machine) -> bytes:
    """Object code of `ir_text` for the host, with the target machine options `machine`."""
    import llvmlite.binding as llvm

    target._initialized()
    module = llvm.parse_assembly(ir_text)
    module.verify()
    cpu, features = target.host_cpu()
    tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
        cpu=cpu, features=features, opt=2, **machine)
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    return tm.emit_object(module)


def relocation_types(obj: bytes) -> set:
    sections = objload._sections(obj)
    return {int(k) for r in objload._relocations(obj, sections) for k in r.kind}


def results(code) -> dict:
    """Every function of FEATURES_IR called through `code` (a loaded object)."""
    fn = lambda name, res, *args: ctypes.CFUNCTYPE(res, *args)(code.address(name))  # noqa: E731
    d, i64, ptr = ctypes.c_double, ctypes.c_int64, ctypes.c_void_p
    x = np.linspace(-3, 3, 37, dtype=np.float32)
    out = np.empty_like(x)
    fn("scale", None, ptr, ptr, i64)(out.ctypes.data, x.ctypes.data, x.size)
    return {"lookup": [fn("lookup", d, i64)(i) for i in range(4)],
            "bump": [fn("bump", i64)() for _ in range(3)],
            "sin": fn("call_sin", d, d)(0.5),
            "dispatch": [fn("dispatch", d, i64, d)(i, 1.75) for i in range(2)],
            "fill": fn("fill", i64, ctypes.c_int8, i64)(3, 64),
            "scale": out.tobytes()}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_loader_matches_mcjit_on_the_same_object(model):
    obj = emit_object(FEATURES_IR, **MODELS[model])
    ours = objload.load(obj)
    mcjit = jit.load_object(obj, loader="llvm")
    assert isinstance(ours, objload.LoadedObject) and not isinstance(mcjit, objload.LoadedObject)
    got, want = results(ours), results(mcjit)
    assert got == want
    assert got["lookup"] == [1.5, -2.0, 3.25, 8.0] and got["bump"] == [1, 2, 3] and got["fill"] == 16 + 3
    assert got["sin"] == float(np.sin(0.5)) and got["dispatch"] == [3.5, -1.75]
    assert ours.address("no_such_function") == 0


def test_both_code_models_exercise_their_relocations():
    large = relocation_types(emit_object(FEATURES_IR, **MODELS["jit-large"]))
    small = relocation_types(emit_object(FEATURES_IR, **MODELS["small-pic"]))
    assert objload.R_64 in large
    assert objload.R_PLT32 in small and small & {objload.R_PC32} and small & set(objload._GOT_RELOCS)


def test_loaded_objects_have_their_own_data_and_are_unmapped_when_collected_not_at_exit():
    obj = emit_object(FEATURES_IR, **MODELS["jit-large"])
    first, second = objload.load(obj), objload.load(obj)
    bump = lambda code: ctypes.CFUNCTYPE(ctypes.c_int64)(code.address("bump"))()  # noqa: E731
    assert [bump(first), bump(first), bump(second)] == [1, 2, 1]
    finalizer = first._finalizer
    # ...but never at interpreter exit, when a Session's worker may still be polling for work
    # in compiled code (threads.IDLE_US): its pages must outlive it (unmapping them crashed)
    assert finalizer.atexit is False
    del first
    gc.collect()
    assert not finalizer.alive


def _patched(obj: bytes, at: int, fmt: str, value) -> bytes:
    data = bytearray(obj)
    struct.pack_into(fmt, data, at, value)
    return bytes(data)


def _first_relocation_offset(obj: bytes) -> int:
    for s in objload._sections(obj):
        if s.type == objload.SHT_RELA and s.size:
            return s.offset
    raise AssertionError("no relocations")


def test_refuses_what_it_does_not_handle():
    obj = emit_object(FEATURES_IR, **MODELS["jit-large"])
    at = _first_relocation_offset(obj)
    info = struct.unpack_from("<Q", obj, at + 8)[0]
    refused = {
        "not elf": b"\0" * 100,
        "truncated": obj[:40],
        "header only": obj[:200],
        "other machine": _patched(obj, 18, "<H", 183),                        # EM_AARCH64
        "unknown relocation": _patched(obj, at + 8, "<Q", (info >> 32 << 32) | 37),
        "unresolved symbol": emit_object("declare void @graphflow_no_such_symbol()\n"
                                         "define void @f() {\n  call void @graphflow_no_such_symbol()\n"
                                         "  ret void\n}\n", **MODELS["jit-large"]),
        "thread-local data": emit_object("@t = thread_local global i64 0\ndefine ptr @f() {\n  ret ptr @t\n}\n",
                                         **MODELS["jit-large"]),
    }
    for why, data in refused.items():
        with pytest.raises(objload.Unsupported):
            objload.load(data)
            pytest.fail(why)


def test_32_bit_relocations_out_of_range_are_refused():
    image = bytearray(8)
    with pytest.raises(objload.Unsupported):
        objload._apply(image, 1 << 40, 0, objload.R_PC32, 0, 0, None, None)
    with pytest.raises(objload.Unsupported):
        objload._apply(image, 0, 0, objload.R_32, 0, 1 << 33, None, None)
    objload._apply(image, 1 << 40, 0, objload.R_PC32, -4, (1 << 40) + 100, None, None)
    assert struct.unpack_from("<i", image)[0] == 96


SIMPLE_IR = "define double @triple(double %x) {\n  %y = fmul double %x, 3.0\n  ret double %y\n}\n"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(tmp_path / "kernels"))
    monkeypatch.delenv("GRAPHFLOW_CACHE", raising=False)
    jit.clear_memory_cache()
    yield tmp_path / "kernels"
    jit.clear_memory_cache()


def triple(module) -> float:
    return ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(module.address("triple"))(2.5)


def test_jit_falls_back_to_mcjit_when_the_loader_refuses(fresh_cache, monkeypatch):
    def refuse(data):
        raise objload.Unsupported("test")

    monkeypatch.setattr(objload, "load", refuse)
    module = jit.compile_module(SIMPLE_IR)
    assert module.loader == "llvm" and triple(module) == 7.5
    jit.clear_memory_cache()
    module = jit.compile_module(SIMPLE_IR)
    assert module.loaded_from_cache and module.loader == "llvm" and triple(module) == 7.5


def test_env_selects_mcjit(fresh_cache, monkeypatch):
    assert jit.compile_module(SIMPLE_IR).loader == "graphflow"
    jit.clear_memory_cache()
    monkeypatch.setenv("GRAPHFLOW_OBJECT_LOADER", "llvm")
    module = jit.compile_module(SIMPLE_IR)
    assert module.loaded_from_cache and module.loader == "llvm" and triple(module) == 7.5


@pytest.fixture
def host_record_cleared():
    target.host_record.cache_clear()
    yield
    target.host_record.cache_clear()


def test_host_record_is_cached_per_identity(fresh_cache, monkeypatch, host_record_cleared):
    asked = []
    real = target._ask_llvm
    monkeypatch.setattr(target, "_ask_llvm", lambda: asked.append(1) or real())
    monkeypatch.setattr(target, "host_identity", lambda: "machine A")
    first = target.host_record()
    target.host_record.cache_clear()
    assert target.host_record() == first and len(asked) == 1          # read back from the disk cache
    target.host_record.cache_clear()
    monkeypatch.setattr(target, "host_identity", lambda: "machine B")
    assert target.host_record() == first and len(asked) == 2          # another identity: asked again
    assert len(list(fresh_cache.glob("host-*"))) == 2
    for p in fresh_cache.glob("host-*"):
        p.write_bytes(p.read_bytes()[:-3])                              # damaged: asked again
    target.host_record.cache_clear()
    assert target.host_record() == first and len(asked) == 3
    target.host_record.cache_clear()
    monkeypatch.setattr(target, "host_identity", lambda: None)          # unknown host: always asked
    target.host_record()
    target.host_record.cache_clear()
    target.host_record()
    assert len(asked) == 5


def test_host_identity_changes_with_the_cpu_flags(monkeypatch):
    real_open = open
    identity = target.host_identity()
    assert identity is not None and "flags" in identity

    def fake_open(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            import io
            text = real_open(path).read().replace(" avx2", "", 1).replace(" sse2", "", 1)
            return io.StringIO(text)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert target.host_identity() != identity


WARM_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphflow as gf
    from graphflow.compiler.codegen import jit
    x = gf.placeholder(gf.float32, shape=(None, 37), name="x")
    y = x
    for i in range(40):
        y = gf.tanh(y * 1.01 + 0.1) if i % 2 else gf.exp(-y * y) - 0.25
    z = gf.reduce_sum(y, axis=1)
    value = np.linspace(-2, 2, 5 * 37, dtype=np.float32).reshape(5, 37)
    out = gf.Session(opt_level=2).run([y, z], {x: value})
    print(json.dumps({"binding": "llvmlite.binding" in sys.modules,
                      "modules": [[m.loader, m.loaded_from_cache] for m in jit._memory.values()],
                      "out": [o.tobytes().hex() for o in out]}))
""")


def test_a_warm_process_loads_without_importing_llvm(fresh_cache):
    env = dict(os.environ, GRAPHFLOW_CACHE_DIR=str(fresh_cache))
    env.pop("GRAPHFLOW_OBJECT_LOADER", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", WARM_CHILD], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["binding"] and cold["modules"] and all(m == ["graphflow", False] for m in cold["modules"])
    assert not warm["binding"] and warm["modules"] and all(m == ["graphflow", True] for m in warm["modules"])
    assert warm["out"] == cold["out"]


def test_fused_kernels_give_the_same_bits_through_either_loader(fresh_cache, monkeypatch):
    """A graph's kernel module (elementwise chain, row softmax, column mean, matmul epilogue)
    loaded by objload and by MCJIT computes the same bits."""
    rng = np.random.default_rng(3)
    with gf.Graph().as_default() as graph:
        x = gf.placeholder(gf.float32, (None, 24), name="x")
        w = gf.constant(rng.standard_normal((24, 16)).astype(np.float32))
        h = gf.tanh(gf.matmul(x, w) * 0.5 + gf.constant(rng.standard_normal(16).astype(np.float32)))
        s = gf.nn.softmax(h * 2.0 - 1.0)
        m = gf.reduce_mean(s, axis=0, keepdims=True) - gf.exp(-h * h)
    value = rng.standard_normal((37, 24)).astype(np.float32)
    results = {}
    for loader in ("graphflow", "llvm"):
        monkeypatch.setenv("GRAPHFLOW_OBJECT_LOADER", loader)
        jit.clear_memory_cache()
        with gf.Session(graph=graph, opt_level=2) as sess:
            out = sess.run([h, s, m], {x: value})
        assert jit._memory and all(module.loader == loader for module in jit._memory.values())
        results[loader] = [o.tobytes() for o in out]
    assert results["graphflow"] == results["llvm"]
