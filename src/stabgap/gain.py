"""The paper's idea in one file: noradrenergic gain modulation (SPEC §2).

A modulated layer computes z = g ⊙ (x Wᵀ) + b with one gain per output neuron. The gain is state,
not a trainable parameter. At the start of every training-mode forward pass it moves by

    g <- γ·g + (1 − γ)·g0 + drive

where the drive of NGM-SGD is η·H, H being the batch-mean softmax entropy of the PREVIOUS training
forward (H = 0 before the first iteration, so the first pass uses g = g0). Evaluation-mode forwards
never move g. The fixed point for a constant entropy H̄ is g* = g0 + η·H̄/(1 − γ).

`GainControl` holds the dynamics shared by all modulated layers of one network (γ, η, g0, the
kept entropy H); `GainLinear` holds a layer's gain vector. The network calls `GainControl.step`
once at the start of each training forward, and `GainControl.observe` on that forward's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAIN_MODES = ("frozen", "entropy", "bump")


def gain_update(g: torch.Tensor, g0: float, gamma: float, drive) -> torch.Tensor:
    """One step of the gain recursion: γ·g + (1 − γ)·g0 + drive."""
    return gamma * g + (1.0 - gamma) * g0 + drive


def fixed_point(g0: float, gamma: float, eta: float, entropy: float) -> float:
    """g* = g0 + η·H̄/(1 − γ): where the recursion settles for a constant entropy H̄."""
    return g0 + eta * entropy / (1.0 - gamma)


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last dimension, summed in one fixed sequential order (a cumulative sum), so a
    model's value does not depend on how many models are trained beside it (batched.py): torch's
    mean sums a vector and the rows of a matrix in different orders."""
    return x.cumsum(dim=-1)[..., -1] / x.shape[-1]


def batch_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the Shannon entropy (natural log) of the softmax over ALL outputs
    (logits B×K: a scalar; M×B×K, a batch of models: one value per model)."""
    logp = F.log_softmax(logits.detach().float(), dim=-1)
    return -batch_mean((logp.exp() * logp).sum(dim=-1))


class GainControl(nn.Module):
    """Gain dynamics shared by the modulated layers of one network, or of R networks trained as one
    batch of models (`GainControl.stack`, batched.py): every setting is then a per-model vector and
    one update moves every model's gains. This is the only place the recursion is applied.

    mode "frozen": g stays at g0 (the baselines, and the fixed-gain variant with its own g0).
    mode "entropy": NGM-SGD, drive = η·H of the previous training forward.
    mode "bump": the oracle "gain bump" seen in the authors' results (assumed from its trace):
        drive = bump·[first iteration of a context]; the training loop calls `pulse()`.

    One network: `entropy` is a scalar and a layer's gain a vector (out,); R networks: `entropy` is
    (R,) and a layer's gain (R, out).
    """

    def __init__(self, mode: str = "frozen", g0: float = 1.0, gamma: float = 0.0, eta: float = 0.0,
                 bump: float = 0.0):
        super().__init__()
        if mode not in GAIN_MODES:
            raise ValueError(f"unknown gain mode {mode!r}; known: {', '.join(GAIN_MODES)}")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gain gamma must lie in [0, 1), got {gamma}")
        self._init([(mode, float(g0), float(gamma), float(eta), float(bump))], batched=False)

    def _init(self, settings: list[tuple], batched: bool) -> None:
        self.settings = settings  # per model: (mode, g0, gamma, eta, bump)
        self.batched = batched
        f32 = {"dtype": torch.float32}

        def vec(values, column=False):  # () for one network, (R,) or (R, 1) for a batch of models
            t = torch.tensor(values, **f32) if values and not isinstance(values[0], bool) else torch.tensor(values)
            return (t.view(-1, 1) if column else t) if batched else t.reshape(())

        modes = [s[0] for s in settings]
        self.register_buffer("g0", vec([s[1] for s in settings], column=True))
        # g <- γ·g + (1 − γ)·g0 + drive, with (1 − γ)·g0 rounded to fp32 once
        self.register_buffer("gamma", vec([s[2] for s in settings], column=True))
        self.register_buffer("rest", vec([(1.0 - s[2]) * s[1] for s in settings], column=True))
        self.register_buffer("eta", vec([s[3] for s in settings]))
        self.register_buffer("bump", vec([s[4] for s in settings]))
        self.register_buffer("moving", vec([m != "frozen" for m in modes], column=True))
        self.register_buffer("by_entropy", vec([m == "entropy" for m in modes]))
        self.any_moving = any(m != "frozen" for m in modes)
        self.layers: list[nn.Module] = []
        # Kept entropy of the last training forward; buffers so that checkpoints carry them.
        self.register_buffer("entropy", torch.zeros((len(settings),) if batched else ()))
        self.register_buffer("pending_pulse", torch.zeros((len(settings),) if batched else ()))

    @classmethod
    def stack(cls, controls: list["GainControl"]) -> "GainControl":
        """The dynamics of R networks (one GainControl each) as one batch of models."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new._init([s for c in controls for s in c.settings], batched=True)
        new.entropy.copy_(torch.stack([c.entropy.reshape(()) for c in controls]))
        new.pending_pulse.copy_(torch.stack([c.pending_pulse.reshape(()) for c in controls]))
        return new

    @property
    def mode(self) -> str:
        if self.batched:
            raise AttributeError("a batch of models has one mode per model: see .settings")
        return self.settings[0][0]

    def attach(self, layer: nn.Module, reset: bool = True) -> None:
        """Let this control move `layer.gain` (reset: set it to g0)."""
        if reset:
            layer.gain.copy_(self.g0.expand_as(layer.gain))
        self.layers.append(layer)

    def pulse(self) -> None:
        """Mark the next training forward as the first iteration of a context (mode "bump")."""
        self.pending_pulse.fill_(1.0)

    @torch.no_grad()
    def step(self) -> None:
        """Gain update at the start of a training-mode forward pass."""
        if not self.any_moving:
            return
        drive = torch.where(self.by_entropy, self.eta * self.entropy, self.bump * self.pending_pulse)
        if self.batched:
            drive = drive[:, None]
        self.pending_pulse.zero_()
        for layer in self.layers:
            new = self.gamma * layer.gain + self.rest + drive
            layer.gain.copy_(torch.where(self.moving, new, layer.gain))

    @torch.no_grad()
    def observe(self, logits: torch.Tensor) -> None:
        """Keep this training forward's entropy for the next gain update (and for logging)."""
        self.entropy.copy_(batch_entropy(logits))


class GainLinear(nn.Linear):
    """nn.Linear with a per-output-neuron gain: z = g ⊙ (x Wᵀ) + b."""

    def __init__(self, in_features: int, out_features: int, weight_std: float):
        super().__init__(in_features, out_features, bias=True)
        self.register_buffer("gain", torch.ones(out_features))
        with torch.no_grad():
            self.weight.normal_(0.0, weight_std)
            self.bias.zero_()
        # Biases exist but stay at zero: they are never trained (SPEC §3).
        self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) * self.gain + self.bias

    def mean_gain(self) -> torch.Tensor:
        return batch_mean(self.gain)


def lr_multiplier_update(m: float, gamma: float, eta: float, entropy: float) -> float:
    """Entropy-LR variant (assumed, SPEC §4): the same recursion drives a learning-rate multiplier."""
    return float(gain_update(m, 1.0, gamma, eta * entropy))
