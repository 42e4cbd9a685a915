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

Everything is written with ``keras.ops`` (the EMA keeps its averages in NumPy), so it runs
on the TensorFlow, JAX and PyTorch backends.
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


def _numpy(variable) -> np.ndarray:
    """A variable's current value on the host, possibly sharing its memory: read, never write it.

    ``keras.ops.convert_to_numpy`` does the same on every backend but copies twice on TensorFlow
    and once on JAX/PyTorch; for the EMA's per-batch reads of every weight the direct forms are
    several times faster.
    """
    value = variable.value
    backend = keras.backend.backend()
    if backend == "tensorflow" and hasattr(value, "numpy"):
        return value.numpy()
    if backend == "torch" and str(value.dtype) in ("torch.float32", "torch.float64", "torch.float16"):
        return value.detach().cpu().numpy()
    if backend == "jax" and str(value.dtype) in ("float32", "float64", "float16"):
        return np.asarray(value)
    return ops.convert_to_numpy(value)


def _reader(variables: list) -> Callable[[], list[np.ndarray]]:
    """A function returning the variables' current values on the host (read, never write them).

    On TensorFlow the reads are batched into one ``tf.function`` call, 2-3x faster for B0's 311
    variables than one eager read per variable.
    """
    if keras.backend.backend() == "tensorflow" and variables:
        import tensorflow as tf

        handles = [v.value for v in variables]
        read = tf.function(lambda: [tf.identity(h) for h in handles], autograph=False)
        return lambda: [tensor.numpy() for tensor in read()]
    return lambda: [_numpy(v) for v in variables]


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
    Keras calls ``on_train_batch_end`` once per execution, so the average moves once per execution.
    (Keras' own ``Optimizer(use_ema=True)`` averages only the trainable variables, with a fixed
    momentum and no ramp, and overwrites them at the end of ``fit``.)

    The averages are NumPy arrays updated in place. ``evaluate`` (and so the validation inside
    ``fit``) and ``predict`` run with the averages when ``evaluate_with_ema`` is set: they are
    swapped into the model at ``on_test_begin``/``on_predict_begin`` and the training weights
    put back at the end. Outside ``fit``, use :meth:`average_weights` or pass the callback to
    ``evaluate``. :meth:`state`/:meth:`load_state` save and restore the averages for an exact
    resume; :meth:`assign_to_model` copies them into the model for the weights to export.

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
        self._shadows: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] | None = None
        self._backup: list[np.ndarray] | None = None
        self._swapped_by_hook = False
        self._buffers: dict[np.dtype, np.ndarray] = {}
        self._read: Callable[[], list[np.ndarray]] = list

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
        """(Re)selects the variables; keeps known averages, starts new ones at the current values."""
        variables = self.averaged_variables(model)
        keys, counts = [], {}
        for variable in variables:
            key = variable.path
            counts[key] = counts.get(key, 0) + 1
            keys.append(key if counts[key] == 1 else f"{key}#{counts[key] - 1}")
        pending = self._pending or {}
        shadows = {}
        for key, variable in zip(keys, variables):
            source = pending.get(key, self._shadows.get(key))
            if source is None:
                source = _numpy(variable)
            source = np.asarray(source)
            if tuple(source.shape) != tuple(variable.shape):
                raise ValueError(
                    f"EMA state for {key!r} has shape {source.shape}, the variable {tuple(variable.shape)}."
                )
            shadows[key] = np.array(source, dtype=keras.backend.standardize_dtype(variable.dtype), copy=True)
        unknown = sorted(set(pending) - set(keys))
        if unknown:
            raise ValueError(f"EMA state has variables the model lacks: {unknown[:5]}")
        self._variables, self._keys, self._shadows, self._pending = variables, keys, shadows, None
        self._read = _reader(variables)

    def _ready(self) -> bool:
        if not self._variables and getattr(self, "_model", None) is not None:
            if self._pending is None and not self._shadows:
                return False
            self._track(self._model)
        return bool(self._variables)

    # --- training -------------------------------------------------------------------------

    def current_decay(self, step: int) -> float:
        """The decay applied after optimizer step ``step``."""
        if self.num_updates_ramp:
            return min(self.decay, (1.0 + step) / (10.0 + step))
        return self.decay

    def on_train_begin(self, logs=None) -> None:
        if self._backup is not None:
            self._swap_out()
        self._track(self.model)

    def on_train_batch_end(self, batch, logs=None) -> None:
        model = self.model  # on JAX this attaches the step's state to the variables
        step = int(_numpy(model.optimizer.iterations))
        self.update(step)

    def update(self, step: int) -> None:
        """Moves every average towards its variable's current value, with the decay for ``step``."""
        rate = 1.0 - self.current_decay(step)
        for key, value in zip(self._keys, self._read()):
            shadow = self._shadows[key]
            # TF's assign_moving_average form, shadow -= (1 - d) * (shadow - value), without temporaries.
            delta = self._scratch(shadow)
            np.subtract(shadow, value, out=delta)
            np.multiply(delta, rate, out=delta)
            np.subtract(shadow, delta, out=shadow)

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A reusable buffer shaped like ``like`` (one allocation for all variables)."""
        buffer = self._buffers.get(like.dtype)
        if buffer is None or buffer.size < like.size:
            buffer = np.empty(max(like.size, max((s.size for s in self._shadows.values()), default=0)), like.dtype)
            self._buffers[like.dtype] = buffer
        return buffer[: like.size].reshape(like.shape)

    # --- evaluation -----------------------------------------------------------------------

    def _swap_in(self) -> None:
        self._backup = [np.array(value, copy=True) for value in self._read()]
        for key, variable in zip(self._keys, self._variables):
            variable.assign(self._shadows[key])

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
        self._backup = None
        self._swapped_by_hook = False
        for key, variable in zip(self._keys, self._variables):
            variable.assign(self._shadows[key])

    # --- checkpointing --------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the averages by variable path (``np.savez(path, **ema.state())`` works)."""
        return {key: value.copy() for key, value in self._shadows.items()}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restores :meth:`state`; before training, the averages are taken up in ``on_train_begin``.

        Variables missing from ``state`` start from their values; unknown keys raise ``ValueError``.
        """
        self._pending = {key: np.asarray(value) for key, value in state.items()}
        self._shadows = {}
        self._variables, self._keys = [], []
        if getattr(self, "_model", None) is not None:
            self._track(self._model)
