"""Train a small CNN on scikit-learn's 8x8 digits with gf.keras, report validation accuracy, save the model.

    pip install graphflow[examples]      # scikit-learn, for load_digits
    python examples/digits_cnn.py [--epochs 10] [--output digits_cnn.keras]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphflow as gf


def load_data(seed: int = 0):
    """The digits as (N, 8, 8, 1) images in [0, 1], shuffled once."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], digits.target[order]


def build_model() -> gf.keras.Model:
    keras = gf.keras
    layers = keras.layers
    inputs = keras.Input(shape=(8, 8, 1))
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    h = layers.Dropout(0.2)(h)
    outputs = layers.Dense(10, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="digits_cnn")


# The untrained model at module level, for `graphflow compile/bench examples/digits_cnn.py`
# (the CLI skips main(), so nothing is trained there).
model = build_model()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default="digits_cnn.keras")
    args = parser.parse_args()

    gf.keras.utils.set_random_seed(0)
    x, y = load_data()
    model = build_model()
    model.summary()
    model.compile(optimizer=gf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.2)
    seconds = time.perf_counter() - start
    print(f"validation accuracy: {history.history['val_accuracy'][-1]:.4f} after {args.epochs} epochs in "
          f"{seconds:.2f} s")
    model.save(args.output)
    print(f"saved the model to {args.output}")


if __name__ == "__main__":
    main()
