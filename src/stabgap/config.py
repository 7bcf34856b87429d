"""The workflow configuration: loading, validation and the resolved settings of one run.

The same functions serve the Snakefile (which validates before planning any job) and the
stand-alone `python -m stabgap run` command, so a config means the same thing in both.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # package data
DATA_ROOT_ENV = "STABGAP_DATA_ROOT"
PLUGINS_ENV = "STABGAP_PLUGINS"  # the config's plugins, comma-separated, for every job (common.smk)


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key, the value and what is allowed."""


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        config[key] = value
    validate_schema(config)
    check_config(config)
    return config


RENAMED_KEYS = {"reproducibility": "rerun_check"}  # old top-level key -> its name now


def validate_schema(config: dict, schema_path: Path = SCHEMA) -> None:
    """JSON-schema validation, with defaults filled in (as Snakemake's `validate` does). A key under
    its old name (RENAMED_KEYS) is moved to its new one, with a note."""
    import sys

    import jsonschema

    for old, new in RENAMED_KEYS.items():
        if old in config:
            if new in config:
                raise ConfigError(f"{old}: renamed to {new}, and both are given; keep {new} only")
            config[new] = config.pop(old)
            print(f"note: the config key {old} is now {new}; the old name still works and will be removed",
                  file=sys.stderr)

    schema = yaml.safe_load(schema_path.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):
        for prop, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(validator_cls, {"properties": set_defaults})
    errors = sorted(filling(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"  {where}: {e.message}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))


# the keys of a config's dataset entry that are not options of its builder
DATASET_KEYS = ("builder", "lookalike")


def dataset_options(entry: dict) -> dict:
    """The builder options of a config's dataset entry: every key but DATASET_KEYS (what the data
    job passes to the builder, and so what reruns it)."""
    return {k: v for k, v in entry.items() if k not in DATASET_KEYS}


def load_plugins(names) -> None:
    """Import the plugin modules a config names (each registers methods, benchmarks or datasets)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {name!r} ({err}); put the folder that holds it on "
                              f"PYTHONPATH, or remove it from plugins:") from None


def load_plugins_from_env() -> None:
    """In a job: import the plugins the workflow exported in $STABGAP_PLUGINS."""
    load_plugins([n for n in os.environ.get(PLUGINS_ENV, "").split(",") if n])


def check_stream(config: dict, name: str) -> None:
    """A benchmark's stream parameters, and the evaluation subset, against what its dataset holds
    (its registry entry): before any job, in a dry run too."""
    from .benchmarks import BENCHMARKS
    from .data import DATASETS, builder_options

    bench = config["benchmarks"][name]
    dataset = config["datasets"][bench["dataset"]]
    if dataset.get("builder") not in DATASETS:
        return  # an unknown builder is reported with its own message
    source = DATASETS[dataset["builder"]]
    for key, value, allowed in BENCHMARKS[name].stream_errors(bench.get("stream") or {}, source):
        raise ConfigError(f"benchmarks.{name}.stream.{key}: {value!r} is not allowed: {allowed} "
                          f"(fix the config; nothing was run)")
    # its tasks cut from labels in the dataset's layout: a task key that nothing reads, or contexts
    # that fail on these parameters, stop here rather than in the stream's job
    options = {k: v for k, v in dataset_options(dataset).items() if k in builder_options(dataset["builder"])}
    try:
        sizes = BENCHMARKS[name].stream_test_sizes(bench.get("stream"), source, options)
    except ValueError as err:
        raise ConfigError(f"benchmarks.{name}: {err} (fix the benchmark's entry or its stream parameters; "
                          f"nothing was run)") from None
    subset = config.get("evaluation", {}).get("subset")
    if subset:
        if subset > min(sizes):
            raise ConfigError(f"evaluation.subset: {subset} test images per task, but {name}'s smallest task has "
                              f"{min(sizes)} (its tasks: {sizes}); choose at most {min(sizes)} or null "
                              f"(fix the config; nothing was run)")


def check_config(config: dict) -> None:
    """What a schema cannot say: names must exist in the registries, references must resolve."""
    load_plugins(config.get("plugins", []))
    from .data import DATASETS, builder_options
    from .methods import resolve_method
    from .benchmarks import BENCHMARKS

    for name, bench in config["benchmarks"].items():
        if name not in BENCHMARKS:
            raise ConfigError(f"benchmarks.{name}: unknown benchmark; known: {', '.join(BENCHMARKS)}")
        if bench.get("test_augment") and BENCHMARKS[name].augment is None:
            raise ConfigError(f"benchmarks.{name}.test_augment: true, but {name} has no training augmentation "
                              f"to apply to test images (only the CIFAR benchmarks have one)")
        if bench["dataset"] not in config["datasets"]:
            raise ConfigError(f"benchmarks.{name}.dataset: {bench['dataset']!r} is not defined under "
                              f"datasets: (defined: {', '.join(config['datasets'])})")
        builder = config["datasets"][bench["dataset"]].get("builder")
        if BENCHMARKS[name].data and builder not in BENCHMARKS[name].data:
            raise ConfigError(f"benchmarks.{name}.dataset: {bench['dataset']!r} is built by {builder!r}, but {name} "
                              f"is cut from {' or '.join(BENCHMARKS[name].data)} data")
        check_stream(config, name)
    for name, ds in config["datasets"].items():
        if ds["builder"] not in DATASETS:
            raise ConfigError(f"datasets.{name}.builder: unknown builder {ds['builder']!r}; "
                              f"known: {', '.join(DATASETS)}")
        accepted = builder_options(ds["builder"])
        for key in dataset_options(ds):
            if key not in accepted:
                raise ConfigError(f"datasets.{name}.{key}: not an option of the {ds['builder']!r} builder; "
                                  f"it accepts: {', '.join(accepted) or '(none)'}")
    abl = config.get("ablations") or {}
    sections = [("methods", config["methods"]), ("ablations.methods", abl.get("methods", {}))]
    for where, methods in sections:
        for name, settings in methods.items():
            try:
                resolve_method(name, settings)
            except ValueError as err:
                raise ConfigError(f"{where}.{name}: {err}") from None
    for name in set(config["methods"]) & set(abl.get("methods", {})):
        raise ConfigError(f"ablations.methods.{name}: already under methods: (define a method's settings once)")
    for where, group in (("ablations", abl), ("lr_sweep", config.get("lr_sweep") or {})):
        for b in group.get("benchmarks", []):
            if b not in config["benchmarks"]:
                raise ConfigError(f"{where}.benchmarks: {b!r} is not under benchmarks: "
                                  f"({', '.join(config['benchmarks'])})")
        for m in list(group.get("compare_with", [])) + list(group.get("methods", [])) * (where == "lr_sweep"):
            if m not in config["methods"]:
                raise ConfigError(f"{where}: method {m!r} is not under methods: ({', '.join(config['methods'])})")


    from .cost import machines

    check_memory(config)
    check_results_folder(config)
    from .archs import ARCHS

    for name, m in (config["cost"].get("machines") or {}).items():
        for key, per_network in m.items():
            for net in per_network if isinstance(per_network, dict) else []:
                if net not in ARCHS:
                    raise ConfigError(f"cost.machines.{name}.{key}.{net}: unknown network; known: {', '.join(ARCHS)}")
    for name, bench in BENCHMARKS.items():
        if bench.net not in ARCHS:
            raise ConfigError(f"benchmark {name!r} is registered with network {bench.net!r}, which is not registered; "
                              f"known networks: {', '.join(ARCHS)}")
    known = machines(config)
    if config["cost"]["runtime_machine"] not in known:
        raise ConfigError(f"cost.runtime_machine: {config['cost']['runtime_machine']!r} is not a machine of the cost "
                          f"model; known: {', '.join(known)} (add it under cost.machines)")
    for name, m in known.items():
        for key in ("rate_gflops", "per_iteration_s", "per_evaluation_s"):
            for net in sorted({b.net for b in BENCHMARKS.values()} - set(m.get(key, {}))):
                raise ConfigError(f"cost.machines.{name}.{key}: no value for network {net!r}")
        for key in ("rate_gflops", "eval_rate_gflops"):
            if not all(v > 0 for v in m.get(key, {}).values()):
                raise ConfigError(f"cost.machines.{name}.{key}: every rate must be > 0, got {m[key]}")


def train_mem_mb(config: dict, benchmark: str) -> int:
    """The host memory of a benchmark's training jobs: its own `mem_mb`, else compute.train_mem_mb."""
    return config["benchmarks"][benchmark].get("mem_mb", config["compute"]["train_mem_mb"])


def check_memory(config: dict) -> None:
    """A batch that cannot fit its training job's memory is refused before any job, with the number
    it would need (cost.job_memory_mb: activations of the batch, all runs of a batch job). Only for
    jobs on the CPU: a job that asks for a GPU holds its batches in the GPU's memory, which the
    config does not state (its `mem_mb` is the host's)."""
    from .archs import ARCHS
    from .benchmarks import BENCHMARKS
    from .cost import dataset_facts, job_memory_mb

    for name, bench in config["benchmarks"].items():
        if name not in BENCHMARKS or bench["dataset"] not in config["datasets"]:
            continue  # reported with their own messages
        if ARCHS.get(BENCHMARKS[name].net).wants_gpu and config["compute"]["device"] != "cpu":
            continue  # on a GPU (planning.uses_gpu)
        method = next(iter(config["methods"]))
        run = run_config(config, name, method, config["seeds"][0])
        image, _ = dataset_facts(config["datasets"][bench["dataset"]])
        n_runs = config["compute"]["batch_runs"] if BENCHMARKS[name].batchable else 1
        need = job_memory_mb(run, image, max(1, n_runs))
        have = train_mem_mb(config, name)
        where = f"benchmarks.{name}.mem_mb" if "mem_mb" in bench else "compute.train_mem_mb"
        for part, key in (("train", f"benchmarks.{name}.batch_size"), ("evaluation", "evaluation.batch_size")):
            if need[part] > have:
                value = run["batch_size"] if part == "train" else run["eval_batch_size"]
                raise ConfigError(f"{key}: {value} images need about {need[part]:,.0f} MB in a training job of {name} "
                                  f"({part} batch, {max(1, n_runs)} run(s) per job), more than its memory, "
                                  f"{have} MB ({where}); lower the batch or raise the memory (nothing was run)")


def check_results_folder(config: dict) -> None:
    """`results` (and `data_root`) must be folders, or not exist yet."""
    for key in ("results", "data_root"):
        path = Path(config[key]) if config.get(key) else None
        if path is not None and path.exists() and not path.is_dir():
            raise ConfigError(f"{key}: {config[key]!r} is a file; {key} must be a folder (it receives this config's "
                              f"{'outputs' if key == 'results' else 'raw data'}); choose another path (nothing was run)")


def missing_raw_data(config: dict, results: str, names=None) -> list[str]:
    """For each dataset (of `names`, default all) whose canonical file is not built yet and whose
    raw files cannot be downloaded: what is missing, and where to put it."""
    from .data import missing_raw_files

    out = []
    for name, ds in config["datasets"].items():
        if names is not None and name not in names:
            continue
        if (Path(results) / "data" / f"{name}.pt").exists():
            continue
        source_dir = Path(data_root(config)) / name
        options = dataset_options(ds)
        for item in missing_raw_files(ds["builder"], source_dir, **options):
            out.append(f"datasets.{name}: {item}")
    return out


def data_root(config: dict) -> str:
    """Where raw dataset files live: $STABGAP_DATA_ROOT, else the config's `data_root`."""
    return os.environ.get(DATA_ROOT_ENV) or config["data_root"]


# ---------------------------------------------------------------- experiment groups and run variants
# A run is (benchmark, variant, seed). A variant is a method's name, optionally followed by settings
# that override the config's, e.g. "ngm@lr=0.1,test_augment=false" (the learning-rate sweep): the
# folder name alone says what was run.

RUN_OVERRIDES = ("test_augment",)  # run settings a variant may override besides the method's


def method_settings(config: dict, method: str) -> dict:
    """A method's settings: from `methods:` (the main experiment) or `ablations.methods:`."""
    if method in config["methods"]:
        return dict(config["methods"][method] or {})
    return dict((config.get("ablations") or {}).get("methods", {}).get(method) or {})


def make_variant(method: str, overrides: dict | None = None) -> str:
    if not overrides:
        return method
    return method + "@" + ",".join(f"{k}={json.dumps(overrides[k])}" for k in sorted(overrides))


def parse_variant(variant: str) -> tuple[str, dict]:
    method, _, rest = variant.partition("@")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    return method, overrides


def experiment_runs(config: dict) -> dict[str, list[tuple[str, str, int]]]:
    """(benchmark, variant, seed) of each experiment group: "main" (every benchmark × `methods` ×
    `seeds`), "ablations" (its benchmarks × its methods and the main methods it compares with) and
    "lr_sweep" (its benchmarks × methods × learning rates); a group may have its own `seeds`.
    Runs shared between groups are one run."""
    seeds = [int(s) for s in config["seeds"]]
    groups = {"main": [(b, m, s) for b in config["benchmarks"] for m in config["methods"] for s in seeds]}
    abl = config.get("ablations")
    if abl:
        methods = list(abl["compare_with"]) + list(abl["methods"])
        groups["ablations"] = [(b, m, s) for b in abl["benchmarks"] for m in methods for s in abl.get("seeds", seeds)]
    sweep = config.get("lr_sweep")
    if sweep:
        extra = {k: sweep[k] for k in RUN_OVERRIDES if k in sweep}
        groups["lr_sweep"] = [(b, make_variant(m, {"lr": lr, **extra}), s)
                              for b in sweep["benchmarks"] for m in sweep["methods"] for lr in sweep["lr"]
                              for s in sweep.get("seeds", seeds)]
    return groups


def run_config(config: dict, benchmark: str, variant: str, seed: int) -> dict:
    """Everything that determines one run's results, and nothing else (a change reruns the job).
    The method's settings are resolved: its registry entry's defaults under the config's values and
    the variant's overrides, every setting named (methods.SETTING_FIELDS), so that a changed default
    changes the run's settings and hash as a changed config value does. (The stream's parameters,
    resolved likewise, are the stream rule's: a changed stream reruns its runs through their input.)"""
    from .archs import get_arch
    from .benchmarks import get_benchmark
    from .methods import resolve_method

    method, overrides = parse_variant(variant)
    bench = config["benchmarks"][benchmark]
    ev = config["evaluation"]
    given = method_settings(config, method)
    given.update({k: v for k, v in overrides.items() if k not in RUN_OVERRIDES})
    settings = resolve_method(method, given).settings()
    run = {
        "benchmark": benchmark,
        "method": method,
        "variant": variant,
        "seed": int(seed),
        "method_settings": settings,
        "iters_per_context": bench["iters_per_context"],
        "batch_size": bench["batch_size"],
        "eta": bench["eta"],
        "eval_every": ev["every"],
        "eval_dense_after_switch": ev["dense_after_switch"],
        "eval_scope": ev["scope"],
        "eval_subset": ev["subset"],
        # the network's measured evaluation batch (archs.py), unless the config sets one
        "eval_batch_size": ev["batch_size"] or get_arch(get_benchmark(benchmark).net).eval_batch_size,
        "test_augment": bench["test_augment"],
        "eval_bf16": ev["bf16"],
        "precision": config["compute"]["precision"],
        "device": config["compute"]["device"],
        "threads": config["compute"]["threads"],
    }
    for key, value in overrides.items():
        if key in RUN_OVERRIDES:
            run[key] = value
    return run


def stream_config(config: dict, benchmark: str) -> dict:
    """A benchmark's stream parameters as its stream is built from them: the registry entry's defaults
    under the config's values (the stream rule's params, so that a changed default rebuilds the stream
    and reruns its runs)."""
    from .benchmarks import get_benchmark

    return get_benchmark(benchmark).stream_params(config["benchmarks"][benchmark].get("stream"))


BATCH_FREE = ("method", "variant", "seed", "method_settings")  # what may differ between runs of one batch


def batch_key(run: dict) -> dict:
    """What runs trained together as one batch of models (multi-run batching) must share."""
    return {k: v for k, v in run.items() if k not in BATCH_FREE}


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
