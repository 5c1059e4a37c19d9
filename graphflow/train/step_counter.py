"""The global step: one int64 counter per graph that training ops may increment."""
from __future__ import annotations

import numpy as np

from ..graph import Graph, get_default_graph
from ..variables import Variable

GLOBAL_STEP = "global_step"


def get_global_step(graph: Graph | None = None) -> Variable | None:
    """The graph's global step variable, or None if there is none yet."""
    steps = (graph or get_default_graph()).get_collection(GLOBAL_STEP)
    return steps[0] if steps else None


def get_or_create_global_step(graph: Graph | None = None) -> Variable:
    """The graph's `global_step` (an int64, non-trainable Variable starting at 0)."""
    graph = graph or get_default_graph()
    step = get_global_step(graph)
    if step is None:
        with graph.as_default(), graph.control_dependencies(None), graph._cond_branch(None), graph.name_scope(""):
            step = Variable(np.int64(0), trainable=False, name=GLOBAL_STEP)
        graph.add_to_collection(GLOBAL_STEP, step)
    return step


def global_step(sess, global_step_tensor) -> int:
    """The current value of `global_step_tensor` in `sess`, as a Python int."""
    return int(sess.run(global_step_tensor))
