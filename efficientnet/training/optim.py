"""The optimisation pieces of the EfficientNet recipe that Keras lacks, for any Keras 3 backend.

The reference is the TPU training script of the paper, ``tensorflow/tpu``
``models/official/efficientnet``:

* ``main.py`` builds the loss as ``cross_entropy + weight_decay * sum(tf.nn.l2_loss(v))`` over the
  trainable variables that are not batch normalization (:func:`apply_l2_regularization`), keeps a
  ``tf.train.ExponentialMovingAverage(decay=0.9999, num_updates=global_step)`` of the trainable
  variables and of the batch-norm moving statistics, applied after each optimizer step and loaded
  for evaluation (:class:`ExponentialMovingAverage`);
* ``utils.build_learning_rate`` is a staircase exponential decay (0.97 every 2.4 epochs) after a
  linear warm-up of 5 epochs (:class:`WarmupExponentialDecay`), for ``0.016 * batch_size / 256``;
* ``utils.build_optimizer`` uses TF1's ``tf.train.RMSPropOptimizer(lr, decay=0.9, momentum=0.9,
  epsilon=1e-3)`` (:class:`RMSpropTF`).

Usage::

    from efficientnet.training import optim

    schedule = optim.WarmupExponentialDecay.from_epochs(0.016 * batch_size / 256, steps_per_epoch)
    model.compile(optimizer=optim.RMSpropTF(schedule), loss=...)
    optim.apply_l2_regularization(model, 1e-5)
    ema = optim.ExponentialMovingAverage(0.9999)
    model.fit(..., validation_data=..., callbacks=[ema])  # validation runs on the averages
    ema.assign_to_model()  # the averaged weights are the ones to export

Everything is written with ``keras.ops`` (the EMA keeps its averages on the device, as Keras
variables, with one compiled update per step on each backend), so it runs on the TensorFlow,
JAX and PyTorch backends.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping

import keras
import numpy as np
from keras import ops

__all__ = [
    "ExponentialMovingAverage",
    "RMSpropTF",
    "WarmupExponentialDecay",
    "apply_l2_regularization",
]

_PACKAGE = "efficientnet"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RMSpropTF(keras.optimizers.Optimizer):
    """RMSprop with the semantics of TF1's ``tf.train.RMSPropOptimizer`` (the paper's optimizer).

    Follows TensorFlow's ``ApplyRMSProp`` / ``ApplyCenteredRMSProp`` kernels
    (``tensorflow/core/kernels/training_ops.cc``) and ``tf.compat.v1.train.RMSPropOptimizer``,
    as timm's ``RMSpropTF`` (``lr_in_momentum=True``) does for PyTorch::

        ms  <- ms + (1 - rho) * (g**2 - ms)              # ms starts at 1.0, not 0
        mg  <- mg + (1 - rho) * (g - mg)                 # centered only, starts at 0
        mom <- momentum * mom + lr * g / sqrt(ms [- mg**2] + epsilon)
        w   <- w - mom

    Keras' own :class:`keras.optimizers.RMSprop` differs by starting the mean square at 0, which
    makes the first steps ``1/sqrt(1 - rho)`` (about 3.2x) larger than the reference's.

    Args:
        learning_rate: a float, a :class:`keras.optimizers.schedules.LearningRateSchedule`
            (e.g. :class:`WarmupExponentialDecay`) or a callable.
        rho: decay of the mean-square accumulator (TF1's ``decay``).
        momentum: momentum; the learning rate is applied inside the momentum buffer as in TF1.
        epsilon: added to the mean square inside the square root.
        centered: subtract the squared mean gradient from the mean square (TF1's ``centered``).
        **kwargs: the standard :class:`keras.optimizers.Optimizer` arguments (``weight_decay``,
            ``clipnorm``, ``use_ema``, ``name``, ...). Keras' ``weight_decay`` is decoupled
            (``w -= lr * weight_decay * w``); the reference's L2 term is
            :func:`apply_l2_regularization` instead.
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.01,
        rho: float = 0.9,
        momentum: float = 0.9,
        epsilon: float = 1e-3,
        centered: bool = False,
        name: str = "rmsprop_tf",
        **kwargs,
    ):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}.")
        if momentum < 0.0:
            raise ValueError(f"momentum must be >= 0, got {momentum}.")
        if epsilon < 0.0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}.")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)

    def build(self, var_list: list) -> None:
        """Creates the slots: ``ms`` (ones), ``momentum`` and, if centered, ``mg`` (zeros)."""
        if self.built:
            return
        super().build(var_list)
        self._mean_squares = self.add_optimizer_variables(var_list, "ms", initializer="ones")
        self._moments = self.add_optimizer_variables(var_list, "momentum") if self.momentum > 0 else []
        self._mean_gradients = self.add_optimizer_variables(var_list, "mg") if self.centered else []

    def update_step(self, gradient, variable, learning_rate) -> None:
        """One TF1 RMSProp update of ``variable`` (the kernel's order of operations)."""
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        grad = ops.cast(gradient, variable.dtype)
        one_minus_rho = 1.0 - self.rho

        mean_square = self._mean_squares[index]
        self.assign_add(mean_square, ops.multiply(ops.subtract(ops.square(grad), mean_square), one_minus_rho))
        denominator = mean_square
        if self.centered:
            mean_gradient = self._mean_gradients[index]
            self.assign_add(mean_gradient, ops.multiply(ops.subtract(grad, mean_gradient), one_minus_rho))
            denominator = ops.subtract(denominator, ops.square(mean_gradient))
        increment = ops.divide(ops.multiply(grad, lr), ops.sqrt(ops.add(denominator, self.epsilon)))
        if self.momentum > 0:
            moment = self._moments[index]
            self.assign(moment, ops.add(ops.multiply(moment, self.momentum), increment))
            self.assign_sub(variable, moment)
        else:
            self.assign_sub(variable, increment)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon, "centered": self.centered})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0, then staircase exponential decay: ``utils.build_learning_rate``.

    Follows ``build_learning_rate(lr_decay_type='exponential')`` in tensorflow/tpu
    ``models/official/efficientnet/utils.py``::

        lr(step) = initial * step / warmup_steps                          if step < warmup_steps
                 = initial * decay_rate ** floor(step / decay_steps)      otherwise

    The decay counts from step 0, not from the end of the warm-up, as the reference's
    ``tf.train.exponential_decay(initial_lr, global_step, ...)`` does, so the rate drops from
    about ``initial`` to ``initial * decay_rate ** floor(warmup_steps / decay_steps)`` when the
    warm-up ends. The decay part is Keras' :class:`keras.optimizers.schedules.ExponentialDecay`.

    Args:
        initial_learning_rate: the peak rate (the reference scales ``0.016 * batch_size / 256``).
        decay_steps: steps per decay (may be fractional, as ``steps_per_epoch * 2.4`` is).
        decay_rate: factor per ``decay_steps``.
        warmup_steps: length of the linear warm-up; 0 disables it.
        staircase: ``floor`` the exponent (the reference does).
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        decay_rate: float = 0.97,
        warmup_steps: int = 0,
        staircase: bool = True,
        name: str = "WarmupExponentialDecay",
    ):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps}.")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        super().__init__()
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.decay_rate = float(decay_rate)
        self.warmup_steps = warmup_steps
        self.staircase = bool(staircase)
        self.name = name
        self._decay = keras.optimizers.schedules.ExponentialDecay(
            self.initial_learning_rate, decay_steps, self.decay_rate, staircase=self.staircase
        )

    @classmethod
    def from_epochs(
        cls,
        initial_learning_rate: float,
        steps_per_epoch: float,
        decay_epochs: float = 2.4,
        decay_rate: float = 0.97,
        warmup_epochs: float = 5,
    ) -> WarmupExponentialDecay:
        """The reference's arguments: ``decay_steps = steps_per_epoch * decay_epochs`` (a float,
        not rounded) and ``warmup_steps = int(warmup_epochs * steps_per_epoch)`` (truncated)."""
        return cls(
            initial_learning_rate,
            decay_steps=steps_per_epoch * decay_epochs,
            decay_rate=decay_rate,
            warmup_steps=int(warmup_epochs * steps_per_epoch) if warmup_epochs else 0,
            staircase=True,
        )

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decayed = ops.cast(self._decay(step), "float32")
        if not self.warmup_steps:
            return decayed
        warmup_steps = float(self.warmup_steps)
        warmup = ops.multiply(self.initial_learning_rate, ops.divide(step, warmup_steps))
        return ops.where(ops.less(step, warmup_steps), warmup, decayed)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "warmup_steps": self.warmup_steps,
            "staircase": self.staircase,
            "name": self.name,
        }


def _layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested models and sub-layers included, ``model`` itself first."""
    return list(model._flatten_layers(include_self=True, recursive=True))


def _is_batch_norm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def _is_float(variable) -> bool:
    return "float" in str(variable.dtype)


def apply_l2_regularization(model: keras.layers.Layer, weight_decay: float) -> list[str]:
    """Adds the reference's weight decay to ``model``'s loss: ``weight_decay/2 * sum(w**2)``.

    tensorflow/tpu ``efficientnet/main.py`` adds ``weight_decay * sum(tf.nn.l2_loss(v))`` (with
    ``tf.nn.l2_loss(v) = sum(v**2) / 2``; ``weight_decay=1e-5``) over the trainable variables whose
    name lacks ``batch_normalization``: every conv, depthwise-conv, squeeze-excitation and dense
    kernel and bias, but no batch-norm gamma/beta. The term is part of the loss, so it goes
    through the optimizer (coupled L2, unlike Keras' decoupled ``weight_decay``).

    This sets ``keras.regularizers.L2(weight_decay / 2)`` as the ``regularizer`` of each such
    variable, which Keras sums into ``model.losses`` (``Layer._get_regularization_losses``) and so
    into ``compute_loss`` in ``fit``/``evaluate`` on every backend. The selection is by
    variable (``variable.trainable``, any layer type except :class:`keras.layers.BatchNormalization`),
    whether or not its layer is frozen now: Keras counts a regularizer only while its variable is
    among ``model.trainable_weights``, so the decay follows freezing and unfreezing. Any other
    regularizer on those variables is replaced. Regularizers are not part of the layers' configs:
    call this again on a model rebuilt from a config or a ``.keras`` file.

    Args:
        model: any Keras layer or model (nested models included).
        weight_decay: the reference's coefficient; 0 removes the regularizers set by a previous call.

    Returns:
        The paths of the regularised variables (empty when ``weight_decay`` is 0).
    """
    weight_decay = float(weight_decay)
    if not weight_decay >= 0.0 or math.isinf(weight_decay):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}.")
    batch_norm = {id(v) for layer in _layers(model) if _is_batch_norm(layer) for v in layer.weights}
    selected = [v for v in model.weights if v.trainable and _is_float(v) and id(v) not in batch_norm]
    for variable in model.weights:
        if getattr(variable.regularizer, "_efficientnet_weight_decay", None) is not None:
            variable.regularizer = None
    if weight_decay == 0.0:
        return []
    regularizer = keras.regularizers.L2(weight_decay / 2.0)
    regularizer._efficientnet_weight_decay = weight_decay
    for variable in selected:
        variable.regularizer = regularizer
    return [v.path for v in selected]


def _average_fn(decay: float, ramp: bool) -> Callable:
    """The EMA step as a pure function of tensors: ``(shadows, values, step, last) -> (shadows, last)``.

    ``step`` is the optimizer's iteration count and ``last`` the count at the previous update:
    the averages move only when ``step > last`` (one update per optimizer step, however often
    this is called), with ``shadow - (1 - d) * (shadow - value)``, TF's ``assign_moving_average``
    form, ``d = min(decay, (1 + step) / (10 + step))``.
    """

    def average(shadows, values, step, last):
        step = ops.cast(step, last.dtype)
        t = ops.cast(step, "float32")
        d = ops.minimum(decay, ops.divide(ops.add(t, 1.0), ops.add(t, 10.0))) if ramp else ops.full((), decay)
        rate = ops.where(ops.greater(step, last), ops.subtract(1.0, d), 0.0)
        new = [
            ops.subtract(s, ops.multiply(ops.subtract(s, v), ops.cast(rate, s.dtype))) for s, v in zip(shadows, values)
        ]
        return new, ops.maximum(step, last)  # an op, not the input: never an alias of the optimizer's counter

    return average


def _updater(shadows: list, variables: list, last, decay: float, ramp: bool) -> Callable:
    """``update(step)``: one compiled call moving every shadow towards its variable, on the device.

    ``step`` is a scalar integer tensor (the optimizer's ``iterations``, read on the device).
    TensorFlow: a ``tf.function`` reading and assigning every variable (one graph call, not an
    eager op per variable); JAX: a ``jax.jit`` of the pure update with the old averages donated
    (no second copy of them); PyTorch: ``torch._foreach_*`` kernels over all tensors at once;
    other backends: ``keras.ops`` per variable. Nothing comes back to the host.
    """
    average = _average_fn(decay, ramp)
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        def update_torch(step):
            with torch.no_grad():
                previous = last.value
                step = torch.as_tensor(step, device=previous.device).to(previous.dtype)
                t = step.to(torch.float32)
                d = torch.clamp(torch.div(t + 1.0, t + 10.0), max=decay) if ramp else torch.full_like(t, decay)
                rate = torch.where(step > previous, 1.0 - d, torch.zeros_like(d))
                targets = [s.value for s in shadows]
                deltas = torch._foreach_sub(targets, [v.value for v in variables])
                torch._foreach_mul_(deltas, rate)
                torch._foreach_sub_(targets, deltas)
                previous.copy_(torch.maximum(step, previous))

        return update_torch

    def apply(new, new_last):
        for shadow, value in zip(shadows, new):
            shadow.assign(value)
        last.assign(new_last)

    if backend == "tensorflow":
        import tensorflow as tf

        def update_tf(step):
            apply(*average([s.value for s in shadows], [v.value for v in variables], step, last.value))

        return tf.function(update_tf, autograph=False)
    if backend == "jax":
        import jax

        compiled = jax.jit(average, donate_argnums=(0,))
        return lambda step: apply(*compiled([s.value for s in shadows], [v.value for v in variables], step, last.value))
    return lambda step: apply(*average([s.value for s in shadows], [v.value for v in variables], step, last.value))


def _scope(model) -> contextlib.AbstractContextManager:
    """The model's ``tf.distribute`` strategy scope on TensorFlow (mirrored averages), else nothing."""
    strategy = getattr(model, "distribute_strategy", None) if keras.backend.backend() == "tensorflow" else None
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


class ExponentialMovingAverage(keras.callbacks.Callback):
    """The reference's moving average of the weights, evaluated in place of the training weights.

    tensorflow/tpu ``efficientnet/main.py`` runs ``tf.train.ExponentialMovingAverage(decay=0.9999,
    num_updates=global_step).apply(utils.get_ema_vars())`` after each optimizer step and evaluates
    the averages. As there, after each training batch::

        t = optimizer.iterations              # after the step: 1 after the first batch
        d = min(decay, (1 + t) / (10 + t))    # num_updates ramp (num_updates_ramp=True)
        shadow <- shadow - (1 - d) * (shadow - value)

    over the model's trainable weights and the ``moving_mean``/``moving_variance`` of every
    :class:`keras.layers.BatchNormalization` (``utils.get_ema_vars``). A shadow starts at its
    variable's value when training begins (TF initialises it to the variable's value too) and
    carries over to later ``fit`` calls with the same callback. With ``steps_per_execution > 1``
    Keras calls the batch hooks once per execution, so the average moves once per execution.
    (Keras' own ``Optimizer(use_ema=True)`` averages only the trainable variables, with a fixed
    momentum and no ramp, and overwrites them at the end of ``fit``.)

    The averages stay on the device: non-trainable :class:`keras.Variable` objects (mirrored
    under the model's ``tf.distribute`` strategy), created when training begins and moved by
    one compiled call per step that reads the step count on the device too (a ``tf.function``
    on TensorFlow, ``jax.jit`` on JAX, ``torch._foreach_*`` on PyTorch; see :func:`_updater`).
    Nothing is copied to the host while training. The update for a step runs when the next
    batch begins (or at the end of the epoch, before validation, at the end of ``fit``, and
    whenever :meth:`state`, :attr:`averages` or a swap needs the averages): Keras converts the
    logs of every batch to Python numbers, a device synchronisation, for any callback that
    overrides ``on_train_batch_end``, so this callback does not. The update is keyed to
    ``optimizer.iterations``, so it happens once per optimizer step.

    ``evaluate`` (and so the validation inside ``fit``) and ``predict`` run with the averages
    when ``evaluate_with_ema`` is set: they are swapped into the model at
    ``on_test_begin``/``on_predict_begin`` and the training weights (kept as device copies)
    put back at the end. Outside ``fit``, use :meth:`average_weights` or pass the callback to
    ``evaluate``. :meth:`state`/:meth:`load_state` save and restore the averages (as NumPy
    arrays by variable path) for an exact resume; :meth:`assign_to_model` copies them into the
    model for the weights to export.

    Args:
        decay: the reference's ``moving_average_decay``.
        num_updates_ramp: cap the decay by ``(1 + t) / (10 + t)`` as ``num_updates`` does.
        evaluate_with_ema: evaluate and predict with the averages.
    """

    def __init__(self, decay: float = 0.9999, num_updates_ramp: bool = True, evaluate_with_ema: bool = True):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}.")
        self.decay = float(decay)
        self.num_updates_ramp = bool(num_updates_ramp)
        self.evaluate_with_ema = bool(evaluate_with_ema)
        self._variables: list = []
        self._keys: list[str] = []
        self._shadows: dict[str, keras.Variable] = {}
        self._pending: dict[str, np.ndarray] | None = None
        self._backup: list | None = None
        self._swapped_by_hook = False
        self._last_step: keras.Variable | None = None
        self._update: Callable[[], None] | None = None
        self._update_key: tuple | None = None
        self._spare: dict[str, keras.Variable] = {}  # shadows whose values load_state() replaced
        self._stepping = False  # a training step may have run since the last update

    def get_config(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates_ramp": self.num_updates_ramp,
            "evaluate_with_ema": self.evaluate_with_ema,
        }

    # --- the averaged variables -------------------------------------------------------------

    @staticmethod
    def averaged_variables(model: keras.layers.Layer) -> list:
        """The variables the reference averages: trainable weights, then batch-norm moving stats."""
        variables, seen = [], set()
        batch_norm_stats = [
            v for layer in _layers(model) if _is_batch_norm(layer) for v in (layer.moving_mean, layer.moving_variance)
        ]
        for variable in list(model.trainable_weights) + batch_norm_stats:
            if id(variable) not in seen and _is_float(variable):
                seen.add(id(variable))
                variables.append(variable)
        return variables

    def _track(self, model: keras.layers.Layer) -> None:
        """(Re)selects the variables; keeps known averages, starts new ones at the current values.

        Shadows are created once per variable (reused by later calls while the shape and dtype
        hold), under the model's distribution scope; a pending :meth:`load_state` is assigned
        into them, the only host-to-device copy.
        """
        variables = self.averaged_variables(model)
        keys, counts = [], {}
        for variable in variables:
            key = variable.path
            counts[key] = counts.get(key, 0) + 1
            keys.append(key if counts[key] == 1 else f"{key}#{counts[key] - 1}")
        pending = self._pending or {}
        unknown = sorted(set(pending) - set(keys))
        if unknown:
            raise ValueError(f"EMA state has variables the model lacks: {unknown[:5]}")
        for key, variable in zip(keys, variables):
            known = pending[key] if key in pending else self._shadows.get(key)
            if known is not None and tuple(known.shape) != tuple(variable.shape):
                raise ValueError(
                    f"EMA state for {key!r} has shape {tuple(known.shape)}, the variable {tuple(variable.shape)}."
                )
        shadows = {}
        with _scope(model):
            for key, variable in zip(keys, variables):
                dtype = keras.backend.standardize_dtype(variable.dtype)
                shadow = self._shadows.get(key, self._spare.get(key))
                if shadow is not None and (
                    keras.backend.standardize_dtype(shadow.dtype) != dtype
                    or tuple(shadow.shape) != tuple(variable.shape)
                ):
                    shadow = None
                if key in pending:
                    value = np.asarray(pending[key], dtype=dtype)
                elif key in self._shadows and shadow is not None:
                    shadows[key] = shadow
                    continue
                else:
                    value = ops.copy(variable.value)  # a copy: on JAX an assigned array is shared, then donated
                if shadow is None:
                    name = "ema_" + key.replace("/", "_").replace("#", "_")
                    shadow = keras.Variable(value, dtype=dtype, trainable=False, autocast=False, name=name)
                else:
                    shadow.assign(value)
                shadows[key] = shadow
        self._variables, self._keys, self._shadows, self._pending = variables, keys, shadows, None
        self._spare = {}
        self._stepping = False

    def _ready(self) -> bool:
        if not self._variables and getattr(self, "_model", None) is not None:
            if self._pending is None and not self._shadows:
                return False
            self._track(self._model)
        return bool(self._variables)

    @property
    def averages(self) -> dict[str, keras.Variable]:
        """The averages by variable path: device-resident, non-trainable :class:`keras.Variable`."""
        self._flush()
        return dict(self._shadows)

    # --- training -------------------------------------------------------------------------

    def current_decay(self, step: int) -> float:
        """The decay applied after optimizer step ``step``."""
        if self.num_updates_ramp:
            return min(self.decay, (1.0 + step) / (10.0 + step))
        return self.decay

    def _updater(self) -> Callable:
        """The compiled update over the tracked variables, rebuilt only when they change."""
        if self._last_step is None:
            dtype = "int32" if keras.backend.backend() == "jax" else "int64"  # JAX runs without x64
            self._last_step = keras.Variable(0, dtype=dtype, trainable=False, name="ema_last_step")
        key = (tuple(id(v) for v in self._variables), tuple(id(s) for s in self._shadows.values()))
        if self._update is None or self._update_key != key:
            shadows = [self._shadows[k] for k in self._keys]
            self._update = _updater(shadows, self._variables, self._last_step, self.decay, self.num_updates_ramp)
            self._update_key = key
        return self._update

    def _flush(self) -> None:
        """Applies the update of the last training step, if one ran and is not averaged yet."""
        if not self._stepping:
            return
        self._stepping = False
        model = self.model  # on JAX this attaches the step's state to the variables
        self._updater()(model.optimizer.iterations.value)

    def on_train_begin(self, logs=None) -> None:
        if self._backup is not None:
            self._swap_out()
        model = self.model
        self._track(model)
        with _scope(model):
            update = self._updater()
        # The count the next update compares with (copied: on JAX the counter's array is donated).
        self._last_step.assign(ops.cast(ops.copy(model.optimizer.iterations.value), self._last_step.dtype))
        update(model.optimizer.iterations.value)  # a no-op (step == last) that builds and traces it once

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self._flush()
        self._stepping = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._flush()

    def on_train_end(self, logs=None) -> None:
        self._flush()

    def update(self, step: int | None = None) -> None:
        """Moves every average towards its variable's current value, on the device.

        The decay is that of ``step`` (default: the optimizer's iteration count, read on the
        device). The callback does this once per training step; call it yourself only in a
        custom training loop, after each optimizer step, with the callback's model set.
        """
        if not self._ready():
            raise RuntimeError("No variables to average: set_model() or train with this callback first.")
        self._stepping = False
        update = self._updater()
        if step is None:
            step = self.model.optimizer.iterations.value
        step = ops.cast(ops.convert_to_tensor(step), self._last_step.dtype)
        self._last_step.assign(ops.subtract(step, 1))
        update(step)

    # --- evaluation -----------------------------------------------------------------------

    def _swap_in(self) -> None:
        self._flush()
        self._backup = [ops.copy(variable.value) for variable in self._variables]  # device copies
        for key, variable in zip(self._keys, self._variables):
            variable.assign(ops.copy(self._shadows[key].value))

    def _swap_out(self) -> None:
        for value, variable in zip(self._backup, self._variables):
            variable.assign(value)
        self._backup = None

    @property
    def swapped(self) -> bool:
        """Whether the model holds the averages (and the training weights are set aside)."""
        return self._backup is not None

    def swap(self) -> None:
        """Puts the averages into the model, or, when they are in, the training weights back."""
        if not self._ready():
            raise RuntimeError("No averages yet: train with this callback or load_state() first.")
        if self._backup is None:
            self._swap_in()
        else:
            self._swap_out()

    @contextlib.contextmanager
    def average_weights(self) -> Iterator[keras.layers.Layer]:
        """``with ema.average_weights(): model.evaluate(...)``: the averages inside, then restored."""
        swapped_here = not self.swapped
        if swapped_here:
            self.swap()
        try:
            yield self.model
        finally:
            if swapped_here and self.swapped:
                self._swap_out()

    def _hook_in(self) -> None:
        if self.evaluate_with_ema and not self.swapped and self._ready():
            self.model  # noqa: B018 - on JAX, attaches the training state before setting it aside
            self._swap_in()
            self._swapped_by_hook = True

    def _hook_out(self) -> None:
        if self._swapped_by_hook:
            self._swapped_by_hook = False
            if self.swapped:
                self._swap_out()

    def on_test_begin(self, logs=None) -> None:
        self._hook_in()

    def on_test_end(self, logs=None) -> None:
        self._hook_out()

    def on_predict_begin(self, logs=None) -> None:
        self._hook_in()

    def on_predict_end(self, logs=None) -> None:
        self._hook_out()

    def assign_to_model(self) -> None:
        """Copies the averages into the model for good (the weights the reference exports)."""
        if not self._ready():
            raise RuntimeError("No averages yet: train with this callback or load_state() first.")
        self._flush()
        self._backup = None
        self._swapped_by_hook = False
        for key, variable in zip(self._keys, self._variables):
            variable.assign(ops.copy(self._shadows[key].value))

    # --- checkpointing --------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the averages by variable path (``np.savez(path, **ema.state())`` works).

        The one place the averages come to the host (a checkpoint's worth, not every step).
        """
        if not self._shadows and self._pending is not None:
            return {key: np.array(value, copy=True) for key, value in self._pending.items()}
        self._flush()
        return {key: np.array(ops.convert_to_numpy(s.value), copy=True) for key, s in self._shadows.items()}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restores :meth:`state`; before training, the averages are taken up in ``on_train_begin``.

        Variables missing from ``state`` start from their values; unknown keys raise ``ValueError``.
        """
        self._pending = {key: np.asarray(value) for key, value in state.items()}
        self._spare.update(self._shadows)
        self._shadows = {}
        self._variables, self._keys = [], []
        self._stepping = False
        if getattr(self, "_model", None) is not None:
            self._track(self._model)
