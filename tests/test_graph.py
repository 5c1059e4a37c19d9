"""Graph IR (API.md section 1): names and scopes, control dependencies, finalize, lookups,
dtype and shape rules at build time, collections, the default-graph stack, and deep graphs
that build, differentiate and run without recursion."""
import sys
import threading

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import NotFoundError


def test_tensor_and_operation_properties():
    x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
    y = gf.add(x, 1.0, name="y")
    assert isinstance(y, gf.Tensor) and isinstance(y.op, gf.Operation)
    assert y.name == "y:0" and y.op.name == "y" and y.op.type == "Add"
    assert y.dtype == gf.float32 == np.float32 and y.shape == (None, 4)
    assert y.graph is gf.get_default_graph() and y.op.graph is y.graph
    assert y.op.inputs[0] is x and y.op.outputs == (y,) and y.op.control_inputs == []
    assert y.op.source is not None and y.op.source.startswith("test_graph.py:")
    with pytest.raises(TypeError, match="bool"):
        bool(y)
    assert (y == y) is True and (y != x) is True  # identity, as in TF1


def test_unique_names():
    a = gf.constant(1.0, name="c")
    b = gf.constant(2.0, name="c")
    gf.constant(3.0, name="c_2")
    c = gf.constant(4.0, name="c")
    assert [a.op.name, b.op.name, c.op.name] == ["c", "c_1", "c_3"]
    adds = [a + b for _ in range(3)]
    assert [t.op.name for t in adds] == ["add", "add_1", "add_2"]
    names = [op.name for op in gf.get_default_graph().get_operations()]
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="valid op name"):
        gf.constant(1.0, name="bad:name")


def test_name_scopes_prefix_nest_and_reuse():
    x = gf.placeholder(gf.float32, (3,), name="x")
    with gf.name_scope("loss"):
        m = gf.reduce_mean(x)
        with gf.name_scope("inner") as scope:
            s = gf.square(x)
        assert scope == "loss/inner/"
    with gf.name_scope("loss") as again:
        m2 = gf.reduce_mean(x)
    assert m.op.name == "loss/Mean" and s.op.name == "loss/inner/Square"
    assert again == "loss_1/" and m2.op.name == "loss_1/Mean"
    with gf.name_scope("loss/"):  # a trailing slash re-enters the scope exactly
        m3 = gf.reduce_mean(x)
    assert m3.op.name == "loss/Mean_1"
    with gf.name_scope("a"):
        with gf.name_scope(None):
            top = gf.identity(x, name="top")
    assert top.op.name == "top"
    with gf.name_scope("named") as sc:
        exact = gf.identity(x, name=sc)  # a name ending in "/" is used exactly (TF1)
    assert exact.op.name == "named"
    op = gf.no_op(name="thing")
    with gf.name_scope("thing"):
        inside = gf.identity(x)
    assert op.name == "thing" and inside.op.name == "thing_1/Identity"


def test_control_dependencies_nest_and_clear():
    a = gf.constant(1.0, name="a")
    b = gf.constant(2.0, name="b")
    with gf.control_dependencies([a]):
        c = gf.identity(b, name="c")
        with gf.control_dependencies([b.op]):
            d = gf.identity(a, name="d")
            with gf.control_dependencies(None):
                e = gf.identity(a, name="e")
    f = gf.identity(a, name="f")
    assert c.op.control_inputs == [a.op]
    assert d.op.control_inputs == [a.op, b.op]
    assert e.op.control_inputs == [] and f.op.control_inputs == []
    v = gf.Variable(0.0, name="v")
    with gf.control_dependencies([v.assign(5.0)]):
        read = v.read_value()
    with gf.Session(opt_level=0) as sess:
        sess.run(v.initializer)
        assert sess.run(read) == 5.0
    with pytest.raises(TypeError):
        with gf.control_dependencies([3.0]):
            pass


def test_finalize_makes_the_graph_read_only():
    g = gf.Graph()
    with g.as_default():
        x = gf.constant(1.0)
        g.finalize()
        assert g.finalized
        with pytest.raises(RuntimeError, match="finalized"):
            x + 1.0
        with gf.Session(graph=g, opt_level=0) as sess:  # running a finalized graph is fine
            assert sess.run(x) == 1.0


def test_lookups_by_name_and_their_errors():
    x = gf.placeholder(gf.float32, (2,), name="input")
    g = gf.get_default_graph()
    assert g.get_operation_by_name("input") is x.op
    assert g.get_tensor_by_name("input:0") is x
    with pytest.raises(NotFoundError, match="'inptu'.*did you mean 'input'") as info:
        g.get_operation_by_name("inptu")
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError, match="no tensor named 'nope:0'"):
        g.get_tensor_by_name("nope:0")
    with pytest.raises(KeyError, match="1 output"):
        g.get_tensor_by_name("input:3")
    with pytest.raises(ValueError, match="'input:0'"):
        g.get_tensor_by_name("input")
    with pytest.raises(ValueError, match="tensor name"):
        g.get_operation_by_name("input:0")


def test_python_scalars_take_the_tensors_dtype():
    f64 = gf.placeholder(gf.float64, (2,), name="f64")
    i64 = gf.placeholder(gf.int64, (2,), name="i64")
    i32 = gf.placeholder(gf.int32, (2,), name="i32")
    assert (f64 + 1).dtype == gf.float64 and (2.5 * f64).dtype == gf.float64
    assert (i64 * 3).dtype == gf.int64 and (1 - i32).dtype == gf.int32
    assert (np.float32(2) + f64).dtype == gf.float64
    assert gf.maximum(f64, 0).dtype == gf.float64
    with pytest.raises(TypeError):
        i32 + 1.5  # would lose information
    with gf.Session(opt_level=0) as sess:
        out = sess.run(f64 + 1, {f64: [1.0, 2.0]})
    assert out.dtype == np.float64


def test_mixed_tensor_dtypes_raise_type_error_naming_both():
    a = gf.placeholder(gf.float32, (2,), name="a")
    b = gf.placeholder(gf.float64, (2,), name="b")
    for build in (lambda: a + b, lambda: gf.multiply(a, b), lambda: gf.maximum(b, a), lambda: a @ gf.cast(b, gf.int32)):
        with pytest.raises(TypeError) as info:
            build()
        msg = str(info.value)
        assert "float32" in msg and ("float64" in msg or "int32" in msg)
    assert (a + gf.cast(b, gf.float32)).dtype == gf.float32


def test_shape_errors_at_build_time_name_op_and_both_shapes():
    a = gf.placeholder(gf.float32, (2, 3), name="a")
    b = gf.placeholder(gf.float32, (4,), name="b")
    with pytest.raises(ValueError) as info:
        gf.add(a, b, name="bad_add")
    msg = str(info.value)
    assert "bad_add" in msg and "(2, 3)" in msg and "(4,)" in msg
    with pytest.raises(ValueError) as info:
        gf.matmul(a, gf.placeholder(gf.float32, (4, 5), name="m"), name="mm")
    msg = str(info.value)
    assert "mm" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    assert "test_graph.py" in msg  # where the user built it
    unknown = gf.placeholder(gf.float32, None, name="u")
    assert (unknown + a).shape is None or (unknown + a).shape == (2, 3)
    partial = gf.placeholder(gf.float32, (None, 3), name="p")
    assert (partial + a).shape == (2, 3)


def test_ops_of_different_graphs_do_not_mix():
    a = gf.constant(1.0, name="a")
    g2 = gf.Graph()
    with g2.as_default():
        b = gf.constant(2.0, name="b")
        with pytest.raises(ValueError, match="another graph"):
            gf.add(a, b)


def test_collections():
    g = gf.get_default_graph()
    g.add_to_collection("losses", 1)
    g.add_to_collection("losses", 2)
    got = g.get_collection("losses")
    got.append(99)  # a copy
    assert g.get_collection("losses") == [1, 2]
    ref = g.get_collection_ref("losses")
    ref.append(3)
    assert g.get_collection("losses") == [1, 2, 3]
    assert g.get_collection("nothing") == []
    v = gf.Variable(1.0, name="v")
    assert g.get_collection("variables") == [v] == gf.global_variables()


def test_default_graph_stack_and_reset():
    outer = gf.get_default_graph()
    g1, g2 = gf.Graph(), gf.Graph()
    with g1.as_default():
        assert gf.get_default_graph() is g1
        with g2.as_default():
            assert gf.constant(1.0).graph is g2
        assert gf.get_default_graph() is g1
        with pytest.raises(AssertionError):
            gf.reset_default_graph()
    assert gf.get_default_graph() is outer
    seen = []
    with g1.as_default():
        t = threading.Thread(target=lambda: seen.append(gf.get_default_graph()))
        t.start()
        t.join()
    assert seen == [outer]  # the stack is per thread
    gf.reset_default_graph()
    assert gf.get_default_graph() is not outer and gf.get_default_graph().get_operations() == []


def test_creation_order_is_topological():
    x = gf.placeholder(gf.float32, (2,), name="x")
    y = gf.exp(x) * gf.sin(x)
    gf.gradients(y, [x])
    ops = gf.get_default_graph().get_operations()
    pos = {op: i for i, op in enumerate(ops)}
    for op in ops:
        assert all(pos[t.op] < pos[op] for t in op.inputs)
        assert all(pos[c] < pos[op] for c in op.control_inputs)


DEEP_CHAIN = """
import sys
import graphflow as gf
limit = sys.getrecursionlimit()
p = gf.placeholder(gf.float64, (), name="p")
h = p
for i in range(100_000):
    h = gf.negative(h) if i % 2 else h * 1.0001  # Mul also adds a Const: ~150k ops
(grad,) = gf.gradients(h, [p])
n_ops = len(gf.get_default_graph().get_operations())
with gf.Session(opt_level=0) as sess:
    value, dvalue = sess.run([h, grad], {p: 2.0})
print(n_ops, repr(float(value)), repr(float(dvalue)), sys.getrecursionlimit() == limit)
"""


def _limit_memory():  # 4 GiB of address space: a blow-up fails this test, not the whole run
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.slow
def test_deep_chain_of_100k_ops_builds_differentiates_and_runs():
    """A 100,000-op chain built, differentiated and run at opt_level 0 (any recursive walk
    would hit Python's recursion limit), in a child process bounded in time and memory."""
    import os
    import subprocess

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", GRAPHFLOW_NUM_THREADS="1")
    env.pop("GRAPHFLOW_VERIFY", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", DEEP_CHAIN], capture_output=True, text=True, timeout=180,
                          env=env, preexec_fn=_limit_memory if sys.platform == "linux" else None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_ops, value, dvalue, same_limit = proc.stdout.split()
    assert int(n_ops) > 250_000
    assert float(value) == pytest.approx(2.0 * 1.0001 ** 50_000, rel=1e-9)
    assert float(dvalue) == pytest.approx(1.0001 ** 50_000, rel=1e-9)
    assert same_limit == "True"
