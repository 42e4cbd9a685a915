"""Noisy Student on real photos: a teacher trained on a few labeled photos labels the rest, a student learns from both.

The photos are the committed flower set of ``examples/finetune.py`` (``examples/data/flowers``:
independent Flickr photos, training and held-out photos by different photographers). Only a
few training photos per class keep their label (``labeled/<class>/*.jpg``); the others become a
flat folder of unlabeled images (``unlabeled/*.jpg``, shuffled and renamed: their labels are
discarded — the true classes go to ``unlabeled_truth.json`` only to score the pseudo-labels).
The held-out photos (``test/``) score every model.

1. A teacher, ``efficientnet-lite0`` from the ImageNet weights that ship with the package, is
   fine-tuned on the labeled photos (``finetune`` recipe, at a learning rate of 1e-3 rather than its 1e-4
   for teacher and students: a few epochs of 50 photos are only a dozen steps, after which a 1e-4 teacher
   is sure (top probability ≥ 0.3) of almost no unlabeled photo).
2. :func:`efficientnet.training.noisy_student` pseudo-labels the unlabeled crops with it (clean
   images, inference mode), keeps those with confidence ≥ 0.3, balances the classes to ``N``
   images each (``--per-class``, 16: about the unlabeled crops per class, not the library's
   default of the labeled crops per class, 5) and trains an equal-size student on labeled +
   pseudo-labeled crops, noised with RandAugment (2, 27), dropout and stochastic depth.
3. The controls, from the same teacher's pseudo-labels, the same student initialisation
   (``student_weights``, recorded) and the same number of steps: a student with a milder
   RandAugment (M = 9; the reference's ops use absolute pixel constants, so at M = 27 a translation
   moves 270 px and a cutout covers 216 px — more than these 128 px images), and one with
   ``noise=False`` (the paper's ablation: no RandAugment, dropout or stochastic depth).

Held-out top-1 of teacher, noisy student and student without noise is printed as a table,
written as JSON (``--json``) with the pseudo-label statistics, and plotted (``--plot``).

    python examples/noisy_student.py WORK_DIR [--data DIR] [--json noisy_student.json] [--plot noisy_student.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from photos import photo_set_dir  # noqa: E402  (the committed flower photos)


def _images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (the package's one extension list), sorted."""
    from efficientnet.preprocessing import IMAGE_EXTENSIONS

    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def split_labeled(data_dir: str | os.PathLike, labeled_per_class: int, seed: int = 0) -> dict:
    """Copies ``labeled_per_class`` photos of every ``train/<class>`` to ``labeled/<class>``, the rest to a flat
    ``unlabeled/`` folder under anonymous, shuffled names; their true classes go to ``unlabeled_truth.json``."""
    data_dir = Path(data_dir)
    rng = np.random.default_rng(seed)
    rest = []
    classes = sorted(p.name for p in (data_dir / "train").iterdir() if p.is_dir())
    for name in classes:
        files = _images(data_dir / "train" / name)
        if len(files) <= labeled_per_class:
            raise ValueError(f"{name}: {len(files)} training photos, need more than {labeled_per_class}.")
        order = rng.permutation(len(files))
        (data_dir / "labeled" / name).mkdir(parents=True, exist_ok=True)
        for i in order[:labeled_per_class]:
            shutil.copy(files[i], data_dir / "labeled" / name / files[i].name)
        rest += [(files[i], name) for i in order[labeled_per_class:]]
    (data_dir / "unlabeled").mkdir(parents=True, exist_ok=True)
    truth = {}
    for k, i in enumerate(rng.permutation(len(rest))):
        source, name = rest[i]
        target = data_dir / "unlabeled" / f"{k:05d}{source.suffix.lower()}"
        shutil.copy(source, target)
        truth[target.name] = name
    (data_dir / "unlabeled_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return {"labeled_per_class": labeled_per_class, "unlabeled": len(truth)}


def pseudo_label_stats(csv_path: str | os.PathLike, truth: dict[str, str]) -> dict:
    """Counts of ``pseudo_labels.csv`` (kept / duplicated / class full / below threshold, copies) and the
    pseudo-labels' accuracy against the discarded true classes."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    status = Counter(r["status"] for r in rows)
    used = [r for r in rows if int(r["copies"]) > 0]
    correct = lambda rs: sum(r["class"] == truth[os.path.basename(r["file"])] for r in rs)  # noqa: E731
    per_class = Counter()
    for r in used:
        per_class[r["class"]] += int(r["copies"])
    return {
        "unlabeled": len(rows),
        "kept": status.get("kept", 0),
        "duplicated": status.get("duplicated", 0),
        "class_full": status.get("class full", 0),
        "below_threshold": status.get("below threshold", 0),
        "used_images": len(used),
        "copies": sum(int(r["copies"]) for r in rows),
        "classes_kept": len(per_class),
        "copies_per_class": sorted(set(per_class.values())),
        "pseudo_label_accuracy_all": round(correct(rows) / len(rows), 4),
        "pseudo_label_accuracy_used": round(correct(used) / max(1, len(used)), 4),
    }


def run(
    data_dir: str | os.PathLike,
    *,
    teacher_epochs: int = 4,
    student_epochs: int = 3,
    student: str = "efficientnet-lite0",
    student_weights: str | None = "imagenet",
    iterations: int = 1,
    per_class: int = 40,
    image_size: int = 128,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    mild_magnitude: float = 9.0,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """Teacher, Noisy Students (RandAugment M = 27 and ``mild_magnitude``) and the student without noise on
    ``data_dir/labeled`` + ``data_dir/unlabeled``,
    each scored on ``data_dir/test``."""
    # Not ``from efficientnet.training import noisy_student``: that name is also the submodule's, and the
    # package's lazy attribute resolves to the module rather than the function.
    from efficientnet.training.noisy_student import noisy_student

    data_dir = Path(data_dir)
    truth = json.loads((data_dir / "unlabeled_truth.json").read_text())
    common = dict(
        student=student,
        student_weights=student_weights,
        iterations=iterations,
        recipe="finetune",
        student_epochs=student_epochs,
        batch_size=batch_size,
        image_size=image_size,
        per_class=per_class,
        base_learning_rate=learning_rate,
        val_data=str(data_dir / "test"),
        seed=seed,
        deterministic=True,
        verbose=verbose,
    )
    runs, seconds = {}, {}
    start = time.perf_counter()
    noisy = noisy_student(
        str(data_dir / "labeled"),
        str(data_dir / "unlabeled"),
        teacher="efficientnet-lite0",
        teacher_epochs=teacher_epochs,
        noise=True,
        out_dir=str(data_dir / "runs" / "noisy"),
        **common,
    )
    seconds["teacher + noisy student"] = round(time.perf_counter() - start, 1)
    runs["noisy"] = noisy.figures
    # The same teacher (its run directory) for the controls: a milder RandAugment, and no noise at all.
    controls = (
        ("mild_noise", {"randaugment_magnitude": mild_magnitude}, f"noisy student, RandAugment M={mild_magnitude:g}"),
        ("no_noise", False, "student without noise"),
    )
    for name, noise, label in controls:
        start = time.perf_counter()
        runs[name] = noisy_student(
            str(data_dir / "labeled"),
            str(data_dir / "unlabeled"),
            teacher=str(data_dir / "runs" / "noisy" / "teacher"),
            noise=noise,
            out_dir=str(data_dir / "runs" / name),
            **common,
        ).figures
        seconds[label] = round(time.perf_counter() - start, 1)

    figures = [{**runs["noisy"][0], "model": "teacher", "kind": "teacher", "label": "teacher (efficientnet-lite0)"}]
    labels = {"noisy": "noisy student (RandAugment M=27)", **{name: label for name, _, label in controls}}
    for name in ("noisy", "mild_noise", "no_noise"):
        for it in range(1, iterations + 1):
            figures.append(
                {
                    **runs[name][it],
                    "model": f"{name}_student{it}",
                    "kind": name,
                    "label": f"{labels[name]} {it} ({student})",
                }
            )
    stats = {
        name: [
            pseudo_label_stats(data_dir / "runs" / name / f"iteration{it}" / "pseudo_labels.csv", truth)
            for it in range(1, iterations + 1)
        ]
        for name in ("noisy", "mild_noise", "no_noise")
    }
    return {
        "teacher": "efficientnet-lite0",
        "student": student,
        "student_weights": student_weights,
        "recipe": "finetune",
        "iterations": iterations,
        "teacher_epochs": teacher_epochs,
        "student_epochs": student_epochs,
        "image_size": image_size,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "per_class": per_class,
        "threshold": 0.3,
        "seed": seed,
        "figures": figures,
        "pseudo_labels": stats,
        "mild_magnitude": mild_magnitude,
        "runs": runs,
        "run_seconds": seconds,
    }


def table(results: dict) -> str:
    """Held-out top-1 (and loss) of every model as a Markdown table."""
    lines = ["| model | held-out top-1 | held-out loss |", "|---|---:|---:|"]
    lines += [f"| {f['label']} | {f['top1']:.1%} | {f['loss']:.3f} |" for f in results["figures"]]
    return "\n".join(lines)


def stats_table(results: dict) -> str:
    """The pseudo-labels of every iteration as a Markdown table."""
    lines = [
        "| run | iteration | unlabeled | kept | duplicated | class full | below 0.3 | copies | classes "
        "| pseudo-label accuracy (used) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, its in results["pseudo_labels"].items():
        for it, s in enumerate(its, 1):
            lines.append(
                f"| {name} | {it} | {s['unlabeled']} | {s['kept']} | {s['duplicated']} | {s['class_full']} "
                f"| {s['below_threshold']} | {s['copies']} | {s['classes_kept']} "
                f"| {s['pseudo_label_accuracy_used']:.1%} |"
            )
    return "\n".join(lines)


def plot(results: dict, path: str | os.PathLike | None = None):
    """A bar chart of every model's held-out top-1; saved to ``path`` if given. Returns the figure."""
    import matplotlib

    if path is not None and "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = results["figures"]
    colours = {"teacher": "tab:blue", "noisy": "tab:orange", "mild_noise": "tab:green", "no_noise": "tab:grey"}
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = [f["label"].replace(" (", "\n(") for f in figures]
    values = [f["top1"] for f in figures]
    bars = ax.bar(
        range(len(figures)),
        values,
        color=[colours[f["kind"]] for f in figures],
    )
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.1%}", ha="center", va="bottom", fontsize=9)
    if "dataset" in results:
        ax.axhline(1 / results["dataset"]["num_classes"], color="k", lw=0.8, ls=":", label="chance")
        ax.legend(loc="lower right")
    ax.set_xticks(range(len(figures)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("held-out top-1")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Noisy Student on real photos, {results['image_size']} px")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def prepare(work_dir: str | os.PathLike, data: str | os.PathLike, labeled_per_class: int, seed: int = 0) -> dict:
    """Copies the set's ``train/`` and ``test/`` into ``work_dir``; splits ``train`` into labeled + unlabeled."""
    work_dir, data = Path(work_dir), Path(data)
    for split in ("train", "test"):
        shutil.copytree(data / split, work_dir / split)
    classes = sorted(p.name for p in (work_dir / "train").iterdir() if p.is_dir())
    counts = {s: sum(len(_images(work_dir / s / c)) for c in classes) for s in ("train", "test")}
    described = {"path": str(data), "classes": classes, "num_classes": len(classes), "images": counts}
    described.update(split_labeled(work_dir, labeled_per_class, seed=seed))
    return described


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", help="a new or empty folder for the split (labeled/, unlabeled/, test/) and runs")
    parser.add_argument("--data", help="a photo set with train/ and test/ (default: the committed flower photos)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--plot", help="save the held-out accuracy plot to this PNG")
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--student-epochs", type=int, default=3)
    parser.add_argument("--student", default="efficientnet-lite0", help="efficientnet-lite0, -lite1 or -lite2")
    parser.add_argument(
        "--student-weights", default="imagenet", help="what both students start from: imagenet or scratch"
    )
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--labeled-per-class", type=int, default=10, help="training photos per class keeping a label")
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="the recipe's 1e-4 leaves a teacher of a dozen steps unsure"
    )
    parser.add_argument("--per-class", type=int, default=40, help="N, pseudo-labeled images per class")
    parser.add_argument("--mild-magnitude", type=float, default=9.0, help="RandAugment M of the milder noisy student")
    parser.add_argument("--quick", action="store_true", help="a much smaller run (a smoke test, not the comparison)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.teacher_epochs, args.student_epochs, args.image_size, args.per_class = 2, 1, 64, 8
    weights = None if args.student_weights in ("scratch", "none", "None") else args.student_weights

    start = time.perf_counter()
    if Path(args.work_dir).exists() and any(Path(args.work_dir).iterdir()):
        parser.error(f"{args.work_dir} is not empty; give a new or empty directory")
    dataset = prepare(args.work_dir, args.data or photo_set_dir(), args.labeled_per_class, seed=args.seed)
    results = run(
        args.work_dir,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.student_epochs,
        student=args.student,
        student_weights=weights,
        iterations=args.iterations,
        per_class=args.per_class,
        image_size=args.image_size,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        mild_magnitude=args.mild_magnitude,
        seed=args.seed,
    )
    results["dataset"] = dataset
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(
        f"{dataset['num_classes']} classes: {args.labeled_per_class} labeled training photos per class, "
        f"{dataset['unlabeled']} unlabeled, {dataset['images']['test']} held-out photos"
    )
    print(table(results))
    print(stats_table(results))
    print(f"{results['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
