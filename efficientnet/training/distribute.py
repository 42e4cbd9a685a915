"""Distributed training on the existing engines: ``tf.distribute`` and ``keras.distribution``.

Nothing here is home-made: a name picks an engine and :func:`resolve_strategy` returns it
wrapped with what :func:`efficientnet.training.train` needs (a scope, the replica count,
whether this process writes the run directory).

==================  ===========================================================================
``none``            one device.
``mirrored``        ``tf.distribute.MirroredStrategy`` over this host's GPUs (or, without GPUs,
                    its logical CPU devices); TensorFlow backend.
``multiworker``     ``tf.distribute.MultiWorkerMirroredStrategy``, the cluster from ``TF_CONFIG``;
                    TensorFlow backend. Worker 0 (or the chief) writes checkpoints and logs.
                    Keras 3.15's ``fit`` needs :func:`enable_keras_fit_on_multiworker` here
                    (``train`` applies it); tested with 2 worker processes on one host.
``tpu``             ``tf.distribute.TPUStrategy`` from ``TPUClusterResolver`` (documented; no TPU
                    was available to test it).
``data-parallel``   ``keras.distribution.DataParallel`` over all JAX devices; JAX backend;
                    several hosts after ``keras.distribution.initialize()`` (``jax.distributed``).
``auto``            TensorFlow: ``multiworker`` when ``TF_CONFIG`` names a cluster, ``mirrored``
                    with 2+ GPUs, else ``none``; JAX: ``data-parallel`` with 2+ devices; else ``none``.
==================  ===========================================================================

The batch size given to ``train`` is the *global* batch; each replica gets
``global_batch / replicas`` images (it must divide evenly) and the recipe scales the learning
rate by the global batch (0.016 × batch / 256 for the papers' recipes). Cross-replica batch
norm, as the official TPU recipe, is ``synchronized_bn=True`` (TensorFlow strategies).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from typing import Any

import keras

__all__ = ["STRATEGIES", "Distribution", "resolve_strategy", "parse_tf_config", "enable_keras_fit_on_multiworker"]

STRATEGIES = ("auto", "none", "mirrored", "multiworker", "tpu", "data-parallel")


@dataclass
class Distribution:
    """A resolved strategy: ``scope()`` to build and train under, replicas, and the writer role."""

    name: str
    engine: Any = None
    num_replicas: int = 1
    is_chief: bool = True

    def scope(self):
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    @property
    def is_tf(self) -> bool:
        return self.name in ("mirrored", "multiworker", "tpu", "tf")

    def per_replica_batch(self, global_batch: int) -> int:
        if global_batch % self.num_replicas:
            raise ValueError(
                f"The global batch size {global_batch} does not divide over {self.num_replicas} replicas "
                f"({self.name}). Use a multiple of {self.num_replicas}, e.g. "
                f"{max(1, global_batch // self.num_replicas) * self.num_replicas}."
            )
        return global_batch // self.num_replicas


_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
)


def parse_tf_config(text: str | None = None) -> dict:
    """Reads and checks ``TF_CONFIG`` (or ``text``); a malformed one raises ``ValueError`` with an example."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise ValueError(f"multiworker needs TF_CONFIG describing the cluster, e.g. {_TF_CONFIG_EXAMPLE}.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON ({exc}). Expected e.g. {_TF_CONFIG_EXAMPLE}.") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ValueError(f"TF_CONFIG lacks a 'cluster' mapping. Expected e.g. {_TF_CONFIG_EXAMPLE}.")
    cluster, task = config["cluster"], config.get("task")
    if not cluster or not all(isinstance(v, list) and v for v in cluster.values()):
        raise ValueError(f"TF_CONFIG's cluster must map job names to lists of 'host:port', got {cluster!r}.")
    for job, addresses in cluster.items():
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"TF_CONFIG cluster {job!r} has {address!r}, not 'host:port'.")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG lacks task {{'type', 'index'}}. Expected e.g. {_TF_CONFIG_EXAMPLE}.")
    if task["type"] not in cluster or not isinstance(task["index"], int):
        raise ValueError(f"TF_CONFIG task {task!r} names no member of the cluster jobs {sorted(cluster)}.")
    if not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ValueError(
            f"TF_CONFIG task index {task['index']} is outside the {len(cluster[task['type']])} {task['type']}s."
        )
    return config


def _is_chief(config: dict) -> bool:
    task = config["task"]
    if "chief" in config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def _require(backend: str, name: str, alternative: str) -> None:
    current = keras.backend.backend()
    if current != backend:
        raise ValueError(
            f"strategy={name!r} needs the {backend} backend, but Keras runs on {current!r}. "
            f"Set KERAS_BACKEND={backend}, or {alternative}."
        )


def resolve_strategy(strategy=None) -> Distribution:
    """Turns ``strategy`` (a name from :data:`STRATEGIES`, a ``tf.distribute.Strategy``, a
    ``keras.distribution.Distribution`` or ``None``) into a :class:`Distribution`."""
    if strategy is None or strategy == "none":
        return Distribution("none")
    if isinstance(strategy, Distribution):
        return strategy
    if isinstance(strategy, (keras.distribution.DataParallel, keras.distribution.ModelParallel)):
        devices = getattr(strategy, "device_mesh", None)
        replicas = devices.shape[0] if devices is not None else 1
        return Distribution("data-parallel", strategy, int(replicas), _jax_chief())
    if not isinstance(strategy, str):
        if hasattr(strategy, "num_replicas_in_sync") and hasattr(strategy, "scope"):
            chief = True
            resolver = getattr(strategy, "cluster_resolver", None)
            if resolver is not None and getattr(resolver, "task_type", None) is not None:
                chief = (resolver.task_type, resolver.task_id) in (("chief", 0), ("worker", 0))
            return Distribution("tf", strategy, int(strategy.num_replicas_in_sync), chief)
        raise TypeError(f"strategy must be one of {STRATEGIES}, a tf.distribute.Strategy or None, got {strategy!r}.")
    name = strategy.lower()
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    backend = keras.backend.backend()
    if name == "auto":
        if backend == "tensorflow":
            import tensorflow as tf

            if os.environ.get("TF_CONFIG"):
                name = "multiworker"
            elif len(tf.config.list_logical_devices("GPU")) > 1:
                name = "mirrored"
            else:
                return Distribution("none")
        elif backend == "jax" and len(keras.distribution.list_devices()) > 1:
            name = "data-parallel"
        else:
            return Distribution("none")
    if name == "data-parallel":
        _require("jax", name, "use mirrored/multiworker on TensorFlow")
        devices = keras.distribution.list_devices()
        return Distribution(name, keras.distribution.DataParallel(devices=devices), len(devices), _jax_chief())
    _require(
        "tensorflow",
        name,
        "use data-parallel on JAX (the PyTorch backend has no Keras distribution engine here: use torchrun "
        "with your own DistributedDataParallel)",
    )
    import tensorflow as tf

    if name == "multiworker":
        config = parse_tf_config()
        engine = _tf_engine(name, os.environ["TF_CONFIG"])
        return Distribution(name, engine, int(engine.num_replicas_in_sync), _is_chief(config))
    engine = _tf_engine(name, None)
    return Distribution(name, engine, int(engine.num_replicas_in_sync))


@functools.cache
def _tf_engine(name: str, tf_config: str | None):
    """One engine per process and configuration: a second MirroredStrategy in the same process would
    allocate colliding collective keys (observed: shape mismatches in synchronized BN), and
    MultiWorkerMirroredStrategy can only be created once."""
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise ValueError(
            f"strategy 'tpu' (--strategy tpu) found no TPU ({getattr(exc, 'message', None) or exc}). Run on a TPU VM "
            "(or set TPU_NAME to the TPU to connect to), or choose another strategy: 'auto' uses what this "
            "machine has (--strategy auto), 'none' one device."
        ) from None


def _jax_chief() -> bool:
    try:
        import jax

        return jax.process_index() == 0
    except Exception:  # not on JAX
        return True


def enable_keras_fit_on_multiworker(model: keras.Model) -> keras.Model:
    """Lets Keras 3's ``Model.fit``/``evaluate`` run under ``MultiWorkerMirroredStrategy``; returns ``model``.

    Keras 3.15 fails there twice (``keras/src/backend/tensorflow/trainer.py``; keras-team/keras#20585):

    1. ``_maybe_symbolic_build`` reads the shapes of a first batch through
       ``strategy.reduce("MEAN", (images, labels), axis=None)``, and this strategy's reduce takes
       no tuple ("Attempt to convert a value (PerReplica...) to a Tensor"). Here the first local
       replica's batch gives the shapes (the same per-replica shapes; no collective).
    2. ``reduce_per_replica`` reduces every step output with ``strategy.reduce("MEAN", v, axis=0)``
       in multi-worker mode, and the outputs are scalars ("Invalid reduction dimension 0 for
       input with 0 dimensions"). Here ``train_step``/``test_step`` return them with shape
       ``(1,)``, so that reduce averages over the replicas. Epoch logs are unchanged: Keras reads
       them from the metrics, whose totals and counts it all-reduces.

    Only this model changes (instance attributes), and only when it was built under a
    ``MultiWorkerMirroredStrategy`` spanning several workers; calling it again does nothing.
    """
    import tensorflow as tf
    from keras import tree

    strategy = getattr(model, "_distribute_strategy", None)
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()
    ):
        return model
    if getattr(model, "_multiworker_fit_enabled", False):
        return model

    def first_local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(first_local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def rank1(value):
        if isinstance(value, (tf.Tensor, tf.Variable)) and value.shape.rank == 0:
            return tf.reshape(value, [1])
        return value

    def with_rank1_outputs(step):
        @functools.wraps(step)
        def wrapped(data):
            return tree.map_structure(rank1, step(data))

        return wrapped

    model._maybe_symbolic_build = _maybe_symbolic_build
    model.train_step = with_rank1_outputs(model.train_step)
    model.test_step = with_rank1_outputs(model.test_step)
    model._multiworker_fit_enabled = True
    return model


def shard_options(dataset, distribution: Distribution):
    """Multi-worker TensorFlow: shard by data (our pipelines are built from tensors, not files)."""
    if distribution.name not in ("multiworker", "tf"):
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def set_synchronized_bn(model: keras.Model, synchronized: bool = True) -> int:
    """Makes every BatchNormalization of ``model`` cross-replica (TensorFlow backend); returns the count."""
    if synchronized and keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Synchronized batch norm needs the TensorFlow backend (BatchNormalization(synchronized=True)); "
            f"Keras runs on {keras.backend.backend()!r}."
        )
    count = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized
            count += 1
    return count
