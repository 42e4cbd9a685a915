"""AutoAugment v0 (efficientnet.training.autoaugment) against the reference's table, timm's PIL ops
and the reference's own TensorFlow transforms."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
from helpers import import_timm
from PIL import Image

from efficientnet.training.autoaugment import AUTOAUGMENT_OPS, AUTOAUGMENT_POLICIES, AutoAugment, apply_op

# policy_v0() of tensorflow/tpu models/official/efficientnet/autoaugment.py, copied by hand.
REFERENCE_V0 = (
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
SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
# Every (op, level) of v0, plus translations small enough to leave content in the image.
PAIRS = sorted(
    {(name, level) for sub in REFERENCE_V0 for name, _, level in sub} | {("TranslateX", 2), ("TranslateY", 1)}
)
CASES = [(n, lv, neg) for n, lv in PAIRS for neg in ((False, True) if n in SIGNED else (False,))]

# (H, W) = (256, 320): TranslateY at level 9 moves 225 pixels and must leave some content.
H, W = 256, 320


class Tol(NamedTuple):
    """Bounds on |ours - timm| in 0–255 levels: max, mean, fraction of pixels off, fraction off by more than 8."""

    max_abs: float = 0.0
    mean_abs: float = 0.0
    frac_off: float = 0.0
    frac_far: float = 0.0

    def check(self, out: np.ndarray, ref: np.ndarray) -> list[str]:
        d = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        stats = {"max_abs": d.max(), "mean_abs": d.mean(), "frac_off": (d > 0).mean(), "frac_far": (d > 8).mean()}
        return [f"{k}={v:.4g} > {getattr(self, k)}" for k, v in stats.items() if v > getattr(self, k)]


EXACT = Tol()
# Measured on this image (max over the v0 levels and both signs):
TOLERANCES = {
    # float32 scale vs PIL's double: ±1 on 1.4% of pixels.
    "AutoContrast": Tol(max_abs=1, mean_abs=0.03, frac_off=0.03),
    # Keras' unrounded grey vs PIL's rounded "L": ±1 on up to 22% of pixels.
    "Color": Tol(max_abs=1, mean_abs=0.3, frac_off=0.3),
    # Nearest-neighbour rounding at a few sample boundaries: mean 0.009, 0.03% of pixels off by > 8.
    "Rotate": Tol(max_abs=255, mean_abs=0.05, frac_off=0.005, frac_far=0.002),
    # PIL samples at pixel centres (+0.5), TensorFlow (the reference) at integer coordinates: the shear
    # moves some columns/rows by one pixel. Measured mean 0.81, 3.2% of pixels off by > 8.
    "ShearX": Tol(max_abs=255, mean_abs=1.5, frac_off=0.2, frac_far=0.05),
    "ShearY": Tol(max_abs=255, mean_abs=1.5, frac_off=0.2, frac_far=0.05),
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data

    return np.asarray(Image.fromarray(skimage.data.chelsea()).resize((W, H), Image.BICUBIC))


@pytest.fixture(scope="module")
def timm_aa():
    return import_timm().data.auto_augment


def timm_op(timm_aa, photo: np.ndarray, name: str, level: float, negate: bool) -> np.ndarray:
    """timm's PIL op with timm's v0 level → argument, the fill (128, 128, 128) and nearest resampling."""
    args = ()
    if timm_aa.LEVEL_TO_ARG[name] is not None:
        (arg,) = timm_aa.LEVEL_TO_ARG[name](level, {"translate_const": 250})
        if name in SIGNED:  # timm negates at random: take the magnitude, choose the sign
            arg = -abs(arg) if negate else abs(arg)
        if name == "Posterize" and arg == 0:
            arg = 1  # the reference's shift by 8 bits: TensorFlow clamps it to 7 (test_reference_uint8_quirks)
        if name == "Solarize" and arg == 256:
            arg = 0  # the reference's threshold 256 as uint8 (test_reference_uint8_quirks)
        args = (arg,)
    kwargs = {"fillcolor": (128, 128, 128), "resample": Image.NEAREST}
    return np.asarray(timm_aa.NAME_TO_OP[name](Image.fromarray(photo), *args, **kwargs))


def ours(photo: np.ndarray, name: str, level: float, negate: bool = False) -> np.ndarray:
    out = apply_op(photo.astype("float32"), name, level, negate=negate)
    assert out.dtype == tf.float32 and out.shape == photo.shape
    return out.numpy()


def test_v0_table_is_the_reference():
    assert AUTOAUGMENT_POLICIES["v0"] == REFERENCE_V0
    assert len(REFERENCE_V0) == 25 and all(len(sub) == 2 for sub in REFERENCE_V0)
    assert {name for sub in REFERENCE_V0 for name, _, _ in sub} <= set(AUTOAUGMENT_OPS)
    with pytest.raises(TypeError):
        AUTOAUGMENT_POLICIES["v0"] = ()  # immutable


def test_reference_uint8_quirks():
    """The two places where the reference's uint8 arithmetic departs from PIL, kept by apply_op."""
    pixels = tf.constant([0, 100, 127, 128, 200, 255], tf.uint8)
    # Solarize level 10: int(10 / 10 * 256) = 256 compared with a uint8 image wraps to 0 -> inverts everything.
    assert not np.any((pixels < 256).numpy())
    # Posterize levels 0-2: 0 bits, a shift by 8 that TensorFlow clamps to 7 -> 1 bit kept.
    kept = tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, 8), 8).numpy()
    np.testing.assert_array_equal(kept, [0, 0, 0, 128, 128, 128])
    x = np.arange(256, dtype="float32").reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(ours(x, "Solarize", 10), 255 - x)
    np.testing.assert_array_equal(ours(x, "Posterize", 2), np.where(x >= 128, 128, 0))


@pytest.mark.parametrize("name, level, negate", CASES, ids=[f"{n}-{lv}{'-neg' if g else ''}" for n, lv, g in CASES])
def test_op_matches_timm(photo, timm_aa, name, level, negate):
    tol = TOLERANCES.get(name, EXACT)
    ref = timm_op(timm_aa, photo, name, level, negate)
    assert not tol.check(ours(photo, name, level, negate), ref), tol.check(ours(photo, name, level, negate), ref)
    # The comparison can fail: a wrong magnitude, a wrong sign, or no op at all is out of tolerance.
    if name in ("AutoContrast", "Equalize", "Invert"):
        assert tol.check(photo, ref), f"{name} left the image unchanged"
    else:
        wrong = level - 3 if level >= 3 else level + 3
        assert tol.check(ours(photo, name, wrong, negate), ref), f"{name} at level {wrong} passes for {level}"
    if name in SIGNED and level > 0:
        assert tol.check(ours(photo, name, level, not negate), ref), f"{name} with the other sign passes"


def _reference_transform(image: np.ndarray, matrix: list[float]) -> np.ndarray:
    """The reference's tf.contrib.image.transform: nearest neighbour, empty pixels set to 128 (its unwrap)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(image[None], tf.float32),
        transforms=tf.constant([matrix], tf.float32),
        output_shape=tf.constant(image.shape[:2]),
        fill_value=128.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0].numpy()


GEOMETRIC = [c for c in CASES if c[0] in SIGNED]


@pytest.mark.parametrize("name, level, negate", GEOMETRIC)
def test_geometric_op_matches_reference_tf_transform(photo, name, level, negate):
    """Exact against the reference's own projective transforms (the shear tolerance above is PIL's half pixel)."""
    s = -1.0 if negate else 1.0
    if name == "Rotate":  # tf.contrib.image.angles_to_projective_transforms
        a = s * (level / 10 * 30) * math.pi / 180
        c, sn = math.cos(a), math.sin(a)
        x0 = ((W - 1) - (c * (W - 1) - sn * (H - 1))) / 2
        y0 = ((H - 1) - (sn * (W - 1) + c * (H - 1))) / 2
        matrix = [c, -sn, x0, sn, c, y0, 0, 0]
    elif name in ("ShearX", "ShearY"):
        v = s * level / 10 * 0.3
        matrix = [1, v, 0, 0, 1, 0, 0, 0] if name == "ShearX" else [1, 0, 0, v, 1, 0, 0, 0]
    else:  # translate_x/y: contrib translate([-pixels, 0]) = transform [1, 0, pixels, 0, 1, 0, 0, 0]
        p = s * level / 10 * 250
        matrix = [1, 0, p, 0, 1, 0, 0, 0] if name == "TranslateX" else [1, 0, 0, 0, 1, p, 0, 0]
    d = ours(photo, name, level, negate) != _reference_transform(photo.astype("float32"), matrix)
    # Rotation matrices in float32 vs float64 can round a handful of boundary samples the other way.
    assert d.any(axis=-1).sum() <= (5 if name == "Rotate" else 0)


def test_apply_op_inside_tf_data_equals_eager(photo):
    ds = tf.data.Dataset.from_tensors(photo.astype("float32"))
    ds = ds.map(lambda x: apply_op(x, "Rotate", 3.5, negate=True), num_parallel_calls=2)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), ours(photo, "Rotate", 3.5, True))


def test_apply_op_rejects_bad_arguments(photo):
    with pytest.raises(ValueError, match="Unknown AutoAugment op 'Blur'.*Equalize"):
        apply_op(photo, "Blur", 3)
    with pytest.raises(ValueError, match="level"):
        apply_op(photo, "Rotate", 31)  # levels above 10 extrapolate (RandAugment's magnitudes), up to 30
    with pytest.raises(ValueError, match="one"):
        apply_op(photo[None], "Rotate", 1)


# --- the policy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v0() -> AutoAugment:
    """One v0 instance for the batch tests: its batch tf.function is traced once."""
    return AutoAugment("v0", seed=0)


def _small(photo: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(photo).resize((40, 32), Image.BICUBIC)).astype("float32")


@pytest.mark.parametrize("index", range(25))
def test_sub_policy_with_probability_one_is_its_two_ops_in_sequence(photo, index):
    x = _small(photo)
    sub = [(name, 1.0, level) for name, _, level in REFERENCE_V0[index]]
    aug = AutoAugment([sub], seed=index)
    (n1, _, l1), (n2, _, l2) = sub
    expected = {
        (g1, g2): ours(ours(x, n1, l1, g1), n2, l2, g2)
        for g1 in ((False, True) if n1 in SIGNED else (False,))
        for g2 in ((False, True) if n2 in SIGNED else (False,))
    }
    signs_seen = set()
    for k in range(4):
        out = aug(x, seed=[index, k]).numpy()
        match = [signs for signs, e in expected.items() if np.array_equal(out, e)]
        assert match, f"sub-policy {index} is not {n1} then {n2}"
        signs_seen.update(match)
    if n1 in SIGNED and l1 > 0 or n2 in SIGNED and l2 > 0:
        assert len(signs_seen) > 1  # the sign is drawn, not fixed


def test_sub_policies_probabilities_and_signs_are_drawn(photo):
    x = _small(photo)
    ops = [("Invert", 0), ("Posterize", 10), ("SolarizeAdd", 10), ("Solarize", 5)]
    aug = AutoAugment([[(name, 1.0, level)] for name, level in ops], seed=0)
    outs = aug(np.repeat(x[None], 400, axis=0), seed=[3, 4]).numpy()
    refs = [ours(x, name, level) for name, level in ops]
    which = np.array([[np.array_equal(o, r) for r in refs] for o in outs])
    assert which.sum(axis=1).tolist() == [1] * 400  # each image got exactly one sub-policy
    np.testing.assert_allclose(which.mean(axis=0), 0.25, atol=0.07)  # chosen uniformly

    aug = AutoAugment([[("Invert", 0.3, 0), ("TranslateX", 1.0, 0.2)]], seed=0)
    outs = aug(np.repeat(x[None], 400, axis=0), seed=[5, 6]).numpy()
    refs = {
        (inv, neg): ours(ours(x, "Invert", 0) if inv else x, "TranslateX", 0.2, neg)
        for inv in (False, True)
        for neg in (False, True)
    }
    drawn = np.array([[k for k, r in refs.items() if np.array_equal(o, r)][0] for o in outs])
    np.testing.assert_allclose(drawn.mean(axis=0), [0.3, 0.5], atol=0.08)  # P(Invert) = 0.3, P(negate) = 1/2


def test_autoaugment_is_deterministic_given_its_seed(photo):
    x = _small(photo)
    batch = np.stack([x, x[::-1], x[:, ::-1], 255 - x])

    def run(seed):
        aug = AutoAugment("v0", seed=seed)
        return np.stack([aug(image).numpy() for image in batch] + [aug(image).numpy() for image in batch])

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[:4], a[4:])  # the generator advances between calls
    np.testing.assert_array_equal(AutoAugment(seed=5)(x, seed=[1, 2]), AutoAugment(seed=9)(x, seed=[1, 2]))


def test_output_shape_dtype_range(photo, v0):
    x = _small(photo) + 0.5  # non-integers are truncated like the reference's uint8 cast
    for images in (x, np.stack([x] * 8)):
        out = v0(images)
        assert out.dtype == tf.float32 and out.shape == images.shape
        out = out.numpy()
        assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))


def test_batch_draws_independently_and_matches_split_seeds(photo, v0):
    x = _small(photo)
    out = v0(np.stack([x] * 8), seed=[7, 8]).numpy()
    assert len({o.tobytes() for o in out}) > 2
    seeds = tf.random.experimental.stateless_split(tf.constant([7, 8], tf.int64), 8)
    for i in range(8):
        np.testing.assert_array_equal(out[i], v0(x, seed=seeds[i]).numpy())


def test_autoaugment_in_tf_data_map_with_parallel_calls(photo):
    x = _small(photo)
    images = np.stack([x, x[::-1], x[:, ::-1], 255 - x] * 3)
    aug = AutoAugment(seed=0)
    # Seeds from the generator: runs in parallel, keeps shape/dtype, values integer in [0, 255].
    ds = tf.data.Dataset.from_tensor_slices(images).map(aug, num_parallel_calls=2)
    out = np.stack([o.numpy() for o in ds])
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))
    assert not np.array_equal(out, images)
    # Per-element seeds: reproducible under parallelism and equal to eager calls with the same seeds.
    seeds = tf.data.Dataset.random(seed=3).batch(2)
    ds = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(images), seeds)
    ds = ds.map(lambda image, seed: (aug(image, seed=seed), seed), num_parallel_calls=2)
    first = [(o.numpy(), s.numpy()) for o, s in ds]
    second = [o.numpy() for o, _ in ds]
    for (o, s), o2, image in zip(first, second, images):
        np.testing.assert_array_equal(o, o2)
        np.testing.assert_array_equal(o, aug(image, seed=s).numpy())


def test_autoaugment_on_batches_in_tf_data(photo):
    x = _small(photo)
    aug = AutoAugment([[("Invert", 0.5, 0)], [("Rotate", 1.0, 9)]], seed=0)
    ds = tf.data.Dataset.from_tensor_slices(np.stack([x] * 12)).batch(4).map(aug, num_parallel_calls=2)
    out = [b.numpy() for b in ds]
    assert [b.shape for b in out] == [(4, 32, 40, 3)] * 3
    assert len({image.tobytes() for batch in out for image in batch}) > 2  # a draw per image


def test_autoaugment_rejects_unknown_policies():
    with pytest.raises(ValueError, match="'v1'.*v0"):
        AutoAugment("v1")
    with pytest.raises(ValueError, match="Unknown AutoAugment op 'Blur'"):
        AutoAugment([[("Blur", 0.5, 3)]])
    with pytest.raises(ValueError, match="probability"):
        AutoAugment([[("Invert", 1.5, 3)]])
    with pytest.raises(ValueError, match="seed"):
        AutoAugment([[("Invert", 0.5, 3)]])(np.zeros((4, 4, 3), "float32"), seed=[1, 2, 3])


BACKEND_SCRIPT = """
import sys, numpy as np
from efficientnet.training.autoaugment import AutoAugment, apply_op
x = np.load(sys.argv[1])
out = [apply_op(x, "Rotate", 8, negate=True), AutoAugment(seed=3)(x, seed=[1, 2])]
out.append(AutoAugment(seed=3)(np.stack([x] * 3)))
np.savez(sys.argv[2], *[o.numpy() for o in out])
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_images_on_other_keras_backends(photo, tmp_path, backend):
    """Keras' layers run on TensorFlow inside the augmentation's graph whatever the Keras backend."""
    import os
    import subprocess
    import sys

    pytest.importorskip(backend)
    x = _small(photo)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-c", BACKEND_SCRIPT, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")]
    subprocess.run(cmd, check=True, env=env, timeout=600)
    got = np.load(tmp_path / "out.npz")
    expected = [
        ours(x, "Rotate", 8, True),
        AutoAugment(seed=3)(x, seed=[1, 2]).numpy(),
        AutoAugment(seed=3)(np.stack([x] * 3)).numpy(),
    ]
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(got[f"arr_{i}"], e)
