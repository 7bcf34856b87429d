"""A batch of models: R networks of one benchmark (seeds, methods) as one module.

Every training iteration and evaluation in this project goes through a batch of models, R = 1 for
a single run (train.Trainer). Each model keeps everything of its own: its initialisation (from its
seed, nets.build_net), its gains and gain dynamics (one stacked gain.GainControl), its BatchNorm
statistics, and, in train.py, its optimizer state, sampler and augmentation stream.

- `BatchedMLP`: the layers' weights are stacked (R×out×in) and every element-wise op covers the
  whole batch. On a GPU each layer of all R models is one batched matrix product (one MLP run is a
  stream of tiny kernels, and a batch launches as many for all its models); on the CPU each model
  keeps its own products, exactly those it makes alone, so a batch is bitwise equal to separate
  runs at the same thread count (tests/test_batched.py).
- `BatchedResNet`: the R backbones stay R modules (each its own convolutions and BatchNorm), run one
  after another; the gain-modulated heads are stacked as in the MLP. Why not one grouped
  convolution or torch.func.vmap for all R backbones: speed/NOTES.md (measured); the loop is also
  bitwise equal to separate runs on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gain import GainControl, GainLinear, batch_mean
from .nets import MLP, GainNet, SlimResNet18


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


class BatchedGainLinear(nn.Module):
    """R GainLinear layers side by side: z_m = g_m ⊙ (x_m W_mᵀ) + b_m."""

    def __init__(self, layers: list[GainLinear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # R×out×in
        self.register_buffer("bias", torch.stack([layer.bias.detach() for layer in layers]))  # zero, never trained
        self.register_buffer("gain", torch.stack([layer.gain for layer in layers]))  # R×out

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        """x: R×B×in (each model its own inputs) or N×in (the same inputs for every model); `models`:
        only these of the R models (x then holds their inputs)."""
        w, g, b = self.weight[models], self.gain[models], self.bias[models]
        return _BatchedMatmul.apply(x, w) * g[:, None, :] + b[:, None, :]

    def mean_gain(self) -> torch.Tensor:
        return batch_mean(self.gain)  # (R,)


class ModelBatch(nn.Module):
    """What the trainer needs of a batch of R models (subclasses give `modulated` and `logits`)."""

    R: int
    gain_control: GainControl

    def modulated(self) -> dict[str, BatchedGainLinear]:
        raise NotImplementedError

    def logits(self, x: torch.Tensor, models: slice) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        """x: R×B×C×H×W (training, each model its mini-batch), or N×C×H×W shared by the models
        selected by `models` (evaluation only). Logits R×B×K. A training forward moves every model's
        gains at its start and keeps each model's entropy at its end; evaluation moves nothing."""
        if self.training:
            if models != slice(None):
                raise ValueError("a training forward moves every model's gain: it takes all models")
            self.gain_control.step()
        out = self.logits(x, models)
        if self.training:
            self.gain_control.observe(out)
        return out

    def param_refs(self, a: int, b: int) -> list[tuple[nn.Parameter, slice | None, bool]]:
        """The trainable tensors of models a..b-1 as (parameter, slice of its model axis or None for a
        parameter of one model alone, gain-modulated?): what one optimizer of those models updates."""
        refs = [(layer.weight, slice(a, b), True) for layer in self.modulated().values()]
        return refs + [(p, None, False) for m in range(a, b) for p in self.own_params(m)]

    def own_params(self, m: int) -> list[nn.Parameter]:
        """Trainable parameters that belong to model m alone (not stacked)."""
        return []


class BatchedMLP(ModelBatch):
    """R MLPs (nets.MLP), every layer gain-modulated and stacked."""

    def __init__(self, nets: list[MLP]):
        super().__init__()
        self.R = len(nets)
        self.fc1 = BatchedGainLinear([n.fc1 for n in nets])
        self.fc2 = BatchedGainLinear([n.fc2 for n in nets])
        self.out = BatchedGainLinear([n.out for n in nets])
        self.gain_control = GainControl.stack([n.gain_control for n in nets])
        for layer in self.modulated().values():
            self.gain_control.attach(layer, reset=False)

    def modulated(self) -> dict[str, BatchedGainLinear]:
        return {"fc1": self.fc1, "fc2": self.fc2, "out": self.out}

    def logits(self, x: torch.Tensor, models: slice) -> torch.Tensor:
        h = F.relu(self.fc1(x.flatten(-3), models))
        h = F.relu(self.fc2(h, models))
        return self.out(h, models)


class BatchedResNet(ModelBatch):
    """R slim ResNet-18s (nets.SlimResNet18): R backbone modules, the gain-modulated heads stacked."""

    def __init__(self, nets: list[SlimResNet18]):
        super().__init__()
        self.R = len(nets)
        self.head = BatchedGainLinear([n.head for n in nets])
        self.gain_control = GainControl.stack([n.gain_control for n in nets])
        self.gain_control.attach(self.head, reset=False)
        for n in nets:  # each backbone keeps its convolutions and BatchNorm; head and gains live here
            del n.head, n.gain_control
        self.backbones = nn.ModuleList(nets)

    def modulated(self) -> dict[str, BatchedGainLinear]:
        return {"head": self.head}

    def own_params(self, m: int) -> list[nn.Parameter]:
        return [p for p in self.backbones[m].parameters() if p.requires_grad]

    def logits(self, x: torch.Tensor, models: slice) -> torch.Tensor:
        chosen = range(self.R)[models]
        shared = x.dim() == 4
        feats = [self.backbones[m].features(x if shared else x[i]) for i, m in enumerate(chosen)]
        return self.head(torch.stack(feats), models)


def stack_nets(nets: list[GainNet]) -> ModelBatch:
    """One batch of models from R networks of one kind (nets.build_net); the networks' modules are
    taken over (their weights are copied into stacked tensors, or kept as they are)."""
    if all(isinstance(n, MLP) for n in nets):
        return BatchedMLP(nets)
    if all(isinstance(n, SlimResNet18) for n in nets):
        return BatchedResNet(nets)
    raise ValueError(f"cannot batch networks of kinds {sorted({type(n).__name__ for n in nets})}")
