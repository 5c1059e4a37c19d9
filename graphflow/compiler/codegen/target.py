"""The host target: one LLVM target machine for the CPU this process runs on.

Kernels are compiled for the exact host CPU (name and feature flags), otherwise LLVM's
vectorizers assume a generic x86-64 and never use AVX2/AVX-512 registers.
"""
from __future__ import annotations

import functools

import llvmlite
import llvmlite.binding as llvm
import numpy as np


@functools.lru_cache(maxsize=None)
def _initialized() -> bool:
    # llvm.initialize() raises on llvmlite >= 0.45; only the native target is needed.
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    return True


@functools.lru_cache(maxsize=None)
def host_cpu() -> tuple[str, str]:
    """(CPU name, comma-separated feature string) of the host, as LLVM sees them."""
    _initialized()
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def new_target_machine() -> llvm.TargetMachine:
    """A fresh target machine for the host CPU at optimization level 3. An execution engine
    takes ownership of (and frees) the one it is created with, so each engine gets its own."""
    _initialized()
    cpu, features = host_cpu()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, jit=True)


@functools.lru_cache(maxsize=None)
def target_machine() -> llvm.TargetMachine:
    """The shared host target machine used to optimize and emit code (never given to an engine)."""
    return new_target_machine()


def fingerprint() -> str:
    """Everything besides the IR that decides the machine code: part of every cache key."""
    cpu, features = host_cpu()
    return f"llvmlite={llvmlite.__version__};llvm={llvm.llvm_version_info};cpu={cpu};features={features}"


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
