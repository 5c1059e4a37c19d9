"""Gradients: every differentiable op of the registry and every differentiable composite,
in float64, against central finite differences in one random direction (as JAX's
check_grads); second derivatives of the elementwise ops and matmul; and the semantics of
gf.gradients (fan-out sums, None for unconnected inputs, grad_ys, stop_gradient, cond).

All cases of one op share one graph and one Session: the symbolic gradient and the two
perturbed losses are three runs.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphflow as gf
from domains import BROADCAST_PAIRS, SHAPES, sample
from graphflow.ops.composite import all_composites, get_composite
from graphflow.ops.registry import OpKind, all_op_defs, get_op_def, op_origin

F64 = np.dtype("float64")
EPS = 1e-6


class G:
    """One gradient case: inputs (shapes sampled from the op's domains, or arrays as given),
    attributes, and the inputs to differentiate (default: every float input that is not a
    shape-only operand)."""

    def __init__(self, inputs, attrs=None, wrt=None):
        self.inputs, self.attrs, self.wrt = list(inputs), dict(attrs or {}), wrt


def _conv_out(x, w, a):
    import naive_nn

    return naive_nn.conv2d(np.zeros(x), np.zeros(w), a["strides"], a["padding"]).shape


_CONV_ATTRS = ({"strides": (1, 1), "padding": "SAME"}, {"strides": (2, 2), "padding": "SAME"},
               {"strides": (1, 2), "padding": "VALID"})
_POOL_ATTRS = ({"ksize": (2, 2), "strides": (2, 2), "padding": "VALID"},
               {"ksize": (3, 3), "strides": (2, 2), "padding": "SAME"},
               {"ksize": (2, 3), "strides": (1, 2), "padding": "SAME"})
_X, _W = (2, 5, 6, 3), (3, 3, 3, 2)


def _pool_out(x, a):
    import naive_nn

    return naive_nn.avg_pool(np.zeros(x), a["ksize"], a["strides"], a["padding"]).shape


def _unary(attrs_list=({},)):
    return [G([s], a) for a in attrs_list for s in SHAPES if 0 not in s]


def _binary():
    return [G(list(p)) for p in BROADCAST_PAIRS if 0 not in p[0] and 0 not in p[1]]


class NoGrad:
    """An op whose gradient is None by definition, built on float64 inputs of these shapes."""

    def __init__(self, shapes=((3,),), attrs=None):
        self.shapes, self.attrs = list(shapes), dict(attrs or {})


_REDUCE_ATTRS = ({"axes": None, "keepdims": False}, {"axes": (0,), "keepdims": False}, {"axes": (1,), "keepdims": True})
_WITH_ZEROS = np.array([[0.0, 1.5, -2.0], [0.7, 0.0, 0.0], [1.1, -0.4, 2.0]])

# op type -> gradient cases; ops whose gradient is None by definition map to NoGrad.
CASES: dict[str, list | NoGrad] = {
    **{t: _unary() for t in ("Neg", "Abs", "Exp", "Log", "Log1p", "Expm1", "Sqrt", "Rsqrt", "Square", "Reciprocal",
                             "Sin", "Cos", "Tanh", "Sigmoid", "Erf", "Identity", "Relu", "Relu6", "Elu", "Selu",
                             "Softplus")},
    "LeakyRelu": _unary(({"alpha": 0.2}, {"alpha": 1.5})),
    "Gelu": _unary(({"approximate": False}, {"approximate": True})),
    **{t: _binary() for t in ("Add", "Sub", "Mul", "RealDiv", "Pow", "Maximum", "Minimum", "FloorMod")},
    "Select": [G([(2, 3), (2, 3), (2, 3)]), G([(2, 1), (1, 3), (3,)]), G([(), (2,), ()])],
    "Cast": [G([(2, 3)], {"dtype": F64})],
    **{t: [G([s], a) for a in _REDUCE_ATTRS for s in [(4, 3), (2, 3, 2)]] for t in ("Sum", "Mean", "Max", "Min")},
    "Prod": [G([s], a) for a in _REDUCE_ATTRS for s in [(4, 3), (2, 3, 2)]]
    + [G([_WITH_ZEROS], a) for a in _REDUCE_ATTRS] + [G([_WITH_ZEROS[1:2]], {"axes": None, "keepdims": False})],
    "MatMul": [G([sa, sb], {"transpose_a": ta, "transpose_b": tb})
               for ta in (False, True) for tb in (False, True)
               for sa, sb in [((3, 4), (4, 2)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 2))]
               for sa, sb in [(sa[:-2] + (sa[-2:][::-1] if ta else sa[-2:]), sb[:-2] + (sb[-2:][::-1] if tb else sb[-2:]))]],
    "Reshape": [G([(2, 3)], {"shape": (3, 2)}), G([(2, 1, 3)], {"shape": (-1,)})],
    "DynamicReshape": [G([(2, 3), np.array([3, 2], np.int32)])],
    "ReshapeLike": [G([(2, 3), (6,)])],
    "ExpandDims": [G([(2, 3)], {"axis": 1}), G([()], {"axis": 0})],
    "Squeeze": [G([(1, 3, 1)], {"axes": (0, 2)})],
    "Transpose": [G([(2, 3, 4)], {"perm": (2, 0, 1)})],
    "BroadcastTo": [G([(3,)], {"shape": (2, 3)}), G([(2, 1)], {"shape": (2, 4)})],
    "BroadcastLike": [G([(3,), (2, 3)]), G([(2, 1), (1, 4)])],
    "SumToShape": [G([(2, 3), (3,)]), G([(2, 3), (2, 1)])],
    "Gather": [G([(4, 3), np.array([0, 3, 3, 1], np.int32)], {"axis": 0}),
               G([(2, 3, 2), np.array([[2, 0], [1, 2]], np.int64)], {"axis": 1})],
    "GatherGrad": [G([(4, 3), np.array([0, 3, 3, 1], np.int32), (5, 3)], {"axis": 0})],
    "StridedSlice": [G([(5, 3)], {"key": (("slice", None, None, 2), 1)}), G([(4,)], {"key": (None, ("slice", 1, -1, None))})],
    "StridedSliceGrad": [G([(3,), (5,)], {"key": (("slice", None, None, 2),)})],
    "Concat": [G([(2, 3), (4, 3)], {"axis": 0}), G([(1, 2), (1, 1), (1, 3)], {"axis": 1})],
    "Split": [G([(4, 2)], {"sizes": None, "num": 2, "axis": 0}), G([(2, 5)], {"sizes": (1, -1, 2), "num": 3, "axis": 1})],
    "SplitV": [G([(5, 2), np.array([2, 3], np.int32)], {"num": 2, "axis": 0})],
    "Pad": [G([(3, 4)], {"paddings": p, "mode": m, "constant_values": 0})
            for p, m in [(((1, 0), (0, 2)), "CONSTANT"), (((1, 1), (2, 0)), "REFLECT"), (((0, 2), (3, 1)), "SYMMETRIC")]],
    "MirrorPadGrad": [G([(5, 6), (3, 4)], {"paddings": ((1, 1), (2, 0)), "mode": "REFLECT"}),
                      G([(5, 8), (3, 4)], {"paddings": ((0, 2), (3, 1)), "mode": "SYMMETRIC"})],
    "Tile": [G([(2, 3)], {"multiples": (2, 3)})],
    "TileGrad": [G([(4, 9), (2, 3)], {"multiples": (2, 3)})],
    "Conv2D": [G([_X, _W], a) for a in _CONV_ATTRS],
    "Conv2DBackpropInput": [G([_conv_out(_X, _W, a), _W, _X], a) for a in _CONV_ATTRS],
    "Conv2DBackpropFilter": [G([_X, _conv_out(_X, _W, a), _W], a) for a in _CONV_ATTRS],
    "MaxPool": [G([_X], a) for a in _POOL_ATTRS],
    "MaxPoolGrad": [G([_X, _pool_out(_X, a)], a, wrt=(1,)) for a in _POOL_ATTRS],
    "MaxPoolGradGrad": [G([_X, _X], a, wrt=(1,)) for a in _POOL_ATTRS],
    "AvgPool": [G([_X], a) for a in _POOL_ATTRS],
    "AvgPoolGrad": [G([_pool_out(_X, a), _X], a) for a in _POOL_ATTRS],
    # piecewise constant, integer-valued or shape-valued: no gradient by definition
    **{t: NoGrad() for t in ("Sign", "Floor", "Ceil", "Round", "StopGradient", "CheckLabels")},
    "FloorDiv": NoGrad([(3,), (3,)]),
    "ZerosLike": NoGrad(attrs={"dtype": None}),
    "OnesLike": NoGrad(attrs={"dtype": None}),
    "Shape": NoGrad(attrs={"out_type": np.dtype("int32")}),
    "Size": NoGrad(attrs={"out_type": np.dtype("int32")}),
    "DynamicRange": NoGrad([(), (), ()], {"dtype": F64}),
}

# checked elsewhere in this file: Cond by test_gradient_through_cond
SPECIAL = {"Cond"}


def _differentiable_ops():
    out = []
    for d in all_op_defs():
        if not op_origin(d.type).startswith("graphflow.ops") or d.grad is None or d.type in SPECIAL:
            continue
        out.append(d.type)
    return sorted(out)


def _float_wrt(arrays, case, shape_only):
    if case.wrt is not None:
        return list(case.wrt)
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f" and i not in shape_only]


def _materialize(case, domains, rng):
    out = []
    for k, item in enumerate(case.inputs):
        if isinstance(item, np.ndarray):
            out.append(item)
        else:
            out.append(sample(domains[k] if k < len(domains) else "real", item, F64, rng))
    return out


def _weighted(y, rng):
    """y times a random cotangent (sin(y) where the static shape is unknown)."""
    if y.shape is None or None in y.shape:
        return gf.sin(y)
    return y * gf.constant(rng.standard_normal(y.shape), dtype=y.dtype)


def _check_grads(build, cases, domains, label, shape_only=(), rtol=1e-5, seed=0, none_is_zero=False):
    """Compare <dL/dx, v> with (L(x + eps v) - L(x - eps v)) / 2 eps, L = sum(u * y), for
    every case at once (one graph, one Session, three runs). With `none_is_zero`, a None
    gradient (L does not depend on x through differentiable ops) must match a zero slope."""
    rng = np.random.default_rng(seed)
    g = gf.Graph()
    built = []
    with g.as_default():
        for case in cases:
            arrays = _materialize(case, domains, rng)
            phs = [gf.placeholder(a.dtype, a.shape) for a in arrays]
            outs = build(phs, case.attrs)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            wrt = _float_wrt(arrays, case, shape_only)
            terms = [gf.reduce_sum(_weighted(o, rng)) for o in outs if o.dtype.kind == "f"]
            loss = terms[0]
            for t in terms[1:]:
                loss = loss + t
            grads = gf.gradients(loss, [phs[i] for i in wrt])
            if none_is_zero:
                grads = [gf.zeros_like(phs[i]) if gr is None else gr for i, gr in zip(wrt, grads)]
            dirs = {i: rng.standard_normal(arrays[i].shape) for i in wrt}
            built.append((case, arrays, phs, wrt, loss, grads, dirs))
    feed0 = {ph: a for b in built for ph, a in zip(b[2], b[1])}

    def shifted(sign):
        feed = dict(feed0)
        for case, arrays, phs, wrt, *_, dirs in built:
            for i in wrt:
                feed[phs[i]] = arrays[i] + sign * EPS * dirs[i]
        return feed
    with gf.Session(graph=g, opt_level=0) as sess:
        sym = sess.run([[b[5][k] for k in range(len(b[3]))] for b in built], feed0)
        plus = sess.run([b[4] for b in built], shifted(1.0))
        minus = sess.run([b[4] for b in built], shifted(-1.0))
    for (case, arrays, phs, wrt, loss, grads, dirs), gs, lp, lm in zip(built, sym, plus, minus):
        desc = f"{label} on {[a.shape for a in arrays]} attrs={case.attrs} wrt={wrt}"
        for i, gv in zip(wrt, gs):
            assert gv is not None, f"{desc}: no gradient for input {i}"
            assert np.shape(gv) == arrays[i].shape, f"{desc}: gradient shape {np.shape(gv)} != {arrays[i].shape}"
        analytic = sum(float(np.sum(gv * dirs[i])) for i, gv in zip(wrt, gs))
        numeric = (float(lp) - float(lm)) / (2 * EPS)
        scale = max(1.0, abs(numeric), abs(analytic))
        assert abs(analytic - numeric) <= rtol * scale + 1e-6, \
            f"{desc}: analytic directional derivative {analytic}, finite differences {numeric}"


@pytest.mark.parametrize("op_type", _differentiable_ops())
def test_primitive_gradient(op_type):
    assert op_type in CASES, f"{op_type} has a gradient but no entry in CASES (add its gradient cases)"
    cases = CASES[op_type]
    d = get_op_def(op_type)
    if isinstance(cases, NoGrad):
        _check_no_gradient(op_type, d, cases)
        return

    def build(inputs, attrs):
        return list(gf.get_default_graph().create_op(op_type, inputs, attrs).outputs)
    _check_grads(build, cases, d.sample, op_type, d.extra.get("shape_only_inputs", ()))


def _check_no_gradient(op_type, d, spec):
    if d.dtypes and not any(t.kind == "f" for t in d.dtypes):
        return  # integer-only: nothing to differentiate
    xs = [gf.placeholder(gf.float64, s) for s in spec.shapes]
    y = gf.get_default_graph().create_op(op_type, xs, spec.attrs).outputs[0]
    if y.dtype.kind == "f":
        assert gf.gradients(gf.reduce_sum(y), xs) == [None] * len(xs), f"{op_type} should have no gradient"


_COMPOSITE_CASES = {
    "clip_by_value": [G([(2, 3), (), ()], wrt=(0,)), G([(4,), (4,), ()])],
    "reduce_logsumexp": [G([(2, 3)], {"axis": None}), G([(2, 3)], {"axis": -1, "keepdims": True}), G([(2, 1, 3)], {"axis": (0, 2)})],
    "stack": [G([(2, 3)] * 3, {"axis": 0}), G([(2,)] * 3, {"axis": -1})],
    "nn.softmax": [G([(3, 5)], {"axis": -1}), G([(3, 5)], {"axis": 0}), G([(2, 1, 4)])],
    "nn.log_softmax": [G([(3, 5)], {"axis": -1}), G([(3, 5)], {"axis": 0})],
    "nn.sparse_softmax_cross_entropy_with_logits": [G([np.array([0, 2, 1], np.int32), (3, 4)]),
                                                    G([np.array([[1], [0]], np.int64), (2, 1, 3)])],
    "nn.softmax_cross_entropy_with_logits": [G([(3, 4), (3, 4)])],
    "nn.sigmoid_cross_entropy_with_logits": [G([(3, 4), (3, 4)])],
    "nn.l2_loss": [G([(3, 4)]), G([()])],
    "nn.bias_add": [G([(2, 3), (3,)]), G([(2, 2, 2, 3), (3,)])],
    "nn.moments": [G([(4, 3)], {"axes": (0,)}), G([(2, 3, 2)], {"axes": (0, 1), "keepdims": True})],
    "nn.batch_normalization": [G([(4, 3), (3,), (3,), (3,), (3,)], {"variance_epsilon": 1e-3})],
}


@pytest.mark.parametrize("name", sorted(c.name for c in all_composites() if c.grad_inputs))
def test_composite_gradient(name):
    assert name in _COMPOSITE_CASES, f"composite {name} is differentiable but has no gradient cases"
    c = get_composite(name)
    cases = _COMPOSITE_CASES[name]
    for case in cases:
        if case.wrt is None:
            case.wrt = c.grad_inputs
    _check_grads(lambda inputs, attrs: c.build(*inputs, **attrs), cases, c.sample, name, seed=len(name))


# ---- second derivatives: elementwise ops and matmul ----

SECOND_ORDER = ["Exp", "Log", "Sqrt", "Rsqrt", "Reciprocal", "Sin", "Cos", "Tanh", "Sigmoid", "Erf", "Square",
                "Abs", "Elu", "Selu", "Softplus", "Gelu", "LeakyRelu", "Relu", "Expm1", "Log1p",
                "Add", "Sub", "Mul", "RealDiv", "Pow", "Maximum", "Minimum", "MatMul"]


@pytest.mark.parametrize("op_type", SECOND_ORDER)
def test_second_derivative(op_type):
    """d/dx <w, dL/dx> against finite differences of the first derivative."""
    d = get_op_def(op_type)
    cases = CASES[op_type][:4]

    def build(inputs, attrs):
        g = gf.get_default_graph()
        y = g.create_op(op_type, inputs, attrs).outputs[0]
        rng = np.random.default_rng(1)
        firsts = gf.gradients(gf.reduce_sum(_weighted(y, rng)), inputs)
        return [_weighted(f, rng) for f in firsts]
    _check_grads(build, cases, d.sample, f"{op_type} (second order)", rtol=1e-4, none_is_zero=True)


# ---- gf.gradients semantics ----

def test_fan_out_sums_and_unconnected_is_none():
    x = gf.placeholder(gf.float64, (3,))
    z = gf.placeholder(gf.float64, (3,))
    y = gf.sin(x) * x + gf.exp(x)  # x reaches y along three paths
    gx, gz = gf.gradients(gf.reduce_sum(y), [x, z])
    assert gz is None
    xv = np.array([0.3, -1.2, 2.0])
    with gf.Session(opt_level=0) as sess:
        np.testing.assert_allclose(sess.run(gx, {x: xv}), np.cos(xv) * xv + np.sin(xv) + np.exp(xv), rtol=1e-12)


def test_grad_ys_weights_each_output():
    x = gf.placeholder(gf.float64, (2, 2))
    y1, y2 = gf.square(x), 3.0 * x
    w1, w2 = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.5, 0.0], [-1.0, 2.0]])
    (gx,) = gf.gradients([y1, y2], [x], grad_ys=[w1, gf.constant(w2)])
    xv = np.array([[1.0, -2.0], [0.5, 4.0]])
    with gf.Session(opt_level=0) as sess:
        np.testing.assert_allclose(sess.run(gx, {x: xv}), 2 * xv * w1 + 3 * w2)


def test_stop_gradient_blocks_one_path():
    x = gf.placeholder(gf.float64, ())
    y = x * gf.stop_gradient(x * x) + x
    (gx,) = gf.gradients(y, [x])
    assert gf.gradients(gf.stop_gradient(x) * 2.0, [x]) == [None]
    with gf.Session(opt_level=0) as sess:
        assert sess.run(gx, {x: 3.0}) == pytest.approx(9.0 + 1.0)


def test_gradient_through_cond_follows_the_taken_branch():
    p = gf.placeholder(gf.bool, ())
    x = gf.placeholder(gf.float64, (3,))
    w = gf.placeholder(gf.float64, (3,))
    y = gf.cond(p, lambda: gf.sin(x) * w, lambda: gf.square(x))
    gx, gw = gf.gradients(gf.reduce_sum(y), [x, w])
    xv, wv = np.array([0.1, 0.7, -2.0]), np.array([2.0, -1.0, 0.5])
    with gf.Session(opt_level=0) as sess:
        a, b = sess.run([gx, gw], {p: True, x: xv, w: wv})
        np.testing.assert_allclose(a, np.cos(xv) * wv)
        np.testing.assert_allclose(b, np.sin(xv))
        a, b = sess.run([gx, gw], {p: False, x: xv, w: wv})
        np.testing.assert_allclose(a, 2 * xv)
        np.testing.assert_allclose(b, 0.0)


def test_integer_inputs_and_piecewise_constant_ops_have_no_gradient():
    x = gf.placeholder(gf.float64, (3,))
    i = gf.placeholder(gf.int32, (3,))
    y = gf.reduce_sum(gf.floor(x) + gf.cast(i * 2, gf.float64) + gf.sign(x))
    assert gf.gradients(y, [x, i]) == [None, None]


def test_elementwise_kinds_are_covered_by_second_order():
    missing = [d.type for d in all_op_defs() if d.kind is OpKind.ELEMENTWISE and d.type in CASES
               and not isinstance(CASES[d.type], NoGrad) and d.type not in SECOND_ORDER
               and d.type not in ("Identity", "Select", "Cast", "BroadcastTo", "BroadcastLike", "Neg", "Relu6",
                                  "FloorMod")]
    assert not missing, f"elementwise ops without a second-derivative check: {missing}"


def test_concat_gradient_with_unknown_sizes_splits_at_run_time():
    x = gf.placeholder(gf.float64, (None, 2))
    y = gf.placeholder(gf.float64, (None, 2))
    c = gf.concat([x, gf.sin(y)], axis=0)
    gx, gy = gf.gradients(gf.reduce_sum(c * c), [x, y])
    xv, yv = np.arange(6.0).reshape(3, 2), np.linspace(-1, 1, 4).reshape(2, 2)
    with gf.Session(opt_level=0) as sess:
        a, b = sess.run([gx, gy], {x: xv, y: yv})
    np.testing.assert_allclose(a, 2 * xv)
    np.testing.assert_allclose(b, 2 * np.sin(yv) * np.cos(yv))


def test_broadcast_gradients_with_unknown_dims():
    """Unknown dims that provably match (same origin) reduce statically; independent unknown
    dims are left to run time, where a size-1 operand is really broadcast."""
    x = gf.placeholder(gf.float64, (None, 3))
    y = gf.placeholder(gf.float64, (None, 3))
    shifted = x - gf.stop_gradient(gf.reduce_max(x, axis=1, keepdims=True))
    (gs,) = gf.gradients(gf.reduce_sum(gf.exp(shifted) * 2.0), [x])
    assert all(op.type != "SumToShape" for op in gf.get_default_graph().get_operations())
    gx, gy = gf.gradients(gf.reduce_sum(x * y), [x, y])
    xv, yv = np.array([[1.0, 2.0, 3.0]]), np.arange(12.0).reshape(4, 3)
    with gf.Session(opt_level=0) as sess:
        a, b, c = sess.run([gs, gx, gy], {x: xv, y: yv})
    np.testing.assert_allclose(a, 2 * np.exp(xv - xv.max(1, keepdims=True)))
    np.testing.assert_allclose(b, yv.sum(0, keepdims=True))  # x was broadcast over y's 4 rows
    np.testing.assert_allclose(c, np.broadcast_to(xv, (4, 3)))


def test_unknown_batch_gradients_match_static_ones_without_run_time_sums():
    """A residual MLP block, softmax and dropout on a None batch: every broadcast gradient is
    resolved statically (dims traced to x), and the values equal the static-shape graph's."""
    w = np.random.default_rng(0).standard_normal((4, 4))
    xv = np.random.default_rng(1).standard_normal((3, 4))

    def model(x):
        y = x + gf.nn.relu(gf.matmul(x, w))
        y = gf.nn.dropout(y, 0.25, seed=3)
        return gf.reduce_sum(gf.nn.softmax(y) * gf.matmul(y, w, transpose_b=True))
    results = []
    for shape in ((None, 4), (3, 4)):
        g = gf.Graph()
        with g.as_default():
            x = gf.placeholder(gf.float64, shape)
            (gx,) = gf.gradients(model(x), [x])
            if shape[0] is None:
                assert all(op.type != "SumToShape" for op in g.get_operations())
            with gf.Session(graph=g, opt_level=0) as sess:
                results.append(sess.run(gx, {x: xv}))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
