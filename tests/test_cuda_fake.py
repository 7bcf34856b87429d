"""The CUDA path, checked on every CI run without a GPU: torch's fake tensors.

Under `FakeTensorMode` tensors can live on a "cuda" device that does not exist: every operation
computes shapes, dtypes and devices but no values, and an operation that mixes devices raises, as on
a real GPU. For the MLP and the ResNet, single runs and batches, the trainer is built on "cuda" and
the parts of a training iteration are run one by one, as `Trainer.step` runs them: the samplers, the
gain update, the forward, the loss, the entropy, the optimizer step (with fake gradients), the
records, and an evaluation (shared test set or per-run subsets, with and without the v1 test
augmentation). A dispatch mode watches every operation: none may bring a tensor from the GPU back to
the host (a hidden synchronisation) and every output of a forward pass lies on the run's device.

Two pieces of torch do not work on fake parameters and are replaced here: `Module.to(device)` (it
cannot swap a fake parameter: `move` below moves each parameter and buffer instead, as Module.to
does) and nothing else (`models.ResNet.use_memory_format` converts its weights itself, so the
channels_last layout is checked too).

What stays unproven without a GPU (the `doctor`'s GPU proof runs those on a real GPU,
`python -m stabgap doctor`): the backward pass (autograd on fake CUDA tensors needs a device), every
value (a fake tensor has none, so `.item()`, the progress line, the divergence check and the log's
numbers), checkpoints and resume (torch.save and generator states of device tensors), Entropy-LR's
learning rate (a host value read from the entropy), cuDNN's algorithms and numerics.
"""

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from stabgap import models
from stabgap.gain import batch_mean
from stabgap.methods import resolve_method
from stabgap.streams import Stream
from stabgap.trainer import RunSettings, Trainer

CUDA = torch.device("cuda", 0)


def move(self, device, *args, **kwargs):
    """ModelBatch.to(device) for fake parameters: each parameter replaced by one on `device`, each
    buffer moved (what Module.to does, without the swap a fake parameter refuses)."""
    for module in self.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[name] = torch.nn.Parameter(p.detach().to(device), requires_grad=p.requires_grad)
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = b.to(device)
    return self


class DeviceWatch(TorchDispatchMode):
    """Every operation's input and output devices, and the ones that bring GPU data to the host."""

    def __init__(self):
        super().__init__()
        self.ops, self.to_host = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = {t.device.type for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        outs = {t.device.type for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        self.ops.append((str(func), ins, outs))
        if "cuda" in ins and "cpu" in outs:
            self.to_host.append(str(func))
        return out


def stream(benchmark: str, rgb: bool) -> Stream:
    """A small real stream of two tasks (images in the benchmark's shape), on the host."""
    g = torch.Generator().manual_seed(0)
    shape = (32, 32, 3) if rgb else (28, 28)
    y = torch.arange(48) % 4
    order = torch.argsort(y, stable=True)
    x = torch.randint(0, 256, (48, *shape), generator=g, dtype=torch.uint8)[order]
    y = y[order]
    return Stream(benchmark, x, y, [0, 24, 48], x[::2].clone(), y[::2].clone(), [0, 12, 24])


CASES = [  # network, methods (one per run of the batch), v1 test augmentation, per-run test subset
    ("split_mnist", ["ngm"], False, None),
    ("split_mnist", ["ngm", "adam", "msgd"], False, 5),
    ("split_cifar10", ["ngm"], True, None),
    ("split_cifar10", ["msgd", "ngm"], False, 5),
    ("split_cifar10", ["adam", "ngm"], True, 5),
]


@pytest.mark.parametrize("benchmark,methods,augment,subset", CASES)
def test_every_tensor_of_a_training_iteration_and_an_evaluation_lies_on_the_runs_gpu(benchmark, methods, augment,
                                                                                      subset, monkeypatch):
    monkeypatch.setattr(models.ModelBatch, "to", move)
    data = stream(benchmark, rgb=benchmark != "split_mnist")
    settings = RunSettings(iters_per_context=3, batch_size=8, eta=0.2, eval_subset=subset, eval_batch_size=4,
                           test_augment=augment)
    with FakeTensorMode(allow_non_fake_inputs=True):
        trainer = Trainer(data, [resolve_method(m) for m in methods], list(range(1, len(methods) + 1)), settings,
                          "cuda")
        model = trainer.models
        assert {p.device for p in model.parameters()} == {CUDA}
        assert {b.device for b in model.buffers()} == {CUDA}  # BatchNorm statistics, gains, gain dynamics
        if benchmark == "split_cifar10":
            assert all(p.is_contiguous(memory_format=torch.channels_last)
                       for p in model.parameters() if p.dim() == 4)  # the registry's layout, on the GPU too
        with DeviceWatch() as watch:
            trainer.start_context(1)
            lrs = trainer.learning_rates()
            model.gain_control.update()
            x, y = trainer.data.sample(1, [r.sampler for r in trainer.runs], settings.batch_size)
            n_before = len(watch.ops)
            logits = model(x)
            forward = watch.ops[n_before:]
            losses = batch_mean(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                reduction="none").view(len(methods), -1))
            model.gain_control.observe(logits)
            for p in model.parameters():
                p.grad = torch.ones_like(p)  # what a backward would leave (it cannot run on fake CUDA)
            for a, _, opt in trainer.optimizers:
                opt.step(lrs[a])
            gains = [layer.mean_gain() for layer in model.modulated().values()]
            trainer.records.training(1, losses, logits, y, model.gain_control.entropy, gains, lrs)
            correct, loss_sums, passes = trainer.evaluator(model, 1)
            trainer.records.evaluation(1, correct, loss_sums, passes)
        assert watch.to_host == [], f"GPU data brought to the host: {watch.to_host}"
        assert forward and all(outs <= {"cuda"} for _, _, outs in forward), [op for op in forward if "cpu" in op[2]]
        for t in (x, y, logits, losses, correct, loss_sums, model.gain_control.entropy, *gains):
            assert t.device == CUDA
        assert logits.shape == (len(methods), settings.batch_size, 10)
        assert correct.shape == loss_sums.shape == (len(methods), 1)
        states = [v for _, _, opt in trainer.optimizers for s in opt.state for v in s.values()
                  if isinstance(v, torch.Tensor)]
        stateful = any(opt.method.optimizer == "adam" or any(opt.momenta) for _, _, opt in trainer.optimizers)
        assert bool(states) == stateful and {s.device for s in states} <= {CUDA}  # momentum buffers, Adam's moments
        assert {p.device for p in model.parameters()} == {CUDA}  # the step kept every weight there
        for name in ("train_loss", "train_correct", "entropy", "gain", "test_correct", "test_loss"):
            assert getattr(trainer.records, name).device == CUDA, name
        # on the host by design: the learning rates (given as numbers) and the pooled passes (a count)
        assert trainer.records.lr.device.type == trainer.records.eval_passes.device.type == "cpu"


def test_a_mixed_device_operation_is_caught_under_fake_cuda():
    """The check has teeth: an operation on a GPU tensor and a host tensor raises, as on a GPU."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        with pytest.raises(RuntimeError, match="same device|devices"):
            torch.ones(3, device="cuda") + torch.ones(3, device="cpu").reshape(3)
