"""Task streams (docs/protocol.md §5): the torch side of the benchmarks declared in benchmarks.py.

A task stream is a sequence of tasks; task j is the data introduced in context j, and context k
trains on the union of tasks 1..k. A `Stream` stores the training images of all tasks
concatenated in task order, so the union of contexts 1..k is simply the prefix
`train_x[:train_offsets[k]]`; the test images likewise (`test_offsets`). Images stay uint8 after
the geometric transform (rotation and permutation are exact in uint8); normalisation happens on the
run's device inside the training loop.

The benchmark registry itself (benchmarks.py) imports no torch; a benchmark's `augment` names an
entry of AUGMENTATIONS here.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .benchmarks import DESCRIPTIVE_KEYS, get_benchmark
from .data import DataError
from .data.base import Labels
from .data.canonical import CanonicalData, load_canonical
from .fileio import atomic_write_bytes

@dataclass
class Stream:
    benchmark: str
    train_x: torch.Tensor  # uint8, all tasks concatenated in task order
    train_y: torch.Tensor  # int64
    train_offsets: list[int]  # task j is train_x[offsets[j-1]:offsets[j]]
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_offsets: list[int]
    spec: dict = field(default_factory=dict)  # JSON-able description: contexts, classes, angles, ...

    @property
    def n_tasks(self) -> int:
        return len(self.train_offsets) - 1

    def task_sizes(self, split: str) -> list[int]:
        off = self.train_offsets if split == "train" else self.test_offsets
        return [b - a for a, b in zip(off[:-1], off[1:])]


# ---------------------------------------------------------------- augmentation (on the run's device)

def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """CIFAR training augmentation on a uint8 batch B×C×H×W, on its device: a random H×W crop of
    the image zero-padded by `pad` pixels (the padding is black before normalisation, as with
    torchvision's RandomCrop), then a horizontal flip with probability 0.5. Draws from `gen` (CPU)."""
    B, C, H, W = x.shape
    i = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    j = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    flip = (torch.rand(B, generator=gen) < 0.5).to(x.device)
    rows = i[:, None] + torch.arange(H, device=x.device)
    cols = j[:, None] + torch.arange(W, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return xp[b, c, rows[:, None, :, None], cols[:, None, None, :]]


AUGMENTATIONS = {"cifar": crop_flip}


# ---------------------------------------------------------------- a run's random streams

def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; independent streams for (seed, purpose, context)."""
    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


# what a run draws, each from its own generator: its mini-batches (a fresh sampler per context, with
# their training augmentation), its fixed evaluation subset, its v1 test augmentation
PURPOSE_SAMPLER, PURPOSE_EVAL_SUBSET, PURPOSE_TEST_AUGMENT = 1, 2, 3


# ---------------------------------------------------------------- a stream on a run's device

class DeviceStream:
    """A stream's images and labels on the device of a batch of runs, in the layout the networks
    take, held once for every run of the batch: training images stay uint8 (normalised per batch,
    after augmentation); the task-ordered test set is normalised once (kept uint8 under the v1 test
    augmentation, which augments afresh at every evaluation)."""

    def __init__(self, stream: Stream, device: torch.device, test_augment: bool = False):
        bench = get_benchmark(stream.benchmark)
        self.stream = stream
        self.train_x = self._layout(stream.train_x).to(device)
        self.train_y = stream.train_y.to(device)
        self.mean = torch.tensor(bench.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(bench.std, device=device).view(1, -1, 1, 1)
        self.augment = AUGMENTATIONS[bench.augment] if bench.augment else None
        if test_augment and self.augment is None:
            raise ValueError(f"test_augment is on, but benchmark {stream.benchmark!r} has no augmentation")
        test_x = self._layout(stream.test_x).to(device)
        self.test_x = test_x if test_augment else self.normalise(test_x)
        self.test_y = stream.test_y.to(device)
        self.device = torch.device(device)

    @property
    def image(self) -> tuple[int, int, int]:
        """C×H×W."""
        return tuple(self.train_x.shape[1:])

    @staticmethod
    def _layout(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # N×H×W×3 images -> N×3×H×W
            return x.permute(0, 3, 1, 2).contiguous()
        return x.unsqueeze(1)  # N×1×H×W

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div_(255.0) - self.mean) / self.std

    def sample(self, k: int, generators: list[torch.Generator], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch per run from the union of tasks 1..k, drawn i.i.d. with replacement (and
        augmented, on the uint8 images) from that run's own generator: exactly what it draws alone.
        R×B×C×H×W normalised images, R×B labels."""
        n_union = self.stream.train_offsets[k]
        idx = [torch.randint(0, n_union, (batch_size,), generator=g) for g in generators]
        if self.augment is None:
            idx = torch.stack(idx).to(self.device)
            return self.normalise(self.train_x[idx]), self.train_y[idx]
        xs = [self.augment(self.train_x[i.to(self.device)], g) for g, i in zip(generators, idx)]
        idx = torch.stack(idx).to(self.device)
        return self.normalise(torch.stack(xs)), self.train_y[idx]


# ---------------------------------------------------------------- building, saving, loading

def build_stream(benchmark: str, data: CanonicalData, params: dict | None = None) -> Stream:
    """Materialise a benchmark's task stream from a canonical dataset (canonical.load_canonical): its
    tasks cut from the dataset's labels (Benchmark.tasks), each task's images shifted by the
    benchmark's transform, once, in uint8."""
    bench = get_benchmark(benchmark)
    train_x, train_y = data.train_x.numpy(), data.train_y.numpy()
    test_x, test_y = data.test_x.numpy(), data.test_y.numpy()
    params = bench.stream_params(params)  # on top of the benchmark's defaults (the stream's JSON records these)
    labels = Labels(train_y, test_y, {k: v.numpy() for k, v in data.extra.items()}, data.name)
    tasks = bench.tasks(labels, params)
    shift = bench.transform or (lambda images, task: images)
    xs, ys, txs, tys, spec_tasks = [], [], [], [], []
    for j, task in enumerate(tasks, start=1):
        xs.append(shift(train_x[task["train_idx"]], task))
        ys.append(task["train_labels"] if "train_labels" in task else train_y[task["train_idx"]])
        txs.append(shift(test_x[task["test_idx"]], task))
        tys.append(task["test_labels"] if "test_labels" in task else test_y[task["test_idx"]])
        entry = {"task": j, "n_train": int(len(task["train_idx"])), "n_test": int(len(task["test_idx"])),
                 "train_idx_sha256": _sha(task["train_idx"]), "test_idx_sha256": _sha(task["test_idx"]),
                 "train_classes": sorted(int(c) for c in np.unique(ys[-1]))}
        for key in (*DESCRIPTIVE_KEYS, *bench.task_keys):
            if task.get(key) is not None:
                entry[key] = np.asarray(task[key]).tolist()
        spec_tasks.append(entry)
    spec = {"benchmark": benchmark, "kind": bench.kind, "net": bench.net, "num_classes": bench.num_classes,
            "mean": list(bench.mean), "std": list(bench.std), "augment": bench.augment,
            "params": params, "dataset": data.name, "tasks": spec_tasks}
    return Stream(benchmark, torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)),
                  _offsets(xs), torch.from_numpy(np.concatenate(txs)), torch.from_numpy(np.concatenate(tys)),
                  _offsets(txs), spec)


def _offsets(parts) -> list[int]:
    return [0] + np.cumsum([len(p) for p in parts]).tolist()


def _sha(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()


def save_stream(stream: Stream, path: str | Path) -> None:
    """The stream as one torch file, plus `<path>.json` with its human-readable description."""
    buf = io.BytesIO()
    torch.save({"benchmark": stream.benchmark, "train_x": stream.train_x, "train_y": stream.train_y,
                "train_offsets": stream.train_offsets, "test_x": stream.test_x, "test_y": stream.test_y,
                "test_offsets": stream.test_offsets, "spec": stream.spec}, buf)
    data = buf.getvalue()
    spec = dict(stream.spec, sha256=hashlib.sha256(data).hexdigest())
    atomic_write_bytes(Path(path), data)
    atomic_write_bytes(Path(str(path) + ".json"), json.dumps(spec, indent=1).encode())


def load_stream(path: str | Path, verify: bool = True) -> Stream:
    path = Path(path)
    data = path.read_bytes()
    if verify:
        meta_path = Path(str(path) + ".json")
        if meta_path.exists():
            expected = json.loads(meta_path.read_text()).get("sha256")
            if expected and hashlib.sha256(data).hexdigest() != expected:
                raise DataError(f"task stream {path} is corrupted or was changed after it was written "
                                f"(sha256 mismatch with {meta_path.name}); delete it and rerun the streams stage")
    d = torch.load(io.BytesIO(data), weights_only=True)
    return Stream(d["benchmark"], d["train_x"], d["train_y"], list(d["train_offsets"]), d["test_x"],
                  d["test_y"], list(d["test_offsets"]), d["spec"])


def build_stream_file(benchmark: str, canonical_path: str | Path, out_path: str | Path,
                      params: dict | None = None) -> Stream:
    stream = build_stream(benchmark, load_canonical(canonical_path), params)
    save_stream(stream, out_path)
    return stream
