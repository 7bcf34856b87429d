"""The cost model (cost.py): FLOP counts against torch's own counter, and predictions."""

import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stabgap import cost
from stabgap.archs import get_arch
from stabgap.data.mnist import MNIST_TEST_PER_CLASS
from stabgap.gain import GainSettings
from stabgap.models import build_models

RESNET = get_arch("resnet18_slim")


@pytest.mark.parametrize("net,classes,image", [("mlp", 10, (1, 28, 28)), ("resnet18_slim", 10, (3, 32, 32)),
                                               ("resnet18_slim", 100, (3, 84, 84))])
def test_flop_count_matches_torch_flop_counter(net, classes, image):
    """The registry's layer plan counts what torch counts on the model built from it."""
    model = build_models(net, classes, image, [0], [GainSettings()])
    arch = get_arch(net)
    x = torch.randn(1, 4, *image)  # one model's batch of 4
    model.eval()
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            model(x)
    assert fc.get_total_flops() == 4 * arch.forward_flops(image, classes)
    model.train()
    with FlopCounterMode(display=False) as fc:
        torch.nn.functional.cross_entropy(model(x)[0], torch.zeros(4, dtype=torch.long)).backward()
    assert fc.get_total_flops() == 4 * arch.train_flops(image, classes)


def test_forward_flops_per_image_as_planned():
    # the scale the issue plans with: 0.109 GFLOP per 32×32 image, 0.771 per 84×84 image
    assert RESNET.forward_flops((3, 32, 32), 10) / 1e9 == pytest.approx(0.109, abs=0.001)
    assert RESNET.forward_flops((3, 84, 84), 100) / 1e9 == pytest.approx(0.771, abs=0.001)


def run(**kw):
    return {"benchmark": "split_cifar10", "iters_per_context": 4, "batch_size": 2, "eval_every": 2,
            "eval_subset": None, "test_augment": False, **kw}


def test_iteration_flops_follow_the_evaluation_schedule():
    fwd = RESNET.forward_flops((3, 32, 32), 10)
    tr = RESNET.train_flops((3, 32, 32), 10) * 2
    got = cost.iteration_flops(run(), [10, 20], (3, 32, 32))
    # evaluated at 2, 4 (context 1: task 1), 6, 8 (context 2: tasks 1 and 2)
    assert got == [tr, tr + 10 * fwd, tr, tr + 10 * fwd, tr, tr + 30 * fwd, tr, tr + 30 * fwd]
    aug = cost.iteration_flops(run(test_augment=True), [10, 20], (3, 32, 32))  # k pooled passes in context k
    assert aug[7] == tr + 2 * 30 * fwd and aug[3] == tr + 10 * fwd
    sub = cost.iteration_flops(run(eval_subset=5), [10, 20], (3, 32, 32))
    assert sub[7] == tr + 10 * fwd


def test_stream_test_sizes_from_the_config():
    # the dataset entry of the config (builder and options): MNIST's test images per class are uneven
    assert cost.stream_test_sizes("split_mnist", {"classes": [[0, 1], [2, 3]]}, {"builder": "mnist"}) \
        == [2115, 2042]
    assert sum(MNIST_TEST_PER_CLASS[:2]) == 2115
    assert cost.stream_test_sizes("rotated_mnist", {"angles": [0, 80]}, {"builder": "mnist"}) == [10000, 10000]
    assert cost.stream_test_sizes("domain_cifar100_v2", {"n_contexts": 3}, {"builder": "cifar100"}) == [2000] * 3


def test_prediction_adds_rate_and_overheads():
    work = {"network": "mlp", "iterations": 100, "evaluations": 10, "train_flops": 3e9, "eval_flops": 1e9}
    machine = {"rate_gflops": {"mlp": 2.0}, "per_iteration_s": {"mlp": 0.01}, "per_evaluation_s": {"mlp": 0.1},
               "startup_s": 3.0}
    assert cost.predict_seconds(work, machine) == pytest.approx(1.5 + 0.5 + 1.0 + 1.0 + 3.0)
    machine["eval_rate_gflops"] = {"mlp": 0.5}  # evaluation at its own rate
    assert cost.predict_seconds(work, machine) == pytest.approx(1.5 + 2.0 + 1.0 + 1.0 + 3.0)


def test_measured_cpu_rates_predict_held_out_measurements_within_30_percent():
    """src/stabgap/speed/NOTES.md, *Cost model* (1 thread): measurements held out of the fit. MLP: a Rotated
    MNIST harness slice (50.6 s); ResNet: configs/cifar10_jpeg_short.yaml end to end, 480 s of
    training per run (its summaries' train_seconds, 2 jobs side by side on the 2 cores)."""
    from stabgap.config import load_config, run_config

    cpu = {**cost.default_machines()["cpu"], "startup_s": 0}
    rotated = {"network": "mlp", "iterations": 200, "evaluations": 200,
               "train_flops": 200 * 128 * get_arch("mlp").train_flops((1, 28, 28), 10), "eval_flops": 0.0}
    rotated["eval_flops"] = 1.968e12 - rotated["train_flops"]
    assert cost.predict_seconds(rotated, cpu) == pytest.approx(50.6, rel=0.3)
    short = load_config("configs/cifar10_jpeg_short.yaml")
    work = cost.benchmark_run_work(short, run_config(short, "split_cifar10", "ngm", 42))
    assert cost.predict_seconds(work, cpu) == pytest.approx(480.0, rel=0.3)


def test_the_cost_table_shows_the_scopes_and_the_window():
    from stabgap.config import experiment_runs, load_config, run_config

    config = load_config("config.yaml")
    table = cost.write_cost(config, experiment_runs(config), run_config, None, "config.yaml")
    assert "seen, every 1, v1 test augmentation" in table  # the CIFAR rows' evaluation
    alternatives = cost.schedule_alternatives(config, experiment_runs(config), run_config)
    assert [(r["scope"], r["every"], r["dense_after_switch"]) for r in alternatives] == [
        ("seen", 1, 0), ("seen", 10, 50), ("task1", 1, 0), ("task1", 10, 50)]
    seen, task1 = alternatives[0], alternatives[2]
    assert task1["eval_pflop"] < seen["eval_pflop"] and task1["total_pflop"] < seen["total_pflop"]
    assert "task1 | 10 | 50" in table


def test_cost_module_imports_no_torch():
    code = "import sys, stabgap.cost; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("iters, n_tasks, every, augment, scope, dense", [
    (7, 3, 3, True, "seen", 0), (10, 2, 1, False, "seen", 0), (5, 4, 7, True, "task1", 2), (6, 2, 6, False, "seen", 6),
    (12, 3, 5, True, "task1", 4)])
def test_run_work_in_closed_form_equals_the_sum_over_iterations(iters, n_tasks, every, augment, scope, dense):
    r = {"benchmark": "split_cifar10", "iters_per_context": iters, "batch_size": 4, "eval_every": every,
         "eval_subset": None, "test_augment": augment, "eval_scope": scope, "eval_dense_after_switch": dense}
    sizes = [10 * (j + 1) for j in range(n_tasks)]
    work = cost.run_work(r, sizes, (3, 32, 32))
    per_iteration = cost.iteration_flops(r, sizes, (3, 32, 32))
    assert work["train_flops"] + work["eval_flops"] == pytest.approx(sum(per_iteration), rel=1e-12)
    assert work["evaluations"] == sum(1 for x in per_iteration if x > work["train_flops"] / (iters * n_tasks))
    huge = cost.run_work({**r, "iters_per_context": 10**12}, sizes, (3, 32, 32))  # planning allocates nothing per iteration
    assert huge["iterations"] == 10**12 * n_tasks
