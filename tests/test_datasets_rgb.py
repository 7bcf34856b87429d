"""Tests for the RGB sources of stabgap.data: CIFAR-10/100 (python-version pickles, as tar.gz or
extracted), mini-ImageNet (learn2learn cache pickles) and the canonical file's extra label arrays.

Every test writes small files in the real on-disk formats itself; downloads go to a real HTTP server
on 127.0.0.1."""

import dataclasses
import hashlib
import os
import pickle
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import closed_port_url, leftovers  # shared test helpers

from stabgap import data as datasets  # the registry
from stabgap.data import DataError, build_canonical, cifar, download
from stabgap.data.canonical import load_canonical, save_canonical
from stabgap.data.cifar import CIFAR_HOME, cifar_from_pickles
from stabgap.data.miniimagenet import MINIIMAGENET_FILES, miniimagenet_from_cache
from stabgap.fileio import sha256_file

md5_file = download.md5_of
# real data staged on this machine, if any: $STABGAP_DATA_ROOT/<dataset> (the workflow's layout);
# STABGAP_TEST_MD5=0 for a look-alike copy that cannot match the published md5
REAL_DATA = Path(os.environ.get("STABGAP_DATA_ROOT", "/nonexistent"))
REAL_MD5 = os.environ.get("STABGAP_TEST_MD5", "1") != "0"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -----------------------------------------------------------------------------
# helpers: files in the real formats

def write_pickle(path, obj, protocol=2):
    """Protocol 2, like the original CIFAR files (written by Python 2)."""
    Path(path).write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10(root, per_batch=4, n_test=6, seed=0):
    """Write an extracted cifar-10-batches-py/ folder under `root`: 5 training batches of `per_batch`
    images, a test batch and batches.meta, pickled like the originals (bytes keys, uint8 N×3072 data,
    labels as a list of ints). Returns the raw rows, labels and the md5 of each file."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_rows, train_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        write_pickle(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(),
                                                  b"labels": labels, b"data": data,
                                                  b"filenames": [b"x.png"] * per_batch})
        train_rows.append(data)
        train_labels += labels
    test_rows = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    write_pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels,
                                         b"data": test_rows, b"filenames": [b"x.png"] * n_test})
    write_pickle(folder / "batches.meta", {b"num_cases_per_batch": per_batch,
                                           b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    return SimpleNamespace(folder=folder, train_rows=np.concatenate(train_rows), train_labels=np.array(train_labels),
                           test_rows=test_rows, test_labels=np.array(test_labels),
                           md5={p.name: md5_file(p) for p in folder.iterdir()})


def make_cifar100(root, n_train=24, n_test=8, seed=1):
    """Write an extracted cifar-100-python/ folder (train, test, meta) under `root`."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    out = SimpleNamespace(folder=folder)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        coarse = fine % 20
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        write_pickle(folder / split, {b"filenames": [b"x.png"] * n, b"batch_label": split.encode(),
                                      b"fine_labels": [int(v) for v in fine],
                                      b"coarse_labels": [int(v) for v in coarse], b"data": data})
        setattr(out, split, SimpleNamespace(rows=data, fine=fine, coarse=coarse))
    write_pickle(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    out.md5 = {p.name: md5_file(p) for p in folder.iterdir()}
    return out


def make_archive(extracted_folder, dest_dir, archive_name):
    """tar.gz of `extracted_folder` (members named <folder>/<file>, as in the published archives)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / archive_name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(extracted_folder, arcname=Path(extracted_folder).name)
    return archive


def hwc(rows):
    """The expected images: each row is R, G, B planes of 32×32, row-major."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def with_md5(monkeypatch, variant, archive_md5=None, file_md5=None):
    """Make the builders check against md5 values of the test's own files."""
    layout = cifar.CIFAR_LAYOUTS[variant]
    changes = {k: v for k, v in (("archive_md5", archive_md5), ("file_md5", file_md5)) if v is not None}
    monkeypatch.setitem(cifar.CIFAR_LAYOUTS, variant, dataclasses.replace(layout, **changes))


# -----------------------------------------------------------------------------
# canonical format: extra label arrays

def test_canonical_extra_is_checked_and_optional(tmp_path):
    rng = np.random.default_rng(0)
    train_x, test_x = (rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8) for n in (6, 3))
    train_y, test_y = np.arange(6) % 3, np.arange(3)
    with pytest.raises(DataError, match="one label per image"):
        save_canonical(tmp_path / "a.pt", train_x, train_y, test_x, test_y, meta={"name": "t"},
                       extra={"train_coarse": np.zeros(5, dtype=np.int64)})
    with pytest.raises(DataError, match="'train_<what>' or 'test_<what>'"):
        save_canonical(tmp_path / "a.pt", train_x, train_y, test_x, test_y, meta={"name": "t"},
                       extra={"coarse": np.zeros(6, dtype=np.int64)})
    assert list(tmp_path.iterdir()) == []

    # no extra: the file has no "extra" entry at all (as files written before it existed), loads as {}
    manifest = save_canonical(tmp_path / "old.pt", train_x, train_y, test_x, test_y, meta={"name": "t"})
    assert "extra" not in torch.load(tmp_path / "old.pt", weights_only=True)
    assert manifest["extra"] == {}
    assert load_canonical(tmp_path / "old.pt").extra == {}

    manifest = save_canonical(tmp_path / "new.pt", train_x, train_y, test_x, test_y, meta={"name": "t"},
                              extra={"train_group": np.arange(6, dtype=np.int32) // 2, "test_group": torch.tensor([0, 0, 1])})
    assert manifest["extra"] == {"train_group": [6], "test_group": [3]}
    extra = load_canonical(tmp_path / "new.pt").extra
    assert extra["train_group"].tolist() == [0, 0, 1, 1, 2, 2] and extra["test_group"].tolist() == [0, 0, 1]
    assert extra["train_group"].dtype == torch.int64


# -----------------------------------------------------------------------------
# CIFAR: reading

def test_cifar10_archive_and_extracted_folder_give_identical_arrays(tmp_path):
    c = make_cifar10(tmp_path / "extracted")
    archive = make_archive(c.folder, tmp_path / "archive", "cifar-10-python.tar.gz")

    from_folder = cifar_from_pickles(tmp_path / "extracted", "cifar10", file_md5=c.md5)
    from_archive = cifar_from_pickles(tmp_path / "archive", "cifar10", archive_md5=md5_file(archive))

    for data in (from_folder, from_archive):
        assert data.train_x.shape == (20, 32, 32, 3) and data.test_x.shape == (6, 32, 32, 3)
        assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int64
        assert data.train_x.flags.c_contiguous and data.test_x.flags.c_contiguous
        np.testing.assert_array_equal(data.train_x, hwc(c.train_rows))  # batches 1..5 in order
        np.testing.assert_array_equal(data.train_y, c.train_labels)
        np.testing.assert_array_equal(data.test_x, hwc(c.test_rows))
        np.testing.assert_array_equal(data.test_y, c.test_labels)
        assert data.meta == {"num_classes": 10, "class_names": CIFAR10_NAMES} and data.extra == {}
    assert from_archive.sources == [archive]
    assert [p.name for p in from_folder.sources] == [*(f"data_batch_{i}" for i in range(1, 6)),
                                                     "test_batch", "batches.meta"]
    assert [p.name for p in (tmp_path / "archive").iterdir()] == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_cifar_hwc_conversion_on_a_known_pixel(tmp_path):
    c = make_cifar10(tmp_path)
    planes = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    planes[:, 0], planes[:, 1], planes[:, 2] = 10, 20, 30  # R, G, B planes
    planes[0, :, 2, 5] = [200, 201, 202]  # image 0, row 2, column 5
    write_pickle(c.folder / "data_batch_1", {b"labels": [3, 7], b"data": planes.reshape(2, 3072)})
    data = cifar_from_pickles(tmp_path, "cifar10", check_md5=False)
    assert data.train_x[0, 2, 5].tolist() == [200, 201, 202]
    assert data.train_x[0, 5, 2].tolist() == [10, 20, 30]  # not transposed
    assert data.train_x[1, 2, 5].tolist() == [10, 20, 30]
    assert data.train_y[:2].tolist() == [3, 7]


def test_cifar100_coarse_labels_round_trip_through_the_canonical_file(tmp_path, monkeypatch):
    c = make_cifar100(tmp_path / "src")
    source_dir = tmp_path / "cifar100"
    archive = make_archive(c.folder, source_dir, "cifar-100-python.tar.gz")
    with_md5(monkeypatch, "cifar100", archive_md5=md5_file(archive))

    out = tmp_path / "canonical" / "cifar100.pt"
    manifest = build_canonical("cifar100", out, source_dir=source_dir)
    assert manifest["extra"] == {"train_coarse": [24], "test_coarse": [8]}
    assert manifest["num_classes"] == 100 and manifest["sources"][0]["name"] == "cifar-100-python.tar.gz"

    data = load_canonical(out)
    np.testing.assert_array_equal(data.train_x.numpy(), hwc(c.train.rows))
    np.testing.assert_array_equal(data.train_y.numpy(), c.train.fine)
    np.testing.assert_array_equal(data.test_y.numpy(), c.test.fine)
    assert sorted(data.extra) == ["test_coarse", "train_coarse"]
    np.testing.assert_array_equal(data.extra["train_coarse"].numpy(), c.train.coarse)
    np.testing.assert_array_equal(data.extra["test_coarse"].numpy(), c.test.coarse)
    assert data.extra["train_coarse"].dtype == torch.int64
    assert data.meta["class_names"][:2] == ["fine0", "fine1"] and len(data.meta["class_names"]) == 100
    assert data.meta["coarse_class_names"][19] == "coarse19" and data.meta["num_coarse_classes"] == 20


# -----------------------------------------------------------------------------
# CIFAR: bad files

def test_cifar_wrong_md5_names_both_sums_and_keeps_the_file(tmp_path):
    c = make_cifar10(tmp_path / "extracted")
    archive = make_archive(c.folder, tmp_path / "archive", "cifar-10-python.tar.gz")
    with pytest.raises(DataError) as e:
        cifar_from_pickles(tmp_path / "archive", "cifar10", archive_md5="0" * 32)
    msg = str(e.value)
    assert str(archive) in msg and "0" * 32 in msg and md5_file(archive) in msg and "Delete it and rerun" in msg
    assert archive.is_file()  # staged by the user: reported, never deleted

    bad = dict(c.md5, data_batch_3="f" * 32)
    with pytest.raises(DataError) as e:
        cifar_from_pickles(tmp_path / "extracted", "cifar10", file_md5=bad)
    msg = str(e.value)
    assert str(c.folder / "data_batch_3") in msg and "f" * 32 in msg and c.md5["data_batch_3"] in msg
    assert (c.folder / "data_batch_3").is_file()


def test_cifar_html_page_or_truncated_archive_rejected(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    html = b"<!DOCTYPE html>\n<html><head><title>Access denied</title></head></html>\n"
    archive.write_bytes(html)
    with pytest.raises(DataError, match="not a gzip file.*HTML page"):
        cifar_from_pickles(tmp_path, "cifar10")  # the published md5: the gzip check comes first
    assert archive.read_bytes() == html

    c = make_cifar10(tmp_path / "src")
    whole = make_archive(c.folder, tmp_path / "src", "whole.tar.gz").read_bytes()
    for cut in (len(whole) // 2, len(whole) - 10):  # also a cut inside the gzip trailer only
        archive.write_bytes(whole[:cut])
        with pytest.raises(DataError, match="truncated"):
            cifar_from_pickles(tmp_path, "cifar10", check_md5=False)
        with pytest.raises(DataError, match="incomplete .* Delete it"):
            cifar_from_pickles(tmp_path, "cifar10", archive_md5=hashlib.md5(whole).hexdigest())
        assert archive.is_file()


@pytest.mark.parametrize("batch, match", [
    ({b"labels": [0, 10], b"data": np.zeros((2, 3072), np.uint8)}, "labels outside 0..9"),
    ({b"labels": [0], b"data": np.zeros((2, 3072), np.uint8)}, "should hold 2 integer labels"),
    ({b"labels": [0, 1], b"data": np.zeros((2, 3000), np.uint8)}, "N×3072 uint8"),
    ({b"labels": [0, 1], b"data": np.zeros((2, 3072), np.float32)}, "N×3072 uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "lacks the key.*labels"),
    ([1, 2, 3], "should hold a dict"),
])
def test_cifar_malformed_batch_rejected(tmp_path, batch, match):
    c = make_cifar10(tmp_path)
    write_pickle(c.folder / "data_batch_2", batch)
    with pytest.raises(DataError, match=match) as e:
        cifar_from_pickles(tmp_path, "cifar10", check_md5=False)
    assert "data_batch_2" in str(e.value)


def test_cifar_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError) as e:
        build_canonical("cifar10", tmp_path / "out.pt", source_dir=tmp_path / "cifar10")
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and "cifar-10-batches-py/" in msg
    assert str((tmp_path / "cifar10").resolve()) in msg and CIFAR_HOME in msg and "download: true" in msg

    c = make_cifar10(tmp_path / "cifar100-like")  # an extracted folder with two files missing
    (c.folder / "data_batch_4").unlink()
    (c.folder / "batches.meta").unlink()
    with pytest.raises(DataError, match="lacks data_batch_4, batches.meta"):
        cifar_from_pickles(tmp_path / "cifar100-like", "cifar10")


def test_unpickler_refuses_anything_but_plain_data(tmp_path):
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    c = make_cifar10(tmp_path / "src")
    write_pickle(c.folder / "test_batch", {b"labels": [1], b"data": Evil()})
    with pytest.raises(DataError, match="not a plain data pickle.*refusing"):
        cifar_from_pickles(tmp_path / "src", "cifar10", check_md5=False)
    assert not marker.exists()


# -----------------------------------------------------------------------------
# CIFAR: download from a real local HTTP server

def test_cifar_download_then_build_and_no_redownload(tmp_path, server, monkeypatch):
    c = make_cifar10(tmp_path / "src")
    archive_bytes = make_archive(c.folder, tmp_path / "src", "cifar-10-python.tar.gz").read_bytes()
    server.files["cifar-10-python.tar.gz"] = archive_bytes
    with_md5(monkeypatch, "cifar10", archive_md5=hashlib.md5(archive_bytes).hexdigest())

    source_dir = tmp_path / "raw" / "cifar10"
    out = tmp_path / "canonical" / "cifar10.pt"
    manifest = build_canonical("cifar10", out, source_dir=source_dir, download=True, mirrors=[server.url], timeout=5)
    assert server.requests == ["/files/cifar-10-python.tar.gz"] * 2  # torchvision's redirect probe, then the download
    assert (source_dir / "cifar-10-python.tar.gz").read_bytes() == archive_bytes and leftovers(source_dir) == []
    assert manifest["train"]["images_shape"] == [20, 32, 32, 3] and manifest["test"]["images_shape"] == [6, 32, 32, 3]
    assert manifest["meta"]["class_names"] == CIFAR10_NAMES
    np.testing.assert_array_equal(load_canonical(out).train_x.numpy(), hwc(c.train_rows))

    build_canonical("cifar10", out, source_dir=source_dir, download=True, mirrors=[server.url], timeout=5)
    assert len(server.requests) == 2  # staged already: no new request


def test_cifar_download_with_wrong_md5_leaves_nothing(tmp_path, server):
    server.files["cifar-100-python.tar.gz"] = b"not the archive"
    with pytest.raises(DataError) as e:
        cifar.download_cifar(tmp_path, "cifar100", mirrors=[server.url], timeout=5)
    msg = str(e.value)
    assert "md5 mismatch" in msg and cifar.CIFAR_LAYOUTS["cifar100"].archive_md5 in msg
    assert list(tmp_path.iterdir()) == []  # neither the archive nor a .part


def test_cifar_download_offline_fails_fast_naming_the_folder(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    source_dir = tmp_path / "data_root" / "cifar10"
    url = closed_port_url()
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        build_canonical("cifar10", tmp_path / "out.pt", source_dir=source_dir, download=True, mirrors=[url], timeout=5)
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert url in msg and str(source_dir.resolve()) in msg
    assert "put cifar-10-python.tar.gz, or its extracted folder cifar-10-batches-py/" in msg
    assert list(source_dir.iterdir()) == []


@pytest.mark.parametrize("variant, n_train, coarse", [("cifar10", 50000, False), ("cifar100", 50000, True)])
def test_real_cifar_staged_copy(variant, n_train, coarse):
    folder = REAL_DATA / variant
    if not (folder.is_dir() and cifar.cifar_is_staged(folder, variant)):
        pytest.skip(f"real {variant} not staged at {folder}")
    data = cifar_from_pickles(folder, variant, check_md5=REAL_MD5)
    assert data.train_x.shape == (n_train, 32, 32, 3) and data.test_x.shape == (10000, 32, 32, 3)
    assert ("train_coarse" in data.extra) == coarse


# -----------------------------------------------------------------------------
# mini-ImageNet

SMALL = {"classes_per_file": (4, 2, 3), "images_per_class": 6, "train_per_class": 4}


def make_mini(folder, classes_per_file=(4, 2, 3), per_class=6, seed=0):
    """Write the three learn2learn cache pickles: {"image_data": uint8 N×84×84×3, "class_dict": {name:
    [row indices]}}. Rows are scattered, class_dict is not in name order, and every image carries its
    expected label in pixel [0, 0, 0] and its position in the class's index list in pixel [0, 0, 1].
    Returns the class names in the expected label order."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names_in_label_order = []
    for file_name, n_classes, tag in zip(MINIIMAGENET_FILES, classes_per_file, ("a", "b", "c")):
        names = [f"n0{tag}{i:02d}" for i in range(n_classes)]
        first_label = len(names_in_label_order)
        names_in_label_order += names
        n = n_classes * per_class
        image_data = rng.integers(0, 256, (n, 84, 84, 3), dtype=np.uint8)
        rows = rng.permutation(n)
        class_dict = {}
        for i, name in reversed(list(enumerate(names))):  # insertion order != name order
            class_rows = rows[i * per_class:(i + 1) * per_class]
            class_dict[name] = [int(r) for r in class_rows]
            image_data[class_rows, 0, 0, 0] = first_label + i
            image_data[class_rows, 0, 0, 1] = np.arange(per_class)
        write_pickle(folder / file_name, {"image_data": image_data, "class_dict": class_dict}, protocol=4)
    return names_in_label_order


def rewrite(path, change):
    """Load a cache pickle, apply change(dict), write it back."""
    obj = pickle.loads(Path(path).read_bytes())
    change(obj)
    write_pickle(path, obj, protocol=4)


def test_miniimagenet_stacking_split_and_sha256sums(tmp_path):
    names = make_mini(tmp_path)
    data = miniimagenet_from_cache(tmp_path, **SMALL)

    assert data.train_x.shape == (36, 84, 84, 3) and data.test_x.shape == (18, 84, 84, 3)
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int64
    assert data.train_y.tolist() == np.repeat(np.arange(9), 4).tolist()
    assert data.test_y.tolist() == np.repeat(np.arange(9), 2).tolist()
    # label order: files train, validation, test; classes sorted by name within a file
    assert data.meta["class_names"] == names
    np.testing.assert_array_equal(data.train_x[:, 0, 0, 0], data.train_y)
    np.testing.assert_array_equal(data.test_x[:, 0, 0, 0], data.test_y)
    # first 4 of each class's index list go to train, the last 2 to test, in list order
    assert data.train_x[:, 0, 0, 1].tolist() == [0, 1, 2, 3] * 9
    assert data.test_x[:, 0, 0, 1].tolist() == [4, 5] * 9
    assert data.meta["split"] == "first 4 train / last 2 test per class"
    train_rows = {x.tobytes() for x in data.train_x}
    assert len(train_rows) == 36 and not any(x.tobytes() in train_rows for x in data.test_x)

    sums = (tmp_path / "SHA256SUMS").read_text()
    for name in MINIIMAGENET_FILES:
        assert f"{hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()}  {name}\n" in sums
    again = miniimagenet_from_cache(tmp_path, **SMALL)  # checked against SHA256SUMS, unchanged
    np.testing.assert_array_equal(again.test_x, data.test_x)

    rewrite(tmp_path / MINIIMAGENET_FILES[1], lambda obj: obj["image_data"].__setitem__((0, 5, 5, 0), 7))
    with pytest.raises(DataError, match="mini-imagenet-cache-validation.pkl differs from the sha256 recorded when "
                                        "it was first staged on 20.*delete .*SHA256SUMS"):
        miniimagenet_from_cache(tmp_path, **SMALL)
    (tmp_path / "SHA256SUMS").unlink()  # replaced on purpose: record afresh
    miniimagenet_from_cache(tmp_path, **SMALL)
    assert sha256_file(tmp_path / MINIIMAGENET_FILES[1]) in (tmp_path / "SHA256SUMS").read_text()


def test_build_canonical_miniimagenet_records_sha256s(tmp_path):
    make_mini(tmp_path / "mini")
    out = tmp_path / "canonical" / "miniimagenet.pt"
    manifest = build_canonical("miniimagenet", out, source_dir=tmp_path / "mini", **SMALL)
    assert [s["name"] for s in manifest["sources"]] == list(MINIIMAGENET_FILES)
    assert all(s["sha256"] == sha256_file(tmp_path / "mini" / s["name"]) for s in manifest["sources"])
    assert manifest["num_classes"] == 9 and manifest["train"]["class_counts"] == {str(c): 4 for c in range(9)}
    data = load_canonical(out)
    assert data.train_x.shape == (36, 84, 84, 3) and data.meta["split"] == "first 4 train / last 2 test per class"


@pytest.mark.parametrize("content, match", [
    (b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n", "not a pickle .*HTML page"),
    (None, "truncated"),  # the first half of the real pickle
])
def test_miniimagenet_html_or_truncated_pickle_rejected_and_kept(tmp_path, content, match):
    make_mini(tmp_path)
    path = tmp_path / MINIIMAGENET_FILES[2]
    content = content if content is not None else path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        miniimagenet_from_cache(tmp_path, **SMALL)
    assert str(path) in str(e.value)
    assert path.read_bytes() == content  # user-staged: nothing removed
    assert not (tmp_path / "SHA256SUMS").exists()  # nothing recorded for a bad set


def _drop_class(obj):
    obj["class_dict"].popitem()


def _short_class(obj):
    name = next(iter(obj["class_dict"]))
    obj["class_dict"][name] = obj["class_dict"][name][:5]


def _index_out_of_range(obj):
    name = next(iter(obj["class_dict"]))
    obj["class_dict"][name][0] = 10_000


def _float_images(obj):
    obj["image_data"] = obj["image_data"].astype(np.float32)


def _shared_rows(obj):
    a, b = list(obj["class_dict"])[:2]
    obj["class_dict"][b][0] = obj["class_dict"][a][0]


@pytest.mark.parametrize("change, match", [
    (_drop_class, "has 2 classes, expected 3"),
    (_short_class, "has 5 images, expected 6"),
    (_index_out_of_range, "outside 0..17"),
    (_float_images, "uint8 array of shape N×84×84×3"),
    (_shared_rows, "listed twice"),
])
def test_miniimagenet_wrong_structure_rejected(tmp_path, change, match):
    make_mini(tmp_path)
    rewrite(tmp_path / MINIIMAGENET_FILES[2], change)
    with pytest.raises(DataError, match=match):
        miniimagenet_from_cache(tmp_path, **SMALL)
    assert not (tmp_path / "SHA256SUMS").exists()


def test_miniimagenet_wrong_class_count_with_real_defaults(tmp_path):
    make_mini(tmp_path)  # tiny files (4/2/3 classes) against the real 64/16/20 class counts
    with pytest.raises(DataError, match="cache-train.pkl has 4 classes, expected 64"):
        miniimagenet_from_cache(tmp_path, images_per_class=6, train_per_class=4)


def test_miniimagenet_missing_files_never_downloaded(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mini-ImageNet must never be downloaded")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    make_mini(tmp_path / "src")
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    (tmp_path / "src" / MINIIMAGENET_FILES[0]).rename(folder / MINIIMAGENET_FILES[0])
    with pytest.raises(DataError) as e:
        build_canonical("miniimagenet", tmp_path / "out.pt", source_dir=folder, download=True)
    msg = str(e.value)
    assert "missing in " + str(folder.resolve()) in msg
    assert "mini-imagenet-cache-validation.pkl, mini-imagenet-cache-test.pkl." in msg  # the missing ones
    assert all(name in msg for name in MINIIMAGENET_FILES) and "learn2learn" in msg and "no official download" in msg


def test_miniimagenet_pickle_loads_with_numpy1_module_names(tmp_path):
    """Pickles written by numpy 1.x (protocol 2, as Python 2 wrote them) name numpy.core.multiarray;
    they load under numpy 2 too."""
    make_mini(tmp_path)
    path = tmp_path / MINIIMAGENET_FILES[0]
    raw = pickle.dumps(pickle.loads(path.read_bytes()), protocol=2)
    assert b"cnumpy._core.multiarray\n_reconstruct\n" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    data = miniimagenet_from_cache(tmp_path, **SMALL)
    assert data.train_x.shape == (36, 84, 84, 3)


def test_miniimagenet_bad_train_per_class(tmp_path):
    with pytest.raises(DataError, match="choose 0 < train_per_class < 6"):
        miniimagenet_from_cache(tmp_path, classes_per_file=(4, 2, 3), images_per_class=6, train_per_class=6)


def test_registry_lists_the_rgb_datasets(tmp_path):
    assert {"cifar10", "cifar100", "miniimagenet"} <= set(datasets.DATASETS)
    with pytest.raises(DataError, match="unknown option.*mirrors.*accepts: train_per_class"):
        build_canonical("miniimagenet", tmp_path / "x.pt", source_dir=tmp_path, mirrors=["http://x/"])
    with pytest.raises(DataError, match="needs source_dir"):
        build_canonical("cifar100", tmp_path / "x.pt")
