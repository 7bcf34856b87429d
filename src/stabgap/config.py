"""The workflow configuration: loading, validation and the resolved settings of one run.

The same functions serve the Snakefile (which validates before planning any job) and the
stand-alone `python -m stabgap run` command, so a config means the same thing in both.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
DATA_ROOT_ENV = "STABGAP_DATA_ROOT"


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


def validate_schema(config: dict, schema_path: Path = SCHEMA) -> None:
    """JSON-schema validation, with defaults filled in (as Snakemake's `validate` does)."""
    import jsonschema

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


def check_config(config: dict) -> None:
    """What a schema cannot say: names must exist in the registries, references must resolve."""
    from .datasets import DATASETS
    from .methods import resolve_method
    from .streams import BENCHMARKS

    for name, bench in config["benchmarks"].items():
        if name not in BENCHMARKS:
            raise ConfigError(f"benchmarks.{name}: unknown benchmark; known: {', '.join(BENCHMARKS)}")
        if bench.get("test_augment") and BENCHMARKS[name].augment is None:
            raise ConfigError(f"benchmarks.{name}.test_augment: true, but {name} has no training augmentation "
                              f"to apply to test images (only the CIFAR benchmarks have one)")
        if bench["dataset"] not in config["datasets"]:
            raise ConfigError(f"benchmarks.{name}.dataset: {bench['dataset']!r} is not defined under "
                              f"datasets: (defined: {', '.join(config['datasets'])})")
    for name, ds in config["datasets"].items():
        if ds["builder"] not in DATASETS:
            raise ConfigError(f"datasets.{name}.builder: unknown builder {ds['builder']!r}; "
                              f"known: {', '.join(DATASETS)}")
        accepted = [p for p in inspect.signature(DATASETS[ds["builder"]]).parameters if p != "source_dir"]
        for key in ds:
            if key != "builder" and key not in accepted:
                raise ConfigError(f"datasets.{name}.{key}: not an option of the {ds['builder']!r} builder; "
                                  f"it accepts: {', '.join(accepted) or '(none)'}")
    for name, settings in config["methods"].items():
        try:
            resolve_method(name, settings)
        except ValueError as err:
            raise ConfigError(f"methods.{name}: {err}") from None


def data_root(config: dict) -> str:
    """Where raw dataset files live: $STABGAP_DATA_ROOT, else the config's `data_root`."""
    return os.environ.get(DATA_ROOT_ENV) or config["data_root"]


def run_config(config: dict, benchmark: str, method: str, seed: int) -> dict:
    """Everything that determines one run's results, and nothing else (a change reruns the job)."""
    bench = config["benchmarks"][benchmark]
    ev = config["evaluation"]
    return {
        "benchmark": benchmark,
        "method": method,
        "seed": int(seed),
        "method_settings": dict(config["methods"][method] or {}),
        "iters_per_context": bench["iters_per_context"],
        "batch_size": bench["batch_size"],
        "eta": bench["eta"],
        "eval_every": ev["every"],
        "eval_subset": ev["subset"],
        "eval_batch_size": ev["batch_size"],
        "test_augment": bench["test_augment"],
        "device": config["compute"]["device"],
        "threads": config["compute"]["threads"],
    }


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
