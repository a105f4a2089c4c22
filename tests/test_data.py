"""Tests of lib.data and lib.augment: the shared Omniglot and beluga data, fixture folders in
the real layouts of the other sets, error messages, download/extract safety, the cache."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from lib import augment, data
from lib.data import CorruptDataError, DataError, DataNotFoundError, load_dataset


@pytest.fixture(scope="session")
def omniglot(shared_data: Path) -> data.Dataset:
    return load_dataset("omniglot", root=shared_data)


@pytest.fixture(scope="session")
def beluga(shared_data: Path) -> data.Dataset:
    """Decoded once per session (the slow part); later loads hit the cache."""
    start = time.perf_counter()
    dataset = load_dataset("beluga", root=shared_data)
    print(f"\nbeluga first load: {time.perf_counter() - start:.2f} s")
    return dataset


@pytest.fixture(scope="session")
def background_paper(shared_data: Path) -> np.ndarray:
    """The background npz's images, bool (964, 20, 105, 105), True = paper."""
    with np.load(shared_data / "omniglot" / "images_background.npz") as npz:
        return npz["images"]


def link_root(tmp: Path, shared: Path, files: list[str]) -> Path:
    """A data root holding links to some of the shared files (which are read-only)."""
    for name in files:
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(shared / name)
    return tmp


def write_image(path: Path, size: tuple[int, int] = (12, 10), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def assert_disjoint(dataset: data.Dataset, column: str = "class_name") -> None:
    assert set(dataset.train.meta[column]).isdisjoint(dataset.test.meta[column])
    for split in (dataset.train, dataset.test):
        assert sorted(np.unique(split.labels)) == list(range(split.num_classes))
        assert (split.meta["label"].to_numpy() == split.labels).all()


# --------------------------------------------------------------------------- roots


def test_data_root_and_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METRIC_DATA", raising=False)
    assert data.data_root() == tmp_path / "data"
    monkeypatch.setenv("METRIC_DATA", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("METRIC_CACHE")
    monkeypatch.delenv("METRIC_RUNS", raising=False)
    # the repository's runs/, not the working directory's (see test_data_reliability.py)
    assert data.cache_dir() == Path(__file__).resolve().parent.parent / "runs" / "data_cache"


# --------------------------------------------------------------------------- Omniglot


def test_omniglot_npz_counts_and_bright_ink(omniglot):
    train, test = omniglot.train, omniglot.test
    assert (len(train), train.num_classes, len(test), test.num_classes) == (19280, 964, 13180, 659)
    assert train.images.shape == (19280, 1, 28, 28) and train.images.dtype == np.uint8
    assert train.channels == 1 and train.paths is None and train.labels.dtype == np.int64
    # ink is a small bright part of a black page
    assert np.median(train.images) == 0 and train.images.max() == 255 and train.images.mean() < 40
    assert (train.images[:, :, 0, 0] == 0).mean() > 0.99
    assert_disjoint(omniglot)
    assert {"alphabet", "character", "drawer", "class_name"} <= set(train.meta.columns)
    assert train.meta["alphabet"].nunique() == 30 and test.meta["alphabet"].nunique() == 20
    assert (train.meta.groupby("label").size() == 20).all()


def test_omniglot_png_zip_equals_npz(tmp_path, shared_data):
    """The canonical small1 zip gives the npz's pixels and metadata for the same characters."""
    root = link_root(tmp_path, shared_data, ["omniglot/images_background_small1.zip",
                                             "omniglot/images_evaluation.npz", "omniglot/alphabets.csv"])
    from_zip = load_dataset("omniglot", root=root, background="small1")
    from_npz = load_dataset("omniglot", root=shared_data, background="small1")
    assert from_zip.info["source"]["train"].startswith("zip")
    assert from_npz.info["source"]["train"].startswith("npz")
    assert (len(from_zip.train), from_zip.train.num_classes) == (2720, 136)
    assert np.array_equal(from_zip.train.images, from_npz.train.images)
    pd.testing.assert_frame_equal(from_zip.train.meta, from_npz.train.meta)


def test_omniglot_minimal_from_both_small_zips(tmp_path, shared_data):
    root = link_root(tmp_path, shared_data, ["omniglot/images_background_small1.zip", "omniglot/images_background_small2.zip",
                                             "omniglot/images_evaluation.npz", "omniglot/alphabets.csv"])
    from_zip = load_dataset("omniglot", root=root, background="minimal")
    from_npz = load_dataset("omniglot", root=shared_data, background="minimal")
    assert (len(from_zip.train), from_zip.train.num_classes) == (4840, 242)
    assert np.array_equal(from_zip.train.images, from_npz.train.images)
    pd.testing.assert_frame_equal(from_zip.train.meta, from_npz.train.meta)


@pytest.mark.parametrize("background, images, classes", [("small1", 2720, 136), ("small2", 3120, 156), ("minimal", 4840, 242)])
def test_omniglot_background_options(shared_data, background, images, classes):
    dataset = load_dataset("omniglot", root=shared_data, background=background)
    assert (len(dataset.train), dataset.train.num_classes) == (images, classes)
    assert len(dataset.test) == 13180
    # Greek and Latin are in both small sets; 'minimal' holds them once
    assert (dataset.train.meta.groupby("class_name").size() == 20).all()


def make_canonical_zip(path: Path, paper: np.ndarray, alphabets: dict[str, range]) -> None:
    """A zip in the canonical layout `<set>/<Alphabet>/characterNN/<char id>_<drawer>.png`."""
    with zipfile.ZipFile(path, "w") as z:
        for folder, char_ids in alphabets.items():
            for number, char_id in enumerate(char_ids, start=1):
                for drawer in range(1, 21):
                    png = io.BytesIO()
                    Image.fromarray(paper[char_id - 1, drawer - 1]).save(png, format="PNG")
                    z.writestr(f"images_background/{folder}/character{number:02d}/{char_id:04d}_{drawer:02d}.png", png.getvalue())


def test_omniglot_canonical_full_zip(tmp_path, shared_data, background_paper, omniglot):
    """A full background zip in the canonical format, made from a few npz characters:
    Greek (394-417) and the first 3 Katakana characters (596-598), folder-name spelling."""
    root = link_root(tmp_path, shared_data, ["omniglot/images_evaluation.npz", "omniglot/alphabets.csv"])
    make_canonical_zip(root / "omniglot" / "images_background.zip", background_paper,
                       {"Greek": range(394, 418), "Japanese_(katakana)": range(596, 599)})
    dataset = load_dataset("omniglot", root=root)
    assert (len(dataset.train), dataset.train.num_classes) == (540, 27)
    rows = np.flatnonzero(omniglot.train.meta["char_id"].isin([*range(394, 418), *range(596, 599)]))
    assert np.array_equal(dataset.train.images, omniglot.train.images[rows])
    assert set(dataset.train.meta["alphabet"]) == {"Greek", "Japanese (Katakana)"}
    # the small sets are alphabets of the full zip: without their own zips, it is filtered
    small1 = load_dataset("omniglot", root=root, background="small1", download=False)
    assert set(small1.train.meta["alphabet"]) == {"Greek"}


def test_omniglot_alphabets_option(shared_data):
    both = load_dataset("omniglot", root=shared_data, alphabets=["Greek", "Angelic"])
    assert (both.train.num_classes, both.test.num_classes) == (24, 20)
    assert set(both.train.meta["alphabet"]) == {"Greek"} and set(both.test.meta["alphabet"]) == {"Angelic"}
    # a set none of whose alphabets is listed stays whole; folder spellings are accepted
    greek = load_dataset("omniglot", root=shared_data, alphabets=["greek", "Japanese_(katakana)"])
    assert (greek.train.num_classes, greek.test.num_classes) == (24 + 47, 659)
    with pytest.raises(ValueError, match="Klingon") as err:
        load_dataset("omniglot", root=shared_data, alphabets=["Klingon"])
    assert "Bengali" in str(err.value) and "Angelic" in str(err.value)
    with pytest.raises(ValueError, match="Bengali.*small1"):
        load_dataset("omniglot", root=shared_data, background="small1", alphabets=["Bengali"])
    angelic = load_dataset("omniglot", root=shared_data, background="small1", alphabets=["Angelic"])
    assert (angelic.train.num_classes, angelic.test.num_classes) == (136, 20)


def test_options_are_validated(shared_data):
    with pytest.raises(TypeError, match="colour") as err:
        load_dataset("omniglot", root=shared_data, colour=True)
    assert "background" in str(err.value) and "alphabets" in str(err.value)
    with pytest.raises(ValueError, match="huge"):
        load_dataset("omniglot", root=shared_data, background="huge")
    with pytest.raises(ValueError, match="cub200"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="sideways"):
        load_dataset("beluga", root=shared_data, viewpoints=["sideways"])


def test_oneshot_runs_come_from_the_evaluation_set(shared_data, omniglot):
    runs = load_dataset("omniglot_oneshot", root=shared_data)
    assert len(runs) == 20
    where = {image.tobytes(): i for i, image in enumerate(omniglot.test.images)}
    meta = omniglot.test.meta
    for run in runs:
        assert run.support.shape == run.query.shape == (20, 1, 28, 28) and run.support.dtype == np.uint8
        assert sorted(run.answers) == list(range(20))
        support = meta.iloc[[where[image.tobytes()] for image in run.support]]
        query = meta.iloc[[where[image.tobytes()] for image in run.query]]
        assert support["alphabet"].nunique() == 1  # within-alphabet runs
        assert (query["char_id"].to_numpy() == support["char_id"].to_numpy()[run.answers]).all()
        assert support["char_id"].nunique() == 20


# --------------------------------------------------------------------------- beluga


@pytest.mark.slow
def test_beluga_counts_and_whale_disjoint_split(beluga):
    train, test = beluga.train, beluga.test
    assert len(train) + len(test) == 5902 and train.num_classes + test.num_classes == 788
    assert 0.15 < test.num_classes / 788 < 0.25
    assert_disjoint(beluga, "whale_id")
    assert set(train.meta["encounter_id"]).isdisjoint(test.meta["encounter_id"])
    assert train.images.shape[1:] == (3, 128, 64) and train.channels == 3 and train.extra_channel is None
    views = pd.concat([train.meta, test.meta])["viewpoint"].value_counts().to_dict()
    assert views == {"top": 5434, "left": 237, "right": 231}
    assert "NOAA" in beluga.info["attribution"] and beluga.info["licence"] == "CDLA-Permissive-1.0"


def test_beluga_split_is_seeded(beluga, shared_data):
    again = load_dataset("beluga", root=shared_data)
    other = load_dataset("beluga", root=shared_data, split_seed=1)
    assert set(again.test.meta["whale_id"]) == set(beluga.test.meta["whale_id"])
    assert set(other.test.meta["whale_id"]) != set(beluga.test.meta["whale_id"])


def test_beluga_viewpoint_channel_and_filters(shared_data):
    dataset = load_dataset("beluga", root=shared_data, viewpoint_channel=True)
    for split in (dataset.train, dataset.test):
        expected = split.meta["viewpoint"].map({"left": -1.0, "top": 0.0, "right": 1.0}).to_numpy()
        assert split.extra_channel.dtype == np.float32 and np.array_equal(split.extra_channel, expected)
    sides = load_dataset("beluga", root=shared_data, viewpoints=["left", "right"])
    assert len(sides.train) + len(sides.test) == 468
    repeat = load_dataset("beluga", root=shared_data, min_images=2)
    assert (len(repeat.train) + len(repeat.test), repeat.train.num_classes + repeat.test.num_classes) == (5747, 633)


def test_beluga_side_views_are_rotated_to_portrait(beluga):
    sides = beluga.train.meta["viewpoint"].isin(["left", "right"]).to_numpy()
    images = beluga.train.images[sides]
    # side views are about 5:1 wide: turned upright, their content is taller than wide
    content = images.max(axis=1) > 0
    assert (content.any(axis=2).sum(axis=1) > content.any(axis=1).sum(axis=1)).all()
    assert (content[:, :, [0, -1]].any(axis=(1, 2)) == 0).mean() > 0.95


def test_beluga_original_layout(tmp_path, shared_data, beluga):
    """The competition's layout (metadata.csv + images/) decodes like the zip."""
    with zipfile.ZipFile(shared_data / "beluga" / "beluga_whaledo_max256.zip") as z:
        meta = pd.read_csv(z.open("metadata.csv"))
        whales = list(meta.loc[meta["viewpoint"] == "left", "whale_id"].unique()[:2])
        whales += list(meta.loc[meta["viewpoint"] == "right", "whale_id"].unique()[:2])
        whales += list(meta.loc[meta["viewpoint"] == "top", "whale_id"].unique()[:2])
        rows = meta[meta["whale_id"].isin(whales)]
        folder = tmp_path / "beluga"
        for rel in rows["path"]:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(z.read(rel))
    rows.drop(columns=["small_w", "small_h", "orig_sha256"]).to_csv(folder / "metadata.csv", index=False)

    dataset = load_dataset("beluga", root=tmp_path, test_fraction=0.5)
    assert dataset.info["source"].startswith("original layout")
    assert len(dataset.train) + len(dataset.test) == len(rows)
    assert dataset.train.num_classes + dataset.test.num_classes == len(set(whales))
    assert_disjoint(dataset, "whale_id")
    reference = pd.concat([beluga.train.meta.assign(i=range(len(beluga.train)), s=0),
                           beluga.test.meta.assign(i=range(len(beluga.test)), s=1)]).set_index("image_id")
    for split in (dataset.train, dataset.test):
        for image_id, image in zip(split.meta["image_id"], split.images):
            where = reference.loc[image_id]
            expected = (beluga.train, beluga.test)[where["s"]].images[where["i"]]
            assert np.array_equal(image, expected)

    flat = load_dataset("beluga", root=tmp_path, test_fraction=0.5, rotate_sides=False, viewpoints=["left", "right"])
    images = np.concatenate([flat.train.images, flat.test.images])
    # unrotated, a wide side view fills the width and leaves the top and bottom rows black
    assert (images[:, :, 0, :] == 0).all() and (images[:, :, -1, :] == 0).all()
    assert (images[:, :, 64, [0, -1]] > 0).any(axis=(1, 2)).all()


# --------------------------------------------------------------------------- file-based sets


def check_file_split(split: data.Split, size: int = 16) -> None:
    images = split.read(np.arange(len(split)))
    assert images.shape == (len(split), 3, size, size) and images.dtype == torch.uint8
    assert split.images is None and all(Path(p).is_file() for p in split.meta["path"])
    # DataLoader workers receive the split pickled
    assert torch.equal(pickle.loads(pickle.dumps(split)).read([0]), images[:1])


def test_cub200_fixture(tmp_path):
    folder = tmp_path / "CUB_200_2011"
    classes = {1: "001.Albatross", 2: "002.Auklet", 101: "101.White_Pelican", 200: "200.Yellowthroat"}
    lines, labels = [], []
    for class_id, name in classes.items():
        for k in range(3):
            image_id = len(lines) + 1
            write_image(folder / "images" / name / f"{name}_{k}.jpg", seed=image_id)
            lines.append(f"{image_id} {name}/{name}_{k}.jpg")
            labels.append(f"{image_id} {class_id}")
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "classes.txt").write_text("\n".join(f"{c} {n}" for c, n in classes.items()) + "\n")
    dataset = load_dataset("cub200", root=tmp_path, image_size=16, download=False)
    assert set(dataset.train.meta["class_name"]) == {"001.Albatross", "002.Auklet"}
    assert set(dataset.test.meta["class_name"]) == {"101.White_Pelican", "200.Yellowthroat"}
    assert_disjoint(dataset)
    check_file_split(dataset.train)


def test_cars196_fixture(tmp_path):
    folder = tmp_path / "cars196"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    rows = []
    for class_id in (1, 2, 99, 196):
        for k in range(2):
            rel = f"car_ims/{len(rows) + 1:06d}.jpg"
            write_image(folder / rel, size=(20, 12), seed=len(rows))
            rows.append((rel, 1, 1, 10, 10, class_id, k % 2))
    annotations = np.array([rows], dtype=[(f, object) for f in fields])  # a 1 x N struct array
    class_names = np.array([[f"Make Model {i}" for i in range(1, 197)]], dtype=object)
    savemat(folder / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    dataset = load_dataset("cars196", root=tmp_path, image_size=16)
    # classes 1-98 train, 99-196 test, whatever the file's own 'test' flag says
    assert set(dataset.train.meta["class_name"]) == {"Make Model 1", "Make Model 2"}
    assert set(dataset.test.meta["class_name"]) == {"Make Model 99", "Make Model 196"}
    assert len(dataset.train) == len(dataset.test) == 4
    assert_disjoint(dataset)
    check_file_split(dataset.test)


def test_sop_fixture(tmp_path):
    folder = tmp_path / "Stanford_Online_Products"
    for part, class_ids in (("train", (1, 2)), ("test", (11319, 11320))):
        lines = ["image_id class_id super_class_id path"]
        for class_id in class_ids:
            for k in range(2):
                rel = f"bicycle_final/{class_id}_{k}.JPG"
                write_image(folder / rel, seed=class_id + k)
                lines.append(f"{len(lines)} {class_id} 1 {rel}")
        (folder / f"Ebay_{part}.txt").write_text("\n".join(lines) + "\n")
    dataset = load_dataset("sop", root=tmp_path, image_size=16)
    assert (dataset.train.num_classes, dataset.test.num_classes) == (2, 2)
    assert set(dataset.test.meta["class_name"]) == {"bicycle_final/11319", "bicycle_final/11320"}
    assert_disjoint(dataset)
    check_file_split(dataset.train)


def test_folder_and_csv_fixtures(tmp_path):
    folder = tmp_path / "mine"
    rows = []
    for identity in range(6):
        for k in range(2):
            rel = f"id{identity}/img{k}.png"
            write_image(folder / rel, size=(30, 14), seed=identity * 10 + k)
            rows.append((rel, f"id{identity}"))
    by_folder = load_dataset("folder", root=tmp_path, path="mine", image_size=16, test_fraction=1 / 3, split_seed=3)
    assert (by_folder.train.num_classes, by_folder.test.num_classes) == (4, 2)
    assert_disjoint(by_folder)
    check_file_split(by_folder.test)

    pd.DataFrame(rows, columns=["path", "label"]).to_csv(folder / "labels.csv", index=False)
    by_csv = load_dataset("csv", root=folder, image_size=16, test_fraction=1 / 3, split_seed=3)
    assert_disjoint(by_csv)
    assert set(by_csv.test.meta["class_name"]) == set(by_folder.test.meta["class_name"])
    check_file_split(by_csv.train)

    padded = load_dataset("folder", root=folder, image_size=16, resize="pad").train.read([0])[0]
    # a 30x14 image padded into 16x16 keeps black rows above and below
    assert (padded[:, 0] == 0).all() and (padded[:, -1] == 0).all() and (padded[:, 8] > 0).any()


def test_unreadable_image_is_corrupt(tmp_path):
    for identity in ("a", "b"):
        write_image(tmp_path / identity / "ok.png")
    (tmp_path / "b" / "bad.png").write_bytes(b"not a png")
    dataset = load_dataset("folder", root=tmp_path, image_size=8, test_fraction=0.5)
    split = next(s for s in (dataset.train, dataset.test) if "bad.png" in "".join(s.meta["path"]))
    with pytest.raises(CorruptDataError, match="bad.png"):
        split.read(np.arange(len(split)))


def test_split_subset_and_class_disjoint_split(omniglot):
    part = omniglot.train.subset(np.arange(100, 400))
    assert len(part) == 300 and part.num_classes == 15 and part.meta.index.equals(pd.RangeIndex(300))
    assert np.array_equal(part.images, omniglot.train.images[100:400])
    first, second = data.class_disjoint_split(omniglot.train, 0.25, seed=0, group="alphabet")
    assert set(first.meta["alphabet"]).isdisjoint(second.meta["alphabet"])
    assert second.meta["alphabet"].nunique() == round(0.25 * 30)
    again = data.class_disjoint_split(omniglot.train, 0.25, seed=0, group="alphabet")[1]
    assert again.meta["class_name"].equals(second.meta["class_name"])
    a, b = data.class_disjoint_split(part, 0.2, seed=1)
    assert (a.num_classes, b.num_classes) == (12, 3) and set(a.meta["class_name"]).isdisjoint(b.meta["class_name"])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name, options", [
    ("omniglot", {"download": False}),
    ("omniglot_oneshot", {"download": False}),
    ("beluga", {}),
    ("cub200", {"download": False}),
    ("cars196", {}),
    ("sop", {}),
    ("folder", {}),
    ("csv", {}),
])
def test_missing_data_names_the_set_and_where_it_looked(tmp_path, name, options):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(name, root=tmp_path, **options)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert message.startswith(name) and str(tmp_path) in message and "How to get it" in message


def test_missing_omniglot_lists_every_candidate(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("omniglot", root=tmp_path, background="minimal", download=False)
    for name in ("images_background.npz", "images_background_small1.zip", "images_background_small2.zip",
                 "images_background.zip", "METRIC_DATA=../shared/data", "raw.githubusercontent.com"):
        assert name in str(err.value)


def test_corrupt_zip(tmp_path, shared_data):
    root = link_root(tmp_path, shared_data, ["omniglot/images_evaluation.npz", "omniglot/alphabets.csv"])
    bad = root / "omniglot" / "images_background.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(CorruptDataError, match="images_background.zip"):
        load_dataset("omniglot", root=root, download=False)
    (tmp_path / "beluga").mkdir()
    (tmp_path / "beluga" / "beluga_whaledo_max256.zip").write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="beluga_whaledo_max256.zip"):
        load_dataset("beluga", root=tmp_path)


def test_download_verifies_checksum(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"metric learning" * 1000)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "out"
    got = data.download(source.as_uri(), out / "file.bin", sha)
    assert got.read_bytes() == source.read_bytes() and os.listdir(out) == ["file.bin"]

    with pytest.raises(CorruptDataError, match="checksum"):
        data.download(source.as_uri(), out / "other.bin", "0" * 64)
    assert os.listdir(out) == ["file.bin"]  # nothing left of the failed download
    # without a checksum, only an intact archive is accepted
    with pytest.raises(CorruptDataError):
        data.download(source.as_uri(), out / "third.bin", None)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.txt", "x")
    data.download(archive.as_uri(), out / "a.zip", None)
    assert sorted(os.listdir(out)) == ["a.zip", "file.bin"]
    with pytest.raises(DataError):
        data.download((tmp_path / "absent.bin").as_uri(), out / "absent.bin", sha)
    assert sorted(os.listdir(out)) == ["a.zip", "file.bin"]


def test_extract_is_atomic(tmp_path):
    good = tmp_path / "good.tgz"
    payload = tmp_path / "payload.txt"
    payload.write_bytes(os.urandom(200_000))  # incompressible, so truncation hits the data
    with tarfile.open(good, "w:gz") as tar:
        tar.add(payload, arcname="set/payload.txt")
    out = tmp_path / "out"
    out.mkdir()
    assert data.extract(good, out / "done") == out / "done"
    assert (out / "done" / "set" / "payload.txt").read_bytes() == payload.read_bytes()
    with pytest.raises(FileExistsError):
        data.extract(good, out / "done")

    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match="truncated.tgz"):
        data.extract(truncated, out / "broken")
    assert os.listdir(out) == ["done"]  # no partial folder a later run could trust


# --------------------------------------------------------------------------- cache


@pytest.mark.slow
def test_cache_makes_the_second_load_fast_and_identical(tmp_path, shared_data, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("METRIC_CACHE", str(cache))
    root = link_root(tmp_path / "root", shared_data, ["omniglot/images_background_small2.zip",
                                                      "omniglot/images_evaluation.npz", "omniglot/alphabets.csv"])
    times, loads = [], []
    for _ in range(2):
        start = time.perf_counter()
        loads.append(load_dataset("omniglot", root=root, background="small2"))
        times.append(time.perf_counter() - start)
    print(f"\nomniglot (small2 zip + evaluation npz) first {times[0]:.2f} s, cached {times[1]:.2f} s")
    assert times[1] < times[0] / 3
    assert np.array_equal(loads[0].train.images, loads[1].train.images)
    assert np.array_equal(loads[0].test.images, loads[1].test.images)
    assert len(list(cache.glob("*.npy"))) == 2 and not list(cache.glob(".*"))
    # another size is another entry
    assert load_dataset("omniglot", root=root, background="small2", image_size=32).train.images.shape[-1] == 32
    assert len(list(cache.glob("*.npy"))) == 4


# --------------------------------------------------------------------------- augmentation


def test_to_float_normalises_and_appends_the_extra_channel():
    batch = torch.full((2, 3, 4, 5), 255, dtype=torch.uint8)
    x = augment.to_float(batch, extra_channel=np.array([-1.0, 1.0], dtype=np.float32), mean=[0.5] * 3, std=[0.25] * 3)
    assert x.shape == (2, 4, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[:, :3], torch.full((2, 3, 4, 5), 2.0))
    assert (x[0, 3] == -1).all() and (x[1, 3] == 1).all()


def test_augment_identity_when_disabled():
    batch = torch.randint(0, 256, (4, 3, 8, 6), dtype=torch.uint8)
    out = augment.make_augment("none")(batch)
    assert torch.equal(out, batch.float() / 255)


@pytest.mark.parametrize("preset", ["omniglot", "beluga", "natural"])
def test_augment_presets_are_seeded_and_keep_shapes(preset):
    batch = torch.randint(0, 256, (8, 3, 16, 12), dtype=torch.uint8)
    module = augment.make_augment(preset)
    outs = [module(batch, generator=torch.Generator().manual_seed(seed)) for seed in (0, 0, 1)]
    assert outs[0].shape == batch.shape and outs[0].dtype == torch.float32
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert outs[0].min() >= 0 and outs[0].max() <= 1


def test_augment_leaves_the_extra_channel_alone():
    batch = torch.randint(0, 256, (4, 3, 16, 8), dtype=torch.uint8)
    extra = torch.tensor([-1.0, 0.0, 1.0, 0.0])
    x = augment.to_float(augment.make_augment("beluga")(batch, torch.Generator().manual_seed(0)), extra)
    assert torch.equal(x[:, 3], extra.view(-1, 1, 1).expand(-1, 16, 8))


def test_augment_flip_and_rotation_are_what_they_say():
    batch = torch.rand(64, 1, 10, 6)
    flipped = augment.BatchAugment(flip=True)(batch, torch.Generator().manual_seed(0))
    mirrored = torch.isclose(flipped, batch.flip(-1), atol=1e-5).flatten(1).all(1)
    unchanged = torch.isclose(flipped, batch, atol=1e-5).flatten(1).all(1)
    assert (mirrored | unchanged).all() and 10 < mirrored.sum() < 54
    # a round blob in a tall image stays put under rotation: the warp does not shear
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(16.0), indexing="ij")
    blob = torch.exp(-((rows - 15.5) ** 2 + (cols - 7.5) ** 2) / 18).expand(8, 1, 32, 16)
    turned = augment.BatchAugment(rotate=90)(blob, torch.Generator().manual_seed(0))
    assert (turned - blob).abs().max() < 0.05


def test_make_augment_rejects_unknown_names():
    with pytest.raises(ValueError, match="omniglot.*beluga.*natural"):
        augment.make_augment("cutout")
    with pytest.raises(TypeError, match="shear"):
        augment.make_augment({"shear": 0.1})
    assert augment.make_augment({"rotate": 5}).rotate == 5


def test_failed_download_leaves_no_folders(tmp_path):
    from lib.data import DataError, download

    dest = tmp_path / "data" / "omniglot" / "images_background.zip"
    with pytest.raises(DataError):
        download((tmp_path / "missing.zip").as_uri(), dest, sha256="0" * 64)
    assert not (tmp_path / "data").exists()
