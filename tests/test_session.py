"""Session semantics (API.md section 4): feeds, fetch structures, pruning, feed conversion,
every error with the tensor's name and expected vs received values, atomic runs,
make_callable, the context manager, close() and use from several threads."""
import collections
import threading

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import FailedPreconditionError, InvalidArgumentError

Pair = collections.namedtuple("Pair", "first second")


@pytest.fixture(params=[0, 1, 2], ids=lambda level: f"O{level}")
def opt_level(request):
    return request.param


@pytest.fixture
def net():
    x = gf.placeholder(gf.float32, shape=(None, 3), name="x")
    h = gf.multiply(x, 2.0, name="h")
    y = gf.add(h, 1.0, name="y")
    total = gf.reduce_sum(y, name="total")
    return x, h, y, total


DATA = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)


# ---- feeds ----

def test_feed_by_tensor_and_by_name(net, opt_level):
    x, h, y, total = net
    with gf.Session(opt_level=opt_level) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: DATA}), DATA * 2 + 1)
        np.testing.assert_array_equal(sess.run(y, {"x:0": DATA}), DATA * 2 + 1)
        np.testing.assert_array_equal(sess.run("y:0", feed_dict={"x:0": DATA}), DATA * 2 + 1)


def test_feeding_an_inner_tensor_cuts_off_its_upstream(net, opt_level):
    x, h, y, total = net
    hv = np.full((4, 3), 10.0, np.float32)
    with gf.Session(opt_level=opt_level) as sess:
        # x is not fed and not needed: feeding h replaces everything above it
        np.testing.assert_array_equal(sess.run(y, {h: hv}), hv + 1)
        assert sess.run(total, {y: np.ones((5, 3), np.float32)}) == 15.0


def test_any_tensor_may_be_fed_including_constants_and_variables(opt_level):
    c = gf.constant([1.0, 2.0], name="c")
    v = gf.Variable([3.0, 4.0], name="v")
    out = c * v
    with gf.Session(opt_level=opt_level) as sess:
        # v is uninitialized, but feeding its value means it is never read
        np.testing.assert_array_equal(sess.run(out, {c: [10.0, 10.0], v: [1.0, 2.0]}), [10.0, 20.0])
        with pytest.raises(FailedPreconditionError):
            sess.run(out)


def test_only_the_needed_ops_run(net, opt_level):
    x, h, y, total = net
    other = gf.placeholder(gf.float32, (2,), name="other")
    never = gf.reshape(x, (5, 7), name="never")  # would fail for any fed x of 3 columns
    v = gf.Variable(1.0, name="v")
    unfetched_assign = v.assign(100.0)
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(y, {x: DATA}), DATA * 2 + 1)  # 'other' needs no feed
        assert sess.run(v) == 1.0  # the assign was not needed, so it did not run
        with pytest.raises(InvalidArgumentError, match="never"):
            sess.run(never, {x: DATA})
        assert unfetched_assign.op.name.startswith("Assign")
        assert other.op.type == "Placeholder"


# ---- fetch structures ----

def test_fetch_structures(net, opt_level):
    x, h, y, total = net
    noop = gf.no_op(name="nothing")
    with gf.Session(opt_level=opt_level) as sess:
        feed = {x: DATA}
        assert sess.run(noop, feed) is None
        out = sess.run([y, (h, total), {"t": total, "pair": Pair(h, noop)}, [[y]]], feed)
        assert isinstance(out, list) and isinstance(out[1], tuple) and isinstance(out[2], dict)
        assert isinstance(out[2]["pair"], Pair) and out[2]["pair"].second is None
        np.testing.assert_array_equal(out[0], DATA * 2 + 1)
        np.testing.assert_array_equal(out[1][0], DATA * 2)
        np.testing.assert_array_equal(out[2]["pair"].first, DATA * 2)
        np.testing.assert_array_equal(out[3][0][0], DATA * 2 + 1)
        assert out[1][1] == out[2]["t"] == np.float32((DATA * 2 + 1).sum())
        assert sess.run([], feed) == [] and sess.run({}, feed) == {}
        ordered = sess.run(collections.OrderedDict([("b", total), ("a", h)]), feed)
        assert isinstance(ordered, collections.OrderedDict) and list(ordered) == ["b", "a"]
        dd = sess.run(collections.defaultdict(list, {"t": total}), feed)
        assert isinstance(dd, collections.defaultdict) and dd["missing"] == []
        same = sess.run([y, y, "y:0"], feed)
        for a in same:
            np.testing.assert_array_equal(a, DATA * 2 + 1)
        assert sess.run("nothing") is None  # an operation by name


def test_zero_d_results_are_numpy_scalars(net, opt_level):
    x, h, y, total = net
    with gf.Session(opt_level=opt_level) as sess:
        t = sess.run(total, {x: DATA})
        assert isinstance(t, np.generic) and t.dtype == np.float32
        arr = sess.run(y, {x: DATA})
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32


def test_fetching_a_fed_tensor_returns_a_copy(net, opt_level):
    x, h, y, total = net
    data = DATA.copy()
    with gf.Session(opt_level=opt_level) as sess:
        got = sess.run(x, {x: data})
        np.testing.assert_array_equal(got, DATA)
        got[...] = 0
        np.testing.assert_array_equal(data, DATA)


def test_bad_fetches_are_reported(net):
    x, h, y, total = net
    with gf.Session(opt_level=0) as sess:
        with pytest.raises(TypeError, match="None"):
            sess.run(None)
        with pytest.raises(KeyError, match="nope"):
            sess.run("nope:0")
        with pytest.raises(TypeError):
            sess.run(3.5)
        g2 = gf.Graph()
        with g2.as_default():
            foreign = gf.constant(1.0, name="foreign")
        with pytest.raises(ValueError, match="foreign"):
            sess.run(foreign)


# ---- feed conversion and validation ----

def test_feed_conversion_rules(opt_level):
    f = gf.placeholder(gf.float32, (2,), name="f")
    i = gf.placeholder(gf.int32, (2,), name="i")
    with gf.Session(opt_level=opt_level) as sess:
        out = sess.run(f * 1.0, {f: [1, 2]})  # int -> float: lossless, accepted
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [1.0, 2.0])
        np.testing.assert_array_equal(sess.run(f * 1.0, {f: np.array([3, 4], np.int64)}), [3.0, 4.0])
        out = sess.run(i + 0, {i: [5, 6]})  # a list -> an array
        assert out.dtype == np.int32
        np.testing.assert_array_equal(sess.run(i + 0, {i: np.array([7, 8], np.int64)}), [7, 8])
        np.testing.assert_array_equal(sess.run(i + 0, {i: np.array([9, 255], np.uint8)}), [9, 255])
        with pytest.raises(TypeError, match="'i:0'"):
            sess.run(i + 0, {i: np.array([2 ** 32, 1], np.uint64)})  # out of int32 range
        with pytest.raises(TypeError, match=r"float64.*'i:0'.*int32"):
            sess.run(i + 0, {i: np.array([1.5, 2.0])})  # float -> int loses information
        with pytest.raises(TypeError, match="'i:0'"):
            sess.run(i + 0, {i: [1.0, 2.0]})
        with pytest.raises(TypeError, match="'i:0'"):
            sess.run(i + 0, {i: np.array([2 ** 40, 1], np.int64)})  # out of int32 range
        with pytest.raises(TypeError, match="'f:0'"):
            sess.run(f * 1.0, {f: ["a", "b"]})
        with pytest.raises(TypeError, match="symbolic"):
            sess.run(f * 1.0, {f: gf.constant([1.0, 2.0])})


def test_wrong_shape_names_tensor_expected_and_received(net, opt_level):
    x, h, y, total = net
    with gf.Session(opt_level=opt_level) as sess:
        with pytest.raises(InvalidArgumentError) as info:
            sess.run(y, {x: np.zeros((2, 4), np.float32)})
        msg = str(info.value)
        assert "'x:0'" in msg and "(2, 4)" in msg and "(None, 3)" in msg
        assert isinstance(info.value, ValueError)
        with pytest.raises(InvalidArgumentError, match=r"\(3,\).*'x:0'.*\(None, 3\)"):
            sess.run(y, {x: np.zeros(3, np.float32)})  # wrong rank
        with pytest.raises(InvalidArgumentError, match=r"'h:0'"):
            sess.run(y, {h: np.zeros((1, 1), np.float32)})


def test_missing_feed_names_the_placeholder(net, opt_level):
    x, h, y, total = net
    with gf.Session(opt_level=opt_level) as sess:
        with pytest.raises(InvalidArgumentError) as info:
            sess.run(total)
        msg = str(info.value)
        assert "'x:0'" in msg and "float32" in msg and "(None, 3)" in msg
        assert "total" in msg  # the chain from the fetch to the placeholder


def test_uninitialized_variable_names_the_variable(opt_level):
    w = gf.Variable(np.ones((2, 2), np.float32), name="weights")
    out = gf.reduce_sum(w * 3.0)
    with gf.Session(opt_level=opt_level) as sess:
        with pytest.raises(FailedPreconditionError, match="weights") as info:
            sess.run(out)
        assert isinstance(info.value, RuntimeError)
        sess.run(gf.global_variables_initializer())
        assert sess.run(out) == 12.0


def test_a_failed_run_changes_no_variable(net, opt_level):
    x, h, y, total = net
    v = gf.Variable([1.0, 2.0], name="v")
    counter = gf.Variable(0, name="counter")
    bump = v.assign_add([10.0, 10.0])
    with gf.control_dependencies([bump, counter.assign_add(1)]):
        fails_after = gf.reshape(x, (4, 4))  # runs after the assigns, then fails
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(gf.global_variables_initializer())
        with pytest.raises(InvalidArgumentError):
            sess.run(fails_after, {x: DATA})
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])
        assert sess.run(counter) == 0
        with pytest.raises(InvalidArgumentError, match="'x:0'"):  # bad feed: nothing runs at all
            sess.run([bump, y], {x: np.zeros((2, 2), np.float32)})
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])
        sess.run(bump)
        np.testing.assert_array_equal(sess.run(v), [11.0, 12.0])


def test_reads_after_an_assign_in_the_same_run_see_it(opt_level):
    v = gf.Variable(1.0, name="v")
    a = v.assign(5.0)
    with gf.control_dependencies([a]):
        after = v.read_value() * 2.0
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(v.initializer)
        assert sess.run(after) == 10.0


# ---- make_callable, context manager, close ----

def test_make_callable(net, opt_level):
    x, h, y, total = net
    with gf.Session(opt_level=opt_level) as sess:
        f = sess.make_callable({"y": y, "t": [total]}, feed_list=[x])
        out = f(DATA)
        np.testing.assert_array_equal(out["y"], DATA * 2 + 1)
        assert out["t"][0] == np.float32((DATA * 2 + 1).sum())
        out = f(np.ones((7, 3)).tolist())  # a new batch size and a list
        assert out["y"].shape == (7, 3)
        with pytest.raises(TypeError, match="1 feed value"):
            f()
        with pytest.raises(InvalidArgumentError, match="'x:0'"):
            f(np.zeros((2, 2), np.float32))
        g = sess.make_callable(total, feed_list=["h:0"])
        assert g(np.zeros((2, 3), np.float32)) == 6.0
        op_only = sess.make_callable(gf.no_op())
        assert op_only() is None


def test_context_manager_sets_default_and_closes(net):
    x, h, y, total = net
    with gf.Session(opt_level=0) as sess:
        assert gf.get_default_session() is sess
        np.testing.assert_array_equal(y.eval({x: DATA}), DATA * 2 + 1)
    with pytest.raises(ValueError):
        gf.get_default_session()
    with pytest.raises(FailedPreconditionError, match="closed"):
        sess.run(y, {x: DATA})


def test_close_and_as_default():
    c = gf.constant(2.0)
    sess = gf.Session(opt_level=0)
    with sess.as_default():
        assert c.eval() == 2.0
    assert sess.run(c) == 2.0  # as_default() leaves it open
    f = sess.make_callable(c)
    sess.close()
    sess.close()  # closing twice is harmless
    with pytest.raises(FailedPreconditionError):
        sess.run(c)
    with pytest.raises(FailedPreconditionError):
        f()


def test_session_runs_its_own_graph():
    g = gf.Graph()
    with g.as_default():
        c = gf.constant(3.0, name="c")
    gf.constant(4.0, name="c")  # a tensor of the same name in the default graph
    with gf.Session(graph=g, opt_level=0) as sess:
        assert sess.run("c:0") == 3.0
        assert sess.graph is g
    with pytest.raises(ValueError, match="opt_level"):
        gf.Session(opt_level=7)


def test_one_session_from_several_threads(net, opt_level):
    x, h, y, total = net
    v = gf.Variable(0.0, name="v")
    with gf.Session(opt_level=opt_level) as sess:
        sess.run(v.initializer)
        step = v.assign_add(1.0)
        errors, results = [], {}
        lock = threading.Lock()

        def work(k):
            try:
                for j in range(20):
                    data = np.full((k + 1, 3), float(k * 100 + j), np.float32)
                    got = sess.run([y, total], {x: data})
                    np.testing.assert_array_equal(got[0], data * 2 + 1)
                    assert got[1] == np.float32((data * 2 + 1).sum())
                    with lock:  # serialize the read-modify-write; the runs stay concurrent with the others
                        sess.run(step)
                results[k] = True
            except Exception as exc:  # reported below with the thread's number
                errors.append((k, exc))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(results) == 6
        assert sess.run(v) == 120.0


def test_repeated_runs_keep_each_fetch_structure(net, opt_level):
    """A namedtuple equals a plain tuple with the same items: the run cache must not mix them."""
    x, h, y, total = net
    with gf.Session(opt_level=opt_level) as sess:
        for _ in range(2):
            for fetches, kind in [(Pair(h, total), Pair), ((h, total), tuple), ([h, total], list),
                                  ([Pair(h, total)], Pair), ([(h, total)], tuple)]:
                out = sess.run(fetches, {x: DATA})
                inner = out[0] if isinstance(out, list) and kind is not list else out
                assert type(inner) is kind, (fetches, out)


def test_every_feed_is_validated_even_when_not_needed(net, opt_level):
    x, h, y, total = net
    unused = gf.placeholder(gf.float32, (3,), name="unused")
    with gf.Session(opt_level=opt_level) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: DATA, unused: [1, 2, 3]}), DATA * 2 + 1)
        with pytest.raises(InvalidArgumentError, match=r"'unused:0'.*\(3,\)"):
            sess.run(y, {x: DATA, unused: [1, 2]})
        with pytest.raises(KeyError, match="nope"):
            sess.run(y, {x: DATA, "nope:0": [1.0]})
        with pytest.raises(TypeError, match="feed_dict key 5"):
            sess.run(y, {x: DATA, 5: [1.0]})
        with pytest.raises(ValueError, match="'x:0'"):  # an op name is not a tensor name
            sess.run(y, {"x": DATA})
