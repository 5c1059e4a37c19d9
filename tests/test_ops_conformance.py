"""Conformance: every op registered by graphflow.ops, and every composite, against an
independent numpy expectation.

Each op is built through the graph API on placeholders, run in a Session at opt_level=0,
and compared with its reference in tests/op_references.py, on shapes from
shared lists (broadcasting pairs, keepdims, size-1 and size-0 dimensions), for every dtype
the op accepts, with NaN/inf inputs where the op's domain allows. The static shape and
dtype the op infers must equal what its kernel returns, and with all dimensions unknown
the inferred shape must stay compatible.

A registered op without an entry there fails `test_every_op_has_a_reference`, so adding
an op means adding its reference.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import graphflow as gf
from domains import SPECIALS, sample
from graphflow.ops.composite import all_composites, get_composite
from graphflow.ops.registry import OpKind, all_op_defs, get_op_def, op_origin
from op_references import COMPOSITE_REFERENCE, F32, REFERENCE, Case, Check, attrs_or_empty


# ---- the runner ----

def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _tolerance(dtype, rtol):
    if rtol is not None:
        return rtol, rtol
    return (1e-5, 1e-6) if dtype == F32 else (1e-11, 1e-12)


def _compare(actual, expected, label, rtol=None):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape}, numpy gives {expected.shape}"
    if actual.dtype.kind == "f":
        r, a = _tolerance(actual.dtype, rtol)
        np.testing.assert_allclose(actual, expected.astype(np.float64), rtol=r, atol=a, equal_nan=True, err_msg=label)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=label)


def _special_inputs(n_inputs, domains, dtype):
    """NaN/inf/signed zeros/huge values: every pair of specials for binary ops."""
    if n_inputs == 1:
        return [SPECIALS.astype(dtype)]
    if n_inputs == 2 and all(d != "bool" for d in domains):
        return [SPECIALS[:, None].astype(dtype), SPECIALS.astype(dtype)]
    return None


def _materialize(case, domains, dtype, rng):
    arrays = []
    for k, item in enumerate(case.inputs):
        if isinstance(item, np.ndarray):
            arrays.append(item)
        else:
            dom = domains[k] if k < len(domains) else "real"
            # shape-only operands and the data inputs of gradient ops take the case's dtype
            arrays.append(sample(dom, item, dtype, rng))
    return arrays


def _dtypes_for(dtypes, first_only):
    if first_only or not dtypes:
        return [None]
    return list(dtypes)


def _run_cases(build, cases_by_dtype, ref, label):
    """Build every case on placeholders (plus a copy with unknown dimensions), run them all in
    one Session, and compare with the reference, the static shapes and the dtypes."""
    g = gf.Graph()
    built = []
    with g.as_default():
        for dtype, case, arrays in cases_by_dtype:
            phs = [gf.placeholder(a.dtype, a.shape) for a in arrays]
            outs = _as_list(build(phs, case.attrs))
            unknown = [gf.placeholder(a.dtype, (None,) * a.ndim) for a in arrays]
            loose = _as_list(build(unknown, case.attrs))
            built.append((dtype, case, arrays, phs, outs, loose))
    fetches = [o for b in built for o in b[4]]
    feed = {ph: a for b in built for ph, a in zip(b[3], b[2])}
    with gf.Session(graph=g, opt_level=0) as sess:
        values = sess.run(fetches, feed)
    k = 0
    for dtype, case, arrays, phs, outs, loose in built:
        desc = f"{label} on {[a.shape for a in arrays]} {[a.dtype.name for a in arrays]} attrs={case.attrs}"
        expected = _as_list(ref.fn(*arrays, **case.attrs))
        assert len(expected) == len(outs), f"{desc}: {len(outs)} outputs, numpy gives {len(expected)}"
        for o, lo, e in zip(outs, loose, expected):
            v = np.asarray(values[k])
            k += 1
            _compare(v, e, desc, ref.rtol)
            assert o.dtype == v.dtype, f"{desc}: static dtype {o.dtype}, the kernel returned {v.dtype}"
            if ref.shape_from_values:
                assert _compatible(o.shape, v.shape), f"{desc}: static shape {o.shape}, the kernel returned {v.shape}"
            else:
                assert o.shape == v.shape, f"{desc}: static shape {o.shape}, the kernel returned {v.shape}"
            assert lo.dtype == v.dtype
            assert _compatible(lo.shape, v.shape), \
                f"{desc}: with unknown input dims the op infers {lo.shape}, incompatible with {v.shape}"


def _compatible(static, actual):
    return static is None or (len(static) == len(actual) and all(d is None or d == n for d, n in zip(static, actual)))


def _collect_cases(ref, dtypes, first_only, domains, attrs_for_test, rng):
    out = []
    for i, dtype in enumerate(_dtypes_for(dtypes, first_only or ref.first_dtype_only)):
        dt = np.dtype(dtype) if dtype is not None else F32
        cases = ref.cases(dt, attrs_for_test) if callable(ref.cases) else ref.cases
        if i > 0:
            cases = cases[:3]  # the full shape list for the first dtype, a few shapes for the others
        for case in cases:
            out.append((dt, case, _materialize(case, domains, dt, rng)))
        if ref.specials and dt.kind == "f" and cases:
            special = _special_inputs(len(cases[0].inputs), domains, dt)
            if special is not None:
                for a in attrs_or_empty(attrs_for_test):
                    out.append((dt, Case(special, a), special))
    return out


PRIMITIVES = sorted(d.type for d in all_op_defs() if op_origin(d.type).startswith("graphflow.ops"))
COMPOSITES = sorted(c.name for c in all_composites())


def test_every_op_has_a_reference():
    missing = [t for t in PRIMITIVES if t not in REFERENCE]
    missing += [n for n in COMPOSITES if n not in COMPOSITE_REFERENCE]
    assert not missing, f"ops without a conformance reference (add them to REFERENCE): {missing}"
    stale = [t for t in REFERENCE if t not in PRIMITIVES] + [n for n in COMPOSITE_REFERENCE if n not in COMPOSITES]
    assert not stale, f"references for ops that are not registered: {stale}"


@pytest.mark.parametrize("op_type", PRIMITIVES)
def test_primitive_matches_numpy(op_type):
    ref = REFERENCE.get(op_type)
    if ref is None:
        pytest.fail(f"{op_type} has no entry in REFERENCE")
    if isinstance(ref, Check):
        ref.fn()
        return
    d = get_op_def(op_type)
    rng = np.random.default_rng(zlib.crc32(op_type.encode()))  # stable across processes
    cases = _collect_cases(ref, d.dtypes, False, d.sample, d.attrs_for_test, rng)
    assert cases, f"{op_type}: no test cases"

    def build(inputs, attrs):
        g = gf.get_default_graph()
        op = g.create_op(op_type, inputs, attrs)
        return list(op.outputs)
    _run_cases(build, cases, ref, op_type)


@pytest.mark.parametrize("name", COMPOSITES)
def test_composite_matches_numpy(name):
    ref = COMPOSITE_REFERENCE.get(name)
    if ref is None:
        pytest.fail(f"composite {name} has no entry in COMPOSITE_REFERENCE")
    if isinstance(ref, Check):
        ref.fn()
        return
    c = get_composite(name)
    rng = np.random.default_rng(len(name))
    cases = _collect_cases(ref, c.dtypes, False, c.sample, c.attrs_for_test, rng)

    def build(inputs, attrs):
        return c.build(*inputs, **attrs)
    _run_cases(build, cases, ref, name)
    if c.reference is not None:  # the registry's own reference agrees with the independent one
        for _, case, arrays in cases[:4]:
            with np.errstate(all="ignore"):
                for mine, theirs in zip(_as_list(c.reference(*arrays, **case.attrs)),
                                        _as_list(ref.fn(*arrays, **case.attrs))):
                    np.testing.assert_allclose(np.asarray(mine, np.float64), np.asarray(theirs, np.float64),
                                               rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name)


# ---- the same elementwise ops compiled (opt_level 2: scalar programs through LLVM) ----

ELEMENTWISE = sorted(t for t in PRIMITIVES if get_op_def(t).kind is OpKind.ELEMENTWISE)
# ops whose attributes fix the output shape: their own cases above cover them at opt_level 0
NO_WIDE_CASE = {"BroadcastTo": "needs a target shape attribute"}
# by arity: rows of 37 (a vector body and a tail) with broadcasting
WIDE_SHAPES = {1: [(3, 37)], 2: [(3, 1), (37,)], 3: [(3, 1), (37,), (3, 37)]}


@pytest.mark.parametrize("op_type", sorted(set(ELEMENTWISE) - set(NO_WIDE_CASE)))
def test_elementwise_op_compiled_matches_reference_kernel(op_type):
    """Every dtype, rows of 37 (vector body and tail), broadcasting, NaN/inf included:
    opt_level 2 gives what the op's numpy kernel gives at opt_level 0."""
    d = get_op_def(op_type)
    rng = np.random.default_rng(zlib.crc32(op_type.encode()) + 1)
    shapes = WIDE_SHAPES[max(1, len(d.sample))]
    g = gf.Graph()
    built = []
    with g.as_default():
        for dt in d.dtypes or (F32,):
            for attrs in attrs_or_empty(d.attrs_for_test):
                arrays = _materialize(Case(list(shapes)), d.sample, np.dtype(dt), rng)
                for a in arrays:
                    if a.dtype.kind == "f" and a.size >= len(SPECIALS):
                        a.reshape(-1)[:len(SPECIALS)] = SPECIALS
                phs = [gf.placeholder(a.dtype, a.shape) for a in arrays]
                built.append((arrays, attrs, g.create_op(op_type, phs, attrs).outputs[0], phs))
    feed = {p: a for arrays, _, _, phs in built for p, a in zip(phs, arrays)}
    outs = [o for _, _, o, _ in built]
    with gf.Session(graph=g, opt_level=0) as s0, gf.Session(graph=g, opt_level=2) as s2:
        reference, compiled = s0.run(outs, feed), s2.run(outs, feed)
    for (arrays, attrs, _, _), want, got in zip(built, reference, compiled):
        desc = f"{op_type} at opt_level 2 on {[a.shape for a in arrays]} {[a.dtype.name for a in arrays]} {attrs}"
        want, got = np.asarray(want), np.asarray(got)
        assert got.dtype == want.dtype and got.shape == want.shape, desc
        if want.dtype.kind == "f":
            tol = 3e-6 if want.dtype == F32 else 1e-13
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True, err_msg=desc)
        else:
            np.testing.assert_array_equal(got, want, err_msg=desc)
