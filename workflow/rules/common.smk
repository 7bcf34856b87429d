# Helpers shared by the rules: config validation, paths, target lists, input functions.
import json
from pathlib import Path

from stabgap.config import (
    ConfigError,
    check_config,
    data_root,
    run_config,
    validate_schema,
)
from stabgap.streams import get_benchmark

try:
    validate_schema(
        config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    )
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"{err}\n(fix the config file and rerun; nothing was run)")

RESULTS = config["results"]
BENCHMARKS = list(config["benchmarks"])
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]
DATASETS = sorted({b["dataset"] for b in config["benchmarks"].values()})
TABLE_FILES = [
    f"table{n}_{family}.{ext}"
    for n in (1, 2)
    for family in ("task1_v1", "task1", "seen")
    for ext in ("csv", "md", "tex")
]

# Rules call the package from this checkout, also inside conda environments (--sdm conda), and
# find the raw data under the resolved data_root.
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={Path(workflow.basedir) / 'src'}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f"export STABGAP_DATA_ROOT={Path(data_root(config)).resolve()}; "
)


wildcard_constraints:
    dataset="|".join(DATASETS),
    benchmark="|".join(BENCHMARKS),
    method="|".join(METHODS),
    seed=r"\d+",


def run_dir(benchmark, method, seed):
    return f"{RESULTS}/runs/{benchmark}/{method}/seed{seed}"


def runs_of(benchmarks):
    return [run_dir(b, m, s) for b in benchmarks for m in METHODS for s in SEEDS]


def run_files(benchmarks, names=("metrics.json", "summary.json", "log.parquet")):
    return [f"{d}/{n}" for d in runs_of(benchmarks) for n in names]


def stream_params(wildcards):
    return json.dumps(
        config["benchmarks"][wildcards.benchmark]["stream"], sort_keys=True
    )


def dataset_options(wildcards):
    ds = {
        k: v for k, v in config["datasets"][wildcards.dataset].items() if k != "builder"
    }
    return json.dumps(ds, sort_keys=True)


def run_params(wildcards):
    run = run_config(config, wildcards.benchmark, wildcards.method, int(wildcards.seed))
    return json.dumps(run, sort_keys=True)


def train_resource(wildcards, key, default_key):
    """A benchmark's own setting for its training jobs, else the compute default."""
    return config["benchmarks"][wildcards.benchmark].get(
        key, config["compute"][default_key]
    )


def uses_gpu(wildcards):
    """ResNet runs ask the scheduler for a GPU unless the config pins the CPU; MLP runs never do."""
    net = get_benchmark(wildcards.benchmark).net
    return int(net != "mlp" and config["compute"]["device"] != "cpu")


def figure_benchmarks(kind):
    return [b for b in config["figures"][kind] if b in BENCHMARKS]


def all_tables():
    return [f"{RESULTS}/tables/{name}" for name in TABLE_FILES]


def all_figures():
    out = []
    for fig, kind in (
        ("fig2_class_incremental", "class_incremental"),
        ("fig3_domain_incremental", "domain_incremental"),
    ):
        if figure_benchmarks(kind):
            out += [f"{RESULTS}/figures/{fig}.{ext}" for ext in ("pdf", "png")]
    return out
