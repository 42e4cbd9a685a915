"""Make the small photo set the examples use from a checkout of TensorFlow's ``flower_photos``.

    python examples/data/make_subset.py SOURCE_DIR OUT_DIR [--license LICENSE.txt]
        [--train 80] [--test 40] [--size 160] [--quality 85]

``SOURCE_DIR`` holds the original archive's layout: ``<class>/<flickr id>_<secret>[_m|_n].jpg`` for
the classes daisy, dandelion, roses, sunflowers and tulips, and (unless ``--license`` names it
elsewhere) the archive's ``LICENSE.txt``, one line per photo: ``<class>/<file> CC-BY by <name> -
<flickr url>`` or ``<class>/<file> CC-BY <flickr url> - by <name>``. Nothing is downloaded.

How the subset is made (deterministic; no random state, only SHA-256 of names):

* Only photos whose ``LICENSE.txt`` line is a CC-BY credit with a Flickr address are used, and
  only those whose shorter side is at least ``--size`` pixels (so every kept photo is shrunk,
  never enlarged).
* Independence: the unit of the split is the *photographer* (the Flickr account in the credit's
  address), not the photo. Every photographer is drawn to the held-out side or the training side
  by the hash of their account name, so all photos of one photographer -- their bursts, their
  re-uploads, the same photo under two size suffixes -- are on one side only. No photographer has
  photos on both sides.
* Duplicates: one file per Flickr photo id, and one file per identical source content.
* Variety: at most ``--per-owner`` photos of one photographer per class and side.
* Each kept photo is decoded, converted to RGB, resized (Lanczos) so its shorter side is
  ``--size`` pixels, and re-encoded as a baseline JPEG of ``--quality`` without metadata, under
  its original file name at ``OUT_DIR/<train|test>/<class>/``.
* ``OUT_DIR/README.md`` records the source, the licence, the counts and the credit line of every
  kept photo; ``OUT_DIR/ATTRIBUTION.tsv`` has the same credits as a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
LICENSE_NAME = "Creative Commons Attribution 2.0 Generic (CC BY 2.0)"
LICENSE_URL = "https://creativecommons.org/licenses/by/2.0/"
SPLITS = ("train", "test")

_LINE = re.compile(r"^(?P<rel>[a-z]+/[^\s/]+\.jpg) CC-BY (?P<credit>.+?)\s*$")
_BY_FIRST = re.compile(r"^by (?P<name>.+?) - (?P<url>https?://\S+)$")
_URL_FIRST = re.compile(r"^(?P<url>https?://\S+) - by (?P<name>.+)$")
_OWNER = re.compile(r"flickr\.com/photos/(?P<owner>[^/\s]+)")


@dataclasses.dataclass(frozen=True)
class Credit:
    """One photo's line of the source ``LICENSE.txt``."""

    rel: str  # "<class>/<file>" in the source archive
    name: str  # the photographer as credited
    url: str  # the Flickr address as credited
    owner: str  # the Flickr account in that address: the unit of the train/test split

    @property
    def label(self) -> str:
        return self.rel.split("/", 1)[0]

    @property
    def filename(self) -> str:
        return self.rel.split("/", 1)[1]

    @property
    def photo_id(self) -> str:
        """The Flickr photo id, the number that starts the file name."""
        return self.filename.split("_", 1)[0]


def parse_license(text: str) -> dict[str, Credit]:
    """The CC-BY credits of ``LICENSE.txt``, keyed by ``<class>/<file>``; other lines are ignored."""
    credits: dict[str, Credit] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        credit = match["credit"]
        found = _BY_FIRST.match(credit) or _URL_FIRST.match(credit)
        if not found:
            continue
        owner = _OWNER.search(found["url"])
        if not owner:
            continue
        name = " ".join(found["name"].split())
        credits[match["rel"]] = Credit(match["rel"], name, found["url"], owner["owner"].lower())
    return credits


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def owner_split(owner: str, test_fraction: float = 1 / 3) -> str:
    """The side a photographer's photos all go to, from the hash of their account alone."""
    return "test" if _hash("split:" + owner) % 10_000 < test_fraction * 10_000 else "train"


def choose(
    credits: dict[str, Credit],
    usable: set[str],
    content_key: dict[str, str],
    counts: dict[str, int],
    per_owner: int = 3,
    test_fraction: float = 1 / 3,
) -> dict[str, dict[str, list[Credit]]]:
    """``{split: {class: [credit, ...]}}``: ``counts[split]`` photos per class, photographers never on both sides.

    ``usable`` are the ``rel`` names that may be picked (large enough, decodable); ``content_key``
    maps a ``rel`` to the hash of its file, so identical files count as one photo.
    """
    chosen: dict[str, dict[str, list[Credit]]] = {s: {c: [] for c in CLASSES} for s in SPLITS}
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    ordered = sorted((c for c in credits.values() if c.rel in usable), key=lambda c: (_hash("order:" + c.rel), c.rel))
    per: dict[tuple[str, str, str], int] = defaultdict(int)
    for credit in ordered:
        split = owner_split(credit.owner, test_fraction)
        picked = chosen[split].get(credit.label)
        if picked is None or len(picked) >= counts[split]:
            continue
        key = (split, credit.label, credit.owner)
        if per[key] >= per_owner or credit.photo_id in seen_ids or content_key[credit.rel] in seen_content:
            continue
        picked.append(credit)
        per[key] += 1
        seen_ids.add(credit.photo_id)
        seen_content.add(content_key[credit.rel])
    for split in SPLITS:
        for label in CLASSES:
            if len(chosen[split][label]) < counts[split]:
                raise ValueError(f"only {len(chosen[split][label])} {split} photos of {label} (wanted {counts[split]})")
            chosen[split][label].sort(key=lambda c: c.filename)
    return chosen


def shrink(data: bytes, size: int, quality: int) -> bytes:
    """JPEG bytes of the photo with its shorter side resized to ``size`` (RGB, no metadata)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        target = (max(size, round(width * scale)), max(size, round(height * scale)))
        image = image.resize(target, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _shorter_side(data: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return min(image.size)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def readme(chosen: dict[str, dict[str, list[Credit]]], args: argparse.Namespace, total_bytes: int) -> str:
    owners = {s: {c.owner for cs in chosen[s].values() for c in cs} for s in SPLITS}
    lines = [
        "# flowers: a small photo set for the examples",
        "",
        f"{len(CLASSES)} classes of flower photos ({', '.join(CLASSES)}), a subset of TensorFlow's",
        "`flower_photos` archive (the `tf_flowers` data set): photos taken by Flickr users and published under",
        f"the {LICENSE_NAME} licence, {LICENSE_URL}.",
        "",
        "## Licence and attribution",
        "",
        "The source archive's `LICENSE.txt` says: all images in this archive are licensed under the Creative",
        f"Commons By-Attribution License, {LICENSE_URL}; the photographers are listed, and they are to be",
        "credited for any use as per the license. Every photo here is credited below (and in",
        "`ATTRIBUTION.tsv`) with the photographer's name and Flickr address exactly as in that file.",
        "Changes made to every photo: resized so that its shorter side is "
        f"{args.size} pixels and re-encoded as JPEG (quality {args.quality}, metadata dropped).",
        "",
        "## Counts",
        "",
        "| class | train | test |",
        "|---|---|---|",
    ]
    for label in CLASSES:
        lines.append(f"| {label} | {len(chosen['train'][label])} | {len(chosen['test'][label])} |")
    n_train = sum(len(v) for v in chosen["train"].values())
    n_test = sum(len(v) for v in chosen["test"].values())
    lines += [
        f"| total | {n_train} | {n_test} |",
        "",
        f"{total_bytes / 1e6:.2f} MB of JPEG in all. Photographers: {len(owners['train'])} in train, "
        f"{len(owners['test'])} in test, {len(owners['train'] & owners['test'])} in both.",
        "",
        "## How it was made",
        "",
        "By `examples/data/make_subset.py` (its docstring has the details) from a checkout of the original",
        "archive's files (where those came from: examples/data/README.md), with",
        "",
        "    python examples/data/make_subset.py SOURCE_DIR examples/data/flowers "
        f"--train {args.train} --test {args.test} --size {args.size} --quality {args.quality} "
        f"--per-owner {args.per_owner}",
        "",
        "The train/test split is by photographer (Flickr account): all photos of one photographer are on",
        "one side, so the held-out photos are independent of the training photos. One file per Flickr",
        f"photo id; at most {args.per_owner} photos of one photographer per class and side; only photos",
        f"at least {args.size} pixels on their shorter side.",
        "",
        "## Credits",
        "",
        "Each line: file here, original file in the archive, photographer and Flickr address as credited, licence.",
        "",
    ]
    for split in SPLITS:
        for label in CLASSES:
            for c in chosen[split][label]:
                lines.append(f"- `{split}/{label}/{c.filename}` ({c.rel}): by {c.name}, {c.url}, CC BY 2.0")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with <class>/*.jpg of flower_photos")
    parser.add_argument("out", type=Path, help="output folder (created; must not exist or be empty)")
    parser.add_argument("--license", type=Path, default=None, help="LICENSE.txt (default: SOURCE/LICENSE.txt)")
    parser.add_argument("--train", type=int, default=80, help="training photos per class")
    parser.add_argument("--test", type=int, default=40, help="held-out photos per class")
    parser.add_argument("--size", type=int, default=160, help="shorter side in pixels")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    parser.add_argument("--per-owner", type=int, default=3, help="photos of one photographer per class and side")
    args = parser.parse_args(argv)

    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    license_path = args.license or args.source / "LICENSE.txt"
    credits = parse_license(license_path.read_text(encoding="utf-8"))
    usable: set[str] = set()
    content_key: dict[str, str] = {}
    for rel in sorted(credits):
        path = args.source / rel
        if not path.is_file():
            continue
        data = path.read_bytes()
        content_key[rel] = hashlib.sha256(data).hexdigest()
        try:
            if _shorter_side(data) >= args.size:
                usable.add(rel)
        except Exception as error:  # noqa: BLE001 - an undecodable source photo is just not used
            print(f"skipping {rel}: {error}", file=sys.stderr)
    print(f"{len(credits)} credited photos, {len(content_key)} found, {len(usable)} usable", file=sys.stderr)

    chosen = choose(credits, usable, content_key, {"train": args.train, "test": args.test}, args.per_owner)
    total = 0
    attribution = ["split\tclass\tfile\tsource\tphotographer\turl\tlicense"]
    for split in SPLITS:
        for label in CLASSES:
            for c in chosen[split][label]:
                data = shrink((args.source / c.rel).read_bytes(), args.size, args.quality)
                _write_atomic(args.out / split / label / c.filename, data)
                total += len(data)
                attribution.append(f"{split}\t{label}\t{c.filename}\t{c.rel}\t{c.name}\t{c.url}\tCC-BY-2.0")
    _write_atomic(args.out / "ATTRIBUTION.tsv", ("\n".join(attribution) + "\n").encode())
    _write_atomic(args.out / "README.md", readme(chosen, args, total).encode())
    print(
        f"wrote {sum(len(v) for s in chosen.values() for v in s.values())} photos, {total / 1e6:.2f} MB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
