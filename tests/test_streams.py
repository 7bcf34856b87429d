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
