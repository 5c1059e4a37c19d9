"""The host target: one LLVM target machine for the CPU this process runs on.

Kernels are compiled for the exact host CPU (name and feature flags), otherwise LLVM's
vectorizers assume a generic x86-64 and never use AVX2/AVX-512 registers.

What LLVM says about the host (CPU name, features, LLVM version) is also part of every
kernel cache key. Asking LLVM means importing llvmlite.binding and mapping LLVM's shared
library (~20 ms), which a process whose kernels are all cached never needs otherwise, so
the answer is itself cached on disk under a hash of what determines it without LLVM: the
CPU as the kernel describes it (/proc/cpuinfo's identity and flag lines), the machine
architecture, and the llvmlite version and shared-library file (path, size, mtime). Any of
these changing misses, and the host is asked again. Where there is no /proc/cpuinfo, or the
disk cache is off, LLVM is asked every time.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os

import numpy as np

# /proc/cpuinfo lines that identify the CPU and its features (not its clock or the kernel's
# list of known bugs, which change without the CPU changing)
_CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "stepping", "microcode", "cpuid level",
                 "flags", "Features", "CPU implementer", "CPU architecture", "CPU variant", "CPU part",
                 "CPU revision")


def _llvm():
    import llvmlite.binding as llvm

    return llvm


@functools.lru_cache(maxsize=None)
def _initialized() -> bool:
    # llvm.initialize() raises on llvmlite >= 0.45; only the native target is needed.
    llvm = _llvm()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    return True


def _ask_llvm() -> dict:
    _initialized()
    llvm = _llvm()
    return {"cpu": llvm.get_host_cpu_name(), "features": llvm.get_host_cpu_features().flatten(),
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


def host_identity() -> str | None:
    """What decides LLVM's view of the host, read without LLVM; None when it cannot be read."""
    import llvmlite

    try:
        cpu = []
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:   # the first processor's block (the kernel formats the others on demand)
                if not line.strip() and cpu:
                    break
                if line.split(":", 1)[0].strip() in _CPUINFO_KEYS:
                    cpu.append(line.strip())
        binding = os.path.join(os.path.dirname(llvmlite.__file__), "binding")
        libs = sorted((name, st.st_size, st.st_mtime_ns) for name in os.listdir(binding)
                      if "llvmlite" in name and not name.endswith(".py")
                      for st in [os.stat(os.path.join(binding, name))])
    except OSError:
        return None
    if not cpu or not libs:
        return None
    return json.dumps([os.uname().machine, llvmlite.__version__, binding, libs, cpu])


@functools.lru_cache(maxsize=None)
def host_record() -> dict:
    """{"cpu", "features", "llvm"}: the host as LLVM sees it (from the disk cache when the
    host identity matches a stored answer, else from LLVM, then stored)."""
    from . import cache

    identity = host_identity() if cache.is_enabled() else None
    key = "host-" + hashlib.sha256(identity.encode()).hexdigest() if identity else None
    if key is not None:
        record = cache.load_json(key)
        if isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("cpu", "features", "llvm")):
            return record
    record = _ask_llvm()
    if key is not None:
        cache.store(key, json.dumps(record).encode())
    return record


def host_cpu() -> tuple[str, str]:
    """(CPU name, comma-separated feature string) of the host, as LLVM sees them."""
    record = host_record()
    return record["cpu"], record["features"]


# Position-independent code, small code model: a constant is one RIP-relative operand (even
# a broadcast folded into an FMA) instead of a movabs of its address then a load, which the
# JIT default (large model) re-emits inside hot loops whenever registers run short (W2
# softmax ~8% faster). Safe because objload maps an object's sections, call stubs and GOT
# in one mapping (and checks every 32-bit relocation's range); MCJIT's loader keeps the
# sections of one object near each other.
CODE_MODEL, RELOC = "small", "pic"


def new_target_machine():
    """A fresh llvmlite target machine for the host CPU at optimization level 3. An execution
    engine takes ownership of (and frees) the one it is created with, so each gets its own."""
    _initialized()
    llvm = _llvm()
    cpu, features = host_cpu()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, jit=True, codemodel=CODE_MODEL,
                                        reloc=RELOC)


@functools.lru_cache(maxsize=None)
def target_machine():
    """The shared host target machine used to optimize and emit code (never given to an engine)."""
    return new_target_machine()


def fingerprint() -> str:
    """Everything besides the IR that decides the machine code: part of every cache key."""
    import llvmlite

    record = host_record()
    return (f"llvmlite={llvmlite.__version__};llvm={record['llvm']};cpu={record['cpu']};"
            f"features={record['features']};code={CODE_MODEL},{RELOC}")


@functools.lru_cache(maxsize=None)
def vector_bytes() -> int:
    """Width in bytes of the widest vector register the host has (64, 32 or 16)."""
    features = set(host_cpu()[1].split(","))
    if "+avx512f" in features:
        return 64
    if "+avx" in features:
        return 32
    return 16


def vector_width(dtype) -> int:
    """Number of `dtype` lanes in one host vector register (bool counts as one byte)."""
    return max(1, vector_bytes() // np.dtype(dtype).itemsize)
