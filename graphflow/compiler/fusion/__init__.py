"""Fusion (opt_level 2): the planner groups ops into kernels, `emit` writes them as LLVM IR,
and the `Fused` op runs them. See planner.py, kernel_ir.py, emit.py, fused_op.py."""
from .fuse import fuse

__all__ = ["fuse"]
