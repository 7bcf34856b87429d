"""Multi-run batching: several runs of one MLP benchmark trained in one process as a batch of models.

M runs (seeds, and methods too: the network is the same) share the stream's tensors on the device.
Their weights are stacked (M×out×in per layer), and every element-wise op, optimizer step and
record is one op over the whole batch. On a GPU each layer of all M models is also one batched
matrix product (in training every model takes its own mini-batch; in evaluation the shared test
images go through all M models at once): one MLP run is a stream of tiny kernels, and a batch
launches as many for all its models. On the CPU each model keeps its own products, exactly those it
makes alone (a CPU gains nothing from batched products, bench/NOTES.md), so the batch is bitwise
equal to separate runs at the same thread count (tests/test_batched.py); on a GPU, batched kernels
sum in another order, and the runs agree to floating-point tolerance.

Everything else is per model and as in `train.Trainer`: the initialisation from its seed, its
sampler, its gain dynamics, its optimizer (the unbatched update rule of optim.py applied to its
slice of the stacked weights), its records and its log. A `Trainer` per run keeps that run's
bookkeeping (test subset, records as views of the batch's, `log()`). Only the MLP is batched;
ResNet runs are trained one per process.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from .gain import GainLinear, batch_entropy, batch_mean
from .methods import Method
from .nets import MLP
from .optim import adam_update, sgd_update
from .streams import Stream, get_benchmark
from .train import PURPOSE_SAMPLER, RunData, RunSettings, Trainer, derive_seed, run_loop

BATCHABLE_NETS = ("mlp",)


class _BatchedMatmul(torch.autograd.Function):
    """z_m = x_m W_mᵀ for every model m (x: M×B×in, or N×in shared by all models), differentiated
    in F.linear's own orientation (∂W = ∂zᵀ·x, ∂x = ∂z·W, as torch's mm backward computes them for
    a transposed weight). On the CPU each product is one matrix product per model, exactly the call
    an unbatched layer makes (a CPU bmm loops over the models anyway, single-threaded per model, and
    multi-threaded BLAS splits short sums differently): so the batch is bitwise equal to separate
    runs. On a GPU, one batched product per layer and direction: that is where batching pays."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        M, out, inp = w.shape
        if x.device.type == "cpu":
            z = x.new_empty(M, x.shape[-2], out)
            for m in range(M):
                torch.mm(x if x.dim() == 2 else x[m], w[m].t(), out=z[m])
            return z
        if x.dim() == 2:  # one product for all models: N×in @ in×(M·out)
            return (x @ w.reshape(M * out, inp).t()).view(-1, M, out).transpose(0, 1)
        return torch.bmm(x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        xs = x.expand(w.shape[0], *x.shape) if x.dim() == 2 else x
        gx = gw = None
        if grad.device.type == "cpu":
            if ctx.needs_input_grad[0]:
                gx = torch.stack([torch.mm(g, wm) for g, wm in zip(grad, w)])
            if ctx.needs_input_grad[1]:
                gw = torch.stack([torch.mm(g.t(), xm) for g, xm in zip(grad, xs)])
        else:
            if ctx.needs_input_grad[0]:
                gx = torch.bmm(grad, w)
            if ctx.needs_input_grad[1]:
                gw = torch.bmm(grad.transpose(1, 2), xs)
        if gx is not None and x.dim() == 2:
            gx = gx.sum(0)
        return gx, gw


class BatchedGainLinear(nn.Module):
    """M GainLinear layers side by side: z_m = g_m ⊙ (x_m W_mᵀ) + b_m."""

    def __init__(self, layers: list[GainLinear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # M×out×in
        self.register_buffer("bias", torch.stack([layer.bias.detach() for layer in layers]))  # zero, never trained
        self.register_buffer("gain", torch.stack([layer.gain for layer in layers]))  # M×out

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        """x: M×B×in (each model its own inputs) or N×in (the same inputs for every model); `models`:
        only these of the M models (x then holds their inputs)."""
        w, g, b = self.weight[models], self.gain[models], self.bias[models]
        return _BatchedMatmul.apply(x, w) * g[:, None, :] + b[:, None, :]


class BatchedMLP(nn.Module):
    """M MLPs (nets.MLP) with their gain dynamics (gain.GainControl) held as per-model vectors."""

    def __init__(self, nets: list[MLP]):
        super().__init__()
        self.fc1 = BatchedGainLinear([n.fc1 for n in nets])
        self.fc2 = BatchedGainLinear([n.fc2 for n in nets])
        self.out = BatchedGainLinear([n.out for n in nets])
        gcs = [n.gain_control for n in nets]
        f32 = {"dtype": torch.float32}
        # g <- γ·g + (1 − γ)·g0 + drive, in the same fp32 arithmetic as GainControl.step
        self.register_buffer("gamma", torch.tensor([g.gamma for g in gcs], **f32).view(-1, 1))
        self.register_buffer("rest", torch.tensor([(1.0 - g.gamma) * g.g0 for g in gcs], **f32).view(-1, 1))
        self.register_buffer("eta", torch.tensor([g.eta for g in gcs], **f32))
        self.register_buffer("bump", torch.tensor([g.bump for g in gcs], **f32))
        self.register_buffer("moving", torch.tensor([g.mode != "frozen" for g in gcs]).view(-1, 1))
        self.register_buffer("by_entropy", torch.tensor([g.mode == "entropy" for g in gcs]))
        self.any_moving = any(g.mode != "frozen" for g in gcs)
        self.register_buffer("entropy", torch.zeros(len(nets)))  # of each model's last training forward
        self.register_buffer("pending_pulse", torch.zeros(len(nets)))

    def modulated(self) -> dict[str, BatchedGainLinear]:
        return {"fc1": self.fc1, "fc2": self.fc2, "out": self.out}

    def pulse(self) -> None:
        self.pending_pulse.fill_(1.0)

    @torch.no_grad()
    def gain_step(self) -> None:
        if not self.any_moving:
            return
        drive = torch.where(self.by_entropy, self.eta * self.entropy, self.bump * self.pending_pulse)[:, None]
        self.pending_pulse.zero_()
        for layer in self.modulated().values():
            new = self.gamma * layer.gain + self.rest + drive
            layer.gain.copy_(torch.where(self.moving, new, layer.gain))

    def forward(self, x: torch.Tensor, models: slice = slice(None)) -> torch.Tensor:
        """x: M×B×C×H×W (training) or N×C×H×W (evaluation, shared); logits M×B×K. In evaluation,
        `models` selects some of the models."""
        if self.training:
            if models != slice(None):
                raise ValueError("a training forward moves every model's gain: it takes all models")
            self.gain_step()
        h = F.relu(self.fc1(x.flatten(-3), models))
        h = F.relu(self.fc2(h, models))
        logits = self.out(h, models)
        if self.training:
            self.entropy.copy_(batch_entropy(logits))
        return logits


class SliceOptimizer:
    """One method's update rule over its models' slice [a, b) of the stacked weights."""

    def __init__(self, method: Method, params: list[nn.Parameter], a: int, b: int):
        self.method, self.params, self.a, self.b = method, params, a, b
        # every MLP layer is gain-modulated: its momentum is the modulated one (methods.make_optimizer)
        self.momentum = method.momentum if method.modulated_momentum is None else method.modulated_momentum
        self.state: list[dict] = [{} for _ in params]

    def reset(self) -> None:
        self.state = [{} for _ in self.params]

    def step(self, lr: float) -> None:
        m, a, b = self.method, self.a, self.b
        for p, state in zip(self.params, self.state):
            if m.optimizer == "adam":
                adam_update(p[a:b], p.grad[a:b], state, lr, m.beta1, m.beta2, m.eps)
            else:
                sgd_update(p[a:b], p.grad[a:b], state, lr, self.momentum)


class BatchedTrainer:
    """Train runs (method, seed) of one stream together; `runs[m]` is run m's Trainer (its log)."""

    DIVERGENCE_CHECK_EVERY = Trainer.DIVERGENCE_CHECK_EVERY

    def __init__(self, stream: Stream, methods: list[Method], seeds: list[int], settings: RunSettings,
                 device: torch.device | str = "cpu"):
        bench = get_benchmark(stream.benchmark)
        if bench.net not in BATCHABLE_NETS:
            raise ValueError(f"multi-run batching is implemented for the {', '.join(BATCHABLE_NETS)} only; "
                             f"benchmark {stream.benchmark!r} uses {bench.net!r}: train its runs one per process")
        if len(methods) != len(seeds) or not methods:
            raise ValueError("give one method per seed, at least one run")
        self.stream, self.settings, self.device = stream, settings, torch.device(device)
        self.data = RunData(stream, self.device, settings.test_augment)
        if self.data.augment is not None:  # no MLP benchmark augments; sampling below would not
            raise ValueError(f"benchmark {stream.benchmark!r} augments its training images: multi-run "
                             f"batching does not; train its runs one per process")
        self.runs = [Trainer(stream, m, settings, s, self.device, data=self.data) for m, s in zip(methods, seeds)]
        self.net = BatchedMLP([r.net for r in self.runs]).to(self.device)
        for r in self.runs:  # the batch holds every model's weights and optimizer state
            r.net = r.optimizer = None
        first = self.runs[0]
        self.n_contexts, self.total_iters = first.n_contexts, first.total_iters
        self.eval_iters, self._eval_row = first.eval_iters, first._eval_row
        self.M = M = len(self.runs)

        # test images: shared by all models, or each seed's own fixed subset (evaluation.subset)
        self.test_offsets, self.test_sizes = first.test_offsets, first.test_sizes
        if settings.eval_subset is None:
            self.test_x, self.test_y = self.data.test_x, self.data.test_y
        else:
            self.test_x = torch.stack([r.test_x for r in self.runs])
            self.test_y = torch.stack([r.test_y for r in self.runs])

        # one optimizer per run of consecutive runs with the same method (Entropy-LR: per run, its lr moves)
        params = [layer.weight for layer in self.net.modulated().values()]
        self.slices: list[SliceOptimizer] = []
        for m, r in enumerate(self.runs):
            last = self.slices[-1] if self.slices else None
            if last is not None and last.method == r.method and not r.method.lr_drive:
                last.b = m + 1
            else:
                self.slices.append(SliceOptimizer(r.method, params, m, m + 1))
        self.lr_drive_runs = [m for m, r in enumerate(self.runs) if r.method.lr_drive]

        # the batch's records; each run's records are views of its row (so its Trainer.log() works)
        T, E, n, L = self.total_iters, len(self.eval_iters), self.n_contexts, 3
        dev = self.device
        self.rec_train_loss = torch.zeros(M, T, device=dev)
        self.rec_train_correct = torch.zeros(M, T, dtype=torch.long, device=dev)
        self.rec_entropy = torch.zeros(M, T, device=dev)
        self.rec_gain = torch.zeros(M, T, L, device=dev)
        self.rec_lr = torch.zeros(M, T, dtype=torch.float64)
        self.rec_test_correct = torch.zeros(M, E, n, dtype=torch.long, device=dev)
        self.rec_test_loss = torch.zeros(M, E, n, dtype=torch.float64, device=dev)
        for m, r in enumerate(self.runs):
            for name in ("rec_train_loss", "rec_train_correct", "rec_entropy", "rec_gain", "rec_lr",
                         "rec_test_correct", "rec_test_loss"):
                setattr(r, name, getattr(self, name)[m])
        self.iteration = 0

    def context_of(self, t: int) -> int:
        return (t - 1) // self.settings.iters_per_context + 1

    def lrs(self) -> list[float]:
        return [r.method.lr * r.lr_mult for r in self.runs]

    # ------------------------------------------------------------------ one iteration of every model
    def step(self) -> None:
        t = self.iteration + 1
        k = self.context_of(t)
        if (t - 1) % self.settings.iters_per_context == 0:  # first iteration of context k
            for r in self.runs:
                r.sampler = torch.Generator().manual_seed(derive_seed(r.seed, PURPOSE_SAMPLER, k))
            if k > 1:
                for sl in self.slices:
                    if sl.method.reset_on_switch:
                        sl.reset()
            self.net.pulse()
        for m in self.lr_drive_runs:  # as Trainer.step, per run
            r, H = self.runs[m], float(self.net.entropy[m])
            r.lr_mult = float(r.method.gamma * r.lr_mult + (1 - r.method.gamma)
                              + r.method.eta_or(self.settings.eta) * H)
        lrs = self.lrs()

        n_union, B = self.stream.train_offsets[k], self.settings.batch_size
        idx = torch.stack([torch.randint(0, n_union, (B,), generator=r.sampler) for r in self.runs]).to(self.device)
        x, y = self.data.normalise(self.data.train_x[idx]), self.data.train_y[idx]
        self.net.train()
        logits = self.net(x)  # M×B×K
        K = logits.shape[-1]
        losses = batch_mean(F.cross_entropy(logits.reshape(-1, K), y.reshape(-1), reduction="none").view(self.M, B))
        for p in self.net.parameters():
            p.grad = None
        losses.sum().backward()  # the models share nothing: each gets its own loss's gradient
        for sl in self.slices:
            sl.step(lrs[sl.a])

        i = t - 1
        with torch.no_grad():
            self.rec_train_loss[:, i] = losses.detach()
            self.rec_train_correct[:, i] = (logits.argmax(-1) == y).sum(1)
            self.rec_entropy[:, i] = self.net.entropy
            for c, layer in enumerate(self.net.modulated().values()):
                self.rec_gain[:, i, c] = batch_mean(layer.gain)
        self.rec_lr[:, i] = torch.tensor(lrs, dtype=torch.float64)
        self.iteration = t
        for r in self.runs:
            if r.diverged_at is None:
                r.iteration = t
        if t in self._eval_row:
            self.evaluate(t, k)

    @torch.no_grad()
    def evaluate(self, t: int, k: int) -> None:
        """Every model on the seen tasks' test images (Trainer.evaluate, all models in each forward)."""
        self.net.eval()
        if self.settings.eval_scope == "task1":
            k = 1
        M, m = self.M, self.test_offsets[k]
        correct = torch.zeros(M, m, dtype=torch.long, device=self.device)
        losses = torch.zeros(M, m, dtype=torch.float64, device=self.device)
        shared = self.settings.eval_subset is None  # else each model its own subset: M×N×...
        bs = self.settings.eval_batch_size
        # CPU: model by model, each forward exactly the one its run makes alone (bitwise equal, and
        # cache-sized; a CPU gains nothing from larger products); GPU: every model in each forward
        groups = [slice(j, j + 1) for j in range(M)] if self.device.type == "cpu" else [slice(0, M)]
        for g in groups:
            n_models = len(range(M)[g])
            for a in range(0, m, bs):
                b = min(a + bs, m)
                x = self.test_x[a:b] if shared else self.test_x[g, a:b]
                y = (self.test_y[a:b] if shared else self.test_y[g, a:b]).expand(n_models, -1)
                logits = self.net(x, g)
                correct[g, a:b] += logits.argmax(-1) == y
                losses[g, a:b] += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                  reduction="none").view(n_models, -1)
        off = torch.tensor(self.test_offsets[:k + 1], device=self.device)
        zero = torch.zeros(M, 1, device=self.device)
        c = torch.cat([zero.long(), correct.cumsum(1)], dim=1)
        s = torch.cat([zero.double(), losses.cumsum(1)], dim=1)
        row = self._eval_row[t]
        self.rec_test_correct[:, row, :k] = c[:, off[1:]] - c[:, off[:-1]]
        self.rec_test_loss[:, row, :k] = s[:, off[1:]] - s[:, off[:-1]]
        self.net.train()

    # ------------------------------------------------------------------ the whole batch
    def alive(self) -> list[int]:
        return [m for m, r in enumerate(self.runs) if r.diverged_at is None]

    def check_divergence(self) -> list[int]:
        """As Trainer.check_divergence, per model: a run whose loss or gain went non-finite is
        stopped there (its log ends before the first bad iteration); the others go on."""
        lo = max(0, self.iteration - self.DIVERGENCE_CHECK_EVERY)
        bad = ~(torch.isfinite(self.rec_train_loss[:, lo:self.iteration])
                & torch.isfinite(self.rec_gain[:, lo:self.iteration]).all(dim=2))
        newly = []
        for m in self.alive():
            if bool(bad[m].any()):
                r = self.runs[m]
                r.diverged_at = lo + int(bad[m].nonzero()[0, 0]) + 1
                r.iteration = r.diverged_at - 1
                newly.append(m)
        return newly

    def name(self) -> str:
        return f"{self.stream.benchmark}/batch of {self.M} runs"

    def run(self, progress=sys.stderr, checkpoint=None, checkpoint_every: int = 0) -> None:
        """Train every model to the end (or to its divergence); see train.run_loop."""
        run_loop(self, progress, checkpoint, checkpoint_every)

    def stop_on_divergence(self, progress) -> bool:
        """Diverged runs stop alone; the batch ends when every run has."""
        for m in self.check_divergence():
            r = self.runs[m]
            if progress is not None:
                print(f"[{self.stream.benchmark}/{r.method.name}/seed {r.seed}] DIVERGED: non-finite loss "
                      f"or gain at iteration {r.diverged_at}; run stopped (the batch goes on)",
                      file=progress, flush=True)
        return not self.alive()

    def progress_line(self, t: int, rate: float) -> str:
        row = self._eval_row.get(t)
        acc1 = "n/a"
        if row is not None:
            acc = 100.0 * self.rec_test_correct[:, row, 0].double().cpu() / self.test_sizes[0]
            acc1 = f"{float(acc.min()):.2f}-{float(acc.max()):.2f}%"
        return (f"[{self.name()}] iter {t}/{self.total_iters} context {self.context_of(t)}/{self.n_contexts} "
                f"train loss {float(self.rec_train_loss[:, t - 1].mean()):.4f} (mean) task-1 acc {acc1} "
                f"(min-max) {len(self.alive())} running ({rate:.0f} it/s, {rate * self.M:.0f} model-it/s)")

    # ------------------------------------------------------------------ checkpoints
    RECORDS = ("rec_train_loss", "rec_train_correct", "rec_entropy", "rec_gain", "rec_lr", "rec_test_correct",
               "rec_test_loss")

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "net": self.net.state_dict(),
                "slices": [sl.state for sl in self.slices],
                "runs": [{"lr_mult": r.lr_mult, "iteration": r.iteration, "diverged_at": r.diverged_at,
                          "sampler": None if r.sampler is None else r.sampler.get_state()} for r in self.runs],
                "records": {name: getattr(self, name) for name in self.RECORDS}}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        for sl, saved in zip(self.slices, state["slices"]):
            sl.state = [dict(s) for s in saved]
        for r, saved in zip(self.runs, state["runs"]):
            r.lr_mult, r.iteration, r.diverged_at = saved["lr_mult"], saved["iteration"], saved["diverged_at"]
            r.sampler = None
            if saved["sampler"] is not None:
                r.sampler = torch.Generator()
                r.sampler.set_state(saved["sampler"].cpu())  # a CPU generator, whatever map_location did
        for name, value in state["records"].items():
            getattr(self, name).copy_(value)
        self.iteration = int(state["iteration"])
