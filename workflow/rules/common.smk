# Helpers shared by the rules: config validation, then thin wrappers around stabgap.planning (the
# planning logic, unit-tested in tests/test_planning.py). Nothing here imports torch.
import json
import re
import shlex
import sys
from pathlib import Path

from stabgap import planning
from stabgap.config import (
    PLUGINS_ENV,
    ConfigError,
    check_config,
    config_hash,
    data_root,
    dataset_options,
    experiment_runs,
    missing_raw_data,
    run_config,
    stream_config,
    train_mem_mb,
    validate_schema,
)
from snakemake.io import report as report_item
from stabgap.cost import job_seconds, runtime_minutes, write_cost

try:
    validate_schema(config)
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"{err}\n(fix the config file and rerun; nothing was run)")

RESULTS = config["results"]

# What every job shares, set once: the conda environment (--sdm conda) and each rule's resources
# (the training rules compute theirs: train_mem, train_runtime, batch_resource).
ENV = "../../envs/stabgap.yaml"
RESOURCES = {
    "data": {"mem_mb": 4000, "runtime": 60},
    "stream": {"mem_mb": 4000, "runtime": 30},
    "metrics": {"mem_mb": 1000, "runtime": 10},
    "tables": {"mem_mb": 2000, "runtime": 10},
    "table_lr_sweep": {"mem_mb": 2000, "runtime": 10},
    "figure_toy": {"mem_mb": 1000, "runtime": 10},
    "figure_curves": {"mem_mb": 2000, "runtime": 10},
    "figure_from_runs": {"mem_mb": 4000, "runtime": 20},
    "reproduction": {"mem_mb": 2000, "runtime": 30},
    "cost": {"mem_mb": 500, "runtime": 5},
}

BENCHMARKS = list(config["benchmarks"])
DATASETS = sorted({b["dataset"] for b in config["benchmarks"].values()})
# experiment group -> (benchmark, variant, seed); a run shared by groups is one job
GROUPS = experiment_runs(config)
VARIANTS = sorted({v for runs in GROUPS.values() for _, v, _ in runs})
TABLE_FILES = planning.TABLE_FILES
# (group, folder, report category) of each group with Tables 1 and 2
TABLE_GROUPS = planning.table_groups(GROUPS)
# (figure, group, benchmarks, title, caption) of each curve figure
CURVE_FIGURES = planning.curve_figures(config, GROUPS)


def table_layout_flag(group):
    """The tables command's layout option: " --v1-layout" for the main tables under tables.v1_layout,
    a space otherwise (the command as it always was), none for the other groups."""
    if group != "main":
        return ""
    return " --v1-layout" if config["tables"]["v1_layout"] else " "


# Rules call the package from this checkout, also inside conda environments (--sdm conda), find
# the raw data under the resolved data_root, and import the config's plugins.
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={Path(workflow.basedir) / 'src'}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f"export STABGAP_DATA_ROOT={Path(data_root(config)).resolve()}; "
    f"export {PLUGINS_ENV}={shlex.quote(','.join(config['plugins']))}; "
    f"export STABGAP_CHECKPOINT_EVERY={config['compute']['checkpoint_every']}; "
    f"export STABGAP_KEEP_CHECKPOINTS={int(config['compute']['keep_checkpoints'])}; "
)


wildcard_constraints:
    dataset="|".join(DATASETS),
    benchmark="|".join(BENCHMARKS),
    variant="|".join(re.escape(v) for v in VARIANTS),
    seed=r"\d+",


def run_dir(benchmark, variant, seed):
    return planning.run_dir(RESULTS, benchmark, variant, seed)


def group_runs(group, benchmarks=None):
    """Run folders of an experiment group (optionally only some of its benchmarks)."""
    return planning.group_runs(config, GROUPS, group, benchmarks)


def files_of(run_dirs, names=("metrics.json", "summary.json", "log.parquet")):
    return [f"{d}/{n}" for d in run_dirs for n in names]


def raw_data_present(wildcards):
    """Input function of the data rule (evaluated while planning, only for datasets the targets
    need): raw files that cannot be downloaded must be there before any job starts. A dry run, which
    must plan the full config on machines without the data, only warns."""
    missing = missing_raw_data(config, RESULTS, [wildcards.dataset])
    if missing and not workflow.dryrun:
        raise WorkflowError(
            "raw data missing (nothing was run):\n  " + "\n  ".join(missing)
        )
    if missing and wildcards.dataset not in _DATA_NOTED:
        # once per dataset (planning asks more than once)
        _DATA_NOTED.append(wildcards.dataset)
        print(
            "warning: raw data missing; a run would stop here until it is staged "
            "(docs/configuration.md, Data):\n  " + "\n  ".join(missing),
            file=sys.stderr,
        )
    return []


_DATA_NOTED = []


_CUDA_NOTED = []


def cuda_present(wildcards):
    """Input function of the training rules (evaluated while planning, when Snakemake knows where the
    jobs will run): compute.device asks for CUDA and this machine shows none. A local run stops here,
    before any job; a dry run and a cluster submission (from a login node, the jobs run elsewhere)
    only say so, once."""
    problem = planning.missing_cuda(config)
    if problem:
        remote = workflow.executor_plugin.common_settings.non_local_exec
        if not (workflow.dryrun or remote):
            raise WorkflowError(problem + " (nothing was run)")
        if not _CUDA_NOTED:
            _CUDA_NOTED.append(True)
            where = (
                "the cluster's nodes must have one"
                if remote
                else "a run on this machine would stop here"
            )
            print(f"warning: {problem}; {where}", file=sys.stderr)
    return []


def stream_params(wildcards):
    return json.dumps(stream_config(config, wildcards.benchmark), sort_keys=True)


def builder_options(wildcards):
    """The data rule's options: the builder's (not `lookalike`, which changes no file)."""
    return json.dumps(
        dataset_options(config["datasets"][wildcards.dataset]), sort_keys=True
    )


def run_params(wildcards):
    run = run_config(
        config, wildcards.benchmark, wildcards.variant, int(wildcards.seed)
    )
    return json.dumps(run, sort_keys=True)


def train_mem(wildcards):
    return train_mem_mb(config, wildcards.benchmark)


def train_runtime(wildcards):
    """Minutes for one run's training job: the cost model's prediction (stabgap.cost) on
    cost.runtime_machine, times cost.safety_factor."""
    return runtime_minutes(
        config,
        run_config(config, wildcards.benchmark, wildcards.variant, int(wildcards.seed)),
    )


BATCHES = planning.train_batches(config, GROUPS)
# benchmarks whose runs the batches train; the others keep one training job per run
BATCHED_BENCHMARKS = sorted({b for b, _, _ in BATCHES})
UNBATCHED_BENCHMARKS = [b for b in BENCHMARKS if b not in BATCHED_BENCHMARKS]


def train_priority(bench, variant, seed, n_runs=1):
    """Longest first: a training job's priority is its predicted seconds (stabgap.cost), so that
    on a few cores the long jobs start early and the short ones fill in around them (unordered,
    the demo's longest batches started last and the last one ran alone)."""
    return int(job_seconds(config, run_config(config, bench, variant, seed), n_runs))


# data and streams before any training job: every training job waits on them, they take seconds
UPSTREAM_PRIORITY = 1 + max(
    [train_priority(b, *members[0], len(members)) for b, _, members in BATCHES]
    + [
        train_priority(b, v, s)
        for b, v, s in {r for runs in GROUPS.values() for r in runs}
        if b in UNBATCHED_BENCHMARKS
    ]
)


def batch_args(bench, members):
    """The `python -m stabgap train` arguments of a batch: --run and --out-dir per run."""
    return " ".join(
        f"--run {shlex.quote(json.dumps(run_config(config, bench, v, s), sort_keys=True))}"
        f" --out-dir {shlex.quote(run_dir(bench, v, s))}"
        for v, s in members
    )


def retry_mem(base, attempt):
    """A retried training job (--retries) asks for 50% more memory per attempt ..."""
    return base * (1 + attempt) // 2


def retry_runtime(base, attempt):
    """... and twice the time."""
    return base * 2 ** (attempt - 1)


def batch_resource(bench, key, members):
    """A batch job's memory (one run's) and runtime (the cost model's for its runs one after
    another: on a GPU a batch takes less), both growing with retries like the per-run rule.
    """
    if key == "mem_mb":
        base = train_mem_mb(config, bench)
        return lambda wildcards, attempt: retry_mem(base, attempt)
    v, s = members[0]
    base = runtime_minutes(config, run_config(config, bench, v, s), len(members))
    return lambda wildcards, attempt: retry_runtime(base, attempt)


def train_group(wildcards):
    return planning.job_group(
        wildcards.benchmark, f"{wildcards.variant}_{wildcards.seed}"
    )


def batch_group(bench, index):
    return planning.job_group(bench, f"batch{index}")


def uses_gpu_bench(bench):
    return planning.uses_gpu(config, bench)


def uses_gpu(wildcards):
    return uses_gpu_bench(wildcards.benchmark)


def rerun_runtime():
    """The re-run check retrains `sample` runs: the longest main run's time each."""
    longest = max(
        runtime_minutes(config, run_config(config, b, v, s))
        for b, v, s in GROUPS["main"]
    )
    return longest * config["rerun_check"]["sample"]


def sweep_files(wildcards):
    """Input function of table_lr_sweep: the sweep's runs; a config without an lr_sweep stops at
    plan time, saying so (the target would otherwise plan a table of no runs, which fails).
    """
    if "lr_sweep" not in GROUPS:
        raise WorkflowError(
            "table_lr_sweep: this config has no lr_sweep section, so there is no sweep to tabulate; "
            "add one (docs/configuration.md) or leave the target out (nothing was run)"
        )
    return files_of(group_runs("lr_sweep"), names=("metrics.json", "summary.json"))


def figure_benchmarks(kind):
    return planning.figure_benchmarks(config, kind)


def all_tables():
    return planning.table_targets(config, GROUPS)


def table_outputs(folder, category):
    """The table files of one group; the HTML versions go into the report."""
    return [
        (
            report_item(
                f"{folder}/{n}", caption="../report/tables.rst", category=category
            )
            if n.endswith(".html")
            else f"{folder}/{n}"
        )
        for n in TABLE_FILES
    ]


def all_figures():
    return planning.figure_targets(config, GROUPS)


# Runs (and the files of each) that the figures of rule figure_from_runs read.
def figure_runs(name):
    return planning.figure_runs(config, GROUPS, name)


FIGURE_FILES = planning.FIGURE_FILES
