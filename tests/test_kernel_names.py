"""Compiled kernels do not depend on op or tensor names: a graph of the same structure under
other names (a second Keras model, layers dense_3... instead of dense...) reuses the module
compiled for the first, while the report still names each function after its kernel."""
import numpy as np

import graphflow as gf


def _jits(compiled):
    kernels = [n.attrs["kernel"] for n in compiled.program.nodes if n.op == "Fused"]
    assert kernels
    return {id(k._jit.jit) for k in kernels}


def _mlp(prefix):
    g = gf.Graph()
    with g.as_default(), g.name_scope(prefix):
        x = gf.placeholder(gf.float32, (None, 6), name="x")
        w = gf.constant(np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4), name="w")
        h = gf.nn.relu(gf.matmul(x, w) + 0.5)
        y = gf.nn.softmax(h * 2.0 - gf.tanh(h))
    return x, y


def test_renamed_graphs_share_one_compiled_module_and_report_their_own_names():
    x1, y1 = _mlp("first")
    x2, y2 = _mlp("second_model")
    c1 = gf.compile(y1, feed_list=[x1])
    c2 = gf.compile(y2, feed_list=[x2])
    assert _jits(c1) == _jits(c2)
    for c in (c1, c2):
        for k in c.report_data.kernels:
            assert f'define void @"{k["name"]}"' in c.llvm_ir
        assert "gf.kernel." not in c.llvm_ir
    assert any("second_model" in k["name"] for k in c2.report_data.kernels)
    data = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    with gf.Session(graph=x1.graph) as s1, gf.Session(graph=x2.graph) as s2:
        np.testing.assert_array_equal(s1.run(y1, {x1: data}), s2.run(y2, {x2: data}))


def test_a_second_keras_model_reuses_the_first_models_training_kernels():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 5)).astype(np.float32), rng.integers(0, 3, size=20)
    jits = []
    for _ in range(2):
        model = gf.keras.Sequential([gf.keras.Input(shape=(5,)), gf.keras.layers.Dense(7, activation="relu"),
                                     gf.keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        (plan,) = [p for (_, feeds), p in model.session._plans.items() if len(feeds) == 2]
        jits.append({id(n.attrs["kernel"]._jit.jit) for n in plan.program.nodes if n.op == "Fused"})
    assert jits[0] and jits[0] == jits[1]
