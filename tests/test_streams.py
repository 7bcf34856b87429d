"""Task streams of the CIFAR and mini-ImageNet benchmarks (docs/protocol.md §5) on small canonical datasets."""

import numpy as np
import pytest
import torch

from stabgap.data.canonical import CanonicalData
from stabgap.benchmarks import get_benchmark
from stabgap.streams import build_stream


def canonical(n_classes, per_class_train, per_class_test, size=32, coarse=None, name="synthetic"):
    g = torch.Generator().manual_seed(0)
    ytr = torch.arange(n_classes).repeat_interleave(per_class_train)
    yte = torch.arange(n_classes).repeat_interleave(per_class_test)
    xtr = torch.randint(0, 256, (len(ytr), size, size, 3), generator=g, dtype=torch.uint8)
    xte = torch.randint(0, 256, (len(yte), size, size, 3), generator=g, dtype=torch.uint8)
    extra = {}
    if coarse is not None:
        extra = {"train_coarse": torch.as_tensor(coarse)[ytr], "test_coarse": torch.as_tensor(coarse)[yte]}
    return CanonicalData(name, xtr, ytr, xte, yte, {"name": name}, extra=extra)


def task_labels(stream, split, j):
    off = stream.train_offsets if split == "train" else stream.test_offsets
    y = stream.train_y if split == "train" else stream.test_y
    return set(y[off[j]:off[j + 1]].tolist())


def test_split_cifar10_pairs():
    s = build_stream("split_cifar10", canonical(10, 4, 2), {"classes": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]})
    assert s.n_tasks == 5 and s.task_sizes("train") == [8] * 5 and s.task_sizes("test") == [4] * 5
    assert [task_labels(s, "train", j) for j in range(5)] == [{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}]
    assert s.train_x.shape[1:] == (32, 32, 3) and get_benchmark("split_cifar10").augment == "cifar"


# a CIFAR-100-like label structure: 20 superclasses of 5 fine classes (real CIFAR-100 interleaves them)
COARSE = np.array([(f * 7) % 20 for f in range(100)])


def test_domain_cifar100_v1_cumulative_superclasses_with_fine_labels():
    data = canonical(100, 2, 1, coarse=COARSE)
    s = build_stream("domain_cifar100_v1", data, {"superclasses": [0, 1, 2]})
    for j, sc in enumerate([0, 1, 2]):
        fine = {int(f) for f in np.flatnonzero(COARSE == sc)}
        assert task_labels(s, "train", j) == fine and task_labels(s, "test", j) == fine  # 100-way fine labels
        assert s.spec["tasks"][j]["superclass"] == sc
    assert s.task_sizes("test")[0] == 5  # task 1: the five fine classes of superclass 0
    assert get_benchmark("domain_cifar100_v1").num_classes == 100


def test_domain_cifar100_v2_one_new_fine_class_per_superclass():
    data = canonical(100, 2, 1, coarse=COARSE)
    s = build_stream("domain_cifar100_v2", data, {"n_contexts": 3})
    seen_fine = set()
    for j in range(3):
        assert task_labels(s, "train", j) == set(range(20))  # 20-way superclass labels in every context
        fine = s.spec["tasks"][j]["classes"]
        assert sorted(COARSE[fine].tolist()) == list(range(20))  # one fine class of every superclass
        assert seen_fine.isdisjoint(fine)
        seen_fine |= set(fine)
    assert get_benchmark("domain_cifar100_v2").num_classes == 20
    with pytest.raises(ValueError, match="n_contexts"):
        build_stream("domain_cifar100_v2", data, {"n_contexts": 6})


def test_cifar100_layouts_need_coarse_labels():
    with pytest.raises(ValueError, match="coarse"):
        build_stream("domain_cifar100_v2", canonical(100, 1, 1), {"n_contexts": 2})


@pytest.mark.parametrize("n_contexts,per_context", [(5, 10), (20, 5)])
def test_split_miniimagenet_blocks(n_contexts, per_context):
    s = build_stream("split_miniimagenet", canonical(100, 2, 1, size=84),
                     {"n_contexts": n_contexts, "classes_per_context": per_context})
    assert s.n_tasks == n_contexts
    for j in range(n_contexts):
        assert task_labels(s, "train", j) == set(range(j * per_context, (j + 1) * per_context))
    assert s.train_x.shape[1:] == (84, 84, 3)
    with pytest.raises(ValueError, match="exceed"):
        build_stream("split_miniimagenet", canonical(100, 1, 1, size=84), {"n_contexts": 11})


# ---------------------------------------------------------------- a benchmark's own shift of the images

def grey(n_classes=10, per_class=3):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = torch.randint(0, 256, (len(y), 28, 28), generator=g, dtype=torch.uint8)
    return CanonicalData("grey", x, y, x.clone(), y.clone(), {"name": "grey"})


def inverted(**fields):
    from stabgap.benchmarks import MNIST_MEAN, MNIST_STD, Benchmark, domains

    entry = dict(name="test_inverted", kind="domain-incremental", net="mlp", num_classes=10, mean=MNIST_MEAN,
                 std=MNIST_STD, contexts=lambda labels: domains(labels, "invert", [False, True]))
    return Benchmark(**{**entry, **fields})


@pytest.fixture
def registered():
    """Register benchmark entries for one test, and remove them after it."""
    from stabgap.benchmarks import BENCHMARKS

    names = []

    def add(entry):
        BENCHMARKS[entry.name] = entry
        names.append(entry.name)
        return entry

    yield add
    for name in names:
        del BENCHMARKS[name]


def test_a_benchmarks_transform_shifts_each_tasks_images_by_its_parameters(registered):
    registered(inverted(transform=lambda images, task: 255 - images if task["invert"] else images,
                        task_keys=("invert",)))
    data = grey()
    s = build_stream("test_inverted", data)
    first, second = s.train_x[: s.train_offsets[1]], s.train_x[s.train_offsets[1]:]
    assert torch.equal(first, data.train_x) and torch.equal(second, 255 - data.train_x)
    assert torch.equal(s.test_x[s.test_offsets[1]:], 255 - data.test_x)
    assert [t["invert"] for t in s.spec["tasks"]] == [False, True]  # described in the stream's JSON


def test_a_task_key_that_nothing_reads_is_refused_with_its_name(registered):
    """The silent failure of an inverted-MNIST plugin without a transform: refused when the stream is
    built, and already when the config is checked (the contexts are cut from labels in the dataset's
    layout at plan time)."""
    from stabgap.config import ConfigError, check_config, validate_schema

    registered(inverted())
    with pytest.raises(ValueError, match=r"task 1 carries key\(s\) 'invert' that nothing reads.*transform="):
        build_stream("test_inverted", grey())
    cfg = {"results": "results", "datasets": {"mnist5k": {"builder": "mnist5k"}},
           "benchmarks": {"test_inverted": {"dataset": "mnist5k", "iters_per_context": 2, "batch_size": 4,
                                            "eta": 0.1}},
           "methods": {"sgd": {}}, "seeds": [1]}
    validate_schema(cfg)
    with pytest.raises(ConfigError, match=r"benchmarks.test_inverted: .*'invert' that nothing reads.*nothing was run"):
        check_config(cfg)


def test_task_keys_without_a_transform_and_a_bad_kind_are_refused_at_registration():
    with pytest.raises(ValueError, match="task_keys.*no transform"):
        inverted(task_keys=("invert",))
    with pytest.raises(ValueError, match="kind must be"):
        inverted(kind="domain")
    with pytest.raises(TypeError):  # keyword fields only: a positional entry is refused, not misread
        from stabgap.benchmarks import Benchmark

        Benchmark("x", "class-incremental", "mlp", 10, (0.5,), (0.5,), None)


@pytest.mark.parametrize("name,builder,options", [
    ("split_mnist", "mnist5k", {"test_per_class": 7}), ("permuted_mnist", "mnist5k", {"test_per_class": 3}),
    ("rotated_mnist", "mnist5k", {"test_per_class": 2}), ("split_cifar10", "cifar10", {}),
    ("domain_cifar100_v1", "cifar100", {}), ("domain_cifar100_v2", "cifar100", {}),
    ("split_miniimagenet", "miniimagenet", {"train_per_class": 598})])
def test_test_sizes_planning_counts_are_those_of_the_stream_built_from_the_data(name, builder, options):
    """Planning counts a stream's test images from its contexts, cut from labels in the dataset's
    layout (no data read); a stream built from data of that layout has exactly those sizes."""
    from stabgap.benchmarks import get_benchmark
    from stabgap.data import get_source
    from stabgap.data.canonical import synthetic_canonical

    source = get_source(builder)
    per_class = source.test_per_class(options)
    assert len(set(per_class)) == 1
    data = synthetic_canonical(builder, train_per_class=1, test_per_class=per_class[0])
    counted = get_benchmark(name).stream_test_sizes(None, source, options)
    assert build_stream(name, data).task_sizes("test") == counted


def test_cifar100s_superclasses_hold_five_fine_classes_each():
    from stabgap.data.cifar import CIFAR100_COARSE

    assert sorted(np.bincount(CIFAR100_COARSE).tolist()) == [5] * 20
    assert CIFAR100_COARSE[[4, 30, 55, 72, 95]].tolist() == [0] * 5  # aquatic mammals: beaver, dolphin, otter, seal, whale


def test_a_type_error_inside_contexts_is_its_own_and_a_bad_parameter_is_named(registered):
    def broken(labels):
        return len(None)  # a bug of the plugin's, not of the config

    registered(inverted(name="test_broken", contexts=broken))
    with pytest.raises(TypeError, match="NoneType"):
        build_stream("test_broken", grey())
    registered(inverted(name="test_strict"))
    with pytest.raises(ValueError, match="test_strict.*bad stream parameters"):
        build_stream("test_strict", grey(), {"angle": 3})
