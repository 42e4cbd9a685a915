"""EfficientNetV2's progressive learning: image size and regularisation grow stage by stage.

Training is split into ``stages`` (4, as google/automl ``effnetv2_configs.py`` line 227) of
equal length; in stage ``i`` of ``S`` the RandAugment magnitude, Mixup alpha, CutMix alpha and
classifier dropout are ``first + (last - first) * i / (S - 1)`` (automl ``main.py`` lines 464-466:
``np.linspace(first, last, S)[i]``). The image size follows ``size_rule``: ``"automl"`` (main.py
lines 468-474) ``int(base + (last - base) * (i + 1) / S)`` — the first stage is already above
``base`` —, or ``"linear"`` like the other values (the V2 paper's Table 6 reading, first stage at
``size[0]``). Evaluation always runs at the schedule's eval size.

The tables (:data:`efficientnet.training.recipes.V2_PROGRESSIVE`, :func:`schedule_from_recipe`)
are automl's and end at the recipe's own values, so a run ends at the same settings with or
without progressive learning. The ``"efficientnetv2"`` recipe turns it on (``progressive_stages=4``,
as automl does for every V2 model on ImageNet); ``train(progressive=False)`` turns it off,
``progressive=ProgressiveSchedule(...)`` sets any schedule.

:func:`efficientnet.training.train` builds each epoch's pipeline at its stage's size and
magnitudes, and sets the model's ``top_dropout`` rate before the stage's first step (the train
function is re-traced, so the new rate takes effect on every backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras

__all__ = ["Stage", "ProgressiveSchedule", "progressive_schedule", "schedule_from_recipe", "set_dropout"]


@dataclass(frozen=True)
class Stage:
    """One stage: its epochs ``[first_epoch, end_epoch)`` and its settings."""

    index: int
    first_epoch: int
    end_epoch: int
    image_size: int
    randaugment_magnitude: float
    mixup_alpha: float
    dropout_rate: float | None
    cutmix_alpha: float = 0.0


@dataclass(frozen=True)
class ProgressiveSchedule:
    """First- and last-stage values; :meth:`stages` interpolates them linearly.

    ``dropout=None`` leaves the model's dropout alone; ``size_rule="automl"`` reads ``size`` as
    ``(base, last)`` with automl's sizes (see the module docstring), ``"linear"`` as ``(first, last)``.
    """

    size: tuple[int, int]
    randaugment: tuple[float, float]
    mixup: tuple[float, float]
    dropout: tuple[float, float] | None
    eval_size: int
    num_stages: int = 4
    cutmix: tuple[float, float] = (0.0, 0.0)
    size_rule: str = "linear"

    def __post_init__(self) -> None:
        if self.num_stages < 1:
            raise ValueError(f"num_stages must be at least 1, got {self.num_stages}.")
        if self.size_rule not in ("linear", "automl"):
            raise ValueError(f"size_rule must be 'linear' or 'automl', got {self.size_rule!r}.")
        if min(self.stage_values(i)[0] for i in range(self.num_stages)) < 32:
            raise ValueError(f"Progressive image sizes must be at least 32, got {self.size}.")
        if self.dropout is not None and not all(0 <= d < 1 for d in self.dropout):
            raise ValueError(f"Dropout rates must lie in [0, 1), got {self.dropout}.")

    @staticmethod
    def _lerp(pair: Sequence[float], i: int, n: int) -> float:
        first, last = pair
        return first if n == 1 else first + (last - first) * i / (n - 1)

    def stage_values(self, i: int) -> tuple[int, float, float, float | None, float]:
        """``(image_size, randaugment_magnitude, mixup_alpha, dropout_rate, cutmix_alpha)`` of stage ``i``."""
        n = self.num_stages
        if self.size_rule == "automl":
            base, last = self.size
            size = int(base + (last - base) * float(i + 1) / float(n))
        else:
            size = int(self._lerp(self.size, i, n))
        return (
            size,
            float(self._lerp(self.randaugment, i, n)),
            float(self._lerp(self.mixup, i, n)),
            None if self.dropout is None else float(self._lerp(self.dropout, i, n)),
            float(self._lerp(self.cutmix, i, n)),
        )

    def stages(self, epochs: int) -> list[Stage]:
        """The stages of a run of ``epochs`` epochs (stage lengths differ by at most one epoch)."""
        if epochs < self.num_stages:
            raise ValueError(
                f"{epochs} epochs cannot hold {self.num_stages} stages; train at least {self.num_stages} epochs "
                "or use fewer stages (num_stages=)."
            )
        bounds = [round(epochs * i / self.num_stages) for i in range(self.num_stages + 1)]
        return [Stage(i, bounds[i], bounds[i + 1], *self.stage_values(i)) for i in range(self.num_stages)]

    def stage_at(self, epoch: int, epochs: int) -> Stage:
        for stage in self.stages(epochs):
            if stage.first_epoch <= epoch < stage.end_epoch:
                return stage
        raise ValueError(f"Epoch {epoch} is outside a {epochs}-epoch run.")


def progressive_schedule(variant: str, num_stages: int = 4, **overrides) -> ProgressiveSchedule:
    """automl's schedule for an EfficientNetV2 ``variant`` (:data:`~efficientnet.training.recipes.V2_PROGRESSIVE`)."""
    from ..config import get_variant
    from .recipes import V2_PROGRESSIVE

    name = get_variant(variant).name
    if name not in V2_PROGRESSIVE:
        raise ValueError(
            f"google/automl gives progressive-learning settings for {', '.join(V2_PROGRESSIVE)}, not {name}. "
            "Pass progressive=ProgressiveSchedule(size=..., randaugment=..., mixup=..., dropout=..., eval_size=...)."
        )
    table = dict(V2_PROGRESSIVE[name])
    table.update(overrides)
    return ProgressiveSchedule(num_stages=num_stages, **table)


def schedule_from_recipe(recipe, image_size: int, eval_size: int, num_stages: int | None = None) -> ProgressiveSchedule:
    """automl's progressive schedule ending at ``recipe``'s values and the run's ``image_size``.

    The last stage is the recipe without progressive learning: ``image_size``, its RandAugment
    magnitude, Mixup, CutMix and dropout (``None``: the model's, left alone). The first grows from
    :data:`~efficientnet.training.recipes.V2_PROGRESSIVE_START` (size 128, or ``image_size`` when
    that is smaller: the size then stays). ``num_stages`` defaults to ``recipe.progressive_stages``.
    """
    from .recipes import progressive_table

    table = progressive_table(
        image_size,
        eval_size,
        0.0,
        recipe.randaugment_magnitude,
        recipe.mixup_alpha,
        recipe.cutmix_alpha,
    )
    table["size"] = (min(table["size"][0], int(image_size)), int(image_size))
    table["dropout"] = None if recipe.dropout_rate is None else (recipe.dropout_rate, recipe.dropout_rate)
    stages = recipe.progressive_stages if num_stages is None else num_stages
    return ProgressiveSchedule(num_stages=max(1, stages), **table)


def set_dropout(model: keras.Model, rate: float, name: str = "top_dropout") -> bool:
    """Sets the classifier dropout's rate and drops the traced train function; ``False`` if there is none."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        return False
    if layer.rate != rate:
        layer.rate = float(rate)
        model.train_function = None
        model.test_function = None
        model.predict_function = None
    return True
