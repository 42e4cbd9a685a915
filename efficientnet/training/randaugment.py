"""RandAugment as the EfficientNet reference implements it, on the ops of :mod:`.autoaugment`.

The reference is ``distort_image_with_randaugment(image, num_layers, magnitude)`` of
tensorflow/tpu ``models/official/efficientnet/autoaugment.py`` (google/automl's EfficientNetV2
calls the same function). For each of ``num_layers`` layers it:

- picks one of its 16 ops uniformly (``tf.random_uniform([], maxval=16, dtype=tf.int32)``):
  AutoContrast, Equalize, Invert, Rotate, Posterize, Solarize, Color, Contrast, Brightness,
  Sharpness, ShearX, ShearY, TranslateX, TranslateY, Cutout, SolarizeAdd;
- applies it ALWAYS, at the fixed level ``magnitude`` on the 0–10 scale (``_MAX_LEVEL = 10``),
  not at a level drawn in ``(0, magnitude)``. The reference draws
  ``prob = tf.random_uniform([], 0.2, 0.8)`` per op and layer, but only passes it to ops that take
  a ``prob`` argument (none of these 16) and discards it otherwise (``func, _, args =
  _parse_policy_info(...)``, then a ``tf.cond`` on the op index alone): it has no effect;
- draws the sign of Rotate, ShearX/Y and TranslateX/Y with probability 1/2 each way
  (``_randomly_negate_tensor``).

Level → argument, as in the reference (``M`` the magnitude): Rotate ``M/10 × 30`` degrees,
ShearX/Y ``M/10 × 0.3``, TranslateX/Y ``M/10 × 100`` pixels (``translate_const=100``), Cutout a
square of side ``2 × int(M/10 × 40)`` pixels (``cutout_const=40``) at a uniformly random centre,
Color/Contrast/Brightness/Sharpness factor ``M/10 × 1.8 + 0.1``, Posterize ``int(M/10 × 4)``
bits, Solarize threshold ``int(M/10 × 256)``, SolarizeAdd ``int(M/10 × 110)``; empty pixels and
Cutout are filled with 128. Magnitudes above 10 extrapolate these formulas exactly as the
reference does, ``uint8`` wrap-arounds included (see :mod:`.autoaugment`): Noisy Student's 27 and
EfficientNetV2's 10–25 are on this scale. The ops match the reference op by op
(``tests/test_randaugment.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from .autoaugment import _SIGNED_OPS, _check_op, _PerImageAugment

__all__ = ["RANDAUGMENT_OPS", "RandAugment"]

#: The reference's ``available_ops``, in its order.
RANDAUGMENT_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Cutout",
    "SolarizeAdd",
)
_TRANSLATE_CONST = 100  # distort_image_with_randaugment's hparams
_CUTOUT_CONST = 40


class RandAugment(_PerImageAugment):
    """The reference's RandAugment: ``num_layers`` ops, each uniform among ``ops``, at level ``magnitude``.

    Called like :class:`~efficientnet.training.AutoAugment`: on one ``(H, W, 3)`` float32 RGB
    image in [0, 255] (e.g. inside ``tf.data.Dataset.map``) or a batch ``(B, H, W, 3)`` (each image
    its own draws); the output is float32, the input's shape, integer-valued in [0, 255] (the
    reference's ``uint8``). Randomness is stateless: each image's draws (per layer: the op, the
    sign, Cutout's centre) come from one ``(2,)`` seed, given as ``seed=`` to the call or taken from
    a ``tf.random.Generator`` seeded at construction, so ``RandAugment(..., seed=s)`` called in the
    same order gives the same images.

    Args:
        num_layers: N, the number of ops applied in sequence (0: the identity).
        magnitude: M, the level of every op on the reference's 0–10 scale; values up to 30
            extrapolate as the reference does (see the module docstring).
        ops: restrict the choice to these names of :data:`RANDAUGMENT_OPS` (e.g. one op, to check
            it); ``None``: all 16.
        seed: the construction seed; ``None`` draws one from the OS.
    """

    def __init__(self, num_layers: int, magnitude: float, ops: Sequence[str] | None = None, seed: int | None = None):
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be an integer >= 0; got {num_layers!r}.")
        names = RANDAUGMENT_OPS if ops is None else tuple(ops)
        if isinstance(ops, str) or not names:
            raise ValueError(f"ops must be a non-empty sequence of names of RANDAUGMENT_OPS; got {ops!r}.")
        for name in names:
            if name not in RANDAUGMENT_OPS:
                raise ValueError(f"Unknown RandAugment op {name!r}; known: {', '.join(RANDAUGMENT_OPS)}.")
            _check_op(name, magnitude)
        super().__init__(seed)
        self._name = "RandAugment"
        self.num_layers = num_layers
        self.magnitude = float(magnitude)
        self.ops: tuple[str, ...] = names
        self._steps = num_layers
        table = []  # [op][negate] -> branch of the switch
        for name in names:
            positive = self._add_variant(self._key(name, False))
            table.append([positive, self._add_variant(self._key(name, True)) if name in _SIGNED_OPS else positive])
        with tf.init_scope():
            self._variant_table = tf.constant(table, tf.int32)

    def _key(self, name: str, negate: bool) -> tuple:
        return (name, self.magnitude, negate, _TRANSLATE_CONST, _CUTOUT_CONST)

    def __repr__(self) -> str:
        ops = "" if self.ops == RANDAUGMENT_OPS else f", ops={self.ops!r}"
        return f"RandAugment(num_layers={self.num_layers}, magnitude={self.magnitude:g}{ops}, seed={self.seed})"

    def _choose(self, seed: tf.Tensor) -> tf.Tensor:
        if self._steps == 0:
            return tf.zeros([0], tf.int32)
        # Draws per layer: [op index, negative sign?], from this image's seed.
        u = tf.reshape(tf.random.stateless_uniform([2 * self._steps], seed=seed), [self._steps, 2])
        n = len(self.ops)
        index = tf.minimum(tf.cast(u[:, 0] * n, tf.int32), n - 1)
        negate = tf.cast(u[:, 1] < 0.5, tf.int32)  # the reference keeps the sign if floor(u + 0.5) == 1
        return tf.gather_nd(self._variant_table, tf.stack([index, negate], axis=1))
