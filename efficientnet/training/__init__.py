"""Training: the papers' recipes on Keras' own ``fit``, optimizers, schedules and callbacks.

Nothing here is imported by ``import efficientnet``. ``efficientnet.training`` itself loads
only what a name needs: the tf.data pipeline (:mod:`.data`, TensorFlow) is imported when
training or evaluation starts.

- :func:`recipe` / :class:`Recipe` (:mod:`.recipes`): the ``"efficientnet"``, ``"efficientnetv2"``
  and ``"finetune"`` recipes as data.
- :func:`train`, :func:`evaluate`, :func:`load_run` (:mod:`.engine`).
- :class:`RMSpropTF`, :class:`WarmupExponentialDecay`, :func:`apply_l2_regularization`,
  :class:`ExponentialMovingAverage` (:mod:`.optim`): what Keras lacks for the recipe.
- :class:`AutoAugment` (:mod:`.autoaugment`): policy v0 from Keras' augmentation layers.
"""

from __future__ import annotations

import importlib

__all__ = [
    "AutoAugment",
    "EvalResult",
    "ExponentialMovingAverage",
    "RMSpropTF",
    "Recipe",
    "RECIPES",
    "TrainResult",
    "WarmupExponentialDecay",
    "apply_l2_regularization",
    "build_classifier",
    "evaluate",
    "list_recipes",
    "load_run",
    "recipe",
    "train",
]

_WHERE = {
    "AutoAugment": "autoaugment",
    "EvalResult": "engine",
    "ExponentialMovingAverage": "optim",
    "RMSpropTF": "optim",
    "Recipe": "recipes",
    "RECIPES": "recipes",
    "TrainResult": "engine",
    "WarmupExponentialDecay": "optim",
    "apply_l2_regularization": "optim",
    "build_classifier": "engine",
    "evaluate": "engine",
    "list_recipes": "recipes",
    "load_run": "engine",
    "recipe": "recipes",
    "train": "engine",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
