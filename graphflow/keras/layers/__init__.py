"""gf.keras.layers: the built-in layers and the Layer base class for custom ones."""
from .base import Layer, Weight
from .conv import AveragePooling2D, Conv2D, GlobalAveragePooling2D, MaxPooling2D
from .core import Activation, Dense, Dropout, Embedding, Flatten, Reshape
from .input_layer import Input, InputLayer, KerasTensor
from .merge import Add, Concatenate, add, concatenate
from .normalization import BatchNormalization, LayerNormalization

__all__ = ["Layer", "Weight", "Input", "InputLayer", "KerasTensor", "Dense", "Activation", "Flatten", "Reshape",
           "Dropout", "Embedding", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
           "BatchNormalization", "LayerNormalization", "Add", "Concatenate", "add", "concatenate"]
