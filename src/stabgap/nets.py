"""The two networks of SPEC §3, each with gain-modulated layers (see gain.py).

- `MLP`: 784-400-400-K, ReLU, a gain on all three layers; weights N(0, 0.01²) hidden, N(0, 0.05²)
  output; zero biases that are never trained.
- `SlimResNet18`: nf = 20 (widths 20/40/80/160), no max-pool, avg_pool2d(4) before the head: 160
  features at 32×32, 640 at 84×84; PyTorch default initialisation for the backbone; a gain on the head
  only; head weight N(0, 0.05²), head bias zero and never trained. BatchNorm uses batch statistics in
  training forwards and running statistics in evaluation (plain nn.BatchNorm2d behaviour).

Every network has a `gain_control` (a GainControl) and `modulated()` (name -> GainLinear), and calls
`gain_control.step()` at the start and `gain_control.observe(logits)` at the end of each TRAINING
forward, so one training forward = one gain update, and evaluation never moves the gain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gain import GainControl, GainLinear


class GainNet(nn.Module):
    """Base class: wires the gain dynamics around a network's `features` + modulated layers."""

    gain_control: GainControl

    def modulated(self) -> dict[str, GainLinear]:
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.gain_control.step()
        out = self.logits(x)
        if self.training:
            self.gain_control.observe(out)
        return out

    def mean_gains(self) -> dict[str, torch.Tensor]:
        return {name: layer.mean_gain() for name, layer in self.modulated().items()}

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(weights of the modulated layers, every other trainable parameter)."""
        mod = [layer.weight for layer in self.modulated().values()]
        ids = {id(p) for p in mod}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return mod, rest


class MLP(GainNet):
    def __init__(self, num_classes: int, gain_control: GainControl, in_features: int = 784,
                 hidden: int = 400):
        super().__init__()
        self.fc1 = GainLinear(in_features, hidden, weight_std=0.01)
        self.fc2 = GainLinear(hidden, hidden, weight_std=0.01)
        self.out = GainLinear(hidden, num_classes, weight_std=0.05)
        self.gain_control = gain_control
        for layer in self.modulated().values():
            gain_control.attach(layer)

    def modulated(self) -> dict[str, GainLinear]:
        return {"fc1": self.fc1, "fc2": self.fc2, "out": self.out}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x.flatten(1)))
        h = F.relu(self.fc2(h))
        return self.out(h)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SlimResNet18(GainNet):
    def __init__(self, num_classes: int, gain_control: GainControl, image_size: int = 32, nf: int = 20):
        super().__init__()
        self.conv1 = nn.Conv2d(3, nf, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        blocks, cin = [], nf
        for width, stride in ((nf, 1), (2 * nf, 2), (4 * nf, 2), (8 * nf, 2)):
            blocks += [BasicBlock(cin, width, stride), BasicBlock(width, width, 1)]
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = self._feature_dim(image_size)
        self.head = GainLinear(self.feature_dim, num_classes, weight_std=0.05)
        self.gain_control = gain_control
        gain_control.attach(self.head)

    def _feature_dim(self, image_size: int) -> int:
        size = image_size  # stride-1 stem, then strides 1/2/2/2 with padding 1 (ceil division)
        for stride in (1, 2, 2, 2):
            size = (size - 1) // stride + 1
        pooled = (size - 4) // 4 + 1
        return 8 * self.bn1.num_features * pooled * pooled

    def modulated(self) -> dict[str, GainLinear]:
        return {"head": self.head}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.blocks(out)
        return F.avg_pool2d(out, 4).flatten(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


NETS = {"mlp", "resnet18_slim"}


def build_net(name: str, num_classes: int, input_shape: tuple[int, ...], gain_control: GainControl,
              seed: int) -> GainNet:
    """Build a network on the CPU with its initialisation drawn from `seed` alone (device-independent)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "mlp":
            in_features = 1
            for d in input_shape:
                in_features *= d
            return MLP(num_classes, gain_control, in_features=in_features)
        if name == "resnet18_slim":
            channels, height, width = input_shape
            if channels != 3 or height != width:
                raise ValueError(f"resnet18_slim expects square RGB input, got shape {input_shape}")
            return SlimResNet18(num_classes, gain_control, image_size=height)
    raise ValueError(f"unknown network {name!r}; known: {', '.join(sorted(NETS))}")
