"""The same B0 weights give the same outputs on the TensorFlow, JAX and PyTorch backends."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import images, predict, randomize_statistics

import efficientnet

SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, efficientnet
    model = efficientnet.EfficientNetB0(weights=sys.argv[1], input_shape=(96, 96, 3), classifier_activation=None)
    import keras
    x = np.load(sys.argv[2])
    np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x, training=False)))
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_b0_outputs_match_across_backends(backend, tmp_path):
    pytest.importorskip(backend)
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(96, 96, 3), classifier_activation=None)
    randomize_statistics(model)
    weights = str(tmp_path / "b0.h5")
    efficientnet.save_weights(model, weights)
    x = images(size=96)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, "-c", SCRIPT, weights, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        env=env,
        timeout=600,
    )
    other = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(other, predict(model, x), atol=1e-4, rtol=1e-4)
