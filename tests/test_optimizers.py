"""gf.train optimizers: three update steps of each against a numpy implementation of TF1's
rule, slot naming and initialization, compute/apply_gradients, global_step, and a softmax
regression trained with `minimize` that converges."""
import numpy as np
import pytest

import graphflow as gf

W0 = np.array([[0.5, -1.5, 2.0], [1.0, 0.25, -0.75]])
B0 = np.array([0.1, -0.2, 0.3])
X = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25], [2.0, 1.0]])


def _loss_and_grads(w, b):
    """loss = mean((X w + b)^3 / 3 + sin(X w + b)) and its exact gradients (numpy)."""
    z = X @ w + b
    dz = (z ** 2 + np.cos(z)) / z.size
    return X.T @ dz, dz.sum(axis=0)


def _build(dtype):
    w = gf.Variable(W0.astype(dtype), name="w")
    b = gf.Variable(B0.astype(dtype), name="b")
    z = gf.matmul(gf.constant(X.astype(dtype)), w) + b
    loss = gf.reduce_mean(z * z * z / 3.0 + gf.sin(z))
    return w, b, loss


def _sgd(lr):
    def step(p, g, s, t):
        return p - lr * g
    return step


def _momentum(lr, mu, nesterov=False):
    def step(p, g, s, t):
        s["a"] = mu * s.get("a", 0.0) + g
        return p - lr * (g + mu * s["a"]) if nesterov else p - lr * s["a"]
    return step


def _adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s, t):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return p - lr_t * s["m"] / (np.sqrt(s["v"]) + eps)
    return step


def _rmsprop(lr, rho=0.9, mu=0.0, eps=1e-10, centered=False):
    def step(p, g, s, t):
        s["ms"] = rho * s.get("ms", 1.0) + (1 - rho) * g * g
        denom = s["ms"]
        if centered:
            s["mg"] = rho * s.get("mg", 0.0) + (1 - rho) * g
            denom = denom - s["mg"] ** 2
        s["mom"] = mu * s.get("mom", 0.0) + lr * g / np.sqrt(denom + eps)
        return p - s["mom"]
    return step


CASES = {
    "sgd": (lambda: gf.train.GradientDescentOptimizer(0.1), _sgd(0.1)),
    "momentum": (lambda: gf.train.MomentumOptimizer(0.05, 0.9), _momentum(0.05, 0.9)),
    "nesterov": (lambda: gf.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True), _momentum(0.05, 0.9, True)),
    "adam": (lambda: gf.train.AdamOptimizer(0.1), _adam(0.1)),
    "adam_custom": (lambda: gf.train.AdamOptimizer(0.02, beta1=0.5, beta2=0.9, epsilon=1e-3),
                    _adam(0.02, 0.5, 0.9, 1e-3)),
    "rmsprop": (lambda: gf.train.RMSPropOptimizer(0.01), _rmsprop(0.01)),
    "rmsprop_momentum": (lambda: gf.train.RMSPropOptimizer(0.01, decay=0.8, momentum=0.7, epsilon=1e-6),
                         _rmsprop(0.01, 0.8, 0.7, 1e-6)),
    "rmsprop_centered": (lambda: gf.train.RMSPropOptimizer(0.01, centered=True), _rmsprop(0.01, centered=True)),
}


@pytest.mark.parametrize("dtype, opt_level", [(np.float64, 0), (np.float32, 0), (np.float32, 2)],
                         ids=["float64-O0", "float32-O0", "float32-O2"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_three_steps_match_numpy(case, dtype, opt_level):
    make, reference = CASES[case]
    w, b, loss = _build(dtype)
    train_op = make().minimize(loss)
    assert isinstance(train_op, gf.Operation)
    pw, pb = W0.copy(), B0.copy()
    sw, sb = {}, {}
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=1e-5)
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        for t in range(1, 4):
            gw, gb = _loss_and_grads(pw, pb)
            pw, pb = reference(pw, gw, sw, t), reference(pb, gb, sb, t)
            assert sess.run(train_op) is None
            got_w, got_b = sess.run([w, b])
            assert got_w.dtype == dtype
            np.testing.assert_allclose(got_w, pw, **tol, err_msg=f"{case}: w after step {t}")
            np.testing.assert_allclose(got_b, pb, **tol, err_msg=f"{case}: b after step {t}")


def test_slots_are_named_like_tf1_and_initialized_by_global_initializer():
    w, b, loss = _build(np.float32)
    opt = gf.train.AdamOptimizer()
    with gf.name_scope("training"):
        train_op = opt.minimize(loss)
    assert train_op.name == "training/Adam"
    names = {v.op.name for v in gf.global_variables()}
    assert {"w/Adam", "w/Adam_1", "b/Adam", "b/Adam_1", "beta1_power", "beta2_power"} <= names
    assert {v.op.name for v in gf.trainable_variables()} == {"w", "b"}
    assert opt.get_slot(w, "m").op.name == "w/Adam" and opt.get_slot(w, "v").op.name == "w/Adam_1"
    assert opt.get_slot_names() == ["m", "v"]
    mom = gf.train.MomentumOptimizer(0.1, 0.9)
    mom.minimize(loss)
    rms = gf.train.RMSPropOptimizer(0.1)
    rms.minimize(loss)
    assert mom.get_slot(w, "momentum").op.name == "w/Momentum"
    assert rms.get_slot(w, "rms").op.name == "w/RMSProp"
    assert rms.get_slot(w, "momentum").op.name == "w/RMSProp_1"
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(opt.get_slot(w, "m")), np.zeros((2, 3), np.float32))
        np.testing.assert_array_equal(sess.run(rms.get_slot(w, "rms")), np.ones((2, 3), np.float32))
        assert sess.run("beta1_power:0") == np.float32(0.9)


def test_minimize_inside_control_dependencies_keeps_slots_outside():
    w, b, loss = _build(np.float64)
    marker = gf.no_op(name="marker")
    with gf.control_dependencies([marker]):
        gf.train.MomentumOptimizer(0.1, 0.5).minimize(loss)
    slot = gf.get_default_graph().get_operation_by_name("w/Momentum")
    assert slot.control_inputs == []


def test_compute_and_apply_gradients_as_tf1():
    w, b, loss = _build(np.float64)
    unused = gf.Variable(np.zeros(2), name="unused")
    opt = gf.train.GradientDescentOptimizer(0.5)
    gv = opt.compute_gradients(loss)
    assert [v for _, v in gv] == [w, b, unused]
    assert gv[2][0] is None
    clipped = [(gf.clip_by_value(g, -0.1, 0.1), v) for g, v in gv if g is not None]
    step = gf.Variable(0, name="global_step", dtype=gf.int64, trainable=False)
    train_op = opt.apply_gradients(clipped, global_step=step)
    gw, gb = _loss_and_grads(W0, B0)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train_op)
        sess.run(train_op)
        assert sess.run(step) == 2
        gw2, gb2 = _loss_and_grads(W0 - 0.5 * np.clip(gw, -0.1, 0.1), B0 - 0.5 * np.clip(gb, -0.1, 0.1))
        np.testing.assert_allclose(sess.run(w), W0 - 0.5 * np.clip(gw, -0.1, 0.1) - 0.5 * np.clip(gw2, -0.1, 0.1))


def test_minimize_with_global_step_and_var_list():
    w, b, loss = _build(np.float64)
    step = gf.train.get_or_create_global_step()
    assert gf.train.get_or_create_global_step() is step
    assert step.op.name == "global_step" and step.dtype == gf.int64 and not step.trainable
    train_op = gf.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[b], global_step=step)
    tf1_style = gf.train.GradientDescentOptimizer(0.1).minimize(loss, step)  # TF1's positional global_step
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train_op)
        np.testing.assert_array_equal(sess.run(w), W0)  # not in var_list
        assert not np.allclose(sess.run(b), B0)
        sess.run(tf1_style)
        assert sess.run(step) == 2
        assert gf.train.global_step(sess, step) == 2


def test_learning_rate_may_be_a_placeholder():
    w = gf.Variable(np.array([1.0, -2.0], np.float32), name="w")
    lr = gf.placeholder(gf.float32, (), name="lr")
    train_op = gf.train.GradientDescentOptimizer(lr).minimize(gf.reduce_sum(gf.square(w)))
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(train_op, {lr: 0.25})
        np.testing.assert_allclose(sess.run(w), [0.5, -1.0])
        with pytest.raises(gf.errors.InvalidArgumentError, match="lr"):
            sess.run(train_op)
        np.testing.assert_allclose(sess.run(w), [0.5, -1.0])


def test_optimizer_errors_name_what_is_wrong():
    w = gf.Variable(np.ones(2, np.float32), name="w")
    other = gf.Variable(np.ones(2, np.float32), name="other")
    loss = gf.reduce_sum(w * 2.0)
    opt = gf.train.AdamOptimizer()
    with pytest.raises(ValueError, match="'other'"):
        opt.minimize(loss, var_list=[other])
    with pytest.raises(ValueError, match="no gradients"):
        opt.apply_gradients([(None, w)])
    with pytest.raises(TypeError, match="int32"):
        opt.minimize(gf.reduce_sum(gf.cast(w, gf.int32)))
    with pytest.raises(TypeError, match="gf.Variable"):
        opt.apply_gradients([(gf.ones((2,)), w.value())])


def test_softmax_regression_converges_with_minimize():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 5))
    labels = rng.integers(0, 3, size=300)
    data = (centers[labels] + rng.normal(0, 1, size=(300, 5))).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[labels]
    x = gf.placeholder(gf.float32, (None, 5), name="x")
    y = gf.placeholder(gf.float32, (None, 3), name="y")
    w = gf.Variable(np.zeros((5, 3), np.float32), name="w")
    b = gf.Variable(np.zeros(3, np.float32), name="b")
    logits = gf.matmul(x, w) + b
    log_probs = logits - gf.reduce_logsumexp(logits, axis=1, keepdims=True)
    loss = -gf.reduce_mean(gf.reduce_sum(y * log_probs, axis=1))
    correct = gf.equal(gf.argmax(logits, 1), gf.argmax(y, 1))
    accuracy = gf.reduce_mean(gf.cast(correct, gf.float32))
    train_op = gf.train.AdamOptimizer(0.1).minimize(loss)
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        first = sess.run(loss, {x: data, y: onehot})
        step = sess.make_callable([train_op, loss], feed_list=[x, y])
        for _ in range(60):
            _, last = step(data, onehot)
        acc = sess.run(accuracy, {x: data, y: onehot})
    assert first == pytest.approx(np.log(3), rel=1e-5)
    assert last < 0.3 * first
    assert acc > 0.9
