"""MNIST from its four IDX files, gzipped or plain; downloaded from the mirrors if asked.

The IDX files are read with torchvision's reader (`read_sn3_pascalvincent_tensor`, which its MNIST
class uses) after our own header check: torchvision checks with `assert` (gone under `python -O`)
and does not say what is wrong with a bad file. Gzipped files are decompressed with torchvision's
extract_archive into a temporary folder. Our own: the staged layout the README documents (each
file gzipped or not, .gz preferred), and the md5 of the uncompressed bytes, which holds for any
re-gzipped copy of the original data.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .base import DataError, DataStatus, RawDataset, Source, check_leading_bytes, require_source_dir
from .download import download_file, extracted, md5_of

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
MNIST_TEST_PER_CLASS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def check_idx(path, source=None) -> None:
    """DataError unless the plain (uncompressed) file `path` is a uint8 IDX file whose header
    matches its length. `source` names the file in messages (default: `path`)."""
    source = source or str(path)
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 4:
        raise DataError(f"{source} is truncated: {size} bytes, too short for an IDX header")
    magic = int.from_bytes(head[:4], "big")
    if magic not in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC):
        raise DataError(f"{source} is not an MNIST IDX file: magic number 0x{magic:08x}, expected "
                        f"0x{IDX_IMAGES_MAGIC:08x} (images) or 0x{IDX_LABELS_MAGIC:08x} (labels)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if size < header:
        raise DataError(f"{source} is truncated: {size} bytes, the header alone needs {header}")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if size < expected:
        raise DataError(f"{source} is truncated: header says shape {dims} ({expected} bytes in all), "
                        f"the file has {size} bytes; replace it with a complete copy")
    if size > expected:
        raise DataError(f"{source} has {size - expected} unexpected bytes after the data "
                        f"(header says shape {dims}); it is not a valid IDX file")


@contextlib.contextmanager
def _plain(path):
    """The uncompressed file of `path`: itself, or (name ends in .gz) a decompressed temporary copy."""
    path = Path(path)
    if path.suffix != ".gz":
        yield path
        return
    check_leading_bytes(path, b"\x1f\x8b", "gzip file", "Replace it with the real file "
                        "(perhaps an HTML error page was saved instead of the data).")
    with extracted(path, "Replace it with a complete copy.") as folder:
        yield folder / path.name.removesuffix(".gz")


def _read_plain(plain, source, raw_md5=None) -> np.ndarray:
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    check_idx(plain, source)
    if raw_md5 is not None:
        actual = md5_of(plain)
        if actual != raw_md5:
            raise DataError(f"{source} is not the original MNIST file: md5 of its uncompressed "
                            f"bytes is {actual}, expected {raw_md5}; replace it with the original")
    return read_sn3_pascalvincent_tensor(str(plain), strict=True).numpy()


def read_idx(path, raw_md5=None) -> np.ndarray:
    """Read one IDX file (gzipped if the name ends in .gz) into a writable uint8 numpy array.
    raw_md5: if given, the md5 its uncompressed bytes must have."""
    with _plain(path) as plain:
        return _read_plain(plain, str(path), raw_md5)


def find_mnist_files(folder) -> dict:
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
        x, y = (read_idx(found[name], (raw_md5 or {}).get(name)) for name in (img_name, lab_name))
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


def download_mnist(folder, mirrors=MNIST_MIRRORS, timeout=10.0, md5=MNIST_GZ_MD5, files=None):
    """Download the gzipped MNIST files into `folder` (the workflow's data_root); returns their paths.

    Each file goes through download.download_file (kept if present with the right md5; .part files;
    md5 check; mirrors in order). The first file that no mirror delivers raises DataError right away
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


def build(source_dir, download=False, check_md5=True, mirrors=MNIST_MIRRORS, timeout=10.0) -> RawDataset:
    source_dir = require_source_dir("mnist", source_dir, "(or will receive) the four MNIST IDX files")
    missing = [n for n, p in find_mnist_files(source_dir).items() if p is None]
    if missing and download:
        download_mnist(source_dir, mirrors=mirrors, timeout=timeout, files=[n + ".gz" for n in missing])
    train_x, train_y, test_x, test_y, sources = mnist_from_idx(
        source_dir, raw_md5=MNIST_RAW_MD5 if check_md5 else None)
    meta = {"description": "MNIST handwritten digits (LeCun, Cortes, Burges; CC BY-SA 3.0)",
            "num_classes": 10}
    return RawDataset(train_x, train_y, test_x, test_y, sources, meta)


def missing(source_dir, download=False, **_options) -> list[str]:
    if download:
        return []
    return [f"{n}(.gz) is not in {source_dir}" for n, p in find_mnist_files(source_dir).items() if p is None]


def check(source_dir, timeout=5.0, download=False, check_md5=True, mirrors=MNIST_MIRRORS, **_options) -> DataStatus:
    """The preflight's verdict on the staged files (base.Source.check): each file's md5 of its
    uncompressed bytes, or the mirrors' answer for the missing ones."""
    from .download import mb, probe_mirrors

    folder = Path(source_dir)
    found = find_mnist_files(folder)
    missing_names = [n for n, p in found.items() if p is None]
    if missing_names:
        if not download:
            return DataStatus("failure", f"missing in {folder}: {', '.join(missing_names)}",
                              f"put the four MNIST IDX files (gzipped or not) into {folder}, or set download: true")
        got, failed = probe_mirrors([n + ".gz" for n in missing_names], mirrors, timeout)
        if failed:
            return DataStatus("failure", f"missing in {folder}, and not reachable from here: {'; '.join(failed)}",
                              f"download {', '.join(n + '.gz' for n in missing_names)} elsewhere and copy them "
                              f"into {folder}")
        sizes = [size for _, size in got.values()]
        total = sum(sizes) if None not in sizes else None
        where = next(iter(got.values()))[0].rsplit("/", 1)[0]
        return DataStatus("ok", f"missing; downloadable from {where}/ ({mb(total)})", "", total or 0)
    if not check_md5:
        return DataStatus("warning", f"staged in {folder}; not verified (check_md5: false)")
    bad = []
    for name, path in found.items():
        with _plain(path) as plain:
            if md5_of(plain) != MNIST_RAW_MD5[name]:
                bad.append(path.name)
    if bad:
        return DataStatus("failure", f"not the original MNIST files in {folder}: md5 differs for {', '.join(bad)}",
                          "replace them with the original files (or set check_md5: false for a deliberate look-alike)")
    return DataStatus("ok", f"staged in {folder}; md5 verified (4 files)")


MNIST_TRAIN_PER_CLASS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)

SOURCE = Source("mnist", image=(1, 28, 28), num_classes=10, build=build, missing=missing,
                test_per_class=lambda options: list(MNIST_TEST_PER_CLASS),
                train_per_class=lambda options: list(MNIST_TRAIN_PER_CLASS), check=check,
                description="the four MNIST IDX files (gzipped or plain); downloaded if missing and download: true")
