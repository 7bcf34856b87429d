"""Planning (planning.py): which runs share a training job, job groups, target lists, the runs
each figure reads; all from the config, without torch."""

import subprocess
import sys

from stabgap.config import experiment_runs, run_config, validate_schema
from stabgap import planning
from stabgap.benchmarks import BENCHMARKS
from stabgap.planning import train_batches


def config(batch_runs, **extra):
    cfg = {
        "results": "results",
        "datasets": {"mnist5k": {"builder": "mnist5k"}, "cifar10": {"builder": "cifar10"}},
        "benchmarks": {
            "split_mnist": {"dataset": "mnist5k", "iters_per_context": 5, "batch_size": 8, "eta": 0.4, "stream": {}},
            "split_cifar10": {"dataset": "cifar10", "iters_per_context": 5, "batch_size": 8, "eta": 0.2,
                              "stream": {}, "test_augment": True},
        },
        "methods": {"sgd": {"lr": 0.01}, "ngm": {"lr": 0.01}},
        "seeds": [1, 2, 3],
        "compute": {"batch_runs": batch_runs},
        **extra,
    }
    validate_schema(cfg)
    return cfg


def test_no_batches_when_batching_is_off():
    cfg = config(1)
    assert train_batches(cfg, experiment_runs(cfg)) == []


def test_a_batch_holds_the_seeds_of_one_variant():
    cfg = config(4)
    batches = train_batches(cfg, experiment_runs(cfg))
    assert batches == [
        ("split_mnist", 0, [("ngm", 1), ("ngm", 2), ("ngm", 3)]),
        ("split_mnist", 1, [("sgd", 1), ("sgd", 2), ("sgd", 3)]),
        ("split_cifar10", 0, [("ngm", 1), ("ngm", 2), ("ngm", 3)]),
        ("split_cifar10", 1, [("sgd", 1), ("sgd", 2), ("sgd", 3)]),
    ]
    two = train_batches(config(2), experiment_runs(cfg))  # more seeds than a batch takes: cut in order
    assert [m for b, _, m in two if b == "split_mnist"] == [[("ngm", 1), ("ngm", 2)], [("ngm", 3)],
                                                            [("sgd", 1), ("sgd", 2)], [("sgd", 3)]]


def test_a_change_to_one_method_retrains_that_methods_batches_only():
    import copy

    cfg = config(6)
    before = {(b, tuple(m)): [run_config(cfg, b, v, s) for v, s in m] for b, _, m in train_batches(cfg, experiment_runs(cfg))}
    changed = copy.deepcopy(cfg)
    changed["methods"]["ngm"]["lr"] = 0.02
    after = {(b, tuple(m)): [run_config(changed, b, v, s) for v, s in m]
             for b, _, m in train_batches(changed, experiment_runs(changed))}
    assert set(after) == set(before)  # the same batches
    differ = [key for key in after if after[key] != before[key]]
    assert differ and all(v == "ngm" for _, members in differ for v, _ in members)


def test_runs_with_other_run_settings_never_share_a_batch():
    # the sweep evaluates without test augmentation: its runs batch apart from the main runs
    cfg = config(10, lr_sweep={"benchmarks": ["split_cifar10"], "methods": ["sgd"], "lr": [0.1, 0.01],
                               "test_augment": False, "seeds": [1]})
    batches = [b for b in train_batches(cfg, experiment_runs(cfg)) if b[0] == "split_cifar10"]
    assert len(batches) == 4
    for _, _, members in batches:
        keys = {run_config(cfg, "split_cifar10", v, s)["test_augment"] for v, s in members}
        assert len(keys) == 1
    assert sorted(len(m) for _, _, m in batches) == [1, 1, 3, 3]  # one batch per variant


def test_a_run_shared_by_groups_is_planned_once():
    cfg = config(10, ablations={"benchmarks": ["split_mnist"], "compare_with": ["ngm"], "methods": {"adam": {}}})
    batches = train_batches(cfg, experiment_runs(cfg))
    members = [r for b, _, m in batches if b == "split_mnist" for r in m]
    assert len(members) == len(set(members)) == 9  # 6 main + 3 adam; the compared ngm runs once


def test_a_benchmark_that_cannot_batch_keeps_one_job_per_run(monkeypatch):
    import dataclasses

    monkeypatch.setitem(BENCHMARKS, "split_cifar10", dataclasses.replace(BENCHMARKS["split_cifar10"], batchable=False))
    cfg = config(4)
    assert {b for b, _, _ in train_batches(cfg, experiment_runs(cfg))} == {"split_mnist"}


def test_job_groups_and_gpu_requests_follow_the_network():
    cfg = config(1)
    assert planning.job_group("split_mnist", "ngm_1") == planning.job_group("split_mnist", "batch3") == "mlp_runs"
    assert planning.job_group("split_cifar10", "ngm_1") == "gpu_split_cifar10_ngm_1"
    assert planning.uses_gpu(cfg, "split_cifar10") == 1 and planning.uses_gpu(cfg, "split_mnist") == 0
    cfg["compute"]["device"] = "cpu"
    assert planning.uses_gpu(cfg, "split_cifar10") == 0


def test_targets_and_figure_runs_follow_the_config():
    cfg = config(1, figures={"class_incremental": ["split_mnist"], "domain_incremental": []})
    groups = experiment_runs(cfg)
    figures = planning.figure_targets(cfg, groups)
    assert "results/figures/fig2_class_incremental.pdf" in figures
    assert not any("fig3_" in f for f in figures)  # no domain-incremental benchmark asked for
    assert "results/figures/fig4_gain_readout.png" in figures and not any("fig7" in f for f in figures)
    # the gain readout reads the runs of the methods whose gain moves (NGM-SGD), nothing else
    assert planning.figure_runs(cfg, groups, "gain_readout") == [
        f"results/runs/{b}/ngm/seed{s}" for b in ("split_mnist", "split_cifar10") for s in (1, 2, 3)]
    assert len(planning.figure_runs(cfg, groups, "seen_tasks")) == 12
    tables = planning.table_targets(cfg, groups)
    assert len(tables) == 24 and "results/tables/table1_task1_v1.tex" in tables
    no_ngm = config(1, methods={"sgd": {}})
    assert not any("fig4" in f for f in planning.figure_targets(no_ngm, experiment_runs(no_ngm)))


def test_planning_imports_no_torch():
    code = ("import sys, stabgap.planning, stabgap.cost, stabgap.config, stabgap.data, stabgap.tables; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_benchmark_refuses_a_dataset_it_cannot_be_cut_from():
    import pytest

    from stabgap.config import ConfigError, check_config

    cfg = config(1)
    cfg["benchmarks"]["split_cifar10"]["dataset"] = "mnist5k"
    with pytest.raises(ConfigError, match=r"benchmarks.split_cifar10.dataset: 'mnist5k' is built by 'mnist5k', "
                                          r"but split_cifar10 is cut from cifar10 data"):
        check_config(cfg)


def test_run_config_carries_the_evaluation_schedule_and_the_networks_evaluation_batch():
    from stabgap.archs import get_arch
    from stabgap.config import config_hash

    cfg = config(1)
    run = run_config(cfg, "split_cifar10", "ngm", 1)
    assert run["eval_scope"] == "seen" and run["eval_dense_after_switch"] == 0
    assert run["eval_batch_size"] == get_arch("resnet18_slim").eval_batch_size  # evaluation.batch_size: null
    cfg["evaluation"].update(scope="task1", dense_after_switch=50, batch_size=64)
    other = run_config(cfg, "split_cifar10", "ngm", 1)
    assert (other["eval_scope"], other["eval_dense_after_switch"], other["eval_batch_size"]) == ("task1", 50, 64)
    assert config_hash(other) != config_hash(run)  # a change reruns the run


def test_gpu_requests_and_job_groups_come_from_the_network_registry():
    from stabgap.archs import get_arch

    cfg = config(1)
    assert not get_arch("mlp").wants_gpu and get_arch("resnet18_slim").wants_gpu
    assert planning.job_group("split_mnist", "ngm_1") == "mlp_runs"
    assert planning.job_group("split_cifar10", "ngm_1") == "gpu_split_cifar10_ngm_1"
    assert planning.uses_gpu(cfg, "split_mnist") == 0 and planning.uses_gpu(cfg, "split_cifar10") == 1
    cfg["compute"]["device"] = "cpu"
    assert planning.uses_gpu(cfg, "split_cifar10") == 0


def test_cost_machines_name_registered_networks_only():
    import pytest

    from stabgap.config import ConfigError, check_config

    cfg = config(1, cost={"machines": {"gpu": {"rate_gflops": {"resnet18": 100.0}}}})
    with pytest.raises(ConfigError, match=r"cost.machines.gpu.rate_gflops.resnet18: unknown network; known: mlp"):
        check_config(cfg)


def test_a_runs_settings_hold_its_method_resolved_and_its_hash_follows_a_registry_default():
    """run_config names every setting of the method: the config's values over the registry entry's
    defaults. A changed default changes the run's settings and hash; a config that names every value
    gets exactly the settings it names (so naming them all makes a default change rerun nothing)."""
    import dataclasses

    from stabgap.config import config_hash
    from stabgap.methods import METHODS, SETTING_FIELDS

    cfg = config(1)
    run = run_config(cfg, "split_mnist", "ngm", 1)
    assert set(run["method_settings"]) == set(SETTING_FIELDS)
    assert run["method_settings"]["gain"] == "entropy" and run["method_settings"]["gamma"] == 0.9  # registry
    assert run["method_settings"]["lr"] == 0.01  # the config's
    entry = METHODS["ngm"]
    try:
        METHODS["ngm"] = dataclasses.replace(entry, gamma=0.8)
        changed = run_config(cfg, "split_mnist", "ngm", 1)
        assert changed["method_settings"]["gamma"] == 0.8 and config_hash(changed) != config_hash(run)
        assert run_config(cfg, "split_mnist", "sgd", 1) == run_config(config(1), "split_mnist", "sgd", 1)
        cfg["methods"]["ngm"] = dict(run["method_settings"])  # every value named: the default no longer counts
        assert run_config(cfg, "split_mnist", "ngm", 1) == run
    finally:
        METHODS["ngm"] = entry


def test_a_variants_overrides_are_resolved_with_the_methods_settings():
    cfg = config(1)
    run = run_config(cfg, "split_cifar10", 'ngm@lr=0.1,test_augment=false', 1)
    assert run["method_settings"]["lr"] == 0.1 and run["test_augment"] is False
    assert "test_augment" not in run["method_settings"] and run["method_settings"]["gain"] == "entropy"


def test_the_stream_rule_gets_the_benchmarks_defaults_under_the_configs_values():
    from stabgap.config import stream_config

    cfg = config(1)
    assert stream_config(cfg, "split_mnist") == {"classes": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]}
    cfg["benchmarks"]["split_mnist"]["stream"] = {"classes": [[0, 1]]}
    assert stream_config(cfg, "split_mnist") == {"classes": [[0, 1]]}


def test_figures_default_to_the_configs_benchmarks_of_each_kind_plugins_included(tmp_path):
    """With no `figures:` (schema default null), figure 2 draws every class-incremental benchmark of
    the config and figure 3 every domain-incremental one, a plugin's included; a list chooses."""
    import dataclasses

    cfg = config(1)
    assert planning.figure_benchmarks(cfg, "class_incremental") == ["split_mnist", "split_cifar10"]
    assert planning.figure_benchmarks(cfg, "domain_incremental") == []
    BENCHMARKS["test_rotated_4"] = dataclasses.replace(BENCHMARKS["rotated_mnist"], name="test_rotated_4",
                                                       defaults={"angles": [0, 45, 90, 135]})
    try:
        cfg["benchmarks"]["test_rotated_4"] = {"dataset": "mnist5k", "iters_per_context": 5, "batch_size": 8,
                                               "eta": 0.5}
        assert planning.figure_benchmarks(cfg, "domain_incremental") == ["test_rotated_4"]
        cfg["figures"]["domain_incremental"] = []
        assert planning.figure_benchmarks(cfg, "domain_incremental") == []
    finally:
        del BENCHMARKS["test_rotated_4"]


def test_list_shows_every_registered_entry_and_the_configs_plugins(tmp_path):
    (tmp_path / "my_plugin.py").write_text(
        "from stabgap.methods import Method, register\n"
        "register(Method('sgd_quarter', 'SGD at a quarter of the lr', lr=0.0025, label='SGD/4'))\n")
    cfg = config(1, plugins=["my_plugin"])
    cfg["methods"]["sgd_quarter"] = {}
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "stabgap", "list", "--config", str(tmp_path / "c.yaml")],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "* sgd_quarter" in out and "[SGD/4] SGD at a quarter of the lr" in out and "lr=0.0025" in out
    assert "    gain_bump" in out  # registered, not used by the config: no mark
    for section in ("methods (", "benchmarks (", "networks (", "data sources"):
        assert section in out
    assert "* split_cifar10" in out and "* resnet18_slim" in out and "miniimagenet" in out
