"""Training recipes as data: the EfficientNet (V1) and EfficientNetV2 papers' settings, and fine-tuning.

``recipe(name, **overrides)`` returns an immutable :class:`Recipe`. A recipe turns its
numbers into Keras objects — ``optimizer(steps_per_epoch, global_batch_size)``,
``loss()``, ``augmentation_layers(seed)``, ``callbacks(...)`` —
using Keras' own optimizers, schedules, losses, callbacks and augmentation layers
wherever they exist; what Keras lacks (TF1-style RMSProp, warm-up with staircase
decay, the EMA of weights *and* BN statistics, the coupled L2 term, AutoAugment)
comes from :mod:`.optim` and :mod:`.autoaugment`.

Sources: tensorflow/tpu ``models/official/efficientnet`` (``main.py``, ``utils.py``,
``preprocessing.py``, ``autoaugment.py``) for ``"efficientnet"``; google/automl
``efficientnetv2`` (``hparams.py``, ``effnetv2_configs.py``, ``main.py``, ``datasets.py``,
``preprocessing.py``) for ``"efficientnetv2"``: where the V2 paper and automl's code differ
(BN momentum 0.99 in the paper's section 5.1, 0.9 in ``hparams.py``; Table 6's progressive end
values against ``effnetv2_configs.py``'s), the recipe follows the code, which trained the released
checkpoints. Each V2 value below names its file and key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import keras

__all__ = [
    "Recipe",
    "RECIPES",
    "V2_TRAINING",
    "V2_PROGRESSIVE",
    "V2_L2_EXCLUDE",
    "V2_PROGRESSIVE_START",
    "progressive_table",
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
        l2_weight_decay: the coupled L2 term ``l2 * Σ‖w‖²/2``, added to the loss.
        l2_exclude: a regular expression; trainable variables whose path it matches
            (``re.match``) get no L2 term. ``None``: tensorflow/tpu's rule, every variable
            outside BatchNormalization (kernels *and* biases). The V2 recipe uses automl's
            ``weight_decay_exclude`` (:data:`V2_L2_EXCLUDE`): kernels only.
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
        mixup_alpha, cutmix_alpha: batch mixing (0: off). With both, as automl's
            ``datasets.py`` (``mixing``): MixUp on the first half of each batch, CutMix on the second.
        random_crop: the Inception-style random-resized crop for training (else the eval crop).
        crop_area_min: the smallest fraction of the image that crop keeps (the reference's 0.08).
        train_size, eval_size: image sizes (``None``: the variant's resolution).
        crop_padding: evaluation crop ``size / (size + crop_padding)``; ``None``: the model's own
            (its :func:`~efficientnet.preprocessing.data_config`: ``size / (size + 32)`` for V1 and
            Lite, the whole image for V2, 0.903 for Xception).
        interpolation: resize method.
        batch_size, epochs: defaults for :func:`efficientnet.training.train`.
        weights: the weights a named model starts from (``"imagenet"`` or ``None``).
        freeze_epochs: epochs that train only the new classifier (backbone frozen, BN in
            inference mode) before the whole network.
        freeze_bn: keep every BatchNormalization frozen (inference mode: its statistics, gamma
            and beta stay as loaded) throughout. ``True``/``False`` apply to every model, named or
            a ``keras.Model`` passed in. ``None`` (``"finetune"``'s): frozen when the model starts
            trained — a named variant built with weights, or any ``keras.Model`` passed to
            :func:`~efficientnet.training.train` (it is taken as trained; ``weights=`` loads
            nothing into it and is not consulted) — and trained for a named variant built from
            scratch.
        zero_head: a new classifier starts at zero (uniform predictions, as BiT's fine-tuning);
            ``False``: the reference's initialiser (keras.applications' ``predictions``).
        progressive_stages: EfficientNetV2's progressive learning in this many stages (0: off);
            the stages grow from automl's small-image start to this recipe's own values (see
            :func:`efficientnet.training.progressive.schedule_from_recipe`), so a run ends at the
            same settings with or without it.
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
    l2_exclude: str | None = None
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
    crop_area_min: float = 0.08
    train_size: int | None = None
    eval_size: int | None = None
    crop_padding: int | None = None
    interpolation: str = "bicubic"
    batch_size: int = 4096
    epochs: int = 350
    weights: str | None = None
    freeze_epochs: int = 0
    freeze_bn: bool | None = False
    zero_head: bool = True
    progressive_stages: int = 0
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
            "freeze_bn": self.freeze_bn in (True, False, None),
            "crop_area_min": 0 < self.crop_area_min <= 1,
            "crop_padding": self.crop_padding is None or self.crop_padding >= 0,
            "progressive_stages": self.progressive_stages >= 0,
            "bn_momentum": 0 <= self.bn_momentum < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            raise ValueError(f"Invalid recipe {self.name!r}: {values}. See help(efficientnet.training.Recipe).")
        if self.dropout_rate is not None and not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {self.dropout_rate}.")
        if self.l2_exclude is not None:
            try:
                re.compile(self.l2_exclude)
            except re.error as e:
                raise ValueError(f"l2_exclude is not a regular expression: {self.l2_exclude!r} ({e}).") from None

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

    def apply_weight_decay(self, model: keras.layers.Layer) -> list[str]:
        """Puts the recipe's coupled L2 term on ``model``'s variables; returns their paths.

        :func:`~efficientnet.training.optim.apply_l2_regularization` selects every trainable
        non-BatchNormalization variable (tensorflow/tpu ``main.py``); with ``l2_exclude`` the
        variables whose path matches it lose the term again (automl ``main.py``: ``l2loss`` over
        ``tf.trainable_variables()`` not matching ``weight_decay_exclude``).
        """
        from .optim import apply_l2_regularization

        paths = apply_l2_regularization(model, self.l2_weight_decay)
        if self.l2_exclude is None or not paths:
            return paths
        pattern = re.compile(self.l2_exclude)
        excluded = {p for p in paths if pattern.match(p)}
        for variable in model.weights:
            if variable.path in excluded:
                variable.regularizer = None
        return [p for p in paths if p not in excluded]

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

    def batch_augmentation(
        self, seed: int, mixup_alpha: float | None = None, cutmix_alpha: float | None = None
    ) -> Callable | None:
        """MixUp and/or CutMix on ``{"images", "labels"}`` one-hot batches (Keras' layers), or ``None``.

        With both alphas set, as automl ``efficientnetv2/datasets.py`` (``mixing``: "split the
        batch half-half"): MixUp on the first ``batch // 2`` examples, CutMix on the rest, each
        mixing within its half. ``mixup_alpha``/``cutmix_alpha`` override the recipe's (progressive stages).
        """
        mix = self.mixup_alpha if mixup_alpha is None else mixup_alpha
        cut = self.cutmix_alpha if cutmix_alpha is None else cutmix_alpha
        mixup = keras.layers.MixUp(alpha=mix, seed=seed + 2) if mix > 0 else None
        cutmix = keras.layers.CutMix(factor=cut, seed=seed + 3) if cut > 0 else None
        if mixup is None or cutmix is None:
            return mixup or cutmix

        def mixup_then_cutmix(batch: dict) -> dict:
            images, labels = batch["images"], batch["labels"]
            half = keras.ops.shape(images)[0] // 2
            first = mixup({"images": images[:half], "labels": labels[:half]})
            second = cutmix({"images": images[half:], "labels": labels[half:]})
            return {
                "images": keras.ops.concatenate([first["images"], second["images"]], axis=0),
                "labels": keras.ops.concatenate([first["labels"], second["labels"]], axis=0),
            }

        return mixup_then_cutmix

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


# google/automl efficientnetv2/effnetv2_configs.py, ``efficientnetv2_params`` (lines 190-211):
# (train_size, eval_size, dropout, randaug magnitude ``ram``, mixup_alpha, cutmix_alpha, augmentation).
# ``efficientnetv2_config`` (line 229) sets ``cutmix_alpha=mix``: CutMix's alpha is Mixup's.
# automl's ``'randaug'`` is RandAugment, ``'effnetv1_autoaug'`` V1's AutoAugment policy v0.
V2_TRAINING: Mapping[str, tuple[int, int, float, int, float, float, str]] = MappingProxyType(
    {
        "efficientnetv2-b0": (192, 224, 0.2, 0, 0.0, 0.0, "autoaugment"),
        "efficientnetv2-b1": (192, 240, 0.2, 0, 0.0, 0.0, "autoaugment"),
        "efficientnetv2-b2": (208, 260, 0.3, 0, 0.0, 0.0, "autoaugment"),
        "efficientnetv2-b3": (240, 300, 0.3, 0, 0.0, 0.0, "autoaugment"),
        "efficientnetv2-s": (300, 384, 0.2, 10, 0.0, 0.0, "randaugment"),
        "efficientnetv2-m": (384, 480, 0.3, 15, 0.2, 0.2, "randaugment"),
        "efficientnetv2-l": (384, 480, 0.4, 20, 0.5, 0.5, "randaugment"),
        "efficientnetv2-xl": (384, 512, 0.4, 20, 0.5, 0.5, "randaugment"),
    }
)

# automl's first progressive stage grows from these (efficientnetv2/main.py, the ``config.train.stages``
# branch): image size from ``data.ibase`` = 128 (hparams.py line 284), RandAugment magnitude
# ``np.linspace(5, ram, stages)`` (main.py line 464), Mixup and CutMix ``np.linspace(0, alpha, stages)``
# (lines 465-466). Dropout is not scheduled there (``dp_list`` is deleted, line 463, and
# ``config.model.dropout_rate = dp_list[stage]`` is commented out, line 481): it stays the variant's.
V2_PROGRESSIVE_START: Mapping[str, float] = MappingProxyType(
    {"size": 128, "randaugment": 5.0, "mixup": 0.0, "cutmix": 0.0}
)

# automl hparams.py line 259, ``train.weight_decay_exclude``: no L2 on biases and BN gamma/beta.
V2_L2_EXCLUDE = ".*(bias|gamma|beta).*"


def progressive_table(
    train_size: int,
    eval_size: int,
    dropout: float,
    randaugment: float,
    mixup: float,
    cutmix: float,
) -> dict:
    """automl's progressive ranges ending at a recipe's own values (the keyword arguments of a ``ProgressiveSchedule``).

    The last stage is the non-progressive recipe; ``size_rule="automl"`` makes stage ``i`` of
    ``S`` train at ``int(128 + (train_size - 128) * (i + 1) / S)`` (main.py lines 468-474).
    """
    first = V2_PROGRESSIVE_START
    return {
        "size": (int(first["size"]), int(train_size)),
        "randaugment": (first["randaugment"], float(randaugment)),
        "mixup": (first["mixup"], float(mixup)),
        "cutmix": (first["cutmix"], float(cutmix)),
        "dropout": (float(dropout), float(dropout)),
        "eval_size": int(eval_size),
        "size_rule": "automl",
    }


# EfficientNetV2's progressive learning per variant, derived from V2_TRAINING (automl applies it
# to every V2 model: effnetv2_configs.py line 227, ``train=dict(..., stages=4, sched=True)``).
# The V2 paper's Table 6 differs in its end values (S/M/L RandAugment 15/20/25, Mixup 0/0.2/0.4,
# sizes 300/380/380, dropout 0.1→0.3/0.4/0.5); automl's code, which trained the checkpoints, is followed.
V2_PROGRESSIVE: Mapping[str, dict] = MappingProxyType(
    {
        name: MappingProxyType(progressive_table(train, eval_, dropout, ram, mix, cut))
        for name, (train, eval_, dropout, ram, mix, cut, _) in V2_TRAINING.items()
    }
)

_EFFICIENTNET = Recipe(
    name="efficientnet",
    crop_padding=32,  # tensorflow/tpu preprocessing.py CROP_PADDING
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
    freeze_bn=None,
    notes=(
        "Transfer learning from ImageNet weights. AdamW, not the papers' RMSProp: Adam scales every "
        "parameter's step by its own gradient history, so one learning rate (1e-4, unscaled by batch) "
        "fits every variant, batch size and data set without the long warm-up RMSProp needs at batch "
        "4096; cosine decay to 0 over the run; decoupled decay 1e-2 on kernels only. BatchNormalization "
        "stays in inference mode with its pretrained statistics (Keras' transfer-learning guide): small "
        "batches of a small data set would otherwise overwrite them (freeze_bn=None: frozen for ImageNet "
        "weights and for any keras.Model passed in, trained for a named model built from scratch; "
        "True/False force it). Random-resized crop and flip only."
    ),
)


def _v2_recipe(**overrides) -> Recipe:
    # google/automl efficientnetv2, ImageNet (``--dataset_cfg=imagenet``): hparams.py ``base_config``
    # updated by datasets.py ``ImageNet.cfg`` (lines 645-662) and effnetv2_configs.py.
    base = dict(
        name="efficientnetv2",
        optimizer_name="rmsprop_tf",  # hparams.py:249 train.optimizer='rmsprop'
        rho=0.9,  # utils.py:148 build_optimizer(decay=0.9)
        momentum=0.9,  # utils.py:150 momentum=0.9
        epsilon=1e-3,  # utils.py:149 epsilon=0.001
        base_learning_rate=0.016,  # hparams.py:251 train.lr_base (datasets.py ImageNet.cfg: the same)
        lr_batch_size=256,  # main.py:157 scaled_lr = lr_base * batch_size / 256
        warmup_epochs=5.0,  # hparams.py:254 train.lr_warmup_epoch
        schedule="exponential",  # hparams.py:250 train.lr_sched
        decay_epochs=2.4,  # hparams.py:252 train.lr_decay_epoch
        decay_rate=0.97,  # hparams.py:253 train.lr_decay_factor
        ema_decay=0.9999,  # hparams.py:256 train.ema_decay
        l2_weight_decay=1e-5,  # hparams.py:257 train.weight_decay
        l2_exclude=V2_L2_EXCLUDE,  # hparams.py:259 train.weight_decay_exclude; main.py:134-138
        label_smoothing=0.1,  # hparams.py:260 train.label_smoothing
        bn_momentum=0.9,  # hparams.py:228 model.bn_momentum (the paper's section 5.1 says 0.99)
        drop_connect_rate=0.2,  # hparams.py:234 model.survival_prob=0.8
        batch_size=4096,  # hparams.py:262 train.batch_size
        epochs=350,  # hparams.py:247 train.epochs
        augmentation="randaugment",  # hparams.py:279 data.augname='randaug' (B0-B3: V2_TRAINING's)
        randaugment_layers=2,  # hparams.py:280 data.ra_num_layers
        randaugment_magnitude=15.0,  # hparams.py:281 data.ram (each variant's: V2_TRAINING)
        interpolation="bilinear",  # preprocessing.py:41 tf.image.resize's default (B0-B3: bicubic)
        progressive_stages=4,  # effnetv2_configs.py:227 train.stages=4, sched=True
        notes=(
            "EfficientNetV2 as google/automl efficientnetv2 trains it on ImageNet: per-variant sizes, "
            "dropout, RandAugment, Mixup and CutMix in V2_TRAINING; progressive learning in 4 stages "
            "(V2_PROGRESSIVE) ending at those values."
        ),
    )
    base.update(overrides)
    return Recipe(**base)


_SCRATCH = Recipe(
    name="scratch",
    optimizer_name="adamw",
    base_learning_rate=1e-3,
    lr_batch_size=None,
    warmup_epochs=1.0,
    schedule="cosine",
    l2_weight_decay=0.0,
    decoupled_weight_decay=5e-2,
    ema_decay=None,
    label_smoothing=0.1,
    bn_momentum=0.9,
    augmentation="flip",
    batch_size=32,
    epochs=30,
    weights=None,
    freeze_bn=False,
    zero_head=False,
    notes=(
        "Training a small data set from random initialisation in a short run (the fair baseline of a "
        "fine-tuning comparison, not the papers' 350-epoch ImageNet recipe): AdamW at 1e-3 with one "
        "warm-up epoch and cosine decay, decoupled decay 5e-2 on kernels; BatchNormalization trains, "
        "with momentum 0.9 so its moving statistics follow the network within a few dozen steps "
        "(0.99 keeps most of the initial statistics for hundreds of steps); the reference's head initialiser."
    ),
)

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {"efficientnet": _EFFICIENTNET, "efficientnetv2": _v2_recipe(), "finetune": _FINETUNE, "scratch": _SCRATCH}
)


def list_recipes() -> tuple[str, ...]:
    return tuple(RECIPES)


def recipe(name: str | Recipe = "finetune", *, variant: str | None = None, **overrides) -> Recipe:
    """The named recipe, with ``overrides`` applied (an unknown field or value raises ``ValueError``).

    ``variant`` (e.g. ``"efficientnetv2-s"``) fills the V2 recipe's per-variant sizes, dropout,
    RandAugment magnitude, Mixup, CutMix and augmentation from :data:`V2_TRAINING` (and the
    resize: bicubic for B0-B3, whose automl preprocessing is V1's, ``preprocess_legacy.py`` line 85).
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
            train_size, eval_size, dropout, magnitude, mixup, cutmix, augmentation = V2_TRAINING[key]
            base = base.replace(
                train_size=train_size,
                eval_size=eval_size,
                dropout_rate=dropout,
                randaugment_magnitude=float(magnitude),
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                augmentation=augmentation,
                interpolation="bicubic" if augmentation == "autoaugment" else "bilinear",
            )
    return base.replace(**overrides) if overrides else base
