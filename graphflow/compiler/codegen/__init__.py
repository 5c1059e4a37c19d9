"""LLVM backend: target machine, JIT with a kernel cache, scalar IR builder, math emitters.

`target` describes the host CPU, `jit` turns IR text into callable machine code (through the
in-memory and on-disk kernel cache of `cache`), `scalar_llvm` implements the scalar-builder
interface of graphflow/ops/scalar.py on llvmlite IR values, and `mathfns` emits the
branch-free polynomial approximations that keep loops calling exp/log/tanh vectorizable.
"""
