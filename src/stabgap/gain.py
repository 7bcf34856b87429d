"""The paper's idea, its dynamics: noradrenergic gain modulation (docs/protocol.md §2).

Where each part lives: the gain's recursion and its drive are here (`GainControl`); the
multiplication of a layer's weighted input by its gain is models.GainLinear's; when each step
happens within a training iteration is trainer.Trainer.step's.

A modulated layer computes z = g ⊙ (x Wᵀ) + b with one gain per output neuron. The gain is state,
not a trainable parameter. At the start of every training iteration, before its forward, it moves by

    g <- γ·g + (1 − γ)·g0 + drive

where the drive of NGM-SGD is η·H, H being the batch-mean softmax entropy of the PREVIOUS training
forward (H = 0 before the first iteration, so the first pass uses g = g0). Evaluation never moves g.
The fixed point for a constant entropy H̄ is g* = g0 + η·H̄/(1 − γ).

`GainControl` holds the dynamics of a batch of R models (models.py), every setting a per-model
vector: the trainer calls `update()` at the start of each training iteration and `observe(logits)`
on that iteration's training logits (trainer.Trainer.step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GAIN_MODES = ("frozen", "entropy", "bump")


@dataclass(frozen=True)
class GainSettings:
    """One model's gain dynamics.

    mode "frozen": g stays at g0 (the baselines, and the fixed-gain variant with its own g0).
    mode "entropy": NGM-SGD, drive = η·H of the previous training forward.
    mode "bump": the oracle "gain bump" seen in the authors' results (assumed from its trace):
        drive = bump·[first iteration of a context]; the trainer calls `pulse()` at the first
        iteration of every context, context 1 included (trainer.Trainer.start_context)."""

    mode: str = "frozen"
    g0: float = 1.0
    gamma: float = 0.0
    eta: float = 0.0
    bump: float = 0.0

    def __post_init__(self):
        if self.mode not in GAIN_MODES:
            raise ValueError(f"unknown gain mode {self.mode!r}; known: {', '.join(GAIN_MODES)}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gain gamma must lie in [0, 1), got {self.gamma}")


def gain_update(g: torch.Tensor, g0: float, gamma: float, drive) -> torch.Tensor:
    """One step of the gain recursion: γ·g + (1 − γ)·g0 + drive."""
    return gamma * g + (1.0 - gamma) * g0 + drive


def fixed_point(g0: float, gamma: float, eta: float, entropy: float) -> float:
    """g* = g0 + η·H̄/(1 − γ): where the recursion settles for a constant entropy H̄."""
    return g0 + eta * entropy / (1.0 - gamma)


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last dimension, summed in one fixed sequential order (a cumulative sum), so a
    model's value does not depend on how many models are trained beside it: torch's mean sums a
    vector and the rows of a matrix in different orders."""
    return x.cumsum(dim=-1)[..., -1] / x.shape[-1]


def batch_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the Shannon entropy (natural log) of the softmax over ALL outputs
    (logits B×K: a scalar; R×B×K, a batch of models: one value per model)."""
    logp = F.log_softmax(logits.detach().float(), dim=-1)
    return -batch_mean((logp.exp() * logp).sum(dim=-1))


def lr_multiplier_update(m: float, gamma: float, eta: float, entropy: float) -> float:
    """Entropy-LR variant (assumed, docs/protocol.md §4): the same recursion drives a learning-rate multiplier."""
    return float(gain_update(m, 1.0, gamma, eta * entropy))


class GainControl(nn.Module):
    """The gain dynamics of R models, one GainSettings each, as per-model vectors; the gains
    themselves are the `gain` buffers (R×out) of the modulated layers it is given. This is the only
    place the recursion is applied. Buffers (checkpointed): the kept entropy of each model's last
    training forward, and the pending bump pulse."""

    def __init__(self, settings: list[GainSettings], layers: list[nn.Module]):
        super().__init__()
        self.settings = list(settings)
        col = lambda values: torch.tensor(values, dtype=torch.float32).view(-1, 1)  # noqa: E731  (R, 1)
        self.register_buffer("gamma", col([s.gamma for s in settings]))
        # g <- γ·g + (1 − γ)·g0 + drive, with (1 − γ)·g0 rounded to fp32 once
        self.register_buffer("rest", col([(1.0 - s.gamma) * s.g0 for s in settings]))
        self.register_buffer("eta", torch.tensor([s.eta for s in settings], dtype=torch.float32))
        self.register_buffer("bump", torch.tensor([s.bump for s in settings], dtype=torch.float32))
        self.register_buffer("moving", torch.tensor([s.mode != "frozen" for s in settings]).view(-1, 1))
        self.register_buffer("by_entropy", torch.tensor([s.mode == "entropy" for s in settings]))
        self.register_buffer("entropy", torch.zeros(len(settings)))
        self.register_buffer("pending_pulse", torch.zeros(len(settings)))
        self.any_moving = any(s.mode != "frozen" for s in settings)
        self.layers = list(layers)  # not submodules: the model owns them
        g0 = col([s.g0 for s in settings])
        for layer in self.layers:
            layer.gain.copy_(g0.expand_as(layer.gain))

    def pulse(self) -> None:
        """Mark the next update as the first iteration of a context (mode "bump")."""
        self.pending_pulse.fill_(1.0)

    @torch.no_grad()
    def update(self) -> None:
        """The gain update of one training iteration, every model's and every modulated layer's."""
        if not self.any_moving:
            return
        drive = torch.where(self.by_entropy, self.eta * self.entropy, self.bump * self.pending_pulse)[:, None]
        self.pending_pulse.zero_()
        for layer in self.layers:
            new = self.gamma * layer.gain + self.rest + drive
            layer.gain.copy_(torch.where(self.moving, new, layer.gain))

    @torch.no_grad()
    def observe(self, logits: torch.Tensor) -> None:
        """Keep each model's training-batch entropy (logits R×B×K) for the next update."""
        self.entropy.copy_(batch_entropy(logits))
