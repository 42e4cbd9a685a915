"""Training recipes as data: the EfficientNet (V1) and EfficientNetV2 papers' settings, and fine-tuning.

``recipe(name, **overrides)`` returns an immutable :class:`Recipe`. A recipe turns its
numbers into Keras objects — ``optimizer(steps_per_epoch, global_batch_size)``,
``loss()``, ``train_transform(size)``, ``eval_transform(size)``, ``callbacks(...)`` —
using Keras' own optimizers, schedules, losses, callbacks and augmentation layers
wherever they exist; what Keras lacks (TF1-style RMSProp, warm-up with staircase
decay, the EMA of weights *and* BN statistics, the coupled L2 term, AutoAugment)
comes from :mod:`.optim` and :mod:`.autoaugment`.

Sources: tensorflow/tpu ``models/official/efficientnet`` (``main.py``, ``utils.py``,
``preprocessing.py``, ``autoaugment.py``) for ``"efficientnet"``; google/automl
``efficientnetv2`` (``effnetv2_configs.py``, ``hparams.py``) and the V2 paper's
Table 6 for ``"efficientnetv2"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import keras

__all__ = [
    "Recipe",
    "RECIPES",
    "V2_TRAINING",
    "V2_PROGRESSIVE",
    "recipe",
    "list_recipes",
]


@dataclass(frozen=True)
class Recipe:
    """Every number of a training recipe. Build one with :func:`recipe`.

    Attributes:
        name: the recipe's name.
        optimizer_name: ``"rmsprop_tf"`` (TF1 RMSProp) or ``"adamw"``.
        base_learning_rate: the learning rate per ``lr_batch_size`` images; the optimizer's is
            ``base_learning_rate * global_batch_size / lr_batch_size`` (``lr_batch_size=None``:
            not scaled).
        warmup_epochs: linear warm-up from 0.
        schedule: ``"exponential"`` (× ``decay_rate`` every ``decay_epochs``, staircase),
            ``"cosine"`` (to 0 at the end of training) or ``"constant"``.
        rho, momentum, epsilon: RMSProp's.
        l2_weight_decay: the coupled L2 term ``l2 * Σ‖w‖²/2`` over non-BN weights, added to the loss.
        decoupled_weight_decay: AdamW's decay (biases and BN excluded).
        ema_decay: EMA of weights and BN statistics (``None``: off); evaluation uses it.
        label_smoothing: of the categorical cross-entropy.
        focal_gamma: use ``CategoricalFocalCrossentropy`` with this gamma (``None``: plain CE).
        bn_momentum: of every BatchNormalization.
        drop_connect_rate: stochastic depth's last-block rate (``0.2`` = survival 0.8).
        dropout_rate: before the classifier (``None``: the variant's).
        augmentation: ``"autoaugment"`` (policy v0), ``"randaugment"``, ``"flip"`` or ``"none"``.
        randaugment_layers, randaugment_magnitude: RandAugment's N and M
            (:class:`~efficientnet.training.RandAugment`, the reference's
            ``distort_image_with_randaugment``): N ops per image, each at the fixed level M on the
            reference's 0–10 level scale (``_MAX_LEVEL = 10``), which extrapolates above 10 (V2's
            Table 6 uses 5–25, Noisy Student 27); M in [0, 30], the range the reference documents.
        mixup_alpha, cutmix_alpha: batch mixing (0: off).
        random_crop: the Inception-style random-resized crop for training (else the eval crop).
        train_size, eval_size: image sizes (``None``: the variant's resolution).
        crop_padding: evaluation crop ``size / (size + crop_padding)``.
        interpolation: resize method.
        batch_size, epochs: defaults for :func:`efficientnet.training.train`.
        weights: the weights a named model starts from (``"imagenet"`` or ``None``).
        freeze_epochs: epochs that train only the new classifier (backbone frozen, BN in
            inference mode) before the whole network.
        freeze_bn: keep BatchNormalization frozen (inference mode) throughout, when starting
            from pretrained weights.
        remat: recompute each block in the backward pass (:class:`efficientnet.remat.RematModel`):
            about half the activation memory for about a third more step time.
    """

    name: str
    optimizer_name: str = "rmsprop_tf"
    base_learning_rate: float = 0.016
    lr_batch_size: int | None = 256
    warmup_epochs: float = 5.0
    schedule: str = "exponential"
    decay_epochs: float = 2.4
    decay_rate: float = 0.97
    rho: float = 0.9
    momentum: float = 0.9
    epsilon: float = 1e-3
    l2_weight_decay: float = 1e-5
    decoupled_weight_decay: float = 0.0
    ema_decay: float | None = 0.9999
    label_smoothing: float = 0.1
    focal_gamma: float | None = None
    bn_momentum: float = 0.99
    drop_connect_rate: float = 0.2
    dropout_rate: float | None = None
    augmentation: str = "autoaugment"
    randaugment_layers: int = 2
    randaugment_magnitude: float = 10.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    random_crop: bool = True
    train_size: int | None = None
    eval_size: int | None = None
    crop_padding: int = 32
    interpolation: str = "bicubic"
    batch_size: int = 4096
    epochs: int = 350
    weights: str | None = None
    freeze_epochs: int = 0
    freeze_bn: bool = False
    remat: bool = False
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        checks = {
            "optimizer_name": self.optimizer_name in ("rmsprop_tf", "adamw"),
            "schedule": self.schedule in ("exponential", "cosine", "constant"),
            "augmentation": self.augmentation in ("autoaugment", "randaugment", "flip", "none"),
            "base_learning_rate": self.base_learning_rate > 0,
            "warmup_epochs": self.warmup_epochs >= 0,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "drop_connect_rate": 0 <= self.drop_connect_rate < 1,
            "ema_decay": self.ema_decay is None or 0 < self.ema_decay < 1,
            "l2_weight_decay": self.l2_weight_decay >= 0,
            "mixup_alpha": self.mixup_alpha >= 0,
            "cutmix_alpha": self.cutmix_alpha >= 0,
            "randaugment_magnitude": 0 <= self.randaugment_magnitude <= 30,
            "freeze_epochs": self.freeze_epochs >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            raise ValueError(f"Invalid recipe {self.name!r}: {values}. See help(efficientnet.training.Recipe).")
        if self.dropout_rate is not None and not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {self.dropout_rate}.")

    # --- learning rate and optimizer -------------------------------------------------------
    def learning_rate(self, global_batch_size: int) -> float:
        """The peak learning rate for ``global_batch_size`` (0.016 × batch / 256 for the papers)."""
        if self.lr_batch_size is None:
            return self.base_learning_rate
        return self.base_learning_rate * global_batch_size / self.lr_batch_size

    def schedule_for(self, steps_per_epoch: int, global_batch_size: int, epochs: int | None = None):
        """The learning-rate schedule (a Keras ``LearningRateSchedule`` or a float)."""
        from .optim import WarmupExponentialDecay

        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}.")
        peak = self.learning_rate(global_batch_size)
        warmup_steps = int(self.warmup_epochs * steps_per_epoch)
        if self.schedule == "exponential":
            return WarmupExponentialDecay.from_epochs(
                peak,
                steps_per_epoch=steps_per_epoch,
                decay_epochs=self.decay_epochs,
                decay_rate=self.decay_rate,
                warmup_epochs=self.warmup_epochs,
            )
        if self.schedule == "cosine":
            total = max(1, (epochs or self.epochs) * steps_per_epoch - warmup_steps)
            if warmup_steps:
                return keras.optimizers.schedules.CosineDecay(0.0, total, warmup_target=peak, warmup_steps=warmup_steps)
            return keras.optimizers.schedules.CosineDecay(peak, total)
        return peak

    def optimizer(
        self, steps_per_epoch: int, global_batch_size: int, epochs: int | None = None
    ) -> keras.optimizers.Optimizer:
        """A new optimizer with this recipe's schedule for ``global_batch_size`` images a step."""
        lr = self.schedule_for(steps_per_epoch, global_batch_size, epochs)
        if self.optimizer_name == "rmsprop_tf":
            from .optim import RMSpropTF

            return RMSpropTF(learning_rate=lr, rho=self.rho, momentum=self.momentum, epsilon=self.epsilon)
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=self.decoupled_weight_decay)
        # Decay the conv and dense kernels only, as timm and the Keras guides do.
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "_bn", "normalization"])
        return opt

    # --- loss ------------------------------------------------------------------------------
    def loss(self) -> keras.losses.Loss:
        """Categorical cross-entropy with label smoothing (focal with ``focal_gamma``), on one-hot labels."""
        if self.focal_gamma is not None:
            return keras.losses.CategoricalFocalCrossentropy(
                gamma=self.focal_gamma, label_smoothing=self.label_smoothing
            )
        return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)

    # --- data ------------------------------------------------------------------------------
    def augmentation_layers(self, seed: int, magnitude: float | None = None) -> Callable | None:
        """The per-image augmentation (flip, then AutoAugment or RandAugment), seeded; ``None`` if none."""
        if self.augmentation == "none":
            return None
        flip = keras.layers.RandomFlip("horizontal", seed=seed)
        if self.augmentation == "flip":
            return flip
        if self.augmentation == "autoaugment":
            from .autoaugment import AutoAugment

            policy = AutoAugment("v0", seed=seed + 1)
        else:
            from .randaugment import RandAugment

            m = self.randaugment_magnitude if magnitude is None else magnitude
            policy = RandAugment(self.randaugment_layers, m, seed=seed + 1)

        def augment(image):
            return policy(flip(image))

        return augment

    def batch_augmentation(self, seed: int, mixup_alpha: float | None = None) -> Callable | None:
        """MixUp or CutMix on one-hot batches (Keras' layers), or ``None``."""
        alpha = self.mixup_alpha if mixup_alpha is None else mixup_alpha
        if alpha > 0:
            return keras.layers.MixUp(alpha=alpha, seed=seed + 2)
        if self.cutmix_alpha > 0:
            return keras.layers.CutMix(factor=self.cutmix_alpha, seed=seed + 2)
        return None

    def train_transform(self, size: int, seed: int = 0) -> Callable:
        """``image (H, W, 3) uint8 → (size, size, 3) float32`` for one training image.

        Random-resized crop (area 0.08–1, aspect 3/4–4/3; the eval crop if ``random_crop`` is off),
        bicubic resize, then the recipe's augmentation. Stateless in the crop (``seed`` and a
        per-call counter are not kept: pass ``element_seed`` to make it reproducible).
        """
        import tensorflow as tf

        from . import data

        augment = self.augmentation_layers(seed)

        def transform(image, element_seed=None):
            if element_seed is None:
                element_seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64, seed=seed)
            if self.random_crop:
                image = data.random_crop_and_resize(image, size, element_seed, interpolation=self.interpolation)
            else:
                image = data.center_crop_and_resize(
                    image, size, crop_padding=self.crop_padding, interpolation=self.interpolation
                )
            return augment(image) if augment is not None else image

        return transform

    def eval_transform(self, size: int) -> Callable:
        """``image (H, W, 3) → (size, size, 3) float32``: the centre crop ``size/(size+32)``, bicubic."""
        from . import data

        def transform(image):
            return data.center_crop_and_resize(
                image, size, crop_padding=self.crop_padding, interpolation=self.interpolation
            )

        return transform

    # --- callbacks ---------------------------------------------------------------------------
    def callbacks(self, out_dir: str | None = None, *, tensorboard: bool = True) -> list[keras.callbacks.Callback]:
        """The recipe's own callbacks: the EMA (if any), and with ``out_dir`` a CSV log and TensorBoard."""
        import os

        from .optim import ExponentialMovingAverage

        result: list[keras.callbacks.Callback] = []
        if self.ema_decay is not None:
            result.append(ExponentialMovingAverage(decay=self.ema_decay))
        if out_dir is not None:
            result.append(keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=True))
            if tensorboard:
                result.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"), write_graph=False))
        return result

    def replace(self, **overrides) -> Recipe:
        """A copy with some fields changed (validated)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            fields = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"Unknown recipe field(s) {unknown}. Fields: {fields}.")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# google/automl efficientnetv2 effnetv2_configs.py: (train_size, eval_size, dropout, randaug, mixup, aug).
V2_TRAINING: Mapping[str, tuple[int, int, float, int, float, str]] = MappingProxyType(
    {
        "efficientnetv2-b0": (192, 224, 0.2, 0, 0.0, "autoaugment"),
        "efficientnetv2-b1": (192, 240, 0.2, 0, 0.0, "autoaugment"),
        "efficientnetv2-b2": (208, 260, 0.3, 0, 0.0, "autoaugment"),
        "efficientnetv2-b3": (240, 300, 0.3, 0, 0.0, "autoaugment"),
        "efficientnetv2-s": (300, 384, 0.2, 10, 0.0, "randaugment"),
        "efficientnetv2-m": (384, 480, 0.3, 15, 0.2, "randaugment"),
        "efficientnetv2-l": (384, 480, 0.4, 20, 0.5, "randaugment"),
        "efficientnetv2-xl": (384, 512, 0.4, 20, 0.5, "randaugment"),
    }
)

# The V2 paper's Table 6, progressive learning from the first stage to the last:
# (size, RandAugment magnitude, Mixup alpha, dropout) first and last, and the eval size.
V2_PROGRESSIVE: Mapping[str, dict] = MappingProxyType(
    {
        "efficientnetv2-s": {"size": (128, 300), "randaugment": (5, 15), "mixup": (0.0, 0.0), "dropout": (0.1, 0.3),
                             "eval_size": 384},
        "efficientnetv2-m": {"size": (128, 380), "randaugment": (5, 20), "mixup": (0.0, 0.2), "dropout": (0.1, 0.4),
                             "eval_size": 480},
        "efficientnetv2-l": {"size": (128, 380), "randaugment": (5, 25), "mixup": (0.0, 0.4), "dropout": (0.1, 0.5),
                             "eval_size": 480},
    }
)  # fmt: skip

_EFFICIENTNET = Recipe(
    name="efficientnet",
    notes="EfficientNet (V1) paper recipe, tensorflow/tpu models/official/efficientnet.",
)

_FINETUNE = Recipe(
    name="finetune",
    optimizer_name="adamw",
    base_learning_rate=1e-4,
    lr_batch_size=None,
    warmup_epochs=0.0,
    schedule="cosine",
    l2_weight_decay=0.0,
    decoupled_weight_decay=1e-2,
    ema_decay=None,
    label_smoothing=0.1,
    augmentation="flip",
    batch_size=32,
    epochs=5,
    weights="imagenet",
    freeze_epochs=0,
    freeze_bn=True,
    notes=(
        "Transfer learning from ImageNet weights. AdamW, not the papers' RMSProp: Adam scales every "
        "parameter's step by its own gradient history, so one learning rate (1e-4, unscaled by batch) "
        "fits every variant, batch size and data set without the long warm-up RMSProp needs at batch "
        "4096; cosine decay to 0 over the run; decoupled decay 1e-2 on kernels only. BatchNormalization "
        "stays in inference mode with its ImageNet statistics (Keras' transfer-learning guide): small "
        "batches of a small data set would otherwise overwrite them. Random-resized crop and flip only."
    ),
)


def _v2_recipe(**overrides) -> Recipe:
    base = dict(
        name="efficientnetv2",
        augmentation="randaugment",
        randaugment_magnitude=10.0,
        notes="EfficientNetV2 paper recipe (google/automl efficientnetv2); per-variant sizes in V2_TRAINING.",
    )
    base.update(overrides)
    return Recipe(**base)


RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {"efficientnet": _EFFICIENTNET, "efficientnetv2": _v2_recipe(), "finetune": _FINETUNE}
)


def list_recipes() -> tuple[str, ...]:
    return tuple(RECIPES)


def recipe(name: str | Recipe = "finetune", *, variant: str | None = None, **overrides) -> Recipe:
    """The named recipe, with ``overrides`` applied (an unknown field or value raises ``ValueError``).

    ``variant`` (e.g. ``"efficientnetv2-s"``) fills the V2 recipe's per-variant sizes, dropout,
    RandAugment magnitude, Mixup and augmentation from :data:`V2_TRAINING`.
    """
    if isinstance(name, Recipe):
        base = name
    else:
        if name not in RECIPES:
            raise ValueError(f"Unknown recipe {name!r}. Known recipes: {', '.join(RECIPES)}.")
        base = RECIPES[name]
    if variant is not None and base.name == "efficientnetv2":
        from ..config import get_variant

        key = get_variant(variant).name
        if key in V2_TRAINING:
            train_size, eval_size, dropout, magnitude, mixup, augmentation = V2_TRAINING[key]
            base = base.replace(
                train_size=train_size,
                eval_size=eval_size,
                dropout_rate=dropout,
                randaugment_magnitude=float(magnitude),
                mixup_alpha=mixup,
                augmentation=augmentation,
            )
    return base.replace(**overrides) if overrides else base
