"""The SGD update applied in the gemm's stores (gemm.store_function, epilogue.absorbed):
D - s * (A @ B) with the bits of the product followed by the unfused Mul and Sub, over odd
shapes, K beyond one block, transposes, an output that is D itself or overlaps it and
non-finite values; and a training step whose fused updates give the same weights as the
two-pass kernels, at 1 and 2 threads."""
import itertools

import numpy as np
import pytest

import graphflow as gf
from graphflow.compiler.codegen import gemm
from graphflow.compiler.fusion import epilogue, fused_op
from graphflow.runtime.pointers import address

RNG = np.random.default_rng(5)


def _product(A, B):
    """A @ B on the plain kernel (A any strides, B with unit column stride)."""
    m, k = A.shape
    n = B.shape[1]
    item = A.dtype.itemsize
    out = np.zeros((m, n), A.dtype)   # (k == 0 stores nothing)
    gemm.block_function(A.dtype)(0, m, 0, n, k, address(A), A.strides[0] // item, A.strides[1] // item,
                                 address(B), B.strides[0] // item, address(out), n)
    return out


def _bits(x):
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_kernel_gives_the_two_pass_bits(dtype):
    s = np.array([0.01], dtype)
    fn = gemm.store_function(dtype, "update")
    item = np.dtype(dtype).itemsize
    for m, n, k, ta in itertools.product((1, 5, 8, 17, 130), (1, 10, 16, 53, 100), (1, 17, 1100), (False, True)):
        A = RNG.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        A = A.T if ta else A
        B = RNG.standard_normal((k, n)).astype(dtype)
        D = RNG.standard_normal((m, n + 3)).astype(dtype)[:, 2:n + 2]   # a row stride of its own
        expect = D - s[0] * _product(A, B)
        out = np.full((m, n), np.nan, dtype)
        for i0, i1 in ((0, min(m, 9)), (min(m, 9), m)):   # blocks of rows land in place
            fn(i0, i1, 0, n, k, address(A), A.strides[0] // item, A.strides[1] // item, address(B), n,
               address(out), n, address(D), D.strides[0] // item, address(s))
        assert np.array_equal(_bits(out), _bits(expect)), (m, n, k, ta)
        own = np.ascontiguousarray(D)   # D itself as C (an update in place): clamped rows, K > KC
        fn(0, m, 0, n, k, address(A), A.strides[0] // item, A.strides[1] // item, address(B), n,
           address(own), n, address(own), n, address(s))
        assert np.array_equal(_bits(own), _bits(expect)), (m, n, k, ta, "in place")


def test_update_kernel_propagates_non_finite_values():
    A = RNG.standard_normal((17, 33)).astype(np.float32)
    B = RNG.standard_normal((33, 40)).astype(np.float32)
    D = RNG.standard_normal((17, 40)).astype(np.float32)
    A[3, 5], B[7, 30], D[9, 9], D[10, 1] = np.nan, -np.inf, np.inf, np.nan
    s = np.array([0.5], np.float32)
    with np.errstate(invalid="ignore"):
        expect = D - s[0] * _product(A, B)
    out = np.empty_like(D)
    gemm.store_function(np.float32, "update")(0, 17, 0, 40, 33, address(A), 33, 1, address(B), 40, address(out), 40,
                                     address(D), 40, address(s))
    assert np.array_equal(_bits(out), _bits(expect))


@pytest.mark.parametrize("ta,tb", list(itertools.product((False, True), repeat=2)))
def test_update_preparer_all_routes(ta, tb):
    """The register tiles for every shape (B packed when transposed; one row, two rows and a
    K below one vector too; plain products leave the first two to the gemv or numpy), D of another
    layout, and an output that is D itself: the bits of the tiles' product then the update."""
    scale = np.array(0.03, np.float32)
    prepare = epilogue._store_preparer("update", ta, tb, scale.reshape(1))
    for m, n, k in ((1, 64, 17), (2, 17, 40), (100, 257, 64), (64, 10, 100), (33, 64, 5), (9, 20, 3), (7, 9, 0)):
        a = RNG.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = RNG.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        p = _product(a.T if ta else a, np.ascontiguousarray(b.T if tb else b))
        for d in (RNG.standard_normal((m, n)).astype(np.float32), RNG.standard_normal((n, m)).astype(np.float32).T):
            expect = d - scale * p
            out = np.full((m, n), np.nan, np.float32)
            rows = prepare(a, b, d)
            for b0 in range(0, m, 40):
                rows(b0, min(b0 + 40, m), out[b0:b0 + 40])
            assert np.array_equal(_bits(out), _bits(expect)), (m, n, k)
            inplace = np.ascontiguousarray(d)
            prepare(a, b, inplace)(0, m, inplace)
            assert np.array_equal(_bits(inplace), _bits(expect)), (m, n, k, "in place")


def _training_graph(sizes, batch):
    x = gf.placeholder(gf.float32, (None, sizes[0]), name="x")
    y = gf.placeholder(gf.int32, (None,), name="y")
    h = x
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = gf.Variable((RNG.standard_normal((n_in, n_out)) * 0.3).astype(np.float32), name=f"w{i}")
        h = gf.matmul(h, w) + gf.Variable(RNG.standard_normal(n_out).astype(np.float32) * 0.1, name=f"b{i}")
        if i + 2 < len(sizes):
            h = gf.nn.relu(h)
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    train = gf.train.GradientDescentOptimizer(0.05).minimize(loss)
    feed = {x: RNG.uniform(-1, 1, (batch, sizes[0])).astype(np.float32),
            y: RNG.integers(0, sizes[-1], batch).astype(np.int32)}
    return loss, train, feed


def _weights_after_steps(graph, loss, train, feed, threads, steps=3):
    with graph.as_default(), gf.Session(opt_level=2, num_threads=threads) as sess:
        sess.run(gf.global_variables_initializer())
        for _ in range(steps):
            sess.run([loss, train], feed)
        return [sess.run(v) for v in gf.trainable_variables()]


@pytest.mark.parametrize("sizes,batch", [((30, 40, 10), 33), ((17, 64, 5), 1), ((70, 20, 3), 2)])
def test_training_step_absorbs_sgd_updates_with_the_same_bits(sizes, batch, monkeypatch):
    """Each weight's update runs in its gradient's product (the kernels say so) and the
    weights after a few steps are those of the two-pass kernels, at 1 and 2 threads (to the
    bit where both take the register tiles; below 16 rows of batch the two-pass products are
    numpy's, whose sums may round otherwise)."""
    monkeypatch.setattr(fused_op, "TASK_NS", 1)   # split even these small products over 2 threads
    graph = gf.Graph()
    with graph.as_default():
        loss, train, feed = _training_graph(sizes, batch)
        compiled = gf.compile([loss, train], feed_list=list(feed), opt_level=2)
        kernels = [n.attrs["kernel"] for n in compiled.program.nodes if n.op == "Fused"]
        assert sum(k._absorbed for k in kernels if k._lib is not None) == len(sizes) - 1, compiled.report()
    got = {t: _weights_after_steps(graph, loss, train, feed, t) for t in (1, 2)}
    monkeypatch.setattr(epilogue, "absorbed", lambda ir: None)
    two_pass = _weights_after_steps(graph, loss, train, feed, 1)
    for a, b, c in zip(got[1], got[2], two_pass):
        assert np.array_equal(_bits(a), _bits(b))
        if batch >= 16:
            assert np.array_equal(_bits(a), _bits(c))
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def test_absorbed_kernel_with_a_strided_output_runs_its_numpy_evaluation():
    """An output the product cannot store into (not contiguous) takes the kernel's numpy
    evaluation, never the update applied twice."""
    graph = gf.Graph()
    with graph.as_default():
        loss, train, feed = _training_graph((20, 24, 4), 16)
        compiled = gf.compile([loss, train], feed_list=list(feed), opt_level=2)
    kernel = next(n.attrs["kernel"] for n in compiled.program.nodes
                  if n.op == "Fused" and n.attrs["kernel"]._lib is not None and n.attrs["kernel"]._absorbed)
    inputs = [RNG.standard_normal(tuple(16 if s is None else s for s in op.shape)).astype(np.float32)
              for op in kernel.ir.inputs]   # (activations, gradient, weight; the batch 16)
    contiguous = kernel.run(inputs)[0]
    strided = np.full((contiguous.shape[1], contiguous.shape[0]), np.nan, np.float32).T
    kernel.run(inputs, [strided])
    np.testing.assert_allclose(strided, contiguous, rtol=1e-6, atol=1e-6)

