"""simplify: algebraic rewrites that give bit-identical IEEE results for every input.

Each rule maps an op type to a function `(node, rw) -> None | refs | Node`: no change,
the node's outputs replaced by earlier values, or a cheaper node in its place. Only
identities exact for all inputs, NaN, inf and -0.0 included, are here:

- `x * 1`, `1 * x`, `x / 1` (exact for every x);
- `x + (-0.0)`, `(-0.0) + x`, `x - (+0.0)` on floats (`x + 0.0` is NOT exact: -0.0 + 0.0
  is +0.0), `x + 0`, `x - 0` on integers;
- `--x`, `not not x` (involutions);
- `transpose(transpose(x))` (composed, dropped when it is the identity permutation),
  `reshape(reshape(x))`, a reshape to x's own static shape;
- `cast(x, x.dtype)`, `identity(x)`, `stop_gradient(x)` (gradients are already built),
  `broadcast_to(x, x.shape)`, `squeeze(expand_dims(x, a), a)`;
- `f(f(x)) -> f(x)` for idempotent f (abs, floor, ceil, round, sign, relu, relu6);
- `maximum(x, x)`, `minimum(x, x)`, `x and x`, `x or x`, `where(c, x, x)` -> x.

`x * 0 -> 0` and `x - x -> 0` are wrong for NaN and inf and are not done. A rule that
drops an operand applies only when broadcasting cannot change the kept operand's shape,
whatever its unknown dims turn out to be, and the dtype is the kept operand's:
`x * ones((3,))` with x of shape (1,) (or (None,)) broadcasts, so it stays.
Nodes with control dependencies, and producers with control dependencies that a rule
would bypass, are left alone so no ordering constraint is lost.
"""
from __future__ import annotations

import math

import numpy as np

from ..program import Node, Program, const_value
from .rewrite import Rewrite


def _const(rw: Rewrite, ref):
    return const_value(rw.node(ref[0]))


def _keeps_spec(node: Node, rw: Rewrite, ref) -> bool:
    """True when dropping `node` for `ref` changes neither static shape nor dtype."""
    want, have = node.specs[0], rw.spec(ref)
    return (want.dtype == have.dtype and want.shape is not None and have.shape is not None
            and None not in want.shape and tuple(want.shape) == tuple(have.shape))


def _broadcast_keeps(node: Node, rw: Rewrite, kept, const) -> bool:
    """True when combining `kept` with the array `const` yields `kept`'s shape for every
    run-time shape `kept` may have (its None dims included) and `node`'s dtype is kept's."""
    have = rw.spec(kept)
    if have.dtype != node.specs[0].dtype or have.shape is None or const.ndim > len(have.shape):
        return False
    return all(c == 1 or c == d for c, d in zip(const.shape[::-1], have.shape[::-1]))


# The identity tests take one-element constants (the usual `x * 2.0`) as Python numbers:
# `.item()` is exact for every int and float dtype, and a numpy call per operand would cost
# most of the pass on a long chain.

def _is_one(c) -> bool:
    if c.dtype.kind not in "iuf":
        return False
    return c.item() == 1 if c.size == 1 else bool(np.all(c == 1))


def _is_additive_identity(c) -> bool:
    """x + c == x bit for bit: -0.0 for floats (+0.0 turns -0.0 into +0.0), 0 for ints."""
    if c.dtype.kind == "f":
        if c.size == 1:
            v = c.item()
            return v == 0 and math.copysign(1.0, v) < 0
        return bool(np.all((c == 0) & np.signbit(c)))
    return c.dtype.kind in "iu" and (c.item() == 0 if c.size == 1 else bool(np.all(c == 0)))


def _is_subtractive_identity(c) -> bool:
    """x - c == x bit for bit: +0.0 for floats (x - (-0.0) is x + 0.0), 0 for ints."""
    if c.dtype.kind == "f":
        if c.size == 1:
            v = c.item()
            return v == 0 and math.copysign(1.0, v) > 0
        return bool(np.all((c == 0) & ~np.signbit(c)))
    return c.dtype.kind in "iu" and (c.item() == 0 if c.size == 1 else bool(np.all(c == 0)))


def _drop_operand(is_identity, sides=(0, 1)):
    """Rule for a binary op whose constant operand at one of `sides` is an identity element."""
    def rule(node, rw):
        for side in sides:
            c = _const(rw, node.inputs[side])
            if c is not None and is_identity(c):
                kept = node.inputs[1 - side]
                if _broadcast_keeps(node, rw, kept, c):
                    return [kept]
        return None
    return rule


def _forward(node, rw):
    """identity-like ops: the output is the input."""
    return [node.inputs[0]]


def _bypassable(rw: Rewrite, ref, op: str) -> Node | None:
    """The producer of `ref` if it is an `op` node whose control deps we may bypass."""
    p = rw.node(ref[0])
    return p if p.op == op and not p.control else None


def _involution(node, rw):
    inner = _bypassable(rw, node.inputs[0], node.op)
    return [inner.inputs[0]] if inner is not None else None


def _idempotent(node, rw):
    """f(f(x)) -> f(x) for ops with f∘f = f (abs, floor, sign, relu, ...): the outer node goes."""
    inner = _bypassable(rw, node.inputs[0], node.op)
    return [node.inputs[0]] if inner is not None and inner.attrs == node.attrs else None


def _same_operands(node, rw):
    """op(x, x) -> x for max, min, and, or (exact, NaN included: both operands are the NaN)."""
    a, b = node.inputs
    return [a] if a == b and rw.spec(a).dtype == node.specs[0].dtype else None


def _select_same_branches(node, rw):
    """where(c, x, x) -> x when c cannot broadcast x to a bigger shape."""
    _, a, b = node.inputs
    return [a] if a == b and _keeps_spec(node, rw, a) else None


def _squeeze_expanded(node, rw):
    """squeeze(expand_dims(x, a), a) -> x."""
    inner = _bypassable(rw, node.inputs[0], "ExpandDims")
    if inner is not None and tuple(node.attrs["axes"]) == (inner.attrs["axis"],):
        return [inner.inputs[0]]
    return None


def _same_dtype_cast(node, rw):
    return [node.inputs[0]] if rw.spec(node.inputs[0]).dtype == node.specs[0].dtype else None


def _transpose(node, rw):
    perm = tuple(node.attrs["perm"])
    source, inner = node.inputs[0], _bypassable(rw, node.inputs[0], node.op)
    if inner is not None:
        p1 = tuple(inner.attrs["perm"])
        perm = tuple(p1[p] for p in perm)
        source = inner.inputs[0]
    if perm == tuple(range(len(perm))):
        return [source]
    if inner is None:
        return None
    return node.with_(inputs=(source,), attrs=dict(node.attrs, perm=perm))


def _reshape(node, rw):
    inner = _bypassable(rw, node.inputs[0], node.op)
    source = inner.inputs[0] if inner is not None else node.inputs[0]
    if _keeps_spec(node, rw, source):
        return [source]
    if inner is None:
        return None
    return node.with_(inputs=(source,))


def _broadcast_to(node, rw):
    return [node.inputs[0]] if _keeps_spec(node, rw, node.inputs[0]) else None


RULES = {
    "Mul": _drop_operand(_is_one),
    "RealDiv": _drop_operand(_is_one, sides=(1,)),
    "Add": _drop_operand(_is_additive_identity),
    "Sub": _drop_operand(_is_subtractive_identity, sides=(1,)),
    "Neg": _involution,
    "LogicalNot": _involution,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Cast": _same_dtype_cast,
    "Identity": _forward,
    "StopGradient": _forward,
    "BroadcastTo": _broadcast_to,
    "Squeeze": _squeeze_expanded,
    **{op: _idempotent for op in ("Abs", "Floor", "Ceil", "Round", "Sign", "Relu", "Relu6")},
    **{op: _same_operands for op in ("Maximum", "Minimum", "LogicalAnd", "LogicalOr")},
    "Select": _select_same_branches,
}


def simplify(program: Program, report) -> Program:
    rw = Rewrite(program)
    done: list[str] = []
    for old in program.nodes:
        node = rw.remap(old)
        rule = RULES.get(node.op)
        result = rule(node, rw) if rule is not None and not node.control else None
        if result is None:
            rw.keep(node, old)
        elif isinstance(result, Node):
            rw.keep(result, old)
            done.append(node.name)
        else:
            rw.alias(node, result)
            done.append(node.name)
    report.record("simplify", "simplified", done)
    return rw.finish(report, "simplify")
