"""Per-block rematerialisation: same layers, outputs, gradients and state updates as the plain model."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import efficientnet
from efficientnet.remat import RematModel, block_of

# One training step of an EfficientNet (drop-connect on, so the dropout seeds matter) with and without remat, on
# whatever backend KERAS_BACKEND names: the outputs, the gradient of every trainable weight and every
# non-trainable variable after the step (BN statistics, dropout seeds).
STEP = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import keras
    import efficientnet

    backend = keras.backend.backend()
    # top dropout off: on PyTorch an unseeded Dropout draws from torch's global generator, so even the
    # plain model differs from itself; drop-connect (seeded, per block) stays on.
    kw = dict(weights=None, input_shape=(64, 64, 3), classes=5, classifier_activation=None, dropout_rate=0.0)
    # B0's first three stages (5 blocks, one with a residual add): the backends' op-by-op
    # execution of the whole of B0 takes minutes on JAX; the mechanism is the same per block.
    kw.update(variant="b0", blocks_args=efficientnet.DEFAULT_BLOCKS_ARGS[:3])
    plain = efficientnet.EfficientNet(**kw)
    remat = efficientnet.EfficientNet(remat=True, **kw)
    remat.set_weights(plain.get_weights())
    for a, b in zip(plain.non_trainable_variables, remat.non_trainable_variables):
        b.assign(a.value)  # the dropout seeds are variables but not weights
    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    y = np.eye(5, dtype="float32")[[0, 1, 2, 3]]


    def loss_of(out):
        return keras.ops.mean(keras.losses.categorical_crossentropy(y, out, from_logits=True))


    def step(model):
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                out = model(x, training=True)
                loss = loss_of(out)
            grads = tape.gradient(loss, model.trainable_variables)
        elif backend == "jax":
            import jax

            trainable = [v.value for v in model.trainable_variables]
            state = [v.value for v in model.non_trainable_variables]

            def f(trainable):
                out, new = model.stateless_call(trainable, state, x, training=True)
                return loss_of(out), (out, new)

            grad_fn = jax.value_and_grad(f, has_aux=True)
            (_, (out, new)), grads = grad_fn(trainable)
            for v, n in zip(model.non_trainable_variables, new):
                v.assign(n)
        else:
            out = model(x, training=True)
            loss_of(out).backward()
            grads = [v.value.grad for v in model.trainable_variables]
        return (
            keras.ops.convert_to_numpy(out),
            [keras.ops.convert_to_numpy(g) for g in grads],
            [keras.ops.convert_to_numpy(v.value).astype("float64") for v in model.non_trainable_variables],
        )


    def diff(a, b):
        return {
            "outputs": float(np.abs(a[0] - b[0]).max()),
            "gradients": max(float(np.abs(g - h).max()) for g, h in zip(a[1], b[1])),
            "state": max(float(np.abs(g - h).max()) for g, h in zip(a[2], b[2])),
        }


    start = [np.array(keras.ops.convert_to_numpy(v.value)) for v in plain.non_trainable_variables]
    reference = step(plain)
    result = {"remat": diff(reference, step(remat)), "n": len(reference[1])}
    result["scale"] = [float(np.abs(reference[0]).max()), max(float(np.abs(g).max()) for g in reference[1])]
    result["seeds_advanced"] = any(
        float(np.abs(s.astype("float64") - r).max()) > 0
        for s, r, v in zip(start, reference[2], plain.non_trainable_variables) if "seed" in v.path
    )
    print(json.dumps(result))
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_remat_step_equals_plain_step(backend, tmp_path):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", STEP], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 70 and result["seeds_advanced"], result
    got = result["remat"]
    assert got["state"] <= 1e-6, result  # BN statistics updated once, seeds advanced once
    # TensorFlow and PyTorch recompute op for op (0.0); XLA compiles a checkpointed block as one
    # computation on JAX, which rounds differently (measured 4.5e-6 and 1.3e-6)
    assert got["outputs"] <= 1e-5 and got["gradients"] <= 1e-5, result


def _pair(**kwargs):
    kw = dict(weights=None, input_shape=(64, 64, 3), classes=4, **kwargs)
    keras.utils.set_random_seed(1)
    plain = efficientnet.EfficientNetB0(**kw)
    remat = efficientnet.EfficientNetB0(remat=True, **kw)
    remat.set_weights(plain.get_weights())
    return plain, remat


def test_every_block_is_one_rematerialised_stage_and_nothing_else():
    plain, remat = _pair()
    assert type(remat) is RematModel and type(plain) is not RematModel
    assert [layer.name for layer in remat.layers[1:]] == [layer.name for layer in plain.layers[1:]]
    stages = remat._remat_plan.stages
    blocks = sorted({block_of(layer.name) for layer in plain.layers} - {None})
    assert len(blocks) == 16
    assert sorted(block_of(s.model.layers[-1].name) for s in stages if s.remat) == blocks
    for stage in stages:
        names = {block_of(layer.name) for layer in stage.model.layers if not layer.name.endswith("CLONE")}
        assert len(names) == 1 and (None in names) != stage.remat, names
        assert len(stage.inputs) == 1 and len(stage.outputs) == 1
    # the sub-models are not tracked as extra layers or weights
    assert len(remat.weights) == len(plain.weights) and len(remat.layers) == len(plain.layers)


def test_inference_and_keras_file_round_trip(tmp_path):
    plain, remat = _pair()
    x = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(remat(x)), keras.ops.convert_to_numpy(plain(x)))
    path = tmp_path / "remat.keras"
    remat.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is RematModel and len(loaded._remat_plan.stages) == len(remat._remat_plan.stages)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(plain(x)), atol=1e-6)


def test_fit_with_remat_trains_like_the_plain_model():
    x = np.random.default_rng(3).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    y = np.arange(8) % 4
    results = []
    for model in _pair(dropout_rate=0.0, drop_connect_rate=0.0):
        model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        results.append([np.asarray(w) for w in model.get_weights()])
    assert any(np.abs(a).max() > 0 for a in results[0])
    # Two SGD steps apart from float32 summation order (CI saw 1.8e-5 on one of 288 values).
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, atol=5e-5)


def test_features_only_and_xception_take_remat():
    features = efficientnet.EfficientNetB0(weights=None, features_only=True, remat=True, input_shape=(64, 64, 3))
    assert type(features) is RematModel and len(features.outputs) == 4
    assert features.output_names == ["stride_4", "stride_8", "stride_16", "stride_32"]
    assert [i.stride for i in features.feature_info] == [4, 8, 16, 32]
    # stages that end a feature map hand it to the outputs as well as to the next block
    assert sum(len(s.outputs) for s in features._remat_plan.stages) >= len(features._remat_plan.stages) + 3
    xception = efficientnet.Xception41(weights=None, remat=True, input_shape=(64, 64, 3), classes=3)
    assert type(xception) is RematModel
    assert sum(s.remat for s in xception._remat_plan.stages) == 3 + 8 + 2


def test_remat_must_be_a_bool():
    with pytest.raises(ValueError, match="remat must be True or False"):
        efficientnet.EfficientNetB0(weights=None, remat="yes")
