"""Where the examples' photo set is: 5 classes of independent Flickr flower photos (CC BY 2.0).

The set is a folder ``flowers/`` with ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, a
``README.md`` (source, licence, counts, one credit line per photo) and ``ATTRIBUTION.tsv``; it is
made by ``examples/data/make_subset.py`` from TensorFlow's ``flower_photos`` archive, split by
photographer so that no held-out photo shares a photographer with a training photo.

    from photos import CLASSES, photo_set_dir   # with examples/ on sys.path
    root = photo_set_dir()                      # e.g. root / "train" / "daisy" / "....jpg"
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CLASSES", "SET_NAME", "SPLITS", "candidate_dirs", "photo_set_dir"]

SET_NAME = "flowers"
CLASSES: tuple[str, ...] = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
SPLITS: tuple[str, ...] = ("train", "test")
ENV_VAR = "EFFICIENTNET_PHOTO_SET"

_REPO = Path(__file__).resolve().parent.parent


def candidate_dirs() -> list[Path]:
    """The places looked at, in order: ``$EFFICIENTNET_PHOTO_SET``, ``examples/data/flowers``, ``../shared/flowers``."""
    places = []
    if os.environ.get(ENV_VAR):
        places.append(Path(os.environ[ENV_VAR]))
    places += [_REPO / "examples" / "data" / SET_NAME, _REPO.parent / "shared" / SET_NAME]
    return places


def _is_set(path: Path) -> bool:
    return all((path / split / label).is_dir() for split in SPLITS for label in CLASSES)


def photo_set_dir() -> Path:
    """The first of :func:`candidate_dirs` that holds the set (every ``<split>/<class>`` folder).

    Raises ``FileNotFoundError`` naming the places looked at, and how to make the set.
    """
    places = candidate_dirs()
    for place in places:
        if _is_set(place):
            return place
    raise FileNotFoundError(
        f"no photo set at {', '.join(str(p) for p in places)}; make it with "
        "`python examples/data/make_subset.py FLOWER_PHOTOS_DIR DIR` and point "
        f"{ENV_VAR} at DIR (see examples/data/README.md)"
    )
