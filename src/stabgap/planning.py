"""What the workflow plans, computed from the config alone (no torch): run folders, which runs
share a training job, job groups, the target lists of tables and figures, the runs each figure
reads. workflow/rules/common.smk calls these; tests/test_planning.py checks them.

Multi-run batching: with `compute.batch_runs: N > 1`, the seeds of each variant of a batchable
benchmark (which share every setting: config.batch_key) are cut into chunks of at most N runs;
each chunk is one job training a batch of models (trainer.Trainer). A batch never mixes variants,
so a change to one method's settings retrains that method's runs only; adding seeds can regroup, and
so retrain, that variant's later batches; rebuilding one run retrains its batch.
"""

from __future__ import annotations

import json

from .archs import get_arch
from .benchmarks import BENCHMARKS, get_benchmark
from .config import parse_variant, run_config
from .methods import METHODS

Run = tuple[str, str, int]  # (benchmark, variant, seed)

TABLE_FAMILIES = ("task1_v1", "task1", "seen")
TABLE_FORMATS = ("csv", "md", "tex", "html")
TABLE_FILES = [f"table{n}_{family}.{ext}" for n in (1, 2) for family in TABLE_FAMILIES for ext in TABLE_FORMATS]


def run_dir(results: str, benchmark: str, variant: str, seed: int) -> str:
    return f"{results}/runs/{benchmark}/{variant}/seed{seed}"


def group_runs(config: dict, groups: dict[str, list[Run]], group: str, benchmarks=None) -> list[str]:
    """Run folders of an experiment group (optionally only some of its benchmarks)."""
    return [run_dir(config["results"], b, v, s) for b, v, s in groups.get(group, [])
            if benchmarks is None or b in benchmarks]


def train_batches(config: dict, groups: dict[str, list[Run]]) -> list[tuple[str, int, list]]:
    """(benchmark, index, [(variant, seed), ...]) per batch, for every batchable benchmark of the
    config; [] when batching is off (batch_runs 1). A run shared by experiment groups is planned once.
    A batch holds the seeds of one variant (at most batch_runs of them), never two variants, so that
    changing one method's settings retrains that method's runs only."""
    size = config["compute"]["batch_runs"]
    if size <= 1:
        return []
    runs = sorted({r for group in groups.values() for r in group})
    batches = []
    for bench in config["benchmarks"]:
        if not get_benchmark(bench).batchable:
            continue
        by_variant: dict[str, list] = {}  # runs that may share a batch: one variant (hence one batch key)
        for b, v, s in runs:
            if b == bench:
                by_variant.setdefault(v, []).append((v, s))
        chunks = [seeds[i:i + size] for v in sorted(by_variant) for seeds in [by_variant[v]]
                  for i in range(0, len(seeds), size)]
        batches += [(bench, i, chunk) for i, chunk in enumerate(chunks)]
    return batches


def job_group(benchmark: str, job: str) -> str:
    """The Snakemake group of a training job (`job`: "<variant>_<seed>" or "batch<i>"). The runs of a
    network that wants no GPU (archs.Arch.wants_gpu: the MLP) share one group, "<network>_runs", so a
    cluster profile can pack many into one scheduler job (--group-components mlp_runs=N); every GPU
    job is a group of its own."""
    arch = get_arch(get_benchmark(benchmark).net)
    return f"gpu_{benchmark}_{job}" if arch.wants_gpu else f"{arch.name}_runs"


def uses_gpu(config: dict, benchmark: str) -> int:
    """Runs of a network that wants a GPU ask the scheduler for one unless the config pins the CPU."""
    return int(get_arch(get_benchmark(benchmark).net).wants_gpu and config["compute"]["device"] != "cpu")


def cuda_visible() -> bool:
    """Whether this machine shows an NVIDIA GPU, asked without torch: its driver or nvidia-smi."""
    import shutil
    from pathlib import Path

    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def missing_cuda(config: dict) -> str:
    """What is wrong when the config asks for CUDA and this machine shows none ("" when all is well)."""
    device = config["compute"]["device"]
    if not device.startswith("cuda") or cuda_visible():
        return ""
    return (f"compute.device: {device!r}, but this machine shows no CUDA GPU (no NVIDIA driver, no nvidia-smi); "
            f"use device: auto (CUDA where there is one, else the CPU) or cpu, or run on a machine with a GPU")


def figure_benchmarks(config: dict, kind: str) -> list[str]:
    """The columns of figure 2 (kind "class_incremental") or 3 ("domain_incremental"): the config's
    list, else every benchmark of the config of that kind (its registry entry's), plugins' included."""
    chosen = config["figures"][kind]
    if chosen is None:
        return [b for b in config["benchmarks"] if BENCHMARKS[b].kind == kind.replace("_", "-")]
    return [b for b in chosen if b in config["benchmarks"]]


def gain_variants(variants) -> list[str]:
    """The variants whose gain the figures read out (methods.Method.reads_out_gain: NGM-SGD)."""
    methods = {v: parse_variant(v)[0] for v in variants}
    return [v for v in variants if methods[v] in METHODS and METHODS[methods[v]].reads_out_gain]


def table_targets(config: dict, groups: dict) -> list[str]:
    out = [f"{config['results']}/tables/{name}" for name in TABLE_FILES]
    if "ablations" in groups:
        out += [f"{config['results']}/tables/ablations/{name}" for name in TABLE_FILES]
    if "lr_sweep" in groups:
        out += [f"{config['results']}/tables/lr_sweep.{ext}" for ext in TABLE_FORMATS]
    return out


def table_groups(groups: dict) -> list[tuple[str, str, str]]:
    """(experiment group, its tables' folder under the results, report category) of each group with
    Tables 1 and 2 (the lr sweep has its own table)."""
    out = [("main", "tables", "Tables")]
    if "ablations" in groups:
        out.append(("ablations", "tables/ablations", "Ablation tables"))
    return out


def curve_figures(config: dict, groups: dict) -> list[tuple[str, str, list[str], str, str]]:
    """(figure, experiment group, its benchmarks (columns), title, report caption) of each curve
    figure: figures 2 and 3 over the main runs, figure 7a over the ablation group."""
    out = []
    for fig, kind in (("fig2_class_incremental", "class_incremental"), ("fig3_domain_incremental", "domain_incremental")):
        if figure_benchmarks(config, kind):
            out.append((fig, "main", figure_benchmarks(config, kind),
                        kind.replace("_", "-").capitalize() + " benchmarks", "curves.rst"))
    if "ablations" in groups:
        out.append(("fig7a_ablations", "ablations", list(config["ablations"]["benchmarks"]), "Ablations",
                    "ablations.rst"))
    return out


def figure_files(config: dict, name: str) -> list[str]:
    return [f"{config['results']}/figures/{name}.{ext}" for ext in ("pdf", "png")]


def figure_targets(config: dict, groups: dict) -> list[str]:
    out = figure_files(config, "fig1_toy")
    for fig, kind in (("fig2_class_incremental", "class_incremental"), ("fig3_domain_incremental", "domain_incremental")):
        if figure_benchmarks(config, kind):
            out += figure_files(config, fig)
    if gain_variants(config["methods"]):
        out += figure_files(config, "fig4_gain_readout")
    out += figure_files(config, "fig5_train_accuracy") + figure_files(config, "fig6_seen_tasks")
    if "ablations" in groups:
        out += figure_files(config, "fig7a_ablations")
    if "lr_sweep" in groups:
        out += figure_files(config, "fig7b_lr_sweep")
    return out


def paper_curve_benchmarks(config: dict) -> list[str]:
    """The benchmarks of the config whose curves the reproduction stage draws against the paper's:
    those the reference curves hold (reference/curves.yaml, or the config's reproduction.reference)."""
    from .reference import curve_benchmarks

    held = set(curve_benchmarks((config.get("reproduction") or {}).get("reference")))
    return [b for b in config["benchmarks"] if b in held]


# the figures of rule figure_from_runs: the experiment group each reads, and the files of each run
FIGURE_FILES = {
    "gain_readout": ("summary.json", "log.parquet"),
    "train_accuracy": ("summary.json", "log.parquet"),
    "seen_tasks": ("summary.json", "log.parquet"),
    "lr_sweep": ("summary.json", "metrics.json"),
}


def figure_runs(config: dict, groups: dict, name: str) -> list[str]:
    """Run folders a figure of rule figure_from_runs reads."""
    if name == "gain_readout":
        keep = set(gain_variants({v for _, v, _ in groups["main"]}))
        return [run_dir(config["results"], b, v, s) for b, v, s in groups["main"] if v in keep]
    return group_runs(config, groups, "lr_sweep" if name == "lr_sweep" else "main")
