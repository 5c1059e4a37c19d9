"""A plan's fused steps remember output shapes per input shapes: every batch size, in any
order and more of them than the steps remember, gets outputs of its own shape."""
import numpy as np

import graphflow as gf
from graphflow.runtime import execution_plan


def test_many_batch_sizes_through_one_plan_give_right_shapes_and_values():
    x = gf.placeholder(gf.float32, (None, 6), name="x")
    w = gf.constant(np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3))
    h = gf.nn.relu(gf.matmul(x, w) + 0.25)          # an epilogue into a reused buffer
    y = gf.reduce_sum(gf.exp(-h) * h, axis=1)       # a row kernel reading it
    rng = np.random.default_rng(5)
    sizes = list(range(0, execution_plan.SHAPES_CACHED + 12)) + [3, 1, 40, 0, 2]
    with gf.Session(opt_level=2) as sess:
        run = sess.make_callable([gf.reduce_max(h, axis=1), y], [x])   # h itself lives in a plan buffer
        for n in sizes:
            data = rng.normal(size=(n, 6)).astype(np.float32)
            got_m, got_y = run(data)
            ref_h = np.maximum(data @ np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3) + 0.25, 0)
            assert got_m.shape == (n,) and got_y.shape == (n,)
            np.testing.assert_allclose(got_m, ref_h.max(axis=1, initial=-np.inf), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_y, (np.exp(-ref_h) * ref_h).sum(axis=1), rtol=1e-5, atol=1e-6)
