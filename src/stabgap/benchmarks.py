"""Benchmark registry (docs/protocol.md §5): what a task stream is, declared without torch.

"Benchmark" is the paper's word (Split MNIST, Split CIFAR-10, ...): a continual-learning task
stream. Snakemake's job timings (its `benchmark:` directive) are called jobtimes in this project
(`<results>/jobtimes/`), so the word keeps the paper's meaning; `from stabgap.benchmarks import
Benchmark, register` is the documented plugin API, kept as it is.

A benchmark entry holds its facts: title, kind, network, classes, normalisation, augmentation,
whether its runs can be batched, how its contexts are cut from a canonical dataset (`contexts`,
numpy only) and how many test images each task has (`test_sizes`, from the config alone: the cost
model and planning use it without reading any data). The torch parts (building a stream file, the
augmentation itself) live in streams.py and are looked up by name when a job runs.

Adding a benchmark is one `register(Benchmark(...))` call, here or in a plugin module named under
the config's `plugins:`, with a `contexts` function that returns, per task, the canonical
train/test indices and the transform to apply (see `_split_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .registry import Registry

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # "class-incremental" or "domain-incremental"
    net: str  # its network: an archs.ARCHS name
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    contexts: Callable[..., list[dict]]  # (train_y, test_y, [data,] **stream params) -> one dict per task
    # (stream params, test images per class of the dataset) -> test images per task, without the data
    test_sizes: Callable[[dict, list[int]], list[int]]
    # its stream parameters and their defaults: written here once; every function above and the
    # check below get the config's parameters on top of them (stream_params)
    defaults: dict = field(default_factory=dict)
    title: str = ""  # how tables and figures name it
    data: tuple[str, ...] = ()  # the dataset builders (data.DATASETS) it can be cut from; () = any
    augment: str | None = None  # "cifar": random crop 32 pad 4 + horizontal flip on training batches
    batchable: bool = True  # its runs may train as one batch of models (compute.batch_runs)
    # (stream params, the dataset's data.Source) -> [(param, value, what is allowed)]: checked at plan time
    check: Callable[[dict, object], list[tuple[str, object, str]]] | None = None
    description: str = ""

    def stream_params(self, params: dict | None) -> dict:
        """The config's stream parameters on top of the defaults."""
        return {**self.defaults, **(params or {})}

    def stream_errors(self, params: dict, source) -> list[tuple[str, object, str]]:
        """What is wrong with a config's stream parameters, before any data is read: unknown names,
        then the benchmark's own check against what the dataset holds (its registry entry)."""
        known = list(self.defaults)
        errors = [(k, params[k], f"not a parameter of {self.name}; it takes: {', '.join(known) or '(none)'}")
                  for k in params if k not in known]
        return errors + (self.check(self.stream_params(params), source) if self.check and not errors else [])

    def stream_test_sizes(self, params: dict | None, per_class: list[int]) -> list[int]:
        """Test images per task of a stream with these parameters (the defaults under them)."""
        return self.test_sizes(self.stream_params(params), per_class)


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
register = BENCHMARKS.register


def benchmark_title(name: str) -> str:
    """How tables and figures name a benchmark (its registry title; the name itself if unregistered)."""
    return (BENCHMARKS[name].title or name) if name in BENCHMARKS else name


def get_benchmark(name: str) -> Benchmark:
    return BENCHMARKS.get(name)


def mnist_permutations(n_contexts: int, seed: int = 42, n_pixels: int = 784) -> list[np.ndarray | None]:
    """Identity for context 1, then successive RandomState(seed).permutation draws P1, P2, ..."""
    rs = np.random.RandomState(seed)
    return [None] + [rs.permutation(n_pixels) for _ in range(n_contexts - 1)]


# ---------------------------------------------------------------- context layouts
# Each takes the canonical dataset (train_y, test_y as numpy arrays; data.extra for more labels)
# and returns one dict per task: train_idx/test_idx (canonical indices), optionally the transform
# (angle, permutation), the labels to train on (train_labels/test_labels; default: the dataset's),
# and descriptive fields for the stream's JSON (classes, ...).

def _class_split(train_y, test_y, classes: list[list[int]]) -> list[dict]:
    tasks = []
    for cls in classes:
        tasks.append({
            "classes": [int(c) for c in cls],
            "train_idx": np.flatnonzero(np.isin(train_y, cls)),
            "test_idx": np.flatnonzero(np.isin(test_y, cls)),
        })
    return tasks


def _split_pairs(train_y, test_y, classes) -> list[dict]:
    return _class_split(train_y, test_y, [list(c) for c in classes])


def _permuted_mnist(train_y, test_y, n_contexts: int, permutation_seed: int) -> list[dict]:
    perms = mnist_permutations(n_contexts, permutation_seed)
    return [{"permutation": p, "train_idx": np.arange(len(train_y)), "test_idx": np.arange(len(test_y))}
            for p in perms]


def _rotated_mnist(train_y, test_y, angles) -> list[dict]:
    return [{"angle": float(a), "train_idx": np.arange(len(train_y)), "test_idx": np.arange(len(test_y))}
            for a in angles]


def _coarse(data, split: str) -> np.ndarray:
    key = f"{split}_coarse"
    if key not in data.extra:
        raise ValueError("this benchmark needs CIFAR-100's coarse (superclass) labels; "
                         f"dataset {data.name!r} has none (use the cifar100 builder)")
    return data.extra[key].numpy()


def _domain_cifar100_v1(train_y, test_y, data, superclasses) -> list[dict]:
    """v1: context t adds all fine classes of one superclass (aquatic mammals, fish, flowers);
    targets are the 100-way fine labels (class-incremental in substance)."""
    tc, ec = _coarse(data, "train"), _coarse(data, "test")
    tasks = []
    for sc in superclasses:
        fine = sorted(int(c) for c in np.unique(train_y[tc == sc]))
        tasks.append({"superclass": int(sc), "classes": fine, "train_idx": np.flatnonzero(tc == sc),
                      "test_idx": np.flatnonzero(ec == sc)})
    return tasks


def _domain_cifar100_v2(train_y, test_y, data, n_contexts: int) -> list[dict]:
    """v2: 20-way superclass targets; context t shows the t-th fine class (in fine-label order) of
    every superclass, so each context is a new domain of the same 20 classes."""
    tc, ec = _coarse(data, "train"), _coarse(data, "test")
    fine_of = {sc: sorted(int(c) for c in np.unique(train_y[tc == sc])) for sc in range(20)}
    if not 1 <= n_contexts <= min(len(v) for v in fine_of.values()):
        raise ValueError(f"domain_cifar100_v2: n_contexts must lie in 1..5, got {n_contexts}")
    tasks = []
    for t in range(n_contexts):
        fine = [fine_of[sc][t] for sc in range(20)]
        tr, te = np.flatnonzero(np.isin(train_y, fine)), np.flatnonzero(np.isin(test_y, fine))
        tasks.append({"classes": fine, "train_idx": tr, "test_idx": te,
                      "train_labels": tc[tr], "test_labels": ec[te]})
    return tasks


def _split_blocks(train_y, test_y, n_contexts: int, classes_per_context: int) -> list[dict]:
    """Contexts of consecutive class indices: [0..c-1], [c..2c-1], ... (assumed for mini-ImageNet)."""
    n_classes = int(train_y.max()) + 1
    if n_contexts * classes_per_context > n_classes:
        raise ValueError(f"{n_contexts} contexts × {classes_per_context} classes exceed the {n_classes} classes")
    return _class_split(train_y, test_y, [list(range(k * classes_per_context, (k + 1) * classes_per_context))
                                          for k in range(n_contexts)])


# ---------------------------------------------------------------- test images per task, from the config
# (stream params, per-class test counts of the dataset) -> test images of each task

def _pairs_test_sizes(params, per_class):
    return [sum(per_class[c] for c in cls) for cls in params["classes"]]


def _whole_test_sizes(key):
    def sizes(params, per_class):
        n = params[key]
        return [sum(per_class)] * (len(n) if isinstance(n, list) else int(n))
    return sizes


def _v1_test_sizes(params, per_class):
    return [5 * per_class[0]] * len(params["superclasses"])  # 5 fine classes each


def _v2_test_sizes(params, per_class):
    return [20 * per_class[0]] * int(params["n_contexts"])  # one fine class per superclass


def _blocks_test_sizes(params, per_class):
    return [int(params["classes_per_context"]) * per_class[0]] * int(params["n_contexts"])


# ---------------------------------------------------------------- stream parameter checks (plan time)
# Each returns [(param, value, what is allowed)]; `source` is the dataset's registry entry (data.Source).

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_class_sets(params, source):
    classes = params["classes"]
    allowed = f"a non-empty list of disjoint, non-empty lists of class ids 0..{source.num_classes - 1}"
    if not isinstance(classes, list) or not classes or not all(isinstance(c, list) and c for c in classes):
        return [("classes", classes, allowed)]
    ids = [c for cls in classes for c in cls]
    bad = [c for c in ids if not _is_int(c) or not 0 <= c < source.num_classes]
    if bad:
        return [("classes", classes, f"{allowed}; {bad} not in the dataset's {source.num_classes} classes")]
    twice = sorted({c for c in ids if ids.count(c) > 1})
    if twice:
        return [("classes", classes, f"{allowed}; class(es) {twice} appear more than once")]
    return []


def _check_count(params, key, low, high=None, what="contexts"):
    n = params[key]
    if not _is_int(n) or n < low or (high is not None and n > high):
        return [(key, n, f"a whole number of {what} from {low}" + (f" to {high}" if high is not None else " up"))]
    return []


def _check_permuted(params, source):
    errors = _check_count(params, "n_contexts", 1)
    seed = params["permutation_seed"]
    if not _is_int(seed) or not 0 <= seed < 2**32:
        errors.append(("permutation_seed", seed, "a whole number from 0 to 2**32 - 1 (numpy's RandomState seed)"))
    return errors


def _check_angles(params, source):
    angles = params["angles"]
    if not isinstance(angles, list) or not angles or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and np.isfinite(a) for a in angles):
        return [("angles", angles, "a non-empty list of finite angles in degrees, one per context")]
    return []


def _check_superclasses(params, source):
    sc = params["superclasses"]
    n = 20  # CIFAR-100's coarse classes
    if (not isinstance(sc, list) or not sc or not all(_is_int(c) and 0 <= c < n for c in sc)
            or len(set(sc)) != len(sc)):
        return [("superclasses", sc, f"a non-empty list of distinct superclass ids 0..{n - 1}")]
    return []


def _check_blocks(params, source):
    errors = _check_count(params, "n_contexts", 1) + _check_count(params, "classes_per_context", 1, what="classes")
    if not errors:
        n, c = params["n_contexts"], params["classes_per_context"]
        if n * c > source.num_classes:
            errors.append(("n_contexts", n, f"n_contexts × classes_per_context ({n} × {c}) within the dataset's "
                                            f"{source.num_classes} classes"))
    return errors


# ---------------------------------------------------------------- the paper's benchmarks

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]

register(Benchmark("split_mnist", "class-incremental", "mlp", 10, MNIST_MEAN, MNIST_STD, _split_pairs,
                   _pairs_test_sizes, defaults={"classes": PAIRS}, title="Split MNIST", data=("mnist", "mnist5k"),
                   check=_check_class_sets, description="5 contexts adding class pairs {0,1}, {2,3}, ..."))
register(Benchmark("permuted_mnist", "domain-incremental", "mlp", 10, MNIST_MEAN, MNIST_STD, _permuted_mnist,
                   _whole_test_sizes("n_contexts"), defaults={"n_contexts": 3, "permutation_seed": 42},
                   title="Permuted MNIST", data=("mnist", "mnist5k"), check=_check_permuted,
                   description="identity, then fixed pixel permutations P1, P2 (RandomState(42))"))
register(Benchmark("rotated_mnist", "domain-incremental", "mlp", 10, MNIST_MEAN, MNIST_STD, _rotated_mnist,
                   _whole_test_sizes("angles"), defaults={"angles": [0, 80, 160]}, title="Rotated MNIST",
                   data=("mnist", "mnist5k"), check=_check_angles, description="rotations by 0°, 80°, 160°"))
register(Benchmark("split_cifar10", "class-incremental", "resnet18_slim", 10, CIFAR_MEAN, CIFAR_STD, _split_pairs,
                   _pairs_test_sizes, defaults={"classes": PAIRS}, title="Split CIFAR-10", data=("cifar10",),
                   check=_check_class_sets, augment="cifar",
                   description="5 contexts adding class pairs (airplane+automobile, ...)"))
register(Benchmark("domain_cifar100_v1", "class-incremental", "resnet18_slim", 100, CIFAR_MEAN, CIFAR_STD,
                   _domain_cifar100_v1, _v1_test_sizes, defaults={"superclasses": [0, 1, 2]},
                   title="Domain CIFAR-100 (v1)", data=("cifar100",), check=_check_superclasses, augment="cifar",
                   description="aquatic mammals, +fish, +flowers; 100-way fine labels (v1)"))
register(Benchmark("domain_cifar100_v2", "domain-incremental", "resnet18_slim", 20, CIFAR_MEAN, CIFAR_STD,
                   _domain_cifar100_v2, _v2_test_sizes, defaults={"n_contexts": 3}, title="Domain CIFAR-100 (v2)",
                   data=("cifar100",), check=lambda p, s: _check_count(p, "n_contexts", 1, 5), augment="cifar",
                   description="20-way superclass labels, one new fine class per superclass per context (v2)"))
# mini-ImageNet's normalisation and augmentation are not stated anywhere we could read (assumed):
# ImageNet statistics, no augmentation.
register(Benchmark("split_miniimagenet", "class-incremental", "resnet18_slim", 100, IMAGENET_MEAN, IMAGENET_STD,
                   _split_blocks, _blocks_test_sizes, defaults={"n_contexts": 5, "classes_per_context": 10},
                   title="Split mini-ImageNet", data=("miniimagenet",), check=_check_blocks,
                   description="contexts of 10 consecutive classes, 84×84 (v2)"))
