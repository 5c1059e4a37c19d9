"""The shared test inputs of the generated op tests: shape lists (one list of broadcasting
pairs for every binary op) and input values drawn from an op's declared test domain."""
import numpy as np

SHAPES = [(), (1,), (5,), (2, 3), (0, 3), (2, 1, 3)]
BROADCAST_PAIRS = [((), ()), ((4,), (4,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((3, 1, 2), (4, 1)),
                   ((0, 3), (1, 3)), ((2, 3), ()), ((1,), (0,))]
SELECT_SHAPES = [((2, 3), (2, 3), (2, 3)), ((2, 1), (1, 3), (3,)), ((), (2,), (2,)), ((0, 2), (2,), ())]
REDUCE_SHAPES = [(5,), (2, 3), (2, 1, 3), (0, 3), (3, 0)]
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 1e30])


# ---- input values by test domain ----

def sample(domain: str, shape, dtype, rng) -> np.ndarray:
    dtype = np.dtype(dtype)
    if domain == "bool" or dtype == np.dtype(bool):
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        if domain in ("positive", "nonzero"):
            v = rng.integers(1, 6, shape)
            return (v * rng.choice([-1, 1], shape) if domain == "nonzero" else v).astype(dtype)
        if domain in ("index", "label"):
            return rng.integers(0, 3, shape).astype(dtype)
        return rng.integers(-5, 6, shape).astype(dtype)
    if domain == "positive":
        v = rng.uniform(0.5, 2.0, shape)
    elif domain == "nonzero":
        v = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    elif domain == "unit01":
        v = rng.uniform(0.0, 1.0, shape)
    elif domain == "distribution":
        v = rng.uniform(0.1, 1.0, shape)
        v = v / v.sum(axis=-1, keepdims=True)
    else:
        v = rng.standard_normal(shape)
    return np.asarray(v, dtype=dtype)
