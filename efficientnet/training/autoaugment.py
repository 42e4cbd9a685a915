"""AutoAugment policy v0 of the EfficientNet reference, from Keras' preprocessing layers.

The reference is ``distort_image_with_autoaugment(image, "v0")`` of tensorflow/tpu
``models/official/efficientnet/autoaugment.py`` (hparams ``cutout_const=100``,
``translate_const=250``; empty pixels of geometric ops are filled with 128): pick one of
the 25 sub-policies uniformly, apply each of its two ``(op, probability, level)`` with its
probability, at the fixed magnitude ``level`` on the 0–10 scale, with a random sign for
Rotate, ShearX/Y and TranslateX/Y.

Ops come from Keras' layers where one implements the reference's op: ``AutoContrast``,
``RandomPosterization``, ``RandomInvert``, ``RandomRotation``, ``RandomShear``,
``RandomTranslation`` and ``Solarization``, each held at one magnitude (a degenerate factor range
``(m, m)``, or a fixed transformation where the layer cannot express the reference's magnitude:
Solarization's threshold range, RandomShear's built-in random sign, RandomTranslation's absolute
pixel shift). Equalize, Color and SolarizeAdd are TensorFlow ops: Keras' ``Equalization`` builds a
different lookup table than the reference's (PIL's; 4 levels apart on a test photo), Keras'
``RandomColorDegeneration`` blends with an unrounded grey (the reference rounds it to ``uint8``;
4 levels apart at RandAugment's magnitude 27) and bounds its factor, and Keras has no SolarizeAdd.

Like the reference, which converts the image to ``uint8`` before augmenting, the input is
clipped to [0, 255] and truncated to integers, and every op returns integers (the reference's
``uint8`` truncation, nearest-neighbour resampling), so the output is integer-valued float32.
Three consequences of the reference's ``uint8`` arithmetic are kept on purpose:

- ``Solarize`` at level 10 has threshold 256, which ``uint8`` wraps to 0: the reference
  inverts the whole image (PIL's and timm's ``solarize(img, 256)`` leave it unchanged; see
  google-research/big_vision#110 for the same code).
- ``Posterize`` at levels 0–2 keeps ``int(level / 10 * 4) = 0`` bits; TensorFlow clamps the
  8-bit shift to 7, so the reference keeps 1 bit (PIL and timm return a black image).
- Above level 10 (RandAugment's extrapolated magnitudes), Solarize's threshold wraps modulo 256,
  and from level 22.5 on Posterize has ``int(level / 10 * 4) > 8`` bits: the shift ``8 - bits``
  is negative, wraps to 248–255 as ``uint8`` and is clamped to 7, so the reference keeps 1 bit.

Geometric ops resample with nearest neighbour, the default of the ``tf.contrib.image`` ops the
reference calls, and match its transforms exactly. The ops are all of the reference's
``NAME_TO_FUNC`` (:data:`AUTOAUGMENT_OPS`): those of the AutoAugment policies, and RandAugment's
Contrast, Brightness, Sharpness and Cutout, which are TensorFlow ops written from the reference's
definitions (Keras' ``RandomContrast``, ``RandomBrightness`` and ``RandomSharpness`` are other
ops: a per-channel mean, an additive shift, zero-padded borders). Levels above 10 extrapolate the
reference's formulas (RandAugment's magnitudes go to 30; :mod:`.randaugment`), and the constants
of TranslateX/Y and Cutout are the hparams of the caller (``translate_const=250``,
``cutout_const=100`` for AutoAugment; 100 and 40 for RandAugment).
This module imports TensorFlow (it runs inside ``tf.data``) and runs the Keras layers on it
whatever the Keras backend.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import keras
import tensorflow as tf

__all__ = ["AUTOAUGMENT_OPS", "AUTOAUGMENT_POLICIES", "AutoAugment", "apply_op"]

SubPolicy = tuple[tuple[str, float, int], ...]
Policy = tuple[SubPolicy, ...]

_MAX_LEVEL = 10.0
_LEVEL_BOUND = 30.0  # the largest level apply_op accepts: RandAugment's magnitudes extrapolate up to 30
_FILL_VALUE = 128.0  # the reference's ``replace_value = [128, 128, 128]``
_TRANSLATE_CONST = 250  # ``distort_image_with_autoaugment``'s hparams
_CUTOUT_CONST = 100
_STATELESS_SEED = 1  # Keras layers held at one magnitude draw from this seed, not from their SeedGenerator

# policy_v0() of the reference, in its order: (op, probability, level).
_POLICY_V0: Policy = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)

#: Named policies: ``"v0"`` (the EfficientNet/ImageNet policy) and the reference's ``"test"``.
AUTOAUGMENT_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {"v0": _POLICY_V0, "test": ((("TranslateX", 1.0, 4), ("Equalize", 1.0, 10)),)}
)

#: The ops :func:`apply_op` and custom policies can use.
AUTOAUGMENT_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Color",
    "Equalize",
    "Invert",
    "Posterize",
    "Rotate",
    "ShearX",
    "ShearY",
    "Solarize",
    "SolarizeAdd",
    "TranslateX",
    "TranslateY",
    "Contrast",
    "Brightness",
    "Sharpness",
    "Cutout",
)
_SIGNED_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})


def _level_to_arg(
    name: str, level: float, translate_const: int = _TRANSLATE_CONST, cutout_const: int = _CUTOUT_CONST
) -> float | int | None:
    """The reference's level → argument, before the random sign (same float expressions as its code)."""
    if name == "Rotate":
        return (level / _MAX_LEVEL) * 30.0
    if name in ("ShearX", "ShearY"):
        return (level / _MAX_LEVEL) * 0.3
    if name in ("TranslateX", "TranslateY"):
        return (level / _MAX_LEVEL) * float(translate_const)
    if name == "Posterize":
        return int((level / _MAX_LEVEL) * 4)
    if name == "Solarize":
        return int((level / _MAX_LEVEL) * 256)
    if name == "SolarizeAdd":
        return int((level / _MAX_LEVEL) * 110)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):  # _enhance_level_to_arg
        return (level / _MAX_LEVEL) * 1.8 + 0.1
    if name == "Cutout":
        return int((level / _MAX_LEVEL) * cutout_const)
    return None


# --- Keras layers held at one magnitude ---------------------------------------------------------


class _StatelessDraw:
    """Mixin: the layer's (degenerate) random draw uses a constant stateless seed, not its SeedGenerator.

    The factor range is ``(m, m)``, so the seed changes nothing but keeps the tf.data function free
    of the layer's random state.
    """

    def get_random_transformation(self, data, training=True, seed=None):
        return super().get_random_transformation(data, training=training, seed=_STATELESS_SEED)


class _FixedRotation(_StatelessDraw, keras.layers.RandomRotation):
    pass


class _FixedInvert(_StatelessDraw, keras.layers.RandomInvert):
    pass


class _FixedSolarization(keras.layers.Solarization):
    """``Solarization`` at one threshold (its threshold range ``[lo, hi * 255]`` cannot be degenerate)."""

    def __init__(self, threshold: float, **kwargs):
        super().__init__(**kwargs)
        self.fixed_threshold = float(threshold)

    def get_random_transformation(self, data, training=True, seed=None):
        return {"additions": 0.0, "thresholds": self.fixed_threshold}


class _FixedShear(keras.layers.RandomShear):
    """``RandomShear`` at one signed shear (the layer draws its sign at random)."""

    def __init__(self, shear_x: float, shear_y: float, **kwargs):
        super().__init__(**kwargs)
        self.fixed_shear = (float(shear_x), float(shear_y))

    def get_random_transformation(self, data, training=True, seed=None):
        return {"shear_factor": tf.constant([self.fixed_shear], tf.float32), "input_shape": tf.shape(data)}


class _FixedTranslation(keras.layers.RandomTranslation):
    """``RandomTranslation`` by a fixed number of pixels (its factors are fractions of the size, in [-1, 1])."""

    def __init__(self, dx: float, dy: float, **kwargs):
        super().__init__(height_factor=0.0, width_factor=0.0, **kwargs)
        self.fixed_translation = (float(dx), float(dy))

    def get_random_transformation(self, data, training=True, seed=None):
        return {"translations": tf.constant([self.fixed_translation], tf.float32), "input_shape": tf.shape(data)}


def _call(layer: keras.layers.Layer) -> Callable[[tf.Tensor], tf.Tensor]:
    return lambda image: layer(image, training=True)


def _floor_after(layer: keras.layers.Layer) -> Callable[[tf.Tensor], tf.Tensor]:
    """The layer, then the reference's float → uint8 truncation."""
    return lambda image: tf.floor(layer(image, training=True))


# --- TensorFlow ops where Keras has none (or a different one) -----------------------------------


def _equalize(image: tf.Tensor) -> tf.Tensor:
    """PIL's ``ImageOps.equalize`` per channel, as the reference implements it."""
    pixels = tf.cast(image, tf.int32)
    channels = tf.shape(pixels)[-1]
    flat = tf.reshape(pixels + 256 * tf.range(channels), [-1])
    histo = tf.reshape(tf.math.bincount(flat, minlength=256 * channels, maxlength=256 * channels), [channels, 256])
    # PIL's step: (pixels - count of the highest non-empty bin) // 255.
    last = 255 - tf.argmax(tf.reverse(tf.cast(histo > 0, tf.int32), [1]), axis=1, output_type=tf.int32)
    last_count = tf.gather(histo, last, batch_dims=1)
    step = (tf.reduce_sum(histo, axis=1) - last_count) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(histo, axis=1, exclusive=True) + safe_step // 2) // safe_step
    lut = tf.where((step > 0)[:, None], tf.clip_by_value(lut, 0, 255), tf.range(256)[None, :])
    lut = tf.reshape(lut, [-1])
    return tf.cast(tf.gather(lut, pixels + 256 * tf.range(channels)), tf.float32)


def _solarize_add(addition: int, threshold: float = 128.0) -> Callable[[tf.Tensor], tf.Tensor]:
    """Adds ``addition`` (clipped to [0, 255]) where the ORIGINAL pixel is below ``threshold``."""

    def op(image: tf.Tensor) -> tf.Tensor:
        added = tf.clip_by_value(image + float(addition), 0.0, 255.0)
        return tf.where(image < threshold, added, image)

    return op


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """The reference's ``blend(image1=degenerate, image2=image, factor)``: float32, clipped, truncated."""
    if factor == 0.0:
        return degenerate
    if factor == 1.0:
        return image
    return tf.floor(tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0))


def _contrast(factor: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """The reference's ``contrast``: a blend with a constant grey image.

    The reference's grey level is the mean of the 256-bin grayscale histogram, i.e. the number of
    pixels / 256 (not the mean pixel value), clipped to [0, 255] and truncated to ``uint8``.
    """

    def op(image: tf.Tensor) -> tf.Tensor:
        pixels = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], tf.float32)
        grey = tf.floor(tf.clip_by_value(pixels / 256.0, 0.0, 255.0))
        return _blend(tf.ones_like(image) * grey, image, factor)

    return op


def _color(factor: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """The reference's ``color``: a blend with the image's grey, ``tf.image.rgb_to_grayscale`` of the uint8 image.

    (Keras' ``RandomColorDegeneration`` blends with an unrounded grey and bounds its factor to
    [-1, 1]: up to 4 levels apart from the reference at RandAugment's magnitude 27.)
    """

    def op(image: tf.Tensor) -> tf.Tensor:
        grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.uint8))
        return _blend(tf.cast(tf.image.grayscale_to_rgb(grey), tf.float32), image, factor)

    return op


def _brightness(factor: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """The reference's ``brightness``: a blend with a black image."""
    return lambda image: _blend(tf.zeros_like(image), image, factor)


def _sharpness(factor: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """The reference's ``sharpness``: a blend with PIL's SMOOTH filter, the one-pixel border kept."""

    def op(image: tf.Tensor) -> tf.Tensor:
        channels = image.shape[-1] if image.shape[-1] is not None else 3
        kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32, shape=[3, 3, 1, 1]) / 13.0
        kernel = tf.tile(kernel, [1, 1, channels, 1])
        smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], padding="VALID")[0]
        smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0))
        inner = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
        degenerate = tf.where(inner, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
        return _blend(degenerate, image, factor)

    return op


def _cutout(pad_size: int) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The reference's ``cutout``: rows ``[cy - p, cy + p)`` × columns ``[cx - p, cx + p)`` (clipped) set to 128.

    The centre ``(cy, cx)`` is an int32 ``(2,)`` tensor; the reference draws it uniformly in
    ``[0, H) × [0, W)``.
    """

    def op(image: tf.Tensor, center: tf.Tensor) -> tf.Tensor:
        rows = tf.range(tf.shape(image)[0])
        cols = tf.range(tf.shape(image)[1])
        in_rows = (rows >= center[0] - pad_size) & (rows < center[0] + pad_size)
        in_cols = (cols >= center[1] - pad_size) & (cols < center[1] + pad_size)
        mask = (in_rows[:, None] & in_cols[None, :])[:, :, None]
        return tf.where(mask, _FILL_VALUE, image)

    return op


#: Ops that take a random argument besides the image: Cutout's centre.
_CENTERED_OPS = frozenset({"Cutout"})


@functools.cache
def _build_op(
    name: str,
    level: float,
    negate: bool,
    translate_const: int = _TRANSLATE_CONST,
    cutout_const: int = _CUTOUT_CONST,
) -> Callable[..., tf.Tensor]:
    """``image (H, W, C) float32, integer-valued 0–255 → same``, the op at one magnitude and sign.

    Cutout's op also takes its centre: ``op(image, center)``.
    """
    arg = _level_to_arg(name, level, translate_const, cutout_const)
    sign = -1.0 if negate and name in _SIGNED_OPS else 1.0
    # float32 whatever the global dtype policy; a valid scope name (the private classes' default is not).
    kw = {"dtype": "float32", "name": f"autoaugment_{name.lower()}"}
    pixels = {"value_range": (0, 255), **kw}
    geometry = {"interpolation": "nearest", "fill_mode": "constant", "fill_value": _FILL_VALUE, **kw}
    with tf.init_scope():  # the layers' variables are created eagerly, even from inside a tf.data map
        if name == "AutoContrast":
            return _floor_after(keras.layers.AutoContrast(**pixels))
        if name == "Equalize":
            return _equalize
        if name == "Invert":
            return _call(_FixedInvert(factor=(1.0, 1.0), **pixels))
        if name == "Posterize":
            # The reference shifts by 8 - bits as uint8 (a negative shift wraps to 248–255 when bits > 8),
            # which TensorFlow clamps to 7: 0 bits and more than 8 bits both keep 1 bit.
            bits = 8 - min((8 - arg) % 256, 7)
            return _call(keras.layers.RandomPosterization(factor=(bits, bits), **pixels))
        if name == "Solarize":
            # The reference compares a uint8 image with the threshold cast to uint8: 256 wraps to 0.
            return _call(_FixedSolarization(arg % 256, **pixels))
        if name == "SolarizeAdd":
            return _solarize_add(arg)
        if name == "Color":
            # Reference: blend(grey, image, f) = grey + f (image - grey); Keras: image + g (grey - image), g = 1 - f.
            return _color(arg)
        if name == "Contrast":
            return _contrast(arg)
        if name == "Brightness":
            return _brightness(arg)
        if name == "Sharpness":
            return _sharpness(arg)
        if name == "Cutout":
            return _cutout(arg)
        if name == "Rotate":
            # Counter-clockwise for positive degrees in both (tf.contrib.image.rotate and RandomRotation).
            turn = sign * arg / 360.0
            return _call(_FixedRotation(factor=(turn, turn), **geometry))
        if name in ("ShearX", "ShearY"):
            # Both map output (x, y) to input (x + s y, y) (ShearX), (x, s x + y) (ShearY), about the origin.
            s = sign * arg
            return _call(_FixedShear(s if name == "ShearX" else 0.0, s if name == "ShearY" else 0.0, **geometry))
        if name in ("TranslateX", "TranslateY"):
            # Reference: output(x) = input(x + pixels); Keras: output(x) = input(x - d), so d = -pixels.
            d = -sign * arg
            return _call(
                _FixedTranslation(d if name == "TranslateX" else 0.0, d if name == "TranslateY" else 0.0, **geometry)
            )
    raise ValueError(f"Unknown AutoAugment op {name!r}; known: {', '.join(AUTOAUGMENT_OPS)}.")


def _check_op(name: str, level: float) -> None:
    if name not in AUTOAUGMENT_OPS:
        raise ValueError(f"Unknown AutoAugment op {name!r}; known: {', '.join(AUTOAUGMENT_OPS)}.")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= _LEVEL_BOUND:
        raise ValueError(f"The level of {name} must be a number in [0, {_LEVEL_BOUND:g}]; got {level!r}.")


def _quantize(image: tf.Tensor) -> tf.Tensor:
    """The reference's ``tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)``, kept in float32."""
    return tf.floor(tf.clip_by_value(image, 0.0, 255.0))


def _needs_graph() -> bool:
    """Keras' layers use TensorFlow inside a TF graph; eagerly, only on the TensorFlow backend."""
    return tf.executing_eagerly() and keras.backend.backend() != "tensorflow"


@functools.cache
def _graph_op(*key) -> Callable[..., tf.Tensor]:
    return tf.function(_build_op(*key))


def apply_op(
    image,
    name: str,
    level: float,
    *,
    negate: bool = False,
    translate_const: int = _TRANSLATE_CONST,
    cutout_const: int = _CUTOUT_CONST,
    cutout_center: tuple[int, int] | None = None,
) -> tf.Tensor:
    """Applies one AutoAugment/RandAugment op at a fixed magnitude to one image, deterministically.

    Args:
        image: ``(H, W, 3)`` float32 RGB with values in [0, 255] (a ``tf.Tensor`` or NumPy array).
            Like the reference (which casts to ``uint8``), it is clipped to [0, 255] and truncated.
        name: one of :data:`AUTOAUGMENT_OPS` (the reference's op names).
        level: the magnitude on the reference's 0–10 scale (up to 30: RandAugment extrapolates);
            converted to the op's argument exactly as the reference does (e.g. Rotate
            ``level / 10 * 30`` degrees, TranslateY ``level / 10 * translate_const`` pixels,
            Posterize ``int(level / 10 * 4)`` bits, Solarize threshold ``int(level / 10 * 256)``,
            Color/Contrast/Brightness/Sharpness factor ``level / 10 * 1.8 + 0.1``, Cutout half-side
            ``int(level / 10 * cutout_const)`` pixels).
        negate: the sign the reference draws at random for Rotate, ShearX/Y and TranslateX/Y
            (``True``: clockwise rotation, negative shear, content moved right/down); ignored by other ops.
        translate_const, cutout_const: the reference's hparams (AutoAugment's 250 and 100 by
            default; RandAugment uses 100 and 40).
        cutout_center: Cutout's ``(row, column)`` centre (the reference draws it uniformly);
            ``None``: the image's centre ``(H // 2, W // 2)``. Ignored by other ops.

    Returns:
        A float32 ``tf.Tensor`` of the image's shape, integer-valued in [0, 255].
    """
    _check_op(name, level)
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank != 3:
        raise ValueError(f"apply_op takes one (H, W, C) image; got shape {image.shape}.")
    key = (name, float(level), bool(negate), int(translate_const), int(cutout_const))
    op = (_graph_op if _needs_graph() else _build_op)(*key)
    args = ()
    if name in _CENTERED_OPS:
        if cutout_center is None:
            cutout_center = (tf.shape(image)[0] // 2, tf.shape(image)[1] // 2)
        args = (tf.cast(tf.stack(cutout_center), tf.int32),)
    return tf.ensure_shape(op(_quantize(image), *args), image.shape)


def _resolve_policy(policy: str | Sequence) -> Policy:
    if isinstance(policy, str):
        if policy not in AUTOAUGMENT_POLICIES:
            raise ValueError(
                f"Unknown AutoAugment policy {policy!r}; known policies: {', '.join(sorted(AUTOAUGMENT_POLICIES))}."
            )
        return AUTOAUGMENT_POLICIES[policy]
    table = tuple(tuple((str(n), float(p), lv) for n, p, lv in sub) for sub in policy)
    if not table or not all(table):
        raise ValueError("A custom AutoAugment policy needs at least one sub-policy, each with at least one op.")
    for sub in table:
        for name, prob, level in sub:
            _check_op(name, level)
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"The probability of {name} must be in [0, 1]; got {prob}.")
    return table


class _PerImageAugment:
    """Seeded per-image augmentation: ``_choose`` picks one branch of ``_variants`` per step.

    Subclasses set ``_variants`` (branch 0 is the identity), ``_centered`` (which branches take
    Cutout's centre), ``_steps`` and ``_name``, and define ``_choose(seed) -> (steps,) int32``.
    """

    def __init__(self, seed: int | None):
        self.seed: int = secrets.randbits(31) if seed is None else int(seed)
        with tf.init_scope():
            self._generator = tf.random.Generator.from_seed(self.seed)
        self._variants: list[Callable[..., tf.Tensor]] = [tf.identity]
        self._centered: list[bool] = [False]
        self._graph_calls: dict[int, Callable] = {}

    def _add_variant(self, key: tuple) -> int:
        self._variants.append(_build_op(*key))
        self._centered.append(key[0] in _CENTERED_OPS)
        return len(self._variants) - 1

    def __call__(self, images, seed=None) -> tf.Tensor:
        """Augments one image ``(H, W, 3)`` or a batch ``(B, H, W, 3)``.

        Args:
            images: float32 RGB in [0, 255] (tensor or NumPy array).
            seed: optional ``(2,)`` integer stateless seed for this call; a batch splits it into
                one seed per image (``tf.random.experimental.stateless_split``).
        """
        images = tf.convert_to_tensor(images, tf.float32)
        rank = images.shape.rank
        if rank not in (3, 4):
            raise ValueError(f"{self._name} takes (H, W, C) or (B, H, W, C) images; got shape {images.shape}.")
        if seed is None:
            count = 1 if rank == 3 else tf.shape(images)[0]
            seeds = tf.transpose(self._generator.make_seeds(count))
        else:
            seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
            if not seed.shape.is_compatible_with([2]):
                raise ValueError(f"seed must be a (2,) integer tensor; got shape {seed.shape}.")
            seeds = seed[None] if rank == 3 else tf.random.experimental.stateless_split(seed, tf.shape(images)[0])
        if _needs_graph() or (tf.executing_eagerly() and rank == 4):
            # Eagerly, a batch runs as a tf.function (a Python loop over the images would be slow).
            # One function per rank: shape relaxation across ranks would lose the rank.
            if rank not in self._graph_calls:
                self._graph_calls[rank] = tf.function(self._augment_seeded, reduce_retracing=True)
            return self._graph_calls[rank](images, seeds)
        return self._augment_seeded(images, seeds)

    def _augment_seeded(self, images: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        if images.shape.rank == 3:
            return self._augment_one(images, seeds[0])
        return tf.map_fn(
            lambda args: self._augment_one(*args),
            (images, seeds),
            fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32),
        )

    def _choose(self, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _augment_one(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        chosen = self._choose(seed)
        if any(self._centered):
            # Cutout's centre per step, uniform in [0, H) x [0, W), from a seed folded off this image's.
            size = tf.cast(tf.shape(image)[:2], tf.float32)
            u = tf.random.stateless_uniform([self._steps, 2], seed=tf.random.experimental.stateless_fold_in(seed, 1))
            centers = tf.minimum(tf.cast(u * size, tf.int32), tf.shape(image)[:2] - 1)
        else:
            centers = tf.zeros([self._steps, 2], tf.int32)

        def step(j, x):
            branches = [
                functools.partial(op, x, centers[j]) if centered else functools.partial(op, x)
                for op, centered in zip(self._variants, self._centered)
            ]
            return j + 1, tf.ensure_shape(tf.switch_case(chosen[j], branches), image.shape)

        # A loop over the steps traces each op once (not once per sub-policy and step): a smaller graph.
        _, out = tf.while_loop(lambda j, _: j < self._steps, step, (tf.constant(0), _quantize(image)))
        return out


class AutoAugment(_PerImageAugment):
    """The reference's AutoAugment: one random sub-policy per image, each op with its probability.

    Call it on one ``(H, W, 3)`` float32 RGB image in [0, 255] (e.g. inside ``tf.data.Dataset.map``)
    or on a batch ``(B, H, W, 3)``, which ``tf.map_fn`` augments image by image with independent
    draws (eagerly, through a ``tf.function``). The output is float32, the input's shape,
    integer-valued in [0, 255] (see the module docstring). In the graph, each distinct
    ``(op, level, sign)`` of the policy is one branch of a ``tf.switch_case`` inside a
    ``tf.while_loop`` over the sub-policy's ops, so v0 traces 45 small branches once.

    Randomness is stateless: each image's draws (sub-policy, whether each op applies, each sign)
    are ``tf.random.stateless_uniform`` of one ``(2,)`` int64 seed. Without a ``seed`` argument
    the seeds come from a ``tf.random.Generator`` seeded with ``seed`` at construction
    (``Generator.make_seeds``: the construction seed plus the generator's counter, advanced
    atomically per call), so a given ``AutoAugment(seed=s)`` called in the same order gives the
    same images. Under ``Dataset.map(..., num_parallel_calls=n)`` the order in which parallel calls
    take their seeds is up to the scheduler; for per-element reproducibility there, pass each
    element its own seed, e.g. ``Dataset.zip(ds, Dataset.random(seed=s).batch(2))`` and
    ``map(lambda x, s: aug(x, seed=s))``.

    Args:
        policy: ``"v0"`` (the default, the EfficientNet ImageNet policy), another key of
            :data:`AUTOAUGMENT_POLICIES`, or a custom table of sub-policies of
            ``(op name, probability, level)``.
        seed: the construction seed; ``None`` draws one from the OS.
    """

    def __init__(self, policy: str | Sequence[Sequence[tuple[str, float, int]]] = "v0", seed: int | None = None):
        super().__init__(seed)
        self._name = "AutoAugment"
        self.policy: Policy = _resolve_policy(policy)
        # Each distinct (op, level, sign) of the policy is built once: branch 0 is "not applied".
        keys: dict[tuple[str, float, bool], int] = {}
        steps = max(len(sub) for sub in self.policy)
        variant = [[[0, 0] for _ in range(steps)] for _ in self.policy]  # [sub-policy][step][negate]
        probs = [[0.0] * steps for _ in self.policy]
        for i, sub in enumerate(self.policy):
            for j, (name, prob, level) in enumerate(sub):
                probs[i][j] = prob
                for negate in (False, True):
                    key = (
                        name,
                        0.0 if _level_to_arg(name, 0) is None else float(level),
                        negate and name in _SIGNED_OPS,
                    )
                    if key not in keys:
                        keys[key] = self._add_variant(key)
                    variant[i][j][negate] = keys[key]
        self._steps = steps
        with tf.init_scope():
            self._variant_table = tf.constant(variant, tf.int32)
            self._prob_table = tf.constant(probs, tf.float32)

    def __repr__(self) -> str:
        name = next((k for k, v in AUTOAUGMENT_POLICIES.items() if v == self.policy), "custom")
        return f"AutoAugment(policy={name!r}, seed={self.seed})"

    def _choose(self, seed: tf.Tensor) -> tf.Tensor:
        # Draws: [sub-policy, then per op: applies?, negative sign?], all from this image's seed.
        u = tf.random.stateless_uniform([1 + 2 * self._steps], seed=seed)
        n = len(self.policy)
        index = tf.minimum(tf.cast(u[0] * n, tf.int32), n - 1)
        chosen = []
        for j in range(self._steps):
            applies = u[1 + 2 * j] < self._prob_table[index, j]  # the reference: floor(u + prob) == 1
            negate = tf.cast(u[2 + 2 * j] < 0.5, tf.int32)  # the reference keeps the sign if floor(u + 0.5) == 1
            chosen.append(tf.where(applies, self._variant_table[index, j, negate], 0))
        return tf.stack(chosen)
