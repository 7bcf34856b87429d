"""Reliability: resume after a kill, bad input, corrupted files, divergence (issue: reliability)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from stabgap.config import ConfigError, load_config, run_config
from stabgap.data import DataError, build_canonical
from stabgap.data.canonical import load_canonical
from stabgap.streams import build_stream_file, load_stream
from stabgap.trainer import RunSettings, Trainer, make_trainer, train

DEMO = "configs/demo.yaml"


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    build_canonical("mnist5k", d / "mnist5k.pt")
    build_stream_file("split_mnist", d / "mnist5k.pt", d / "split.pt", {"classes": [[0, 1], [2, 3], [4, 5]]})
    return d / "split.pt"


def run_for(method, iters=150, **extra):
    config = load_config(DEMO)
    run = run_config(config, "split_mnist", method, 42)
    run.update(iters_per_context=iters, **extra)
    return run


def train_cmd(run, stream, out, *extra):
    return [sys.executable, "-m", "stabgap", "train", "--run", json.dumps(run), "--stream", str(stream),
            "--out-dir", str(out), *extra]


@pytest.mark.slow
def test_killed_training_resumes_to_a_byte_identical_log(stream_file, tmp_path):
    run = run_for("ngm", iters=300)
    reference = subprocess.run(train_cmd(run, stream_file, tmp_path / "ref"), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr

    ckpt = tmp_path / "ckpt" / "run.pt"
    cmd = train_cmd(run, stream_file, tmp_path / "resumed", "--checkpoint", str(ckpt), "--checkpoint-every", "40")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint was written"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)  # a real kill of a real process, mid-run
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "resumed" / "log.parquet").exists()
    assert ckpt.exists()

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resumed from checkpoint" in again.stderr
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["resumed_from"] >= 40 and summary["resumed_from"] % 40 == 0
    assert (tmp_path / "resumed" / "log.parquet").read_bytes() == (tmp_path / "ref" / "log.parquet").read_bytes()
    assert not ckpt.exists()  # removed once the run is finished


@pytest.mark.parametrize("method", ["adam_reset", "entropy_lr", "msgd"])
def test_state_dict_round_trip_continues_exactly(stream_file, method):
    """Optimizer moments, the lr multiplier and the sampler position survive a checkpoint."""
    torch.set_num_threads(1)
    stream = load_stream(stream_file)
    settings = RunSettings(iters_per_context=30, batch_size=32, eta=0.4)
    ref = make_trainer(stream, method, None, settings, 7, "cpu")
    train(ref, progress=None)
    first = make_trainer(stream, method, None, settings, 7, "cpu")
    while first.iteration < 45:  # mid-context 2, after an oracle reset
        first.step()
    state = first.state_dict()
    second = make_trainer(stream, method, None, settings, 7, "cpu")
    second.load_state_dict(state)
    train(second, progress=None)
    assert second.log(0).equals(ref.log(0))


def test_checkpoint_of_other_settings_is_not_resumed(stream_file, tmp_path):
    ckpt = tmp_path / "c.pt"
    run = run_for("sgd", iters=60)
    out = subprocess.run(train_cmd(run, stream_file, tmp_path / "a", "--checkpoint", str(ckpt), "--checkpoint-every",
                                   "50", "--keep-checkpoint"), capture_output=True, text=True)
    assert out.returncode == 0 and ckpt.exists()
    run["method_settings"]["lr"] = 0.02
    out = subprocess.run(train_cmd(run, stream_file, tmp_path / "b", "--checkpoint", str(ckpt)),
                         capture_output=True, text=True)
    assert out.returncode == 0 and "belongs to other settings" in out.stderr
    assert (tmp_path / "c.pt.set-aside").exists()  # set aside, not deleted
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["resumed_from"] is None


def test_a_truncated_checkpoint_is_set_aside_and_the_run_starts_over(stream_file, tmp_path):
    ckpt = tmp_path / "c.pt"
    run = run_for("ngm", iters=60)
    out = subprocess.run(train_cmd(run, stream_file, tmp_path / "a", "--checkpoint", str(ckpt), "--checkpoint-every",
                                   "50", "--keep-checkpoint"), capture_output=True, text=True)
    assert out.returncode == 0
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # a kill while copying, a full disk, ...
    out = subprocess.run(train_cmd(run, stream_file, tmp_path / "b", "--checkpoint", str(ckpt)),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "is unreadable" in out.stderr and "set aside as c.pt.set-aside" in out.stderr
    assert (tmp_path / "c.pt.set-aside").exists() and not ckpt.exists()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["resumed_from"] is None
    assert (tmp_path / "b" / "log.parquet").read_bytes() == (tmp_path / "a" / "log.parquet").read_bytes()


def test_a_checkpoint_temp_file_left_by_a_kill_mid_write_is_removed(stream_file, tmp_path):
    """SIGKILL while the checkpoint is written skips atomic_write's cleanup (seen in the chaos test)."""
    ckpt = tmp_path / "c.pt"
    stale = tmp_path / ".c.pt.9bvd2ljm.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".d.pt.abc.tmp"  # another job's: not ours to remove
    other.write_bytes(b"x")
    out = subprocess.run(train_cmd(run_for("sgd", iters=60), stream_file, tmp_path / "a", "--checkpoint", str(ckpt),
                                   "--checkpoint-every", "50"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not stale.exists() and not ckpt.exists() and other.exists()


def test_a_failing_write_names_the_path_and_leaves_no_partial_file(stream_file, tmp_path):
    """A full disk, seen through a file-size limit (RLIMIT_FSIZE: root ignores read-only permissions)."""
    import resource

    run = run_for("sgd", iters=60)
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "summary.json").write_text('{"earlier": true}')  # an earlier output must stay intact

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))  # the log.parquet is larger

    out = subprocess.run(train_cmd(run, stream_file, out_dir), capture_output=True, text=True, preexec_fn=limit)
    assert out.returncode != 0
    assert f"could not write {out_dir / 'log.parquet'}" in out.stderr and "File too large" in out.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["summary.json"]  # no log, no temp file
    assert (out_dir / "summary.json").read_text() == '{"earlier": true}'


def bad(tmp_path, change):
    config = yaml.safe_load(open(DEMO))
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value)


def test_bad_configs_name_the_key_the_value_and_what_is_allowed(tmp_path):
    def unknown_benchmark(c):
        c["benchmarks"]["split_mnsit"] = c["benchmarks"].pop("split_mnist")
    msg = bad(tmp_path, unknown_benchmark)
    assert "benchmarks.split_mnsit" in msg and "split_mnist" in msg

    msg = bad(tmp_path, lambda c: c["methods"].update(ngmsgd={"lr": 0.1}))
    assert "methods.ngmsgd" in msg and "unknown method 'ngmsgd'" in msg and "ngm" in msg

    msg = bad(tmp_path, lambda c: c["benchmarks"]["split_mnist"].update(iters_per_contxt=5))
    assert "benchmarks.split_mnist" in msg and "iters_per_contxt" in msg

    msg = bad(tmp_path, lambda c: c.update(seed=[1]))
    assert "seed" in msg and "Additional properties" in msg

    msg = bad(tmp_path, lambda c: c["methods"]["sgd"].update(lr=-0.1))
    assert "methods.sgd.lr" in msg and "-0.1" in msg

    msg = bad(tmp_path, lambda c: c["methods"]["ngm"].update(gamma=1.0))
    assert "methods.ngm.gamma" in msg and "1.0" in msg

    msg = bad(tmp_path, lambda c: c.update(seeds=[42, "x"]))
    assert "seeds.1" in msg and "'x'" in msg and "integer" in msg

    msg = bad(tmp_path, lambda c: c["datasets"]["mnist5k"].update(test_per_klass=3))
    assert "datasets.mnist5k.test_per_klass" in msg and "test_per_class" in msg


def stream_config(bench, stream, dataset="mnist5k", builder="mnist5k", **extra):
    config = {"results": "results", "datasets": {dataset: {"builder": builder}},
              "benchmarks": {bench: {"dataset": dataset, "iters_per_context": 2, "batch_size": 4, "eta": 0.4,
                                     "stream": stream}},
              "methods": {"sgd": None}, "seeds": [1], **extra}
    return config


@pytest.mark.parametrize("bench, builder, stream, key, says", [
    ("split_mnist", "mnist5k", {"classes": [[0, 1], [2, 99]]}, "classes", "[99] not in the dataset's 10 classes"),
    ("split_mnist", "mnist5k", {"classes": [[0, 1], [1, 2]]}, "classes", "class(es) [1] appear more than once"),
    ("split_mnist", "mnist5k", {"classes": [[0, 1], []]}, "classes", "non-empty lists"),
    ("split_mnist", "mnist5k", {"classes": []}, "classes", "a non-empty list"),
    ("rotated_mnist", "mnist5k", {"angles": []}, "angles", "a non-empty list of finite angles"),
    ("rotated_mnist", "mnist5k", {"angles": [0, "ninety"]}, "angles", "finite angles in degrees"),
    ("permuted_mnist", "mnist5k", {"n_contexts": 0}, "n_contexts", "from 1 up"),
    ("permuted_mnist", "mnist5k", {"permutation_seed": -1}, "permutation_seed", "RandomState"),
    ("split_cifar10", "cifar10", {"classes": [[0, 1], [10, 11]]}, "classes", "class ids 0..9"),
    ("domain_cifar100_v1", "cifar100", {"superclasses": [0, 20]}, "superclasses", "superclass ids 0..19"),
    ("domain_cifar100_v2", "cifar100", {"n_contexts": 6}, "n_contexts", "from 1 to 5"),
    ("split_miniimagenet", "miniimagenet", {"n_contexts": 11, "classes_per_context": 10}, "n_contexts",
     "within the dataset's 100 classes"),
    ("split_mnist", "mnist5k", {"clases": [[0, 1]]}, "clases", "not a parameter of split_mnist; it takes: classes"),
])
def test_every_stream_parameter_is_checked_against_the_dataset_at_plan_time(bench, builder, stream, key, says):
    from stabgap.config import check_config, validate_schema

    config = stream_config(bench, stream, dataset=builder, builder=builder)
    validate_schema(config)
    with pytest.raises(ConfigError) as e:
        check_config(config)
    msg = str(e.value)
    assert f"benchmarks.{bench}.stream.{key}: {stream[key]!r} is not allowed" in msg and says in msg
    assert "nothing was run" in msg


def test_an_eval_subset_larger_than_a_task_is_refused_and_a_dry_run_stops_too(tmp_path):
    from stabgap.config import check_config, validate_schema

    config = stream_config("split_mnist", {"classes": [[0, 1], [2, 3]]}, evaluation={"subset": 500})
    config["datasets"]["mnist5k"]["test_per_class"] = 50
    validate_schema(config)
    with pytest.raises(ConfigError, match=r"evaluation.subset: 500 .* smallest task has 100"):
        check_config(config)
    # a dry run stops with the message too: the check is plan time, not job time
    bad_angles = stream_config("rotated_mnist", {"angles": []})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(bad_angles))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", f"{repo}/Snakefile", "--directory", str(tmp_path),
                          "--configfile", str(tmp_path / "c.yaml"), "-n"], capture_output=True, text=True)
    assert out.returncode != 0 and "benchmarks.rotated_mnist.stream.angles: [] is not allowed" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_missing_raw_data_stops_the_workflow_before_any_job(tmp_path):
    config = {"results": "results", "data_root": str(tmp_path / "raw"),
              "datasets": {"mnist": {"builder": "mnist", "download": False}},
              "benchmarks": {"split_mnist": {"dataset": "mnist", "iters_per_context": 2, "batch_size": 4, "eta": 0.4}},
              "methods": {"sgd": None}, "seeds": [1]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", f"{repo}/Snakefile", "--directory", str(tmp_path),
                          "--configfile", str(tmp_path / "c.yaml"), "--cores", "1"], capture_output=True, text=True)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "raw data missing" in text and "train-images-idx3-ubyte" in text and str(tmp_path / "raw" / "mnist") in text
    assert not (tmp_path / "results").exists()


def test_corrupted_canonical_and_stream_files_are_detected(stream_file, tmp_path):
    data = stream_file.parent / "mnist5k.pt"
    for path, loader in ((data, load_canonical), (stream_file, load_stream)):
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        for side in path.parent.glob(path.name + ".*json"):
            (tmp_path / side.name).write_bytes(side.read_bytes())
        loader(copy)  # intact: loads
        raw = bytearray(copy.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        copy.write_bytes(bytes(raw))
        with pytest.raises(DataError, match="corrupted"):
            loader(copy)
    # and a training job refuses the corrupted stream, naming it
    out = subprocess.run(train_cmd(run_for("sgd", iters=5), tmp_path / stream_file.name, tmp_path / "o"),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "corrupted" in out.stderr and stream_file.name in out.stderr
    assert not (tmp_path / "o" / "log.parquet").exists()


def test_absurd_learning_rate_diverges_and_stops_the_run(stream_file):
    stream = load_stream(stream_file)
    tr = make_trainer(stream, "sgd", {"lr": 1e8}, RunSettings(iters_per_context=100, batch_size=32, eta=0.4),
                      1, "cpu")
    train(tr, progress=None)
    run = tr.runs[0]
    assert run.diverged() and run.diverged_at is not None and run.diverged_at <= 100
    log = tr.log(0)
    assert log.iteration.max() == run.diverged_at - 1
    assert torch.isfinite(torch.tensor(log[log.split == "train"].loss.to_numpy())).all()
    assert isinstance(tr, Trainer)


def _demo_plan(tmp_path, change, *args):
    """`snakemake` on the demo config with one change, in an empty folder (a new user's try)."""
    config = yaml.safe_load(open("configs/demo.yaml"))
    change(config)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", f"{repo}/Snakefile", "--directory", str(tmp_path),
                          "--configfile", str(tmp_path / "c.yaml"), *args], capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def test_a_batch_that_cannot_fit_its_jobs_memory_is_refused_when_planning(tmp_path):
    code, text = _demo_plan(tmp_path, lambda c: c["benchmarks"]["split_mnist"].update(batch_size=10_000_000), "-n")
    assert code != 0 and "benchmarks.split_mnist.batch_size: 10000000 images need about" in text
    assert "more than its memory, 1000 MB (compute.train_mem_mb)" in text and "Traceback" not in text
    assert not (tmp_path / "results").exists()


def test_the_memory_check_is_the_hosts_for_cpu_jobs_only():
    """A ResNet job that asks for a GPU holds its batches in the GPU's memory, not in its mem_mb."""
    from stabgap.config import ConfigError, check_memory, load_config

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = load_config(os.path.join(repo, "config.yaml"))
    config["compute"]["batch_runs"] = 5  # mini-ImageNet: 5 runs of 256 images, far above 12,000 MB on a host
    check_memory(config)  # device auto: the ResNet jobs ask for a GPU
    config["compute"]["device"] = "cpu"
    with pytest.raises(ConfigError, match=r"benchmarks\.split_miniimagenet\.batch_size: 256 images need about"):
        check_memory(config)


def test_results_that_is_a_file_ends_in_a_message_naming_the_key(tmp_path):
    (tmp_path / "README.md").write_text("a file\n")
    code, text = _demo_plan(tmp_path, lambda c: c.update(results="README.md"), "-n")
    assert code != 0 and "results: 'README.md' is a file; results must be a folder" in text
    assert "NotADirectoryError" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_says_so_and_a_local_run_stops(tmp_path):
    def cuda(config):
        config["compute"]["device"] = "cuda"
    code, text = _demo_plan(tmp_path, cuda, "-n")  # planning here (a login node's dry run): a warning
    assert code == 0 and "warning: compute.device: 'cuda', but this machine shows no CUDA GPU" in text
    code, text = _demo_plan(tmp_path, cuda, "--cores", "1")  # a run here: stopped before any job
    assert code != 0 and "shows no CUDA GPU" in text and "(nothing was run)" in text
    assert not (tmp_path / "results" / "runs").exists() and not (tmp_path / "results" / "data").exists()
