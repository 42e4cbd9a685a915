"""EfficientNetV2's progressive learning: image size and regularisation grow stage by stage.

Training is split into ``stages`` (4 in the paper) of equal length; in stage ``i`` of ``S`` the
image size, RandAugment magnitude, Mixup alpha and classifier dropout are
``first + (last - first) * i / (S - 1)`` (the size truncated to an integer), and evaluation
always runs at the variant's eval size. The tables are the V2
paper's Table 6 (:data:`efficientnet.training.recipes.V2_PROGRESSIVE`).

:func:`efficientnet.training.train` applies a schedule with ``progressive=True`` (V2-S/M/L) or
``progressive=ProgressiveSchedule(...)``: each epoch's pipeline is built at its stage's size and
magnitudes, and the model's ``top_dropout`` rate is set before the stage's first step (the train
function is re-traced, so the new rate takes effect on every backend). It is off by default in
every recipe: on small data sets it costs re-tracing at every stage and gains little (see the
README for the figures measured here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras

__all__ = ["Stage", "ProgressiveSchedule", "progressive_schedule", "set_dropout"]


@dataclass(frozen=True)
class Stage:
    """One stage: its epochs ``[first_epoch, end_epoch)`` and its settings."""

    index: int
    first_epoch: int
    end_epoch: int
    image_size: int
    randaugment_magnitude: float
    mixup_alpha: float
    dropout_rate: float


@dataclass(frozen=True)
class ProgressiveSchedule:
    """First- and last-stage values; :meth:`stages` interpolates them linearly."""

    size: tuple[int, int]
    randaugment: tuple[float, float]
    mixup: tuple[float, float]
    dropout: tuple[float, float]
    eval_size: int
    num_stages: int = 4

    def __post_init__(self) -> None:
        if self.num_stages < 1:
            raise ValueError(f"num_stages must be at least 1, got {self.num_stages}.")
        if min(self.size) < 32:
            raise ValueError(f"Progressive image sizes must be at least 32, got {self.size}.")
        if not all(0 <= d < 1 for d in self.dropout):
            raise ValueError(f"Dropout rates must lie in [0, 1), got {self.dropout}.")

    @staticmethod
    def _lerp(pair: Sequence[float], i: int, n: int) -> float:
        first, last = pair
        return first if n == 1 else first + (last - first) * i / (n - 1)

    def stage_values(self, i: int) -> tuple[int, float, float, float]:
        """``(image_size, randaugment_magnitude, mixup_alpha, dropout_rate)`` of stage ``i``."""
        n = self.num_stages
        return (
            int(self._lerp(self.size, i, n)),
            float(self._lerp(self.randaugment, i, n)),
            float(self._lerp(self.mixup, i, n)),
            float(self._lerp(self.dropout, i, n)),
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
    """The V2 paper's schedule for ``variant`` (``"efficientnetv2-s"``, ``"m"``, ``"l"``)."""
    from ..config import get_variant
    from .recipes import V2_PROGRESSIVE

    name = get_variant(variant).name
    if name not in V2_PROGRESSIVE:
        raise ValueError(
            f"The V2 paper gives progressive-learning settings for {', '.join(V2_PROGRESSIVE)}, not {name}. "
            "Pass progressive=ProgressiveSchedule(size=..., randaugment=..., mixup=..., dropout=..., eval_size=...)."
        )
    table = dict(V2_PROGRESSIVE[name])
    table.update(overrides)
    return ProgressiveSchedule(num_stages=num_stages, **table)


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
