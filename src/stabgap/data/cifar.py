"""CIFAR-10 and CIFAR-100, "python version": pickled batches, in the published tar.gz or extracted.

Downloads, md5 checks and extraction go through torchvision (download.py). Our own, because
torchvision's CIFAR10/CIFAR100 classes lack it: md5 checks that can be switched off (a staged
look-alike copy cannot match the published md5, and those classes refuse it), both staged layouts
(archive or extracted folder), CIFAR-100's coarse labels (kept as extra labels), checks of each
batch's structure with messages that say what is wrong, and the restricted unpickler (pickles.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import (
    DataError,
    DataStatus,
    RawDataset,
    Source,
    check_leading_bytes,
    describe,
    require_source_dir,
)
from .download import check_gzip_stream, download_file, extracted, verify_md5
from .pickles import unpickle

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


def _cifar_dict(obj, source, title):
    """The pickled dict with bytes keys (str keys, from a copy re-pickled by Python 3, are encoded)."""
    if not isinstance(obj, dict):
        raise DataError(f"{source} should hold a dict (a {title} python-version pickle), got {describe(obj)}")
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
                        f"per row), got {describe(data)}")
    n = data.shape[0]
    labels = []
    for key, k in zip(layout.label_keys, layout.num_classes):
        y = np.asarray(d[key])
        if y.size == 0:
            y = y.astype(np.int64)
        if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu":
            raise DataError(f"{source}: '{key.decode()}' should hold {n} integer labels (one per image), "
                            f"got {describe(y)}")
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
            raise DataError(f"{source}: '{key.decode()}' should list {k} class names, got {describe(values)}")
        names.append([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values])
    return names


def cifar_from_pickles(folder, variant, check_md5=True, archive_md5=None, file_md5=None):
    """Read CIFAR-10 (variant "cifar10") or CIFAR-100 ("cifar100"), python version, from `folder`.

    `folder` holds the published archive (cifar-10-python.tar.gz / cifar-100-python.tar.gz; extracted
    into a temporary folder that is removed afterwards) or, if there is no archive, its extracted folder
    (cifar-10-batches-py/ / cifar-100-python/). check_md5: before anything is unpickled, check the
    archive's md5 against `archive_md5`, or each extracted file's against `file_md5` ({file name:
    md5}); both default to the published values. Without md5 checks an archive's gzip stream is still
    read to its end (length and CRC). A mismatch is reported, never deleted (the files
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
        check_leading_bytes(archive, b"\x1f\x8b", "gzip file", fix)
        if check_md5:
            verify_md5(archive, archive_md5, fix)
        else:
            check_gzip_stream(archive, fix)
        with extracted(archive, fix) as tmp:
            missing = [name for name in names if not (tmp / layout.folder / name).is_file()]
            if missing:
                raise DataError(f"{archive} lacks {', '.join(f'{layout.folder}/{m}' for m in missing)}: it is "
                                f"not the expected archive. {fix}")
            raw = {name: (tmp / layout.folder / name).read_bytes() for name in names}
        where = {name: f"{archive}:{layout.folder}/{name}" for name in names}
        sources = [archive]
    else:
        extracted_dir = folder / layout.folder
        missing = [name for name in names if not (extracted_dir / name).is_file()]
        if missing:
            lacks = (f"{extracted_dir} lacks {', '.join(missing)}; " if extracted_dir.is_dir() else "")
            raise DataError(f"{layout.title} not found in {folder.resolve()}: {lacks}{_cifar_stage_hint(folder, layout)} "
                            f"Or set the dataset option download: true to fetch the archive.")
        paths = [extracted_dir / name for name in names]
        if check_md5:
            unknown = [name for name in names if name not in file_md5]
            if unknown:
                raise ValueError(f"no md5 known for {', '.join(unknown)}; pass file_md5 with entries for "
                                 f"them, or check_md5=False")
            for path in paths:
                verify_md5(path, file_md5[path.name],
                           f"Delete it and rerun with the original (the archive {layout.archive} from "
                           f"{CIFAR_HOME}, or its extracted files).")
        raw = {path.name: path.read_bytes() for path in paths}
        where = {path.name: str(path) for path in paths}
        sources = paths

    batches = [_parse_cifar_batch(unpickle(io.BytesIO(raw.pop(name)), where[name], encoding="bytes"),
                                  where[name], layout)
               for name in (*layout.train_files, layout.test_file)]
    names_lists = _parse_cifar_meta(unpickle(io.BytesIO(raw.pop(layout.meta_file)), where[layout.meta_file],
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


def _build(variant, source_dir, download, check_md5, mirrors, timeout) -> RawDataset:
    layout = _cifar_layout(variant)
    source_dir = require_source_dir(variant, source_dir, f"(or will receive) {layout.archive} or its "
                                                         f"extracted folder {layout.folder}/")
    if download and not cifar_is_staged(source_dir, variant):
        download_cifar(source_dir, variant, mirrors=mirrors, timeout=timeout)
    data = cifar_from_pickles(source_dir, variant, check_md5=check_md5)
    data.meta = {"description": f"{layout.title} (Krizhevsky 2009), python version; train = "
                                f"{' + '.join(layout.train_files)} in this order, test = {layout.test_file}",
                 **data.meta}
    return data


def build_cifar10(source_dir, download=False, check_md5=True, mirrors=CIFAR_MIRRORS, timeout=10.0) -> RawDataset:
    return _build("cifar10", source_dir, download, check_md5, mirrors, timeout)


def build_cifar100(source_dir, download=False, check_md5=True, mirrors=CIFAR_MIRRORS, timeout=10.0) -> RawDataset:
    return _build("cifar100", source_dir, download, check_md5, mirrors, timeout)


def _missing(variant):
    def missing(source_dir, download=False, **_options) -> list[str]:
        if download or cifar_is_staged(source_dir, variant):
            return []
        return [f"neither {CIFAR_LAYOUTS[variant].archive} nor its extracted folder is in {source_dir}"]
    return missing


def _check(variant):
    def check(source_dir, timeout=5.0, download=False, check_md5=True, mirrors=CIFAR_MIRRORS, **_options):
        """The preflight's verdict on the staged files (base.Source.check): the archive's md5, or each
        extracted file's, or the mirrors' answer when nothing is staged."""
        from .download import mb, md5_of, probe_mirrors

        layout, folder = _cifar_layout(variant), Path(source_dir)
        archive, extracted_folder = folder / layout.archive, folder / layout.folder
        if not cifar_is_staged(folder, variant):
            if not download:
                return DataStatus("failure", f"neither {layout.archive} nor {layout.folder}/ is in {folder}",
                                  f"put one of them into {folder} ({CIFAR_HOME}), or set download: true")
            got, failed = probe_mirrors([layout.archive], mirrors, timeout)
            if failed:
                return DataStatus("failure", f"missing in {folder}, and not reachable from here: {'; '.join(failed)}",
                                  f"download {layout.archive} elsewhere and copy it into {folder}")
            url, size = got[layout.archive]
            return DataStatus("ok", f"missing; downloadable from {url} ({mb(size)})", "", size or 0)
        where = archive if archive.is_file() else extracted_folder
        if not check_md5:
            return DataStatus("warning", f"staged ({where}); not verified (check_md5: false)")
        if archive.is_file():
            bad = [] if md5_of(archive) == layout.archive_md5 else [layout.archive]
        else:
            bad = [n for n in _cifar_files(layout) if md5_of(extracted_folder / n) != layout.file_md5[n]]
        if bad:
            return DataStatus("failure", f"not the original {layout.title} files: md5 differs for {', '.join(bad)} "
                                         f"in {where}", "replace them with the original files (or set check_md5: "
                                                        "false for a deliberate look-alike)")
        return DataStatus("ok", f"staged ({where}); md5 verified")
    return check


CIFAR10 = Source("cifar10", image=(3, 32, 32), num_classes=10, build=build_cifar10, missing=_missing("cifar10"),
                 test_per_class=lambda options: [1000] * 10, train_per_class=lambda options: [5000] * 10,
                 check=_check("cifar10"),
                 description="cifar-10-python.tar.gz or its folder cifar-10-batches-py/; downloaded if download: true")
# CIFAR-100's superclass (coarse label) of each fine class, in fine-label order: fixed by the dataset
# (its meta file's fine and coarse label names), 5 fine classes per superclass
CIFAR100_COARSE = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13], dtype=np.int64)

CIFAR100 = Source("cifar100", image=(3, 32, 32), num_classes=100, build=build_cifar100, missing=_missing("cifar100"),
                  test_per_class=lambda options: [100] * 100, train_per_class=lambda options: [500] * 100,
                  extra_labels=lambda fine: {"coarse": CIFAR100_COARSE[fine]}, check=_check("cifar100"),
                  description="cifar-100-python.tar.gz or its folder cifar-100-python/; coarse labels kept")
