"""Continual evaluation of a batch of models, as an inference path (docs/protocol.md §6).

At an evaluated iteration in context k (schedule.py): every model, in eval mode (BatchNorm's
running statistics, no gain update), on the test images of the tasks the scope covers (1..k, or
task 1), in chunks of the network's evaluation batch; under the v1 test augmentation k freshly
augmented passes, pooled, each pass's crops and flips drawn for all its images at once (so that no
result depends on the evaluation batch). Per task: the correct count and the sum of the cross-entropy losses.

Each run evaluates what it evaluates alone: its own fixed subset of each task's test images
(`eval_subset`, drawn once from its seed) and its own augmentation stream. On the CPU the models go
one by one, each forward exactly the one its run makes alone (bitwise equal, and cache-sized); on
a GPU every model is in each forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedule import Schedule
from .streams import PURPOSE_EVAL_SUBSET, PURPOSE_TEST_AUGMENT, DeviceStream, derive_seed


class Evaluator:
    def __init__(self, data: DeviceStream, schedule: Schedule, seeds: list[int], batch_size: int,
                 subset: int | None = None, bf16: bool = False):
        self.data, self.schedule, self.batch_size, self.bf16 = data, schedule, batch_size, bf16
        self.R = len(seeds)
        self.augment = schedule.test_augment
        self.aug_gens = [torch.Generator().manual_seed(derive_seed(s, PURPOSE_TEST_AUGMENT)) for s in seeds]
        offsets = data.stream.test_offsets
        self.shared = subset is None
        if self.shared:  # one test set for every model
            self.test_x, self.test_y, self.offsets = data.test_x, data.test_y, list(offsets)
        else:  # each seed's own fixed subset of each task, stacked: R×N×...
            subsets = [self._subset(seed, offsets, subset) for seed in seeds]
            idx = torch.stack([i for i, _ in subsets]).to(data.test_x.device)
            self.test_x, self.test_y, self.offsets = data.test_x[idx], data.test_y[idx], subsets[0][1]

    @staticmethod
    def _subset(seed: int, offsets: list[int], subset: int) -> tuple[torch.Tensor, list[int]]:
        """A fixed subset of `subset` test images of each task (all of a smaller task), drawn once per seed."""
        gen = torch.Generator().manual_seed(derive_seed(seed, PURPOSE_EVAL_SUBSET))
        parts, out = [], [0]
        for a, b in zip(offsets[:-1], offsets[1:]):
            idx = torch.arange(a, b)
            if subset < len(idx):
                idx = idx[torch.randperm(len(idx), generator=gen)[:subset].sort().values]
            parts.append(idx)
            out.append(out[-1] + len(idx))
        return torch.cat(parts), out

    @torch.inference_mode()
    def __call__(self, models, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Evaluate every model in context k: (correct counts R×tasks, loss sums R×tasks, passes)."""
        tasks, passes = self.schedule.tasks(k), self.schedule.passes(k)
        n, R, device = self.offsets[tasks], self.R, self.test_x.device
        correct = torch.zeros(R, n, dtype=torch.long, device=device)
        losses = torch.zeros(R, n, dtype=torch.float64, device=device)
        groups = [slice(m, m + 1) for m in range(R)] if device.type == "cpu" else [slice(0, R)]
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
        models.eval()
        for g in groups:
            chosen = range(R)[g]
            for _ in range(passes):
                if self.augment:  # each run augments the whole pass with its own generator, as alone: the
                    # draws do not depend on the evaluation batch
                    images = [self.data.augment(self.test_x[:n] if self.shared else self.test_x[m, :n], self.aug_gens[m])
                              for m in chosen]
                for a in range(0, n, self.batch_size):
                    b = min(a + self.batch_size, n)
                    if self.augment:
                        x = torch.stack([self.data.normalise(image[a:b]) for image in images])
                    else:
                        x = self.test_x[a:b] if self.shared else self.test_x[g, a:b]
                    y = (self.test_y[a:b] if self.shared else self.test_y[g, a:b]).expand(len(chosen), -1)
                    with autocast:
                        logits = models(x, g)
                    correct[g, a:b] += logits.argmax(-1) == y
                    losses[g, a:b] += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                      reduction="none").view(len(chosen), -1)
        models.train()
        # per-task sums from one cumulative sum over the task-ordered images
        off = torch.tensor(self.offsets[:tasks + 1], device=device)
        zero = torch.zeros(R, 1, device=device)
        c = torch.cat([zero.long(), correct.cumsum(1)], dim=1)
        s = torch.cat([zero.double(), losses.cumsum(1)], dim=1)
        return c[:, off[1:]] - c[:, off[:-1]], s[:, off[1:]] - s[:, off[:-1]], passes

    def state_dict(self) -> list:
        return [g.get_state() for g in self.aug_gens]

    def load_state_dict(self, states: list) -> None:
        for g, state in zip(self.aug_gens, states):
            g.set_state(state.cpu())  # CPU generators, whatever map_location did
