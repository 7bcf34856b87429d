"""Speed harness: one benchmark × method(s) under the config's protocol, measured.

    python -m stabgap.speed --benchmark split_mnist --method ngm --threads 2
    python -m stabgap.speed --benchmark rotated_mnist --method ngm --threads 2 --eval task1
    python -m stabgap.speed --benchmark split_mnist --method sgd,ngm --seeds 5 --mode batched
    python -m stabgap.speed --benchmark split_cifar10 --method ngm --threads 1 --context 2 --iters 20
    python -m stabgap.speed --benchmark split_miniimagenet --method ngm --seeds 5 --mode batched --iters 10

Runs the config's protocol (its iterations, batch, ρ, subsets, test augmentation, precision) on
real data where it is staged under $STABGAP_DATA_ROOT (or `--data-root`): mnist/ (the IDX files) and
cifar10/ (cifar-10-batches-py/, md5 checks off, so the JPEG look-alike serves). Elsewhere it uses
synthetic uint8 images of the right shape and says so in the row (`data` column). `--context K
--iters N` times a slice: N iterations from the start of context K (the earlier contexts are
skipped, not trained: the time of an iteration depends on its context, not on the weights).

Prints one Markdown table row. Training and evaluation are timed apart: training iterations/s and
GFLOP/s, evaluated images/s and GFLOP/s (FLOPs: the network registry's count, checked against
torch's flop counter). Each is held against the best rate this process reaches with the same
network (built from the registry) on the same device: the forward, backward and SGD step of a
training batch, and the forward of an evaluation batch, over the memory layouts and batch sizes
`best_rates` tries; the ratio is the project's rate over that best. Also wall time, s per run and
peak memory. Several runs (`--seeds`, several methods) train as one batch of models (`--mode
batched`) or one after another in the same process (`--mode sequential`). One untimed iteration
on a throwaway trainer warms the kernels first. `--layout`,
`--eval-batch` and `--bf16` time what-ifs beside the registry's and the config's choices (named in
the `setting` column). It is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

COLUMNS = ["benchmark", "data", "methods", "eval", "setting", "device", "precision", "threads", "runs", "mode", "slice",
           "wall s", "s/run", "train it/s", "train GFLOP/s", "best train GFLOP/s", "train ratio", "eval img/s",
           "eval GFLOP/s", "best eval GFLOP/s", "eval ratio", "peak MB"]
HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|"
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


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


def best_rates(arch, image: tuple[int, int, int], num_classes: int, device, seconds: float = 1.0,
               train_batches=(64, 128, 256), eval_batches=(16, 32, 64, 128, 256, 512, 1024, 2500)) -> dict:
    """The best GFLOP/s this process reaches with the network itself (one model built from the
    registry, BatchNorm, activations and loss included) over memory layouts (channels_last only for
    a network with convolutions) and batch sizes: "train", the forward, backward and SGD step of a
    batch; "eval", the forward of a batch in eval mode without autograd. Each: (rate, layout, batch)."""
    import torch.nn.functional as F

    from ..gain import GainSettings
    from ..models import build_models

    has_conv = any(layer.kind == "conv" for layer in arch.layers(image, num_classes))
    layouts = ["nchw", "channels_last"] if has_conv else ["nchw"]
    model = build_models(arch.name, num_classes, image, [0], [GainSettings()]).to(device)
    best = {"train": (0.0, "", 0), "eval": (0.0, "", 0), "all": []}
    for layout in layouts:
        model.use_memory_format(LAYOUTS[layout])
        for batch in train_batches:
            x = torch.randn(1, batch, *image, device=device)
            y = torch.randint(0, num_classes, (batch,), device=device)
            model.train()

            def step():
                for p in model.parameters():
                    p.grad = None
                F.cross_entropy(model(x)[0], y).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(p.grad, alpha=-1e-4)

            rate = arch.train_flops(image, num_classes) * batch / _timed(step, seconds, device) / 1e9
            best["train"] = max(best["train"], (rate, layout, batch))
            best["all"].append(("train", layout, batch, rate))
        model.eval()
        for batch in eval_batches:
            x = torch.randn(batch, *image, device=device)
            with torch.inference_mode():
                rate = arch.forward_flops(image, num_classes) * batch / _timed(lambda: model(x), seconds, device) / 1e9
            best["eval"] = max(best["eval"], (rate, layout, batch))
            best["all"].append(("eval", layout, batch, rate))
    return best


class TimedEvaluator:
    """The trainer's evaluator, timed (device-synchronised), so training and evaluation are timed apart."""

    def __init__(self, evaluator, device):
        self.evaluator, self.device, self.seconds = evaluator, device, 0.0

    def __call__(self, *args):
        _sync(self.device)
        t0 = time.perf_counter()
        out = self.evaluator(*args)
        _sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out


def load_data(benchmark: str, config: dict, data_root: str | None):
    """(canonical data, 'real' or 'synthetic') for a benchmark of the config: its dataset built from
    the raw files under <data_root>/<dataset> where they are staged (md5 checks off: a look-alike
    times as the original does; cached in /tmp), from the package's own files for mnist5k, else
    random images of the dataset's shape (MNIST excepted: its timing is measured on the real digits)."""
    from ..config import config_hash
    from ..data import build_canonical, builder_options, missing_raw_files
    from ..data.canonical import load_canonical, synthetic_canonical

    name = config["benchmarks"][benchmark]["dataset"]
    entry = config["datasets"][name]
    builder = entry["builder"]
    accepted = builder_options(builder)
    options = {k: v for k, v in entry.items() if k in accepted}
    options.update({k: v for k, v in (("download", False), ("check_md5", False)) if k in accepted})
    folder = os.path.join(data_root, name) if data_root else None
    staged = folder is not None and os.path.isdir(folder) and not missing_raw_files(builder, folder, **options)
    if staged or builder == "mnist5k":
        cache = f"/tmp/stabgap-bench-{builder}-{config_hash(options)}.pt"
        if not os.path.exists(cache):
            build_canonical(builder, cache, source_dir=folder, **options)
        return load_canonical(cache), "real"
    if builder == "mnist":
        raise SystemExit(f"error: give --data-root (or set STABGAP_DATA_ROOT): a folder with {name}/ holding the "
                         "four MNIST IDX files")
    return synthetic_canonical(builder), "synthetic"  # 100 training and 20 test images a class


def time_slice(trainers, start: int, stop: int) -> tuple[float, float, float]:
    """Train each trainer (evaluator already a TimedEvaluator) from iteration `start` to `stop`, the
    earlier iterations skipped, not trained (an iteration's time depends on its context, not on the
    weights): (wall, training, evaluation) seconds, waiting for the device at the end."""
    t0 = time.perf_counter()
    for tr in trainers:
        tr.iteration = start
        for r in tr.runs:
            r.iteration = start
        while tr.iteration < stop:
            tr.step()
        tr.records.train_loss.sum().item()  # wait for the device
    wall = time.perf_counter() - t0
    eval_s = sum(tr.evaluator.seconds for tr in trainers)
    return wall, wall - eval_s, eval_s


def main(argv=None) -> None:
    import dataclasses

    from ..archs import get_arch
    from ..benchmarks import BENCHMARKS, get_benchmark
    from ..config import load_config, run_config
    from ..job import run_settings, set_precision
    from ..methods import resolve_method
    from ..schedule import Schedule
    from ..streams import build_stream
    from ..trainer import Trainer, resolve_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="split_mnist",
                   help="a benchmark of --config (its plugins' included): " + ", ".join(BENCHMARKS) + ", ...")
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
    p.add_argument("--layout", choices=list(LAYOUTS), default=None,
                   help="what-if: this memory layout instead of the network's (registry)")
    p.add_argument("--eval-batch", type=int, default=None, help="what-if: this evaluation batch instead of the run's")
    p.add_argument("--bf16", action="store_true", help="evaluation under bf16 autocast (evaluation.bf16)")
    p.add_argument("--precision", choices=["fp32", "tf32"], default=None,
                   help="what-if: this compute.precision instead of the config's")
    p.add_argument("--no-reference", action="store_true", help="skip the best-rate search (its columns stay empty)")
    p.add_argument("--header", action="store_true", help="print the table header first")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)

    config = load_config(a.config)  # registers the config's plugins: their benchmarks can be timed too
    if a.benchmark not in config["benchmarks"]:
        raise SystemExit(f"error: --benchmark {a.benchmark!r} is not under benchmarks: of {a.config} "
                         f"(there: {', '.join(config['benchmarks'])})")
    data, kind = load_data(a.benchmark, config, a.data_root)
    names = a.method.split(",")
    runs = [(name, 42 + i) for name in names for i in range(a.seeds)]
    cfg = [run_config(config, a.benchmark, name, seed) for name, seed in runs]
    numerics = set_precision(a.precision or cfg[0]["precision"], device)
    stream = build_stream(a.benchmark, data, config["benchmarks"][a.benchmark].get("stream"))
    settings = dataclasses.replace(run_settings(cfg[0]), eval_scope=a.eval,
                                   eval_batch_size=a.eval_batch or run_settings(cfg[0]).eval_batch_size,
                                   eval_bf16=a.bf16 or run_settings(cfg[0]).eval_bf16)
    setting = ", ".join(filter(None, [f"layout {a.layout}" if a.layout else "", f"eval batch {settings.eval_batch_size}",
                                      "bf16 eval" if settings.eval_bf16 else ""]))
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

    # one untimed iteration (with its evaluation, if due) on a throwaway trainer: one-time set-up
    # (kernel selection, allocations) is not a rate, and a whole run amortises it
    warm = Trainer(stream, methods[:1], seeds[:1], settings, device)
    if a.layout:
        warm.models.use_memory_format(LAYOUTS[a.layout])
    warm.iteration = start
    warm.step()
    del warm
    t0 = time.perf_counter()
    if mode == "batched":
        trainers = [Trainer(stream, methods, seeds, settings, device)]
    else:
        trainers = [Trainer(stream, m, s, settings, device) for m, s in zip(methods, seeds)]
    for tr in trainers:
        if a.layout:
            tr.models.use_memory_format(LAYOUTS[a.layout])
        tr.evaluator = TimedEvaluator(tr.evaluator, device)
    built = time.perf_counter() - t0
    wall, train_s, eval_s = time_slice(trainers, start, stop)

    bench = get_benchmark(a.benchmark)
    arch, image = get_arch(bench.net), trainers[0].data.image
    schedule = Schedule.of(settings, stream.task_sizes("test"))
    images = sum(schedule.images(schedule.context(t)) for t in range(start + 1, stop + 1) if schedule.evaluated(t))
    images *= len(runs)
    train_rate = arch.train_flops(image, bench.num_classes) * settings.batch_size * (stop - start) * len(runs) / train_s / 1e9
    eval_rate = arch.forward_flops(image, bench.num_classes) * images / eval_s / 1e9 if eval_s else 0.0
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
        where = torch.cuda.get_device_name(device)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "cpu"
    best = None if a.no_reference else best_rates(arch, image, bench.num_classes, device)

    def against(rate, part):
        if best is None:
            return ["", ""]
        ref, layout, batch = best[part]
        return [f"{ref:.0f} ({layout}, {batch})", f"{rate / ref:.2f}"]

    if a.header:
        print(HEADER)
    slice_ = f"ctx {a.context}, {stop - start} it" if a.iters else "whole"
    cells = [a.benchmark, kind, a.method, a.eval, setting, where, numerics["precision"], a.threads, len(runs), mode,
             slice_, f"{wall:.1f}", f"{wall / len(runs):.2f}", f"{(stop - start) * len(trainers) / train_s:.2f}",
             f"{train_rate:.0f}", *against(train_rate, "train"), f"{images / eval_s:,.0f}" if eval_s else "",
             f"{eval_rate:.0f}", *against(eval_rate, "eval"), f"{peak_mb:.0f}"]
    print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"(set-up {built:.1f} s, not timed; training {train_s:.1f} s, evaluation {eval_s:.1f} s; "
          f"torch {torch.__version__})", file=sys.stderr)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
