"""Quiet floating-point error state for one run, set cheaply.

Kernels follow IEEE (inf, nan) without warnings, like the compiled loops. `np.errstate`
builds a context object per use (~1.3 us); with numpy >= 2 the state is a context
variable that can be set and reset directly (~0.2 us), which matters on per-call paths.
"""
from __future__ import annotations

import numpy as np

try:  # numpy >= 2: set the floating-point error state without building an errstate object
    from numpy._core._ufunc_config import _extobj_contextvar as _fp_var

    with np.errstate(all="ignore"):
        IGNORE = _fp_var.get()
    quiet_fp = _fp_var.set          # quiet_fp(IGNORE) -> token
    restore_fp = _fp_var.reset      # restore_fp(token)
except ImportError:  # older numpy: a (slower) errstate object per run
    IGNORE = None

    def quiet_fp(_):
        ctx = np.errstate(all="ignore")
        ctx.__enter__()
        return ctx

    def restore_fp(ctx):
        ctx.__exit__(None, None, None)
