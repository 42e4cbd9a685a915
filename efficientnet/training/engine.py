"""``train`` and ``evaluate``: a recipe, a model and image data through Keras' own ``fit``.

A run directory (``out_dir``) holds everything a run leaves behind:

- ``checkpoint/``: the last finished epoch — model and optimizer state
  (``train_state.weights.h5``), the EMA averages (``ema.npz``) and ``state.json``
  (epoch, history, settings) — written atomically at every epoch end, so ``resume=True``
  (``--resume``) continues exactly where a killed run stopped;
- ``history.csv`` (Keras' ``CSVLogger``), ``logs/`` (TensorBoard), ``curves.png``;
- ``model.weights.h5``: the final weights (the EMA average where the recipe keeps one) in the
  keras-applications layout, which loads with ``EfficientNetLite0(weights=path, classes=N)``;
- ``classes.json`` (class names in label order) and ``run.json`` (model, image size, recipe, and
  ``data_config``: the run's :class:`~efficientnet.preprocessing.DataConfig`, which ``evaluate``,
  ``load_run`` and ``efficientnet predict --run`` read back);
- ``.lock``: ``train`` holds an exclusive ``flock`` on it (and writes its PID there) while it runs.

``run.json`` is the run's manifest (``"efficientnet_run": 1``, the model and class names), written
before anything else: ``train`` writes only into a new or empty directory or, with ``resume=True``,
a run of the same model and classes; never into, or around, the data folders. A run that fails
before its first checkpoint removes what it wrote.

Every epoch's shuffle, crops, augmentation and dropout masks are seeded from ``(seed, epoch)``;
each epoch is one ``model.fit(initial_epoch=e, epochs=e + 1)`` call on a pipeline built for it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from ..config import Variant, get_variant
from .recipes import Recipe
from .recipes import recipe as get_recipe

__all__ = [
    "TrainResult",
    "EvalResult",
    "RunError",
    "build_classifier",
    "train",
    "evaluate",
    "load_run",
    "run_data_config",
    "eval_data_config",
]

CHECKPOINT_DIR = "checkpoint"
WEIGHTS_FILE = "model.weights.h5"
CLASSES_FILE = "classes.json"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
_OWN_TEMPORARY = (".tmp-", ".checkpoint-", ".old-checkpoint-")  # what a killed train may leave (recovered)
RUN_MARKER = "efficientnet_run"  # run.json's marker: {"efficientnet_run": 1, ...}
_DEFAULT = object()
# Test hook: seconds to sleep between the steps of a checkpoint write (widens the window that the
# kill -9 trials of tests/test_kill_resume.py hit); unset or empty in normal use.
CHECKPOINT_DELAY_ENV = "EFFICIENTNET_TEST_CHECKPOINT_DELAY"


class RunError(ValueError):
    """A run directory that cannot be written, resumed or read as asked."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (final weights in place) and its record."""

    model: keras.Model
    history: dict[str, list[float]]
    class_names: tuple[str, ...]
    image_size: int
    recipe: Recipe
    out_dir: str | None = None

    @property
    def weights_path(self) -> str | None:
        return os.path.join(self.out_dir, WEIGHTS_FILE) if self.out_dir else None


@dataclass
class EvalResult:
    """Top-1/top-k accuracy, per-class accuracy and the confusion matrix (rows: true, columns: predicted)."""

    top1: float
    top5: float | None
    loss: float
    per_class: dict[str, float]
    confusion: np.ndarray
    class_names: tuple[str, ...]
    num_images: int
    files: dict[str, str] = field(default_factory=dict)
    probabilities: np.ndarray | None = None  # (images, classes), in file order

    def to_dict(self) -> dict:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "num_images": self.num_images,
            "per_class": self.per_class,
            "class_names": list(self.class_names),
            "confusion": self.confusion.tolist(),
        }

    def __str__(self) -> str:
        lines = [f"{self.num_images} images: top-1 {self.top1:.2%}" + (f", top-5 {self.top5:.2%}" if self.top5 else "")]
        totals = self.confusion.sum(1) if self.confusion.size else [1] * len(self.per_class)
        lines += [
            f"  {name:<24s} {acc:7.2%}" if total else f"  {name:<24s} no images"
            for (name, acc), total in zip(self.per_class.items(), totals)
        ]
        return "\n".join(lines)


# --- models ---------------------------------------------------------------------------------


def build_classifier(
    model: str | Variant,
    num_classes: int,
    *,
    weights: str | None = None,
    recipe: Recipe | None = None,
) -> keras.Model:
    """A named EfficientNet with a new ``num_classes`` classifier, the recipe's regularisation and BN momentum.

    The layer names and order equal ``EfficientNetXX(weights=None, classes=num_classes)``, so the
    trained weights load there by name or position; ``weights`` (e.g. ``"imagenet"``) initialise the
    backbone. With the recipe's ``zero_head`` (the default) the new classifier starts at zero (uniform
    predictions, as BiT's fine-tuning does): the reference initialiser scales with 1/classes and gives a
    few-class head logits in the tens; ``zero_head=False`` keeps that reference initialiser.
    When ``weights`` is a file whose classifier has this shape (e.g. a run's ``model.weights.h5``
    on the same classes), that trained classifier is loaded too, so training continues from it;
    a file with a classifier of another size warns that the classifier starts anew.
    The input size is free (``(None, None, 3)``) so training may change it.
    """
    from ..builder import EfficientNet, add_head
    from ..remat import RematModel

    rec = recipe or get_recipe("finetune")
    variant = get_variant(model) if isinstance(model, str) else model
    kwargs = dict(
        drop_connect_rate=rec.drop_connect_rate,
        bn_momentum=rec.bn_momentum,
        input_shape=(None, None, 3),
    )
    dropout = variant.dropout if rec.dropout_rate is None else rec.dropout_rate
    backbone = EfficientNet(variant, include_top=False, weights=weights, **kwargs)
    outputs = add_head(
        backbone.output,
        include_top=True,
        pooling=None,
        classes=num_classes,
        dropout_rate=dropout,
        classifier_activation="softmax",
    )
    net = (RematModel if rec.remat else keras.Model)(backbone.inputs, outputs, name=variant.name)
    if rec.zero_head:
        head = net.get_layer("predictions")
        head.kernel.assign(np.zeros(tuple(head.kernel.shape), keras.backend.standardize_dtype(head.kernel.dtype)))
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        _start_classifier(net, os.fspath(weights), num_classes)
    return net


def _start_classifier(net: keras.Model, path: str, num_classes: int) -> None:
    """Loads the classifier of the weights file ``path`` into ``net`` when its shape fits, else says why not."""
    from ..weights.loader import file_classifier

    found = file_classifier(path)
    if found is None:  # a backbone-only file: the new classifier is expected
        return
    kernel, bias = found
    head = net.get_layer("predictions")
    if tuple(kernel.shape) == tuple(head.kernel.shape) and tuple(bias.shape) == tuple(head.bias.shape):
        head.set_weights([kernel, bias])
        return
    warnings.warn(
        f"{path} holds a classifier for {kernel.shape[-1]} classes but the data has {num_classes}: only the "
        f"backbone is loaded and a new {num_classes}-class classifier is trained from the start.",
        stacklevel=3,
    )


def _num_outputs(model: keras.Model) -> int:
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2:
        raise ValueError(
            f"train/evaluate need a classifier with one (batch, classes) output; {model.name!r} outputs {shape}."
        )
    return int(shape[-1])


def _seed_generators(model: keras.Model):
    for layer in model._flatten_layers(include_self=True):
        yield from getattr(layer, "_seed_generators", ())


def _reseed(model: keras.Model, seed: int) -> None:
    """Sets every dropout/stochastic-depth random state of ``model`` from ``seed`` (reproducible epochs)."""
    for i, generator in enumerate(_seed_generators(model)):
        state = generator.state
        generator.state.assign(keras.ops.cast(keras.ops.convert_to_tensor([seed, i]), state.dtype))


def _set_trainable(model: keras.Model, *, head_only: bool, freeze_bn: bool) -> None:
    for layer in model._flatten_layers(include_self=False):
        if layer._layers:  # containers follow their children
            continue
        if head_only:
            layer.trainable = layer.name == "predictions"
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = not freeze_bn
        else:
            layer.trainable = True


_BLOCK = re.compile(r"^(block\d+[a-z]+)_")


def _is_stochastic_depth(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Dropout)
        and layer.name.endswith("drop")
        and tuple(getattr(layer, "noise_shape", None) or ())[1:] == (1, 1, 1)
    )


def _apply_recipe_to_model(model: keras.Model, rec: Recipe) -> dict[str, float]:
    """Gives a ``keras.Model`` passed to :func:`train` the recipe's BN momentum, dropout and stochastic depth.

    Returns the settings applied; warns naming those the model has no layer for.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False) if not layer._layers]
    applied: dict[str, float] = {}
    missing: list[str] = []
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = float(rec.bn_momentum)
    if batch_norms:
        applied["bn_momentum"] = rec.bn_momentum
    if rec.dropout_rate is not None:
        from .progressive import set_dropout

        if set_dropout(model, rec.dropout_rate):
            applied["dropout_rate"] = rec.dropout_rate
        else:
            missing.append(f"dropout_rate={rec.dropout_rate} (no 'top_dropout' layer)")
    drops = [layer for layer in layers if _is_stochastic_depth(layer)]
    # The builder's naming: blocks ``block{stage}{letter}_*`` in order; block b of N drops rate * b / N
    # (a residual block has a ``*_drop`` layer; block 0 and blocks without a skip have none).
    blocks = list(dict.fromkeys(m.group(1) for layer in layers if (m := _BLOCK.match(layer.name))))
    index = {name: b for b, name in enumerate(blocks)}
    if drops and all(layer.name[: -len("_drop")] in index for layer in drops):
        for layer in drops:
            layer.rate = float(rec.drop_connect_rate) * index[layer.name[: -len("_drop")]] / len(blocks)
        applied["drop_connect_rate"] = rec.drop_connect_rate
    elif rec.drop_connect_rate > 0:
        missing.append(f"drop_connect_rate={rec.drop_connect_rate} (no 'block*_drop' layers)")
    if missing:
        warnings.warn(
            f"train() could not apply the {rec.name!r} recipe's {', '.join(missing)} to the Keras model "
            f"{model.name!r}; it trains with its own. Build it with these settings to follow the recipe.",
            stacklevel=3,
        )
    model.train_function = model.test_function = model.predict_function = None
    return applied


# --- data -------------------------------------------------------------------------------------


def _source(data, *, class_names=None, on_bad_file="skip", what="training"):
    from . import data as data_lib

    if data is None:
        return None
    if isinstance(data, (data_lib.ImageFolder, data_lib.TensorSource, data_lib.MixedSource)):
        return data
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        if class_names is None:
            raise ValueError(f"A tf.data {what} dataset needs class_names= (a list of names or the number of classes).")
        return data_lib.tensor_source(data, class_names)
    if isinstance(data, (str, os.PathLike)):
        return data_lib.scan_image_folder(data, class_names=class_names, on_bad_file=on_bad_file)
    raise TypeError(
        f"{what.capitalize()} data must be an image folder path or a tf.data.Dataset of (image, label), "
        f"got {type(data).__name__}."
    )


# --- checkpoints ------------------------------------------------------------------------------


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:  # reads it without changing it (os.umask is process-wide)
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(path: str, directory: bool = False) -> None:
    """Gives a ``mkstemp``/``mkdtemp`` file or directory (0600/0700) the mode ``open``/``mkdir`` would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _atomic_write(path: str, write, suffix: str = ".partial") -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it over ``path``."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        _publish_mode(tmp)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    _atomic_write(path, write)


def _checkpoint_pause() -> None:
    """The test hook between checkpoint steps (see ``CHECKPOINT_DELAY_ENV``)."""
    delay = os.environ.get(CHECKPOINT_DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def _save_checkpoint(out_dir: str, model: keras.Model, ema, state: dict) -> None:
    """Writes ``checkpoint/`` as a whole: a new directory is filled, then swapped in by renames.

    A kill at any point leaves the previous checkpoint or the new one (``_recover_checkpoint``
    finishes an interrupted swap); a failed write (a full disk) leaves the previous one and says so.
    """
    final = os.path.join(out_dir, CHECKPOINT_DIR)
    tmp = None
    try:
        tmp = tempfile.mkdtemp(prefix=".checkpoint-", dir=out_dir)
        _publish_mode(tmp, directory=True)
        _checkpoint_pause()
        model.save_weights(os.path.join(tmp, "train_state.weights.h5"))
        _checkpoint_pause()
        if ema is not None:
            np.savez(os.path.join(tmp, "ema.npz"), **ema.state())
            _checkpoint_pause()
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f, indent=1)
        _checkpoint_pause()
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        previous = _read_state(out_dir) if os.path.isdir(final) else None
        kept = (
            f"the previous checkpoint (epoch {previous['epoch']}) in {final!r} is kept and loads with --resume"
            if previous is not None
            else "there is no previous checkpoint"
        )
        if exc.errno == errno.ENOSPC:
            reason = "the disk is full"
        else:
            reason = exc.strerror or str(exc)
        error = OSError(
            f"Could not write the checkpoint of epoch {state['epoch']} in {out_dir!r} ({reason}); {kept}. "
            "Free space (or fix the directory) and continue with --resume."
        )
        error.errno = exc.errno
        raise error from exc
    old = None
    if os.path.exists(final):
        old = tempfile.mkdtemp(prefix=".old-checkpoint-", dir=out_dir)
        os.rmdir(old)
        os.replace(final, old)
        _checkpoint_pause()
    os.replace(tmp, final)
    if old is not None:
        _checkpoint_pause()
        shutil.rmtree(old, ignore_errors=True)


def _recover_checkpoint(out_dir: str) -> None:
    """A crash between the two renames leaves ``.old-checkpoint-*`` and no ``checkpoint``: put it back."""
    final = os.path.join(out_dir, CHECKPOINT_DIR)
    olds = sorted(e for e in os.listdir(out_dir) if e.startswith(".old-checkpoint-"))
    if not os.path.exists(final) and olds:
        os.replace(os.path.join(out_dir, olds[-1]), final)
    for name in os.listdir(out_dir):
        if name.startswith((".checkpoint-", ".old-checkpoint-")):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
        elif name.startswith(".tmp-") and name.endswith((".partial", ".png")):
            os.unlink(os.path.join(out_dir, name))


def _read_state(out_dir: str) -> dict | None:
    path = os.path.join(out_dir, CHECKPOINT_DIR, "state.json")
    start_over = (
        f"Delete {os.path.join(out_dir, CHECKPOINT_DIR)!r} to train this run again from the start, "
        "or train into a new --out directory"
    )
    if not os.path.exists(path):
        if os.path.isdir(os.path.dirname(path)) and os.listdir(os.path.dirname(path)):
            raise RunError(f"The checkpoint of {out_dir!r} is incomplete: {path!r} is missing. {start_over}.")
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        int(state["epoch"]), int(state["epochs"]), dict(state["history"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(
            f"The checkpoint of {out_dir!r} is damaged: {path!r} cannot be read ({exc}). {start_over}."
        ) from None
    return state


# --- train ------------------------------------------------------------------------------------


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _optional_writers() -> tuple[bool, bool]:
    """Whether TensorBoard logs and ``curves.png`` can be written; warns, before training, if not."""
    available = []
    for module, what in (("tensorboard", "no TensorBoard logs in logs/"), ("matplotlib", "no curves.png")):
        try:
            __import__(module)
            available.append(True)
        except ImportError:
            warnings.warn(f"{module} is not installed: {what} (pip install {module}).", stacklevel=4)
            available.append(False)
    return available[0], available[1]


class _RunScope:
    """The run directory one :func:`train` call writes: checked, created, locked, and cleaned up.

    ``open`` creates the directory (or checks an existing one), takes an exclusive ``flock`` on
    ``.lock`` (holding this process's PID) and returns the checkpoint state to resume from. On
    leaving, the lock is released; if the call failed before its first checkpoint, what it added
    is removed (the whole directory if it created it).
    """

    def __init__(self) -> None:
        self.path: str | None = None
        self.created: str | None = None  # the topmost directory this call created
        self.before: set[str] = set()
        self.keep = False
        self._lock_fd: int | None = None
        self._lock_path: str | None = None  # the lock file, if this call created it

    def __enter__(self) -> _RunScope:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if self.path is None:
            return
        try:
            if kind is not None and not self.keep:
                self._remove_own()
        finally:
            self._unlock()

    def open(self, out_dir: str, *, resume: bool, data_dirs, model: str | None, names) -> dict | None:
        real = os.path.realpath(out_dir)
        for data in data_dirs:
            folder = os.path.realpath(os.fspath(data))
            if _inside(real, folder) or _inside(folder, real):
                where = "is" if real == folder else ("is inside" if _inside(real, folder) else "contains")
                raise RunError(
                    f"The run directory {out_dir!r} {where} the data folder {os.fspath(data)!r}: its checkpoint/ "
                    "and logs/ would be read as classes. Choose an --out outside the data."
                )
        if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
            raise RunError(f"{out_dir!r} exists and is not a directory: choose a directory for the run (--out).")
        if not os.path.isdir(out_dir):
            if resume:
                raise RunError(f"Nothing to resume: {out_dir!r} does not exist. Start without --resume.")
            top = real
            while not os.path.isdir(os.path.dirname(top)) and os.path.dirname(top) != top:
                top = os.path.dirname(top)
            try:
                os.makedirs(out_dir)
            except OSError as exc:
                raise RunError(
                    f"Cannot create the run directory {out_dir!r}: {exc.strerror or exc}. Choose a writable place."
                ) from None
            self.created = top
        else:  # a directory that is not a run is refused before anything (the lock file too) is written in it
            entries = {e for e in os.listdir(out_dir) if e != LOCK_FILE and not e.startswith(_OWN_TEMPORARY)}
            if entries and not _is_run(out_dir):
                _refuse_non_run(out_dir, entries)
        self._lock(out_dir)
        self.path = out_dir
        _recover_checkpoint(out_dir)
        self.before = set(os.listdir(out_dir))
        return self._check(out_dir, resume, model, names)

    def _check(self, out_dir: str, resume: bool, model: str | None, names) -> dict | None:
        entries = self.before - {LOCK_FILE}
        if not entries:
            if resume:
                raise RunError(f"Nothing to resume in {out_dir!r}: it is empty. Start without --resume.")
            return None
        if not _is_run(out_dir):
            _refuse_non_run(out_dir, entries)
        manifest = _read_manifest(out_dir)
        state = _read_state(out_dir)
        finished = os.path.isfile(os.path.join(out_dir, WEIGHTS_FILE))
        if state is not None and not resume:
            raise RunError(
                f"{out_dir!r} already holds a run (finished epoch {state['epoch']} of {state['epochs']}). "
                "Pass resume=True (--resume) to continue it, or choose another output directory."
            )
        if state is None and finished:
            raise RunError(
                f"{out_dir!r} holds a finished run ({WEIGHTS_FILE}) without its {CHECKPOINT_DIR}/: it cannot be "
                "resumed, and is not overwritten. Choose another --out."
            )
        if state is None and not resume:
            raise RunError(
                f"{out_dir!r} holds a run that stopped before its first checkpoint. Pass --resume to start it "
                "again from epoch 0, or choose another --out."
            )
        if manifest is not None:
            run_model = manifest.get("model") or manifest.get("model_name")
            run_names = manifest.get("class_names")
            if run_names is None and os.path.isfile(os.path.join(out_dir, CLASSES_FILE)):
                with open(os.path.join(out_dir, CLASSES_FILE)) as f:
                    run_names = json.load(f)
            if run_model != model:
                raise RunError(
                    f"Cannot resume: the run in {out_dir!r} trains {run_model!r}, not {model!r}. Resume with "
                    f"--model {run_model}, or choose another --out."
                )
            if run_names is not None and list(run_names) != list(names):
                raise RunError(
                    f"Cannot resume: the run in {out_dir!r} has the classes {list(run_names)}, the data "
                    f"{list(names)}. Resume on the run's data, or choose another --out."
                )
        return state

    def _lock(self, out_dir: str) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        path = os.path.join(out_dir, LOCK_FILE)
        existed = os.path.exists(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise RunError(f"Cannot write in the run directory {out_dir!r}: {exc.strerror or exc}.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise RunError(
                f"{out_dir!r} is in use by another train process"
                + (f" (PID {holder})" if holder else "")
                + ": wait for it to finish, or choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self._lock_path = None if existed else path

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            import fcntl

            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_own(self) -> None:
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - (self.before - {LOCK_FILE}):
            path = os.path.join(self.path, name)
            if name == LOCK_FILE:
                if self._lock_path is not None:  # ours: unlinked while still held
                    os.unlink(path)
            elif os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _is_run(out_dir: str) -> bool:
    """A run manifest, a checkpoint, or a ``run.json`` beside final weights (runs from before the marker)."""
    return (
        _read_manifest(out_dir) is not None
        or os.path.isfile(os.path.join(out_dir, CHECKPOINT_DIR, "state.json"))
        or (os.path.isfile(os.path.join(out_dir, RUN_FILE)) and os.path.isfile(os.path.join(out_dir, WEIGHTS_FILE)))
    )


def _refuse_non_run(out_dir: str, entries) -> None:
    listing = ", ".join(sorted(entries)[:5]) + (", …" if len(entries) > 5 else "")
    raise RunError(
        f"{out_dir!r} is not empty and is not a training run (no {RUN_FILE} manifest; it holds {listing}). "
        "train writes only into a new or empty directory, or resumes a run of the same model: choose another --out."
    )


def _read_manifest(out_dir: str) -> dict | None:
    """``run.json`` if it is this library's run manifest (has the marker), else ``None``."""
    path = os.path.join(out_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) and run.get(RUN_MARKER) == 1 else None


def _compile(model, rec: Recipe, steps_per_epoch, global_batch, epochs, num_classes):
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
    optimizer = rec.optimizer(steps_per_epoch, global_batch, epochs)
    model.compile(optimizer=optimizer, loss=rec.loss(), metrics=metrics)
    optimizer.build(model.trainable_variables)


def train(
    model: str | keras.Model,
    train_data,
    *,
    recipe: str | Recipe = "finetune",
    epochs: int | None = None,
    batch_size: int | None = None,
    image_size: int | None = None,
    val_data=None,
    val_split: float | None = None,
    out_dir: str | os.PathLike | None = None,
    strategy=None,
    weights=_DEFAULT,
    class_names: Sequence[str] | int | None = None,
    seed: int = 0,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: str | int = "auto",
    cache: str | None = None,
    on_bad_file: str = "skip",
    deterministic: bool = False,
    progressive=None,
    synchronized_bn: bool = False,
    **recipe_overrides,
) -> TrainResult:
    """Trains a classifier with a recipe, through ``model.fit``.

    Args:
        model: a variant name (``"efficientnet-lite0"``, ``"b3"``, ``"efficientnetv2-s"``), built
            with a new classifier for the data's classes (see :func:`build_classifier`), or a Keras
            classifier that takes raw 0–255 RGB images (the library's models do).
        train_data: an image folder (one sub-folder per class) or a ``tf.data.Dataset`` of single
            ``(image, integer label)`` pairs (then ``class_names`` is required).
        recipe: ``"finetune"`` (default), ``"efficientnet"``, ``"efficientnetv2"`` or a :class:`Recipe`;
            ``**recipe_overrides`` change its fields (``learning_rate`` is an alias of
            ``base_learning_rate``).
        epochs, batch_size, image_size: default to the recipe's and the variant's; ``batch_size``
            is the global batch (the learning rate scales with it where the recipe says so).
        val_data, val_split: a held-out folder/dataset, or a fraction of each training class.
        out_dir: the run directory (see the module docstring); ``None`` writes nothing.
        strategy: ``"auto"``, ``"none"`` (``None``), ``"mirrored"``, ``"multiworker"``, ``"tpu"``,
            ``"data-parallel"`` (JAX), a ``tf.distribute.Strategy`` or a ``keras.distribution``
            distribution (see :mod:`efficientnet.training.distribute`). Only the chief writes ``out_dir``.
        synchronized_bn: cross-replica batch norm (TensorFlow strategies), as the TPU recipe.
        weights: for a named model, the weights to start from (default: the recipe's). A weights
            file whose classifier fits the data's classes (a run's ``model.weights.h5`` on the same
            classes) continues from that classifier; another classifier size warns and starts a new one.
            A ``keras.Model`` is used as it is (load its weights yourself): ``weights=`` is refused there.
        seed: seeds the data order, crops, augmentation and dropout of every epoch.
        resume: continue the run in ``out_dir`` from its last finished epoch.
        callbacks: more Keras callbacks.
        cache: a file prefix to cache decoded training images in.
        on_bad_file: ``"skip"`` unreadable images with a warning, or ``"error"``.
        deterministic: make TensorFlow's kernels deterministic (bitwise-reproducible runs).
        progressive: EfficientNetV2's progressive learning. ``None`` (default): the recipe's
            (``progressive_stages``; on in ``"efficientnetv2"``, as google/automl), ending at the
            recipe's own values and the run's image size; with fewer epochs than stages it is
            skipped with a warning. ``True``: on, from automl's table for a named V2 variant (else
            from the recipe); ``False``: off; or a :class:`~efficientnet.training.progressive.ProgressiveSchedule`.
            Each stage trains at its image size, RandAugment magnitude, Mixup, CutMix and dropout;
            evaluation runs at the schedule's eval size.

    BatchNormalization follows the recipe's ``freeze_bn`` (``--freeze-bn``/``--no-freeze-bn``) for
    named variants and ``keras.Model`` s alike. A ``keras.Model`` passed in also gets the recipe's
    ``bn_momentum`` (every BatchNormalization), ``dropout_rate`` (its ``top_dropout`` layer, when
    the recipe sets one) and ``drop_connect_rate`` (its stochastic-depth ``*drop`` layers, block
    ``b`` of ``N`` at ``rate * b / N`` as the builder does); a setting the model has no layer for
    is named in a warning.

    Raises:
        DatasetError: bad data (see :func:`efficientnet.training.data.scan_image_folder`), or
            labels that do not match the model's classes.
        RunError: ``out_dir`` is not a new or empty directory nor a run of the same model and classes
            to resume (``resume=True``), is inside (or holds) the data, or is in use by another
            ``train`` (a lock, ``out_dir/.lock``, is held while training); or nothing to resume.

    The run directory's manifest (``run.json``, with ``"efficientnet_run": 1``) is written before
    anything else. If the call fails before its first checkpoint, what it wrote is removed (the
    directory too, if it created it).
    """
    with _RunScope() as scope:
        return _train(
            scope,
            model,
            train_data,
            recipe=recipe,
            epochs=epochs,
            batch_size=batch_size,
            image_size=image_size,
            val_data=val_data,
            val_split=val_split,
            out_dir=out_dir,
            strategy=strategy,
            weights=weights,
            class_names=class_names,
            seed=seed,
            resume=resume,
            callbacks=callbacks,
            verbose=verbose,
            cache=cache,
            on_bad_file=on_bad_file,
            deterministic=deterministic,
            progressive=progressive,
            synchronized_bn=synchronized_bn,
            **recipe_overrides,
        )


def _train(
    scope: _RunScope,
    model: str | keras.Model,
    train_data,
    *,
    recipe: str | Recipe = "finetune",
    epochs: int | None = None,
    batch_size: int | None = None,
    image_size: int | None = None,
    val_data=None,
    val_split: float | None = None,
    out_dir: str | os.PathLike | None = None,
    strategy=None,
    weights=_DEFAULT,
    class_names: Sequence[str] | int | None = None,
    seed: int = 0,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: str | int = "auto",
    cache: str | None = None,
    on_bad_file: str = "skip",
    deterministic: bool = False,
    progressive=None,
    synchronized_bn: bool = False,
    **recipe_overrides,
) -> TrainResult:
    from . import data as data_lib
    from .optim import ExponentialMovingAverage

    if "learning_rate" in recipe_overrides:
        recipe_overrides["base_learning_rate"] = recipe_overrides.pop("learning_rate")
    variant_name = model if isinstance(model, str) else None
    rec = get_recipe(recipe, variant=variant_name, **recipe_overrides)
    epochs = rec.epochs if epochs is None else int(epochs)
    batch_size = rec.batch_size if batch_size is None else int(batch_size)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if image_size is not None and int(image_size) < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}.")

    if deterministic:
        keras.utils.set_random_seed(seed)
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

    if isinstance(model, keras.Model) and weights is not _DEFAULT:
        raise ValueError(
            "weights= applies to a variant name; a keras.Model is trained as it is. Load its weights first "
            "(model.load_weights(...)); whether its BatchNormalization stays frozen is the recipe's freeze_bn."
        )
    schedule = None
    if progressive is True and variant_name is not None:
        from .progressive import progressive_schedule

        schedule = progressive_schedule(variant_name, num_stages=rec.progressive_stages or 4)
    elif progressive is not None and progressive is not True and progressive is not False:
        schedule = progressive
    if schedule is not None:
        schedule.stages(epochs)  # refuses too few epochs before anything is built
    # progressive=None with the recipe's stages, or True for a Keras model: derived from the recipe below.
    from_recipe = schedule is None and (progressive is True or (progressive is None and rec.progressive_stages > 0))
    if from_recipe and progressive is None and epochs < rec.progressive_stages:
        warnings.warn(
            f"The {rec.name!r} recipe's progressive learning needs at least {rec.progressive_stages} epochs; "
            f"training {epochs} at its final stage's settings (progressive=False silences this).",
            stacklevel=2,
        )
        from_recipe = False

    source = _source(train_data, class_names=class_names, on_bad_file=on_bad_file)
    names = source.class_names
    if val_data is not None and val_split is not None:
        raise ValueError("Pass val_data or val_split, not both.")
    if val_split is not None:
        if not isinstance(source, data_lib.ImageFolder):
            raise ValueError("val_split needs an image folder; split a tf.data dataset yourself and pass val_data.")
        source, val_source = data_lib.split_image_folder(source, val_split, seed=seed)
    else:
        val_source = _source(val_data, class_names=names, on_bad_file=on_bad_file, what="validation")
        if val_source is not None and tuple(val_source.class_names) != tuple(names):  # a tf.data dataset's
            raise data_lib.DatasetError(
                f"The validation classes {list(val_source.class_names)} differ from the training classes {list(names)}."
            )

    from .distribute import enable_keras_fit_on_multiworker, resolve_strategy, set_synchronized_bn, shard_options

    dist = resolve_strategy(strategy)
    dist.per_replica_batch(batch_size)
    writer = out_dir is not None and dist.is_chief
    state = None
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        if writer:
            model_key = get_variant(model).name if isinstance(model, str) else getattr(model, "name", None)
            data_dirs = [d for d in (train_data, val_data) if isinstance(d, (str, os.PathLike))]
            state = scope.open(out_dir, resume=resume, data_dirs=data_dirs, model=model_key, names=names)
        else:  # another worker of a distributed run: reads the chief's checkpoint, writes nothing
            os.makedirs(out_dir, exist_ok=True)
            state = _read_state(out_dir)
            if state is not None and not resume:
                raise RunError(f"{out_dir!r} already holds a run. Pass resume=True (--resume) to continue it.")
    elif resume:
        raise RunError("resume=True needs out_dir, the run directory to continue.")
    tensorboard, matplotlib = _optional_writers() if writer else (False, False)

    with dist.scope():
        pretrained = False
        if isinstance(model, str):
            variant = get_variant(model)
            start = rec.weights if weights is _DEFAULT else weights
            pretrained = start is not None
            net = build_classifier(variant, len(names), weights=start, recipe=rec)
            default_size = rec.train_size or variant.default_size
        elif isinstance(model, keras.Model):
            net = model
            pretrained = True  # a model handed over is taken as trained (freeze_bn=None)
            side = net.input_shape[1] if net.input_shape and len(net.input_shape) == 4 else None
            default_size = rec.train_size or side or 224
            _apply_recipe_to_model(net, rec)
        else:
            raise TypeError(f"model must be a variant name or a keras.Model, got {type(model).__name__}.")
        enable_keras_fit_on_multiworker(net)  # Keras 3.15's fit under MultiWorkerMirroredStrategy
        outputs = _num_outputs(net)
        if outputs != len(names):
            raise data_lib.DatasetError(
                f"The data has {len(names)} classes ({', '.join(names[:5])}{'…' if len(names) > 5 else ''}) "
                f"but the model predicts {outputs}. Build the model with classes={len(names)} or pass a variant "
                "name to get a new classifier."
            )
        size = int(default_size if image_size is None else image_size)
        if size < 32:
            raise ValueError(f"image_size must be at least 32, got {size}.")
        steps = data_lib.steps_per_epoch(source, batch_size)
        if steps < 1:
            raise data_lib.DatasetError(
                f"The training set has {len(source)} images, fewer than one batch of {batch_size}. "
                "Lower the batch size or add images."
            )
        if synchronized_bn:
            set_synchronized_bn(net)
        if rec.l2_weight_decay:
            rec.apply_weight_decay(net)
        freeze_bn = pretrained if rec.freeze_bn is None else rec.freeze_bn
        if from_recipe:
            from .progressive import schedule_from_recipe

            schedule = schedule_from_recipe(rec, size, rec.eval_size or size, num_stages=rec.progressive_stages or 4)
            schedule.stages(epochs)
        phase = None

        def enter_phase(epoch: int) -> None:
            nonlocal phase
            head_only = epoch < rec.freeze_epochs
            if phase == head_only:
                return
            phase = head_only
            _set_trainable(net, head_only=head_only, freeze_bn=freeze_bn)
            phase_epochs = rec.freeze_epochs if head_only else epochs - rec.freeze_epochs
            _compile(net, rec, steps, batch_size, max(1, phase_epochs), len(names))

    ema = None
    if rec.ema_decay is not None:
        ema = ExponentialMovingAverage(decay=rec.ema_decay)
    history: dict[str, list[float]] = {}
    start_epoch = 0
    if state is None and resume and writer:  # a run killed before its first checkpoint starts again
        _truncate_history(os.path.join(out_dir, "history.csv"), 0)
    if state is not None:
        _check_resume(state, net, names, size, batch_size, epochs, rec, seed, schedule)
        start_epoch = int(state["epoch"])
        history = state["history"]
        if writer:
            _truncate_history(os.path.join(out_dir, "history.csv"), start_epoch)
        with dist.scope():
            enter_phase(min(start_epoch, epochs - 1))
            _load_checkpoint_part(out_dir, "train_state.weights.h5", net.load_weights, variant_name)
        if ema is not None:

            def load_ema(path: str) -> None:
                with np.load(path) as arrays:
                    ema.load_state({key: arrays[key] for key in arrays.files})

            _load_checkpoint_part(out_dir, "ema.npz", load_ema, variant_name)
    eval_size = schedule.eval_size if schedule is not None else (rec.eval_size or size)
    if writer:
        _write_run_files(out_dir, net, names, size, rec, epochs, batch_size, seed, variant_name, eval_size)

    val_ds = None
    if val_source is not None:
        val_ds = data_lib.eval_dataset(
            val_source,
            image_size=eval_size,
            batch_size=batch_size,
            data_config=eval_data_config(rec, variant_name, size, eval_size),
        )
    extra = list(callbacks)
    recipe_callbacks = [
        cb
        for cb in rec.callbacks(out_dir if writer else None, tensorboard=tensorboard)
        if not isinstance(cb, ExponentialMovingAverage)
    ]
    all_callbacks = ([ema] if ema is not None else []) + recipe_callbacks + extra

    for epoch in range(start_epoch, epochs):
        es = data_lib.epoch_seed(seed, epoch)
        with dist.scope():
            enter_phase(epoch)
        epoch_size, magnitude, mixup, cutmix = size, None, None, None
        if schedule is not None:
            from .progressive import set_dropout

            stage = schedule.stage_at(epoch, epochs)
            epoch_size, magnitude = stage.image_size, stage.randaugment_magnitude
            mixup, cutmix = stage.mixup_alpha, stage.cutmix_alpha
            if stage.dropout_rate is not None:
                set_dropout(net, stage.dropout_rate)
        ds = data_lib.train_dataset(
            source,
            image_size=epoch_size,
            batch_size=batch_size,
            seed=seed,
            epoch=epoch,
            augment=rec.augmentation_layers(es, magnitude=magnitude),
            batch_augment=rec.batch_augmentation(es, mixup_alpha=mixup, cutmix_alpha=cutmix),
            random_crop=rec.random_crop,
            crop_area_min=rec.crop_area_min,
            interpolation=rec.interpolation,
            cache=cache,
        )
        with dist.scope():
            _reseed(net, es)
            fit = net.fit(
                shard_options(ds, dist),
                initial_epoch=epoch,
                epochs=epoch + 1,
                validation_data=shard_options(val_ds, dist) if val_ds is not None else None,
                callbacks=all_callbacks,
                shuffle=False,  # the pipeline shuffles, seeded per epoch
                verbose=verbose,
            )
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        if writer:
            _save_checkpoint(
                out_dir,
                net,
                ema,
                {
                    "epoch": epoch + 1,
                    "epochs": epochs,
                    "history": history,
                    "settings": _settings(names, size, batch_size, epochs, rec, seed, schedule),
                },
            )
            scope.keep = True
        if net.stop_training:
            break

    if ema is not None:
        # A run killed after its last checkpoint resumes with no epoch left: fit never gave the EMA its model.
        ema.set_model(net)
        with dist.scope():
            ema.assign_to_model()
    if writer:
        from ..weights import save_weights

        save_weights(net, os.path.join(out_dir, WEIGHTS_FILE))
        if matplotlib:
            _plot_curves(history, os.path.join(out_dir, "curves.png"))
    return TrainResult(net, history, tuple(names), size, rec, out_dir)


def _settings(names, size, batch_size, epochs, rec: Recipe, seed: int, schedule=None) -> dict:
    import dataclasses

    return {
        "progressive": dataclasses.asdict(schedule) if schedule is not None else None,
        "class_names": list(names),
        "image_size": size,
        "batch_size": batch_size,
        "epochs": epochs,
        "seed": seed,
        "recipe": rec.to_dict(),
    }


def _truncate_history(path: str, epochs_done: int) -> None:
    """Drops the CSV rows of epochs after the checkpoint (logged by a run killed before saving)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    kept = lines[:1] + [line for line in lines[1:] if line and int(line.split(",", 1)[0]) < epochs_done]
    if kept != lines:
        _atomic_write_text(path, "\n".join(kept) + "\n")


def _load_checkpoint_part(out_dir: str, name: str, load, variant_name: str | None) -> None:
    """``load(path)`` of ``checkpoint/name``; a missing, damaged or other-model file raises a :class:`RunError`."""
    path = os.path.join(out_dir, CHECKPOINT_DIR, name)
    saved = None
    try:
        with open(os.path.join(out_dir, RUN_FILE)) as f:
            saved = json.load(f).get("model")
    except (OSError, ValueError, AttributeError):
        pass
    if saved and variant_name and get_variant(variant_name).name != saved:
        raise RunError(
            f"Cannot resume {out_dir!r} with model {get_variant(variant_name).name!r}: the run trains {saved!r}. "
            f"Resume with --model {saved} (model={saved!r}), or train the other model into a new --out directory."
        )
    if not os.path.isfile(path):
        raise RunError(
            f"The checkpoint of {out_dir!r} is incomplete: {path!r} is missing. Delete "
            f"{os.path.join(out_dir, CHECKPOINT_DIR)!r} to train this run again from the start, or train into a "
            "new --out directory."
        )
    try:
        load(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"Cannot resume {out_dir!r}: {path!r} does not load into this model ({first[:300]}). The file is damaged "
            f"or was written by another model: resume with the run's --model (run.json: {saved or 'unknown'}), or "
            f"delete {os.path.join(out_dir, CHECKPOINT_DIR)!r} to train the run again from the start."
        ) from None


def _check_resume(state, net, names, size, batch_size, epochs, rec, seed, schedule) -> None:
    saved = state.get("settings", {})
    now = _settings(names, size, batch_size, epochs, rec, seed, schedule)
    differ = [k for k in now if k != "epochs" and saved.get(k) != json.loads(json.dumps(now[k]))]
    if differ:
        details = "; ".join(f"{k}: run {saved.get(k)!r}, now {now[k]!r}" for k in differ if k != "recipe")
        if "recipe" in differ:
            details += "; the recipe differs"
        raise RunError(
            f"Cannot resume: the settings differ from the run's ({details}). Resume with the run's settings "
            "or start a new run directory."
        )


def eval_data_config(rec: Recipe, model: str | None, train_size: int, eval_size: int):
    """The :class:`~efficientnet.preprocessing.DataConfig` a run of ``model`` with ``rec`` validates and is
    evaluated with: the model's own (normalisation, crop), the recipe's interpolation, and the recipe's
    ``crop_padding`` where it sets one. The one rule behind validation, ``run.json``, ``evaluate``,
    ``predict --run`` and Noisy Student's labelling."""
    from ..preprocessing import CROP_PADDING, DataConfig, data_config

    evaluation = dict(weights="run", train_size=train_size, eval_size=eval_size, interpolation=rec.interpolation)
    if rec.crop_padding is not None:
        evaluation.update(crop_padding=rec.crop_padding, crop_fraction=None)
    if model is not None:
        return data_config(get_variant(model).name).replace(**evaluation)
    # A custom Keras model: its normalisation is its own; the papers' crop unless the recipe sets one.
    evaluation.setdefault("crop_padding", CROP_PADDING)
    evaluation.setdefault("crop_fraction", None)
    return DataConfig(model=None, normalisation=None, mean=None, std=None, **evaluation)


def _write_run_files(out_dir, net, names, size, rec, epochs, batch_size, seed, variant_name, eval_size) -> None:
    """The manifest ``run.json`` first (it marks the directory as a run), then ``classes.json``."""
    model_name = get_variant(variant_name).name if variant_name else None
    config = eval_data_config(rec, variant_name, size, eval_size)
    run = {
        RUN_MARKER: 1,
        "model": model_name,
        "model_name": net.name,
        "classes": len(names),
        "class_names": list(names),
        "image_size": size,
        "eval_size": eval_size,
        "crop_padding": config.crop_padding,
        "interpolation": config.interpolation,
        "data_config": config.to_dict(),
        "weights": WEIGHTS_FILE,
        "recipe": rec.name,
        "recipe_settings": rec.to_dict(),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
    }
    _atomic_write_text(os.path.join(out_dir, RUN_FILE), json.dumps(run, indent=1))
    _atomic_write_text(os.path.join(out_dir, CLASSES_FILE), json.dumps(list(names), indent=1))


def _plot_curves(history: dict[str, list[float]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        warnings.warn("matplotlib is not installed: no curves.png (pip install matplotlib).", stacklevel=2)
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key in (metric, f"val_{metric}"):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _save_figure(fig, path: str) -> None:
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")


# --- runs and evaluation ----------------------------------------------------------------------


def _read_run_file(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def run_data_config(run: dict):
    """The :class:`~efficientnet.preprocessing.DataConfig` a run recorded in ``run.json``.

    Runs written before ``data_config`` was recorded give theirs from ``eval_size``,
    ``crop_padding`` and ``interpolation`` (what their validation used).
    """
    from ..preprocessing import CROP_PADDING, DataConfig, data_config

    if run.get("data_config") is not None:
        return DataConfig.from_dict(run["data_config"])
    evaluation = dict(
        weights="run",
        train_size=int(run["image_size"]),
        eval_size=int(run.get("eval_size") or run["image_size"]),
        crop_padding=run.get("crop_padding", CROP_PADDING),
        crop_fraction=None,
        interpolation=run.get("interpolation", "bicubic"),
    )
    if run.get("model"):
        return data_config(run["model"]).replace(**evaluation)
    return DataConfig(model=None, normalisation=None, mean=None, std=None, **evaluation)


def load_run(run_dir: str | os.PathLike) -> tuple[keras.Model, tuple[str, ...], dict]:
    """The trained model of a run directory, its class names and its ``run.json``.

    ``run["data_config"]`` is the run's data config as a dict (filled in for older runs);
    :func:`run_data_config` turns it into a :class:`~efficientnet.preprocessing.DataConfig`.
    """
    from ..builder import EfficientNet

    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{run_dir!r} is not a training run directory (no {RUN_FILE}). Pass the --out of a train run.")
    run = _read_run_file(path)
    weights = os.path.join(run_dir, run["weights"])
    if not os.path.isfile(weights):
        raise RunError(f"The run in {run_dir!r} has not finished: {weights!r} is missing. Resume it with --resume.")
    if run.get("model") is None:
        raise RunError(f"The run in {run_dir!r} trained a custom model; load it yourself from {weights!r}.")
    with open(os.path.join(run_dir, CLASSES_FILE)) as f:
        names = tuple(json.load(f))
    run["data_config"] = run_data_config(run).to_dict()
    model = EfficientNet(run["model"], weights=weights, classes=len(names), input_shape=(None, None, 3))
    return model, names, run


def _run_beside(weights: str) -> dict | None:
    """The ``run.json`` of the run directory holding the weights file ``weights``, if it is one."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), RUN_FILE)
    if not os.path.isfile(path):
        return None
    run = _read_run_file(path)
    return run if run.get("weights") == os.path.basename(weights) else None


def evaluate(
    model: keras.Model | str,
    data,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    class_names: Sequence[str] | int | None = None,
    crop_padding: float | None = None,
    crop_fraction: float | None = None,
    interpolation: str | None = None,
    data_config=None,
    out_dir: str | os.PathLike | None = None,
    on_bad_file: str = "skip",
) -> EvalResult:
    """Top-1/top-5, per-class accuracy and the confusion matrix of a classifier on held-out data.

    ``model`` is a Keras classifier, a run directory, or a variant name with ``weights`` (a trained
    ``model.weights.h5``; ``classes.json`` beside it gives the class names). Images get the
    evaluation crop of the data config: ``data_config`` if given, else the run's (``run.json``
    of the run directory, or beside ``weights``), else the registered weight set's, else the
    papers' ``size / (size + 32)`` bicubic crop. ``image_size``, ``crop_padding`` (or a fixed
    ``crop_fraction``) and ``interpolation`` override it. A weights file outside a run directory needs ``image_size``.
    With ``out_dir``, ``confusion.png`` and ``metrics.json`` are written there.
    """
    from ..builder import EfficientNet
    from ..preprocessing import DataConfig
    from ..preprocessing import data_config as registered_config
    from ..weights.registry import registered_weight_sets
    from . import data as data_lib

    config = data_config
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(os.fspath(model)):
        model, names, run = load_run(model)
        class_names = class_names or names
        config = config or run_data_config(run)
    elif isinstance(model, str):
        if weights is None:
            raise ValueError("Evaluating a variant by name needs weights= (a trained weights file) or a run directory.")
        if config is None and weights in registered_weight_sets():
            config = registered_config(model, weights)
        elif config is None:
            run = _run_beside(weights)
            if run is not None:
                config = run_data_config(run)
            elif image_size is None:
                raise ValueError(
                    f"Cannot tell the evaluation size of {weights!r}: it is not in a training run directory "
                    f"(no {RUN_FILE} beside it naming it). Pass image_size= (--image-size) or the run directory."
                )
        if class_names is None:
            beside = os.path.join(os.path.dirname(os.path.abspath(weights)), CLASSES_FILE)
            if os.path.isfile(beside):
                with open(beside) as f:
                    class_names = tuple(json.load(f))
        if class_names is None:
            class_names = data_lib.scan_image_folder(data, check_images=False).class_names
        n = class_names if isinstance(class_names, int) else len(class_names)
        model = EfficientNet(model, weights=weights, classes=n, input_shape=(None, None, 3))
    source = _source(data, class_names=class_names, on_bad_file=on_bad_file, what="evaluation")
    names = tuple(source.class_names)
    if _num_outputs(model) != len(names):
        raise data_lib.DatasetError(
            f"The data has {len(names)} classes but the model predicts {_num_outputs(model)}. "
            "Evaluate on a folder with the training classes."
        )
    side = model.input_shape[1] if len(model.input_shape) == 4 else None
    size = int(image_size or (config.eval_size if config is not None else None) or side or 224)
    if config is None:
        config = DataConfig(
            model=None, weights=None, normalisation=None, mean=None, std=None, train_size=size, eval_size=size
        )
    if crop_padding is not None and crop_fraction is not None:
        raise ValueError("Pass crop_padding or crop_fraction, not both.")
    if crop_padding is not None:
        config = config.replace(crop_padding=crop_padding, crop_fraction=None)
    if crop_fraction is not None:
        config = config.replace(crop_padding=None, crop_fraction=crop_fraction)
    if interpolation is not None:
        config = config.replace(interpolation=interpolation)
    ds = data_lib.eval_dataset(source, image_size=size, batch_size=batch_size, one_hot=False, data_config=config)
    probs, labels = [], []
    for images, y in ds:
        probs.append(keras.ops.convert_to_numpy(model(images, training=False)))
        labels.append(np.asarray(y))
    probs = np.concatenate(probs).astype("float64")
    labels = np.concatenate(labels).astype("int64")
    n = len(names)
    predicted = probs.argmax(-1)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    top1 = float((predicted == labels).mean())
    top5 = None
    if n > 5:
        top = np.argsort(-probs, axis=-1)[:, :5]
        top5 = float((top == labels[:, None]).any(-1).mean())
    totals = confusion.sum(1)
    per_class = {
        name: float(confusion[i, i] / totals[i]) if totals[i] else float("nan") for i, name in enumerate(names)
    }
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())
    result = EvalResult(top1, top5, loss, per_class, confusion, names, int(len(labels)), probabilities=probs)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        result.files["json"] = os.path.join(out_dir, "metrics.json")
        _atomic_write_text(result.files["json"], json.dumps(result.to_dict(), indent=1))
        result.files["confusion"] = os.path.join(out_dir, "confusion.png")
        _plot_confusion(confusion, names, result.files["confusion"])
    return result


def _plot_confusion(confusion: np.ndarray, names: Sequence[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(4, 0.5 * n + 2)))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=90)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
