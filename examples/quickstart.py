"""A define-then-run script: build a small softmax-regression graph, train it, compile it.

Run: python examples/quickstart.py
"""
import numpy as np

import graphflow as gf

rng = np.random.default_rng(0)
centers = rng.normal(size=(3, 4)) * 3
labels = rng.integers(0, 3, size=600)
data = (centers[labels] + rng.normal(size=(600, 4))).astype(np.float32)

x = gf.placeholder(gf.float32, shape=(None, 4), name="x")
y = gf.placeholder(gf.int32, shape=(None,), name="y")
w = gf.Variable(gf.random.normal((4, 3), stddev=0.1, seed=0), name="w")
b = gf.Variable(gf.zeros((3,)), name="b")
logits = gf.matmul(x, w) + b
with gf.name_scope("loss"):
    onehot = gf.cast(gf.equal(gf.expand_dims(y, 1), gf.range(3)), gf.float32)
    shifted = logits - gf.stop_gradient(gf.reduce_max(logits, axis=1, keepdims=True))
    log_probs = shifted - gf.log(gf.reduce_sum(gf.exp(shifted), axis=1, keepdims=True))
    loss = -gf.reduce_mean(gf.reduce_sum(onehot * log_probs, axis=1))
accuracy = gf.reduce_mean(gf.cast(gf.equal(gf.argmax(logits, 1, output_type=gf.int32), y), gf.float32))
gw, gb = gf.gradients(loss, [w, b])
train = gf.group(w.assign_sub(0.5 * gw), b.assign_sub(0.5 * gb))

with gf.Session() as sess:
    sess.run(gf.global_variables_initializer())
    for step in range(100):
        _, l = sess.run([train, loss], {x: data, y: labels})
        if step % 25 == 0:
            print(f"step {step:3d}  loss {l:.4f}")
    print(f"final loss {sess.run(loss, {x: data, y: labels}):.4f}, "
          f"accuracy {sess.run(accuracy, {x: data, y: labels}):.3f}")

# What the compiler made of the inference graph: ops before/after and the fused kernels.
compiled = gf.compile(logits, feed_list=[x])
stats = compiled.stats
print(f"compiled: {stats['ops_before']} ops -> {stats['ops_after']}, "
      f"{stats['kernels']} fused kernel(s) holding {stats['fused_ops']} ops")
