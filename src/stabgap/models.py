"""A batch of models: R networks of one architecture (archs.py), one per run, as one module.

A batch of models is the only kind of model in this project: a single run is a batch of one.
Each model keeps everything of its own: its initialisation (drawn from its seed alone, in the
order a lone network draws it), its gains and gain dynamics (gain.GainControl, per-model
vectors), its BatchNorm statistics, and, in trainer.py, its optimizer state and random streams.

- `MLP`: every layer's weights stacked (R×out×in) and gain-modulated. On a GPU each layer of all R
  models is one batched matrix product; on the CPU each model keeps its own products, exactly those
  it makes alone, so a batch is bitwise equal to separate runs at the same thread count
  (tests/test_batched.py).
- `ResNet`: R backbone modules (each its own convolutions and BatchNorm), run one after another,
  and the gain-modulated heads stacked as in the MLP. Why not one grouped convolution or
  torch.func.vmap for all R backbones: src/stabgap/speed/NOTES.md (measured); the loop is also bitwise equal to
  separate runs on the CPU.

A forward is pure: it never moves a gain. The gain update and the entropy it is driven by are
explicit steps of the training iteration (trainer.Trainer.step, gain.GainControl).
"""

from __future__ import annotations

import importlib
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .archs import Arch, Layer, get_arch
from .gain import GainControl, GainSettings, batch_mean


@contextmanager
def seeded(seed: int):
    """Draws inside come from `seed` alone (CPU generator), and the global stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _BatchedMatmul(torch.autograd.Function):
    """z_m = x_m W_mᵀ for every model m (x: M×B×in, or N×in shared by all models), differentiated
    in F.linear's own orientation (∂W = ∂zᵀ·x, ∂x = ∂z·W, as torch's mm backward computes them for
    a transposed weight). On the CPU each product is one matrix product per model, exactly the call
    an unbatched layer makes (a CPU bmm loops over the models anyway, single-threaded per model, and
    multi-threaded BLAS splits short sums differently): so the batch is bitwise equal to separate
    runs. On a GPU, one batched product per layer and direction: that is where batching pays."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        M, out, inp = w.shape
        if x.device.type == "cpu":
            z = x.new_empty(M, x.shape[-2], out)
            autocast = torch.is_autocast_enabled("cpu")  # evaluation.bf16: an out= product ignores autocast
            for m in range(M):
                if autocast:
                    z[m] = torch.mm(x if x.dim() == 2 else x[m], w[m].t())
                else:
                    torch.mm(x if x.dim() == 2 else x[m], w[m].t(), out=z[m])
            return z
        if x.dim() == 2:  # one product for all models: N×in @ in×(M·out)
            return (x @ w.reshape(M * out, inp).t()).view(-1, M, out).transpose(0, 1)
        return torch.bmm(x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        xs = x.expand(w.shape[0], *x.shape) if x.dim() == 2 else x
        gx = gw = None
        if grad.device.type == "cpu":
            if ctx.needs_input_grad[0]:
                gx = torch.stack([torch.mm(g, wm) for g, wm in zip(grad, w)])
            if ctx.needs_input_grad[1]:
                gw = torch.stack([torch.mm(g.t(), xm) for g, xm in zip(grad, xs)])
        else:
            if ctx.needs_input_grad[0]:
                gx = torch.bmm(grad, w)
            if ctx.needs_input_grad[1]:
                gw = torch.bmm(grad.transpose(1, 2), xs)
        if gx is not None and x.dim() == 2:
            gx = gx.sum(0)
        return gx, gw


class GainLinear(nn.Module):
    """R linear layers side by side, each with a gain per output neuron: z_m = g_m ⊙ (x_m W_mᵀ) + b_m.
    The biases exist but stay zero: they are never trained (docs/protocol.md §3)."""

    def __init__(self, R: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(R, out_features, in_features))
        self.register_buffer("bias", torch.zeros(R, out_features))
        self.register_buffer("gain", torch.ones(R, out_features))

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        """x: R×B×in (each model its own inputs) or N×in (the same inputs for every model); `models`:
        only these of the R models (x then holds their inputs)."""
        w, g, b = self.weight[models], self.gain[models], self.bias[models]
        return _BatchedMatmul.apply(x, w) * g[:, None, :] + b[:, None, :]

    def mean_gain(self) -> torch.Tensor:
        return batch_mean(self.gain)  # (R,)

    @torch.no_grad()
    def init_model(self, m: int, std: float | None) -> None:
        """Model m's weights: PyTorch's default draws for a linear layer (nn.Linear.reset_parameters,
        weight then bias), then, with `std`, the weights redrawn from N(0, std²); the bias is zero."""
        w, fan_in = self.weight[m], self.weight.shape[-1]
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(torch.empty(self.weight.shape[1]), -bound, bound)  # the bias's draw, then zero
        if std is not None:
            w.normal_(0.0, std)


class ModelBatch(nn.Module):
    """What the trainer needs of a batch of R models of one architecture: logits, the modulated
    layers, the gain dynamics (`gain_control`: a gain.GainControl; each layer's gains are its `gain` tensor),
    and the trainable tensors of each model."""

    def __init__(self, arch: Arch, seeds: list[int], gains: list[GainSettings]):
        super().__init__()
        if len(seeds) != len(gains) or not seeds:
            raise ValueError(f"one gain setting per seed, at least one model ({len(seeds)} seeds, {len(gains)} gains)")
        self.arch, self.R = arch, len(seeds)

    def _init_gains(self, gains: list[GainSettings]) -> None:
        self.gain_control = GainControl(gains, list(self.modulated().values()))

    def use_memory_format(self, memory_format: torch.memory_format) -> None:
        """Hold the convolutions' weights, and take the images, in this layout (values unchanged);
        a network without convolutions has nothing to change."""

    def modulated(self) -> dict[str, GainLinear]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        """Logits R×B×K. x: R×B×C×H×W (training: each model its mini-batch), or N×C×H×W shared by
        the models selected by `models` (evaluation). Pure: no gain moves here."""
        raise NotImplementedError

    def param_refs(self, a: int, b: int) -> list[tuple[nn.Parameter, slice | None, bool]]:
        """The trainable tensors of models a..b-1 as (parameter, slice of its model axis or None for a
        parameter of one model alone, gain-modulated?): what one optimizer of those models updates."""
        refs = [(layer.weight, slice(a, b), True) for layer in self.modulated().values()]
        return refs + [(p, None, False) for m in range(a, b) for p in self.own_params(m)]

    def own_params(self, m: int) -> list[nn.Parameter]:
        """Trainable parameters that belong to model m alone (not stacked)."""
        return []


class MLP(ModelBatch):
    """R MLPs: the plan's linear layers, ReLU after every one but the last, all stacked."""

    def __init__(self, arch: Arch, plan: list[Layer], seeds: list[int], gains: list[GainSettings]):
        super().__init__(arch, seeds, gains)
        self.fc = nn.ModuleDict({layer.name: GainLinear(self.R, layer.cin, layer.cout) for layer in plan})
        for m, seed in enumerate(seeds):
            with seeded(seed):  # one model's draws, in the order a lone network makes them
                for layer in plan:
                    self.fc[layer.name].init_model(m, arch.init.get(layer.name))
        self._init_gains(gains)

    def modulated(self) -> dict[str, GainLinear]:
        return {name: self.fc[name] for name in self.arch.modulated}

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        *hidden, out = self.fc.values()
        h = x.flatten(-3)
        for layer in hidden:
            h = F.relu(layer(h, models))
        return out(h, models)


class BasicBlock(nn.Module):
    """conv3×3(stride s)-BN-ReLU-conv3×3-BN plus the shortcut (conv1×1(stride s)-BN, or identity), ReLU."""

    def __init__(self, conv1: Layer, conv2: Layer, shortcut: Layer | None):
        super().__init__()
        self.conv1 = nn.Conv2d(conv1.cin, conv1.cout, conv1.kernel, conv1.stride, conv1.kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(conv1.cout)
        self.conv2 = nn.Conv2d(conv2.cin, conv2.cout, conv2.kernel, conv2.stride, conv2.kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(conv2.cout)
        self.shortcut = nn.Sequential()
        if shortcut is not None:
            self.shortcut = nn.Sequential(nn.Conv2d(shortcut.cin, shortcut.cout, 1, shortcut.stride, bias=False),
                                          nn.BatchNorm2d(shortcut.cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Backbone(nn.Module):
    """One model's convolutional part: stem conv-BN-ReLU, the residual blocks, avg_pool2d(4),
    flatten. PyTorch's default initialisation; BatchNorm uses batch statistics in training
    forwards and running statistics in evaluation (plain nn.BatchNorm2d)."""

    def __init__(self, plan: list[Layer]):
        super().__init__()
        stem, *rest = plan
        self.stem = nn.Conv2d(stem.cin, stem.cout, stem.kernel, stem.stride, stem.kernel // 2, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem.cout)
        blocks: dict[int, list[Layer]] = {}
        for layer in rest:
            blocks.setdefault(layer.block, []).append(layer)
        self.blocks = nn.Sequential(*[BasicBlock(b[0], b[1], b[2] if len(b) > 2 else None) for b in blocks.values()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.stem_bn(self.stem(x)))
        out = self.blocks(out)
        return F.avg_pool2d(out, 4).flatten(1)


class ResNet(ModelBatch):
    """R backbones (the plan's convolutions) and their heads (the plan's last layer) stacked."""

    def __init__(self, arch: Arch, plan: list[Layer], seeds: list[int], gains: list[GainSettings]):
        super().__init__(arch, seeds, gains)
        *body, head = plan
        if set(arch.init) - {head.name}:
            raise ValueError(f"network {arch.name!r}: models.ResNet initialises only its head; "
                             f"init names {sorted(set(arch.init) - {head.name})}")
        self.head = GainLinear(self.R, head.cin, head.cout)
        backbones = []
        for m, seed in enumerate(seeds):
            with seeded(seed):  # one model's draws: its backbone's, then its head's
                backbones.append(Backbone(body))
                self.head.init_model(m, arch.init.get(head.name))
        self.backbones = nn.ModuleList(backbones)
        self.use_memory_format(torch.channels_last if arch.channels_last else torch.contiguous_format)
        self._init_gains(gains)

    def use_memory_format(self, memory_format: torch.memory_format) -> None:
        """The convolutions' weights in this layout, values unchanged (what Module.to(memory_format=)
        does to a 4-D parameter, written out: it also works on the fake tensors of
        tests/test_cuda_fake.py, where Module.to cannot swap their parameters)."""
        self.memory_format = memory_format
        for p in self.backbones.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=memory_format)

    def modulated(self) -> dict[str, GainLinear]:
        return {"head": self.head}

    def own_params(self, m: int) -> list[nn.Parameter]:
        return [p for p in self.backbones[m].parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        chosen = range(self.R)[models]
        shared = x.dim() == 4
        fmt = self.memory_format  # the images in the layout of the weights (a no-op when they already are)
        feats = [self.backbones[m]((x if shared else x[i]).contiguous(memory_format=fmt)) for i, m in enumerate(chosen)]
        return self.head(torch.stack(feats), models)


def build_models(arch_name: str, num_classes: int, image: tuple[int, int, int], seeds: list[int],
                 gains: list[GainSettings]) -> ModelBatch:
    """A batch of R models of a registered network, on the CPU, each initialised from its seed alone
    (device-independent); `image`: C×H×W."""
    arch = get_arch(arch_name)
    module, _, cls = arch.model.partition(":")
    model_cls = getattr(importlib.import_module(module), cls)
    return model_cls(arch, arch.layers(image, num_classes), [int(s) for s in seeds], list(gains))
