"""What a batch of runs records, and each run's log built from it (docs/protocol.md §6).

Every per-iteration value lives in a tensor preallocated on the runs' device (no host sync per
iteration): the training batch's loss and correct count, the entropy, each modulated layer's mean
gain, the learning rate, and per evaluated iteration the test correct counts and loss sums of every
logged task. `log(m)` turns model m's rows into the tidy per-iteration table a run writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .schedule import Schedule


class Records:
    BUFFERS = ("train_loss", "train_correct", "entropy", "gain", "lr", "test_correct", "test_loss", "eval_passes")

    def __init__(self, R: int, schedule: Schedule, gain_names: list[str], batch_size: int, device: torch.device):
        self.schedule, self.gain_names, self.batch_size = schedule, list(gain_names), batch_size
        self.eval_iters = schedule.iterations()
        self.row = {t: i for i, t in enumerate(self.eval_iters)}  # evaluated iteration -> its row
        T, E, n, L = schedule.total_iters, len(self.eval_iters), schedule.logged_tasks, len(gain_names)
        self.train_loss = torch.zeros(R, T, device=device)
        self.train_correct = torch.zeros(R, T, dtype=torch.long, device=device)
        self.entropy = torch.zeros(R, T, device=device)
        self.gain = torch.zeros(R, T, L, device=device)
        self.lr = torch.zeros(R, T, dtype=torch.float64)
        self.test_correct = torch.zeros(R, E, n, dtype=torch.long, device=device)
        self.test_loss = torch.zeros(R, E, n, dtype=torch.float64, device=device)
        self.eval_passes = torch.ones(E, dtype=torch.long)

    @torch.no_grad()
    def training(self, t: int, losses, logits, y, entropy, gains: list[torch.Tensor], lrs: list[float]) -> None:
        """Iteration t's training step: per-model losses (R,), logits R×B×K and labels R×B, the
        entropy (R,), each modulated layer's mean gain (R,) and the learning rates."""
        i = t - 1
        self.train_loss[:, i] = losses.detach()
        self.train_correct[:, i] = (logits.argmax(-1) == y).sum(1)
        self.entropy[:, i] = entropy
        for c, g in enumerate(gains):
            self.gain[:, i, c] = g
        self.lr[:, i] = torch.tensor(lrs, dtype=torch.float64)

    def evaluation(self, t: int, correct: torch.Tensor, loss: torch.Tensor, passes: int) -> None:
        """Iteration t's evaluation: correct counts and loss sums R×tasks over `passes` pooled passes."""
        row = self.row[t]
        self.eval_passes[row] = passes
        self.test_correct[:, row, :correct.shape[1]] = correct
        self.test_loss[:, row, :loss.shape[1]] = loss

    def task1_accuracy(self, t: int) -> torch.Tensor | None:
        """Every model's task-1 accuracy (%) at iteration t, if t was evaluated."""
        row = self.row.get(t)
        if row is None:
            return None
        n = self.schedule.test_sizes[0] * int(self.eval_passes[row])
        return 100.0 * self.test_correct[:, row, 0].double().cpu() / n

    def not_finite(self, lo: int, hi: int) -> torch.Tensor:
        """R×(hi−lo): iterations lo+1..hi whose training loss or a gain is NaN or inf."""
        return ~(torch.isfinite(self.train_loss[:, lo:hi]) & torch.isfinite(self.gain[:, lo:hi]).all(dim=2))

    def log(self, m: int, T: int) -> pd.DataFrame:
        """Model m's tidy log of iterations 1..T: one 'train' row per iteration (task 0) and one
        'test' row per evaluated iteration and logged task; the per-iteration columns (entropy, lr,
        gain_*) on every row."""
        I = self.schedule.iters_per_context
        it = np.arange(1, T + 1)
        ctx = (it - 1) // I + 1
        per_iter = {"entropy": self.entropy[m, :T].double().cpu().numpy(), "lr": self.lr[m, :T].numpy()}
        gains = self.gain[m, :T].double().cpu().numpy()
        for c, name in enumerate(self.gain_names):
            per_iter[f"gain_{name}"] = gains[:, c]
        B = self.batch_size
        train = pd.DataFrame({"iteration": it, "context": ctx, "split": "train", "task": 0, "n": B,
                              "accuracy": self.train_correct[m, :T].cpu().numpy() * 100.0 / B,
                              "loss": self.train_loss[m, :T].double().cpu().numpy(), **per_iter})
        rows = [r for r, t in enumerate(self.eval_iters) if t <= T]
        ev_t = np.array([self.eval_iters[r] for r in rows], dtype=np.int64)
        passes = self.eval_passes[rows].numpy()[:, None]  # pooled passes (v1 test augmentation)
        correct = self.test_correct[m, rows].cpu().numpy() / passes
        tloss = self.test_loss[m, rows].cpu().numpy() / passes
        sizes = np.array(self.schedule.test_sizes)
        frames = []
        for j in range(self.schedule.logged_tasks):
            seen = ((ev_t - 1) // I + 1) >= j + 1
            tt = ev_t[seen]
            frames.append(pd.DataFrame({
                "iteration": tt, "context": (tt - 1) // I + 1, "split": "test",
                "task": j + 1, "n": sizes[j], "accuracy": correct[seen, j] * 100.0 / sizes[j],
                "loss": tloss[seen, j] / sizes[j], **{k: v[tt - 1] for k, v in per_iter.items()}}))
        log = pd.concat([train] + frames, ignore_index=True)
        log = log.sort_values(["iteration", "task"], kind="stable").reset_index(drop=True)
        return log.astype({"iteration": "int64", "context": "int64", "task": "int64", "n": "int64"})

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.BUFFERS}

    def load_state_dict(self, state: dict) -> None:
        for name in self.BUFFERS:
            getattr(self, name).copy_(state[name])
