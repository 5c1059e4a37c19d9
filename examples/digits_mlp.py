"""Train a small MLP on scikit-learn's 8x8 digits with gf.keras, report validation accuracy, save the model.

    pip install graphflow[examples]      # scikit-learn, for load_digits
    python examples/digits_mlp.py [--epochs 20] [--output digits_mlp.keras]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphflow as gf


def load_data(seed: int = 0):
    """The 1797 digits scaled to [0, 1], shuffled once so the validation split mixes all writers."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], digits.target[order]


def build_model() -> gf.keras.Model:
    keras = gf.keras
    return keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_mlp")


# The untrained model at module level, for `graphflow compile/bench examples/digits_mlp.py`
# (the CLI skips main(), so nothing is trained there).
model = build_model()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default="digits_mlp.keras")
    args = parser.parse_args()

    gf.keras.utils.set_random_seed(0)
    x, y = load_data()
    model = build_model()
    model.summary()
    model.compile(optimizer=gf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.2)
    seconds = time.perf_counter() - start
    val_acc = history.history["val_accuracy"][-1]
    print(f"validation accuracy: {val_acc:.4f} (best {max(history.history['val_accuracy']):.4f}) "
          f"after {args.epochs} epochs in {seconds:.2f} s")
    model.save(args.output)
    print(f"saved the model to {args.output}")


if __name__ == "__main__":
    main()
