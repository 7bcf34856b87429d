"""Benchmark registry (docs/protocol.md §5): what a task stream is, declared without torch.

"Benchmark" is the paper's word (Split MNIST, Split CIFAR-10, ...): a continual-learning task
stream. Snakemake's job timings (its `benchmark:` directive) are called jobtimes in this project
(`<results>/jobtimes/`), so the word keeps the paper's meaning; `from stabgap.benchmarks import
Benchmark, register` is the documented plugin API (docs/extending.md).

A benchmark entry holds its facts: title, kind, network, classes, normalisation, augmentation,
whether its runs can be batched, its stream parameters with their defaults, how its contexts are cut
from a dataset's labels (`contexts`), and how a task's images are shifted (`transform`, for domain
shifts such as a rotation). Everything else is derived from them: the stream (streams.py, the only
torch part), the test images per task that planning and the cost model count (`stream_test_sizes`:
the contexts cut from labels in the dataset's layout, no data read).

The helpers below are the common shapes of a benchmark, public for plugins: class splits
(`class_split`, `class_blocks`), domains over every image (`domains`, with `rotations` and
`permutations`), the transforms `rotate` and `permute`, and the parameter checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .data.base import Labels
from .registry import Registry

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)

# the keys of a task dict that build_stream reads itself: which images and labels make the task, and
# what describes it in the stream's JSON; any other key is the benchmark's `task_keys`, read by its transform
INDEX_KEYS = ("train_idx", "test_idx", "train_labels", "test_labels")
DESCRIPTIVE_KEYS = ("classes", "superclass")


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """A task stream, declared by keyword. Required: what it is (`name`, `kind`), the network that
    learns it (`net`, `num_classes` outputs), its normalisation (`mean`, `std`, one value per
    channel) and how its contexts are cut (`contexts`)."""

    name: str
    kind: str  # "class-incremental" or "domain-incremental" (figures 2 and 3)
    net: str  # its network: an archs.ARCHS name
    num_classes: int  # the network's outputs
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # (labels: data.base.Labels, **stream params) -> one dict per task: train_idx and test_idx (the
    # dataset's image indices), optionally train_labels/test_labels (labels to train on instead of the
    # dataset's), classes/superclass (described in the stream's JSON) and the keys of `task_keys`
    contexts: Callable[..., list[dict]]
    # its stream parameters and their defaults, written here once: `contexts` and `check` get the
    # config's parameters on top of them (stream_params), and so does a run's hash (config.stream_config)
    defaults: dict = field(default_factory=dict)
    # (uint8 images N×H×W or N×H×W×C, the task's dict) -> the task's images, same shape and dtype:
    # a domain shift applied once, when the stream is built (rotate, permute, ...); None = none
    transform: Callable[[np.ndarray, dict], np.ndarray] | None = None
    task_keys: tuple[str, ...] = ()  # the task keys `transform` reads (recorded in the stream's JSON)
    title: str = ""  # how tables and figures name it (default: its name)
    data: tuple[str, ...] = ()  # the dataset builders (data.DATASETS) it can be cut from; () = any
    augment: str | None = None  # "cifar": random crop 32 pad 4 + horizontal flip on training batches
    batchable: bool = True  # its runs may train as one batch of models (compute.batch_runs)
    # (stream params, the dataset's data.Source) -> [(param, value, what is allowed)]: checked at plan time
    check: Callable[[dict, object], list[tuple[str, object, str]]] | None = None
    description: str = ""

    def __post_init__(self):
        if self.kind not in ("class-incremental", "domain-incremental"):
            raise ValueError(f"benchmark {self.name!r}: kind must be 'class-incremental' or 'domain-incremental', "
                             f"got {self.kind!r}")
        if self.task_keys and self.transform is None:
            raise ValueError(f"benchmark {self.name!r}: task_keys {list(self.task_keys)} name what its transform "
                             f"reads, and it has no transform; give transform=(images, task) -> images")
        if len(self.mean) != len(self.std):
            raise ValueError(f"benchmark {self.name!r}: mean and std need one value per channel each "
                             f"({len(self.mean)} and {len(self.std)} given)")

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

    def tasks(self, labels: Labels, params: dict | None) -> list[dict]:
        """Its tasks cut from these labels (the config's stream parameters on top of the defaults),
        each checked: the index keys present, no key that nothing would read."""
        call = self.stream_params(params)
        try:
            tasks = self.contexts(labels, **call)
        except TypeError as err:
            if err.__traceback__.tb_next is not None:  # raised inside contexts: its own error, not the call's
                raise
            raise ValueError(f"benchmark {self.name!r}: bad stream parameters {call}: {err}") from None
        if not tasks:
            raise ValueError(f"benchmark {self.name!r}: its contexts gave no task (stream parameters {call})")
        known = set(INDEX_KEYS) | set(DESCRIPTIVE_KEYS) | set(self.task_keys)
        for j, task in enumerate(tasks, start=1):
            missing = [k for k in ("train_idx", "test_idx") if k not in task]
            unknown = sorted(set(task) - known)
            if missing:
                raise ValueError(f"benchmark {self.name!r}: task {j} has no {' or '.join(missing)} "
                                 f"(the dataset's image indices of the task)")
            if unknown:
                raise ValueError(f"benchmark {self.name!r}: task {j} carries key(s) {', '.join(map(repr, unknown))} that "
                                 f"nothing reads; a shift of the images needs transform=(images, task) -> images and "
                                 f"task_keys naming the keys it reads (known: {', '.join(sorted(known))})")
        return tasks

    def stream_test_sizes(self, params: dict | None, source, options: dict) -> list[int]:
        """Test images per task of a stream with these parameters on this dataset (its registry
        entry and the config's options), counted on labels in the dataset's layout: no data read."""
        return [len(t["test_idx"]) for t in self.tasks(source.counting_labels(options), params)]


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
register = BENCHMARKS.register


def benchmark_title(name: str) -> str:
    """How tables and figures name a benchmark (its registry title; the name itself if unregistered)."""
    return (BENCHMARKS[name].title or name) if name in BENCHMARKS else name


def get_benchmark(name: str) -> Benchmark:
    return BENCHMARKS.get(name)


# ---------------------------------------------------------------- contexts: the common shapes
# Each takes a dataset's labels (data.base.Labels) and the stream parameters, and returns one task
# dict per context (Benchmark.contexts).

def class_split(labels: Labels, classes: list[list[int]]) -> list[dict]:
    """One task per list of class ids: every image of those classes (Split MNIST's pairs)."""
    tasks = []
    for cls in classes:
        tasks.append({
            "classes": [int(c) for c in cls],
            "train_idx": np.flatnonzero(np.isin(labels.train, cls)),
            "test_idx": np.flatnonzero(np.isin(labels.test, cls)),
        })
    return tasks


def class_blocks(labels: Labels, n_contexts: int, classes_per_context: int) -> list[dict]:
    """Contexts of consecutive class ids: [0..c-1], [c..2c-1], ... (assumed for mini-ImageNet)."""
    n_classes = int(labels.train.max()) + 1
    if n_contexts * classes_per_context > n_classes:
        raise ValueError(f"{n_contexts} contexts × {classes_per_context} classes exceed the {n_classes} classes")
    return class_split(labels, [list(range(k * classes_per_context, (k + 1) * classes_per_context))
                                for k in range(n_contexts)])


def domains(labels: Labels, key: str, values: list) -> list[dict]:
    """One task per value, each on every image of the dataset, with task[key] = value for the
    benchmark's transform (a domain-incremental stream: the same classes, shifted)."""
    return [{key: v, "train_idx": np.arange(len(labels.train)), "test_idx": np.arange(len(labels.test))}
            for v in values]


def mnist_permutations(n_contexts: int, seed: int = 42, n_pixels: int = 784) -> list[np.ndarray | None]:
    """Identity for context 1, then successive RandomState(seed).permutation draws P1, P2, ..."""
    rs = np.random.RandomState(seed)
    return [None] + [rs.permutation(n_pixels) for _ in range(n_contexts - 1)]


def permutations(labels: Labels, n_contexts: int, permutation_seed: int) -> list[dict]:
    """Every image in every context; context 1 as it is, then fixed pixel permutations (`permute`)."""
    return domains(labels, "permutation", mnist_permutations(n_contexts, permutation_seed))


def rotations(labels: Labels, angles: list[float]) -> list[dict]:
    """Every image in every context, rotated by that context's angle in degrees (`rotate`)."""
    return domains(labels, "angle", [float(a) for a in angles])


# ---------------------------------------------------------------- transforms: a task's images, shifted

def rotate_images(images: np.ndarray, angle: float) -> np.ndarray:
    """PIL's rotate: about the centre, counter-clockwise for positive angles, nearest neighbour,
    no expansion, fill 0 (docs/protocol.md §5)."""
    if angle % 360 == 0:
        return images.copy()
    from PIL import Image

    out = np.empty_like(images)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).rotate(angle, resample=Image.NEAREST, expand=False, fillcolor=0))
    return out


def permute_images(images: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """new = old[P] on the raw row-major pixels (docs/protocol.md §5)."""
    flat = images.reshape(len(images), -1)
    return flat[:, perm].reshape(images.shape)


def rotate(images: np.ndarray, task: dict) -> np.ndarray:
    """The transform of `rotations`: task["angle"] degrees."""
    return rotate_images(images, task["angle"])


def permute(images: np.ndarray, task: dict) -> np.ndarray:
    """The transform of `permutations`: task["permutation"] (None: the images as they are)."""
    return images if task["permutation"] is None else permute_images(images, task["permutation"])


# ---------------------------------------------------------------- stream parameter checks (plan time)
# Each returns [(param, value, what is allowed)]; `source` is the dataset's registry entry (data.Source).

def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_class_sets(params, source):
    """`classes`: disjoint, non-empty lists of the dataset's class ids."""
    classes = params["classes"]
    allowed = f"a non-empty list of disjoint, non-empty lists of class ids 0..{source.num_classes - 1}"
    if not isinstance(classes, list) or not classes or not all(isinstance(c, list) and c for c in classes):
        return [("classes", classes, allowed)]
    ids = [c for cls in classes for c in cls]
    bad = [c for c in ids if not is_int(c) or not 0 <= c < source.num_classes]
    if bad:
        return [("classes", classes, f"{allowed}; {bad} not in the dataset's {source.num_classes} classes")]
    twice = sorted({c for c in ids if ids.count(c) > 1})
    if twice:
        return [("classes", classes, f"{allowed}; class(es) {twice} appear more than once")]
    return []


def check_count(params, key, low, high=None, what="contexts"):
    """params[key]: a whole number from `low` (to `high`)."""
    n = params[key]
    if not is_int(n) or n < low or (high is not None and n > high):
        return [(key, n, f"a whole number of {what} from {low}" + (f" to {high}" if high is not None else " up"))]
    return []


def check_permutations(params, source):
    errors = check_count(params, "n_contexts", 1)
    seed = params["permutation_seed"]
    if not is_int(seed) or not 0 <= seed < 2**32:
        errors.append(("permutation_seed", seed, "a whole number from 0 to 2**32 - 1 (numpy's RandomState seed)"))
    return errors


def check_angles(params, source):
    angles = params["angles"]
    if not isinstance(angles, list) or not angles or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and np.isfinite(a) for a in angles):
        return [("angles", angles, "a non-empty list of finite angles in degrees, one per context")]
    return []


def check_class_blocks(params, source):
    errors = check_count(params, "n_contexts", 1) + check_count(params, "classes_per_context", 1, what="classes")
    if not errors:
        n, c = params["n_contexts"], params["classes_per_context"]
        if n * c > source.num_classes:
            errors.append(("n_contexts", n, f"n_contexts × classes_per_context ({n} × {c}) within the dataset's "
                                            f"{source.num_classes} classes"))
    return errors


# ---------------------------------------------------------------- CIFAR-100's superclass streams

def _domain_cifar100_v1(labels: Labels, superclasses) -> list[dict]:
    """v1: context t adds all fine classes of one superclass (aquatic mammals, fish, flowers);
    targets are the 100-way fine labels (class-incremental in substance)."""
    tc, ec = labels.extra_labels("coarse", "train"), labels.extra_labels("coarse", "test")
    tasks = []
    for sc in superclasses:
        fine = sorted(int(c) for c in np.unique(labels.train[tc == sc]))
        tasks.append({"superclass": int(sc), "classes": fine, "train_idx": np.flatnonzero(tc == sc),
                      "test_idx": np.flatnonzero(ec == sc)})
    return tasks


def _domain_cifar100_v2(labels: Labels, n_contexts: int) -> list[dict]:
    """v2: 20-way superclass targets; context t shows the t-th fine class (in fine-label order) of
    every superclass, so each context is a new domain of the same 20 classes."""
    tc, ec = labels.extra_labels("coarse", "train"), labels.extra_labels("coarse", "test")
    fine_of = {sc: sorted(int(c) for c in np.unique(labels.train[tc == sc])) for sc in range(20)}
    if not 1 <= n_contexts <= min(len(v) for v in fine_of.values()):
        raise ValueError(f"domain_cifar100_v2: n_contexts must lie in 1..5, got {n_contexts}")
    tasks = []
    for t in range(n_contexts):
        fine = [fine_of[sc][t] for sc in range(20)]
        tr, te = np.flatnonzero(np.isin(labels.train, fine)), np.flatnonzero(np.isin(labels.test, fine))
        tasks.append({"classes": fine, "train_idx": tr, "test_idx": te,
                      "train_labels": tc[tr], "test_labels": ec[te]})
    return tasks


def _check_superclasses(params, source):
    sc = params["superclasses"]
    n = 20  # CIFAR-100's coarse classes
    if (not isinstance(sc, list) or not sc or not all(is_int(c) and 0 <= c < n for c in sc)
            or len(set(sc)) != len(sc)):
        return [("superclasses", sc, f"a non-empty list of distinct superclass ids 0..{n - 1}")]
    return []


# ---------------------------------------------------------------- the paper's benchmarks

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
MNIST = dict(net="mlp", num_classes=10, mean=MNIST_MEAN, std=MNIST_STD, data=("mnist", "mnist5k"))
CIFAR = dict(net="resnet18_slim", mean=CIFAR_MEAN, std=CIFAR_STD, augment="cifar")

register(Benchmark(name="split_mnist", kind="class-incremental", **MNIST, title="Split MNIST",
                   contexts=class_split, defaults={"classes": PAIRS}, check=check_class_sets,
                   description="5 contexts adding class pairs {0,1}, {2,3}, ..."))
register(Benchmark(name="permuted_mnist", kind="domain-incremental", **MNIST, title="Permuted MNIST",
                   contexts=permutations, defaults={"n_contexts": 3, "permutation_seed": 42},
                   transform=permute, task_keys=("permutation",), check=check_permutations,
                   description="identity, then fixed pixel permutations P1, P2 (RandomState(42))"))
register(Benchmark(name="rotated_mnist", kind="domain-incremental", **MNIST, title="Rotated MNIST",
                   contexts=rotations, defaults={"angles": [0, 80, 160]}, transform=rotate, task_keys=("angle",),
                   check=check_angles, description="rotations by 0°, 80°, 160°"))
register(Benchmark(name="split_cifar10", kind="class-incremental", **CIFAR, num_classes=10, title="Split CIFAR-10",
                   data=("cifar10",), contexts=class_split, defaults={"classes": PAIRS}, check=check_class_sets,
                   description="5 contexts adding class pairs (airplane+automobile, ...)"))
register(Benchmark(name="domain_cifar100_v1", kind="class-incremental", **CIFAR, num_classes=100,
                   title="Domain CIFAR-100 (v1)", data=("cifar100",), contexts=_domain_cifar100_v1,
                   defaults={"superclasses": [0, 1, 2]}, check=_check_superclasses,
                   description="aquatic mammals, +fish, +flowers; 100-way fine labels (v1)"))
register(Benchmark(name="domain_cifar100_v2", kind="domain-incremental", **CIFAR, num_classes=20,
                   title="Domain CIFAR-100 (v2)", data=("cifar100",), contexts=_domain_cifar100_v2,
                   defaults={"n_contexts": 3}, check=lambda p, s: check_count(p, "n_contexts", 1, 5),
                   description="20-way superclass labels, one new fine class per superclass per context (v2)"))
# mini-ImageNet's normalisation and augmentation are not stated anywhere we could read (assumed):
# ImageNet statistics, no augmentation.
register(Benchmark(name="split_miniimagenet", kind="class-incremental", net="resnet18_slim", num_classes=100,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, title="Split mini-ImageNet", data=("miniimagenet",),
                   contexts=class_blocks, defaults={"n_contexts": 5, "classes_per_context": 10},
                   check=check_class_blocks, description="contexts of 10 consecutive classes, 84×84 (v2)"))
