"""An MLP written with raw ops, TF1 style: 784-512-512-10, relu, relu, softmax.

The compiler fuses each bias add + relu into its matmul's epilogue and the softmax
(max, subtract, exp, sum, divide) into one row kernel.

Run it:                  python examples/mlp_raw.py
See what the compiler does:  graphflow compile examples/mlp_raw.py --output-dir /tmp/mlp
Time it fused vs unfused:    graphflow bench examples/mlp_raw.py --batch 256
"""
import numpy as np

import graphflow as gf

SIZES = (784, 512, 512, 10)

x = gf.placeholder(gf.float32, shape=(None, SIZES[0]), name="x")
h = x
for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
    with gf.name_scope(f"dense{i}"):
        limit = float(np.sqrt(6.0 / (n_in + n_out)))  # glorot uniform
        w = gf.Variable(gf.random.uniform((n_in, n_out), -limit, limit, seed=i), name="w")
        b = gf.Variable(gf.zeros((n_out,)), name="b")
        h = gf.matmul(h, w) + b
        if i < len(SIZES) - 2:
            h = gf.maximum(h, 0.0)  # relu
with gf.name_scope("softmax"):
    e = gf.exp(h - gf.reduce_max(h, axis=-1, keepdims=True))
    probs = e / gf.reduce_sum(e, axis=-1, keepdims=True)

inputs = [x]
outputs = [probs]

if __name__ == "__main__":
    batch = np.random.default_rng(0).uniform(-1, 1, size=(256, SIZES[0])).astype(np.float32)
    with gf.Session() as sess:
        sess.run(gf.global_variables_initializer())
        p = sess.run(probs, {x: batch})
    print(f"probabilities {p.shape}, rows sum to 1 within {np.abs(p.sum(axis=1) - 1).max():.1e}, "
          f"predicted classes {np.bincount(p.argmax(axis=1), minlength=10).tolist()}")
