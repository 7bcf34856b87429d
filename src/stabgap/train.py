"""Joint incremental training with continual evaluation (SPEC §2, §5, §6).

One run = (run config, seed). Per iteration t = 1..n·I, in context k = ⌈t / I⌉:
  0. at the first iteration of a context: the sampler draws from the union of tasks 1..k; oracle
     methods clear their optimizer state (k > 1); the "bump" gain gets its pulse;
  1. Entropy-LR only: the lr multiplier moves by the previous iteration's entropy;
  2. a batch drawn i.i.d. WITH replacement, uniformly over the union's images;
  3. one training forward (the gain update happens inside it, see gain.py), cross-entropy over all
     outputs, backward, optimizer step; the batch's accuracy/loss come from that same forward;
  4. every ρ iterations and at the end of every context: evaluation (eval mode, no gain update) of
     every seen task's test set in one batched pass.
Nothing is reset at a switch except what a method asks for.

Everything the run records lives in preallocated tensors on the run's device (no host sync per
iteration); `Trainer.runs[m].log()` turns them into the tidy per-iteration table. Writing a run's files
(logs, summaries, checkpoints, provenance) is runfiles.py's.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batched import stack_nets
from .gain import batch_mean, lr_multiplier_update
from .methods import Method, resolve_method
from .nets import build_net
from .optim import RunOptimizer
from .benchmarks import get_benchmark
from .streams import AUGMENTATIONS, Stream


@dataclass(frozen=True)
class RunSettings:
    """What a run needs besides its method and stream (all from config.yaml)."""

    iters_per_context: int
    batch_size: int
    eta: float  # the benchmark's η, used by methods whose own `eta` is unset
    eval_every: int = 1  # ρ
    eval_subset: int | None = None  # fixed per-task test subset (drawn once per seed), None = full
    eval_batch_size: int = 2500  # images per evaluation forward (memory and speed only; results identical)
    progress_every: int = 0  # print a progress line every this many iterations (0: ten per run)
    # v1 CIFAR protocol: augment the test images freshly at every evaluation and, in context k,
    # evaluate k passes and pool them (SPEC §5). Off: one clean pass.
    test_augment: bool = False
    # "seen": evaluate every task seen so far (this reproduction); "task1": task 1 only, as the v1 code did
    eval_scope: str = "seen"
    # evaluation forwards under bf16 autocast (a speed switch, off by default: it changes results;
    # its effect on one run is measured in speed/NOTES.md). Training always runs in fp32.
    eval_bf16: bool = False


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; independent streams for (seed, purpose, context)."""
    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


PURPOSE_SAMPLER, PURPOSE_EVAL_SUBSET, PURPOSE_TEST_AUGMENT = 1, 2, 3


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available on this machine; "
                           f"use device: auto or cpu")
    return torch.device(name)


class RunData:
    """A stream's images and labels on the run's device, in the layout the networks take: training
    images stay uint8 (normalised per batch); the task-ordered test set is normalised once (kept
    uint8 under test augmentation, which augments afresh at every evaluation). One RunData serves
    every run of a batch (batched.py)."""

    def __init__(self, stream: Stream, device: torch.device, test_augment: bool = False):
        bench = get_benchmark(stream.benchmark)
        self.train_x = self._layout(stream.train_x).to(device)
        self.train_y = stream.train_y.to(device)
        self.mean = torch.tensor(bench.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(bench.std, device=device).view(1, -1, 1, 1)
        self.augment = AUGMENTATIONS[bench.augment] if bench.augment else None
        if test_augment and self.augment is None:
            raise ValueError(f"test_augment is on, but benchmark {stream.benchmark!r} has no augmentation")
        test_x = self._layout(stream.test_x).to(device)
        self.test_x = test_x if test_augment else self.normalise(test_x)
        self.test_y = stream.test_y.to(device)

    @staticmethod
    def _layout(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # N×H×W×3 images -> N×3×H×W
            return x.permute(0, 3, 1, 2).contiguous()
        return x.unsqueeze(1)  # N×1×H×W

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div_(255.0) - self.mean) / self.std


class Run:
    """One run of a batch: its method and seed, its random streams, its test subset, its records
    (views of the batch's rows) and its log. `Trainer.runs[m]`."""

    def __init__(self, trainer: "Trainer", m: int, method: Method, seed: int):
        self.trainer, self.m, self.method, self.seed = trainer, m, method, int(seed)
        self.stream, self.settings = trainer.stream, trainer.settings
        self.n_contexts, self.total_iters = trainer.n_contexts, trainer.total_iters
        self.lr_mult = 1.0
        self.sampler: torch.Generator | None = None  # per context, derive_seed(seed, SAMPLER, k)
        self.test_aug_gen = torch.Generator().manual_seed(derive_seed(self.seed, PURPOSE_TEST_AUGMENT))
        self.iteration = 0  # iterations completed
        self.diverged_at: int | None = None  # first iteration with a non-finite loss or gain
        self._test_subset(trainer.data)

    def _test_subset(self, data: RunData) -> None:
        """The task-ordered test set, or with `eval_subset` a fixed subset of each task's test
        images drawn once per seed (the shared test set itself when there is no subset)."""
        s, sub = self.stream, self.settings.eval_subset
        self.test_x, self.test_y, self.test_offsets = data.test_x, data.test_y, list(s.test_offsets)
        if sub is not None:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, PURPOSE_EVAL_SUBSET))
            parts, offsets = [], [0]
            for j in range(s.n_tasks):
                idx = torch.arange(s.test_offsets[j], s.test_offsets[j + 1])
                if sub < len(idx):
                    idx = idx[torch.randperm(len(idx), generator=gen)[:sub].sort().values]
                parts.append(idx)
                offsets.append(offsets[-1] + len(idx))
            idx = torch.cat(parts).to(data.test_x.device)
            self.test_x, self.test_y, self.test_offsets = data.test_x[idx], data.test_y[idx], offsets
        self.test_sizes = [b - a for a, b in zip(self.test_offsets[:-1], self.test_offsets[1:])]

    def diverged(self) -> bool:
        return self.diverged_at is not None

    def name(self) -> str:
        return f"{self.stream.benchmark}/{self.method.name}/seed {self.seed}"

    def log(self) -> pd.DataFrame:
        """The tidy per-iteration log: one 'train' row per iteration (task 0) and one 'test' row per
        evaluated iteration and seen task; per-iteration columns (entropy, lr, gain_*) on every row."""
        tr, m, T = self.trainer, self.m, self.iteration
        I = self.settings.iters_per_context
        it = np.arange(1, T + 1)
        ctx = (it - 1) // I + 1
        per_iter = {"entropy": tr.rec_entropy[m, :T].double().cpu().numpy(), "lr": tr.rec_lr[m, :T].numpy()}
        gains = tr.rec_gain[m, :T].double().cpu().numpy()
        for c, name in enumerate(tr.gain_names):
            per_iter[f"gain_{name}"] = gains[:, c]
        B = self.settings.batch_size
        train = pd.DataFrame({"iteration": it, "context": ctx, "split": "train", "task": 0, "n": B,
                              "accuracy": tr.rec_train_correct[m, :T].cpu().numpy() * 100.0 / B,
                              "loss": tr.rec_train_loss[m, :T].double().cpu().numpy(), **per_iter})
        rows = [r for r, t in enumerate(tr.eval_iters) if t <= T]
        ev_t = np.array([tr.eval_iters[r] for r in rows], dtype=np.int64)
        passes = tr.rec_eval_passes[rows].numpy()[:, None]  # pooled passes (v1 test augmentation)
        correct = tr.rec_test_correct[m, rows].cpu().numpy() / passes
        tloss = tr.rec_test_loss[m, rows].cpu().numpy() / passes
        sizes = np.array(self.test_sizes)
        frames = []
        n_logged = 1 if self.settings.eval_scope == "task1" else self.n_contexts
        for j in range(n_logged):
            seen = ((ev_t - 1) // I + 1) >= j + 1
            tt = ev_t[seen]
            frames.append(pd.DataFrame({
                "iteration": tt, "context": (tt - 1) // I + 1, "split": "test",
                "task": j + 1, "n": sizes[j], "accuracy": correct[seen, j] * 100.0 / sizes[j],
                "loss": tloss[seen, j] / sizes[j], **{k: v[tt - 1] for k, v in per_iter.items()}}))
        log = pd.concat([train] + frames, ignore_index=True)
        log = log.sort_values(["iteration", "task"], kind="stable").reset_index(drop=True)
        return log.astype({"iteration": "int64", "context": "int64", "task": "int64", "n": "int64"})


class Trainer:
    """R runs of one stream (R = 1: a single run) trained together as one batch of models
    (batched.py): the one implementation of a training iteration and an evaluation. The runs may
    differ in method and seed; each keeps its own initialisation, gains, BatchNorm statistics,
    optimizer state, sampler, augmentation stream, test subset, divergence stop and log, and on the
    CPU gets bitwise the log it gets alone (tests/test_batched.py)."""

    DIVERGENCE_CHECK_EVERY = 25  # iterations between checks (a check syncs with the device)
    RECORDS = ("rec_train_loss", "rec_train_correct", "rec_entropy", "rec_gain", "rec_lr", "rec_test_correct",
               "rec_test_loss", "rec_eval_passes")
    CHECKPOINT_FORMAT = 2  # 2: one trainer for 1..R runs

    def __init__(self, stream: Stream, methods: list[Method] | Method, seeds: list[int] | int,
                 settings: RunSettings, device: torch.device | str = "cpu"):
        methods = [methods] if isinstance(methods, Method) else list(methods)
        seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
        if len(methods) != len(seeds) or not methods:
            raise ValueError(f"give one method per seed, at least one run ({len(methods)} methods, {len(seeds)} seeds)")
        self.stream, self.settings, self.device = stream, settings, torch.device(device)
        bench = get_benchmark(stream.benchmark)
        self.n_contexts = stream.n_tasks
        self.total_iters = settings.iters_per_context * self.n_contexts
        self.data = RunData(stream, self.device, settings.test_augment)
        self.R = R = len(methods)

        # continual-evaluation schedule: every ρ iterations and at the end of every context
        I, rho = settings.iters_per_context, settings.eval_every
        self.eval_iters = [t for t in range(1, self.total_iters + 1) if t % rho == 0 or t % I == 0]
        self._eval_row = {t: i for i, t in enumerate(self.eval_iters)}

        self.runs = [Run(self, m, method, seed) for m, (method, seed) in enumerate(zip(methods, seeds))]
        input_shape = tuple(self.data.train_x.shape[1:])
        nets = [build_net(bench.net, bench.num_classes, input_shape, r.method.gain_control(settings.eta), seed=r.seed)
                for r in self.runs]
        self.net = stack_nets(nets).to(self.device)
        self.gain_names = list(self.net.modulated())

        # test images: shared by all models, or each seed's own fixed subset (evaluation.subset)
        first = self.runs[0]
        self.test_offsets, self.test_sizes = first.test_offsets, first.test_sizes
        self.shared_test = settings.eval_subset is None
        if not self.shared_test:
            self.test_x = torch.stack([r.test_x for r in self.runs])
            self.test_y = torch.stack([r.test_y for r in self.runs])
            for r in self.runs:  # held once, in the stacked tensors
                r.test_x = r.test_y = None
        else:
            self.test_x, self.test_y = self.data.test_x, self.data.test_y

        # one optimizer per stretch of consecutive runs with the same method (Entropy-LR: one per
        # run, its lr moves with its own entropy)
        self.optimizers: list[tuple[int, int, RunOptimizer]] = []
        a = 0
        for m in range(1, R + 1):
            if m == R or self.runs[m].method != self.runs[a].method or self.runs[a].method.lr_drive:
                self.optimizers.append((a, m, RunOptimizer(self.runs[a].method, self.net.param_refs(a, m))))
                a = m

        T, E, n, L = self.total_iters, len(self.eval_iters), self.n_contexts, len(self.gain_names)
        dev = self.device
        self.rec_train_loss = torch.zeros(R, T, device=dev)
        self.rec_train_correct = torch.zeros(R, T, dtype=torch.long, device=dev)
        self.rec_entropy = torch.zeros(R, T, device=dev)
        self.rec_gain = torch.zeros(R, T, L, device=dev)
        self.rec_lr = torch.zeros(R, T, dtype=torch.float64)
        self.rec_test_correct = torch.zeros(R, E, n, dtype=torch.long, device=dev)
        self.rec_test_loss = torch.zeros(R, E, n, dtype=torch.float64, device=dev)
        self.rec_eval_passes = torch.ones(E, dtype=torch.long)
        self.iteration = 0

    def context_of(self, t: int) -> int:
        return (t - 1) // self.settings.iters_per_context + 1

    def sample_batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's mini-batch from the union of tasks 1..k, drawn (and augmented, on the uint8
        images) from that run's own generator: exactly what it draws alone. R×B×C×H×W, R×B."""
        n_union, B, data = self.stream.train_offsets[k], self.settings.batch_size, self.data
        idx = [torch.randint(0, n_union, (B,), generator=r.sampler) for r in self.runs]
        if data.augment is None:
            idx = torch.stack(idx).to(self.device)
            return data.normalise(data.train_x[idx]), data.train_y[idx]
        xs = []
        for r, i in zip(self.runs, idx):
            i = i.to(self.device)
            xs.append(data.augment(data.train_x[i], r.sampler))
        idx = torch.stack(idx).to(self.device)
        return data.normalise(torch.stack(xs)), data.train_y[idx]

    # ------------------------------------------------------------------ one iteration of every model
    def step(self) -> None:
        t = self.iteration + 1
        k = self.context_of(t)
        if (t - 1) % self.settings.iters_per_context == 0:  # first iteration of context k
            for r in self.runs:
                r.sampler = torch.Generator().manual_seed(derive_seed(r.seed, PURPOSE_SAMPLER, k))
            if k > 1:
                for _, _, opt in self.optimizers:
                    if opt.method.reset_on_switch:
                        opt.reset()
            self.net.gain_control.pulse()
        for r in self.runs:
            if r.method.lr_drive:  # Entropy-LR: the recursion drives the lr multiplier
                r.lr_mult = lr_multiplier_update(r.lr_mult, r.method.gamma, r.method.eta_or(self.settings.eta),
                                                 float(self.net.gain_control.entropy[r.m]))
        lrs = [r.method.lr * r.lr_mult for r in self.runs]

        x, y = self.sample_batch(k)
        self.net.train()
        logits = self.net(x)  # R×B×K; every model's gain update at its start, entropy kept at its end
        R, B, K = logits.shape
        losses = batch_mean(F.cross_entropy(logits.reshape(-1, K), y.reshape(-1), reduction="none").view(R, B))
        for p in self.net.parameters():
            p.grad = None
        losses.sum().backward()  # the models share nothing: each gets its own loss's gradient
        for a, _, opt in self.optimizers:
            opt.step(lrs[a])

        i = t - 1
        with torch.no_grad():
            self.rec_train_loss[:, i] = losses.detach()
            self.rec_train_correct[:, i] = (logits.argmax(-1) == y).sum(1)
            self.rec_entropy[:, i] = self.net.gain_control.entropy
            for c, layer in enumerate(self.net.modulated().values()):
                self.rec_gain[:, i, c] = layer.mean_gain()
        self.rec_lr[:, i] = torch.tensor(lrs, dtype=torch.float64)
        self.iteration = t
        for r in self.runs:
            if r.diverged_at is None:
                r.iteration = t
        if t in self._eval_row:
            self.evaluate(t, k)

    @torch.no_grad()
    def evaluate(self, t: int, k: int) -> None:
        """Every model on all seen tasks (1..k): one pass over the prefix of the task-ordered test set
        (k pooled passes over freshly augmented images under the v1 test-augmentation protocol)."""
        self.net.eval()
        st = self.settings
        passes = k if st.test_augment else 1
        if st.eval_scope == "task1":
            k = 1
        R, n = self.R, self.test_offsets[k]
        correct = torch.zeros(R, n, dtype=torch.long, device=self.device)
        losses = torch.zeros(R, n, dtype=torch.float64, device=self.device)
        bs = st.eval_batch_size
        # CPU: model by model, each forward exactly the one its run makes alone (bitwise equal, and
        # cache-sized; a CPU gains nothing from larger products); GPU: every model in each forward
        groups = [slice(j, j + 1) for j in range(R)] if self.device.type == "cpu" else [slice(0, R)]
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=st.eval_bf16)
        for g in groups:
            chosen = range(R)[g]
            for _ in range(passes):
                for a in range(0, n, bs):
                    b = min(a + bs, n)
                    x = self.test_x[a:b] if self.shared_test else self.test_x[g, a:b]
                    if st.test_augment:  # each run augments with its own generator, as alone
                        x = torch.stack([self.data.normalise(self.data.augment(x if self.shared_test else x[i],
                                                                               self.runs[m].test_aug_gen))
                                         for i, m in enumerate(chosen)])
                    y = (self.test_y[a:b] if self.shared_test else self.test_y[g, a:b]).expand(len(chosen), -1)
                    with autocast:
                        logits = self.net(x, g)
                    correct[g, a:b] += logits.argmax(-1) == y
                    losses[g, a:b] += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                      reduction="none").view(len(chosen), -1)
        off = torch.tensor(self.test_offsets[:k + 1], device=self.device)
        zero = torch.zeros(R, 1, device=self.device)
        c = torch.cat([zero.long(), correct.cumsum(1)], dim=1)
        s = torch.cat([zero.double(), losses.cumsum(1)], dim=1)
        row = self._eval_row[t]
        self.rec_eval_passes[row] = passes
        self.rec_test_correct[:, row, :k] = c[:, off[1:]] - c[:, off[:-1]]
        self.rec_test_loss[:, row, :k] = s[:, off[1:]] - s[:, off[:-1]]
        self.net.train()

    # ------------------------------------------------------------------ the whole batch
    def alive(self) -> list[Run]:
        return [r for r in self.runs if r.diverged_at is None]

    def check_divergence(self) -> list[Run]:
        """NaN or inf in a run's training loss or gain stops that run: its log keeps the iterations
        before the first bad one, and `diverged_at` records it; the other runs go on."""
        lo = max(0, self.iteration - self.DIVERGENCE_CHECK_EVERY)
        bad = ~(torch.isfinite(self.rec_train_loss[:, lo:self.iteration])
                & torch.isfinite(self.rec_gain[:, lo:self.iteration]).all(dim=2))
        newly = []
        for r in self.alive():
            if bool(bad[r.m].any()):
                r.diverged_at = lo + int(bad[r.m].nonzero()[0, 0]) + 1
                r.iteration = r.diverged_at - 1
                newly.append(r)
        return newly

    def stop_on_divergence(self, progress) -> bool:
        """Report newly diverged runs; True when every run has stopped."""
        for r in self.check_divergence():
            if progress is not None:
                also = " (the batch goes on)" if self.alive() else ""
                print(f"[{r.name()}] DIVERGED: non-finite loss or gain at iteration {r.diverged_at}; "
                      f"run stopped{also}", file=progress, flush=True)
        return not self.alive()

    def name(self) -> str:
        return self.runs[0].name() if self.R == 1 else f"{self.stream.benchmark}/batch of {self.R} runs"

    def progress_line(self, t: int) -> str:
        row = self._eval_row.get(t)
        acc1 = "n/a"
        if row is not None:
            acc = 100.0 * self.rec_test_correct[:, row, 0].double().cpu() / (self.test_sizes[0] * int(
                self.rec_eval_passes[row]))
            acc1 = f"{float(acc[0]):.2f}%" if self.R == 1 else f"{float(acc.min()):.2f}-{float(acc.max()):.2f}%"
        loss = self.rec_train_loss[:, t - 1]
        many = "" if self.R == 1 else f" (mean), {len(self.alive())} running"
        return (f"[{self.name()}] iter {t}/{self.total_iters} context {self.context_of(t)}/{self.n_contexts} "
                f"train loss {float(loss.mean()):.4f}{many} task-1 acc {acc1} "
                f"gain {float(self.rec_gain[0, t - 1, -1]):.4f}")

    def run(self, progress=sys.stderr, checkpoint=None, checkpoint_every: int = 0, costs=None) -> None:
        """Train every run to its end (or its divergence); see `run_loop`."""
        run_loop(self, progress, checkpoint, checkpoint_every, costs)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything the rest of the runs depends on: the models (weights, BatchNorm statistics,
        gains, kept entropies), optimizer states, lr multipliers, random generators, the logs so far."""
        return {"format": self.CHECKPOINT_FORMAT, "iteration": self.iteration, "net": self.net.state_dict(),
                "optimizers": [opt.state for _, _, opt in self.optimizers],
                "runs": [{"lr_mult": r.lr_mult, "iteration": r.iteration, "diverged_at": r.diverged_at,
                          "sampler": None if r.sampler is None else r.sampler.get_state(),
                          "test_aug_gen": r.test_aug_gen.get_state()} for r in self.runs],
                "records": {name: getattr(self, name) for name in self.RECORDS}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != self.CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r}, this code writes {self.CHECKPOINT_FORMAT}")
        self.net.load_state_dict(state["net"])
        for (_, _, opt), saved in zip(self.optimizers, state["optimizers"]):
            opt.state = [dict(s) for s in saved]
        for r, saved in zip(self.runs, state["runs"]):
            r.lr_mult, r.iteration, r.diverged_at = saved["lr_mult"], saved["iteration"], saved["diverged_at"]
            r.sampler = None
            if saved["sampler"] is not None:  # CPU generators, whatever map_location did
                r.sampler = torch.Generator()
                r.sampler.set_state(saved["sampler"].cpu())
            r.test_aug_gen.set_state(saved["test_aug_gen"].cpu())
        for name, value in state["records"].items():
            getattr(self, name).copy_(value)
        self.iteration = int(state["iteration"])


def run_loop(trainer: Trainer, progress=sys.stderr, checkpoint=None, checkpoint_every: int = 0,
             costs=None) -> None:
    """Train to the end: a divergence check every DIVERGENCE_CHECK_EVERY iterations (the loop ends
    when every run has stopped), a progress line every tenth of the run (or `progress_every`
    iterations) with the elapsed time and the predicted time left, and `checkpoint(trainer)` every
    `checkpoint_every` iterations (0: never) so that a killed job can resume from there.

    Time left = elapsed × (work left / work done), the work of each iteration from `costs` (its
    FLOPs, cost.iteration_flops: evaluation grows with the seen tasks), or equal weights."""
    T = trainer.total_iters
    every = trainer.settings.progress_every or max(1, T // 10)
    cum = np.cumsum(np.asarray(costs, dtype=float) if costs is not None else np.ones(T))
    start, first = time.perf_counter(), trainer.iteration
    while trainer.iteration < T:
        trainer.step()
        t = trainer.iteration
        if (t % trainer.DIVERGENCE_CHECK_EVERY == 0 or t == T) and trainer.stop_on_divergence(progress):
            return
        if progress is not None and (t % every == 0 or t == T):
            elapsed = time.perf_counter() - start
            done = cum[t - 1] - (cum[first - 1] if first else 0.0)
            left = elapsed * (cum[-1] - cum[t - 1]) / max(done, 1e-12)
            print(f"{trainer.progress_line(t)} | {(t - first) / max(elapsed, 1e-9):.3g} it/s, elapsed "
                  f"{elapsed:.0f} s, left ~{left:.0f} s", file=progress, flush=True)
        if checkpoint is not None and checkpoint_every and t % checkpoint_every == 0 and t < T:
            checkpoint(trainer)


def make_trainer(stream: Stream, method_name: str, method_settings: dict | None, settings: RunSettings,
                 seed: int, device: str = "auto") -> Trainer:
    """A single run (R = 1) of a registered method with the config's settings."""
    return Trainer(stream, resolve_method(method_name, method_settings), seed, settings, resolve_device(device))
