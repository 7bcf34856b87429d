"""Will it run here? The preflight check of a config on the machine where its jobs will run.

    python -m stabgap doctor --config config.yaml [--cores N]
    snakemake doctor                                  (the workflow's target; not in the default one)

One line per check, each "ok", "warning" or "failure" with what to do, printed and written as
Markdown to <results>/doctor.md; the exit status is 1 when a check fails that would stop the run.
It reads what it must to verify, and never trains a run of the config.

- software: Python, torch, torchvision, Snakemake against the project's pins; the CPU's kernel level
  (bitwise-equal results need the same kind of CPU and the same thread count).
- device: compute.device against what is there (each GPU's name, compute capability, memory), and
  whether the largest batch the config plans fits in that memory (the host's, for CPU jobs).
- data: per dataset, staged and verified, missing but downloadable from here (with its size), or
  missing and not to be had (a failure naming the file and the folder); a built canonical file is
  checked against its manifest instead.
- disk: free space under `results` and the data root against what the config will write.
- speed: a few training iterations and one evaluation of each network shape the config uses, timed
  on the jobs' device with the config's precision, layout, evaluation batch and threads (random
  images of the right shape: the arithmetic does not depend on the pixels), and from these rates
  the config's wall time with its jobs run as the workflow runs them (longest first, `--cores`
  divided by compute.threads at a time, one GPU job per GPU), beside the cost model's machines.
- GPU path (where there is a GPU): a short slice of each network on CUDA and on the CPU from the
  same seed, losses and accuracies compared within a stated tolerance, and a checkpoint written,
  read back and resumed on the GPU.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("ok", "warning", "failure")


@dataclass
class Check:
    area: str  # software, device, data, disk, speed, gpu path
    name: str
    status: str  # ok, warning, failure
    detail: str
    todo: str = ""
    download_bytes: int = 0  # data checks: what a download of the missing files would fetch


# ---------------------------------------------------------------- software

def pins() -> dict[str, str]:
    """{package: pinned version} of the project: its checkout's pyproject.toml when the package
    runs from one, else the installed package's metadata."""
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        lines = project["dependencies"] + [r for extra in project.get("optional-dependencies", {}).values()
                                           for r in extra]
    else:
        try:
            lines = importlib.metadata.requires("stabgap") or []
        except importlib.metadata.PackageNotFoundError:
            lines = []
    out = {}
    for line in lines:
        requirement = line.split(";")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            out[name.strip().lower()] = version.strip()
    return out


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


def check_software(config: dict) -> list[Check]:
    import torch

    checks = []
    py = platform.python_version()
    ok = sys.version_info >= (3, 11)
    checks.append(Check("software", "Python", "ok" if ok else "failure", f"Python {py}",
                        "" if ok else "use Python 3.11 or newer"))
    pinned = pins()
    for name in ("torch", "torchvision", "snakemake"):
        want = pinned.get(name)
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have is None:
            status = "warning" if name == "snakemake" else "failure"
            checks.append(Check("software", name, status, f"{name} is not installed (pinned: {want})",
                                "pip install -e \".[workflow]\"" + (" (python -m stabgap run works without it)"
                                                                     if name == "snakemake" else "")))
        elif want and have.split("+")[0] != want:
            checks.append(Check("software", name, "warning", f"{name} {have}, pinned {want}: results may differ "
                                f"from the pinned versions' in the last bits", f"pip install {name}=={want}"))
        else:
            checks.append(Check("software", name, "ok", f"{name} {have}" + (" (as pinned)" if want else "")))
    level = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    bf16 = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16"))
    checks.append(Check("software", "CPU kernels", "ok",
                        f"{level}{', bf16 units (' + ', '.join(bf16) + ')' if bf16 else ', no bf16 units'}; "
                        f"{os.cpu_count()} cores. Every run records it (summary.json: cpu_capability): "
                        f"bitwise-equal results need the same kind of CPU and the same thread count "
                        f"(compute.threads {config['compute']['threads']})"))
    return checks


# ---------------------------------------------------------------- device

def gpus() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}", "memory_mb": p.total_memory / 2 ** 20})
    return out


def host_memory_mb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
    except (ValueError, OSError):
        return math.nan


def job_need_mb(config: dict, benchmark: str, on_gpu: bool) -> float:
    """What one training job of a benchmark holds: its batches' activations (cost.job_memory_mb, all
    runs of a batch job), the stream's images as the job holds them on its device (training uint8,
    test float32 unless augmented afresh), and the weights with two optimizer states per model."""
    from .archs import get_arch
    from .benchmarks import get_benchmark
    from .config import dataset_options, run_config
    from .cost import dataset_facts, job_memory_mb
    from .data import get_source

    bench = get_benchmark(benchmark)
    entry = config["benchmarks"][benchmark]
    dataset = config["datasets"][entry["dataset"]]
    image, _ = dataset_facts(dataset)
    run = run_config(config, benchmark, next(iter(config["methods"])), config["seeds"][0])
    n_runs = max(1, config["compute"]["batch_runs"]) if bench.batchable else 1
    act = job_memory_mb(run, image, n_runs)
    pixels = image[0] * image[1] * image[2]
    source = get_source(dataset["builder"])
    tasks = bench.tasks(source.counting_labels(dataset_options(dataset)), entry.get("stream"))
    n_train, n_test = sum(len(t["train_idx"]) for t in tasks), sum(len(t["test_idx"]) for t in tasks)
    data = (n_train * pixels + n_test * pixels * (1 if run["test_augment"] else 4)) / 2 ** 20
    params = sum(layer.cin * layer.cout * layer.kernel ** 2 for layer in get_arch(bench.net).layers(image, bench.num_classes))
    weights = 4 * params * 3 * n_runs / 2 ** 20
    return max(act["train"], act["evaluation"]) + data * (1 if on_gpu else 2) + weights


def check_device(config: dict, cores: int) -> list[Check]:
    from .archs import get_arch
    from .benchmarks import get_benchmark
    from .config import train_mem_mb
    from .planning import missing_cuda

    checks, device = [], config["compute"]["device"]
    found = gpus()
    wants = [b for b in config["benchmarks"] if get_arch(get_benchmark(b).net).wants_gpu]
    # where there is a GPU, every job of a config whose device is auto or cuda trains there (an MLP
    # job asks the scheduler for no GPU, and shares it)
    on_gpu = list(config["benchmarks"]) if device != "cpu" and found else []
    if found:
        listed = "; ".join(f"cuda:{g['index']} {g['name']} (compute capability {g['capability']}, "
                           f"{g['memory_mb'] / 1024:.0f} GiB)" for g in found)
    else:
        listed = "no CUDA GPU"
    if device.startswith("cuda") and not found:
        checks.append(Check("device", "compute.device", "failure", f"compute.device {device!r}, and this machine has "
                            f"{listed} ({missing_cuda(config) or 'torch sees none'})",
                            "run on a machine with a GPU, or set compute.device: auto or cpu"))
    elif wants and not found or wants and device == "cpu":
        why = "compute.device: cpu" if device == "cpu" else "this machine has no CUDA GPU"
        checks.append(Check("device", "compute.device", "warning", f"{device!r}: the runs of {', '.join(wants)} (a "
                            f"network that wants a GPU) train on the CPU here ({why}): hours a run", "run them on "
                            "a GPU machine if the speed check's time is too long"))
    else:
        checks.append(Check("device", "compute.device", "ok", f"{device!r}: {listed}"))
    for b in config["benchmarks"]:
        gpu = b in on_gpu
        need = job_need_mb(config, b, gpu)
        if gpu:
            have = min(g["memory_mb"] for g in found)
            where = f"the GPU's {have / 1024:.0f} GiB"
            todo = "lower compute.batch_runs or the batch size, or use a GPU with more memory"
        else:
            have = train_mem_mb(config, b)
            where = f"the job's {have:,} MB (its mem_mb)"
            todo = "raise the benchmark's mem_mb (or compute.train_mem_mb), or lower the batch"
        status = "failure" if need > have else "warning" if need > 0.8 * have else "ok"
        checks.append(Check("device", f"memory of {b}", status, f"a training job holds about {need:,.0f} MB "
                            f"(batches, data, weights) against {where}", todo if status != "ok" else ""))
    host = host_memory_mb()
    slots = max(1, cores // config["compute"]["threads"])
    cpu_jobs = [train_mem_mb(config, b) for b in config["benchmarks"] if b not in on_gpu]
    if cpu_jobs and math.isfinite(host):
        most = max(cpu_jobs) * min(slots, len(config["seeds"]) * len(config["methods"]))
        status = "warning" if most > host else "ok"
        checks.append(Check("device", "host memory", status, f"{host / 1024:.0f} GiB; {slots} jobs at a time "
                            f"(--cores {cores} / compute.threads {config['compute']['threads']}) may ask for up "
                            f"to {most:,} MB", "run with --resources mem_mb=<the host's MB> so that Snakemake "
                            "keeps them within it" if status != "ok" else ""))
    return checks


# ---------------------------------------------------------------- data

def check_data(config: dict, timeout: float) -> list[Check]:
    from .config import data_root, dataset_options
    from .data import get_source
    from .data.canonical import load_canonical, manifest_path

    checks, results = [], Path(config["results"])
    used = sorted({b["dataset"] for b in config["benchmarks"].values()})
    for name in used:
        entry = config["datasets"][name]
        built = results / "data" / f"{name}.pt"
        if built.exists() and manifest_path(built).exists():
            try:
                load_canonical(built)
                checks.append(Check("data", name, "ok", f"built: {built} (sha256 verified against its manifest)"))
            except Exception as err:  # noqa: BLE001  a damaged canonical file: say so, and what to do
                checks.append(Check("data", name, "failure", f"{built}: {err}", f"delete {built} and rerun"))
            continue
        source = get_source(entry["builder"])
        folder = (Path(data_root(config)) / name).resolve()
        if source.check is None:
            missing = source.missing(folder, **dataset_options(entry))
            status = "failure" if missing else "warning"
            detail = "; ".join(missing) or f"staged in {folder} (its source has no preflight check)"
            checks.append(Check("data", name, status, detail, f"stage it in {folder}" if missing else ""))
            continue
        options = {k: v for k, v in dataset_options(entry).items() if k != "timeout"}  # the doctor's own
        try:
            found = source.check(folder, timeout, **options)
        except Exception as err:  # noqa: BLE001  a file so damaged that its check fails: that is the verdict
            checks.append(Check("data", name, "failure", f"in {folder}: {type(err).__name__}: {err}",
                                "replace the damaged file with a complete copy"))
            continue
        detail = found.detail + (f"; declared look-alike: {entry['lookalike']}" if entry.get("lookalike") else "")
        checks.append(Check("data", name, found.status, detail, found.todo, found.download_bytes))
    return checks


# ---------------------------------------------------------------- disk

LOG_BYTES_PER_ROW = 60  # a log.parquet row, compressed (the demo's logs: 50-60 bytes)


def footprint(config: dict, cores: int | None = None) -> dict[str, float]:
    """Bytes the config writes: canonical tensors, streams, logs (summaries and metrics aside: small),
    and the checkpoints of the jobs that run at once (`cores` // compute.threads of them; a batch
    job's holds its runs). A source that does not say how many training images it has
    (Source.train_per_class) is counted with one a class: a lower bound."""
    from .archs import get_arch
    from .benchmarks import get_benchmark
    from .config import dataset_options, experiment_runs, run_config
    from .cost import dataset_facts
    from .data import get_source
    from .schedule import Schedule

    out = {"canonical": 0.0, "streams": 0.0, "logs": 0.0, "checkpoints": 0.0}
    for name, entry in config["datasets"].items():
        source = get_source(entry["builder"])
        c, h, w = source.image
        out["canonical"] += sum(source.images(dataset_options(entry))) * c * h * w
    for b, entry in config["benchmarks"].items():
        dataset = config["datasets"][entry["dataset"]]
        source = get_source(dataset["builder"])
        c, h, w = source.image
        tasks = get_benchmark(b).tasks(source.counting_labels(dataset_options(dataset)), entry.get("stream"))
        out["streams"] += sum(len(t["train_idx"]) + len(t["test_idx"]) for t in tasks) * c * h * w
    runs = {r for group in experiment_runs(config).values() for r in group}
    biggest = 0.0
    for b, v, s in runs:
        run = run_config(config, b, v, s)
        dataset = config["datasets"][config["benchmarks"][b]["dataset"]]
        image, _ = dataset_facts(dataset)
        from .cost import stream_test_sizes

        sched = Schedule.of(run, stream_test_sizes(b, config["benchmarks"][b].get("stream"), dataset))
        out["logs"] += (sched.total_iters + sum(
            sched.tasks(sched.context(t)) for t in sched.iterations())) * LOG_BYTES_PER_ROW
        bench = get_benchmark(b)
        params = sum(layer.cin * layer.cout * layer.kernel ** 2 for layer in get_arch(bench.net).layers(image, bench.num_classes))
        records = sched.total_iters * 40 + len(sched.iterations()) * sched.logged_tasks * 16
        biggest = max(biggest, 4 * params * 3 + records)
    keep = config["compute"].get("keep_checkpoints")
    slots = max(1, (cores or os.cpu_count() or 1) // int(config["compute"]["threads"]))
    per_job = max(1, config["compute"]["batch_runs"])
    out["checkpoints"] = biggest * (len(runs) if keep else min(len(runs), slots * per_job))
    return out


def existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_disk(config: dict, data: list[Check], cores: int | None = None) -> list[Check]:
    from .config import data_root
    from .data import get_source

    need = footprint(config, cores)
    unknown = sorted({e["builder"] for e in config["datasets"].values() if get_source(e["builder"]).train_per_class is None})
    results, raw = existing(Path(config["results"])), existing(Path(data_root(config)))
    downloads = 2.0 * sum(c.download_bytes for c in data)  # the files, and their extraction
    total = sum(need.values())
    checks = []
    same = os.stat(results).st_dev == os.stat(raw).st_dev
    for where, path, want in (("results", results, total + (downloads if same else 0.0)),
                              ("data root", raw, downloads if not same else 0.0)):
        if want == 0 and where == "data root":
            continue
        free = shutil.disk_usage(path).free
        status = "failure" if want > free else "warning" if want > 0.8 * free else "ok"
        parts = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in need.items()) if where == "results" else ""
        detail = (f"{free / 1e9:,.1f} GB free under {path}; the config writes about {want / 1e9:.2f} GB"
                  + (f" at least ({', '.join(unknown)}: training images not declared)" if unknown and parts else "")
                  + (f" ({parts}{', downloads ' + f'{downloads / 1e9:.2f} GB' if downloads and same else ''})" if parts else ""))
        checks.append(Check("disk", where, status, detail, "free space there, or point results (or the data "
                            "root) at a larger disk" if status != "ok" else ""))
    return checks


# ---------------------------------------------------------------- speed, and the wall time it gives

def shape_of(config: dict, benchmark: str) -> tuple:
    """What a benchmark's work per iteration and per evaluated image depends on: network, image,
    batch, evaluation batch, test augmentation."""
    from .benchmarks import get_benchmark
    from .config import run_config
    from .cost import dataset_facts

    entry = config["benchmarks"][benchmark]
    run = run_config(config, benchmark, next(iter(config["methods"])), config["seeds"][0])
    image, _ = dataset_facts(config["datasets"][entry["dataset"]])
    return (get_benchmark(benchmark).net, image, run["batch_size"], run["eval_batch_size"], run["test_augment"])


def shapes(config: dict) -> dict[tuple, str]:
    """One benchmark of the config per distinct shape of work (benchmarks of one shape cost the
    same per iteration and per image)."""
    out = {}
    for b in config["benchmarks"]:
        out.setdefault(shape_of(config, b), b)
    return out


def job_device(config: dict) -> str:
    """The device the config's jobs train on here."""
    import torch

    device = config["compute"]["device"]
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def synthetic_stream(config: dict, benchmark: str):
    """The benchmark's stream (the config's parameters) cut from random images of its dataset's shape:
    as many test images a class as the dataset has (so an evaluation forwards what it will), 20
    training images a class (mini-batches are drawn with replacement)."""
    from .config import dataset_options
    from .data import get_source
    from .data.canonical import synthetic_canonical
    from .streams import build_stream

    entry = config["benchmarks"][benchmark]
    dataset = config["datasets"][entry["dataset"]]
    per_class = max(get_source(dataset["builder"]).test_per_class(dataset_options(dataset)))
    data = synthetic_canonical(dataset["builder"], train_per_class=20, test_per_class=per_class)
    return build_stream(benchmark, data, entry.get("stream"))


def measure(config: dict, benchmark: str, seconds: float = 1.0, at_least: int = 2) -> dict:
    """Seconds per training iteration and per evaluated image of one benchmark's runs, timed on
    their device with the config's settings (the first method, the first seed) from its start: one
    warm-up iteration and evaluation, then timed iterations until `seconds` have passed (at least
    `at_least`, at most the run), evaluation timed apart; one evaluation timed on its own where the
    slice evaluates nothing."""
    import torch

    from .archs import get_arch
    from .benchmarks import get_benchmark
    from .config import run_config
    from .job import run_settings, set_precision
    from .methods import resolve_method
    from .speed.harness import TimedEvaluator, time_slice
    from .trainer import Trainer

    run = run_config(config, benchmark, next(iter(config["methods"])), config["seeds"][0])
    device = torch.device(job_device(config))
    torch.set_num_threads(int(config["compute"]["threads"]))
    set_precision(run["precision"], device)
    stream = synthetic_stream(config, benchmark)
    method = resolve_method(run["method"], run["method_settings"])
    trainer = Trainer(stream, [method], [run["seed"]], run_settings(run), device)
    trainer.evaluator = TimedEvaluator(trainer.evaluator, device)
    limit = trainer.total_iters
    warm = 1 if limit > 1 else 0  # a run of one iteration: timed without a warm-up
    time_slice([trainer], 0, warm)  # warm-up: kernel selection, allocations (an evaluation's too)
    trainer.evaluator(trainer.models, 1)
    trainer.evaluator.seconds = 0.0
    t0, stop = time.perf_counter(), warm
    while stop < limit and (stop - warm < at_least or time.perf_counter() - t0 < seconds):
        trainer.step()
        stop += 1
    trainer.records.train_loss.sum().item()  # wait for the device
    wall = time.perf_counter() - t0
    eval_s = trainer.evaluator.seconds
    train_s, iters = wall - eval_s, stop - warm
    sched = trainer.schedule
    images = sum(sched.images(sched.context(t)) for t in range(warm + 1, stop + 1) if sched.evaluated(t))
    if images == 0:
        t0 = time.perf_counter()
        trainer.evaluator(trainer.models, 1)
        trainer.records.train_loss.sum().item()
        eval_s, images = time.perf_counter() - t0, sched.images(1)
    bench = get_benchmark(benchmark)
    arch, image = get_arch(bench.net), trainer.data.image
    s_iter, s_image = train_s / iters, eval_s / images
    return {"benchmark": benchmark, "network": bench.net, "image": image, "device": device.type,
            "s_per_iteration": s_iter, "s_per_image": s_image,
            "train_gflops": arch.train_flops(image, bench.num_classes) * run["batch_size"] / s_iter / 1e9,
            "eval_gflops": arch.forward_flops(image, bench.num_classes) / s_image / 1e9}


STARTUP_S = {"cpu": 3.0, "cuda": 10.0}  # a job's start-up: imports, the stream loaded (cost.MACHINES)
AFTER_S_PER_RUN, AFTER_S = 3.0, 60.0  # the jobs after training: a metrics job per run, then tables, figures, verdict


def run_seconds(config: dict, run: dict, rate: dict) -> float:
    """One run's seconds at the measured rate of its benchmark's shape."""
    from .cost import benchmark_run_work, network

    work = benchmark_run_work(config, run)
    arch, K = network(run["benchmark"])
    image = rate["image"]
    images = work["eval_flops"] / arch.forward_flops(image, K)
    return work["iterations"] * rate["s_per_iteration"] + images * rate["s_per_image"]


def makespan(jobs: list[tuple[float, bool]], slots: int, gpus: int = 1) -> float:
    """The wall time of jobs (seconds, whether it holds a GPU) as Snakemake's local scheduler runs
    them: highest priority (the longest) first, each on one of `slots` (cores // threads), a GPU job
    only while one of `gpus` is free; whenever a job ends, the jobs that now fit start."""
    import heapq

    pending = sorted(jobs, key=lambda j: -j[0])
    running: list[tuple[float, bool]] = []  # (end time, holds a GPU)
    now = 0.0
    while pending or running:
        free_gpus = gpus - sum(g for _, g in running)
        for job in list(pending):
            if len(running) >= max(1, slots):
                break
            seconds, gpu = job
            if gpu and free_gpus < 1:
                continue
            heapq.heappush(running, (now + seconds, gpu))
            free_gpus -= gpu
            pending.remove(job)
        if not running:  # nothing fits: a GPU job on a machine without a GPU slot
            raise ValueError("a job needs a GPU and the machine has none")
        now, _ = heapq.heappop(running)
    return now


def predict_wall(config: dict, rates: dict[str, dict], cores: int) -> dict:
    """The config's wall time here: its training jobs (as planning batches them) at the measured
    rates, run as Snakemake runs them (makespan: cores // compute.threads at a time, the jobs of a
    network that wants a GPU one per GPU); the data and stream jobs before them, the metrics, tables,
    figures and verdict after."""
    from .config import experiment_runs, run_config
    from .planning import train_batches, uses_gpu

    groups = experiment_runs(config)
    runs = sorted({r for g in groups.values() for r in g})
    rate_of = {b: rates[shape_of(config, b)] for b in config["benchmarks"]}
    jobs = []  # (seconds, holds a GPU)
    in_batch = set()

    def job(b, members):
        secs = sum(run_seconds(config, run_config(config, b, v, s), rate_of[b]) for v, s in members)
        gpu = bool(uses_gpu(config, b)) and rate_of[b]["device"] == "cuda"
        return secs + STARTUP_S[rate_of[b]["device"]], gpu

    for b, _, members in train_batches(config, groups):
        jobs.append(job(b, members))
        in_batch.update((b, v, s) for v, s in members)
    jobs += [job(b, [(v, s)]) for b, v, s in runs if (b, v, s) not in in_batch]
    slots = max(1, cores // int(config["compute"]["threads"]))
    n_gpus = len(gpus())
    training = makespan(jobs, slots, n_gpus)
    footprint_bytes = footprint(config, cores)
    before = (footprint_bytes["canonical"] + footprint_bytes["streams"]) / 100e6 + 2 * STARTUP_S["cpu"]
    after = len(runs) * AFTER_S_PER_RUN / slots + AFTER_S
    return {"seconds": before + training + after, "training": training, "jobs": len(jobs), "runs": len(runs),
            "slots": slots, "gpus": n_gpus, "gpu_jobs": sum(g for _, g in jobs),
            "serial_hours": sum(d for d, _ in jobs) / 3600}


def hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min" if h else f"{rest // 60} min {rest % 60:02d} s"


def cpu_times(stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all cores from the text of /proc/stat (idle and iowait are not busy)."""
    fields = [int(v) for v in stat.splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - fields[3] - fields[4], total


def cores_in_use(seconds: float = 0.5, stat: Path = Path("/proc/stat")) -> float:
    """How many cores were busy over the next `seconds` while this process slept: the others' load
    now. NaN where the kernel does not say (no /proc/stat)."""
    try:
        busy0, total0 = cpu_times(stat.read_text())
        time.sleep(seconds)
        busy1, total1 = cpu_times(stat.read_text())
    except (OSError, ValueError, IndexError):
        return math.nan
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


def check_speed(config: dict, cores: int) -> tuple[list[Check], dict]:
    from .config import experiment_runs, run_config
    from .cost import config_cost, machines

    checks = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    in_use = cores_in_use()
    # The 1-minute load average lags: just after other work has stopped it still reads high. Where
    # the kernel says how busy the cores are now, that decides; elsewhere the load average does.
    now = in_use if not math.isnan(in_use) else load
    busy = now > 0.5 * (os.cpu_count() or 1)
    checks.append(Check("speed", "machine load", "warning" if busy else "ok",
                        f"load average {load:.2f} on {os.cpu_count()} cores" +
                        ("" if math.isnan(in_use) else f", {in_use:.2f} cores in use by others now") +
                        (": busy, so the timings below are pessimistic" if busy else ""),
                        "time again on a quiet machine for a truer figure" if busy else ""))
    rates = {}
    for key, b in shapes(config).items():
        r = measure(config, b)
        rates[key] = r
        checks.append(Check("speed", f"{r['network']} {'×'.join(map(str, r['image']))} ({b})", "ok",
                            f"on {r['device']}: {r['s_per_iteration'] * 1e3:,.1f} ms a training iteration "
                            f"({r['train_gflops']:,.0f} GFLOP/s), {r['s_per_image'] * 1e6:,.1f} µs an evaluated "
                            f"image ({r['eval_gflops']:,.0f} GFLOP/s)"))
    wall = predict_wall(config, rates, cores)
    cost = config_cost(config, experiment_runs(config), run_config)
    stored = ", ".join(f"{name} {sum(row[f'hours_{name}'] for row in cost):.2f} h"
                       for name in machines(config))
    checks.append(Check("speed", "predicted wall time", "ok",
                        f"{hms(wall['seconds'])} here for {wall['runs']} runs in {wall['jobs']} training jobs "
                        f"({wall['slots']} job{'s' if wall['slots'] != 1 else ''} at a time with --cores {cores}"
                        + (f", a job on a GPU holding one of {wall['gpus']}" if wall["gpu_jobs"] else "")
                        + f"; {wall['serial_hours']:.2f} h of training "
                        f"one after another). The cost model's stored machines, one after another: {stored}"))
    return checks, {"rates": list(rates.values()), "wall": wall}


# ---------------------------------------------------------------- the GPU path, proven

TOLERANCE = {"fp32": 1e-3, "tf32": 2e-2}  # relative, on the training loss of the first iterations


def device_agreement(config: dict, benchmark: str, device: str, reference: str = "cpu", iters: int = 4) -> dict:
    """A short slice of the benchmark's first run on `device` and on `reference` from the same seed:
    the largest relative difference of the training losses, the largest difference of the task-1
    accuracies (points), and whether a checkpoint written on `device` after half the slice, read
    back and resumed, gives exactly the log of the uninterrupted slice."""
    import dataclasses

    import torch

    from .config import run_config
    from .job import run_settings, set_precision
    from .methods import resolve_method
    from .trainer import Trainer

    run = run_config(config, benchmark, next(iter(config["methods"])), config["seeds"][0])
    settings = dataclasses.replace(run_settings(run), iters_per_context=iters, eval_every=1,
                                   eval_dense_after_switch=0)
    stream = synthetic_stream(config, benchmark)
    method = resolve_method(run["method"], run["method_settings"])
    torch.set_num_threads(int(config["compute"]["threads"]))

    def trained(dev, stop, state=None):
        set_precision(run["precision"], torch.device(dev))
        tr = Trainer(stream, [method], [run["seed"]], settings, dev)
        if state is not None:
            tr.load_state_dict(state)
        while tr.iteration < stop:
            tr.step()
        return tr

    ref, mine = trained(reference, iters), trained(device, iters)
    a, b = ref.log(0), mine.log(0)
    train_a, train_b = a[a.split == "train"].loss.to_numpy(), b[b.split == "train"].loss.to_numpy()
    rel = float(max(abs(x - y) / max(1.0, abs(x)) for x, y in zip(train_a, train_b)))
    acc = float((a[a.split == "test"].accuracy.to_numpy() - b[b.split == "test"].accuracy.to_numpy()).__abs__().max())
    half = trained(device, iters // 2)
    buf = io.BytesIO()
    torch.save(half.state_dict(), buf)
    buf.seek(0)
    resumed = trained(device, iters, torch.load(buf, map_location=device, weights_only=True))
    return {"loss_rel": rel, "accuracy_points": acc, "resumed_equal": bool(resumed.log(0).equals(b)),
            "tolerance": TOLERANCE.get(run["precision"], 1e-3), "test_images": int(stream.task_sizes("test")[0])}


def check_gpu_path(config: dict) -> list[Check]:
    found = gpus()
    if not found:
        return [Check("gpu path", "CUDA against the CPU", "ok", "no GPU here: nothing to prove (CI checks the CUDA "
                      "path's devices under fake tensors, tests/test_cuda_fake.py)")]
    checks = []
    for key, b in shapes(config).items():
        if job_device(config) == "cpu":
            continue
        r = device_agreement(config, b, job_device(config))
        one_image = 100.0 / r["test_images"]
        ok = r["loss_rel"] <= r["tolerance"] and r["accuracy_points"] <= 2 * one_image and r["resumed_equal"]
        checks.append(Check("gpu path", f"{key[0]} {'×'.join(map(str, key[1]))} ({b})", "ok" if ok else "failure",
                            f"4 iterations from one seed: training loss within {r['loss_rel']:.1e} (relative; allowed "
                            f"{r['tolerance']:.0e}), task-1 accuracy within {r['accuracy_points']:.2f} points "
                            f"(allowed 2 test images, {2 * one_image:.2f}); a checkpoint resumed on the GPU gives "
                            f"{'the same' if r['resumed_equal'] else 'ANOTHER'} log",
                            "" if ok else "the CUDA path computes something else than the CPU path: report it "
                            "with this table (torch, driver, GPU)"))
    return checks


# ---------------------------------------------------------------- the report

def report(checks: list[Check], config_name: str, seconds: float) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    lines = [f"# Will it run here? {config_name}", "",
             f"{counts['ok']} ok, {counts['warning']} warning(s), {counts['failure']} failure(s); "
             f"checked in {seconds:.0f} s on {platform.node()} ({platform.platform()}).", "",
             "| area | check | status | what | what to do |", "|---|---|---|---|---|"]
    for c in checks:
        cells = [c.area, c.name, c.status.upper() if c.status != "ok" else "ok", c.detail, c.todo]
        lines.append("| " + " | ".join(str(x).replace("|", "/").replace("\n", " ") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def run_doctor(config: dict, config_name: str, cores: int, timeout: float = 5.0, speed: bool = True) -> list[Check]:
    checks = check_software(config) + check_device(config, cores)
    data = check_data(config, timeout)
    checks += data + check_disk(config, data, cores)
    if speed:
        checks += check_speed(config, cores)[0]
        checks += check_gpu_path(config)
    return checks


def main(config: dict, config_name: str, cores: int, out: str | None, timeout: float = 5.0,
         speed: bool = True) -> int:
    """Print the report, write its Markdown copy, return the exit status (1: a check failed)."""
    from .fileio import atomic_write_text

    t0 = time.perf_counter()
    checks = run_doctor(config, config_name, cores, timeout, speed)
    text = report(checks, config_name, time.perf_counter() - t0)
    print(text, end="")
    target = Path(out) if out else Path(config["results"]) / "doctor.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    print(f"\nwrote {target}")
    failed = [c for c in checks if c.status == "failure"]
    if failed:
        print(f"{len(failed)} check(s) failed: " + "; ".join(f"{c.area} {c.name}" for c in failed), file=sys.stderr)
    return 1 if failed else 0
