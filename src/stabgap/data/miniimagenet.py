"""mini-ImageNet from the three learn2learn cache pickles, staged by hand (our own: torchvision has
no mini-ImageNet, and there is no official download). No checksum of these files is published: their
sha256s are recorded in <source_dir>/SHA256SUMS when first used and checked on every later use."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text, sha256_file
from .base import (
    DataError,
    DataStatus,
    RawDataset,
    Source,
    check_leading_bytes,
    describe,
    require_source_dir,
)
from .pickles import unpickle

log = logging.getLogger(__name__)

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
        keys = f"keys {sorted(map(str, obj))}" if isinstance(obj, dict) else describe(obj)
        raise DataError(f"{path} should hold a dict with keys 'image_data' and 'class_dict' (the learn2learn "
                        f"mini-ImageNet cache layout), got {keys}")
    images = obj["image_data"]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[1:] == MINIIMAGENET_IMAGE_SHAPE):
        raise DataError(f"{path}: 'image_data' should be a uint8 array of shape N×84×84×3, got {describe(images)}")
    class_dict = obj["class_dict"]
    if not isinstance(class_dict, dict):
        raise DataError(f"{path}: 'class_dict' should be a dict {{class name: image indices}}, got {describe(class_dict)}")
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
            raise DataError(f"{path}: class {name} should list integer image indices, got {describe(rows)}")
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
        check_leading_bytes(path, b"\x80", "pickle of protocol 2 or later",
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
            obj = unpickle(f, str(path), encoding="latin1")
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


def build(source_dir, train_per_class=500, download=False,
          images_per_class=MINIIMAGENET_IMAGES_PER_CLASS, classes_per_file=MINIIMAGENET_CLASSES_PER_FILE) -> RawDataset:
    # download: accepted so that a config may say download: true for every dataset; there is nothing
    # to download from, and the missing-files error says where to get the files instead
    source_dir = require_source_dir("miniimagenet", source_dir, f"the files {', '.join(MINIIMAGENET_FILES)}")
    if download:
        log.info("mini-ImageNet has no official download; the staged files in %s are used", source_dir)
    data = miniimagenet_from_cache(source_dir, train_per_class=train_per_class,
                                   images_per_class=images_per_class, classes_per_file=classes_per_file)
    data.meta = {"description": "mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle split), learn2learn "
                                "cache pickles train + validation + test stacked into 100 classes",
                 **data.meta}
    return data


def missing(source_dir, **_options) -> list[str]:
    return [f"{f} is not in {source_dir} (no download exists: stage it by hand)"
            for f in MINIIMAGENET_FILES if not (Path(source_dir) / f).exists()]


def check(source_dir, timeout=5.0, **_options) -> DataStatus:
    """The preflight's verdict (base.Source.check): the three files against the sha256 recorded when
    they were first used (no checksum is published)."""
    folder = Path(source_dir)
    absent = [f for f in MINIIMAGENET_FILES if not (folder / f).is_file()]
    if absent:
        return DataStatus("failure", f"missing in {folder}: {', '.join(absent)} (no download exists)",
                          f"stage the learn2learn cache pickles into {folder} by hand")
    sums = folder / SHA256SUMS_NAME
    if not sums.exists():
        return DataStatus("warning", f"staged in {folder}; not verified yet (no checksum is published: the sha256 "
                                     f"of the files is recorded in {SHA256SUMS_NAME} when they are first built)")
    try:
        _check_sha256sums(sums, {f: sha256_file(folder / f) for f in MINIIMAGENET_FILES})
    except DataError as err:
        return DataStatus("failure", str(err), f"restore the original files, or delete {sums} to accept the new ones")
    return DataStatus("ok", f"staged in {folder}; sha256 verified against {SHA256SUMS_NAME}")


SOURCE = Source("miniimagenet", image=(3, 84, 84), num_classes=100, build=build, missing=missing,
                test_per_class=lambda options: [MINIIMAGENET_IMAGES_PER_CLASS - int(options.get("train_per_class", 500))] * 100,
                train_per_class=lambda options: [int(options.get("train_per_class", 500))] * 100, check=check,
                description="the learn2learn cache pickles mini-imagenet-cache-{train,validation,test}.pkl, staged by hand")
