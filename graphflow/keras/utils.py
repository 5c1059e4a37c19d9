"""gf.keras.utils: the Keras utility names users reach for (reproducibility, custom-object registration)."""
from .progbar import Progbar
from .rng import set_random_seed
from .saving import custom_object_scope, register_keras_serializable

__all__ = ["Progbar", "set_random_seed", "register_keras_serializable", "custom_object_scope"]
