"""efficientnet.training.optim: the paper's RMSProp, LR schedule, L2 term and weight EMA on Keras 3.

Every expected value is recomputed here independently (closed forms, NumPy, timm's PyTorch RMSpropTF).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import import_timm

import efficientnet
from efficientnet.training import optim

# --- the learning-rate schedule -------------------------------------------------------------


def test_schedule_read_through_optimizer_matches_reference_closed_form():
    # tensorflow/tpu main.py defaults: batch 2048, 1281167 images, float steps_per_epoch.
    batch = 2048
    steps_per_epoch = 1281167 / batch
    base = 0.016 * batch / 256
    schedule = optim.WarmupExponentialDecay.from_epochs(base, steps_per_epoch=steps_per_epoch)
    assert schedule.warmup_steps == int(5 * steps_per_epoch) == 3127
    assert isinstance(schedule.warmup_steps, int)
    assert schedule.decay_steps == pytest.approx(2.4 * steps_per_epoch)  # not rounded

    warmup, decay_steps = 3127, 2.4 * steps_per_epoch

    def expected(step: int) -> float:
        if step < warmup:
            return base * step / warmup
        return base * 0.97 ** math.floor(step / decay_steps)

    opt = optim.RMSpropTF(learning_rate=schedule)
    steps = {
        "start": 0,
        "mid warm-up": warmup // 2,
        "last warm-up step": warmup - 1,
        "end of warm-up": warmup,
        "+2.4 epochs": warmup + round(2.4 * steps_per_epoch),
        "+10 epochs": warmup + round(10 * steps_per_epoch),
    }
    for what, step in steps.items():
        opt.iterations.assign(step)
        assert float(opt.learning_rate) == pytest.approx(expected(step), rel=1e-6, abs=1e-9), what
    # The decay counts from step 0: the warm-up ends on base * 0.97**2, and 10 epochs later 0.97**6.
    opt.iterations.assign(warmup)
    assert float(opt.learning_rate) == pytest.approx(base * 0.97**2, rel=1e-6)
    opt.iterations.assign(warmup + round(10 * steps_per_epoch))
    assert float(opt.learning_rate) == pytest.approx(base * 0.97**6, rel=1e-6)


def test_schedule_without_warmup_and_config_round_trip():
    schedule = optim.WarmupExponentialDecay.from_epochs(0.1, steps_per_epoch=10, warmup_epochs=0)
    assert schedule.warmup_steps == 0
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(23)) == pytest.approx(0.1)  # floor(23 / 24) = 0
    assert float(schedule(24)) == pytest.approx(0.1 * 0.97)  # floor(24 / 24) = 1
    assert float(schedule(48)) == pytest.approx(0.1 * 0.97**2)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, optim.WarmupExponentialDecay)
    assert restored.get_config() == schedule.get_config()
    with pytest.raises(ValueError):
        optim.WarmupExponentialDecay(0.1, decay_steps=0)


# --- RMSpropTF ------------------------------------------------------------------------------

SHAPES = [(3, 4), (5,)]


def _gradients(steps: int = 20, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    # Scales from 1e-3 to 3 so that the mean square's initial 1.0 and epsilon both matter.
    return [[rng.normal(0, 1, s) * 10 ** rng.uniform(-3, 0.5) for s in SHAPES] for _ in range(steps)]


def _keras_trajectory(optimizer: keras.optimizers.Optimizer, init, grads) -> list[np.ndarray]:
    variables = [keras.Variable(w, dtype="float64") for w in init]
    for step in grads:
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g, "float64") for g in step], variables))
    return [keras.ops.convert_to_numpy(v.value) for v in variables]


def _timm_trajectory(init, grads, **kwargs) -> list[np.ndarray]:
    import_timm()
    import torch
    from timm.optim import RMSpropTF

    params = [torch.nn.Parameter(torch.tensor(w, dtype=torch.float64)) for w in init]
    opt = RMSpropTF(params, **kwargs)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return [p.detach().numpy() for p in params]


HYPER = dict(rho=0.9, momentum=0.9, epsilon=1e-3)
TIMM_HYPER = dict(lr=0.05, alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=0)


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_tf_matches_timm_and_not_keras_rmsprop(centered):
    rng = np.random.default_rng(1)
    init = [rng.normal(0, 1, s) for s in SHAPES]
    grads = _gradients()
    ours = _keras_trajectory(optim.RMSpropTF(0.05, centered=centered, **HYPER), init, grads)
    reference = _timm_trajectory(init, grads, centered=centered, **TIMM_HYPER)
    moved = max(np.abs(r - w).max() for r, w in zip(reference, init))
    assert moved > 0.1  # the comparison is not trivially satisfied
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    # Keras' RMSprop (mean square from 0) with the same hyper-parameters takes other steps.
    keras_rmsprop = _keras_trajectory(keras.optimizers.RMSprop(0.05, centered=centered, **HYPER), init, grads)
    assert max(np.abs(a - b).max() for a, b in zip(keras_rmsprop, reference)) > 1e-2


def test_rmsprop_tf_weight_decay_is_keras_decoupled_decay():
    """Keras' weight_decay passes through: w *= 1 - lr * wd before the step, timm's decoupled_decay."""
    rng = np.random.default_rng(2)
    init = [rng.normal(0, 1, s) for s in SHAPES]
    grads = _gradients(10, seed=3)
    ours = _keras_trajectory(optim.RMSpropTF(0.05, weight_decay=0.2, **HYPER), init, grads)
    reference = _timm_trajectory(init, grads, **{**TIMM_HYPER, "weight_decay": 0.2, "decoupled_decay": True})
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_rmsprop_tf_serialises_with_its_schedule():
    schedule = optim.WarmupExponentialDecay(0.1, decay_steps=7.5, decay_rate=0.9, warmup_steps=3)
    opt = optim.RMSpropTF(schedule, rho=0.8, momentum=0.7, epsilon=1e-4, centered=True, weight_decay=1e-3)
    config = keras.optimizers.serialize(opt)
    assert config["registered_name"] == "efficientnet>RMSpropTF"
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, optim.RMSpropTF)
    assert isinstance(restored._learning_rate, optim.WarmupExponentialDecay)
    for key in ("rho", "momentum", "epsilon", "centered", "weight_decay"):
        assert restored.get_config()[key] == opt.get_config()[key]
    for step in (0, 2, 3, 20):
        opt.iterations.assign(step)
        restored.iterations.assign(step)
        assert float(restored.learning_rate) == pytest.approx(float(opt.learning_rate))
    with pytest.raises(ValueError):
        optim.RMSpropTF(rho=1.0)


# --- small models ---------------------------------------------------------------------------


def tiny_model(seed: int = 0) -> keras.Model:
    """Conv, batch norm with a fast momentum (moving statistics that move), dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5, name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))


def nested_model(seed: int = 0) -> keras.Model:
    """A Sequential (conv, BN, depthwise conv) inside a functional model with a dense head."""
    keras.utils.set_random_seed(seed)
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.DepthwiseConv2D(3, name="dw"),
        ],
        name="inner",
    )
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))


def data(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def values(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v.value) for v in model.weights if "float" in str(v.dtype)}


def test_optimizer_slots_saved_and_restored_with_the_model(tmp_path):
    x, y = data(8)
    model = tiny_model()
    model.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    slots = {v.path: keras.ops.convert_to_numpy(v.value) for v in model.optimizer.variables}
    mean_squares = [k for k in slots if k.endswith("_ms")]
    assert len(mean_squares) == len(model.trainable_weights)
    assert all(not np.allclose(slots[k], 1.0) for k in mean_squares)  # trained away from the initial 1.0
    path = str(tmp_path / "tiny.weights.h5")
    model.save_weights(path)

    fresh = tiny_model(seed=1)
    fresh.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    fresh.optimizer.build(fresh.trainable_variables)  # Keras loads an optimizer's state only once built
    assert all(np.allclose(keras.ops.convert_to_numpy(v.value), 1.0) for v in fresh.optimizer._mean_squares)
    fresh.load_weights(path)
    restored = {v.path: keras.ops.convert_to_numpy(v.value) for v in fresh.optimizer.variables}
    assert restored.keys() == slots.keys()
    for key in slots:
        np.testing.assert_array_equal(restored[key], slots[key], err_msg=key)
    assert int(keras.ops.convert_to_numpy(fresh.optimizer.iterations.value)) == 2


# --- L2 -------------------------------------------------------------------------------------

CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def test_l2_regularises_every_conv_and_dense_weight_of_b0_and_nothing_else():
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=3)
    expected = {w.path for layer in model.layers if isinstance(layer, CONV_TYPES) for w in layer.trainable_weights}
    assert len(expected) == 65 + 32 + 16 + 2  # conv kernels, SE conv biases, depthwise kernels, head
    assert any("se_reduce/bias" in p for p in expected) and "predictions/bias" in expected
    weight_decay = 1e-3
    regularised = optim.apply_l2_regularization(model, weight_decay)
    assert set(regularised) == expected and len(regularised) == len(expected)
    batch_norm = {
        w.path for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights
    }
    assert len(batch_norm) == 49 * 4 and not batch_norm & set(regularised)

    by_path = {w.path: w for w in model.weights}
    squares = sum(
        float(np.sum(np.square(keras.ops.convert_to_numpy(by_path[p].value), dtype="float64"))) for p in expected
    )
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert len(model.losses) == len(expected)
    assert total == pytest.approx(weight_decay / 2 * squares, rel=1e-5)

    assert optim.apply_l2_regularization(model, 0.0) == []
    assert model.losses == []
    with pytest.raises(ValueError):
        optim.apply_l2_regularization(model, -1e-5)


def test_l2_term_is_in_the_fit_gradient_of_a_nested_model():
    x, y = data(4)
    weight_decay, lr = 0.2, 0.1
    runs = {}
    for decay in (0.0, weight_decay):
        model = nested_model()
        regularised = optim.apply_l2_regularization(model, decay)
        model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
        before = values(model)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        runs[decay] = (before, values(model), regularised)
    (before, plain, _), (before_l2, with_l2, regularised) = runs[0.0], runs[weight_decay]
    assert set(regularised) == {
        "inner/conv/kernel",
        "inner/conv/bias",
        "inner/dw/kernel",
        "inner/dw/bias",
        "fc/kernel",
        "fc/bias",
    }
    for path in plain:
        np.testing.assert_array_equal(before[path], before_l2[path])
        # SGD: the L2 term adds weight_decay * w to the gradient, so -lr * weight_decay * w to the step.
        extra = lr * weight_decay * before[path] if path in regularised else np.zeros_like(before[path])
        np.testing.assert_allclose(plain[path] - with_l2[path], extra, atol=2e-6, err_msg=path)
    assert np.abs(lr * weight_decay * before["inner/dw/kernel"]).max() > 2e-3  # >> the tolerance


# --- EMA ------------------------------------------------------------------------------------


_to_numpy = keras.ops.convert_to_numpy  # the test's own reads, unaffected by _PoisonHost


class Recorder(keras.callbacks.Callback):
    """The averaged variables' values when training starts and after every batch, and the step count."""

    def __init__(self, ema: optim.ExponentialMovingAverage):
        super().__init__()
        self.ema, self.trajectory, self.iterations = ema, [], []

    def _record(self):
        variables = self.ema.averaged_variables(self.model)
        self.trajectory.append({v.path: _to_numpy(v.value).astype("float64") for v in variables})

    def on_train_begin(self, logs=None):
        self._record()

    def on_train_batch_end(self, batch, logs=None):
        self._record()
        self.iterations.append(int(_to_numpy(self.model.optimizer.iterations.value)))


def closed_form(trajectory, decay: float, ramp: bool = True, first_step: int = 1, start=None):
    shadows = dict(start) if start is not None else dict(trajectory[0])
    for t, weights in enumerate(trajectory[1:], start=first_step):
        d = min(decay, (1 + t) / (10 + t)) if ramp else decay
        shadows = {k: d * shadows[k] + (1 - d) * weights[k] for k in shadows}
    return shadows


def test_ema_equals_closed_form_over_weights_and_batch_norm_statistics():
    x, y = data(40)
    model = tiny_model()
    model.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    ema = optim.ExponentialMovingAverage(decay=0.45)  # the ramp (1+t)/(10+t) < 0.45 up to t=6, then 0.45
    recorder = Recorder(ema)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[recorder, ema])
    assert recorder.iterations == list(range(1, 11))
    state = ema.state()
    assert set(state) == {
        "conv/kernel",
        "conv/bias",
        "bn/gamma",
        "bn/beta",
        "fc/kernel",
        "fc/bias",
        "bn/moving_mean",
        "bn/moving_variance",
    }
    expected = closed_form(recorder.trajectory, 0.45)
    for key in state:
        np.testing.assert_allclose(state[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # The averages lag the weights, the BN statistics included (the test can tell them apart).
    last = recorder.trajectory[-1]
    for key in ("conv/kernel", "bn/moving_mean", "bn/moving_variance"):
        assert np.abs(state[key] - last[key]).max() > 1e-3, key
    # The ramp matters: the same trajectory without it is another average.
    no_ramp = closed_form(recorder.trajectory, 0.45, ramp=False)
    assert max(np.abs(no_ramp[k] - state[k]).max() for k in state) > 1e-4  # >> the tolerance above


def _with_averages(model: keras.Model, state: dict[str, np.ndarray]) -> keras.Model:
    copy = tiny_model(seed=5)
    copy.set_weights(model.get_weights())
    for variable in copy.weights:
        if variable.path in state:
            variable.assign(state[variable.path])
    copy.compile(loss="mse")
    return copy


def test_validation_and_predict_use_the_averages_and_restore_the_training_weights():
    x, y = data(16)
    xv, yv = data(8, seed=1)
    model = tiny_model()
    model.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    ema = optim.ExponentialMovingAverage(decay=0.9)
    recorder = Recorder(ema)
    history = model.fit(
        x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, validation_data=(xv, yv), callbacks=[ema, recorder]
    )
    trained = values(model)
    for key, value in recorder.trajectory[-1].items():  # the training weights are back after validation
        np.testing.assert_array_equal(trained[key], value.astype("float32"), err_msg=key)
    averaged = _with_averages(model, ema.state())
    val_loss = history.history["val_loss"][0]
    assert val_loss == pytest.approx(averaged.evaluate(xv, yv, batch_size=4, verbose=0), rel=1e-6)
    assert abs(val_loss - model.evaluate(xv, yv, batch_size=4, verbose=0)) > 1e-4

    expected = averaged.predict(xv, verbose=0)
    np.testing.assert_allclose(model.predict(xv, verbose=0, callbacks=[ema]), expected, rtol=1e-6, atol=1e-6)
    with ema.average_weights():
        np.testing.assert_allclose(model.predict(xv, verbose=0), expected, rtol=1e-6, atol=1e-6)
        assert ema.swapped
    assert not ema.swapped
    for key, value in values(model).items():
        np.testing.assert_array_equal(value, trained[key], err_msg=key)
    assert not np.allclose(model.predict(xv, verbose=0), expected, atol=1e-4)

    ema.assign_to_model()
    np.testing.assert_allclose(model.predict(xv, verbose=0), expected, rtol=1e-6, atol=1e-6)


def test_state_round_trip_resumes_exactly(tmp_path):
    x, y = data(24)
    kwargs = dict(batch_size=4, verbose=0, shuffle=False)

    straight = tiny_model()
    straight.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    ema_straight = optim.ExponentialMovingAverage(decay=0.8)
    straight.fit(x, y, epochs=2, callbacks=[ema_straight], **kwargs)

    first = tiny_model()
    first.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    ema_first = optim.ExponentialMovingAverage(decay=0.8)
    first.fit(x, y, epochs=1, callbacks=[ema_first], **kwargs)
    path = str(tmp_path / "resume.weights.h5")
    first.save_weights(path)
    np.savez(tmp_path / "ema.npz", **ema_first.state())

    resumed = tiny_model(seed=3)
    resumed.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(path)
    ema_resumed = optim.ExponentialMovingAverage(decay=0.8)
    with np.load(tmp_path / "ema.npz") as saved:
        ema_resumed.load_state({k: saved[k] for k in saved.files})
    resumed.fit(x, y, epochs=2, initial_epoch=1, callbacks=[ema_resumed], **kwargs)

    expected, got = ema_straight.state(), ema_resumed.state()
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Without the saved state the resumed average restarts from the resumed weights: different.
    assert max(np.abs(ema_first.state()[k] - expected[k]).max() for k in expected) > 1e-3

    bad = optim.ExponentialMovingAverage()
    bad.set_model(resumed)
    with pytest.raises(ValueError):
        bad.load_state({"nope/kernel": np.zeros(3)})
    with pytest.raises(ValueError):
        bad.load_state({"fc/bias": np.zeros(3)})


class _NoHost:
    """Stands in for NumPy inside ``optim`` while training: any use is a host round trip."""

    def __getattr__(self, name):
        raise AssertionError(f"the EMA used numpy.{name} during training")


class _PoisonHost(keras.callbacks.Callback):
    """From the first batch on, ``optim`` may not touch NumPy nor ``keras.ops.convert_to_numpy``."""

    def __init__(self):
        super().__init__()
        self.saved = None

    def on_train_begin(self, logs=None):  # after the EMA's on_train_begin (it may read load_state arrays)
        self.saved = (optim.np, keras.ops.convert_to_numpy)
        optim.np = _NoHost()

        def convert_to_numpy(x):
            raise AssertionError("the EMA copied a tensor to the host during training")

        keras.ops.convert_to_numpy = convert_to_numpy

    def restore(self):
        if self.saved is not None:
            optim.np, keras.ops.convert_to_numpy = self.saved
            self.saved = None


def _is_device_tensor(value) -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return isinstance(value, (tf.Tensor, tf.Variable))
    if backend == "jax":
        import jax

        return isinstance(value, jax.Array)
    if backend == "torch":
        import torch

        return isinstance(value, torch.Tensor)
    return False


def test_ema_averages_stay_on_the_device_while_training():
    x, y = data(24)
    xv, yv = data(8, seed=1)
    model = tiny_model()
    model.compile(optimizer=optim.RMSpropTF(0.05), loss="mse")
    ema = optim.ExponentialMovingAverage(decay=0.6)
    recorder, poison = Recorder(ema), _PoisonHost()
    try:  # training and validation (averages swapped in and out) with no host copy from the EMA
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, validation_data=(xv, yv),
                  callbacks=[ema, recorder, poison])  # fmt: skip
    finally:
        poison.restore()
    averages = ema.averages
    assert set(averages) == set(ema.state()) and len(averages) == 8
    weights = {id(v) for v in model.weights}
    for key, shadow in averages.items():
        assert isinstance(shadow, keras.Variable) and not shadow.trainable, key
        assert _is_device_tensor(shadow.value) and not isinstance(shadow.value, np.ndarray), key
        assert id(shadow) not in weights, key  # not saved with the model
    # They are the reference's averages of the 12 steps (both epochs) ...
    assert recorder.iterations == list(range(1, 13))
    expected = closed_form(recorder.trajectory, 0.6)
    state = ema.state()
    for key in state:
        np.testing.assert_allclose(state[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # ... and the same variables, created once, carry on in the next fit.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[ema])
    assert all(ema.averages[k] is v for k, v in averages.items())
    assert max(np.abs(ema.state()[k] - state[k]).max() for k in state) > 1e-3


BACKEND_SCRIPT = textwrap.dedent(
    """
    import sys, tempfile, pathlib
    sys.path.insert(0, sys.argv[1])
    import keras
    import test_training_optim as t
    assert keras.backend.backend() == sys.argv[2], keras.backend.backend()
    t.test_ema_equals_closed_form_over_weights_and_batch_norm_statistics()
    t.test_validation_and_predict_use_the_averages_and_restore_the_training_weights()
    t.test_ema_averages_stay_on_the_device_while_training()
    with tempfile.TemporaryDirectory() as tmp:
        t.test_state_round_trip_resumes_exactly(pathlib.Path(tmp))
    print("EMA OK")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_ema_tests_pass_on_every_backend(backend):
    """The EMA tests above (closed form, swapping, resume, device residency) in a process on ``backend``."""
    pytest.importorskip(backend)
    if keras.backend.backend() == backend:
        pytest.skip(f"this process already runs the tests above on {backend}")
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", BACKEND_SCRIPT, tests, backend],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "EMA OK" in done.stdout


# --- every piece together, on the other backends ----------------------------------------------

# Two stages (stem, MBConv1 and MBConv6 blocks with squeeze-excitation, head): JAX compiles it in seconds.
# At 32 px the last feature map is 8x8, so batch-norm statistics over a batch of 4 are well conditioned.
TINY = dict(
    weights=None,
    input_shape=(32, 32, 3),
    blocks_args=efficientnet.DEFAULT_BLOCKS_ARGS[:2],
    classes=3,
    width_coefficient=0.25,
    depth_coefficient=0.1,
    dropout_rate=0,
    drop_connect_rate=0,
    classifier_activation=None,
)


def recipe(initial: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Three fit steps (batch 4) with RMSpropTF, the warm-up schedule, L2, the EMA and validation."""
    model = efficientnet.EfficientNet("b0", **TINY)
    for variable in model.weights:
        if variable.path in initial:
            variable.assign(initial[variable.path])
    optim.apply_l2_regularization(model, 0.5)
    schedule = optim.WarmupExponentialDecay(0.05, decay_steps=1.5, decay_rate=0.5, warmup_steps=1)
    model.compile(optimizer=optim.RMSpropTF(schedule), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    ema = optim.ExponentialMovingAverage(decay=0.9)
    history = model.fit(
        x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[ema], validation_data=(x[:4], y[:4])
    )
    out = {"val_loss": np.array(history.history["val_loss"])}  # evaluated with the averages swapped in
    out.update({f"weights:{k}": v for k, v in values(model).items()})  # the training weights, swapped back
    out.update({f"ema:{k}": v for k, v in ema.state().items()})
    return out


SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_training_optim import recipe
    with np.load(sys.argv[2]) as f:
        arrays = {k: f[k] for k in f.files}
    x, y = arrays.pop("__x__"), arrays.pop("__y__")
    np.savez(sys.argv[3], **recipe(arrays, x, y))
    """
)


@pytest.fixture(scope="module")
def recipe_inputs(tmp_path_factory):
    model = efficientnet.EfficientNet("b0", **TINY)
    initial = values(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 12)]
    path = tmp_path_factory.mktemp("recipe") / "inputs.npz"
    np.savez(path, __x__=x, __y__=y, **initial)
    return path, initial, recipe(initial, x, y)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_recipe_gives_the_same_step_on_jax_and_torch(backend, recipe_inputs, tmp_path):
    pytest.importorskip(backend)
    if keras.backend.backend() == backend:
        pytest.skip(f"this process already runs on {backend}")
    path, initial, reference = recipe_inputs
    moved = max(np.abs(reference[f"weights:{k}"] - v).max() for k, v in initial.items())
    assert moved > 1e-2
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    out = tmp_path / "out.npz"
    tests = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-c", SCRIPT, tests, str(path), str(out)], check=True, env=env, timeout=600)
    with np.load(out) as other:
        assert set(other.files) == set(reference)
        for key in reference:
            np.testing.assert_allclose(other[key], reference[key], atol=1e-5, rtol=1e-5, err_msg=key)
