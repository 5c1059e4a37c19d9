"""End-to-end smoke test: build, initialize, run, differentiate."""
import numpy as np

import graphflow as gf


def test_linear_model_runs_and_differentiates():
    x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
    w = gf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, name="w")
    b = gf.Variable(gf.zeros((3,)), name="b")
    y = gf.matmul(x, w) + b
    loss = gf.reduce_mean(gf.square(y - 1.0))
    gw, gb = gf.gradients(loss, [w, b])
    data = np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        l, gw_v, gb_v = sess.run([loss, gw, gb], {x: data})
    wv = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    yv = data @ wv
    np.testing.assert_allclose(l, np.mean((yv - 1) ** 2), rtol=1e-5)
    np.testing.assert_allclose(gw_v, data.T @ (2 * (yv - 1) / yv.size), rtol=1e-4)
    np.testing.assert_allclose(gb_v, np.sum(2 * (yv - 1) / yv.size, axis=0), rtol=1e-4)
