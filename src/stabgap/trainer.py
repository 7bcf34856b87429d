"""Joint incremental training with continual evaluation: one training iteration for 1..R runs
(docs/protocol.md §2, §5, §6).

R runs of one stream train together as one batch of models (models.py; R = 1: a single run). They
may differ in method and seed; each keeps its own initialisation, gains, BatchNorm statistics,
optimizer state, sampler, augmentation streams, test subset and divergence stop, and on the CPU
gets bitwise the log it gets alone (tests/test_batched.py). Iteration t, in context k, reads top to
bottom in `Trainer.step`. Nothing is reset at a switch except what a method asks for. The loop
around it (`train`) checks for divergence, prints progress and writes checkpoints; writing a run's
files is job.py's.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .archs import get_arch
from .benchmarks import get_benchmark
from .evaluator import Evaluator
from .gain import batch_mean, lr_multiplier_update
from .methods import Method, resolve_method
from .models import build_models
from .optim import MethodOptimizer
from .records import Records
from .schedule import Schedule
from .streams import PURPOSE_SAMPLER, DeviceStream, Stream, derive_seed


@dataclass(frozen=True)
class RunSettings:
    """What a run needs besides its method and stream (from the config; config.run_config)."""

    iters_per_context: int
    batch_size: int
    eta: float  # the benchmark's η, used by methods whose own `eta` is unset
    eval_every: int = 1  # ρ
    eval_subset: int | None = None  # fixed per-task test subset (drawn once per seed), None = full
    eval_batch_size: int = 2500  # images per evaluation forward (the network's, archs.py)
    progress_every: int = 0  # print a progress line every this many iterations (0: ten per run)
    # v1 CIFAR protocol: augment the test images freshly at every evaluation and, in context k,
    # evaluate k passes and pool them (docs/protocol.md §5). Off: one clean pass.
    test_augment: bool = False
    # "seen": evaluate every task seen so far (this reproduction); "task1": task 1 only, as the v1 code did
    eval_scope: str = "seen"
    eval_dense_after_switch: int = 0  # evaluate every one of the first N iterations of each context
    # evaluation forwards under bf16 autocast (a speed switch, off by default: it changes results;
    # its effect on one run is measured in src/stabgap/speed/NOTES.md). Training always runs in fp32.
    eval_bf16: bool = False


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available on this machine; "
                           f"use device: auto or cpu")
    return torch.device(name)


@dataclass
class Run:
    """One run of a batch: model m of the batch, its method and seed, and its own state."""

    m: int
    method: Method
    seed: int
    name: str
    sampler: torch.Generator | None = None  # per context: derive_seed(seed, SAMPLER, k)
    lr_mult: float = 1.0  # Entropy-LR's learning-rate multiplier
    iteration: int = 0  # iterations completed
    diverged_at: int | None = None  # first iteration with a non-finite loss or gain

    def diverged(self) -> bool:
        return self.diverged_at is not None


class Trainer:
    # 3: one model hierarchy, explicit gain steps, records and evaluator apart; 4: the gain dynamics
    # under models.gain_control (was models.gain)
    CHECKPOINT_FORMAT = 4

    def __init__(self, stream: Stream, methods: list[Method] | Method, seeds: list[int] | int,
                 settings: RunSettings, device: torch.device | str = "cpu"):
        methods = [methods] if isinstance(methods, Method) else list(methods)
        seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
        if len(methods) != len(seeds) or not methods:
            raise ValueError(f"give one method per seed, at least one run ({len(methods)} methods, {len(seeds)} seeds)")
        bench = get_benchmark(stream.benchmark)
        self.stream, self.settings, self.device = stream, settings, torch.device(device)
        self.schedule = Schedule.of(settings, stream.task_sizes("test"))
        self.data = DeviceStream(stream, self.device, settings.test_augment)
        self.runs = [Run(m, method, seed, f"{stream.benchmark}/{method.name}/seed {seed}")
                     for m, (method, seed) in enumerate(zip(methods, seeds))]
        self.R = len(self.runs)
        self.models = build_models(bench.net, bench.num_classes, self.data.image, seeds,
                                   [m.gain_settings(settings.eta) for m in methods]).to(self.device)
        # one optimizer per stretch of consecutive runs with the same method (Entropy-LR: one per run)
        self.optimizers: list[tuple[int, int, MethodOptimizer]] = []
        a = 0
        for m in range(1, self.R + 1):
            if m == self.R or methods[m] != methods[a] or methods[a].lr_drive:
                self.optimizers.append((a, m, MethodOptimizer(methods[a], self.models.param_refs(a, m))))
                a = m
        self.evaluator = Evaluator(self.data, self.schedule, seeds, settings.eval_batch_size, settings.eval_subset,
                                   settings.eval_bf16)
        self.records = Records(self.R, self.schedule, list(self.models.modulated()), settings.batch_size, self.device)
        self.iteration = 0  # iterations completed

    @property
    def total_iters(self) -> int:
        return self.schedule.total_iters

    # ------------------------------------------------------------------ one iteration of every model
    def step(self) -> None:
        t = self.iteration + 1
        k = self.schedule.context(t)
        gain = self.models.gain_control  # the gain dynamics of every model (gain.GainControl)
        if (t - 1) % self.settings.iters_per_context == 0:
            self.start_context(k)  # 1. the first iteration of a context (context 1 too): see start_context
        lrs = self.learning_rates()  # 2. each run's lr (Entropy-LR: its multiplier moves with the last entropy)
        gain.update()  # 3. the gain update, driven by the last iteration's entropy
        x, y = self.data.sample(k, [r.sampler for r in self.runs], self.settings.batch_size)
        self.models.train()
        logits = self.models(x)  # 4. forward: R×B×K, each model on its own mini-batch
        R, B, K = logits.shape
        # 5. the loss: each model's mean cross-entropy over its batch, summed in one fixed order
        # (gain.batch_mean), so a model's loss does not depend on how many models train beside it
        losses = batch_mean(F.cross_entropy(logits.reshape(-1, K), y.reshape(-1), reduction="none").view(R, B))
        for p in self.models.parameters():
            p.grad = None
        losses.sum().backward()  # 6. backward: the models share nothing, each gets its own loss's gradient
        for a, _, opt in self.optimizers:
            opt.step(lrs[a])  # 7. the optimizer step
        gain.observe(logits)  # 8. this batch's entropy, kept for the next gain update
        gains = [layer.mean_gain() for layer in self.models.modulated().values()]  # each layer's `gain` tensor
        self.records.training(t, losses, logits, y, gain.entropy, gains, lrs)  # 9. the records
        self.iteration = t
        for r in self.runs:
            if r.diverged_at is None:
                r.iteration = t
        if self.schedule.evaluated(t):
            self.records.evaluation(t, *self.evaluator(self.models, k))  # 10. continual evaluation

    def start_context(self, k: int) -> None:
        """At the first iteration of context k, context 1 included: a fresh sampler per run, the
        oracle methods' optimizer reset (from context 2 on: a switch), and the bump's pulse (the
        bump method's gain is bumped at the first iteration of every context, docs/protocol.md §4)."""
        for r in self.runs:
            r.sampler = torch.Generator().manual_seed(derive_seed(r.seed, PURPOSE_SAMPLER, k))
        if k > 1:
            for _, _, opt in self.optimizers:
                if opt.method.reset_on_switch:
                    opt.reset()
        self.models.gain_control.pulse()

    def learning_rates(self) -> list[float]:
        for r in self.runs:
            if r.method.lr_drive:  # Entropy-LR: the gain recursion drives the lr multiplier instead
                r.lr_mult = lr_multiplier_update(r.lr_mult, r.method.gamma, r.method.eta_or(self.settings.eta),
                                                 float(self.models.gain_control.entropy[r.m]))
        return [r.method.lr * r.lr_mult for r in self.runs]

    # ------------------------------------------------------------------ what a run leaves
    def log(self, m: int) -> pd.DataFrame:
        """Run m's tidy per-iteration log, up to its last iteration (records.Records.log)."""
        return self.records.log(m, self.runs[m].iteration)

    def alive(self) -> list[Run]:
        return [r for r in self.runs if r.diverged_at is None]

    def name(self) -> str:
        return self.runs[0].name if self.R == 1 else f"{self.stream.benchmark}/batch of {self.R} runs"

    def work(self) -> np.ndarray:
        """Each iteration's arithmetic in forward-image units (training: its FLOPs over one forward's;
        evaluation: the images the schedule forwards), for the predicted time left."""
        bench = get_benchmark(self.stream.benchmark)
        arch, image = get_arch(bench.net), self.data.image
        train = self.settings.batch_size * arch.train_flops(image, bench.num_classes) / arch.forward_flops(
            image, bench.num_classes)
        return np.array([train + (self.schedule.images(self.schedule.context(t)) if self.schedule.evaluated(t) else 0)
                         for t in range(1, self.total_iters + 1)], dtype=float)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything the rest of the runs depends on: the models (weights, BatchNorm statistics,
        gains, kept entropies), optimizer states, lr multipliers, random generators, the records."""
        return {"format": self.CHECKPOINT_FORMAT, "iteration": self.iteration, "models": self.models.state_dict(),
                "optimizers": [opt.state for _, _, opt in self.optimizers],
                "runs": [{"lr_mult": r.lr_mult, "iteration": r.iteration, "diverged_at": r.diverged_at,
                          "sampler": None if r.sampler is None else r.sampler.get_state()} for r in self.runs],
                "evaluator": self.evaluator.state_dict(), "records": self.records.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != self.CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r}, this code writes {self.CHECKPOINT_FORMAT}")
        self.models.load_state_dict(state["models"])
        for (_, _, opt), saved in zip(self.optimizers, state["optimizers"]):
            opt.state = [dict(s) for s in saved]
        for r, saved in zip(self.runs, state["runs"]):
            r.lr_mult, r.iteration, r.diverged_at = saved["lr_mult"], saved["iteration"], saved["diverged_at"]
            r.sampler = None
            if saved["sampler"] is not None:  # CPU generators, whatever map_location did
                r.sampler = torch.Generator()
                r.sampler.set_state(saved["sampler"].cpu())
        self.evaluator.load_state_dict(state["evaluator"])
        self.records.load_state_dict(state["records"])
        self.iteration = int(state["iteration"])


# ---------------------------------------------------------------------- the loop

DIVERGENCE_CHECK_EVERY = 25  # iterations between checks (a check syncs with the device)


def train(trainer: Trainer, progress=sys.stderr, checkpoint=None, checkpoint_every: int = 0) -> None:
    """Train every run to its end or its divergence: a divergence check every
    DIVERGENCE_CHECK_EVERY iterations (the loop ends when every run has stopped), a progress line
    every tenth of the run (or `progress_every` iterations) with the elapsed time and the time left
    (elapsed × work left / work done, Trainer.work), and `checkpoint(trainer)` every
    `checkpoint_every` iterations (0: never) so that a killed job can resume from there."""
    T = trainer.total_iters
    every = trainer.settings.progress_every or max(1, T // 10)
    cum = np.cumsum(trainer.work())
    start, first = time.perf_counter(), trainer.iteration
    while trainer.iteration < T:
        trainer.step()
        t = trainer.iteration
        if (t % DIVERGENCE_CHECK_EVERY == 0 or t == T) and stop_on_divergence(trainer, progress):
            return
        if progress is not None and (t % every == 0 or t == T):
            elapsed = time.perf_counter() - start
            done = cum[t - 1] - (cum[first - 1] if first else 0.0)
            left = elapsed * (cum[-1] - cum[t - 1]) / max(done, 1e-12)
            print(f"{progress_line(trainer, t)} | {(t - first) / max(elapsed, 1e-9):.3g} it/s, elapsed "
                  f"{elapsed:.0f} s, left ~{left:.0f} s", file=progress, flush=True)
        if checkpoint is not None and checkpoint_every and t % checkpoint_every == 0 and t < T:
            checkpoint(trainer)


def stop_on_divergence(trainer: Trainer, progress) -> bool:
    """NaN or inf in a run's training loss or gain stops that run: its log keeps the iterations
    before the first bad one, and `diverged_at` records it; the other runs go on. Reports newly
    diverged runs; True when every run has stopped."""
    lo = max(0, trainer.iteration - DIVERGENCE_CHECK_EVERY)
    bad = trainer.records.not_finite(lo, trainer.iteration)
    for r in trainer.alive():
        if bool(bad[r.m].any()):
            r.diverged_at = lo + int(bad[r.m].nonzero()[0, 0]) + 1
            r.iteration = r.diverged_at - 1
            if progress is not None:
                also = " (the batch goes on)" if trainer.alive() else ""
                print(f"[{r.name}] DIVERGED: non-finite loss or gain at iteration {r.diverged_at}; "
                      f"run stopped{also}", file=progress, flush=True)
    return not trainer.alive()


def progress_line(trainer: Trainer, t: int) -> str:
    acc = trainer.records.task1_accuracy(t)
    acc1 = "n/a" if acc is None else (f"{float(acc[0]):.2f}%" if trainer.R == 1
                                      else f"{float(acc.min()):.2f}-{float(acc.max()):.2f}%")
    loss = trainer.records.train_loss[:, t - 1]
    many = "" if trainer.R == 1 else f" (mean), {len(trainer.alive())} running"
    return (f"[{trainer.name()}] iter {t}/{trainer.total_iters} context {trainer.schedule.context(t)}/"
            f"{trainer.schedule.n_contexts} train loss {float(loss.mean()):.4f}{many} task-1 acc {acc1} "
            f"gain {float(trainer.records.gain[0, t - 1, -1]):.4f}")


def make_trainer(stream: Stream, method_name: str, method_settings: dict | None, settings: RunSettings,
                 seed: int, device: str = "auto") -> Trainer:
    """A single run (R = 1) of a registered method with the config's settings."""
    return Trainer(stream, resolve_method(method_name, method_settings), seed, settings, resolve_device(device))
