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
- :class:`RandAugment` (:mod:`.randaugment`): the reference's RandAugment on the same ops.
- :func:`noisy_student`, :func:`select_and_balance`, :func:`finetune_at_resolution`
  (:mod:`.noisy_student`) and V2's progressive learning (:mod:`.progressive`).
"""

from __future__ import annotations

import importlib

__all__ = [
    "AutoAugment",
    "EvalResult",
    "ExponentialMovingAverage",
    "RMSpropTF",
    "RandAugment",
    "Recipe",
    "RECIPES",
    "TrainResult",
    "ProgressiveSchedule",
    "WarmupExponentialDecay",
    "apply_l2_regularization",
    "finetune_at_resolution",
    "noisy_student",
    "progressive_schedule",
    "select_and_balance",
    "build_classifier",
    "evaluate",
    "list_recipes",
    "resolve_strategy",
    "load_run",
    "recipe",
    "train",
]

_WHERE = {
    "AutoAugment": "autoaugment",
    "EvalResult": "engine",
    "ExponentialMovingAverage": "optim",
    "RMSpropTF": "optim",
    "RandAugment": "randaugment",
    "Recipe": "recipes",
    "RECIPES": "recipes",
    "TrainResult": "engine",
    "ProgressiveSchedule": "progressive",
    "WarmupExponentialDecay": "optim",
    "apply_l2_regularization": "optim",
    "finetune_at_resolution": "noisy_student",
    "noisy_student": "noisy_student",
    "progressive_schedule": "progressive",
    "select_and_balance": "noisy_student",
    "build_classifier": "engine",
    "evaluate": "engine",
    "list_recipes": "recipes",
    "resolve_strategy": "distribute",
    "load_run": "engine",
    "recipe": "recipes",
    "train": "engine",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        # Importing a submodule binds it on this package under its own name: ``noisy_student``
        # (the function) must win over ``noisy_student`` (the module).
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
