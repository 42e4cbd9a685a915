"""The examples' photo set (examples/photos.py, examples/data/make_subset.py).

The first group tests the subset maker and the accessor on small synthetic photos. The second
checks the set itself wherever ``photo_set_dir()`` finds it (committed, ``$EFFICIENTNET_PHOTO_SET``
or ``../shared/flowers``) and is skipped, saying so, where there is none.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MAX_BYTES = 15 * 1024 * 1024
PER_CLASS = {"train": 80, "test": 40}  # as examples/data/README.md documents


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses looks the module up while building the class
    spec.loader.exec_module(module)
    return module


make_subset = _load("examples_data_make_subset", EXAMPLES / "data" / "make_subset.py")
photos = _load("examples_photos", EXAMPLES / "photos.py")

LICENSE_TEXT = """\
All images in this archive are licensed under the Creative Commons By-Attribution License, available at:
https://creativecommons.org/licenses/by/2.0/
The photographers are listed below, thanks to all of them for making their work available.

daisy/7568630428_8cf0fc16ff_n.jpg CC-BY by A Guy Taking Pictures - https://www.flickr.com/photos/80901381@N04/7568630428/
dandelion/12094442595_297494dba4_m.jpg CC-BY https://www.flickr.com/photos/joekmartin/ - by Joe  Martin
roses/1.jpg some other licence by Someone - https://www.flickr.com/photos/x/1/
"""


def test_parse_license_reads_both_credit_forms_and_skips_the_rest():
    credits = make_subset.parse_license(LICENSE_TEXT)
    assert sorted(credits) == ["daisy/7568630428_8cf0fc16ff_n.jpg", "dandelion/12094442595_297494dba4_m.jpg"]
    a = credits["daisy/7568630428_8cf0fc16ff_n.jpg"]
    assert (a.name, a.owner, a.label, a.photo_id) == ("A Guy Taking Pictures", "80901381@n04", "daisy", "7568630428")
    assert a.url == "https://www.flickr.com/photos/80901381@N04/7568630428/"
    b = credits["dandelion/12094442595_297494dba4_m.jpg"]
    assert (b.name, b.owner, b.url) == ("Joe Martin", "joekmartin", "https://www.flickr.com/photos/joekmartin/")


def _credit(label: str, photo: str, owner: int):
    rel = f"{label}/{photo}.jpg"
    return rel, make_subset.Credit(rel, f"Owner {owner}", f"https://www.flickr.com/photos/o{owner}/", f"o{owner}")


def test_choose_splits_by_photographer_and_limits_each_photographer():
    # 24 photographers with 4 photos of every class each.
    credits = dict(_credit(c, f"{100 * o + k}_s", o) for o in range(24) for c in make_subset.CLASSES for k in range(4))
    content = {rel: rel for rel in credits}
    chosen = make_subset.choose(credits, set(credits), content, {"train": 4, "test": 2}, per_owner=1)
    owners = {s: [c.owner for cs in chosen[s].values() for c in cs] for s in make_subset.SPLITS}
    assert set(owners["train"]).isdisjoint(owners["test"])
    for split, want in (("train", 4), ("test", 2)):
        for label in make_subset.CLASSES:
            label_owners = [c.owner for c in chosen[split][label]]
            assert len(label_owners) == want and len(set(label_owners)) == want, (split, label, label_owners)
    with pytest.raises(ValueError, match="photos of"):
        make_subset.choose(credits, set(credits), content, {"train": 40, "test": 2}, per_owner=1)
    unusable = {rel for rel in credits if rel.endswith("1_s.jpg")}
    chosen = make_subset.choose(credits, set(credits) - unusable, content, {"train": 4, "test": 2}, per_owner=3)
    assert not {c.rel for s in chosen.values() for cs in s.values() for c in cs} & unusable


def test_choose_keeps_one_file_per_flickr_photo_and_per_content():
    credits, content = {}, {}
    for o in range(40):
        for k in range(6):
            label = make_subset.CLASSES[(o + k) % 5]
            for suffix in ("", "_m"):  # one Flickr photo in two sizes
                rel, credit = _credit(label, f"{100 * o + k}_s{suffix}", o)
                credits[rel] = credit
                content[rel] = rel if k < 4 else f"{o}:dup{suffix}"  # photos 4 and 5: identical files
    chosen = make_subset.choose(credits, set(credits), content, {"train": 12, "test": 6}, per_owner=10)
    picked = [c for s in chosen.values() for cs in s.values() for c in cs]
    assert len(picked) == 5 * 18
    assert len({c.photo_id for c in picked}) == len(picked)
    assert len({content[c.rel] for c in picked}) == len(picked)


def _jpeg(width: int, height: int, seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def test_shrink_resizes_the_shorter_side_and_keeps_the_aspect():
    from PIL import Image

    with Image.open(io.BytesIO(make_subset.shrink(_jpeg(90, 60, 0), 20, 85))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (30, 20))
    with Image.open(io.BytesIO(make_subset.shrink(_jpeg(40, 100, 1), 20, 85))) as image:
        assert image.size == (20, 50)


def test_main_writes_a_split_set_with_credits(tmp_path):
    source = tmp_path / "src"
    lines = []
    for o in range(30):
        for k in range(4):
            label = make_subset.CLASSES[(o + k) % 5]
            name = f"{100 * o + k}_x.jpg"
            (source / label).mkdir(parents=True, exist_ok=True)
            small = k == o % 4  # below --size: never used
            (source / label / name).write_bytes(_jpeg(10 if small else 40, 30, 100 * o + k))
            lines.append(f"{label}/{name} CC-BY by Person {o} - https://www.flickr.com/photos/p{o}/{100 * o + k}/")
    (source / "LICENSE.txt").write_text("header\n\n" + "\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert make_subset.main([str(source), str(out), "--train", "3", "--test", "2", "--size", "16"]) == 0
    files = {s: sorted(out.glob(f"{s}/*/*.jpg")) for s in ("train", "test")}
    assert [len(files["train"]), len(files["test"])] == [15, 10]
    small = {f"{100 * o + o % 4}_x.jpg" for o in range(30)}
    assert not small & {p.name for s in files.values() for p in s}
    rows = [r.split("\t") for r in (out / "ATTRIBUTION.tsv").read_text().splitlines()[1:]]
    assert sorted(f"{r[0]}/{r[1]}/{r[2]}" for r in rows) == sorted(
        str(p.relative_to(out)) for s in files.values() for p in s
    )
    owners = {s: {r[5].split("/")[4] for r in rows if r[0] == s} for s in ("train", "test")}
    assert owners["train"] and owners["test"] and owners["train"].isdisjoint(owners["test"])
    readme = (out / "README.md").read_text()
    assert "| daisy | 3 | 2 |" in readme and "CC BY 2.0" in readme
    with pytest.raises(SystemExit):  # refuses to write into a non-empty folder
        make_subset.main([str(source), str(out)])


def test_photo_set_dir_finds_the_set_from_the_environment(tmp_path, monkeypatch):
    for split in photos.SPLITS:
        for label in photos.CLASSES:
            (tmp_path / split / label).mkdir(parents=True)
    monkeypatch.setenv(photos.ENV_VAR, str(tmp_path))
    assert photos.candidate_dirs()[0] == tmp_path
    assert photos.photo_set_dir() == tmp_path
    (tmp_path / "test" / "roses").rmdir()  # an incomplete folder is not the set
    monkeypatch.setattr(photos, "_REPO", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="make_subset.py"):
        photos.photo_set_dir()


# --- the set itself ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> Path:
    try:
        return photos.photo_set_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))


def _files(root: Path) -> dict[str, dict[str, list[Path]]]:
    return {s: {c: sorted((root / s / c).glob("*.jpg")) for c in photos.CLASSES} for s in photos.SPLITS}


def test_set_counts_match_the_readme(root):
    files = _files(root)
    readme = (root / "README.md").read_text(encoding="utf-8")
    for label in photos.CLASSES:
        row = re.search(rf"^\| {label} \| (\d+) \| (\d+) \|$", readme, re.M)
        assert row, label
        documented = {"train": int(row[1]), "test": int(row[2])}
        assert documented == PER_CLASS
        assert {s: len(files[s][label]) for s in photos.SPLITS} == documented
    assert sorted(p.name for p in root.iterdir()) == ["ATTRIBUTION.tsv", "README.md", "test", "train"]
    assert all(sorted(p.name for p in (root / s).iterdir()) == sorted(photos.CLASSES) for s in photos.SPLITS)


def test_set_files_decode_as_rgb_with_a_160_pixel_shorter_side(root):
    import tensorflow as tf

    for path in sorted(root.glob("*/*/*")):
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
        assert image.shape[-1] == 3 and min(image.shape[:2]) == 160, path


def test_set_splits_share_no_file_photo_or_photographer(root):
    files = _files(root)
    digests = {s: {hashlib.sha256(p.read_bytes()).hexdigest() for ps in files[s].values() for p in ps} for s in files}
    assert len(digests["train"]) == sum(map(len, files["train"].values()))  # no duplicate inside a split either
    assert digests["train"].isdisjoint(digests["test"])
    ids = {s: [p.name.split("_")[0] for ps in files[s].values() for p in ps] for s in files}
    assert len(set(ids["train"] + ids["test"])) == len(ids["train"]) + len(ids["test"])
    rows = [r.split("\t") for r in (root / "ATTRIBUTION.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    owners = {s: {r[5].split("/")[4].lower() for r in rows if r[0] == s} for s in files}
    assert owners["train"].isdisjoint(owners["test"])


def test_set_size_and_licence(root):
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= MAX_BYTES, total
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "CC BY 2.0" in readme and "https://creativecommons.org/licenses/by/2.0/" in readme
    rows = [r.split("\t") for r in (root / "ATTRIBUTION.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    on_disk = sorted(str(p.relative_to(root)) for p in root.glob("*/*/*.jpg"))
    assert sorted(f"{r[0]}/{r[1]}/{r[2]}" for r in rows) == on_disk  # every photo credited, once
    assert all(r[4] and r[5].startswith("https://www.flickr.com/photos/") and r[6] == "CC-BY-2.0" for r in rows)
    assert all(f"`{name}`" in readme for name in on_disk)
