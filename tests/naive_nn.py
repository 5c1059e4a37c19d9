"""Slow, obviously-correct numpy references for the op tests: convolution and pooling as
explicit loops with TF's SAME/VALID arithmetic written out, and the adjoint of any linear
numpy function by probing it with basis vectors (the reference for gradient ops)."""
import math

import numpy as np


def out_and_pad(n, k, s, padding):
    """(output size, padding before) along one spatial axis, as TF computes them."""
    if padding == "SAME":
        out = math.ceil(n / s)
        return out, max((out - 1) * s + k - n, 0) // 2
    return (n - k) // s + 1, 0


def conv2d(x, w, strides, padding):
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    (sh, sw) = strides
    oh, pt = out_and_pad(h, kh, sh, padding)
    ow, pl = out_and_pad(wd, kw, sw, padding)
    out = np.zeros((n, oh, ow, co), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            for di in range(kh):
                for dj in range(kw):
                    r, c = i * sh + di - pt, j * sw + dj - pl
                    if 0 <= r < h and 0 <= c < wd:
                        out[:, i, j, :] += x[:, r, c, :].astype(np.float64) @ w[di, dj].astype(np.float64)
    return out


def _pool_windows(x, ksize, strides, padding):
    """Yield (i, j, list of (r, c) inside the input) for each output position."""
    _, h, wd, _ = x.shape
    (kh, kw), (sh, sw) = ksize, strides
    oh, pt = out_and_pad(h, kh, sh, padding)
    ow, pl = out_and_pad(wd, kw, sw, padding)
    for i in range(oh):
        for j in range(ow):
            cells = [(i * sh + di - pt, j * sw + dj - pl) for di in range(kh) for dj in range(kw)]
            yield i, j, [(r, c) for r, c in cells if 0 <= r < h and 0 <= c < wd]


def _pool_out_shape(x, ksize, strides, padding):
    n, h, wd, c = x.shape
    oh, _ = out_and_pad(h, ksize[0], strides[0], padding)
    ow, _ = out_and_pad(wd, ksize[1], strides[1], padding)
    return (n, oh, ow, c)


def max_pool(x, ksize, strides, padding):
    out = np.zeros(_pool_out_shape(x, ksize, strides, padding), dtype=x.dtype)
    for i, j, cells in _pool_windows(x, ksize, strides, padding):
        vals = np.stack([x[:, r, c, :] for r, c in cells])
        out[:, i, j, :] = np.max(vals, axis=0)
    return out


def max_pool_grad(x, dy, ksize, strides, padding):
    """The gradient goes to the first maximum of each window (scan order, rows first)."""
    dx = np.zeros(x.shape, dtype=np.float64)
    for i, j, cells in _pool_windows(x, ksize, strides, padding):
        for b in range(x.shape[0]):
            for ch in range(x.shape[3]):
                vals = [x[b, r, c, ch] for r, c in cells]
                r, c = cells[int(np.argmax(vals))]
                dx[b, r, c, ch] += dy[b, i, j, ch]
    return dx


def avg_pool(x, ksize, strides, padding):
    out = np.zeros(_pool_out_shape(x, ksize, strides, padding), dtype=np.float64)
    for i, j, cells in _pool_windows(x, ksize, strides, padding):
        out[:, i, j, :] = np.mean(np.stack([x[:, r, c, :] for r, c in cells]), axis=0)
    return out


def adjoint(f, x_shape, dy):
    """J^T dy for a linear numpy function f of an x of shape x_shape (probing with basis vectors)."""
    size = int(np.prod(x_shape))
    out = np.zeros(size, dtype=np.float64)
    for k in range(size):
        e = np.zeros(size)
        e[k] = 1.0
        out[k] = np.sum(np.asarray(f(e.reshape(x_shape)), dtype=np.float64) * dy)
    return out.reshape(x_shape)
