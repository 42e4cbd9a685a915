"""RandAugment (efficientnet.training.randaugment) against a re-statement of the reference's ops.

The reference is tensorflow/tpu models/official/efficientnet/autoaugment.py,
``distort_image_with_randaugment``: N ops picked uniformly from 16, each applied always at the
fixed level M (translate_const=100, cutout_const=40, fill 128), with a random sign for the
geometric ops. ``reference_op`` below restates its op definitions in TensorFlow on ``uint8``
tensors (the reference's dtype, whose wrap-arounds it keeps), written from the reference's text.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet.training import RandAugment
from efficientnet.training.autoaugment import apply_op
from efficientnet.training.randaugment import RANDAUGMENT_OPS

SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
H, W = 96, 128
MAGNITUDES = (9, 27)


def _photo(h: int, w: int) -> np.ndarray:
    """skimage's astronaut, resized, its range narrowed to [30, 239] (so AutoContrast changes it) and no
    pixel equal to 128 (the fill value)."""
    import skimage.data

    x = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((w, h), Image.BICUBIC))
    x = np.floor(x * 0.82 + 30.0)
    return np.where(x == 128, 127, x).astype("uint8")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _photo(H, W)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return _photo(48, 64).astype("float32")


# --- the reference's ops, restated ---------------------------------------------------------------


def _blend(image1, image2, factor):
    if factor == 0.0:
        return tf.convert_to_tensor(image1)
    if factor == 1.0:
        return tf.convert_to_tensor(image2)
    image1 = tf.cast(image1, tf.float32)
    temp = image1 + factor * (tf.cast(image2, tf.float32) - image1)
    if 0.0 < factor < 1.0:
        return tf.cast(temp, tf.uint8)
    return tf.cast(tf.clip_by_value(temp, 0.0, 255.0), tf.uint8)


def _transform(image, matrix):
    """contrib_image.transform of wrap(image), then unwrap(…, 128): nearest neighbour, empty pixels 128."""
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=tf.constant([matrix], tf.float32),
        output_shape=tf.shape(image)[:2],
        fill_value=128.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]
    return tf.cast(out, tf.uint8)


def _equalize_channel(im):
    im = tf.cast(im, tf.int32)
    histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
    nonzero = tf.reshape(tf.gather(histo, tf.where(tf.not_equal(histo, 0))), [-1])
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
    if int(step) == 0:
        return tf.cast(im, tf.uint8)
    lut = (tf.cumsum(histo) + (step // 2)) // step
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.cast(tf.gather(lut, im), tf.uint8)


def _autocontrast_channel(im):
    lo, hi = tf.cast(tf.reduce_min(im), tf.float32), tf.cast(tf.reduce_max(im), tf.float32)
    if not hi > lo:
        return im
    scale = 255.0 / (hi - lo)
    return tf.cast(tf.clip_by_value(tf.cast(im, tf.float32) * scale + (-lo * scale), 0.0, 255.0), tf.uint8)


def reference_op(image: np.ndarray, name: str, level: float, negate: bool = False, center=None) -> np.ndarray:
    """The reference's op at ``level`` with RandAugment's hparams, on a uint8 image; returns float32."""
    img = tf.constant(image.astype(np.uint8))
    sign = -1.0 if negate else 1.0
    enhance = (level / 10) * 1.8 + 0.1
    h, w = image.shape[:2]
    if name == "AutoContrast":
        out = tf.stack([_autocontrast_channel(img[:, :, c]) for c in range(3)], 2)
    elif name == "Equalize":
        out = tf.stack([_equalize_channel(img[:, :, c]) for c in range(3)], 2)
    elif name == "Invert":
        out = 255 - img
    elif name == "Rotate":  # contrib_image.rotate: angles_to_projective_transforms
        a = sign * (level / 10) * 30.0 * math.pi / 180.0
        c, s = math.cos(a), math.sin(a)
        x0 = ((w - 1) - (c * (w - 1) - s * (h - 1))) / 2
        y0 = ((h - 1) - (s * (w - 1) + c * (h - 1))) / 2
        out = _transform(img, [c, -s, x0, s, c, y0, 0, 0])
    elif name == "Posterize":
        shift = 8 - int((level / 10) * 4)
        out = tf.bitwise.left_shift(tf.bitwise.right_shift(img, shift), shift)
    elif name == "Solarize":
        out = tf.where(img < int((level / 10) * 256), img, 255 - img)
    elif name == "SolarizeAdd":
        added = tf.cast(tf.clip_by_value(tf.cast(img, tf.int64) + int((level / 10) * 110), 0, 255), tf.uint8)
        out = tf.where(img < 128, added, img)
    elif name == "Color":
        out = _blend(tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(img)), img, enhance)
    elif name == "Contrast":
        grey = tf.cast(tf.image.rgb_to_grayscale(img), tf.int32)
        mean = tf.reduce_sum(tf.cast(tf.histogram_fixed_width(grey, [0, 255], nbins=256), tf.float32)) / 256.0
        degenerate = tf.clip_by_value(tf.ones_like(grey, tf.float32) * mean, 0.0, 255.0)
        out = _blend(tf.image.grayscale_to_rgb(tf.cast(degenerate, tf.uint8)), img, enhance)
    elif name == "Brightness":
        out = _blend(tf.zeros_like(img), img, enhance)
    elif name == "Sharpness":
        kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32, shape=[3, 3, 1, 1]) / 13.0
        smooth = tf.nn.depthwise_conv2d(
            tf.cast(img, tf.float32)[None], tf.tile(kernel, [1, 1, 3, 1]), [1, 1, 1, 1], padding="VALID"
        )
        smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)[0]
        mask = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
        result = tf.where(tf.equal(mask, 1), tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), img)
        out = _blend(result, img, enhance)
    elif name in ("ShearX", "ShearY"):
        v = sign * (level / 10) * 0.3
        out = _transform(img, [1, v, 0, 0, 1, 0, 0, 0] if name == "ShearX" else [1, 0, 0, v, 1, 0, 0, 0])
    elif name in ("TranslateX", "TranslateY"):  # translate([-pixels, 0]) = transform [1, 0, pixels, ...]
        p = sign * (level / 10) * 100.0
        out = _transform(img, [1, 0, p, 0, 1, 0, 0, 0] if name == "TranslateX" else [1, 0, 0, 0, 1, p, 0, 0])
    elif name == "Cutout":
        pad = int((level / 10) * 40)
        cy, cx = center
        lower, upper = max(0, cy - pad), max(0, h - cy - pad)
        left, right = max(0, cx - pad), max(0, w - cx - pad)
        mask = np.pad(
            np.zeros((h - lower - upper, w - left - right), np.uint8),
            [[lower, upper], [left, right]],
            constant_values=1,
        )
        out = tf.where(np.repeat(mask[:, :, None], 3, axis=2) == 0, tf.ones_like(img) * 128, img)
    else:
        raise AssertionError(name)
    return tf.cast(out, tf.float32).numpy()


def ours(image: np.ndarray, name: str, level: float, negate: bool = False, center=None) -> np.ndarray:
    out = apply_op(image.astype("float32"), name, level, negate=negate, translate_const=100, cutout_const=40,
                   cutout_center=center)  # fmt: skip
    assert out.dtype == tf.float32 and out.shape == image.shape
    return out.numpy()


# Pixels (any channel) allowed to differ from the reference, measured on this photo:
# AutoContrast: Keras' float32 scale/offset vs the reference's could round a pixel the other way.
# Rotate: float32 vs float64 rotation matrices can round a few boundary samples the other way.
# (Measured on this photo: both exact, like every other op.)
MAX_PIXELS_OFF = {"AutoContrast": 0.01 * H * W, "Rotate": 5}
MAX_ABS = {"AutoContrast": 1}

CASES = [(n, m, g) for n in RANDAUGMENT_OPS for m in MAGNITUDES for g in ((False, True) if n in SIGNED else (False,))]
CASES += [("TranslateX", 2, False), ("TranslateX", 2, True), ("TranslateY", 2, False), ("TranslateY", 2, True)]
WRONG = {9: 6, 27: 15, 2: 4}


def _off(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a - b)
    return int(d.any(axis=-1).sum()), float(d.max())


def _matches(name: str, a: np.ndarray, b: np.ndarray) -> bool:
    pixels, max_abs = _off(a, b)
    return pixels <= MAX_PIXELS_OFF.get(name, 0) and (name == "Rotate" or max_abs <= MAX_ABS.get(name, 0))


@pytest.mark.parametrize("name, level, negate", CASES, ids=[f"{n}-{m}{'-neg' if g else ''}" for n, m, g in CASES])
def test_op_matches_reference(photo, name, level, negate):
    center = (30, 100) if name == "Cutout" else None
    ref = reference_op(photo, name, level, negate, center)
    out = ours(photo, name, level, negate, center)
    assert _matches(name, out, ref), _off(out, ref)
    # The comparison can fail: no op, a wrong magnitude or a wrong sign is out of tolerance.
    assert not _matches(name, photo.astype("float32"), ref), f"{name} left the image unchanged"
    blank = name.startswith("Translate") and level > 9  # moved out of the image: all 128 either way
    if name not in ("AutoContrast", "Equalize", "Invert") and not blank:
        assert not _matches(name, ours(photo, name, WRONG[level], negate, center), ref)
    if name in SIGNED and not blank:
        assert not _matches(name, ours(photo, name, level, not negate, center), ref)


def test_extrapolated_levels_follow_the_reference_uint8_arithmetic():
    """Above level 10: Posterize keeps int(M/10*4) > 8 bits -> a negative uint8 shift, clamped to 7 (1 bit);
    Solarize's threshold int(M/10*256) wraps modulo 256; SolarizeAdd saturates."""
    x = np.arange(256, dtype="float32").reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(ours(x, "Posterize", 27), np.where(x >= 128, 128, 0))
    np.testing.assert_array_equal(ours(x, "Posterize", 27), reference_op(x, "Posterize", 27))
    np.testing.assert_array_equal(ours(x, "Posterize", 20), x)  # 8 bits
    np.testing.assert_array_equal(ours(x, "Solarize", 27), np.where(x < 691 % 256, x, 255 - x))
    np.testing.assert_array_equal(ours(x, "SolarizeAdd", 27), np.where(x < 128, 255, x))
    # Enhance factors above 2 (level 27: 4.96) are not bounded: Brightness saturates.
    np.testing.assert_array_equal(ours(x, "Brightness", 27), np.minimum(np.floor(x * np.float32(4.96)), 255))


# --- the random choices --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SIGNED)
def test_geometric_ops_take_both_signs_equally(small, name):
    level, n = 3, 200
    aug = RandAugment(1, level, ops=[name], seed=0)
    outs = aug(np.repeat(small[None], n, axis=0), seed=[1, 2]).numpy()
    refs = [reference_op(small, name, level, negate) for negate in (False, True)]
    assert not _matches(name, refs[0], refs[1])
    which = []
    for out in outs:
        hits = [k for k, ref in enumerate(refs) if _matches(name, out, ref)]
        assert len(hits) == 1, f"{name}: an output is neither the +level nor the -level reference transform"
        which.append(hits[0])
    assert abs(np.mean(which) - 0.5) < 0.1, np.mean(which)  # binomial(200, 1/2): sd 0.035


def _classify(x: np.ndarray, out: np.ndarray, refs: dict[str, list[np.ndarray]]) -> str:
    hits = [name for name, candidates in refs.items() if any(_matches(name, out, r) for r in candidates)]
    changed = (out != x).any(axis=-1)
    rows, cols = np.nonzero(changed)
    if rows.size and np.all(out[changed] == 128):
        box = changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        if box.all() and changed.sum() == box.size:
            hits.append("Cutout")
    assert len(hits) == 1, hits
    return hits[0]


def test_op_choice_is_uniform(small):
    level, n = 3, 800
    refs = {
        name: [reference_op(small, name, level, g) for g in ((False, True) if name in SIGNED else (False,))]
        for name in RANDAUGMENT_OPS
        if name != "Cutout"
    }
    outs = RandAugment(1, level, seed=0)(np.repeat(small[None], n, axis=0), seed=[3, 4]).numpy()
    chosen = [_classify(small, o, refs) for o in outs]
    counts = np.array([chosen.count(name) for name in RANDAUGMENT_OPS])
    expected = n / len(RANDAUGMENT_OPS)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.min() > 0 and chi2 < 37.7, (chi2, dict(zip(RANDAUGMENT_OPS, counts)))  # 15 dof, p = 0.001


def test_cutout_square_at_a_uniform_centre(small):
    level, n = 3, 300
    pad = int(level / 10 * 40)
    outs = RandAugment(1, level, ops=["Cutout"], seed=0)(np.repeat(small[None], n, axis=0), seed=[5, 6]).numpy()
    centres = []
    for out in outs:
        rows, cols = np.nonzero((out != small).any(axis=-1))
        cy = rows.min() + pad if rows.min() > 0 else rows.max() + 1 - pad
        cx = cols.min() + pad if cols.min() > 0 else cols.max() + 1 - pad
        np.testing.assert_array_equal(out, reference_op(small, "Cutout", level, center=(cy, cx)))
        centres.append((cy, cx))
    centres = np.array(centres)
    h, w = small.shape[:2]
    for k, size in enumerate((h, w)):
        assert centres[:, k].min() <= 2 and centres[:, k].max() >= size - 3
        assert abs(centres[:, k].mean() - (size - 1) / 2) < 0.1 * size


def test_layers_apply_ops_in_sequence_with_independent_choices(small):
    ops = ["Invert", "Posterize"]
    aug = RandAugment(2, 9, ops=ops, seed=0)
    outs = aug(np.repeat(small[None], 200, axis=0), seed=[7, 8]).numpy()
    one = {name: ours(small, name, 9) for name in ops}
    two = {(a, b): ours(one[a], b, 9) for a in ops for b in ops}
    assert len({v.tobytes() for v in two.values()}) == 4
    seen = [next(k for k, v in two.items() if np.array_equal(o, v)) for o in outs]
    for key in two:
        assert abs(seen.count(key) / 200 - 0.25) < 0.08, (key, seen.count(key))


def test_randaugment_is_reproducible_given_its_seed(small):
    batch = np.stack([small, small[::-1], small[:, ::-1], 255 - small])

    def run(seed):
        aug = RandAugment(2, 9, seed=seed)
        return np.stack([aug(image).numpy() for image in batch] + [aug(image).numpy() for image in batch])

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[:4], a[4:])  # the generator advances between calls
    np.testing.assert_array_equal(
        RandAugment(2, 9, seed=5)(small, seed=[1, 2]), RandAugment(2, 9, seed=9)(small, seed=[1, 2])
    )
    aug = RandAugment(2, 9, seed=0)
    out = aug(np.stack([small] * 6), seed=[7, 8]).numpy()
    seeds = tf.random.experimental.stateless_split(tf.constant([7, 8], tf.int64), 6)
    for i in range(6):
        np.testing.assert_array_equal(out[i], aug(small, seed=seeds[i]).numpy())


def test_randaugment_in_tf_data_map(small):
    aug = RandAugment(2, 15, seed=0)
    images = np.stack([small, small[::-1], small[:, ::-1]] * 2)
    seeds = tf.data.Dataset.random(seed=3).batch(2)
    ds = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(images), seeds)
    ds = ds.map(lambda image, seed: (aug(image, seed=seed), seed), num_parallel_calls=2)
    for (out, seed), image in zip(ds, images):
        out = out.numpy()
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))
        np.testing.assert_array_equal(out, aug(image, seed=seed).numpy())


def test_randaugment_arguments():
    assert RandAugment(2, 9, seed=0).ops == RANDAUGMENT_OPS and len(RANDAUGMENT_OPS) == 16
    x = np.full((8, 8, 3), 77.5, "float32")
    np.testing.assert_array_equal(RandAugment(0, 9, seed=0)(x), np.floor(x))
    with pytest.raises(ValueError, match="Unknown RandAugment op 'Blur'"):
        RandAugment(2, 9, ops=["Blur"])
    with pytest.raises(ValueError, match="level"):
        RandAugment(2, 31)
    with pytest.raises(ValueError, match="num_layers"):
        RandAugment(-1, 9)
    with pytest.raises(ValueError, match="ops"):
        RandAugment(2, 9, ops="Invert")


# --- the recipe ----------------------------------------------------------------------------------


def test_v2_recipe_augments_with_this_randaugment(monkeypatch, small):
    from efficientnet.training import randaugment, recipe

    made = []

    class Spy(RandAugment):
        def __init__(self, *args, **kwargs):
            made.append((args, kwargs))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(randaugment, "RandAugment", Spy)
    r = recipe("efficientnetv2")
    assert r.augmentation == "randaugment"
    augment = r.augmentation_layers(seed=4)
    assert made == [((r.randaugment_layers, r.randaugment_magnitude), {"seed": 5})]
    out = augment(small).numpy()
    assert out.shape == small.shape and np.array_equal(out, np.round(out))
    r.augmentation_layers(seed=0, magnitude=15.0)
    assert made[-1] == ((r.randaugment_layers, 15.0), {"seed": 1})
