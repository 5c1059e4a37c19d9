"""`gf.train`: optimizers that add update ops to the graph, checkpoints, the global step."""
from __future__ import annotations

from .saver import Saver, latest_checkpoint, list_variables, load_variable
from .step_counter import get_global_step, get_or_create_global_step, global_step
from .optimizers import (AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, Optimizer,
                         RMSPropOptimizer)

__all__ = ["AdamOptimizer", "GradientDescentOptimizer", "MomentumOptimizer", "Optimizer", "RMSPropOptimizer",
           "Saver", "latest_checkpoint", "list_variables", "load_variable", "get_global_step", "get_or_create_global_step", "global_step"]
