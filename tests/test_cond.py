"""gf.cond with TF1 semantics: only the taken branch is evaluated (its failing ops and its
variable writes never happen otherwise), nesting, structures, errors, and gradients."""
import numpy as np
import pytest

import graphflow as gf


@pytest.fixture(params=[0, 1, 2], ids=lambda level: f"O{level}")
def opt_level(request):
    return request.param


def test_untaken_branch_is_not_evaluated(opt_level):
    p = gf.placeholder(gf.bool, (), name="p")
    x = gf.placeholder(gf.float32, (None,), name="x")
    # the false branch fails for any x of 3 elements; the true branch is fine
    out = gf.cond(p, lambda: x * 2.0, lambda: gf.reshape(x, (7,)) + 1.0)
    with gf.Session(opt_level=opt_level) as sess:
        np.testing.assert_array_equal(sess.run(out, {p: True, x: [1.0, 2.0, 3.0]}), [2.0, 4.0, 6.0])
        with pytest.raises(gf.errors.InvalidArgumentError, match="Reshape"):
            sess.run(out, {p: False, x: [1.0, 2.0, 3.0]})
        np.testing.assert_array_equal(sess.run(out, {p: False, x: np.arange(7.0)}), np.arange(7.0) + 1)


def test_untaken_branch_does_not_write_variables(opt_level):
    v = gf.Variable(0.0, name="v")
    p = gf.placeholder(gf.bool, (), name="p")
    out = gf.cond(p, lambda: v.assign_add(1.0), lambda: v.assign_sub(100.0))
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(v.initializer)
        assert sess.run(out, {p: True}) == 1.0
        assert sess.run(out, {p: True}) == 2.0
        assert sess.run(v) == 2.0
        assert sess.run(out, {p: False}) == -98.0
        assert sess.run(v) == -98.0


def test_branches_only_run_their_own_ops_and_read_outer_values(opt_level):
    v = gf.Variable(10.0, name="v")
    counter = gf.Variable(0, name="counter")
    p = gf.placeholder(gf.bool, (), name="p")
    outer = v * 3.0  # computed outside, captured by both branches

    def true_fn():
        with gf.control_dependencies([counter.assign_add(1)]):
            return gf.identity(outer + 1.0)

    out = gf.cond(p, true_fn, lambda: outer)
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        assert sess.run(out, {p: False}) == 30.0
        assert sess.run(counter) == 0
        assert sess.run(out, {p: True}) == 31.0
        assert sess.run(counter) == 1


def test_nested_cond(opt_level):
    x = gf.placeholder(gf.float32, (), name="x")

    def inner_neg():
        return gf.cond(x > -10.0, lambda: x * x, lambda: -x)

    out = gf.cond(x > 0.0, lambda: gf.sqrt(x), inner_neg)
    with gf.Session(opt_level=opt_level) as sess:
        assert sess.run(out, {x: 16.0}) == 4.0
        assert sess.run(out, {x: -3.0}) == 9.0
        assert sess.run(out, {x: -20.0}) == 20.0


def test_structures_and_shapes(opt_level):
    p = gf.placeholder(gf.bool, (), name="p")
    a = gf.constant([1.0, 2.0])
    b = gf.constant([3.0, 4.0, 5.0])
    pair = gf.cond(p, lambda: (a, gf.constant(1)), lambda: (b, gf.constant(2)))
    assert isinstance(pair, tuple) and len(pair) == 2
    assert pair[0].shape == (None,) and pair[1].dtype == gf.int32
    as_list = gf.cond(p, lambda: [a * 2.0], lambda: [a * 3.0])
    assert isinstance(as_list, list)
    op = gf.cond(p, lambda: gf.no_op(), lambda: gf.no_op())
    with gf.Session(opt_level=opt_level) as sess:
        v, k = sess.run(pair, {p: False})
        np.testing.assert_array_equal(v, [3.0, 4.0, 5.0])
        assert k == 2
        np.testing.assert_array_equal(sess.run(as_list, {p: True})[0], [2.0, 4.0])
        assert sess.run(op, {p: True}) is None
        np.testing.assert_array_equal(sess.run(gf.cond(gf.constant(True), lambda: a, lambda: a + 1.0)), [1.0, 2.0])


def test_cond_errors():
    x = gf.placeholder(gf.float32, (), name="x")
    with pytest.raises(ValueError, match="same structure"):
        gf.cond(x > 0.0, lambda: (x, x), lambda: x)
    with pytest.raises(TypeError, match="float32.*int32"):
        gf.cond(x > 0.0, lambda: x, lambda: gf.constant(1))
    with pytest.raises(ValueError, match="scalar bool"):
        gf.cond(x, lambda: x, lambda: x)
    with pytest.raises(TypeError, match="callable"):
        gf.cond(x > 0.0, x, lambda: x)


def test_gradients_through_cond(opt_level):
    x = gf.placeholder(gf.float64, (), name="x")
    w = gf.Variable(np.float64(3.0), name="w")
    y = gf.cond(x > 0.0, lambda: w * x * x, lambda: gf.sin(x) + w)
    dx, dw = gf.gradients(y, [x, w])
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(w.initializer)
        gx, gw = sess.run([dx, dw], {x: 2.0})
        assert gx == pytest.approx(12.0) and gw == pytest.approx(4.0)
        gx, gw = sess.run([dx, dw], {x: -1.0})
        assert gx == pytest.approx(np.cos(-1.0)) and gw == pytest.approx(1.0)


def test_gradient_of_nested_cond_matches_finite_differences(opt_level):
    x = gf.placeholder(gf.float64, (3,), name="x")

    def positive():
        return gf.cond(gf.reduce_sum(x) > 10.0, lambda: gf.exp(x * 0.1), lambda: x * x * x)

    y = gf.reduce_sum(gf.cond(gf.reduce_sum(x) > 0.0, positive, lambda: gf.tanh(x)))
    (dx,) = gf.gradients(y, [x])
    with gf.Session(opt_level=opt_level) as sess:
        for point in ([1.0, 2.0, 3.0], [5.0, 6.0, 7.0], [-1.0, -2.0, 0.5]):
            point = np.array(point)
            analytic = sess.run(dx, {x: point})
            numeric = np.zeros(3)
            for i in range(3):
                e = np.zeros(3)
                e[i] = 1e-6
                numeric[i] = (sess.run(y, {x: point + e}) - sess.run(y, {x: point - e})) / 2e-6
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_training_step_inside_cond(opt_level):
    w = gf.Variable(np.float64(1.0), name="w")
    do_train = gf.placeholder(gf.bool, (), name="do_train")
    loss = gf.square(w - 3.0)
    train = gf.train.GradientDescentOptimizer(0.25)
    step = gf.cond(do_train, lambda: train.minimize(loss), lambda: gf.no_op())
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(step, {do_train: False})
        assert sess.run(w) == 1.0
        sess.run(step, {do_train: True})
        assert sess.run(w) == pytest.approx(2.0)
