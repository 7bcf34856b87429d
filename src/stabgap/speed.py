"""Speed harness: one benchmark × method(s) under the config's protocol, measured.

    python -m stabgap.speed --benchmark split_mnist --method ngm --threads 2
    python -m stabgap.speed --benchmark rotated_mnist --method ngm --threads 2 --eval task1
    python -m stabgap.speed --benchmark split_mnist --method sgd,ngm --seeds 5 --mode batched
    python -m stabgap.speed --benchmark split_cifar10 --method ngm --context 2 --iters 20
    python -m stabgap.speed --benchmark split_miniimagenet --method ngm --seeds 5 --mode batched --iters 10

Runs the config's protocol (its iterations, batch, ρ, subsets, test augmentation, precision) on
real data where it is staged under $STABGAP_DATA_ROOT (or `--data-root`): mnist/ (the IDX files) and
cifar10/ (cifar-10-batches-py/, md5 checks off, so the JPEG look-alike serves). Elsewhere it uses
synthetic uint8 images of the right shape and says so in the row (`data` column). `--context K
--iters N` times a slice: N iterations from the start of context K (the earlier contexts are
skipped, not trained: the time of an iteration depends on its context, not on the weights).

Prints one Markdown table row: wall time, s per run, training iterations/s, evaluated images/s,
the FLOPs the slice must do (cost.py's count, checked against torch's flop counter), the achieved
GFLOP/s, the rate of the same arithmetic measured alone in the same process (the network's layer
plan: its matrix products and convolutions, forward and backward at the training batch size, and
forward at the evaluation batch size), their ratio, and peak memory. Several runs (`--seeds`,
several methods) train as one batch of models (`--mode batched`) or one after another in the same
process (`--mode sequential`). It is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

HEADER = ("| benchmark | data | methods | eval | device | precision | threads | runs | mode | slice | wall s | s/run "
          "| train it/s | eval img/s | TFLOP | GFLOP/s | alone GFLOP/s | ratio | peak MB |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, seconds: float, device) -> float:
    """Seconds per call of fn, repeated for about `seconds` (at least once) after one warm-up call."""
    fn()
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 1:
        fn()
        reps += 1
    _sync(device)
    return (time.perf_counter() - t0) / reps


def layers_gflops(arch, image: tuple[int, int, int], num_classes: int, train_batch: int, eval_batch: int,
                  device="cpu", seconds: float = 2.0, train_share: float = 0.5) -> float:
    """The rate of the network's layers alone (archs.py: its plan): every convolution or matrix
    product of the plan, forward + backward at the training batch and forward at the evaluation
    batch, no BatchNorm, activation, loss or data, weighted by `train_share` of the run's FLOPs in
    training (a rate: FLOPs over seconds, per part)."""
    import torch.nn.functional as F

    layers = arch.layers(image, num_classes)
    if torch.device(device).type == "cpu":  # a CPU's rate is flat in the batch: keep the measurement short
        train_batch, eval_batch = min(train_batch, 32), min(eval_batch, 64)
    rates = []
    for batch, train in ((train_batch, True), (eval_batch, False)):
        ops = []
        for i, layer in enumerate(layers):
            grad = train and i > 0
            if layer.kind == "conv":
                w = torch.randn(layer.cout, layer.cin, layer.kernel, layer.kernel, device=device, requires_grad=train)
                insize = (layer.size - 1) * layer.stride + 1  # gives the planned output size (and FLOPs)
                x = torch.randn(batch, layer.cin, insize, insize, device=device, requires_grad=grad)
                ops.append((lambda x=x, w=w, layer=layer: F.conv2d(x, w, stride=layer.stride,
                                                                   padding=layer.kernel // 2), x, w))
            else:
                w = torch.randn(layer.cout, layer.cin, device=device, requires_grad=train)
                x = torch.randn(batch, layer.cin, device=device, requires_grad=grad)
                ops.append((lambda x=x, w=w: x @ w.t(), x, w))

        def run():
            for op, x, w in ops:
                y = op()
                if train:
                    y.backward(torch.ones_like(y))
                    w.grad = x.grad = None

        with torch.set_grad_enabled(train):
            sec = _timed(run, seconds / 2, device)
        flops = (arch.train_flops if train else arch.forward_flops)(image, num_classes) * batch
        rates.append(flops / sec / 1e9)
    # time-weighted: a run spending train_share of its FLOPs in training runs at the harmonic blend
    return 1.0 / (train_share / rates[0] + (1 - train_share) / rates[1])


def synthetic_canonical(builder: str):
    """A canonical dataset of random uint8 images in the shape of `builder`'s, 100 images per class
    (test: 20), labels in order; only for timing (marked 'synthetic' in the row)."""
    from .data.canonical import CanonicalData

    shape, classes = {"cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100),
                      "miniimagenet": ((84, 84, 3), 100)}[builder]
    g = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.arange(classes).repeat_interleave(n)
        return torch.randint(0, 256, (len(y), *shape), dtype=torch.uint8, generator=g), y

    (tx, ty), (ex, ey) = split(100), split(20)
    extra = {}
    if builder == "cifar100":  # coarse labels: 5 fine classes per superclass, in order
        extra = {"train_coarse": ty // 5, "test_coarse": ey // 5}
    return CanonicalData(name=f"synthetic-{builder}", train_x=tx, train_y=ty, test_x=ex, test_y=ey,
                         meta={"synthetic": True}, extra=extra)


def load_data(benchmark: str, config: dict, data_root: str | None):
    """(canonical data, 'real' or 'synthetic') for a benchmark of the config."""
    from .data import build_canonical
    from .data.canonical import load_canonical

    builder = config["datasets"][config["benchmarks"][benchmark]["dataset"]]["builder"]
    folder = {"mnist": "mnist", "cifar10": "cifar10"}.get(builder)
    if data_root and folder and os.path.isdir(os.path.join(data_root, folder)):
        cache = f"/tmp/stabgap-bench-{builder}.pt"
        if not os.path.exists(cache):
            options = {"check_md5": False} if builder == "cifar10" else {}
            build_canonical(builder, cache, source_dir=os.path.join(data_root, folder), **options)
        return load_canonical(cache), "real"
    if builder in ("mnist", "mnist5k"):
        raise SystemExit("error: give --data-root (or set STABGAP_DATA_ROOT): a folder with mnist/ holding the "
                         "four MNIST IDX files")
    return synthetic_canonical(builder), "synthetic"


def main(argv=None) -> None:
    from .archs import get_arch
    from .benchmarks import BENCHMARKS, get_benchmark
    from .config import load_config, run_config
    from .cost import iteration_flops
    from .job import run_settings, set_precision
    from .methods import resolve_method
    from .streams import build_stream
    from .trainer import Trainer, resolve_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="split_mnist", choices=list(BENCHMARKS))
    p.add_argument("--method", default="ngm", help="one method, or several separated by commas")
    p.add_argument("--seeds", type=int, default=1, help="seeds per method (42, 43, ...)")
    p.add_argument("--mode", choices=["batched", "sequential"], default="batched",
                   help="several runs: as one batch of models or one after another in this process")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", choices=["seen", "task1"], default="seen",
                   help="evaluate every seen task (this reproduction) or task 1 only (the v1 code)")
    p.add_argument("--context", type=int, default=1, help="slice: start at the first iteration of this context")
    p.add_argument("--iters", type=int, default=0, help="slice: this many iterations (0: to the end of the stream)")
    p.add_argument("--config", default="config.yaml", help="where the protocol comes from")
    p.add_argument("--data-root", default=os.environ.get("STABGAP_DATA_ROOT"),
                   help="folder holding mnist/ and cifar10/ (default: $STABGAP_DATA_ROOT)")
    p.add_argument("--header", action="store_true", help="print the table header first")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)

    config = load_config(a.config)
    data, kind = load_data(a.benchmark, config, a.data_root)
    names = a.method.split(",")
    runs = [(name, 42 + i) for name in names for i in range(a.seeds)]
    cfg = [run_config(config, a.benchmark, name, seed) for name, seed in runs]
    numerics = set_precision(cfg[0]["precision"], device)
    stream = build_stream(a.benchmark, data, config["benchmarks"][a.benchmark]["stream"])
    settings = run_settings(cfg[0])
    if a.eval != settings.eval_scope:
        import dataclasses

        settings = dataclasses.replace(settings, eval_scope=a.eval)
    methods = [resolve_method(r["method"], r["method_settings"]) for r in cfg]
    seeds = [seed for _, seed in runs]
    mode = a.mode if len(runs) > 1 else "single"
    I = settings.iters_per_context
    start = (a.context - 1) * I
    stop = start + a.iters if a.iters else stream.n_tasks * I
    if not 0 <= start < stop <= stream.n_tasks * I:
        raise SystemExit(f"error: the slice (context {a.context}, {a.iters} iterations) lies outside the "
                         f"stream's {stream.n_tasks} contexts of {I} iterations")
    if device.type == "cuda":  # start CUDA and cuBLAS before the clock starts
        (torch.ones(8, 8, device=device) @ torch.ones(8, 8, device=device)).sum().item()
        torch.cuda.reset_peak_memory_stats(device)

    def train(trainers):
        for tr in trainers:
            tr.iteration = start
            for r in tr.runs:
                r.iteration = start
            while tr.iteration < stop:
                tr.step()
            tr.records.train_loss.sum().item()  # wait for the device

    t0 = time.perf_counter()
    if mode == "batched":
        trainers = [Trainer(stream, methods, seeds, settings, device)]
    else:
        trainers = [Trainer(stream, m, s, settings, device) for m, s in zip(methods, seeds)]
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(trainers)
    wall = time.perf_counter() - t0

    bench = get_benchmark(a.benchmark)
    arch, image = get_arch(bench.net), trainers[0].data.image
    costs = iteration_flops({**cfg[0], "eval_scope": a.eval}, stream.task_sizes("test"), image)
    flops = sum(costs[start:stop]) * len(runs)
    train_part = arch.train_flops(image, bench.num_classes) * settings.batch_size * (stop - start) * len(runs)
    evaluated = (flops - train_part) / arch.forward_flops(image, bench.num_classes)
    alone = layers_gflops(arch, image, bench.num_classes, settings.batch_size, settings.eval_batch_size,
                          device=str(device), train_share=train_part / max(flops, 1.0))
    achieved = flops / wall / 1e9
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
        where = torch.cuda.get_device_name(device)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "cpu"
    if a.header:
        print(HEADER)
    slice_ = f"ctx {a.context}, {stop - start} it" if a.iters else "whole"
    print(f"| {a.benchmark} | {kind} | {a.method} | {a.eval} | {where} | {numerics['precision']} | {a.threads} | "
          f"{len(runs)} | {mode} | {slice_} | {wall:.1f} | {wall / len(runs):.2f} | {(stop - start) * len(trainers) / wall:.1f} | "
          f"{evaluated / wall:,.0f} | {flops / 1e12:.3f} | {achieved:.0f} | {alone:.0f} | {achieved / alone:.2f} | "
          f"{peak_mb:.0f} |")
    print(f"(set-up {built:.1f} s, not timed; torch {torch.__version__})", file=sys.stderr)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
