"""Benchmark harness: one benchmark × method under the paper's protocol, measured.

    python -m stabgap.bench --benchmark split_mnist --method ngm --threads 2
    python -m stabgap.bench --benchmark rotated_mnist --method ngm --threads 2 --eval task1

Runs the paper's protocol (ρ = 1, full test sets, the config's iterations and batch size) on the
full MNIST staged under $STABGAP_DATA_ROOT/mnist (or `--data-root`), and prints one Markdown table
row: wall time, training iterations/s, evaluated images/s, the floating-point operations the run
must do (counted from the network's shapes: a forward is 2·Σ in·out per image, a training step 3×
a forward), the achieved GFLOP/s, this machine's fp32 matrix-multiply rate measured in the same
process at the same thread count, their ratio, and peak memory. It is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

HEADER = ("| benchmark | method | eval | threads | wall s | train it/s | eval img/s | TFLOP | GFLOP/s "
          "| matmul GFLOP/s | ratio | peak MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """Sustained fp32 GEMM rate of this process (n×n by n×n, repeated for about `seconds`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def mlp_forward_flops(net) -> int:
    return sum(2 * layer.in_features * layer.out_features for layer in net.modulated().values())


def main(argv=None) -> None:
    from .config import load_config, run_config
    from .datasets import build_canonical, load_canonical
    from .streams import build_stream
    from .train import RunSettings, make_trainer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="split_mnist", choices=["split_mnist", "permuted_mnist", "rotated_mnist"])
    p.add_argument("--method", default="ngm")
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

    cache = os.path.join(a.data_root, "..", ".stabgap-bench-mnist.pt")
    cache = os.path.abspath(cache) if os.access(os.path.dirname(os.path.abspath(cache)), os.W_OK) else "/tmp/stabgap-bench-mnist.pt"
    if not os.path.exists(cache):
        build_canonical("mnist", cache, source_dir=os.path.join(a.data_root, "mnist"))
    config = load_config(a.config)
    run = run_config(config, a.benchmark, a.method, 42)
    stream = build_stream(a.benchmark, load_canonical(cache), config["benchmarks"][a.benchmark]["stream"])
    settings = RunSettings(iters_per_context=run["iters_per_context"], batch_size=run["batch_size"],
                           eta=run["eta"], eval_every=1, eval_scope=a.eval)
    trainer = make_trainer(stream, a.method, run["method_settings"], settings, 42, "cpu")

    t0 = time.perf_counter()
    trainer.run(progress=None)
    log = trainer.log()
    wall = time.perf_counter() - t0

    fwd = mlp_forward_flops(trainer.net)
    evaluated = int(log[log.split == "test"].n.sum())
    iters = trainer.iteration
    flops = 3 * fwd * settings.batch_size * iters + fwd * evaluated
    rate = matmul_gflops()
    achieved = flops / wall / 1e9
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.header:
        print(HEADER)
    print(f"| {a.benchmark} | {a.method} | {a.eval} | {a.threads} | {wall:.1f} | {iters / wall:.0f} | "
          f"{evaluated / wall:,.0f} | {flops / 1e12:.2f} | {achieved:.0f} | {rate:.0f} | {achieved / rate:.2f} | "
          f"{peak_mb:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
