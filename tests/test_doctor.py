"""Will it run here? The preflight check (stabgap/doctor.py): each check on small configs, staged
files and a local download server, and the command's report and exit status."""

import gzip
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import closed_port_url
from stabgap import doctor as D
from stabgap.config import validate_schema

REPO = Path(__file__).resolve().parents[1]


def tiny(tmp_path, **changes):
    cfg = {"results": str(tmp_path / "results"), "data_root": str(tmp_path / "raw"),
           "datasets": {"mnist5k": {"builder": "mnist5k", "test_per_class": 20}},
           "benchmarks": {"split_mnist": {"dataset": "mnist5k", "iters_per_context": 10, "batch_size": 16, "eta": 0.4,
                                          "stream": {"classes": [[0, 1], [2, 3]]}}},
           "methods": {"sgd": {"lr": 0.01}, "ngm": {"lr": 0.01}}, "seeds": [1, 2], **changes}
    validate_schema(cfg)
    return cfg


def by(checks, area, name=None):
    found = [c for c in checks if c.area == area and (name is None or c.name == name)]
    assert found, f"no {area} {name} check"
    return found[0] if name else found


# ---------------------------------------------------------------- software, device

def test_software_is_held_against_the_projects_pins():
    pins = D.pins()
    assert pins["torch"] == "2.14.1" and pins["snakemake"] == "9.27.1"  # pyproject.toml's, the extras' too
    checks = D.check_software(tiny(Path("/tmp")))
    assert by(checks, "software", "torch").status == "ok" and "as pinned" in by(checks, "software", "torch").detail
    cpu = by(checks, "software", "CPU kernels")
    assert "bitwise-equal results need the same kind of CPU" in cpu.detail and "compute.threads 1" in cpu.detail


def test_a_job_that_cannot_hold_its_batch_fails_and_cuda_without_a_gpu_fails(tmp_path):
    cfg = tiny(tmp_path)
    cfg["compute"]["train_mem_mb"] = 10  # MB: a training job of 16 images and a stream does not fit
    checks = D.check_device(cfg, cores=2)
    mem = by(checks, "device", "memory of split_mnist")
    assert mem.status == "failure" and "against the job's 10 MB" in mem.detail and "mem_mb" in mem.todo
    if not D.gpus():
        cfg["compute"]["device"] = "cuda"
        dev = by(D.check_device(cfg, cores=2), "device", "compute.device")
        assert dev.status == "failure" and "no CUDA GPU" in dev.detail


# ---------------------------------------------------------------- data

def mnist_config(tmp_path, **options):
    return tiny(tmp_path, datasets={"mnist": {"builder": "mnist", **options}},
                benchmarks={"split_mnist": {"dataset": "mnist", "iters_per_context": 10, "batch_size": 16,
                                            "eta": 0.4}})


def test_missing_data_that_can_be_downloaded_from_here_is_ok_and_says_its_size(tmp_path, server):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        server.files[name] = b"x" * 2_500_000
    cfg = mnist_config(tmp_path, download=True)
    cfg["datasets"]["mnist"]["mirrors"] = [server.url]  # a mirror on this machine (the schema holds no list)
    data = by(D.check_data(cfg, timeout=5), "data", "mnist")
    assert data.status == "ok" and "downloadable from http://127.0.0.1" in data.detail and "(10 MB)" in data.detail
    assert all(r.endswith(".gz") for r in server.requests)  # asked, not downloaded: HEAD requests
    assert not (tmp_path / "raw" / "mnist").exists()
    assert data.download_bytes == 10_000_000
    disk = by(D.check_disk(cfg, [data]), "disk", "results")
    assert "downloads 0.02 GB" in disk.detail  # the download (and its extraction) counted


def test_missing_data_that_cannot_be_had_fails_naming_the_files_and_the_folder(tmp_path):
    cfg = mnist_config(tmp_path, download=True)
    cfg["datasets"]["mnist"]["mirrors"] = [closed_port_url()]
    data = by(D.check_data(cfg, timeout=2), "data", "mnist")
    assert data.status == "failure" and "not reachable from here" in data.detail
    assert str((tmp_path / "raw" / "mnist").resolve()) in data.todo and "train-images-idx3-ubyte.gz" in data.todo
    off = by(D.check_data(mnist_config(tmp_path, download=False), timeout=2), "data", "mnist")
    assert off.status == "failure" and "missing in" in off.detail and "download: true" in off.todo


def staged_mnist(folder: Path, content: bytes) -> None:
    """The four MNIST files, each `content` under its .gz name."""
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").write_bytes(content)


def test_a_file_too_damaged_to_check_is_a_failure_not_a_crash_and_a_timeout_option_is_kept_apart(tmp_path):
    staged_mnist(tmp_path / "raw" / "mnist", b"<html>an error page saved as the data</html>")
    cfg = mnist_config(tmp_path, timeout=30)  # a builder option of the same name as the doctor's
    damaged = by(D.check_data(cfg, timeout=2), "data", "mnist")
    assert damaged.status == "failure" and "not a gzip file" in damaged.detail and "complete copy" in damaged.todo


def test_staged_files_are_verified_against_their_checksums(tmp_path):
    staged_mnist(tmp_path / "raw" / "mnist", gzip.compress(b"not MNIST"))
    wrong = by(D.check_data(mnist_config(tmp_path), timeout=2), "data", "mnist")
    assert wrong.status == "failure" and "md5 differs" in wrong.detail
    unchecked = by(D.check_data(mnist_config(tmp_path, check_md5=False), timeout=2), "data", "mnist")
    assert unchecked.status == "warning" and "not verified (check_md5: false)" in unchecked.detail


def miniimagenet_files(folder: Path):
    """Three tiny cache pickles in the learn2learn format (2 classes each, 3 images a class)."""
    folder.mkdir(parents=True)
    for i, name in enumerate(("train", "validation", "test")):
        images = np.full((6, 84, 84, 3), i, dtype=np.uint8)
        obj = {"image_data": images, "class_dict": {f"n{i}0": [0, 1, 2], f"n{i}1": [3, 4, 5]}}
        (folder / f"mini-imagenet-cache-{name}.pkl").write_bytes(pickle.dumps(obj, protocol=4))


def test_mini_imagenet_is_verified_against_the_sha256_recorded_at_first_use(tmp_path):
    from stabgap.data import get_source
    from stabgap.data.miniimagenet import SHA256SUMS_NAME, _write_sha256sums
    from stabgap.fileio import sha256_file

    folder = tmp_path / "mini"
    miniimagenet_files(folder)
    check = get_source("miniimagenet").check
    found = check(folder)
    assert found.status == "warning" and "not verified yet" in found.detail
    _write_sha256sums(folder / SHA256SUMS_NAME, {p.name: sha256_file(p) for p in folder.glob("*.pkl")})
    assert check(folder).status == "ok"
    (folder / "mini-imagenet-cache-test.pkl").write_bytes(b"\x80changed")
    found = check(folder)
    assert found.status == "failure" and "differs from the sha256 recorded" in found.detail
    (folder / "mini-imagenet-cache-test.pkl").unlink()
    found = check(folder)
    assert found.status == "failure" and "mini-imagenet-cache-test.pkl" in found.detail
    assert "no download exists" in found.detail


def test_a_built_canonical_file_is_checked_against_its_manifest(tmp_path):
    from stabgap.data import build_canonical

    cfg = tiny(tmp_path)
    built = Path(cfg["results"]) / "data" / "mnist5k.pt"
    build_canonical("mnist5k", built, test_per_class=20)
    assert by(D.check_data(cfg, 2), "data", "mnist5k").detail.startswith("built:")
    built.write_bytes(built.read_bytes()[:-10])
    damaged = by(D.check_data(cfg, 2), "data", "mnist5k")
    assert damaged.status == "failure" and f"delete {built}" in damaged.todo


# ---------------------------------------------------------------- disk

def test_the_disk_check_counts_what_the_config_writes(tmp_path):
    cfg = tiny(tmp_path)
    need = D.footprint(cfg)
    assert need["canonical"] == 5000 * 784  # mnist5k: 5,000 digits of 28×28 bytes
    assert need["streams"] == (4 * 480 + 4 * 20) * 784  # two tasks of two classes: 480 train, 20 test each
    assert need["logs"] == 4 * (20 + 10 + 2 * 10) * D.LOG_BYTES_PER_ROW  # 4 runs: train rows, task 1, tasks 1-2
    disk = by(D.check_disk(cfg, []), "disk", "results")
    assert disk.status == "ok" and "GB free under" in disk.detail


# ---------------------------------------------------------------- speed and wall time

def test_makespan_runs_the_longest_jobs_first_and_a_gpu_job_only_on_a_free_gpu():
    cpu = lambda *secs: [(s, False) for s in secs]  # noqa: E731
    assert D.makespan(cpu(10, 7, 5, 4, 2), 2) == 14  # 10+4, 7+5+2
    assert D.makespan(cpu(3, 3, 3), 1) == 9 and D.makespan([], 2) == 0
    # two GPU jobs of 10 s and two CPU jobs of 3 s, 2 slots, 1 GPU: the second GPU job waits for the
    # GPU while the CPU jobs run beside the first
    assert D.makespan([(10, True), (10, True), (3, False), (3, False)], 2, gpus=1) == 20
    assert D.makespan([(10, True), (10, True), (3, False), (3, False)], 2, gpus=2) == 13
    with pytest.raises(ValueError, match="needs a GPU"):
        D.makespan([(1, True)], 2, gpus=0)


def test_measured_rates_give_the_wall_time_of_the_jobs_as_the_workflow_runs_them(tmp_path):
    cfg = tiny(tmp_path)
    (shape, bench), = D.shapes(cfg).items()
    rate = D.measure(cfg, bench, seconds=0.1, at_least=2)
    assert rate["s_per_iteration"] > 0 and rate["s_per_image"] > 0 and rate["device"] == "cpu"
    fixed = {**rate, "s_per_iteration": 0.01, "s_per_image": 1e-4}
    wall = D.predict_wall(cfg, {shape: fixed}, cores=2)
    # 4 runs, each 20 iterations at 10 ms and 20 evaluations of task 1 (40 images) then tasks 1-2
    # (80) at 0.1 ms an image, plus a job's start-up: two at a time on 2 cores
    one = 20 * 0.01 + (10 * 40 + 10 * 80) * 1e-4 + D.STARTUP_S["cpu"]
    assert wall["jobs"] == 4 and wall["training"] == pytest.approx(2 * one)
    assert D.predict_wall(cfg, {shape: fixed}, cores=1)["training"] == pytest.approx(4 * one)
    cfg["compute"]["batch_runs"] = 2  # the seeds of a method in one job: 2 jobs, each two runs long
    assert D.predict_wall(cfg, {shape: fixed}, cores=2)["jobs"] == 2
    cfg["benchmarks"]["split_mnist"]["iters_per_context"] = 1  # a run of two iterations is timed too
    assert D.measure(cfg, bench, seconds=0.01, at_least=1)["s_per_iteration"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["split_mnist", "split_cifar10"])
def test_the_device_agreement_check_passes_a_device_against_itself(tmp_path, benchmark):
    """The GPU proof's machinery, run CPU against CPU (on a GPU machine the doctor runs it CUDA
    against CPU): equal losses and accuracies, and a checkpoint resumed to the same log."""
    cfg = tiny(tmp_path)
    if benchmark == "split_cifar10":
        cfg["datasets"] = {"cifar10": {"builder": "cifar10"}}
        cfg["benchmarks"] = {"split_cifar10": {"dataset": "cifar10", "iters_per_context": 4, "batch_size": 8,
                                               "eta": 0.2, "stream": {"classes": [[0, 1], [2, 3]]},
                                               "test_augment": True}}
    r = D.device_agreement(cfg, benchmark, "cpu", "cpu", iters=4)
    assert r["loss_rel"] == 0.0 and r["accuracy_points"] == 0.0 and r["resumed_equal"]


# ---------------------------------------------------------------- the command

def doctor(*args, cwd):
    return subprocess.run([sys.executable, "-m", "stabgap", "doctor", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))


def test_the_command_reports_every_check_and_exits_0_when_none_fails(tmp_path):
    cfg = tiny(tmp_path)
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    out = doctor("--config", str(tmp_path / "c.yaml"), "--cores", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report = (tmp_path / "results" / "doctor.md").read_text()
    assert report == out.stdout.split("\nwrote ")[0]  # the printed table, as written
    for area in ("software", "device", "data", "disk", "speed", "gpu path"):
        assert f"| {area} |" in report
    assert "| speed | predicted wall time | ok |" in report and "0 failure(s)" in report


def test_the_command_names_every_missing_dataset_and_exits_1(tmp_path):
    out = doctor("--config", str(REPO / "config.yaml"), "--no-speed", "--out", str(tmp_path / "d.md"), "--timeout", "1",
                 cwd=tmp_path)
    assert out.returncode == 1
    report = (tmp_path / "d.md").read_text()
    for name in ("mnist", "cifar10", "cifar100", "miniimagenet"):
        assert f"| data | {name} | FAILURE |" in report, name
    assert "4 check(s) failed" in out.stderr


def test_the_load_now_is_the_share_of_busy_cores_while_the_doctor_sleeps(tmp_path, monkeypatch):
    """The 1-minute load average lags behind work that has just stopped; the doctor judges the load
    from /proc/stat over half a second instead (idle and iowait are not busy)."""

    class Stat:  # /proc/stat read twice: before and after the sleep
        texts = iter(["cpu  100 0 100 800 50 0 0 0 0 0\ncpu0 1 2 3\n",
                      "cpu  250 0 150 1000 100 0 0 0 0 0\ncpu0 1 2 3\n"])

        def read_text(self):
            return next(self.texts)

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    # busy 200 of 450 jiffies on 4 cores
    assert D.cores_in_use(0.0, Stat()) == pytest.approx(200 / 450 * 4)
    assert D.cpu_times("cpu  1 2 3 4 5 6 7 8 9 10\n") == (1 + 2 + 3 + 6 + 7 + 8, 36)
    assert math.isnan(D.cores_in_use(0.0, tmp_path / "no-such-stat"))
