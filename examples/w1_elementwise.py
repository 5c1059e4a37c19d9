"""W1 of the benchmarks: one elementwise chain over two vectors, fused into one kernel.

    tanh(x*0.5 + y) * sigmoid(x) + sqrt(abs(y) + 1.0)

Run it:                  python examples/w1_elementwise.py
See what the compiler does:  graphflow compile examples/w1_elementwise.py --output-dir /tmp/w1
Time it fused vs unfused:    graphflow bench examples/w1_elementwise.py --batch 4194304
"""
import numpy as np

import graphflow as gf

x = gf.placeholder(gf.float32, shape=(None,), name="x")
y = gf.placeholder(gf.float32, shape=(None,), name="y")
z = gf.tanh(x * 0.5 + y) * gf.sigmoid(x) + gf.sqrt(gf.abs(y) + 1.0)

inputs = [x, y]
outputs = z

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    xv, yv = (rng.uniform(-1, 1, size=2**20).astype(np.float32) for _ in range(2))
    with gf.Session() as sess:
        got = sess.run(z, {x: xv, y: yv})
    want = np.tanh(xv * 0.5 + yv) / (1 + np.exp(-xv)) + np.sqrt(np.abs(yv) + 1)
    print(f"{got.size} elements, max |graphflow - numpy| = {np.abs(got - want).max():.2e}")
