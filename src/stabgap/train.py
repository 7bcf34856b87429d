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
iteration); `Trainer.log()` turns them into the tidy per-iteration table.
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

from .gain import batch_mean
from .methods import Method, make_optimizer, reset_optimizer_state, resolve_method
from .nets import build_net
from .streams import AUGMENTATIONS, Stream, get_benchmark


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


class Trainer:
    def __init__(self, stream: Stream, method: Method, settings: RunSettings, seed: int,
                 device: torch.device | str = "cpu", data: RunData | None = None):
        self.stream, self.method, self.settings, self.seed = stream, method, settings, int(seed)
        self.device = torch.device(device)
        bench = get_benchmark(stream.benchmark)
        self.n_contexts = stream.n_tasks
        self.total_iters = settings.iters_per_context * self.n_contexts

        self.data = data if data is not None else RunData(stream, self.device, settings.test_augment)
        self.train_x, self.train_y, self.augment = self.data.train_x, self.data.train_y, self.data.augment
        self._normalise = self.data.normalise
        self.test_aug_gen = torch.Generator().manual_seed(derive_seed(self.seed, PURPOSE_TEST_AUGMENT))
        self._prepare_test_set()

        input_shape = tuple(self.train_x.shape[1:])
        self.net = build_net(bench.net, bench.num_classes, input_shape, method.gain_control(settings.eta),
                             seed=self.seed).to(self.device)
        self.optimizer = make_optimizer(method, self.net)
        self.lr_mult = 1.0
        self.gain_names = list(self.net.modulated())

        # continual-evaluation schedule: every ρ iterations and at the end of every context
        I, rho = settings.iters_per_context, settings.eval_every
        self.eval_iters = [t for t in range(1, self.total_iters + 1) if t % rho == 0 or t % I == 0]
        self._eval_row = {t: i for i, t in enumerate(self.eval_iters)}

        T, E, n, L = self.total_iters, len(self.eval_iters), self.n_contexts, len(self.gain_names)
        dev = self.device
        self.rec_train_loss = torch.zeros(T, device=dev)
        self.rec_train_correct = torch.zeros(T, dtype=torch.long, device=dev)
        self.rec_entropy = torch.zeros(T, device=dev)
        self.rec_gain = torch.zeros(T, L, device=dev)
        self.rec_lr = torch.zeros(T, dtype=torch.float64)
        self.rec_test_correct = torch.zeros(E, n, dtype=torch.long, device=dev)
        self.rec_test_loss = torch.zeros(E, n, dtype=torch.float64, device=dev)
        self.rec_eval_passes = torch.ones(E, dtype=torch.long)
        self.iteration = 0  # iterations completed
        self.diverged_at: int | None = None  # first iteration with a non-finite loss or gain
        self.sampler: torch.Generator | None = None

    # ------------------------------------------------------------------ data
    def _prepare_test_set(self) -> None:
        """The task-ordered test set, or with `eval_subset` a fixed subset of each task's test
        images drawn once per seed (a view of the shared test set when there is no subset)."""
        s, sub = self.stream, self.settings.eval_subset
        self.test_x, self.test_y = self.data.test_x, self.data.test_y
        self.test_offsets = list(s.test_offsets)
        if sub is not None:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, PURPOSE_EVAL_SUBSET))
            parts, offsets = [], [0]
            for j in range(s.n_tasks):
                idx = torch.arange(s.test_offsets[j], s.test_offsets[j + 1])
                if sub < len(idx):
                    idx = idx[torch.randperm(len(idx), generator=gen)[:sub].sort().values]
                parts.append(idx)
                offsets.append(offsets[-1] + len(idx))
            idx = torch.cat(parts).to(self.device)
            self.test_x, self.test_y, self.test_offsets = self.test_x[idx], self.test_y[idx], offsets
        self.test_sizes = [b - a for a, b in zip(self.test_offsets[:-1], self.test_offsets[1:])]

    def context_of(self, t: int) -> int:
        return (t - 1) // self.settings.iters_per_context + 1

    def sample_batch(self, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_union = self.stream.train_offsets[context]
        idx = torch.randint(0, n_union, (self.settings.batch_size,), generator=self.sampler).to(self.device)
        x = self.train_x[idx]
        if self.augment is not None:  # on the uint8 batch, drawing from the same per-context generator
            x = self.augment(x, self.sampler)
        return self._normalise(x), self.train_y[idx]

    # ------------------------------------------------------------------ one iteration
    def step(self) -> None:
        t = self.iteration + 1
        k = self.context_of(t)
        if (t - 1) % self.settings.iters_per_context == 0:  # first iteration of context k
            self.sampler = torch.Generator().manual_seed(derive_seed(self.seed, PURPOSE_SAMPLER, k))
            if k > 1 and self.method.reset_on_switch:
                reset_optimizer_state(self.optimizer)
            self.net.gain_control.pulse()
        if self.method.lr_drive:
            H = float(self.net.gain_control.entropy)
            self.lr_mult = float(self.method.gamma * self.lr_mult + (1 - self.method.gamma)
                                 + self.method.eta_or(self.settings.eta) * H)
            for group in self.optimizer.param_groups:
                group["lr"] = self.method.lr * self.lr_mult

        x, y = self.sample_batch(k)
        self.net.train()
        logits = self.net(x)  # gain update at its start, entropy kept at its end
        loss = batch_mean(F.cross_entropy(logits, y, reduction="none"))  # the batch's mean loss
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        i = t - 1
        with torch.no_grad():
            self.rec_train_loss[i] = loss.detach()
            self.rec_train_correct[i] = (logits.argmax(1) == y).sum()
            self.rec_entropy[i] = self.net.gain_control.entropy
            for c, layer in enumerate(self.net.modulated().values()):
                self.rec_gain[i, c] = layer.mean_gain()
        self.rec_lr[i] = self.method.lr * self.lr_mult
        self.iteration = t
        if t in self._eval_row:
            self.evaluate(t, k)

    @torch.no_grad()
    def evaluate(self, t: int, k: int) -> None:
        """All seen tasks (1..k) in one pass over the prefix of the task-ordered test set
        (k pooled passes over freshly augmented images under the v1 test-augmentation protocol)."""
        self.net.eval()
        passes = k if self.settings.test_augment else 1  # v1: k pooled passes in context k
        if self.settings.eval_scope == "task1":
            k = 1
        m = self.test_offsets[k]
        correct = torch.zeros(m, dtype=torch.long, device=self.device)
        losses = torch.zeros(m, dtype=torch.float64, device=self.device)
        bs = self.settings.eval_batch_size
        for _ in range(passes):
            for a in range(0, m, bs):
                b = min(a + bs, m)
                x = self.test_x[a:b]
                if self.settings.test_augment:
                    x = self._normalise(self.augment(x, self.test_aug_gen))
                logits = self.net(x)
                y = self.test_y[a:b]
                correct[a:b] += logits.argmax(1) == y
                losses[a:b] += F.cross_entropy(logits, y, reduction="none")
        off = torch.tensor(self.test_offsets[:k + 1], device=self.device)
        zero = torch.zeros(1, device=self.device)
        c = torch.cat([zero.long(), correct.cumsum(0)])
        s = torch.cat([zero.double(), losses.cumsum(0)])
        row = self._eval_row[t]
        self.rec_eval_passes[row] = passes
        self.rec_test_correct[row, :k] = c[off[1:]] - c[off[:-1]]
        self.rec_test_loss[row, :k] = s[off[1:]] - s[off[:-1]]
        self.net.train()

    # ------------------------------------------------------------------ the whole run
    DIVERGENCE_CHECK_EVERY = 25  # iterations between checks (a check syncs with the device)

    def check_divergence(self) -> bool:
        """NaN or inf in the training loss or a gain stops the run: the log keeps the iterations
        before the first bad one, and `diverged_at` records it."""
        lo = max(0, self.iteration - self.DIVERGENCE_CHECK_EVERY)
        bad = ~(torch.isfinite(self.rec_train_loss[lo:self.iteration])
                & torch.isfinite(self.rec_gain[lo:self.iteration]).all(dim=1))
        if not bool(bad.any()):
            return False
        self.diverged_at = lo + int(bad.nonzero()[0, 0]) + 1
        self.iteration = self.diverged_at - 1
        return True

    # ------------------------------------------------------------------ checkpoints
    RECORDS = ("rec_train_loss", "rec_train_correct", "rec_entropy", "rec_gain", "rec_lr", "rec_test_correct",
               "rec_test_loss", "rec_eval_passes")

    def state_dict(self) -> dict:
        """Everything the rest of the run depends on: model (weights, BatchNorm statistics, gains, the
        kept entropy), optimizer state, lr multiplier, random generators, and the log so far."""
        return {"iteration": self.iteration, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "lr_mult": self.lr_mult, "sampler": None if self.sampler is None else self.sampler.get_state(),
                "test_aug_gen": self.test_aug_gen.get_state(), "diverged_at": self.diverged_at,
                "records": {name: getattr(self, name) for name in self.RECORDS}}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_mult = state["lr_mult"]
        self.sampler = None
        if state["sampler"] is not None:
            self.sampler = torch.Generator()
            self.sampler.set_state(state["sampler"].cpu())  # CPU generators, whatever map_location did
        self.test_aug_gen.set_state(state["test_aug_gen"].cpu())
        self.diverged_at = state["diverged_at"]
        for name, value in state["records"].items():
            getattr(self, name).copy_(value)
        self.iteration = int(state["iteration"])

    def run(self, progress=sys.stderr, checkpoint=None, checkpoint_every: int = 0) -> None:
        """Train to the end (or to divergence); see `run_loop`."""
        run_loop(self, progress, checkpoint, checkpoint_every)

    def stop_on_divergence(self, progress) -> bool:
        if not self.check_divergence():
            return False
        if progress is not None:
            print(f"[{self.stream.benchmark}/{self.method.name}/seed {self.seed}] DIVERGED: non-finite "
                  f"loss or gain at iteration {self.diverged_at}; run stopped", file=progress, flush=True)
        return True

    def progress_line(self, t: int, rate: float) -> str:
        row = self._eval_row.get(t)
        acc1 = "   n/a"
        if row is not None:
            n1 = self.test_sizes[0] * int(self.rec_eval_passes[row])
            acc1 = f"{100.0 * float(self.rec_test_correct[row, 0]) / n1:6.2f}%"
        return (f"[{self.stream.benchmark}/{self.method.name}/seed {self.seed}] iter {t}/{self.total_iters} "
                f"context {self.context_of(t)}/{self.n_contexts} train loss {float(self.rec_train_loss[t - 1]):.4f} "
                f"task-1 acc {acc1} gain {float(self.rec_gain[t - 1, -1]):.4f} ({rate:.0f} it/s)")

    def log(self) -> pd.DataFrame:
        """The tidy per-iteration log: one 'train' row per iteration (task 0) and one 'test' row per
        evaluated iteration and seen task; per-iteration columns (entropy, lr, gain_*) on every row."""
        T = self.iteration
        it = np.arange(1, T + 1)
        ctx = (it - 1) // self.settings.iters_per_context + 1
        per_iter = {"entropy": self.rec_entropy[:T].double().cpu().numpy(), "lr": self.rec_lr[:T].numpy()}
        gains = self.rec_gain[:T].double().cpu().numpy()
        for c, name in enumerate(self.gain_names):
            per_iter[f"gain_{name}"] = gains[:, c]
        B = self.settings.batch_size
        train = pd.DataFrame({"iteration": it, "context": ctx, "split": "train", "task": 0, "n": B,
                              "accuracy": self.rec_train_correct[:T].cpu().numpy() * 100.0 / B,
                              "loss": self.rec_train_loss[:T].double().cpu().numpy(), **per_iter})
        rows = [r for r, t in enumerate(self.eval_iters) if t <= T]
        ev_t = np.array([self.eval_iters[r] for r in rows], dtype=np.int64)
        passes = self.rec_eval_passes[rows].numpy()[:, None]  # pooled passes (v1 test augmentation)
        correct = self.rec_test_correct[rows].cpu().numpy() / passes
        tloss = self.rec_test_loss[rows].cpu().numpy() / passes
        sizes = np.array(self.test_sizes)
        frames = []
        n_logged = 1 if self.settings.eval_scope == "task1" else self.n_contexts
        for j in range(n_logged):
            seen = ((ev_t - 1) // self.settings.iters_per_context + 1) >= j + 1
            tt = ev_t[seen]
            frames.append(pd.DataFrame({
                "iteration": tt, "context": (tt - 1) // self.settings.iters_per_context + 1, "split": "test",
                "task": j + 1, "n": sizes[j], "accuracy": correct[seen, j] * 100.0 / sizes[j],
                "loss": tloss[seen, j] / sizes[j], **{k: v[tt - 1] for k, v in per_iter.items()}}))
        log = pd.concat([train] + frames, ignore_index=True)
        log = log.sort_values(["iteration", "task"], kind="stable").reset_index(drop=True)
        return log.astype({"iteration": "int64", "context": "int64", "task": "int64", "n": "int64"})

    def diverged(self) -> bool:
        return self.diverged_at is not None


def run_loop(trainer, progress=sys.stderr, checkpoint=None, checkpoint_every: int = 0) -> None:
    """Train a Trainer (or a batched.BatchedTrainer) to its end: a divergence check every
    DIVERGENCE_CHECK_EVERY iterations (`stop_on_divergence` may end the run), a progress line every
    tenth of the run (or `progress_every` iterations), and `checkpoint(trainer)` every
    `checkpoint_every` iterations (0: never) so that a killed job can resume from there."""
    every = trainer.settings.progress_every or max(1, trainer.total_iters // 10)
    start, first = time.perf_counter(), trainer.iteration
    while trainer.iteration < trainer.total_iters:
        trainer.step()
        t = trainer.iteration
        if (t % trainer.DIVERGENCE_CHECK_EVERY == 0 or t == trainer.total_iters) and trainer.stop_on_divergence(progress):
            return
        if progress is not None and (t % every == 0 or t == trainer.total_iters):
            rate = (t - first) / max(time.perf_counter() - start, 1e-9)
            print(trainer.progress_line(t, rate), file=progress, flush=True)
        if checkpoint is not None and checkpoint_every and t % checkpoint_every == 0 and t < trainer.total_iters:
            checkpoint(trainer)


def make_trainer(stream: Stream, method_name: str, method_settings: dict | None, settings: RunSettings,
                 seed: int, device: str = "auto") -> Trainer:
    method = resolve_method(method_name, method_settings)
    return Trainer(stream, method, settings, seed, resolve_device(device))


# ---------------------------------------------------------------------- one run, written to disk

def provenance() -> dict:
    """Library versions and the code version (git commit, dirty tree) of this checkout, if any."""
    import platform
    import subprocess

    import numpy
    import pandas

    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "platform": platform.platform()}
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        info["git_commit"], info["git_dirty"] = commit or None, dirty if commit else None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"], info["git_dirty"] = None, None
    return info


def save_checkpoint(trainer: Trainer, path, run_hash: str, train_seconds: float) -> None:
    """Atomically (a kill mid-write leaves the previous checkpoint intact)."""
    import io

    from .fileio import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"run_hash": run_hash, "train_seconds": train_seconds, "trainer": trainer.state_dict()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, run_hash: str, device: torch.device, progress=sys.stderr) -> dict | None:
    """The checkpoint at `path` if it belongs to a run with these exact settings, else None (a
    checkpoint of other settings is removed, never resumed from)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or corrupted checkpoint: start over, say so
        print(f"checkpoint {path} is unreadable ({err}); starting from iteration 0", file=progress)
        path.unlink()
        return None
    if state.get("run_hash") != run_hash:
        print(f"checkpoint {path} belongs to other settings; removed, starting from iteration 0", file=progress)
        path.unlink()
        return None
    return state


def train_and_save(run: dict, stream_path, out_dir, progress=sys.stderr, checkpoint_path=None,
                   checkpoint_every: int = 0, keep_checkpoint: bool = False) -> dict:
    """Train one (benchmark, method, seed) run and write `log.parquet` and `summary.json` atomically.

    With `checkpoint_path`, the state is saved there every `checkpoint_every` iterations and a rerun
    resumes from it; on a CPU at the same thread count the resumed log is byte-identical to an
    uninterrupted run's. The checkpoint is removed at the end unless `keep_checkpoint`."""
    return train_runs([run], stream_path, [out_dir], progress, checkpoint_path, checkpoint_every,
                      keep_checkpoint)[0]


def train_runs(runs: list[dict], stream_path, out_dirs: list, progress=sys.stderr, checkpoint_path=None,
               checkpoint_every: int = 0, keep_checkpoint: bool = False) -> list[dict]:
    """Train runs of one stream and write each run's `log.parquet` and `summary.json` atomically
    into its folder of `out_dirs`. One run: a Trainer. Several: one BatchedTrainer (batched.py,
    multi-run batching), whose runs may differ only in method and seed (config.batch_key); each run's
    log is the one it would get alone (bitwise on the CPU). Checkpoints as in `train_and_save`; a
    batch has one checkpoint."""
    import datetime
    import io
    import json
    from pathlib import Path

    from .config import batch_key, config_hash
    from .fileio import atomic_write_bytes, atomic_write_text, sha256_file
    from .streams import load_stream

    if len(runs) != len(out_dirs) or not runs:
        raise ValueError(f"give one output folder per run ({len(runs)} runs, {len(out_dirs)} folders)")
    first = runs[0]
    for run in runs[1:]:
        if batch_key(run) != batch_key(first):
            differ = sorted(k for k in batch_key(run) if batch_key(run)[k] != batch_key(first).get(k))
            raise ValueError(f"runs trained as one batch may differ only in method and seed; "
                             f"{run['variant']}/seed{run['seed']} differs from {first['variant']}/seed{first['seed']} "
                             f"in: {', '.join(differ)}")
    torch.set_num_threads(int(first["threads"]))
    device = resolve_device(first["device"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    started = datetime.datetime.now(datetime.timezone.utc)
    stream = load_stream(stream_path)
    if stream.benchmark != first["benchmark"]:
        raise ValueError(f"stream {stream_path} holds benchmark {stream.benchmark!r}, not {first['benchmark']!r}")
    settings = RunSettings(iters_per_context=first["iters_per_context"], batch_size=first["batch_size"],
                           eta=first["eta"], eval_every=first["eval_every"], eval_subset=first["eval_subset"],
                           eval_batch_size=first["eval_batch_size"], test_augment=first.get("test_augment", False))
    if len(runs) == 1:
        trainer = make_trainer(stream, first["method"], first["method_settings"], settings, first["seed"],
                               first["device"])
        members, run_hash = [trainer], config_hash(first)
    else:
        from .batched import BatchedTrainer

        methods = [resolve_method(r["method"], r["method_settings"]) for r in runs]
        trainer = BatchedTrainer(stream, methods, [r["seed"] for r in runs], settings, device)
        members, run_hash = trainer.runs, config_hash(runs)
    before, resumed_from = 0.0, None
    state = load_checkpoint(checkpoint_path, run_hash, device, progress) if checkpoint_path else None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        before, resumed_from = state["train_seconds"], trainer.iteration
        print(f"resumed from checkpoint {checkpoint_path} at iteration {resumed_from}", file=progress, flush=True)
    t0 = time.perf_counter()

    def checkpoint(tr) -> None:
        save_checkpoint(tr, checkpoint_path, run_hash, before + time.perf_counter() - t0)

    trainer.run(progress=progress, checkpoint=checkpoint if checkpoint_path else None,
                checkpoint_every=checkpoint_every)
    wall = before + time.perf_counter() - t0
    batch = None
    if len(runs) > 1:
        batch = {"size": len(runs), "runs": [f"{r['variant']}/seed{r['seed']}" for r in runs]}
    common = {"resumed_from": resumed_from, "device": str(device), "threads": torch.get_num_threads(),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "stream": str(stream_path), "stream_sha256": sha256_file(stream_path), "started": started.isoformat(),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(), **provenance()}
    summaries = []
    for run, tr, out_dir in zip(runs, members, out_dirs):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        tr.log().to_parquet(buf, index=False)
        atomic_write_bytes(out_dir / "log.parquet", buf.getvalue())
        summary = {
            "benchmark": run["benchmark"], "method": run["method"], "seed": run["seed"], "run": run,
            "config_hash": config_hash(run), "resolved_method": dataclasses_asdict(tr.method),
            "n_contexts": tr.n_contexts, "iterations": tr.iteration, "diverged": tr.diverged(),
            "diverged_at": tr.diverged_at, "total_iterations": tr.total_iters,
            "log_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            # a batch's runs share one process: its wall time, and the batch they were trained in
            "train_seconds": round(wall, 3), "iterations_per_second": round(tr.iteration / max(wall, 1e-9), 2),
            "batch": batch, **common,
        }
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1))
        summaries.append(summary)
    if checkpoint_path and not keep_checkpoint:
        Path(checkpoint_path).unlink(missing_ok=True)
    return summaries


def dataclasses_asdict(obj) -> dict:
    import dataclasses

    return dataclasses.asdict(obj)
