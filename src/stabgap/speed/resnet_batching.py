"""How to batch R slim ResNet-18 runs: three ways measured, forward + backward of one training step.

    python -m stabgap.speed.resnet_batching --runs 5 --batch 64 --threads 2 [--device cuda]

1. loop: the R backbones as R modules, one after another (what models.ResNet does);
2. vmap: torch.func.stack_module_state + functional_call + vmap over the R models (BatchNorm in
   training mode needs its running statistics updated in place, which vmap refuses; here they are
   left untracked, as torch.func's docs suggest, so this times the arithmetic only);
3. grouped: every convolution of the R models as one grouped convolution (groups = R) on R·C
   channels; its BatchNorm over R·C channels is exactly per model. Timed on the convolutions alone.
Prints seconds per step for each. A measurement, not a test (src/stabgap/speed/NOTES.md).
"""

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from stabgap.archs import get_arch
from stabgap.gain import GainSettings
from stabgap.models import build_models


def timed(fn, device, reps=3):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    models = build_models("resnet18_slim", 10, (3, 32, 32), list(range(a.runs)), [GainSettings()] * a.runs).to(dev)
    nets = list(models.backbones)
    x = torch.randn(a.runs, a.batch, 3, 32, 32, device=dev)

    def loop():
        feats = torch.stack([n(x[m]) for m, n in enumerate(nets)])
        feats.sum().backward()

    from torch.func import functional_call, stack_module_state

    base = copy.deepcopy(nets[0]).to("meta")
    for m in base.modules():  # vmap cannot update running statistics in place: batch statistics only
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    params, buffers = stack_module_state([n for n in nets])
    buffers = {k: v for k, v in buffers.items() if "running" not in k and "num_batches" not in k}

    def one(p, b, xi):
        return functional_call(base, {**p, **b}, (xi,), strict=False)

    def vmapped():
        torch.vmap(one)(params, buffers, x).sum().backward()

    # the convolutions of one network (its registry plan), as (cin, cout, k, stride), and their input sizes
    plan = [layer for layer in get_arch("resnet18_slim").layers((3, 32, 32), 10) if layer.kind == "conv"]
    shapes = [(layer.cin, layer.cout, layer.kernel, layer.stride) for layer in plan]
    sizes = [layer.size * layer.stride for layer in plan]
    R = a.runs
    ws = [torch.randn(R, co, ci, k, k, device=dev, requires_grad=True) for ci, co, k, _ in shapes]
    xs = [torch.randn(a.batch, R * ci, sz, sz, device=dev, requires_grad=True) for (ci, _, _, _), sz in zip(shapes, sizes)]

    def separate_convs():
        for (ci, co, k, st), w, xx in zip(shapes, ws, xs):
            for m in range(R):
                y = F.conv2d(xx[:, m * ci:(m + 1) * ci], w[m], stride=st, padding=k // 2)
                y.sum().backward()

    def grouped_convs():
        for (ci, co, k, st), w, xx in zip(shapes, ws, xs):
            y = F.conv2d(xx, w.reshape(R * co, ci, k, k), stride=st, padding=k // 2, groups=R)
            y.sum().backward()

    rows = [("loop over R backbones (whole network)", timed(loop, dev))]
    try:
        rows.append(("vmap over stacked state (whole network, no running stats)", timed(vmapped, dev)))
    except Exception as err:  # report, do not hide
        rows.append((f"vmap failed: {type(err).__name__}: {str(err)[:80]}", float("nan")))
    rows.append(("R separate convolutions per layer (convolutions only)", timed(separate_convs, dev)))
    rows.append(("one grouped convolution per layer (convolutions only)", timed(grouped_convs, dev)))
    print(f"| way ({R} runs, batch {a.batch}, {dev}, {a.threads} threads) | s per step |\n|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} |")


if __name__ == "__main__":
    main()
