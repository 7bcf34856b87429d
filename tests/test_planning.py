"""Batch planning (planning.py): which runs share a training job, without torch."""

import subprocess
import sys

from stabgap.config import experiment_runs, run_config, validate_schema
from stabgap.planning import train_batches


def config(batch_runs, **extra):
    cfg = {
        "results": "results",
        "datasets": {"mnist5k": {"builder": "mnist5k"}, "cifar10": {"builder": "cifar10"}},
        "benchmarks": {
            "split_mnist": {"dataset": "mnist5k", "iters_per_context": 5, "batch_size": 8, "eta": 0.4, "stream": {}},
            "split_cifar10": {"dataset": "cifar10", "iters_per_context": 5, "batch_size": 8, "eta": 0.2,
                              "stream": {}, "test_augment": True},
        },
        "methods": {"sgd": {"lr": 0.01}, "ngm": {"lr": 0.01}},
        "seeds": [1, 2, 3],
        "compute": {"batch_runs": batch_runs},
        **extra,
    }
    validate_schema(cfg)
    return cfg


def test_no_batches_when_batching_is_off():
    cfg = config(1)
    assert train_batches(cfg, experiment_runs(cfg)) == []


def test_runs_are_cut_into_chunks_per_benchmark_in_variant_seed_order():
    cfg = config(4)
    batches = train_batches(cfg, experiment_runs(cfg))
    assert batches == [
        ("split_mnist", 0, [("ngm", 1), ("ngm", 2), ("ngm", 3), ("sgd", 1)]),
        ("split_mnist", 1, [("sgd", 2), ("sgd", 3)]),
        ("split_cifar10", 0, [("ngm", 1), ("ngm", 2), ("ngm", 3), ("sgd", 1)]),
        ("split_cifar10", 1, [("sgd", 2), ("sgd", 3)]),
    ]


def test_runs_with_other_run_settings_never_share_a_batch():
    # the sweep evaluates without test augmentation: its runs batch apart from the main runs
    cfg = config(10, lr_sweep={"benchmarks": ["split_cifar10"], "methods": ["sgd"], "lr": [0.1, 0.01],
                               "test_augment": False, "seeds": [1]})
    batches = [b for b in train_batches(cfg, experiment_runs(cfg)) if b[0] == "split_cifar10"]
    assert len(batches) == 2
    for _, _, members in batches:
        keys = {run_config(cfg, "split_cifar10", v, s)["test_augment"] for v, s in members}
        assert len(keys) == 1
    assert sorted(len(m) for _, _, m in batches) == [2, 6]


def test_a_run_shared_by_groups_is_planned_once():
    cfg = config(10, ablations={"benchmarks": ["split_mnist"], "compare_with": ["ngm"], "methods": {"adam": {}}})
    batches = train_batches(cfg, experiment_runs(cfg))
    members = [r for b, _, m in batches if b == "split_mnist" for r in m]
    assert len(members) == len(set(members)) == 9  # 6 main + 3 adam; the compared ngm runs once


def test_planning_imports_no_torch():
    code = "import sys, stabgap.planning, stabgap.cost; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
