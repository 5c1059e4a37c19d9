"""Op definitions: one registered `OpDef` per op type (see registry.py), and their builders."""
