"""Image folders and ``tf.data`` pipelines for training and evaluation.

An image folder has one sub-folder per class (``DATA/cat/*.jpg``, ``DATA/dog/*.png``);
JPEG, PNG, BMP and GIF files of any size, grey or RGB, are read. :func:`scan_image_folder`
checks the folder once and says exactly what is wrong with it; the pipelines decode in
parallel, crop (the papers' Inception-style random crop for training, the centre crop
``size / (size + 32)`` for evaluation), resize bicubically and feed raw 0–255 RGB
``float32`` batches with one-hot labels, as the library's models (normalisation inside
the model) expect, on every Keras backend.

Randomness is reproducible per epoch: the shuffle, the crops and the Keras augmentation
layers of epoch ``e`` are seeded from ``(seed, e)`` alone, so a run resumed at epoch
``e`` sees exactly the batches an uninterrupted run sees.

This module imports TensorFlow (tf.data); the rest of the library does not need it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..preprocessing import CROP_PADDING, IMAGE_EXTENSIONS, DataConfig

__all__ = [
    "IMAGE_EXTENSIONS",
    "CROP_PADDING",
    "DatasetError",
    "ImageFolder",
    "TensorSource",
    "tensor_source",
    "SoftLabels",
    "MixedSource",
    "steps_per_epoch",
    "list_images",
    "scan_image_folder",
    "split_image_folder",
    "decode_image",
    "random_crop_and_resize",
    "center_crop_and_resize",
    "train_dataset",
    "eval_dataset",
    "epoch_seed",
]

AUTOTUNE = tf.data.AUTOTUNE


class DatasetError(ValueError):
    """An image folder or dataset that cannot be trained or evaluated on as it is."""


@dataclass(frozen=True)
class ImageFolder:
    """The files of an image folder and their labels (indices into ``class_names``)."""

    root: str
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    skipped: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        """Images per class."""
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=self.num_classes)
        return {name: int(n) for name, n in zip(self.class_names, counts)}

    def subset(self, indices: Sequence[int]) -> ImageFolder:
        return ImageFolder(
            self.root,
            self.class_names,
            tuple(self.files[i] for i in indices),
            tuple(self.labels[i] for i in indices),
            self.skipped,
        )


def _check_image(path: str) -> str | None:
    """``None`` if ``path`` decodes as an image with the decoder training uses, else the reason it does not.

    The check is :func:`decode_image`'s own ``tf.io.decode_image`` call: a file another library
    reads (a TIFF named ``.png``, a 1-bit BMP) but TensorFlow does not would otherwise pass the
    check and stop training mid-epoch with an error that names no file.
    """
    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as exc:
        message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
        message = re.sub(r"\s*\[Op:.*$", "", re.sub(r"^\{\{[^}]*\}\}\s*", "", message))
        return f"TensorFlow, which decodes the training images, cannot decode it: {message}"
    if image.shape[0] < 1 or image.shape[1] < 1:
        return "the image is empty"
    return None


def _nested_images(folders) -> list[str]:
    """The image files anywhere below ``folders`` (sub-folders of class folders, which are not read)."""
    found: list[str] = []
    for folder in folders:
        for parent, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(parent, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _check_images(files: Sequence[str]) -> list[str | None]:
    """:func:`_check_image` of every file, decoded in a few threads."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(_check_image, files))


def scan_image_folder(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    on_bad_file: str = "skip",
    check_images: bool = True,
) -> ImageFolder:
    """Lists an image folder and checks that it can be trained on.

    Args:
        path: a folder with one sub-folder per class.
        class_names: the expected classes in label order (e.g. a training run's, to
            evaluate or validate on another folder); by default the sub-folders, sorted.
        on_bad_file: ``"skip"`` (warn naming each file that is not a readable image and
            leave it out) or ``"error"`` (raise on the first one).
        check_images: decode every image once to find corrupt files before training
            (a few ms an image); ``False`` trusts the file names.

    Raises:
        DatasetError: the folder is missing or not a folder, has no class sub-folders,
            only one class, a class with no images, a bad file with ``on_bad_file="error"``,
            or sub-folders that do not match ``class_names``.
    """
    if on_bad_file not in ("skip", "error"):
        raise ValueError(f"on_bad_file must be 'skip' or 'error', got {on_bad_file!r}.")
    root = os.fspath(path)
    if not os.path.exists(root):
        raise DatasetError(f"Image folder {root!r} does not exist. Pass a folder with one sub-folder per class.")
    if not os.path.isdir(root):
        raise DatasetError(
            f"{root!r} is a file, not an image folder. Pass a folder with one sub-folder per class "
            "(DATA/cat/*.jpg, DATA/dog/*.jpg)."
        )
    found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not found:
        loose = [e.name for e in os.scandir(root) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
        hint = f" It holds {len(loose)} loose images: move them into one sub-folder per class." if loose else ""
        raise DatasetError(f"Image folder {root!r} has no class sub-folders.{hint}")
    if class_names is None:
        class_names = found
    else:
        class_names = list(class_names)
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise DatasetError(
                f"Image folder {root!r} has classes {unknown} that the model was not trained on "
                f"(its classes: {class_names}). Remove those folders or train a model with them."
            )
    if len(class_names) < 2:
        raise DatasetError(
            f"Image folder {root!r} has only one class ({class_names[0]!r}); classification needs at least two. "
            "Add a sub-folder per class."
        )
    files: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    nested: list[str] = []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        entries = sorted(os.scandir(folder), key=lambda e: e.name) if os.path.isdir(folder) else []
        class_files = [e.path for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
        ignored += [e.path for e in entries if e.is_file() and not e.name.lower().endswith(IMAGE_EXTENSIONS)]
        nested += _nested_images(e.path for e in entries if e.is_dir() and not e.name.startswith("."))
        if not class_files and (folder in (os.path.join(root, f) for f in found)):
            raise DatasetError(
                f"Class folder {folder!r} has no images ({', '.join(IMAGE_EXTENSIONS)}). "
                "Add images or remove the folder."
            )
        files += class_files
        labels += [label] * len(class_files)
    if nested:
        warnings.warn(
            f"{len(nested)} image(s) in sub-folders of the class folders of {root!r} are not used, e.g. "
            f"{nested[0]!r}: only the images directly inside each class folder are read. Move them up into "
            "their class folder to train on them.",
            stacklevel=2,
        )
    skipped: list[str] = []
    if ignored:
        message = f"{len(ignored)} file(s) without an image extension ({', '.join(IMAGE_EXTENSIONS)}): " + ", ".join(
            repr(f) for f in ignored
        )
        if on_bad_file == "error":
            raise DatasetError(
                f"{message}. Remove them, or pass on_bad_file='skip' (drop --strict-files) to leave them out."
            )
        warnings.warn(f"Skipping {message}.", stacklevel=2)
        skipped += ignored
    if check_images and files:
        problems = _check_images(files)
        bad = [(f, p) for f, p in zip(files, problems) if p is not None]
        if bad:
            if on_bad_file == "error":
                f, p = bad[0]
                raise DatasetError(
                    f"{f!r} is not a readable image ({p}). Remove or replace it, or pass on_bad_file='skip' "
                    "(drop --strict-files) to leave such files out with a warning."
                )
            for f, p in bad:
                warnings.warn(f"Skipping {f!r}: not a readable image ({p}).", stacklevel=2)
            keep = [i for i, p in enumerate(problems) if p is None]
            skipped += [f for f, _ in bad]
            files = [files[i] for i in keep]
            labels = [labels[i] for i in keep]
            empty = [n for i, n in enumerate(class_names) if i not in set(labels) and n in found]
            if empty:
                raise DatasetError(
                    f"Class folder(s) {empty} of {root!r} have no readable images left. Add images or remove them."
                )
    return ImageFolder(root, tuple(class_names), tuple(files), tuple(labels), tuple(skipped))


def split_image_folder(folder: ImageFolder, fraction: float, seed: int = 0) -> tuple[ImageFolder, ImageFolder]:
    """Splits off ``fraction`` of each class (at least one image) as a held-out set."""
    if not 0 < fraction < 1:
        raise ValueError(f"The validation split must lie in (0, 1), got {fraction}.")
    rng = np.random.default_rng(seed)
    labels = np.asarray(folder.labels)
    train, held = [], []
    for label in range(folder.num_classes):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n = max(1, int(round(fraction * len(idx))))
        if n >= len(idx):
            raise DatasetError(
                f"Class {folder.class_names[label]!r} has {len(idx)} image(s): too few to split off {fraction:.0%} "
                "for validation and keep some for training. Add images or pass a separate validation folder."
            )
        held += idx[:n].tolist()
        train += idx[n:].tolist()
    return folder.subset(sorted(train)), folder.subset(sorted(held))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle, crops and augmentation layers."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] & 0x7FFFFFFF)


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP/GIF bytes → ``uint8`` RGB ``(H, W, 3)`` (grey is repeated, GIF's first frame)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _resize(image: tf.Tensor, size: int, interpolation: str) -> tf.Tensor:
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method=interpolation, antialias=False)
    return tf.clip_by_value(image, 0.0, 255.0)


def center_crop_and_resize(
    image: tf.Tensor,
    size: int,
    *,
    crop_padding: float = CROP_PADDING,
    crop_fraction: float | None = None,
    interpolation: str = "bicubic",
) -> tf.Tensor:
    """The evaluation crop: the centre ``size / (size + crop_padding)`` of the shorter side, resized.

    ``crop_fraction`` (V2's 1.0, Xception's 0.903) replaces ``size / (size + crop_padding)``.
    This is the library's one implementation: :func:`efficientnet.preprocessing.center_crop_and_resize`
    (NumPy), ``predict`` and every evaluation pipeline call it.
    """
    fraction = float(crop_fraction) if crop_fraction is not None else float(size) / float(size + crop_padding)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    crop = tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, crop, crop)
    return _resize(image, size, interpolation)


def random_crop_and_resize(
    image: tf.Tensor,
    size: int,
    seed: tf.Tensor,
    *,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bicubic",
) -> tf.Tensor:
    """The Inception-style random crop of the EfficientNet reference (``_decode_and_random_crop``).

    A box covering ``area_range`` of the image with an aspect ratio in ``aspect_ratio_range``
    (``min_object_covered=0.1``, 10 attempts); when no box is found the centre crop is used.
    ``seed`` is a stateless ``(2,)`` int seed.
    """
    shape = tf.shape(image)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    whole = tf.reduce_all(tf.equal(crop_size[:2], shape[:2]))

    def crop():
        cropped = tf.slice(image, begin, crop_size)
        return _resize(cropped, size, interpolation)

    return tf.cond(whole, lambda: center_crop_and_resize(image, size, interpolation=interpolation), crop)


def _files_dataset(folder: ImageFolder) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(folder.files, tf.string), tf.constant(folder.labels, tf.int32))
    )


@dataclass(frozen=True)
class TensorSource:
    """A ``tf.data.Dataset`` of single ``(image, integer label)`` pairs used as training or evaluation data.

    Images are ``uint8`` or 0–255 floats of any size, ``(H, W, 3)`` or ``(H, W, 1)``.
    """

    dataset: tf.data.Dataset
    class_names: tuple[str, ...]
    size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.size


def tensor_source(dataset: tf.data.Dataset, class_names: Sequence[str] | int) -> TensorSource:
    """Wraps an unbatched ``(image, label)`` dataset, checking its structure and counting it."""
    if isinstance(class_names, int):
        class_names = [str(i) for i in range(class_names)]
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise DatasetError(
            f"A training dataset must yield (image, label) pairs, one image at a time; it yields {spec}. "
            "Unbatch it (dataset.unbatch()) and map it to (image, label)."
        )
    image_spec, label_spec = spec
    if image_spec.shape.rank != 3:
        raise DatasetError(
            f"Dataset images must be single (height, width, channels) images, got shape {image_spec.shape}. "
            "Call dataset.unbatch() first."
        )
    if label_spec.shape.rank != 0 or not label_spec.dtype.is_integer:
        raise DatasetError(f"Dataset labels must be integer class indices (scalars), got {label_spec}.")
    size = int(dataset.cardinality())
    if size < 0:
        size = int(dataset.reduce(0, lambda n, _: n + 1))
    if size == 0:
        raise DatasetError("The dataset is empty.")
    return TensorSource(dataset, tuple(class_names), size)


@dataclass(frozen=True)
class SoftLabels:
    """Image files with a label *row* each (soft or one-hot pseudo-labels), e.g. from a teacher."""

    files: tuple[str, ...]
    targets: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        targets = np.asarray(self.targets, dtype="float32")
        if targets.ndim != 2 or targets.shape != (len(self.files), len(self.class_names)):
            raise DatasetError(
                f"Soft labels must be a (files, classes) = ({len(self.files)}, {len(self.class_names)}) array, "
                f"got shape {targets.shape}."
            )
        object.__setattr__(self, "targets", targets)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class MixedSource:
    """Labeled images and pseudo-labeled ones, ``ratio`` unlabeled images per labeled one in every batch.

    An epoch is one pass over the pseudo-labeled images; the labeled ones repeat as needed
    (each pass reshuffled). Noisy Student trains its students on this.
    """

    labeled: ImageFolder | TensorSource
    unlabeled: SoftLabels
    ratio: int = 1

    def __post_init__(self) -> None:
        if self.ratio < 1:
            raise ValueError(f"The unlabeled:labeled batch ratio must be at least 1, got {self.ratio}.")
        if tuple(self.labeled.class_names) != tuple(self.unlabeled.class_names):
            raise DatasetError("Labeled and pseudo-labeled images must share the class names.")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.labeled.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_batch(self, batch_size: int) -> tuple[int, int]:
        """``(labeled, unlabeled)`` images of a global batch."""
        labeled = max(1, batch_size // (1 + self.ratio))
        return labeled, batch_size - labeled

    def __len__(self) -> int:
        return len(self.labeled) + len(self.unlabeled)


def steps_per_epoch(source, batch_size: int) -> int:
    """Training steps of one epoch (the last partial batch is dropped)."""
    if isinstance(source, MixedSource):
        labeled, unlabeled = source.split_batch(batch_size)
        if unlabeled < 1:
            raise DatasetError(f"A batch of {batch_size} has no room for unlabeled images; raise the batch size.")
        return len(source.unlabeled) // unlabeled
    return len(source) // batch_size


def _as_rgb(image: tf.Tensor) -> tf.Tensor:
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def _decoded(source: ImageFolder | TensorSource) -> tf.data.Dataset:
    """``(image, label)`` pairs of any size, decoded in parallel."""
    if isinstance(source, TensorSource):
        return source.dataset.map(lambda image, label: (_as_rgb(image), tf.cast(label, tf.int32)))

    def load(path, label):
        return decode_image(tf.io.read_file(path)), label

    return _files_dataset(source).map(load, num_parallel_calls=AUTOTUNE, deterministic=True)


def _one_hot(num_classes: int):
    def fn(images, labels):
        return images, tf.one_hot(labels, num_classes)

    return fn


def train_dataset(
    folder: ImageFolder | TensorSource,
    *,
    image_size: int,
    batch_size: int,
    seed: int,
    epoch: int,
    augment: Callable[[tf.Tensor], tf.Tensor] | None = None,
    batch_augment: Callable[[dict], dict] | None = None,
    random_crop: bool = True,
    crop_area_min: float = 0.08,
    interpolation: str = "bicubic",
    cache: str | None = None,
) -> tf.data.Dataset:
    """One epoch of training batches ``(images float32 0–255, one-hot labels)``.

    Order: shuffle the files (seeded by ``(seed, epoch)``) → decode and crop in parallel
    (stateless seeds per image) → ``augment`` per image, sequentially (Keras' stateful
    augmentation layers, seeded per epoch, stay reproducible) → batch (the last partial
    batch is dropped, as the reference does) → ``batch_augment`` (MixUp/CutMix) → prefetch.
    ``cache``: a file prefix to cache the decoded images in (re-used across epochs and runs).
    """
    if isinstance(folder, MixedSource):
        return _mixed_dataset(
            folder,
            image_size=image_size,
            batch_size=batch_size,
            seed=seed,
            epoch=epoch,
            augment=augment,
            batch_augment=batch_augment,
            random_crop=random_crop,
            crop_area_min=crop_area_min,
            interpolation=interpolation,
        )
    if len(folder) < batch_size:
        raise DatasetError(
            f"The training set has {len(folder)} images, fewer than one batch of {batch_size}. "
            "Lower the batch size or add images."
        )
    es = epoch_seed(seed, epoch)
    soft = isinstance(folder, SoftLabels)
    if isinstance(folder, (ImageFolder, SoftLabels)) and cache is None:
        # Shuffle the file names, not decoded images: no buffer of images in memory.
        order = tf.data.Dataset.from_tensor_slices(np.random.default_rng(es).permutation(len(folder)))
        files = tf.constant(folder.files, tf.string)
        labels = tf.constant(folder.targets if soft else folder.labels)

        def load(index):
            return index, decode_image(tf.io.read_file(tf.gather(files, index))), tf.gather(labels, index)

        ds = order.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        ds = _decoded(folder).enumerate()
        if cache is not None:
            ds = ds.cache(cache)
        ds = ds.shuffle(min(len(folder), 4096), seed=es, reshuffle_each_iteration=False)
        ds = ds.map(lambda index, item: (index, item[0], item[1]))

    def crop(index, image, label):
        element_seed = tf.stack([tf.constant(es, tf.int64), index])
        if random_crop:
            image = random_crop_and_resize(
                image, image_size, element_seed, area_range=(crop_area_min, 1.0), interpolation=interpolation
            )
        else:
            image = center_crop_and_resize(image, image_size, interpolation=interpolation)
        return image, label

    ds = ds.map(crop, num_parallel_calls=AUTOTUNE, deterministic=True)
    shape = [image_size, image_size, 3]
    if augment is not None:
        ds = ds.map(lambda image, label: (tf.ensure_shape(augment(tf.ensure_shape(image, shape)), shape), label))
    ds = ds.batch(batch_size, drop_remainder=True)
    if not soft:
        ds = ds.map(_one_hot(folder.num_classes))
    if batch_augment is not None:

        def mix(images, labels):
            out = batch_augment({"images": images, "labels": labels})
            return out["images"], out["labels"]

        ds = ds.map(mix)
    return ds.prefetch(AUTOTUNE)


def eval_dataset(
    folder: ImageFolder | TensorSource,
    *,
    image_size: int,
    batch_size: int,
    crop_padding: int = CROP_PADDING,
    interpolation: str = "bicubic",
    one_hot: bool = True,
    cache: bool | str = False,
    data_config: DataConfig | None = None,
) -> tf.data.Dataset:
    """Evaluation batches: centre crop ``size / (size + crop_padding)``, bicubic, in file order, every image.

    ``data_config`` (a :class:`~efficientnet.preprocessing.DataConfig`) gives the crop and
    interpolation instead of ``crop_padding`` and ``interpolation``.
    """
    fraction = None
    if data_config is not None:
        fraction, interpolation = data_config.crop_fraction_at(image_size), data_config.interpolation

    def crop(image, label):
        image = center_crop_and_resize(
            image, image_size, crop_padding=crop_padding, crop_fraction=fraction, interpolation=interpolation
        )
        return image, label

    ds = _decoded(folder).map(crop, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache("" if cache is True else cache)
    ds = ds.batch(batch_size)
    if one_hot:
        ds = ds.map(_one_hot(folder.num_classes))
    return ds.prefetch(AUTOTUNE)


def _mixed_dataset(source: MixedSource, *, batch_size: int, seed: int, epoch: int, **kwargs) -> tf.data.Dataset:
    """Zips a labeled and a pseudo-labeled pipeline and concatenates each pair of batches."""
    labeled_batch, unlabeled_batch = source.split_batch(batch_size)
    steps = steps_per_epoch(source, batch_size)
    if steps < 1:
        raise DatasetError(
            f"{len(source.unlabeled)} pseudo-labeled images fill no batch of {unlabeled_batch}; lower the batch size."
        )
    unlabeled = train_dataset(source.unlabeled, batch_size=unlabeled_batch, seed=seed, epoch=epoch, **kwargs)
    passes = -(-steps * labeled_batch // len(source.labeled))
    labeled = None
    for k in range(passes):
        part = train_dataset(
            source.labeled, batch_size=labeled_batch, seed=seed, epoch=epoch * 1_000_003 + k + 1, **kwargs
        )
        labeled = part if labeled is None else labeled.concatenate(part)
    pairs = tf.data.Dataset.zip(labeled, unlabeled).take(steps)

    def concat(a, b):
        return tf.concat([a[0], b[0]], 0), tf.concat([a[1], b[1]], 0)

    return pairs.map(concat).prefetch(AUTOTUNE)


def list_images(path: str | os.PathLike, *, on_bad_file: str = "skip", check_images: bool = True) -> tuple[str, ...]:
    """Every image under ``path`` (recursively, sorted): an unlabeled folder, class folders or not."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise DatasetError(f"Unlabeled image folder {root!r} does not exist or is not a folder.")
    files = sorted(
        os.path.join(d, f)
        for d, _, names in os.walk(root)
        for f in names
        if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
    )
    if not files:
        raise DatasetError(f"{root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    if check_images:
        problems = _check_images(files)
        bad = [(f, p) for f, p in zip(files, problems) if p is not None]
        if bad and on_bad_file == "error":
            raise DatasetError(f"{bad[0][0]!r} is not a readable image ({bad[0][1]}). Remove it or skip bad files.")
        for f, p in bad:
            warnings.warn(f"Skipping {f!r}: not a readable image ({p}).", stacklevel=2)
        files = [f for f, p in zip(files, problems) if p is None]
    return tuple(files)
