"""Flatten and rebuild the nested inputs/outputs a layer may take: a tensor, a list/tuple, or a dict."""
from __future__ import annotations


def flatten(struct) -> list:
    """The leaves of `struct` in order (dicts by sorted key, as Keras does)."""
    if isinstance(struct, dict):
        return [leaf for k in sorted(struct) for leaf in flatten(struct[k])]
    if isinstance(struct, (list, tuple)):
        return [leaf for item in struct for leaf in flatten(item)]
    return [struct]


def pack_like(struct, leaves: list):
    """Rebuild `struct`'s nesting with `leaves` (the inverse of `flatten`)."""
    it = iter(leaves)

    def build(s):
        if isinstance(s, dict):
            return {k: build(s[k]) for k in sorted(s)}
        if isinstance(s, (list, tuple)):
            return type(s)(build(item) for item in s)
        return next(it)

    return build(struct)


def map_structure(fn, struct):
    """Apply `fn` to every leaf, keeping the nesting."""
    return pack_like(struct, [fn(leaf) for leaf in flatten(struct)])
