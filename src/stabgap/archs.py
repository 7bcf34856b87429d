"""Network registry: each network's facts, declared once, without torch.

An entry (`Arch`) holds the network's layer plan (every layer's shapes for an image size and class
count), its initialisation, which layers carry a gain, where its torch model lives, whether it
wants a GPU, its evaluation batch, and its measured speed on the cost model's machines. Everything
else reads it: the model builder (models.py builds each layer of the plan), the cost model's FLOP
count (cost.py), the speed harness, planning (GPU requests, job groups), the cost machines'
per-network rates and the config check of `cost.machines`.

Adding a network is one `register(Arch(...))` call, here or in a plugin module named under the
config's `plugins:`, with a plan and a torch model class that builds a batch of models from it
(see models.MLP, models.ResNet). Benchmarks name their network (benchmarks.Benchmark.net).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .registry import Registry


@dataclass(frozen=True)
class Layer:
    """One convolution or linear layer of a plan. FLOPs are counted as torch.utils.flop_counter
    counts them: 2 per multiply-add of every convolution and matrix product, nothing for BatchNorm,
    ReLU, pooling or the loss (tests/test_cost.py checks this against the counter)."""

    name: str  # its module's name in the model: "fc1", "stem", "blocks.2.conv1", "head"
    kind: str  # "linear" or "conv"
    cin: int  # input features or channels
    cout: int  # output features or channels
    kernel: int = 1
    stride: int = 1
    size: int = 1  # output height (= width) of a convolution; 1 for a linear layer
    block: int | None = None  # the residual block it belongs to (a ResNet's conv1, conv2, shortcut)

    @property
    def macs(self) -> int:
        """Multiply-adds per image."""
        return self.cin * self.cout * self.kernel ** 2 * self.size ** 2


Plan = list[Layer]


@dataclass(frozen=True)
class Arch:
    name: str
    description: str
    # (image C×H×W, output classes) -> its layers in the order they are built and run
    plan: Callable[[tuple[int, int, int], int], Plan]
    modulated: tuple[str, ...]  # layers with a gain per output neuron (log columns gain_<name>)
    # layer -> std of its N(0, std²) weights, drawn after PyTorch's default draws (which still happen,
    # so every later draw stays where it was); layers not named keep PyTorch's default initialisation
    init: dict[str, float]
    model: str  # "module:Class" of the torch model that builds a batch of these networks from the plan
    wants_gpu: bool  # its training jobs ask the scheduler for a GPU (unless compute.device is cpu)
    eval_batch_size: int  # test images per evaluation forward (per model), measured: src/stabgap/speed/NOTES.md
    # its convolutions in the channels_last (NHWC) memory layout, for training and evaluation, on the
    # CPU and on CUDA (measured: src/stabgap/speed/NOTES.md); the MLP has none
    channels_last: bool = False
    # cost model machine -> training and evaluation GFLOP/s of one job, per-iteration and
    # per-evaluation overheads in seconds (measured where src/stabgap/speed/NOTES.md says so)
    rates: dict[str, dict[str, float]] = field(default_factory=dict)

    def layers(self, image: tuple[int, int, int], num_classes: int) -> Plan:
        return self.plan(tuple(image), num_classes)

    def features(self, image: tuple[int, int, int]) -> int:
        """Inputs of the last layer (the head) at this image size."""
        return self.layers(image, 1)[-1].cin

    def forward_flops(self, image: tuple[int, int, int], num_classes: int) -> int:
        return sum(2 * layer.macs for layer in self.layers(image, num_classes))

    def train_flops(self, image: tuple[int, int, int], num_classes: int) -> int:
        """Forward and backward of one training image: the forward, the weight gradient of every
        layer (as much again) and the input gradient of every layer but the first (whose input,
        the image, needs none)."""
        layers = self.layers(image, num_classes)
        return sum(2 * layer.macs * (2 if i == 0 else 3) for i, layer in enumerate(layers))


ARCHS: Registry[Arch] = Registry("network")
register = ARCHS.register


def get_arch(name: str) -> Arch:
    return ARCHS.get(name)


# ---------------------------------------------------------------- the paper's two networks (docs/protocol.md §3)

def mlp_plan(image: tuple[int, int, int], num_classes: int, hidden: tuple[int, ...] = (400, 400)) -> Plan:
    """784-400-400-K: linear layers fc1, fc2, out (ReLU after the hidden ones)."""
    c, h, w = image
    sizes = [c * h * w, *hidden, num_classes]
    names = [f"fc{i + 1}" for i in range(len(hidden))] + ["out"]
    return [Layer(n, "linear", a, b) for n, a, b in zip(names, sizes[:-1], sizes[1:])]


def slim_resnet18_plan(image: tuple[int, int, int], num_classes: int, nf: int = 20) -> Plan:
    """Stem conv3×3 (stride 1, no max-pool), four stages of two BasicBlocks with widths
    nf·(1, 2, 4, 8) and first-block strides 1/2/2/2 (a 1×1 shortcut where stride or width
    changes), avg_pool2d(4), then the head: 160 features at 32×32, 640 at 84×84."""
    c, h, w = image
    if h != w:
        raise ValueError(f"resnet18_slim expects square images, got {h}×{w}")
    out = lambda size, stride: (size - 1) // stride + 1  # noqa: E731  (3×3 pad 1 and 1×1 pad 0 alike)
    layers = [Layer("stem", "conv", c, nf, 3, 1, h)]
    cin, s, b = nf, h, 0
    for width, stride in ((nf, 1), (2 * nf, 2), (4 * nf, 2), (8 * nf, 2)):
        for block_stride in (stride, 1):
            s = out(s, block_stride)
            layers += [Layer(f"blocks.{b}.conv1", "conv", cin, width, 3, block_stride, s, block=b),
                       Layer(f"blocks.{b}.conv2", "conv", width, width, 3, 1, s, block=b)]
            if block_stride != 1 or cin != width:
                layers.append(Layer(f"blocks.{b}.shortcut", "conv", cin, width, 1, block_stride, s, block=b))
            cin, b = width, b + 1
    pooled = (s - 4) // 4 + 1
    layers.append(Layer("head", "linear", cin * pooled * pooled, num_classes))
    return layers


register(Arch(
    name="mlp",
    description="784-400-400-K MLP, ReLU, a gain on every layer; zero biases never trained",
    plan=mlp_plan,
    modulated=("fc1", "fc2", "out"),
    init={"fc1": 0.01, "fc2": 0.01, "out": 0.05},
    model="stabgap.models:MLP",
    wants_gpu=False,
    eval_batch_size=2500,  # cache-sized forwards; 1000-2500 the fastest on the CPU (src/stabgap/speed/NOTES.md)
    rates={
        # fitted on harness slices at 1 thread, full MNIST (src/stabgap/speed/NOTES.md, *Cost model*)
        "cpu": {"rate_gflops": 44.2, "eval_rate_gflops": 44.2, "per_iteration_s": 0.0025, "per_evaluation_s": 0.0},
        # fitted on two single-run H200 rows (src/stabgap/speed/NOTES.md)
        "gpu": {"rate_gflops": 9400.0, "eval_rate_gflops": 9400.0, "per_iteration_s": 0.0023,
                "per_evaluation_s": 0.0},
    },
))

register(Arch(
    name="resnet18_slim",
    description="slim ResNet-18 (nf 20), BatchNorm, no max-pool, avg_pool2d(4); a gain on the head only",
    plan=slim_resnet18_plan,
    modulated=("head",),
    init={"head": 0.05},
    model="stabgap.models:ResNet",
    wants_gpu=True,
    # measured at 1 thread on the 2-core AVX-512 CPU (src/stabgap/speed/NOTES.md): 16-256 are close, 64 the best
    # end to end; 512 and more leave the caches and lose a third and more
    eval_batch_size=64,
    channels_last=True,  # measured: training 1.7x, evaluation 1.5x the NCHW rate on that CPU
    rates={
        # measured with the harness at 1 thread on JPEG CIFAR-10: the medians of its training and
        # evaluation rates over the v1-protocol and short-config slices (src/stabgap/speed/NOTES.md, *Cost model*)
        "cpu": {"rate_gflops": 91.0, "eval_rate_gflops": 107.0, "per_iteration_s": 0.0, "per_evaluation_s": 0.0},
        # ASSUMED until measured on a GPU (src/stabgap/speed/gpu.sh)
        "gpu": {"rate_gflops": 20000.0, "eval_rate_gflops": 20000.0, "per_iteration_s": 0.004,
                "per_evaluation_s": 0.0},
    },
))
