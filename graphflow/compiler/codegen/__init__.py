"""LLVM backend: target machine, JIT with a kernel cache, scalar IR builder, math emitters.

- `target`: the host CPU (name, features, vector width) and its LLVM target machine.
- `jit`: `compile_module(ir_text) -> JitModule`, optimized with the new pass manager (O3,
  loop + SLP vectorization) through the in-memory and on-disk kernel cache of `cache`.
- `scalar_llvm`: `LLVMScalarBuilder`, the scalar-builder interface of graphflow/ops/scalar.py
  on llvmlite IR values (scalars or vectors), with numpy semantics.
- `irtypes`: dtype <-> IR type mapping, splats, intrinsic calls, bool-as-byte loads/stores.
- `mathfns`: branch-free polynomial exp/log/log1p/expm1/tanh/sigmoid/erf (docs/accuracy.md);
  `mathlib`: how kernels call them (inlined, or shared vector variants in big modules).
"""
