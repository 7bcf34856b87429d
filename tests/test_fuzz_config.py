"""Fuzzed configs (hypothesis): every mutant of a valid config either passes the package's config
check, and then plans (runs, batches, targets, cost) without error, or stops with a ConfigError that
names a key; never a traceback from deep inside the code. A few hand-picked mutants also go through a
real `snakemake -n` (tests/test_reliability.py, tests/test_workflow.py)."""

import copy
import re

import pytest

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stabgap import planning
from stabgap.config import ConfigError, check_config, experiment_runs, run_config, validate_schema
from stabgap.cost import config_cost

BASES = [yaml.safe_load(open(path)) for path in ("configs/demo.yaml", "config.yaml")]
ODD_VALUES = [None, "x", "", -1, 0, 1.5, 10**9, -0.5, True, [], {}, [1, "a"], {"a": 1}, "ngm", "split_mnist", [[0, 1]]]


def paths(obj, prefix=()):
    """Every (path, value) in a nested config: dict keys and list items."""
    out = [(prefix, obj)]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out


def parent_of(config, path):
    node = config
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutants(draw):
    config = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p, _ in paths(config) if p]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = parent_of(config, path), path[-1]
        action = draw(st.sampled_from(["delete", "replace", "extra", "misspell", "empty"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(st.sampled_from(ODD_VALUES))
        elif action == "extra" and isinstance(parent[key], dict):
            parent[key]["zzz_" + draw(st.sampled_from(["lr", "seed", "classes"]))] = draw(st.sampled_from(ODD_VALUES))
        elif action == "misspell" and isinstance(parent, dict):
            parent[str(key) + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(key)
        elif action == "empty" and isinstance(parent[key], (list, dict)):
            parent[key] = type(parent[key])()
    return config


def plan(config):
    """What planning does with a config that passed the checks."""
    groups = experiment_runs(config)
    for runs in groups.values():
        for b, v, s in runs:
            run_config(config, b, v, s)
    planning.train_batches(config, groups)
    planning.table_targets(config, groups)
    planning.figure_targets(config, groups)
    config_cost(config, groups, run_config)


def passes_and_plans_or_names_a_key(config):
    try:
        validate_schema(config)
        check_config(config)
    except ConfigError as err:
        msg = str(err)
        # "invalid config:\n  benchmarks.split_mnist.eta: ..." or "methods.ngm.gamma: ..." or "plugins: ..."
        assert re.search(r"(^|\n\s*)[\w@.\-]+( \(top level\))?: |\(top level\): ", msg), msg
        return
    plan(config)


# derandomize: CI runs the same examples every time (a failure found at random once led here:
# iters_per_context 10**9 made the cost model list 10**9 iterations). The full budget in the whole
# suite, a tenth of it in the fast tier.
@pytest.mark.slow
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_a_mutant_passes_and_plans_or_stops_with_an_error_naming_a_key(config):
    passes_and_plans_or_names_a_key(config)


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_a_few_mutants_pass_and_plan_or_stop_with_an_error_naming_a_key(config):
    passes_and_plans_or_names_a_key(config)
