"""The canonical file format: one torch file per dataset that every experiment reads (docs/protocol.md §5).

    {"format": "stabgap-canonical", "format_version": 1, "name": str,
     "train_x": uint8 N×H×W (grey) or N×H×W×3 (RGB), "train_y": int64 N,
     "test_x": ..., "test_y": ..., "meta": dict of plain JSON values,
     "extra": {"train_<what>": int64 N_train, "test_<what>": int64 N_test}}   (only when there are any)

plus a JSON manifest next to it (`<file>.manifest.json`) with the shapes, dtypes, per-class counts,
the sha256 of every source file that went in and the sha256 of the canonical file itself.
`load_canonical` checks that sha256 before handing the tensors out. "extra" holds further label
arrays (CIFAR-100's coarse labels); files without it load with an empty dict. Every write is
atomic (fileio.atomic_write): a crash never leaves a partial file under a final name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write, atomic_write_json, sha256_file
from .base import DataError

CANONICAL_FORMAT = "stabgap-canonical"
CANONICAL_FORMAT_VERSION = 1


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


def synthetic_canonical(builder: str, train_per_class: int = 100, test_per_class: int = 20,
                        seed: int = 0) -> CanonicalData:
    """Random uint8 images in the shape of dataset `builder`'s (its registry entry), labels in class
    order, with the dataset's extra labels: for timing, and for checks where the data is not staged.
    Never trained on for a result (its name and meta say "synthetic")."""
    from . import get_source

    source = get_source(builder)
    c, h, w = source.image
    shape = (h, w) if c == 1 else (h, w, c)
    g = torch.Generator().manual_seed(seed)

    def split(n):
        y = torch.arange(source.num_classes).repeat_interleave(n)
        return torch.randint(0, 256, (len(y), *shape), dtype=torch.uint8, generator=g), y

    (tx, ty), (ex, ey) = split(train_per_class), split(test_per_class)
    extra = {}
    if source.extra_labels is not None:
        for split_name, y in (("train", ty), ("test", ey)):
            extra.update({f"{split_name}_{k}": torch.as_tensor(v) for k, v in source.extra_labels(y.numpy()).items()})
    return CanonicalData(name=f"synthetic-{builder}", train_x=tx, train_y=ty, test_x=ex, test_y=ey,
                         meta={"synthetic": True}, extra=extra)


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
