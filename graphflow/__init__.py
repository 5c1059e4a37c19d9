"""graphflow: a static dataflow-graph compiler with a session-based executor.

Build a graph (placeholders, Variables, ops), then run parts of it in a Session:

    import graphflow as gf
    x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
    y = gf.reduce_sum(gf.square(x), axis=1)
    with gf.Session() as sess:
        print(sess.run(y, {x: [[1, 2, 3, 4]]}))
"""
from __future__ import annotations

from . import source_fingerprint as _source_fingerprint  # noqa: F401 - first: records the sources as imported
from . import dtypes as _dtypes
from . import errors
from .dtypes import bool, float32, float64, int32, int64  # noqa: A004 - public names mirror TF
from .graph import (Graph, Operation, Tensor, control_dependencies, get_default_graph, name_scope,
                    reset_default_graph)
from .ops import operators as _operators  # noqa: F401 - attaches Tensor operators
from .ops.array_ops import (constant, eye, fill, ones, ones_like, placeholder, range, set_random_seed,
                            zeros, zeros_like)
from .ops.cond import cond
from .ops.control import group, identity, no_op, stop_gradient
from .ops.linalg import matmul
from .ops.math_api import (abs, add, cast, ceil, clip_by_value, cos, divide, equal, erf, exp, expm1, floor,
                           floordiv, greater, greater_equal, isfinite, isnan, less, less_equal, log, log1p,
                           logical_and, logical_not, logical_or, maximum, minimum, mod, multiply, negative,
                           not_equal, pow, reciprocal, round, rsqrt, sigmoid, sign, sin, sqrt, square,
                           subtract, tanh, where)
from .ops.reduction import (argmax, argmin, reduce_logsumexp, reduce_max, reduce_mean, reduce_min,
                            reduce_prod, reduce_sum)
from .ops.shape_ops import broadcast_to, expand_dims, gather, reshape, shape, size, squeeze, transpose
from .ops.concat_split import concat, split, stack
from .ops.pad_tile import pad, tile
from .ops.one_hot import one_hot
from . import nn
from .ops import state_ops as _state_ops  # noqa: F401 - registers variable ops
from . import random
from . import train
from .gradients import gradients
from .compiler.compiled import CompiledGraph, compile  # noqa: A004 - gf.compile is public API
from .runtime.session import Session, get_default_session
from .runtime.trace import RunMetadata, RunOptions
from .variables import (Variable, global_variables, global_variables_initializer, trainable_variables,
                        variables_initializer)
from . import keras  # noqa: E402 - the front end builds on everything above

__version__ = "0.1.0"
