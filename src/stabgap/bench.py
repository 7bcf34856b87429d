"""Benchmark harness: one benchmark × method under the paper's protocol, measured.

    python -m stabgap.bench --benchmark split_mnist --method ngm --threads 2
    python -m stabgap.bench --benchmark rotated_mnist --method ngm --threads 2 --eval task1
    python -m stabgap.bench --benchmark split_mnist --method sgd,ngm --seeds 5 --mode batched
    python -m stabgap.bench --benchmark split_mnist --method sgd,ngm --seeds 5 --mode sequential

Runs the paper's protocol (ρ = 1, full test sets, the config's iterations and batch size) on the
full MNIST staged under $STABGAP_DATA_ROOT/mnist (or `--data-root`), and prints one Markdown table
row: wall time, training iterations/s, evaluated images/s, the floating-point operations the run
must do (counted from the network's shapes: a forward is 2·Σ in·out per image, a training step 3×
a forward), the achieved GFLOP/s, this machine's fp32 matrix-multiply rate measured in the same
process at the same thread count (or on the same GPU), their ratio, and peak memory. Several runs
(`--seeds`, several methods) are trained as one batch of models (`--mode batched`) or one after
another in the same process (`--mode sequential`): the gain of batching is the ratio of the two
wall times. It is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

HEADER = ("| benchmark | methods | eval | device | threads | runs | mode | wall s | s/run | train it/s | eval img/s "
          "| TFLOP | GFLOP/s | matmul GFLOP/s | ratio | peak MB |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def matmul_gflops(n: int = 1024, seconds: float = 2.0, device: str = "cpu") -> float:
    """Sustained fp32 GEMM rate of this process (n×n by n×n, repeated for about `seconds`)."""
    if device != "cpu":
        n = max(n, 8192)  # a GPU needs a large product to reach its rate
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if reps % 10 == 0:
            sync()
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def mlp_forward_flops(net) -> int:
    """FLOPs of one image's forward through one model (a BatchedMLP counts one of its models)."""
    return sum(2 * layer.weight.shape[-1] * layer.weight.shape[-2] for layer in net.modulated().values())


def main(argv=None) -> None:
    from .batched import BatchedTrainer
    from .config import load_config, run_config
    from .datasets import build_canonical, load_canonical
    from .methods import resolve_method
    from .streams import build_stream
    from .train import RunSettings, Trainer, resolve_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="split_mnist", choices=["split_mnist", "permuted_mnist", "rotated_mnist"])
    p.add_argument("--method", default="ngm", help="one method, or several separated by commas")
    p.add_argument("--seeds", type=int, default=1, help="seeds per method (42, 43, ...)")
    p.add_argument("--mode", choices=["batched", "sequential"], default="batched",
                   help="several runs: as one batch of models (multi-run batching) or one after another "
                        "in this process (the unbatched trainer); one run is always unbatched")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", choices=["seen", "task1"], default="seen",
                   help="evaluate every seen task (this reproduction) or task 1 only (the v1 code)")
    p.add_argument("--config", default="config.yaml", help="where the benchmark's iterations and batch come from")
    p.add_argument("--data-root", default=os.environ.get("STABGAP_DATA_ROOT"),
                   help="folder holding mnist/ with the four IDX files (default: $STABGAP_DATA_ROOT)")
    p.add_argument("--header", action="store_true", help="print the table header first")
    a = p.parse_args(argv)
    if not a.data_root:
        raise SystemExit("error: give --data-root (or set STABGAP_DATA_ROOT): a folder with mnist/ holding the "
                         "four MNIST IDX files; the harness measures the paper's protocol on full test sets")
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)

    cache = os.path.join(a.data_root, "..", ".stabgap-bench-mnist.pt")
    cache = os.path.abspath(cache) if os.access(os.path.dirname(os.path.abspath(cache)), os.W_OK) else "/tmp/stabgap-bench-mnist.pt"
    if not os.path.exists(cache):
        build_canonical("mnist", cache, source_dir=os.path.join(a.data_root, "mnist"))
    config = load_config(a.config)
    names = a.method.split(",")
    runs = [(name, 42 + i) for name in names for i in range(a.seeds)]
    cfg = [run_config(config, a.benchmark, name, seed) for name, seed in runs]
    stream = build_stream(a.benchmark, load_canonical(cache), config["benchmarks"][a.benchmark]["stream"])
    settings = RunSettings(iters_per_context=cfg[0]["iters_per_context"], batch_size=cfg[0]["batch_size"],
                           eta=cfg[0]["eta"], eval_every=1, eval_batch_size=cfg[0]["eval_batch_size"],
                           eval_scope=a.eval)
    methods = [resolve_method(r["method"], r["method_settings"]) for r in cfg]
    seeds = [seed for _, seed in runs]
    mode = a.mode if len(runs) > 1 else "single"  # sequential: the unbatched trainer, run after run
    if device.type == "cuda":  # start CUDA and cuBLAS before the clock starts
        (torch.ones(8, 8, device=device) @ torch.ones(8, 8, device=device)).sum().item()
        torch.cuda.reset_peak_memory_stats(device)

    t0 = time.perf_counter()
    if mode == "batched":
        batch = BatchedTrainer(stream, methods, seeds, settings, device)
        batch.run(progress=None)
        trainers = batch.runs
    else:
        trainers = []
        for method, seed in zip(methods, seeds):
            tr = Trainer(stream, method, settings, seed, device)
            tr.run(progress=None)
            trainers.append(tr)
    logs = [tr.log() for tr in trainers]  # copies the records to the host: the device is done
    wall = time.perf_counter() - t0

    fwd = mlp_forward_flops(batch.net if mode == "batched" else trainers[0].net)
    evaluated = sum(int(log[log.split == "test"].n.sum()) for log in logs)
    iters = sum(tr.iteration for tr in trainers)
    flops = 3 * fwd * settings.batch_size * iters + fwd * evaluated
    rate = matmul_gflops(device=str(device))
    achieved = flops / wall / 1e9
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
        where = torch.cuda.get_device_name(device)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "cpu"
    if a.header:
        print(HEADER)
    print(f"| {a.benchmark} | {a.method} | {a.eval} | {where} | {a.threads} | {len(runs)} | {mode} | {wall:.1f} | "
          f"{wall / len(runs):.2f} | {iters / wall:.0f} | {evaluated / wall:,.0f} | {flops / 1e12:.2f} | "
          f"{achieved:.0f} | {rate:.0f} | {achieved / rate:.2f} | {peak_mb:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
