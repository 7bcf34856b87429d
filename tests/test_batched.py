"""Multi-run batching (trainer.Trainer over models.py): a batch of models gives each run the log it gets alone."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from stabgap.config import load_config, run_config
from stabgap.data import build_canonical
from stabgap.data.canonical import load_canonical
from stabgap.methods import METHODS, resolve_method
from stabgap.streams import build_stream, build_stream_file
from stabgap.job import save_checkpoint
from stabgap.trainer import RunSettings, Trainer, train

# every registered method (optimizers, gain modes, oracle resets, Entropy-LR), some with two seeds
RUNS = [(name, 42) for name in METHODS] + [("ngm", 43), ("adam", 43), ("sgd", 44)]


@pytest.fixture(scope="module")
def mnist5k_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist5k.pt"
    build_canonical("mnist5k", path)
    return path


@pytest.fixture(scope="module")
def split(mnist5k_path):
    return build_stream("split_mnist", load_canonical(mnist5k_path), {"classes": [[0, 1], [2, 3], [4, 5]]})


def settings(**kw):
    return RunSettings(**{"iters_per_context": 15, "batch_size": 32, "eta": 0.4, **kw})


def alone(stream, method, seed, st, device="cpu"):
    """A single run (R = 1): its trainer."""
    tr = Trainer(stream, method, seed, st, device)
    train(tr, progress=None)
    return tr


def batch_of(stream, runs, st, device="cpu", overrides=None):
    methods = [resolve_method(name, (overrides or {}).get(name)) for name, _ in runs]
    bt = Trainer(stream, methods, [seed for _, seed in runs], st, device)
    train(bt, progress=None)
    return bt


@pytest.mark.parametrize("threads, subset", [(1, None), pytest.param(2, None, marks=pytest.mark.slow),
                                             pytest.param(2, 60, marks=pytest.mark.slow)])
def test_batch_equals_separate_runs_bitwise_on_cpu(split, threads, subset):
    torch.set_num_threads(threads)
    st = settings(eval_subset=subset, eval_batch_size=700)  # several evaluation chunks
    bt = batch_of(split, RUNS, st)
    for m, (name, seed) in enumerate(RUNS):
        ref = alone(split, resolve_method(name), seed, st).log(0)
        got = bt.log(m)
        assert got.equals(ref), f"{name}/seed{seed}: the batched log differs from the run alone"
    # and the runs are really different runs (not one model copied)
    assert not bt.log(0).equals(bt.log(1))


def test_a_diverging_run_stops_alone_and_the_batch_goes_on(split):
    torch.set_num_threads(1)
    st = settings(iters_per_context=40)
    runs = [("sgd", 42), ("msgd", 42), ("ngm", 42)]
    bt = batch_of(split, runs, st, overrides={"msgd": {"lr": 1e8}})
    exploded = alone(split, resolve_method("msgd", {"lr": 1e8}), 42, st)
    assert exploded.runs[0].diverged() and bt.runs[1].diverged_at == exploded.runs[0].diverged_at
    assert bt.log(1).equals(exploded.log(0))
    for m in (0, 2):  # the others ran to the end, unaffected
        assert not bt.runs[m].diverged() and bt.runs[m].iteration == st.iters_per_context * 3
        assert bt.log(m).equals(alone(split, resolve_method(runs[m][0]), 42, st).log(0))


def test_a_batch_resumes_from_its_checkpoint_exactly(split, tmp_path):
    torch.set_num_threads(1)
    st = settings()
    runs = [("adam_reset", 42), ("entropy_lr", 42), ("ngm", 43)]
    ref = batch_of(split, runs, st)
    first = Trainer(split, [resolve_method(n) for n, _ in runs], [s for _, s in runs], st)
    while first.iteration < 20:  # mid-context 2, after the oracle reset
        first.step()
    save_checkpoint(first, tmp_path / "batch.pt", "hash", 1.0)
    state = torch.load(tmp_path / "batch.pt", weights_only=True)
    second = Trainer(split, [resolve_method(n) for n, _ in runs], [s for _, s in runs], st)
    second.load_state_dict(state["trainer"])
    train(second, progress=None)
    for m in range(len(runs)):
        assert ref.log(m).equals(second.log(m))


def _cli(runs, stream, outs, *extra):
    cmd = [sys.executable, "-m", "stabgap", "train", "--stream", str(stream), *extra]
    for run, out in zip(runs, outs):
        cmd += ["--run", json.dumps(run), "--out-dir", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.slow
def test_cli_trains_a_batch_into_one_folder_per_run(mnist5k_path, tmp_path):
    stream = tmp_path / "split.pt"
    build_stream_file("split_mnist", mnist5k_path, stream, {"classes": [[0, 1], [2, 3]]})
    config = load_config("configs/demo.yaml")
    runs = [run_config(config, "split_mnist", v, s) for v, s in [("ngm", 42), ("ngm", 43), ("adam", 42)]]
    for run in runs:
        run.update(iters_per_context=20, threads=1)
    batch = _cli(runs, stream, [tmp_path / "batch" / str(i) for i in range(3)], "--checkpoint",
                 str(tmp_path / "batch.pt"), "--checkpoint-every", "10")
    assert batch.returncode == 0, batch.stderr
    assert "batch of 3 runs" in batch.stderr  # progress lines name the batch
    for i, run in enumerate(runs):
        single = _cli([run], stream, [tmp_path / "single" / str(i)])
        assert single.returncode == 0, single.stderr
        got, want = (tmp_path / "batch" / str(i) / "log.parquet"), (tmp_path / "single" / str(i) / "log.parquet")
        assert got.read_bytes() == want.read_bytes()
        summary = json.loads((tmp_path / "batch" / str(i) / "summary.json").read_text())
        assert summary["run"] == run and summary["batch"]["size"] == 3
        assert summary["batch"]["runs"] == ["ngm/seed42", "ngm/seed43", "adam/seed42"]
        assert json.loads((tmp_path / "single" / str(i) / "summary.json").read_text())["batch"] is None
    assert not (tmp_path / "batch.pt").exists()  # the batch's checkpoint is removed at its end
    assert len(pd.read_parquet(tmp_path / "batch" / "0" / "log.parquet").query("split == 'train'")) == 40


def test_cli_refuses_runs_that_cannot_share_a_batch(mnist5k_path, tmp_path):
    stream = tmp_path / "split.pt"
    build_stream_file("split_mnist", mnist5k_path, stream, {"classes": [[0, 1], [2, 3]]})
    config = load_config("configs/demo.yaml")
    a, b = run_config(config, "split_mnist", "ngm", 42), run_config(config, "split_mnist", "ngm", 43)
    b["iters_per_context"] = 7
    out = _cli([a, b], stream, [tmp_path / "a", tmp_path / "b"])
    assert out.returncode != 0
    assert "may differ only in method and seed" in out.stderr and "iters_per_context" in out.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    mismatch = subprocess.run([sys.executable, "-m", "stabgap", "train", "--stream", str(stream), "--run",
                               json.dumps(a), "--run", json.dumps(a), "--out-dir", str(tmp_path / "a")],
                              capture_output=True, text=True)
    assert mismatch.returncode != 0 and "one --out-dir per --run" in mismatch.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batch_matches_separate_runs_on_cuda(split):
    """Batched GPU kernels sum in another order than single ones, so each step agrees only to fp32
    rounding. Over a run such differences grow as between any two fp32 runs; Adam's first steps
    (about lr·sign(∇), also for gradients that are rounding noise) amplify them most: on the CPU, a
    1e-7 relative change of the initial weights moves an Adam run's loss by up to 14% within 90
    iterations (src/stabgap/speed/NOTES.md). So: the first two steps of every run, and the whole of the runs
    without Adam, are compared."""
    torch.backends.cudnn.deterministic = True
    st = settings(iters_per_context=30)
    bt = batch_of(split, RUNS, st, "cuda")
    rows = []
    for m, ((name, seed), tr) in enumerate(zip(RUNS, bt.runs)):
        ref, got = alone(split, resolve_method(name), seed, st, "cuda").log(0), bt.log(m)
        assert len(ref) == len(got)
        first = (ref.iteration <= 2) & (ref.split == "train")  # a forward, a backward and an update
        rel = ((ref.loss - got.loss).abs() / ref.loss.abs())
        rows.append({"run": f"{name}/seed{seed}", "adam": tr.method.optimizer == "adam",
                     "first steps loss rel": float(rel[first].max()), "loss rel": float(rel.max()),
                     "test accuracy pts": float((ref.accuracy - got.accuracy)[ref.split == "test"].abs().max())})
    table = pd.DataFrame(rows)
    print("\nbatched vs alone on CUDA, largest differences:\n" + table.to_string(index=False))
    assert (table["first steps loss rel"] < 1e-4).all()
    steady = table[~table.adam]
    assert (steady["loss rel"] < 1e-2).all() and (steady["test accuracy pts"] <= 1.0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batched", [False, True])
def test_checkpoint_resume_on_cuda(split, tmp_path, batched):
    """A checkpoint written on the GPU and loaded with map_location=cuda resumes exactly."""
    from stabgap.job import load_checkpoint

    st = settings()
    runs = [("adam_reset", 42), ("ngm", 43)] if batched else [("ngm", 43)]

    def fresh():
        return Trainer(split, [resolve_method(n) for n, _ in runs], [s for _, s in runs], st, "cuda")

    ref = fresh()
    train(ref, progress=None)
    first = fresh()
    while first.iteration < 20:
        first.step()
    save_checkpoint(first, tmp_path / "c.pt", "h", 1.0)
    second = fresh()
    second.load_state_dict(load_checkpoint(tmp_path / "c.pt", "h", torch.device("cuda"))["trainer"])
    train(second, progress=None)
    for m in range(len(runs)):
        assert ref.log(m).equals(second.log(m))


# ---------------------------------------------------------------------- the ResNet, batched

def _rgb_stream(n_per_class=24, size=32, seed=0):
    """A Split CIFAR-10 stream of random uint8 images (shape and augmentation as the real one)."""
    from stabgap.streams import Stream

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(4).repeat_interleave(n_per_class)
    x = torch.randint(0, 256, (len(y), size, size, 3), dtype=torch.uint8, generator=g)
    off = [0, 2 * n_per_class, 4 * n_per_class]
    return Stream("split_cifar10", x, y, off, x.clone(), y.clone(), off, {})


RESNET_RUNS = [("ngm", 42), ("msgd_reset", 42), ("adam", 43), ("sgd", 43), ("entropy_lr", 44)]


@pytest.mark.slow
@pytest.mark.parametrize("test_augment, subset", [(False, None), (True, 20)])
def test_resnet_batch_equals_separate_runs_bitwise_on_cpu(test_augment, subset):
    """Five ResNet runs as one batch: each with its own BatchNorm statistics, gains, optimizer state,
    sampler and crop/flip stream (training and v1 test augmentation), bitwise its run alone."""
    torch.set_num_threads(2)
    stream = _rgb_stream()
    st = settings(iters_per_context=3, batch_size=8, eta=0.2, eval_every=2, test_augment=test_augment,
                  eval_subset=subset, eval_batch_size=30)
    bt = batch_of(stream, RESNET_RUNS, st)
    for m, (name, seed) in enumerate(RESNET_RUNS):
        assert bt.log(m).equals(alone(stream, resolve_method(name), seed, st).log(0)), f"{name}/seed{seed}"
    # each model its own BatchNorm running statistics
    bn = [b.stem_bn.running_mean for b in bt.models.backbones]
    assert not torch.equal(bn[0], bn[1])


@pytest.mark.slow
def test_resnet_batch_resumes_from_its_checkpoint_exactly(tmp_path):
    torch.set_num_threads(1)
    stream = _rgb_stream(n_per_class=8)
    st = settings(iters_per_context=3, batch_size=4, eta=0.2, test_augment=True)
    runs = [("ngm", 1), ("msgd_reset", 2)]
    ref = batch_of(stream, runs, st)
    first = Trainer(stream, [resolve_method(n) for n, _ in runs], [s for _, s in runs], st)
    while first.iteration < 4:  # in context 2, after the reset
        first.step()
    save_checkpoint(first, tmp_path / "b.pt", "h", 1.0)
    second = Trainer(stream, [resolve_method(n) for n, _ in runs], [s for _, s in runs], st)
    second.load_state_dict(torch.load(tmp_path / "b.pt", weights_only=True)["trainer"])
    train(second, progress=None)
    for m in range(len(runs)):
        assert ref.log(m).equals(second.log(m))


@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_resnet_evaluation_does_not_depend_on_the_evaluation_batch(threads):
    """The network's evaluation batch (archs.py) is memory and speed only: in its channels_last
    layout, a run's log is bitwise the same for any evaluation batch, with and without the v1 test
    augmentation."""
    torch.set_num_threads(threads)
    stream = _rgb_stream()
    for augment in (False, True):
        logs = [alone(stream, resolve_method("ngm"), 3, settings(iters_per_context=2, batch_size=8, eta=0.2,
                                                                  test_augment=augment, eval_batch_size=b)).log(0)
                for b in (7, 64, 2500)]
        assert logs[0].equals(logs[1]) and logs[0].equals(logs[2])


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
def test_resnet_layouts_agree_within_tolerance(device):
    """channels_last (the network's layout, archs.py) and NCHW round differently, nothing more: the
    first steps agree to fp32 rounding and the run stays close."""
    torch.set_num_threads(1)
    stream = _rgb_stream()
    st = settings(iters_per_context=3, batch_size=8, eta=0.2)
    logs = []
    for layout in (torch.channels_last, torch.contiguous_format):
        tr = Trainer(stream, resolve_method("msgd"), 5, st, device)
        tr.models.use_memory_format(layout)
        assert tr.models.backbones[0].stem.weight.is_contiguous(memory_format=layout)
        train(tr, progress=None)
        logs.append(tr.log(0))
    a, b = logs
    train_rows = a.split == "train"
    rel = ((a.loss - b.loss).abs() / a.loss.abs())[train_rows]
    assert rel.iloc[:2].max() < 1e-5 and rel.max() < 1e-2  # random images: rounding grows, as in any two fp32 runs
    assert (a.accuracy - b.accuracy)[~train_rows].abs().max() <= 100 / 48 + 1e-9  # at most one test image


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resnet_batch_matches_separate_runs_on_cuda():
    """Five ResNet runs as one batch on CUDA (each backbone its own kernels, the heads one batched
    product): each agrees with its run alone to fp32 rounding in its first steps, and stays close
    (Adam amplifies rounding most, as for the MLP: only its first steps are held to it)."""
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    stream = _rgb_stream()
    st = settings(iters_per_context=3, batch_size=8, eta=0.2, eval_every=2, test_augment=True, eval_subset=20)
    bt = batch_of(stream, RESNET_RUNS, st, "cuda")
    for m, (name, seed) in enumerate(RESNET_RUNS):
        ref, got = alone(stream, resolve_method(name), seed, st, "cuda").log(0), bt.log(m)
        assert len(ref) == len(got)
        rel = (ref.loss - got.loss).abs() / ref.loss.abs()
        first = (ref.iteration <= 2) & (ref.split == "train")
        assert rel[first].max() < 1e-4, f"{name}/seed{seed}"
        if bt.runs[m].method.optimizer != "adam":
            assert rel[ref.split == "train"].max() < 1e-2, f"{name}/seed{seed}"
    assert all(b.stem.weight.device.type == "cuda" for b in bt.models.backbones)
