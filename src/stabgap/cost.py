"""What a config costs before it runs: FLOPs per run from the networks' layer shapes, and the time
they take on a machine from its measured rates (issue 12). Plain Python, no torch: planning
(`python -m stabgap cost`, the training rules' runtime resource) never imports it.

FLOPs are counted as torch.utils.flop_counter counts them (tests/test_cost.py checks the count
against it on the real networks): 2 per multiply-add of every convolution and matrix product,
nothing for BatchNorm, ReLU, pooling or the loss. A training image costs its forward, the
weight gradient of every layer (as much again) and the input gradient of every layer but the first
(whose input needs none). Evaluation at an evaluated iteration in context k costs one forward per
test image of every seen task (k passes under the v1 test augmentation; a subset caps each task).

Time = training FLOPs ÷ training rate + evaluation FLOPs ÷ evaluation rate + per-iteration and
per-evaluation overheads + one job start-up, the rates and
overheads per network and machine being settings (`cost.machines` in the config, measured with
`python -m stabgap.speed`; speed/NOTES.md). The overhead terms make launch-bound runs predictable.
"""

from __future__ import annotations

import math

# ---------------------------------------------------------------- the networks (nets.py), as shapes

MLP_HIDDEN = 400
RESNET_NF = 20


def mlp_layers(in_features: int, num_classes: int) -> list[tuple[int, int]]:
    """(multiply-adds per image, is-first-layer) per layer of nets.MLP."""
    h = MLP_HIDDEN
    return [(in_features * h, True), (h * h, False), (h * num_classes, False)]


def resnet_layers(image_size: int, num_classes: int, nf: int = RESNET_NF) -> list[tuple[int, bool]]:
    """(multiply-adds per image, is-first-layer) per convolution and the head of nets.SlimResNet18."""
    out = lambda size, stride: (size - 1) // stride + 1  # noqa: E731  (3×3 pad 1 and 1×1 pad 0 alike)
    s = image_size
    layers = [(3 * 9 * nf * s * s, True)]  # stem, stride 1
    cin = nf
    for width, stride in ((nf, 1), (2 * nf, 2), (4 * nf, 2), (8 * nf, 2)):
        for block_stride in (stride, 1):
            s2 = out(s, block_stride)
            layers.append((cin * 9 * width * s2 * s2, False))  # conv1
            layers.append((width * 9 * width * s2 * s2, False))  # conv2
            if block_stride != 1 or cin != width:
                layers.append((cin * width * s2 * s2, False))  # 1×1 shortcut
            cin, s = width, s2
    pooled = (s - 4) // 4 + 1
    layers.append((8 * nf * pooled * pooled * num_classes, False))  # head
    return layers


def net_layers(net: str, num_classes: int, image: tuple[int, int, int]) -> list[tuple[int, bool]]:
    c, h, w = image
    if net == "mlp":
        return mlp_layers(c * h * w, num_classes)
    if net == "resnet18_slim":
        return resnet_layers(h, num_classes)
    raise ValueError(f"no FLOP count for network {net!r}")


def forward_flops(net: str, num_classes: int, image: tuple[int, int, int]) -> int:
    return sum(2 * macs for macs, _ in net_layers(net, num_classes, image))


def train_flops(net: str, num_classes: int, image: tuple[int, int, int]) -> int:
    """Forward + backward of one training image."""
    return sum(2 * macs * (2 if first else 3) for macs, first in net_layers(net, num_classes, image))


# ---------------------------------------------------------------- what a benchmark's stream holds
# The shapes planning needs without reading any data come from the registries: the network and
# classes from the benchmark's entry (benchmarks.py), the image and the per-class test counts from
# the dataset's (data/), the test images per task from the benchmark's `test_sizes`.

def network(benchmark: str) -> tuple[str, int]:
    """(network, output classes) of a benchmark."""
    from .benchmarks import get_benchmark

    bench = get_benchmark(benchmark)
    return bench.net, bench.num_classes


def dataset_facts(dataset: dict) -> tuple[tuple[int, int, int], list[int]]:
    """(image C×H×W, test images per class) of a dataset entry of the config."""
    from .data import get_source

    source = get_source(dataset["builder"])
    return source.image, source.test_per_class({k: v for k, v in dataset.items() if k != "builder"})


def stream_test_sizes(benchmark: str, stream: dict, per_class: list[int]) -> list[int]:
    """Test images per task of a benchmark's stream, from the stream parameters of the config."""
    from .benchmarks import get_benchmark

    return get_benchmark(benchmark).test_sizes(stream, per_class)


# ---------------------------------------------------------------- machines
# Rates (GFLOP/s, per training job at its thread count) and overheads per network; the config's
# `cost.machines` overrides or adds entries. How each number was measured: speed/NOTES.md, *Cost model*.
DEFAULT_MACHINES = {
    "cpu": {  # speed/NOTES.md, *Cost model*: fitted on harness slices at 1 thread, full MNIST and JPEG CIFAR-10
        "label": "this project's CPU machine (2 cores), 1 thread per job (measured)",
        "rate_gflops": {"mlp": 44.2, "resnet18_slim": 31.4},
        "eval_rate_gflops": {"mlp": 44.2, "resnet18_slim": 16.1},
        "per_iteration_s": {"mlp": 0.0025, "resnet18_slim": 0.0},
        "per_evaluation_s": {"mlp": 0.0, "resnet18_slim": 0.0},
        "startup_s": 3.0,
    },
    "gpu": {
        "label": "NVIDIA H200, fp32 (MLP measured; ResNet rate ASSUMED until measured: speed/gpu.sh)",
        "rate_gflops": {"mlp": 9400.0, "resnet18_slim": 20000.0},
        "eval_rate_gflops": {"mlp": 9400.0, "resnet18_slim": 20000.0},
        "per_iteration_s": {"mlp": 0.0023, "resnet18_slim": 0.004},
        "per_evaluation_s": {"mlp": 0.0, "resnet18_slim": 0.0},
        "startup_s": 10.0,
    },
}


def machines(config: dict, gpu_tflops: float | None = None) -> dict:
    """The machines of the cost model: DEFAULT_MACHINES, with the config's `cost.machines` on top
    (an entry given in the config replaces the default entry's keys it names); with `gpu_tflops`,
    the user's GPU: that rate for both networks and phases, the gpu entry's overheads."""
    out = {name: {k: (dict(v) if isinstance(v, dict) else v) for k, v in m.items()}
           for name, m in DEFAULT_MACHINES.items()}
    for name, m in ((config.get("cost") or {}).get("machines") or {}).items():
        entry = out.setdefault(name, {})
        for key, value in m.items():
            entry[key] = {**entry.get(key, {}), **value} if isinstance(value, dict) else value
    if gpu_tflops is not None:
        given = {net: gpu_tflops * 1e3 for net in ("mlp", "resnet18_slim")}
        out["gpu"] = {**out["gpu"], "rate_gflops": given, "eval_rate_gflops": given,
                      "label": f"a GPU achieving {gpu_tflops:g} TFLOP/s (given), overheads of the gpu entry"}
    return out


# ---------------------------------------------------------------- one run's work

def eval_schedule(iters_per_context: int, n_contexts: int, every: int) -> list[int]:
    """Evaluated iterations: every ρ iterations and at the end of every context (train.Trainer)."""
    T = iters_per_context * n_contexts
    return [t for t in range(1, T + 1) if t % every == 0 or t % iters_per_context == 0]


def evaluation_flops(run: dict, test_sizes: list[int], image: tuple[int, int, int]) -> list[float]:
    """FLOPs of one evaluation in each context k: k pooled passes under test augmentation, the
    seen tasks 1..k (task 1 only under the v1 code's scope), each at most eval_subset images."""
    net, K = network(run["benchmark"])
    sizes = [min(s, run["eval_subset"]) if run.get("eval_subset") else s for s in test_sizes]
    fwd = forward_flops(net, K, image)
    out = []
    for k in range(1, len(test_sizes) + 1):
        passes = k if run.get("test_augment") else 1
        seen = 1 if run.get("eval_scope") == "task1" else k  # the v1 code evaluated task 1 only
        out.append(float(fwd * passes * sum(sizes[:seen])))
    return out


def iteration_flops(run: dict, test_sizes: list[int], image: tuple[int, int, int]) -> list[float]:
    """FLOPs of each iteration of a run (config.run_config) on a stream with these test sizes:
    training, plus the evaluation at evaluated iterations. `image`: C×H×W."""
    net, K = network(run["benchmark"])
    I, n = run["iters_per_context"], len(test_sizes)
    per_eval = evaluation_flops(run, test_sizes, image)
    costs = [float(train_flops(net, K, image) * run["batch_size"])] * (I * n)
    for t in eval_schedule(I, n, run["eval_every"]):
        costs[t - 1] += per_eval[(t - 1) // I]
    return costs


def evaluations_per_context(iters_per_context: int, n_contexts: int, every: int) -> list[int]:
    """How many iterations of each context eval_schedule evaluates, counted without listing them."""
    I = iters_per_context
    return [k * I // every - (k - 1) * I // every + (1 if (k * I) % every else 0) for k in range(1, n_contexts + 1)]


def run_work(run: dict, test_sizes: list[int], image: tuple[int, int, int]) -> dict:
    """A run's FLOPs for training and evaluation, its iterations and evaluations: the sums of
    iteration_flops, in closed form (planning must not allocate a list per iteration)."""
    net, K = network(run["benchmark"])
    I, n = run["iters_per_context"], len(test_sizes)
    evals = evaluations_per_context(I, n, run["eval_every"])
    eval_flops = sum(count * flops for count, flops in zip(evals, evaluation_flops(run, test_sizes, image)))
    train = float(train_flops(net, K, image) * run["batch_size"] * I * n)
    return {"network": net, "iterations": I * n, "evaluations": sum(evals), "train_flops": train,
            "eval_flops": eval_flops}


def predict_seconds(work: dict, machine: dict, n_jobs: float = 1.0) -> float:
    """Seconds for one run's work on a machine (cost.machines entry), with its share of job start-up."""
    net = work["network"]
    rate = float(machine["rate_gflops"][net]) * 1e9
    eval_rate = float(machine.get("eval_rate_gflops", machine["rate_gflops"])[net]) * 1e9
    return (work["train_flops"] / rate + work["eval_flops"] / eval_rate
            + work["iterations"] * float(machine["per_iteration_s"][net])
            + work["evaluations"] * float(machine["per_evaluation_s"][net])
            + float(machine["startup_s"]) * n_jobs)


def benchmark_run_work(config: dict, run: dict) -> dict:
    bench = config["benchmarks"][run["benchmark"]]
    image, per_class = dataset_facts(config["datasets"][bench["dataset"]])
    return run_work(run, stream_test_sizes(run["benchmark"], bench["stream"], per_class), image)


def runtime_minutes(config: dict, run: dict, n_runs: int = 1) -> int:
    """The `runtime` resource of a training job (n_runs runs of one batch): the cost model's
    prediction on `cost.runtime_machine`, times `cost.safety_factor`, in whole minutes."""
    cost = config["cost"]
    machine = machines(config)[cost["runtime_machine"]]
    seconds = predict_seconds(benchmark_run_work(config, run), machine) * n_runs
    return max(1, math.ceil(seconds * float(cost["safety_factor"]) / 60.0))


# ---------------------------------------------------------------- a whole config

def config_cost(config: dict, groups: dict, run_config, gpu_tflops: float | None = None) -> list[dict]:
    """One row per experiment group × benchmark: runs, FLOPs per run (training, evaluation), total
    FLOPs and the hours predicted on every machine of `cost.machines` (and on a GPU of
    `gpu_tflops`, which then replaces the gpu machine's rates for both networks)."""
    known = machines(config, gpu_tflops)
    rows, seen = [], set()
    for group, runs in groups.items():
        by_bench: dict[str, list] = {}
        for b, v, s in runs:
            by_bench.setdefault(b, []).append((v, s))
        for bench, members in by_bench.items():
            new = [(v, s) for v, s in members if (bench, v, s) not in seen]  # a shared run counts once
            seen.update((bench, v, s) for v, s in members)
            works = [benchmark_run_work(config, run_config(config, bench, v, s)) for v, s in new]
            row = {"group": group, "benchmark": bench, "runs": len(members), "new_runs": len(new),
                   "network": works[0]["network"] if works else "",
                   "train_pflop_per_run": works[0]["train_flops"] / 1e15 if works else 0.0,
                   "eval_pflop_per_run": works[0]["eval_flops"] / 1e15 if works else 0.0,
                   "total_pflop": sum(w["train_flops"] + w["eval_flops"] for w in works) / 1e15}
            for name, machine in known.items():
                row[f"hours_{name}"] = sum(predict_seconds(w, machine) for w in works) / 3600.0
            rows.append(row)
    return rows


def cost_table(rows: list[dict], machines: dict) -> str:
    """The Markdown table of `config_cost` rows, with a total line."""
    names = [k[len("hours_"):] for k in rows[0] if k.startswith("hours_")] if rows else []
    head = ["group", "benchmark", "runs", "network", "train PFLOP/run", "eval PFLOP/run", "total PFLOP"]
    head += [f"h on {n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        runs = f"{r['runs']}" + (f" ({r['new_runs']} new)" if r["new_runs"] != r["runs"] else "")
        cells = [r["group"], r["benchmark"], runs, r["network"], f"{r['train_pflop_per_run']:.4f}",
                 f"{r['eval_pflop_per_run']:.4f}", f"{r['total_pflop']:.3f}"]
        cells += [f"{r[f'hours_{n}']:.2f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**total**", "", str(sum(r["new_runs"] for r in rows)), "", "", "",
             f"{sum(r['total_pflop'] for r in rows):.3f}"]
    total += [f"{sum(r[f'hours_{n}'] for r in rows):.2f}" for n in names]
    lines.append("| " + " | ".join(total) + " |")
    legend = [f"- {n}: {machines.get(n, {}).get('label', n)}" for n in names]
    return "\n".join(lines + ["", "Machines (rates and overheads: the config's cost.machines):"] + legend) + "\n"


def write_cost(config: dict, groups: dict, run_config, out: str | None, source: str,
               gpu_tflops: float | None = None, log: str | None = None) -> str:
    """The cost table of a config (Markdown, returned), and with `out` also <out>.md and <out>.csv
    (written atomically; `log`: the table also there). `source`: where the config came from."""
    import csv
    import io

    from .fileio import atomic_write_text

    rows = config_cost(config, groups, run_config, gpu_tflops=gpu_tflops)
    table = cost_table(rows, machines(config, gpu_tflops))
    if out:
        title = (f"# What {source} costs\n\nPredicted before running (stabgap.cost): FLOPs from the networks' "
                 f"shapes, hours = FLOPs / rate + overheads; a run shared by groups counts once.\n\n")
        atomic_write_text(f"{out}.md", title + table)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["group"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(f"{out}.csv", buf.getvalue())
    if log:
        atomic_write_text(log, table)
    return table
