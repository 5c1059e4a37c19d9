"""Assign keeps a value the plan computed into a fresh array as the variable's new value,
without a copy ("adopts_input"): the store's arrays never alias a buffer a later run
writes, fetched values stay the caller's own, and a failed run changes nothing."""
import weakref

import numpy as np
import pytest

import graphflow as gf


@pytest.fixture(params=[0, 1, 2], ids=lambda level: f"O{level}")
def opt_level(request):
    return request.param


def _plan_of(sess, fetches):
    (plan,) = [p for (elements, _), p in sess._plans.items() if elements == fetches]
    return plan.execution


def _store_value(sess, var):
    return sess._store.values[var.op.name]


@pytest.mark.parametrize("shape", [(5,), (3, 4), (0, 4), (1, 1), (33, 17)])
def test_assigned_values_match_the_reference_and_never_alias_reused_buffers(opt_level, shape):
    rng = np.random.default_rng(len(shape))
    w0 = rng.normal(size=shape).astype(np.float32)
    x = gf.placeholder(gf.float32, (None,) + shape[1:], name="x")
    w = gf.Variable(w0, name="w")
    m = gf.Variable(np.zeros(shape, np.float32), name="m")
    m_new = m * 0.5 + gf.tanh(x) * 2.0
    w_new = w - 0.1 * m_new / (gf.sqrt(gf.abs(m_new)) + 1.0)
    step = gf.group(w.assign(w_new), m.assign(m_new))
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        run = sess.make_callable(step, [x])
        ref_w, ref_m = w0.astype(np.float64), np.zeros(shape)
        seen = []
        for i in range(4):
            data = rng.normal(size=shape).astype(np.float32)
            run(data)
            ref_m = ref_m * 0.5 + np.tanh(data.astype(np.float64)) * 2.0
            ref_w = ref_w - 0.1 * ref_m / (np.sqrt(np.abs(ref_m)) + 1.0)
            np.testing.assert_allclose(sess.run(m), ref_m, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(sess.run(w), ref_w, rtol=1e-5, atol=1e-6)
            values = (_store_value(sess, w), _store_value(sess, m))
            assert all(not v.flags.writeable for v in values)
            seen.append([v.copy() for v in values] + list(values))
        for old_w, old_m, w_arr, m_arr in seen:  # later runs never wrote into an earlier value
            np.testing.assert_array_equal(w_arr, old_w)
            np.testing.assert_array_equal(m_arr, old_m)


def test_a_kernel_output_assigned_to_a_variable_is_kept_without_a_copy():
    x = gf.placeholder(gf.float32, (None, 8), name="x")
    w = gf.Variable(np.ones((4, 8), np.float32), name="w")
    step = w.assign(w * 0.5 + gf.exp(x)).op
    with gf.Session(opt_level=2) as sess:
        sess.run(gf.global_variables_initializer())
        run = sess.make_callable(step, [x])
        run(np.zeros((4, 8), np.float32))
        ex = _plan_of(sess, (step,))
        (assign,) = [st for st in ex.steps if st.node.op == "Assign"]
        v = assign.inputs[0]
        assert ex.memory.buffer_of[v] is None  # a fresh array per run, never a reused buffer
        assert assign.mode == "state"  # a direct RunState call: static shape and dtype match
        assert assign.fn == ("write_variable", ("w",), {"owned": True})
        first = _store_value(sess, w)
        run(np.zeros((4, 8), np.float32))
        assert _store_value(sess, w) is not first
        np.testing.assert_allclose(sess.run(w), np.full((4, 8), 1.75), rtol=1e-6)


def test_a_fetched_value_that_is_also_assigned_stays_the_callers_own(opt_level):
    x = gf.placeholder(gf.float32, (3,), name="x")
    w = gf.Variable(np.zeros(3, np.float32), name="w")
    y = x * 2.0 + 1.0
    assigned = w.assign(y)
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        got_y, got_a = sess.run([y, assigned], {x: np.arange(3, dtype=np.float32)})
        for got in (got_y, got_a):
            np.testing.assert_array_equal(got, [1, 3, 5])
            assert got.flags.writeable
            got[:] = -7  # the variable keeps its value
        np.testing.assert_array_equal(sess.run(w), [1, 3, 5])


def test_one_value_assigned_to_two_variables_and_read_after_the_assigns(opt_level):
    x = gf.placeholder(gf.float32, (None, 2), name="x")
    a = gf.Variable(np.zeros((2, 2), np.float32), name="a")
    b = gf.Variable(np.zeros((2, 2), np.float32), name="b")
    y = gf.exp(x) + 1.0
    with gf.control_dependencies([a.assign(y), b.assign(y)]):
        after = gf.identity(y * 3.0)
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        data = np.array([[0, 1], [2, 3]], np.float32)
        np.testing.assert_allclose(sess.run(after, {x: data}), (np.exp(data) + 1) * 3, rtol=1e-6)
        np.testing.assert_allclose(sess.run(a), np.exp(data) + 1, rtol=1e-6)
        np.testing.assert_allclose(sess.run(b), np.exp(data) + 1, rtol=1e-6)
        sess.run(after, {x: data + 1})
        np.testing.assert_allclose(sess.run(a), np.exp(data + 1) + 1, rtol=1e-6)


def test_an_assign_of_a_value_of_unknown_shape_checks_it_at_run_time(opt_level):
    x = gf.placeholder(gf.float32, (None,), name="x")
    w = gf.Variable(np.zeros(3, np.float32), name="w")
    step = w.assign(gf.exp(x) * 2.0).op
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(step, {x: np.zeros(3, np.float32)})
        np.testing.assert_array_equal(sess.run(w), [2, 2, 2])
        with pytest.raises(gf.errors.InvalidArgumentError, match="shape"):
            sess.run(step, {x: np.zeros(4, np.float32)})
        np.testing.assert_array_equal(sess.run(w), [2, 2, 2])


def test_reading_an_uninitialized_variable_still_fails_clearly(opt_level):
    w = gf.Variable(np.zeros(3, np.float32), name="w")
    with gf.Session(opt_level=opt_level) as sess:
        with pytest.raises(gf.errors.FailedPreconditionError, match="uninitialized variable 'w'"):
            sess.run(w * 2.0)


def test_a_failed_run_keeps_the_old_values(opt_level):
    x = gf.placeholder(gf.float32, (None,), name="x")
    idx = gf.placeholder(gf.int32, (None,), name="idx")
    w = gf.Variable(np.ones(3, np.float32), name="w")
    step = gf.group(w.assign(w + gf.exp(x)), gf.gather(x, idx))
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        with pytest.raises(gf.errors.InvalidArgumentError):
            sess.run(step, {x: np.zeros(3, np.float32), idx: np.array([7], np.int32)})
        np.testing.assert_array_equal(sess.run(w), [1, 1, 1])
        sess.run(step, {x: np.zeros(3, np.float32), idx: np.array([0], np.int32)})
        np.testing.assert_array_equal(sess.run(w), [2, 2, 2])


def test_a_large_variable_is_updated_in_its_own_array_unless_held():
    """A value of 1 MB or more that an update computes from itself is rewritten in its own
    array (runtime/in_place.py) once a run has got through the update with these shapes; the
    first run computes it into a pooled array. A value referred to from outside is never
    written: the next update goes to the plan's pool, and the one after that is in place
    again."""
    rng = np.random.default_rng(5)
    x = gf.placeholder(gf.float32, (None, 600), name="x")
    w = gf.Variable(rng.normal(size=(512, 600)).astype(np.float32), name="w")
    step = w.assign(w * 0.5 + gf.tanh(x)).op
    with gf.Session(opt_level=2) as sess:
        sess.run(gf.global_variables_initializer())
        run = sess.make_callable(step, [x])
        ref = sess.run(w).astype(np.float64)
        initial = weakref.ref(_store_value(sess, w))
        values = []
        for i in range(5):
            data = rng.normal(size=(512, 600)).astype(np.float32)
            run(data)
            ref = ref * 0.5 + np.tanh(data.astype(np.float64))
            value = _store_value(sess, w)
            assert not value.flags.writeable
            np.testing.assert_allclose(value, ref, rtol=1e-5, atol=1e-6)
            values.append(weakref.ref(value))
            if i == 2:
                held = value   # referred to from outside from now on
                kept = held.copy()
            del value
        assert values[0]() is not initial()            # run 0: a pooled array
        assert values[2]() is values[1]() is values[0]() is held   # runs 1 and 2: in place
        assert values[3]() is not held                  # held: a pooled array
        assert values[4]() is values[3]()               # in place again
        np.testing.assert_array_equal(held, kept)
