"""What a config costs before it runs: FLOPs per run from the networks' layer plans (archs.py),
the evaluation schedule (schedule.py), and the time they take on a machine from its measured rates.
Plain Python, no torch: planning (`python -m stabgap cost`, the training rules' runtime resource)
imports it, training jobs never do.

A training image costs its forward, the weight gradient of every layer (as much again) and the
input gradient of every layer but the first (archs.Arch.train_flops); an evaluation forwards the
images the schedule says (seen tasks or task 1, k passes under the v1 test augmentation, a subset
caps each task).

Time = training FLOPs ÷ training rate + evaluation FLOPs ÷ evaluation rate + per-iteration and
per-evaluation overheads + one job start-up. The rates and overheads per network and machine are
the network's registry entry (archs.Arch.rates, measured with the speed harness; src/stabgap/speed/NOTES.md),
the machine's label and start-up are here, and the config's `cost.machines` may override any of
them. The overhead terms make launch-bound runs predictable.
"""

from __future__ import annotations

import math

from .config import dataset_options
from .schedule import Schedule


# ---------------------------------------------------------------- what a benchmark's stream holds
# The shapes planning needs without reading any data come from the registries: the network and
# classes from the benchmark's entry (benchmarks.py), the image and the per-class test counts from
# the dataset's (data/), the test images per task from the benchmark's contexts (Benchmark.stream_test_sizes).

def network(benchmark: str):
    """(network registry entry, output classes) of a benchmark."""
    from .archs import get_arch
    from .benchmarks import get_benchmark

    bench = get_benchmark(benchmark)
    return get_arch(bench.net), bench.num_classes


def dataset_facts(dataset: dict) -> tuple[tuple[int, int, int], list[int]]:
    """(image C×H×W, test images per class) of a dataset entry of the config."""
    from .data import get_source

    source = get_source(dataset["builder"])
    return source.image, source.test_per_class(dataset_options(dataset))


def stream_test_sizes(benchmark: str, stream: dict | None, dataset: dict) -> list[int]:
    """Test images per task of a benchmark's stream, from the stream parameters and the dataset entry
    (builder and options) of the config: its contexts cut from labels in the dataset's layout."""
    from .benchmarks import get_benchmark
    from .data import get_source

    options = dataset_options(dataset)
    return get_benchmark(benchmark).stream_test_sizes(stream, get_source(dataset["builder"]), options)


# ---------------------------------------------------------------- machines
# Per machine its label and job start-up; its per-network rates and overheads come from the
# network registry (archs.Arch.rates); the config's `cost.machines` overrides or adds entries.
MACHINES = {
    "cpu": {"label": "this project's CPU machine (2 cores), 1 thread per job (measured)", "startup_s": 3.0},
    "gpu": {"label": "NVIDIA H200, fp32 (MLP measured; ResNet rate ASSUMED until measured: src/stabgap/speed/gpu.sh)",
            "startup_s": 10.0},
}
RATE_KEYS = ("rate_gflops", "eval_rate_gflops", "per_iteration_s", "per_evaluation_s")


def default_machines() -> dict:
    """MACHINES with every registered network's rates filled in."""
    from .archs import ARCHS

    out = {}
    for name, machine in MACHINES.items():
        out[name] = dict(machine)
        for key in RATE_KEYS:
            out[name][key] = {arch.name: arch.rates[name][key] for arch in ARCHS.values()
                              if key in arch.rates.get(name, {})}
    return out


def machines(config: dict, gpu_tflops: float | None = None) -> dict:
    """The machines of the cost model: default_machines(), with the config's `cost.machines` on top
    (an entry given in the config replaces the default entry's keys it names); with `gpu_tflops`,
    the user's GPU: that rate for every network and phase, the gpu entry's overheads."""
    from .archs import ARCHS

    out = default_machines()
    for name, m in ((config.get("cost") or {}).get("machines") or {}).items():
        entry = out.setdefault(name, {})
        for key, value in m.items():
            entry[key] = {**entry.get(key, {}), **value} if isinstance(value, dict) else value
    if gpu_tflops is not None:
        given = {net: gpu_tflops * 1e3 for net in ARCHS}
        out["gpu"] = {**out["gpu"], "rate_gflops": given, "eval_rate_gflops": given,
                      "label": f"a GPU achieving {gpu_tflops:g} TFLOP/s (given), overheads of the gpu entry"}
    return out


# ---------------------------------------------------------------- one run's work

def iteration_flops(run: dict, test_sizes: list[int], image: tuple[int, int, int]) -> list[float]:
    """FLOPs of each iteration of a run (config.run_config) on a stream with these test sizes:
    training, plus the evaluation the schedule makes at that iteration. `image`: C×H×W. A list as
    long as the run (tests and slices; planning uses run_work)."""
    arch, K = network(run["benchmark"])
    sched = Schedule.of(run, test_sizes)
    fwd, train = arch.forward_flops(image, K), float(arch.train_flops(image, K) * run["batch_size"])
    return [train + (float(fwd * sched.images(sched.context(t))) if sched.evaluated(t) else 0.0)
            for t in range(1, sched.total_iters + 1)]


def run_work(run: dict, test_sizes: list[int], image: tuple[int, int, int]) -> dict:
    """A run's FLOPs for training and evaluation, its iterations and evaluations: the sums of
    iteration_flops, in closed form (planning must not allocate a list per iteration)."""
    arch, K = network(run["benchmark"])
    sched = Schedule.of(run, test_sizes)
    return {"network": arch.name, "iterations": sched.total_iters, "evaluations": sum(sched.per_context()),
            "train_flops": float(arch.train_flops(image, K) * run["batch_size"] * sched.total_iters),
            "eval_flops": float(arch.forward_flops(image, K) * sched.eval_images())}


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
    dataset = config["datasets"][bench["dataset"]]
    image, _ = dataset_facts(dataset)
    return run_work(run, stream_test_sizes(run["benchmark"], bench.get("stream"), dataset), image)


def job_memory_mb(run: dict, image: tuple[int, int, int], n_runs: int = 1) -> dict:
    """A rough bound of what a training job's batches hold (the data aside), in MB, from the
    network's layer plan: a training step keeps, per image, the input (uint8 and normalised) and
    about four copies of every layer's output (the output, BatchNorm, activation, gradient); an
    evaluation forward two. Times the images of a batch and the runs trained together."""
    arch, K = network(run["benchmark"])
    pixels = image[0] * image[1] * image[2]
    outputs = sum(layer.cout * layer.size ** 2 for layer in arch.layers(image, K))
    train = 4 * (2 * pixels + 4 * outputs) * run["batch_size"] * n_runs / 2 ** 20
    evaluation = 4 * (pixels + 2 * outputs) * run["eval_batch_size"] * n_runs / 2 ** 20
    return {"train": train, "evaluation": evaluation}


def job_seconds(config: dict, run: dict, n_runs: int = 1) -> float:
    """A training job's predicted seconds (n_runs runs of one batch, one after another) on
    `cost.runtime_machine`."""
    machine = machines(config)[config["cost"]["runtime_machine"]]
    return predict_seconds(benchmark_run_work(config, run), machine) * n_runs


def runtime_minutes(config: dict, run: dict, n_runs: int = 1) -> int:
    """The `runtime` resource of a training job: `job_seconds` times `cost.safety_factor`, in whole minutes."""
    seconds = job_seconds(config, run, n_runs)
    return max(1, math.ceil(seconds * float(config["cost"]["safety_factor"]) / 60.0))


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
            first = run_config(config, bench, *members[0])
            row = {"group": group, "benchmark": bench, "runs": len(members), "new_runs": len(new),
                   "network": works[0]["network"] if works else "", "evaluation": evaluation_label(first),
                   "train_pflop_per_run": works[0]["train_flops"] / 1e15 if works else 0.0,
                   "eval_pflop_per_run": works[0]["eval_flops"] / 1e15 if works else 0.0,
                   "total_pflop": sum(w["train_flops"] + w["eval_flops"] for w in works) / 1e15}
            for name, machine in known.items():
                row[f"hours_{name}"] = sum(predict_seconds(w, machine) for w in works) / 3600.0
            rows.append(row)
    return rows


def evaluation_label(run: dict) -> str:
    """A run's evaluation schedule in a few words: scope, ρ, the dense window after each switch."""
    label = f"{run.get('eval_scope', 'seen')}, every {run['eval_every']}"
    if run.get("eval_dense_after_switch"):
        label += f", first {run['eval_dense_after_switch']} of each context"
    if run.get("test_augment"):
        label += ", v1 test augmentation"
    return label


# the evaluation schedules `schedule_alternatives` prices beside a config's own: both scopes, as
# configured and at a small budget (every 10th iteration, every one of the first 50 after a switch)
ALTERNATIVES = [{}, {"every": 10, "dense_after_switch": 50}]


def schedule_alternatives(config: dict, groups: dict, run_config, gpu_tflops: float | None = None) -> list[dict]:
    """What the whole config would cost under other evaluation schedules: each scope, with the
    config's ρ and window and with ALTERNATIVES' budget one. One row each (the config's own first)."""
    import copy

    own = config["evaluation"]
    rows, done = [], set()
    for scope in [own["scope"]] + [s for s in ("seen", "task1") if s != own["scope"]]:
        for change in ALTERNATIVES:
            ev = {**own, "scope": scope, **change}
            key = (ev["scope"], ev["every"], ev["dense_after_switch"])
            if key in done:
                continue
            done.add(key)
            alt = copy.deepcopy(config)
            alt["evaluation"] = ev
            costs = config_cost(alt, groups, run_config, gpu_tflops)
            row = {"scope": ev["scope"], "every": ev["every"], "dense_after_switch": ev["dense_after_switch"],
                   "this config": not rows, "eval_pflop": sum(r["eval_pflop_per_run"] * r["new_runs"] for r in costs),
                   "total_pflop": sum(r["total_pflop"] for r in costs)}
            row.update({k: sum(r[k] for r in costs) for k in costs[0] if k.startswith("hours_")} if costs else {})
            rows.append(row)
    return rows


def alternatives_table(rows: list[dict]) -> str:
    names = [k[len("hours_"):] for k in rows[0] if k.startswith("hours_")] if rows else []
    head = ["evaluation.scope", "every", "dense_after_switch", "eval PFLOP", "total PFLOP"] + [f"h on {n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = " (this config)" if r["this config"] else ""
        cells = [f"{r['scope']}{mark}", str(r["every"]), str(r["dense_after_switch"]), f"{r['eval_pflop']:.3f}",
                 f"{r['total_pflop']:.3f}"] + [f"{r[f'hours_{n}']:.2f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost_table(rows: list[dict], machines: dict) -> str:
    """The Markdown table of `config_cost` rows, with a total line."""
    names = [k[len("hours_"):] for k in rows[0] if k.startswith("hours_")] if rows else []
    head = ["group", "benchmark", "runs", "network", "evaluation", "train PFLOP/run", "eval PFLOP/run",
            "total PFLOP"]
    head += [f"h on {n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        runs = f"{r['runs']}" + (f" ({r['new_runs']} new)" if r["new_runs"] != r["runs"] else "")
        cells = [r["group"], r["benchmark"], runs, r["network"], r["evaluation"], f"{r['train_pflop_per_run']:.4f}",
                 f"{r['eval_pflop_per_run']:.4f}", f"{r['total_pflop']:.3f}"]
        cells += [f"{r[f'hours_{n}']:.2f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**total**", "", str(sum(r["new_runs"] for r in rows)), "", "", "", "",
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
    table += ("\nThe same runs under other evaluation schedules (evaluation.scope, evaluation.every, "
              "evaluation.dense_after_switch):\n\n" + alternatives_table(
                  schedule_alternatives(config, groups, run_config, gpu_tflops)))
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
