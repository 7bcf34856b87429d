"""The continual-evaluation schedule, in one place and without torch: which iterations are
evaluated, which tasks, how many passes, how many images (docs/protocol.md §6).

- Evaluated iterations: every ρ iterations (`eval_every`; t a multiple of ρ), the last iteration of
  every context, and, with `eval_dense_after_switch: N`, every one of the first N iterations of each
  context (the stability gap's minimum usually falls within a few dozen iterations of a switch).
- Tasks (`eval_scope`): "seen", every task seen so far (1..k in context k); "task1", task 1's test
  set only, as the authors' v1 code evaluated.
- Passes: under the v1 CIFAR test augmentation (`test_augment`), k freshly augmented passes in
  context k, pooled; else one clean pass.
- Images: the tasks' test images (each capped at `eval_subset`) times the passes.

The trainer, the evaluator, the records, the cost model and the progress estimate all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = ("seen", "task1")


@dataclass(frozen=True)
class Schedule:
    iters_per_context: int  # I
    n_contexts: int
    test_sizes: tuple[int, ...]  # test images per task, after the subset cap
    every: int = 1  # ρ
    dense_after_switch: int = 0  # every iteration for the first N iterations of each context
    scope: str = "seen"
    test_augment: bool = False

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"evaluation scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.every < 1 or self.dense_after_switch < 0 or self.iters_per_context < 1:
            raise ValueError(f"bad schedule: every {self.every}, dense_after_switch {self.dense_after_switch}, "
                             f"iters_per_context {self.iters_per_context}")
        if len(self.test_sizes) != self.n_contexts:
            raise ValueError(f"{len(self.test_sizes)} test sizes for {self.n_contexts} contexts")

    @classmethod
    def of(cls, run, test_sizes) -> "Schedule":
        """The schedule of a run's settings (config.run_config's dict, or trainer.RunSettings) on a
        stream with these test images per task."""
        get = run.get if isinstance(run, dict) else lambda key, default=None: getattr(run, key, default)
        subset = get("eval_subset")
        sizes = tuple(min(int(s), subset) if subset else int(s) for s in test_sizes)
        return cls(iters_per_context=int(get("iters_per_context")), n_contexts=len(sizes), test_sizes=sizes,
                   every=int(get("eval_every", 1)), dense_after_switch=int(get("eval_dense_after_switch", 0) or 0),
                   scope=get("eval_scope", "seen") or "seen", test_augment=bool(get("test_augment", False)))

    @property
    def total_iters(self) -> int:
        return self.iters_per_context * self.n_contexts

    def context(self, t: int) -> int:
        """The context of iteration t (1-based)."""
        return (t - 1) // self.iters_per_context + 1

    def evaluated(self, t: int) -> bool:
        I = self.iters_per_context
        return t % self.every == 0 or t % I == 0 or (t - 1) % I < self.dense_after_switch

    def iterations(self) -> list[int]:
        """Every evaluated iteration of a run, in order (a list as long as the run: for the trainer)."""
        return [t for t in range(1, self.total_iters + 1) if self.evaluated(t)]

    def per_context(self) -> list[int]:
        """How many iterations of each context are evaluated, counted without listing them."""
        I, rho, N = self.iters_per_context, self.every, min(self.dense_after_switch, self.iters_per_context)
        counts = []
        for k in range(1, self.n_contexts + 1):
            start, end = (k - 1) * I, k * I
            n = N + end // rho - (start + N) // rho  # the dense window, then the multiples of ρ after it
            if N < I and end % rho:
                n += 1  # the context's last iteration
            counts.append(n)
        return counts

    def tasks(self, k: int) -> int:
        """How many tasks (1..this) an evaluation in context k covers."""
        return 1 if self.scope == "task1" else k

    @property
    def logged_tasks(self) -> int:
        """How many tasks ever have test rows in a run's log."""
        return 1 if self.scope == "task1" else self.n_contexts

    def passes(self, k: int) -> int:
        return k if self.test_augment else 1

    def images(self, k: int) -> int:
        """Test images forwarded by one evaluation in context k (per model)."""
        return self.passes(k) * sum(self.test_sizes[:self.tasks(k)])

    def eval_images(self) -> int:
        """Test images forwarded over a whole run (per model), in closed form."""
        return sum(n * self.images(k) for k, n in enumerate(self.per_context(), start=1))
