"""gf.nn beyond the generated op tests: convolution and pooling against naive loops over
SAME/VALID/strides, softmax stability, the cross-entropies against their textbook
formulas, dropout statistics, and build-time errors that name the op and the shapes."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.ops import nn_ops
import naive_nn

rng = np.random.default_rng(0)


def run(fetches, feed=None):
    with gf.Session(opt_level=0) as sess:
        return sess.run(fetches, feed)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, (2, 2), (1, 3), [1, 2, 1, 1]])
@pytest.mark.parametrize("image, kernel", [((2, 7, 6, 3), (3, 3, 3, 4)), ((1, 5, 5, 1), (2, 4, 1, 2)),
                                           ((3, 4, 9, 2), (1, 1, 2, 3))])
def test_conv2d_matches_naive_loops(image, kernel, strides, padding):
    x = rng.standard_normal(image).astype(np.float32)
    w = rng.standard_normal(kernel).astype(np.float32)
    y = gf.nn.conv2d(gf.constant(x), gf.constant(w), strides=strides, padding=padding)
    st = (strides, strides) if isinstance(strides, int) else tuple(strides)[-3:-1] if len(strides) == 4 else tuple(strides)
    expected = naive_nn.conv2d(x, w, st, padding)
    assert y.shape == expected.shape
    np.testing.assert_allclose(run(y), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("ksize, strides", [(2, 2), ((3, 3), (2, 2)), ((2, 3), (1, 2)), (3, 1), ([1, 3, 2, 1], [1, 1, 2, 1])])
def test_pooling_matches_naive_loops(ksize, strides, padding):
    x = rng.standard_normal((2, 7, 6, 3))
    mp = gf.nn.max_pool2d(gf.constant(x), ksize, strides, padding)
    ap = gf.nn.avg_pool2d(gf.constant(x), ksize, strides, padding)
    k = (ksize, ksize) if isinstance(ksize, int) else tuple(ksize)[1:3] if len(ksize) == 4 else tuple(ksize)
    s = (strides, strides) if isinstance(strides, int) else tuple(strides)[1:3] if len(strides) == 4 else tuple(strides)
    m, a = run([mp, ap])
    np.testing.assert_allclose(m, naive_nn.max_pool(x, k, s, padding))
    np.testing.assert_array_equal(run(gf.nn.max_pool2d(input=gf.constant(x), ksize=ksize, strides=strides,
                                                       padding=padding)), m)
    np.testing.assert_allclose(a, naive_nn.avg_pool(x, k, s, padding), rtol=1e-12)
    assert mp.shape == m.shape and ap.shape == a.shape


def test_avg_pool_same_averages_only_inside_the_image():
    x = np.ones((1, 3, 3, 1))
    a = run(gf.nn.avg_pool2d(gf.constant(x), 3, 1, "SAME"))
    np.testing.assert_allclose(a, np.ones_like(a))  # zeros of the padding would pull corners to 4/9


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = gf.constant(np.array([[1.0, 3.0], [3.0, 0.0]]).reshape(1, 2, 2, 1))
    (g,) = gf.gradients(gf.reduce_sum(gf.nn.max_pool2d(x, 2, 2, "VALID")), [x])
    np.testing.assert_array_equal(run(g).reshape(2, 2), [[0.0, 1.0], [0.0, 0.0]])


def test_max_pool_gradient_ignores_padding_even_against_minus_inf():
    x = gf.constant(np.array([[-np.inf, -np.inf], [-np.inf, 5.0]]).reshape(1, 2, 2, 1))
    (g,) = gf.gradients(gf.reduce_sum(gf.nn.max_pool2d(x, 3, 1, "SAME")), [x])
    # each of the four 3x3 windows covers the whole 2x2 image: all route to the 5
    np.testing.assert_array_equal(run(g).reshape(2, 2), [[0.0, 0.0], [0.0, 4.0]])
    y = gf.nn.max_pool2d(gf.constant(np.full((1, 2, 2, 1), -np.inf)), 2, 2, "SAME")
    (g,) = gf.gradients(gf.reduce_sum(y), [y.op.inputs[0]])
    np.testing.assert_array_equal(run(g).reshape(2, 2), [[1.0, 0.0], [0.0, 0.0]])


def test_conv2d_with_unknown_batch_and_gradients():
    x = gf.placeholder(gf.float32, (None, 6, 6, 2))
    w = gf.constant(rng.standard_normal((3, 3, 2, 4)).astype(np.float32))
    y = gf.nn.max_pool2d(gf.nn.relu(gf.nn.conv2d(x, w, 2, "SAME")), 2, 2, "SAME")
    assert y.shape == (None, 2, 2, 4)
    gx, gw = gf.gradients(gf.reduce_sum(y), [x, w])
    xv = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    yv, gxv, gwv = run([y, gx, gw], {x: xv})
    assert yv.shape == (5, 2, 2, 4) and gxv.shape == xv.shape and gwv.shape == (3, 3, 2, 4)


def test_conv2d_errors_name_the_op_and_shapes():
    x = gf.placeholder(gf.float32, (1, 5, 5, 3))
    with pytest.raises(ValueError, match=r"Conv2D.*channels 3.*\(1, 5, 5, 3\).*2.*\(3, 3, 2, 4\)"):
        gf.nn.conv2d(x, gf.zeros((3, 3, 2, 4)))
    with pytest.raises(ValueError, match=r"Conv2D.*VALID.*height \(5\).*window \(7\)"):
        gf.nn.conv2d(x, gf.zeros((7, 1, 3, 1)), padding="VALID")
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID'"):
        gf.nn.conv2d(x, gf.zeros((1, 1, 3, 1)), padding="FULL")
    np.testing.assert_allclose(run(gf.nn.conv2d(input=x, filter=gf.ones((1, 1, 3, 1)), strides=[1, 1, 1, 1],
                                                padding="VALID"),
                                   {x: np.ones((1, 5, 5, 3))}), np.full((1, 5, 5, 1), 3.0))
    with pytest.raises(ValueError, match="strides"):
        gf.nn.conv2d(x, gf.zeros((1, 1, 3, 1)), strides=(2, 2, 2, 2))
    with pytest.raises(TypeError, match="float32.*float64"):
        gf.nn.conv2d(x, gf.zeros((1, 1, 3, 1), dtype=gf.float64))
    with pytest.raises(ValueError, match=r"MaxPool.*4-D NHWC.*\(5, 5\)"):
        gf.nn.max_pool2d(gf.zeros((5, 5)), 2, 2, "SAME")


def test_softmax_is_stable_on_large_logits():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1e30], [0.0, 0.0, 0.0]], np.float32)
    e = np.exp(np.array([[0.0, 1.0, 2.0], [0.0, -1.0, -np.inf], [0.0, 0.0, 0.0]]))
    expected = e / e.sum(1, keepdims=True)
    sm, lsm, lse = run([gf.nn.softmax(x), gf.nn.log_softmax(x), gf.reduce_logsumexp(x, axis=1)])
    np.testing.assert_allclose(sm, expected, rtol=1e-6)
    assert np.isfinite(lsm[:, :2]).all()
    np.testing.assert_allclose(lsm[0], np.log(expected[0]), rtol=1e-5)
    np.testing.assert_allclose(lse, np.logaddexp.reduce(x.astype(np.float64), axis=1), rtol=1e-6)


def test_softmax_rows_with_minus_inf_mask():
    x = np.array([[0.5, -np.inf, 1.0]])
    np.testing.assert_allclose(run(gf.nn.softmax(x))[0], [np.exp(-0.5) / (1 + np.exp(-0.5)), 0.0,
                                                          1 / (1 + np.exp(-0.5))], rtol=1e-6)


def test_cross_entropies_match_textbook_formulas():
    logits = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, 6)
    dist = rng.uniform(size=(6, 5))
    dist /= dist.sum(1, keepdims=True)
    z = rng.uniform(size=(6, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    s = 1 / (1 + np.exp(-logits))
    sp, dense, sig = run([
        gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
        gf.nn.softmax_cross_entropy_with_logits(labels=dist, logits=logits),
        gf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=logits)])
    np.testing.assert_allclose(sp, -np.log(p[np.arange(6), labels]), rtol=1e-10)
    np.testing.assert_allclose(dense, -(dist * np.log(p)).sum(1), rtol=1e-10)
    np.testing.assert_allclose(sig, -(z * np.log(s) + (1 - z) * np.log(1 - s)), rtol=1e-9)


def test_cross_entropies_stay_finite_on_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0]], np.float32)
    sp, sig = run([gf.nn.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=logits),
                   gf.nn.sigmoid_cross_entropy_with_logits(labels=np.array([[0.0, 1.0, 1.0]], np.float32),
                                                           logits=logits)])
    np.testing.assert_allclose(sp, [2e4], rtol=1e-6)
    np.testing.assert_allclose(sig, [[1e4, 1e4, np.log(2.0)]], rtol=1e-6)


def test_sparse_cross_entropy_gradient_is_softmax_minus_one_hot():
    logits = gf.constant(rng.standard_normal((4, 3)))
    labels = np.array([2, 0, 1, 1])
    (g,) = gf.gradients(gf.reduce_sum(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)),
                        [logits])
    lv, gv = run([logits, g])
    p = np.exp(lv) / np.exp(lv).sum(1, keepdims=True)
    np.testing.assert_allclose(gv, p - np.eye(3)[labels], rtol=1e-12)


@pytest.mark.parametrize("dtype", [gf.int32, gf.int64])
@pytest.mark.parametrize("bad", [3, -1, -(2 ** 31)])
@pytest.mark.parametrize("n", [2, nn_ops.LIST_MAX_LABELS + 1])   # (the check's two ways to the maximum)
def test_sparse_cross_entropy_rejects_labels_out_of_range(dtype, bad, n):
    labels = gf.placeholder(dtype, (None,))
    loss = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=gf.zeros((n, 3)))
    good, wrong = np.arange(n) % 3, np.zeros(n, np.int64)
    wrong[n // 2] = bad
    for level in (0, 2):
        with gf.Session(opt_level=level) as sess:
            with pytest.raises(gf.errors.InvalidArgumentError,
                               match=rf"CheckLabels.*label value of {bad} .* \[0, 3\)"):
                sess.run(loss, {labels: wrong})
            np.testing.assert_allclose(sess.run(loss, {labels: good}), [np.log(3.0)] * n, rtol=1e-6)


def test_sparse_cross_entropy_with_unknown_class_count():
    logits = gf.placeholder(gf.float64, (None, None))
    labels = gf.placeholder(gf.int64, (None,))
    loss = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    (g,) = gf.gradients(gf.reduce_sum(loss), [logits])
    lv = rng.standard_normal((3, 5))
    yv = np.array([4, 0, 2])
    out, gv = run([loss, g], {logits: lv, labels: yv})
    p = np.exp(lv) / np.exp(lv).sum(1, keepdims=True)
    np.testing.assert_allclose(out, -np.log(p[np.arange(3), yv]), rtol=1e-12)
    np.testing.assert_allclose(gv, p - np.eye(5)[yv], rtol=1e-12)


def test_range_with_tensor_bounds():
    x = gf.placeholder(gf.float32, (None, 2))
    r = gf.range(gf.shape(x)[0])
    r2 = gf.range(1, gf.shape(x)[0] * 2, 3, dtype=gf.int64)
    a, b = run([r, r2], {x: np.zeros((7, 2))})
    np.testing.assert_array_equal(a, np.arange(7))
    np.testing.assert_array_equal(b, np.arange(1, 14, 3))
    assert r.dtype == np.int32 and b.dtype == np.int64 and r.shape == (None,)


def test_cross_entropy_shape_errors():
    with pytest.raises(ValueError, match=r"labels .* shape \(3,\), expected logits.shape\[:-1\] = \(4,\)"):
        gf.nn.sparse_softmax_cross_entropy_with_logits(labels=gf.zeros((3,), gf.int32), logits=gf.zeros((4, 5)))
    with pytest.raises(TypeError, match="int32 or int64"):
        gf.nn.sparse_softmax_cross_entropy_with_logits(labels=gf.zeros((4,)), logits=gf.zeros((4, 5)))
    with pytest.raises(ValueError, match="same shape"):
        gf.nn.softmax_cross_entropy_with_logits(labels=gf.zeros((4, 4)), logits=gf.zeros((4, 5)))
    with pytest.raises(ValueError, match="both labels= and logits= are required"):
        gf.nn.sigmoid_cross_entropy_with_logits(logits=gf.zeros((4,)))
    z, x = np.array([0.2, 1.0]), np.array([-1.0, 3.0])
    positional, named = run([gf.nn.sigmoid_cross_entropy_with_logits(z, x),  # TF2 order: labels, logits
                             gf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x)])
    np.testing.assert_array_equal(positional, named)


def test_dropout_statistics():
    x = gf.ones((200, 500))
    y = gf.nn.dropout(x, rate=0.3, seed=7)
    a, b = run([y, y])  # one run: the same values for both fetches
    np.testing.assert_array_equal(a, b)
    kept = a != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(a[kept], 1 / 0.7, rtol=1e-6)
    assert abs(a.mean() - 1.0) < 0.02
    with gf.Session(opt_level=0) as sess:
        assert not np.array_equal(sess.run(y), sess.run(y)), "each run draws a new mask"


def test_dropout_noise_shape_shares_the_mask():
    x = gf.placeholder(gf.float32, (None, 6))
    y = gf.nn.dropout(x, 0.5, seed=5, noise_shape=[None, 1])
    out = run(y, {x: np.ones((40, 6), np.float32)})
    assert set(np.unique(out)) <= {0.0, 2.0}
    assert (out == out[:, :1]).all(), "one decision per row"
    assert 0 < (out[:, 0] == 0).sum() < 40


def test_dropout_rate_zero_is_identity_and_unknown_shapes_work():
    x = gf.placeholder(gf.float32, (None, 4))
    xv = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(gf.nn.dropout(x, 0.0), {x: xv}), xv)
    y = gf.nn.dropout(x, 0.5, seed=1)
    assert y.shape == (None, 4)
    out = run(y, {x: xv})
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out[out != 0], 2 * xv[out != 0], rtol=1e-6)
    (g,) = gf.gradients(gf.reduce_sum(gf.nn.dropout(x, gf.constant(0.25), seed=2)), [x])
    gv = run(g, {x: xv})
    assert set(np.unique(gv)) <= {0.0, np.float32(1 / 0.75)}
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        gf.nn.dropout(x, 1.0)
    np.testing.assert_array_equal(run(gf.nn.dropout(x, keep_prob=1.0), {x: xv}), xv)  # TF1 spelling
    kept = run(gf.nn.dropout(x, keep_prob=0.5, seed=3), {x: xv})
    np.testing.assert_allclose(kept[kept != 0], 2 * xv[kept != 0], rtol=1e-6)


def test_moments_and_batch_normalization():
    x = rng.standard_normal((8, 4, 3))
    mean, var = gf.nn.moments(gf.constant(x), axes=[0, 1])
    y = gf.nn.batch_normalization(gf.constant(x), mean, var, offset=gf.constant(np.ones(3)),
                                  scale=gf.constant(np.full(3, 2.0)), variance_epsilon=1e-3)
    y_plain = gf.nn.batch_normalization(gf.constant(x), mean, var, None, None, eps=1e-3)
    m, v, yv, yp = run([mean, var, y, y_plain])
    np.testing.assert_allclose(m, x.mean((0, 1)))
    np.testing.assert_allclose(v, x.var((0, 1)))
    np.testing.assert_allclose(yv, 2 * (x - m) / np.sqrt(v + 1e-3) + 1, rtol=1e-10)
    np.testing.assert_allclose(yp, (x - m) / np.sqrt(v + 1e-3), rtol=1e-10)
    y32 = gf.nn.batch_normalization(gf.constant(x.astype(np.float32)), m, v, 1.0, 2.0, 1e-3)  # numpy statistics
    np.testing.assert_allclose(run(y32), yv, rtol=1e-5)
    mk, _ = gf.nn.moments(gf.constant(x), axes=[1], keepdims=True)
    assert mk.shape == (8, 1, 3) and mean.shape == (3,)


def test_bias_add_and_l2_loss():
    x = rng.standard_normal((2, 3, 4))
    b = rng.standard_normal(4)
    out, l2 = run([gf.nn.bias_add(x, b), gf.nn.l2_loss(x)])
    f32 = run(gf.nn.bias_add(gf.constant(x.astype(np.float32)), b))  # a numpy bias takes the value's dtype
    assert f32.dtype == np.float32
    np.testing.assert_allclose(out, x + b)
    assert l2 == pytest.approx(0.5 * np.sum(x ** 2))
    nchw = run(gf.nn.bias_add(rng.standard_normal((2, 4, 3, 3)), b, data_format="NCHW"))
    assert nchw.shape == (2, 4, 3, 3)
    with pytest.raises(ValueError, match=r"bias .* 3 elements, value .* 4 channels"):
        gf.nn.bias_add(x, np.zeros(3))


@pytest.mark.parametrize("fn, expected", [
    (gf.nn.relu, lambda x: np.maximum(x, 0)),
    (gf.nn.relu6, lambda x: np.minimum(np.maximum(x, 0), 6)),
    (gf.nn.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x)),
    (gf.nn.elu, lambda x: np.where(x > 0, x, np.expm1(x))),
    (gf.nn.softplus, lambda x: np.log1p(np.exp(x))),
    (lambda x: gf.nn.gelu(x, approximate=True),
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
])
def test_activations_float32(fn, expected):
    x = np.linspace(-8, 8, 41).astype(np.float32)
    np.testing.assert_allclose(run(fn(x)), expected(x.astype(np.float64)), rtol=2e-6, atol=1e-6)


def test_array_builders():
    a = np.arange(6).reshape(2, 3)
    parts = gf.split(gf.constant(a), [1, -1], axis=1)
    pieces = run(parts + [gf.concat([a, a], -1), gf.stack([a, a], axis=-1), gf.tile(a, [2, 1]),
                          gf.pad(a, [[1, 0], [0, 2]], constant_values=9), gf.one_hot([1, -1, 7], 3),
                          gf.pad(a, [[1, 1], [2, 2]], mode="REFLECT")])
    np.testing.assert_array_equal(pieces[0], a[:, :1])
    np.testing.assert_array_equal(pieces[1], a[:, 1:])
    np.testing.assert_array_equal(pieces[2], np.concatenate([a, a], -1))
    np.testing.assert_array_equal(pieces[3], np.stack([a, a], -1))
    np.testing.assert_array_equal(pieces[4], np.tile(a, (2, 1)))
    np.testing.assert_array_equal(pieces[5], np.pad(a, [[1, 0], [0, 2]], constant_values=9))
    np.testing.assert_array_equal(pieces[6], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert pieces[6].dtype == np.float32
    np.testing.assert_array_equal(pieces[7], np.pad(a, [[1, 1], [2, 2]], mode="reflect"))
    with pytest.raises(ValueError, match="cannot be split evenly"):
        gf.split(gf.constant(a), 2, axis=1)
    with pytest.raises(ValueError, match=r"concat.*dimension 1.*\(2, 4\)"):
        gf.concat([a, np.zeros((2, 4), a.dtype)], axis=0)
    with pytest.raises(TypeError, match="int64.*float32"):
        gf.concat([gf.constant(a), gf.zeros((2, 3))], axis=0)


def test_activations_and_composites_agree_across_opt_levels():
    """The activations' scalar programs (compiled at opt_level 2) and the composites' fused
    row kernels give the numpy reference's results, NaN and inf included."""
    x = gf.placeholder(gf.float32, (None, 64))
    xi = gf.placeholder(gf.int32, (None, 64))
    outs = [gf.nn.relu(x), gf.nn.relu6(x * 4.0), gf.nn.leaky_relu(x, 0.3), gf.nn.elu(x), gf.nn.selu(x),
            gf.nn.softplus(x * 30.0), gf.nn.gelu(x), gf.nn.gelu(x, approximate=True), gf.nn.relu(xi),
            gf.nn.relu6(xi), gf.nn.softmax(x), gf.nn.log_softmax(x), gf.reduce_logsumexp(x, axis=1),
            gf.nn.sigmoid_cross_entropy_with_logits(labels=gf.sigmoid(x), logits=x * 3.0),
            gf.one_hot(xi % 7, 7), gf.nn.l2_loss(x), gf.nn.moments(x, [0])[1]]
    outs += gf.gradients(gf.reduce_sum(gf.nn.gelu(x) * gf.nn.softplus(x) + gf.nn.elu(x) * gf.nn.selu(x)), [x])
    xv = rng.standard_normal((6, 64)).astype(np.float32) * 3
    xv[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    iv = rng.integers(-10, 10, (6, 64)).astype(np.int32)
    results = []
    for level in (0, 2):
        with gf.Session(opt_level=level) as sess:
            results.append(sess.run(outs, {x: xv, xi: iv}))
    for t, ref, fused in zip(outs, *results):
        np.testing.assert_allclose(fused, ref, rtol=2e-5, atol=2e-6, equal_nan=True, err_msg=t.name)


def test_shapes_given_as_tensors_or_lists_with_tensors():
    x = gf.placeholder(gf.float32, (None, 3, 4))
    flat = gf.reshape(x, [gf.shape(x)[0], -1])
    z = gf.zeros([gf.shape(x)[0], 10], dtype=gf.bool)
    u = gf.random.uniform([gf.shape(x)[0], 2], seed=1)
    b = gf.broadcast_to(gf.constant([1.0, 2.0, 3.0, 4.0]), gf.shape(x))
    assert (flat.shape, z.shape, u.shape, b.shape) == ((None, None), (None, 10), (None, 2), (None, None, 4))
    (g,) = gf.gradients(gf.reduce_sum(b * x), [b.op.inputs[0]])
    xv = rng.standard_normal((2, 3, 4)).astype(np.float32)
    fv, zv, uv, bv, gv = run([flat, z, u, b, g], {x: xv})
    np.testing.assert_array_equal(fv, xv.reshape(2, -1))
    assert zv.shape == (2, 10) and zv.dtype == np.bool_ and not zv.any()
    assert uv.shape == (2, 2)
    np.testing.assert_array_equal(bv, np.broadcast_to([1.0, 2.0, 3.0, 4.0], (2, 3, 4)))
    np.testing.assert_allclose(gv, xv.sum((0, 1)), rtol=1e-6)
