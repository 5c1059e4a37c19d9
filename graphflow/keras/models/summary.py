"""The Keras-style `model.summary()` table."""
from __future__ import annotations

from ..layers.input_layer import InputLayer


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def format_summary(model, line_length: int = 65) -> str:
    """Rows of layer name (type), output shape and parameter count, then total/trainable/non-trainable counts."""
    rows = []
    for layer in model.layers:
        shape = layer.batch_shape if isinstance(layer, InputLayer) else layer.output_shape
        rows.append((f"{layer.name} ({type(layer).__name__})", _shape_text(shape), f"{layer.count_params():,}"))
    name_w = max([int(line_length * 0.45)] + [len(r[0]) + 2 for r in rows])
    shape_w = max([int(line_length * 0.4)] + [len(r[1]) + 2 for r in rows])
    width = max([line_length] + [name_w + shape_w + len(r[2]) + 1 for r in rows])

    def line(a, b, c):
        return f" {a:<{name_w - 1}}{b:<{shape_w}}{c}"

    trainable = sum(_size(w) for w in model.trainable_weights)
    non_trainable = sum(_size(w) for w in model.non_trainable_weights)
    out = [f'Model: "{model.name}"', "_" * width, line("Layer (type)", "Output Shape", "Param #"), "=" * width]
    for i, row in enumerate(rows):
        out.append(line(*row))
        out.append(("=" if i == len(rows) - 1 else "_") * width)
    if not rows:
        out.append("=" * width)
    out += [f"Total params: {trainable + non_trainable:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {non_trainable:,}", "_" * width]
    return "\n".join(out)


def _size(w) -> int:
    n = 1
    for d in w.shape:
        n *= d
    return n
