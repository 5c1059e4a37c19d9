"""`gf.train`: optimizers that add update ops to the graph, checkpoints, the global step."""
from __future__ import annotations

from .step_counter import get_global_step, get_or_create_global_step, global_step
from .optimizers import (AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, Optimizer,
                         RMSPropOptimizer)

__all__ = ["AdamOptimizer", "GradientDescentOptimizer", "MomentumOptimizer", "Optimizer", "RMSPropOptimizer",
           "get_global_step", "get_or_create_global_step", "global_step"]
