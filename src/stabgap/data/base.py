"""What every data source shares (no torch): the error type, what a builder returns, the registry
entry of a source, and the checks that run before any file is parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


class DataError(Exception):
    """A data file is missing, malformed, corrupted or could not be fetched. The message says what to do."""


@dataclass
class RawDataset:
    """What a dataset builder returns: numpy arrays straight from the source files, ready for
    canonical.save_canonical (uint8 images N×H×W or N×H×W×3, int64 labels)."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    sources: list  # paths of the raw files the data came from (their sha256 goes into the manifest)
    meta: dict  # plain JSON values; "num_classes" at least
    extra: dict = field(default_factory=dict)  # further label arrays, see canonical.CanonicalData.extra


@dataclass(frozen=True)
class Labels:
    """A dataset's labels, without its images: what a benchmark's contexts are cut by
    (benchmarks.Benchmark.contexts). `extra` holds further labels by split and name, e.g. CIFAR-100's
    coarse labels as "train_coarse" and "test_coarse"."""
    train: np.ndarray
    test: np.ndarray
    extra: dict = field(default_factory=dict)
    name: str = ""

    def extra_labels(self, key: str, split: str) -> np.ndarray:
        """The extra labels `key` of a split ("train" or "test"); a clear error when the dataset has none."""
        name = f"{split}_{key}"
        if name not in self.extra:
            raise ValueError(f"this benchmark needs {key} labels, and dataset {self.name!r} has none "
                             f"(it has: {', '.join(sorted(self.extra)) or 'no extra labels'})")
        return self.extra[name]


@dataclass(frozen=True)
class DataStatus:
    """A source's verdict on a dataset's raw files, before anything is built (Source.check)."""
    status: str  # "ok", "warning" or "failure"
    detail: str  # what was found
    todo: str = ""  # what to do about it
    download_bytes: int = 0  # what a download would fetch (missing files, reachable from here)


@dataclass(frozen=True)
class Source:
    """A dataset builder's registry entry: what planning needs to know without reading any data.

    build(source_dir, **options) -> RawDataset; its keyword arguments are the options a config's
    `datasets:` entry may set. missing(source_dir, **options) -> one line per raw file that is not
    there and will not be downloaded. test_per_class(options) -> test images per class (the cost
    model counts evaluation work with it); train_per_class(options) likewise for training images (the
    disk a config needs). extra_labels(class ids) -> the dataset's further labels of images of those
    classes, by name (CIFAR-100: "coarse"), for datasets that have any. check(source_dir, timeout,
    **options) -> DataStatus: the preflight's verdict on the raw files without building anything
    (python -m stabgap doctor): "ok" (staged and verified, or missing and its download reachable),
    "warning" (staged, not verified) or "failure" (missing and not to be had, or not the original
    files). Planning cuts a benchmark's contexts from labels in the dataset's layout
    (`counting_labels`): a source whose benchmarks need extra labels declares `extra_labels`, and
    `train_per_class` makes the preflight's disk and memory estimates exact (without it they count
    one training image a class)."""
    name: str
    image: tuple[int, int, int]  # C×H×W
    num_classes: int
    build: Callable[..., RawDataset]
    missing: Callable[..., list[str]]
    test_per_class: Callable[[dict], list[int]]
    description: str = ""
    extra_labels: Callable[[np.ndarray], dict] | None = None
    train_per_class: Callable[[dict], list[int]] | None = None
    check: Callable[..., DataStatus] | None = None

    def images(self, options: dict) -> tuple[int, int]:
        """(training, test) images of the dataset with these options (training: 0 when unknown)."""
        train = sum(self.train_per_class(options)) if self.train_per_class else 0
        return train, sum(self.test_per_class(options))

    def counting_labels(self, options: dict) -> Labels:
        """Labels in this dataset's layout, without reading it: each class's test and training images
        in class order (one training image a class where the entry does not say how many), with the
        extra labels. What planning cuts a benchmark's contexts from to count its images
        (Benchmark.stream_test_sizes, the disk a config needs)."""
        per_class = self.test_per_class(options)
        classes = np.arange(len(per_class), dtype=np.int64)
        test = np.repeat(classes, per_class)
        train = np.repeat(classes, self.train_per_class(options)) if self.train_per_class else classes
        extra = {}
        if self.extra_labels is not None:
            for split, y in (("train", train), ("test", test)):
                extra.update({f"{split}_{k}": v for k, v in self.extra_labels(y).items()})
        return Labels(train, test, extra, self.name)


def describe(value) -> str:
    """Short description of a value for error messages: type, and dtype/shape for arrays."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def check_leading_bytes(path, magic: bytes, kind: str, fix: str) -> None:
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


def require_source_dir(name: str, source_dir, holds: str) -> Path:
    if source_dir is None:
        raise DataError(f"dataset {name!r} needs source_dir: the folder that holds {holds}")
    return Path(source_dir)
