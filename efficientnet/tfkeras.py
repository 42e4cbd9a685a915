"""``import efficientnet.tfkeras as efn``: efficientnet 1.1.1's entry point (tf.keras is Keras 3 since TF 2.16)."""

from .model import (
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
    EfficientNetL2,
    preprocess_input,
)
from .preprocessing import center_crop_and_resize

__all__ = [
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "EfficientNetL2",
    "center_crop_and_resize",
    "preprocess_input",
]
