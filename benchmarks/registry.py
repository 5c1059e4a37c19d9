"""The workloads of WORKLOADS.md, by id: each maps to a function `cases(quick) -> [Case]`."""
from __future__ import annotations

from . import w1_elementwise, w23_rows, w4_mlp, w5_training, w6_compile, w7_limits, w8_overhead

WORKLOADS = {
    "W1": w1_elementwise.cases,
    "W2": w23_rows.softmax_cases,
    "W3": w23_rows.layer_norm_cases,
    "W4": w4_mlp.cases,
    "W5": w5_training.cases,
    "W6": w6_compile.cases,
    "W7": w7_limits.cases,
    "W8": w8_overhead.cases,
}
TITLES = {
    "W1": "Elementwise chain `tanh(x*0.5 + y) * sigmoid(x) + sqrt(abs(y) + 1.0)`; GB/s counts 3 arrays.",
    "W2": "Softmax along the last axis, max-subtracted; GB/s counts 2 arrays.",
    "W3": "Layer norm along the last axis (gamma, beta, eps 1e-5); GB/s counts 2 arrays.",
    "W4": "MLP inference 784-512-512-10 (relu, relu, softmax), fixed weights.",
    "W5": "MLP training step (SGD lr 0.01, sparse softmax cross-entropy); `fit` on digits: median = wall time, "
          "figure = final training accuracy.",
    "W6": "Compile time of a chain of elementwise ops on a (1024,) vector, each in a fresh process; warm = the "
          "second process sharing the kernel cache directory. Then the graph passes alone (opt_level 1, no "
          "codegen) on 1k- and 10k-op graphs: near-linear passes keep the time per op flat.",
    "W7": "Machine limits: the FMA peak (independent vector multiply-adds in registers), sgemm through numpy, "
          "STREAM triad (3 arrays).",
    "W8": "Per-call overhead of the smallest graph.",
}
RUN_ORDER = ("W7", "W1", "W2", "W3", "W4", "W5", "W6", "W8")  # limits first: the others refer to them


def select(only: str | None) -> list:
    """Workload ids to run, in RUN_ORDER; ValueError naming an unknown id."""
    if not only:
        return list(RUN_ORDER)
    wanted = [w.strip().upper() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(RUN_ORDER)}")
    return [w for w in RUN_ORDER if w in wanted]
