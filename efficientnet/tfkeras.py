"""``import efficientnet.tfkeras as efn``: efficientnet 1.1.1's entry point (tf.keras is Keras 3 since TF 2.16).

The same API as :mod:`efficientnet.keras`: Keras 3 is the only Keras.
"""

from .keras import *  # noqa: F403
from .keras import __all__  # noqa: F401
