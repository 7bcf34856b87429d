"""Continual-evaluation metrics of the stability gap (docs/protocol.md §6).

Input is one run's tidy log (one row per iteration for ``split == "train"``, one row per evaluated
task for ``split == "test"``). Everything is inferred from the log: the number of contexts n is the
largest ``context``, stage k is the set of evaluated iterations whose ``context`` is k, and the end of
stage k is the last evaluated iteration of stage k (the evaluation schedule, schedule.py, always
evaluates it). I and rho are not
needed; with rho > 1 every quantity is taken over the evaluated iterations only.

Three families (docs/protocol.md §6), two per run and one over seeds:

* ``task1`` -- the v1 table's metrics on the task-1 accuracy curve c(t) = a_1(t), per seed
  (:func:`task1_metrics`).
* ``task1_v1`` -- the v1 table's aggregation over seeds (:func:`task1_metrics_v1`): the same metrics
  on the seed-mean curve, with first-order propagation of the per-iteration seed std.
* ``seen`` -- the v2 / De Lange et al. (2023) family on the pooled accuracy A_{<k+1}(t) of the tasks
  seen before switch k -> k+1 (:func:`seen_metrics`).

Conventions decided here (docs/protocol.md §6 leaves them open):

* SG values are fractions (0.2 = a 20 % relative drop), not percent; depth is in accuracy points.
* A quantity that is undefined is ``None`` in every returned dict (never NaN), so the dicts are
  JSON-serialisable with ``allow_nan=False``. SG_k is undefined when its pre-switch value is 0
  (division by zero); avg-SG is then undefined too (the undefined SG propagates, as NaN did in the
  original ``np.mean``). With a single context (n = 1) there are no switches: SG lists are empty and
  avg-SG, avg-min-ACC / min-ACC are ``None``; WC-ACC reduces to final_n / n = final_1.
* ``recover`` for switch k (end of stage k at iteration e_k, pre-switch value v_k): t* - e_k for the
  first evaluated iteration t* > e_k with value >= v_k, searching all later evaluated iterations (not
  only stage k+1); ``None`` if it never happens. With no dip at all it is the first evaluated offset
  (1 when rho = 1).
* Ties in a minimum: the earliest evaluated iteration (``np.argmin``), as in the original code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Curves",
    "test_curves",
    "task1_metrics",
    "seen_metrics",
    "run_metrics",
    "task1_metrics_v1",
    "mean_std_over_seeds",
]


# --------------------------------------------------------------------------------------------
# Curves from the log
# --------------------------------------------------------------------------------------------
@dataclass
class Curves:
    """Test curves of one run on its evaluated iterations (docs/protocol.md §6).

    iters:    sorted evaluated iterations, int [T]
    contexts: context (= stage) of each evaluated iteration, int [T]
    acc:      accuracy in percent, float [T, n_tasks]; NaN where task j is not yet seen
    loss:     test loss, same shape and NaN pattern as ``acc``
    sizes:    test-set size of each task, int [n_tasks] (weights of the pooled accuracy)
    """

    iters: np.ndarray
    contexts: np.ndarray
    acc: np.ndarray
    loss: np.ndarray
    sizes: np.ndarray

    @property
    def n_contexts(self) -> int:
        return int(self.contexts.max())

    def stage_mask(self, k: int) -> np.ndarray:
        """Boolean mask of the evaluated iterations of stage k (1-based)."""
        return self.contexts == k

    def stage_end(self, k: int) -> int:
        """Index (into ``iters``) of the last evaluated iteration of stage k: the end of stage k."""
        return int(np.flatnonzero(self.stage_mask(k))[-1])

    def pooled(self, k: int) -> np.ndarray:
        """Size-weighted accuracy on the pooled test data of tasks 1..k at every evaluated iteration
        (A_{<k+1}(t) of docs/protocol.md §6; pooled, not the mean of per-task accuracies). NaN before task k is
        seen."""
        w = self.sizes[:k].astype(float)
        return self.acc[:, :k] @ w / w.sum()


def test_curves(log: pd.DataFrame, tasks: int | None = None) -> Curves:
    """Extract the per-task test curves of one run's log (docs/protocol.md §6): of every task, or of the first
    `tasks` (1: task 1 alone, all a run evaluated under evaluation.scope task1).

    Uses only the ``split == "test"`` rows and the columns iteration, context, task, n, accuracy and
    loss; every other column is ignored.
    """
    n_contexts = int(log["context"].max())
    test = log[log["split"] == "test"]
    if test.empty:
        raise ValueError("log has no test rows")
    if tasks is not None:
        test = test[test["task"] <= tasks]

    tasks = list(range(1, (tasks or n_contexts) + 1))
    # pivot raises on a duplicated (iteration, task) pair
    acc = test.pivot(index="iteration", columns="task", values="accuracy").reindex(columns=tasks)
    loss = test.pivot(index="iteration", columns="task", values="loss").reindex(columns=tasks)

    ctx = test.groupby("iteration")["context"]
    if (ctx.nunique() != 1).any():
        raise ValueError("test rows of one iteration disagree on the context")
    contexts = ctx.first().reindex(acc.index)

    n_per_task = test.groupby("task")["n"]
    if (n_per_task.nunique() != 1).any():
        raise ValueError("a task's test-set size n changes between evaluations")
    sizes = n_per_task.first().reindex(tasks)
    if sizes.isna().any():
        raise ValueError(f"some of the tasks 1..{len(tasks)} are never evaluated (a log of evaluation.scope "
                         f"task1 has task 1 only: read it with tasks=1)")
    if acc[1].isna().any():
        raise ValueError("task 1 must be evaluated at every evaluated iteration")
    if set(contexts.unique()) != set(range(1, n_contexts + 1)):
        raise ValueError("every context must have at least one evaluated iteration")

    return Curves(
        iters=acc.index.to_numpy(dtype=int),
        contexts=contexts.to_numpy(dtype=int),
        acc=acc.to_numpy(dtype=float),
        loss=loss.to_numpy(dtype=float),
        sizes=sizes.to_numpy(dtype=int),
    )


test_curves.__test__ = False  # not a pytest test, despite its name (the API fixes the name)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _clean(x):
    """Plain Python numbers for JSON: numpy scalars -> int/float, NaN -> None (recursively)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return None if math.isnan(x) else x


def _sg(pre: float, low: float) -> float:
    """Relative drop (pre - low) / pre as a fraction; NaN when pre == 0 (undefined)."""
    return (pre - low) / pre if pre != 0 else float("nan")


def _recover(curves: Curves, values: np.ndarray, end_idx: int) -> int | None:
    """Iterations after the switch (end of stage at index end_idx) until ``values`` first reaches the
    pre-switch value again, over all later evaluated iterations; None if never."""
    later = np.flatnonzero(values[end_idx + 1:] >= values[end_idx])
    if later.size == 0:
        return None
    return int(curves.iters[end_idx + 1 + later[0]] - curves.iters[end_idx])


def _switch_stats(curves: Curves, values: np.ndarray, k: int) -> dict:
    """SG, depth and time to recover of switch k -> k+1 on a curve (docs/protocol.md §6): pre-switch value at
    the end of stage k, minimum over stage k+1."""
    end = curves.stage_end(k)
    pre = values[end]
    low = values[curves.stage_mask(k + 1)].min()
    return {"sg": _sg(pre, low), "depth": pre - low, "recover": _recover(curves, values, end)}


def _min_gap(curves: Curves, values: np.ndarray, k: int) -> int:
    """How far apart the evaluations around stage k's minimum of `values` are, in iterations: 1 when
    the iterations next to it (within the stage) were evaluated too, so it is the curve's minimum;
    more when the true minimum may lie between evaluated iterations (evaluation every ρ > 1)."""
    idx = np.flatnonzero(curves.stage_mask(k))
    i = int(idx[np.argmin(values[idx])])
    before = curves.iters[i] - (curves.iters[i - 1] if i > 0 else 0)
    after = curves.iters[i + 1] - curves.iters[i] if i + 1 < len(curves.iters) and curves.contexts[i + 1] == k else 1
    return int(max(before, after))


def _mean_or_nan(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


# --------------------------------------------------------------------------------------------
# Per-seed families
# --------------------------------------------------------------------------------------------
def task1_metrics(curves: Curves) -> dict:
    """Family "task1" for one seed on c(t) = a_1(t) (docs/protocol.md §6, v1 table definitions).

    final_k = c at the end of stage k; min_k = min of c over stage k;
    avg_acc = mean_k final_k; avg_min_acc = mean of min_k for k = 1..n-1 (includes stage 1, excludes
    the last, as coded in v1); wc_acc = final_n/n + (1 - 1/n) avg_min_acc;
    sg_k = (final_k - min_{k+1}) / final_k (fraction); avg_sg = mean sg_k; depth_k = final_k -
    min_{k+1} (points); recover_k = iterations after the switch until c >= final_k again (or None);
    min_gap_k = the spacing of the evaluations around min_k (1: exact; more: the true minimum may lie
    between evaluated iterations).
    """
    c = curves.acc[:, 0]
    n = curves.n_contexts
    final = [c[curves.stage_end(k)] for k in range(1, n + 1)]
    mins = [c[curves.stage_mask(k)].min() for k in range(1, n + 1)]
    switches = [_switch_stats(curves, c, k) for k in range(1, n)]
    avg_min = _mean_or_nan(mins[:-1])
    sg = [s["sg"] for s in switches]
    return _clean({
        "final": final,
        "min": mins,
        "avg_acc": np.mean(final),
        "avg_min_acc": avg_min,
        "wc_acc": final[-1] / n + ((1 - 1 / n) * avg_min if n > 1 else 0.0),
        "sg": sg,
        "avg_sg": _mean_or_nan(sg),
        "depth": [s["depth"] for s in switches],
        "recover": [s["recover"] for s in switches],
        "min_gap": [_min_gap(curves, c, k) for k in range(1, n + 1)],
    })


def seen_metrics(curves: Curves) -> dict:
    """Family "seen" for one seed (docs/protocol.md §6, v2 / De Lange et al. 2023; assumed details).

    final_k = A_{<k+1} (pooled accuracy over tasks 1..k) at the end of stage k, k = 1..n;
    sg_k = (A_{<k+1}(end of stage k) - min over stage k+1 of A_{<k+1}) / A_{<k+1}(end of stage k),
    k = 1..n-1; avg_sg = mean sg_k; depth_k and recover_k as in :func:`task1_metrics` on A_{<k+1};
    min_acc = mean over tasks j < n of min of a_j over all evaluated iterations after stage j;
    avg_acc = mean over all n tasks of a_j at the final evaluated iteration;
    wc_acc = a_n(end)/n + (1 - 1/n) min_acc; min_gap_k = the spacing of the evaluations around the
    minimum of switch k (as in :func:`task1_metrics`).
    """
    n = curves.n_contexts
    final = [curves.pooled(k)[curves.stage_end(k)] for k in range(1, n + 1)]
    switches = [_switch_stats(curves, curves.pooled(k), k) for k in range(1, n)]
    mins_after = [curves.acc[curves.iters > curves.iters[curves.stage_end(j)], j - 1].min()
                  for j in range(1, n)]
    min_acc = _mean_or_nan(mins_after)
    at_end = curves.acc[-1, :]
    sg = [s["sg"] for s in switches]
    return _clean({
        "final": final,
        "sg": sg,
        "avg_sg": _mean_or_nan(sg),
        "min_acc": min_acc,
        "avg_acc": np.mean(at_end),
        "wc_acc": at_end[-1] / n + ((1 - 1 / n) * min_acc if n > 1 else 0.0),
        "depth": [s["depth"] for s in switches],
        "recover": [s["recover"] for s in switches],
        "min_gap": [_min_gap(curves, curves.pooled(k), k + 1) for k in range(1, n)],
    })


SEEN_SKIPPED = "evaluation.scope task1: only task 1 was evaluated, so the seen-tasks metrics do not exist"


def run_metrics(log: pd.DataFrame, scope: str = "seen") -> dict:
    """Both families for one run's log, JSON-serialisable (docs/protocol.md §6). A run evaluated under
    evaluation.scope task1 has the task1 family only: "seen" is None and "skipped" says why."""
    if scope == "task1":
        return {"task1": task1_metrics(test_curves(log, tasks=1)), "seen": None, "skipped": {"seen": SEEN_SKIPPED}}
    curves = test_curves(log)
    return {"task1": task1_metrics(curves), "seen": seen_metrics(curves)}


# --------------------------------------------------------------------------------------------
# Aggregation over seeds
# --------------------------------------------------------------------------------------------
def task1_metrics_v1(curve_list: list[Curves]) -> dict:
    """The v1 table's aggregation of family "task1" over seeds (docs/protocol.md §6).

    c(t) = seed-mean task-1 accuracy, s(t) = per-iteration population std (ddof 0). final_k = c at the
    end of stage k with sigma s there; min_k = c at the argmin of c within stage k with sigma s at that
    argmin. First-order propagation:
      avg_acc     +- sqrt(sum_k s(final_k)^2) / n
      avg_min_acc +- sqrt(sum_{k<n} s(min_k)^2) / (n-1)
      wc_acc      +- sqrt((s(final_n)/n)^2 + ((1-1/n) s(avg_min))^2)
      sg_k        +- sqrt((s(final_k)^2 + s(min_{k+1})^2)/final_k^2
                          + (final_k - min_{k+1})^2 s(final_k)^2 / final_k^4)
      avg_sg      +- sqrt(sum_k s(sg_k)^2) / (n-1)
    Every quantity is a pair [value, sigma]; [None, None] where undefined (n = 1, final_k = 0).
    Keys: avg_acc, avg_min_acc, wc_acc, avg_sg, sg, plus final and min (lists of pairs per stage).
    """
    ref = curve_list[0]
    for cv in curve_list[1:]:
        if not (np.array_equal(cv.iters, ref.iters) and np.array_equal(cv.contexts, ref.contexts)):
            raise ValueError("all seeds must share the same evaluated iterations and contexts")
    task1 = np.stack([cv.acc[:, 0] for cv in curve_list])  # [seeds, T]
    c, s = task1.mean(axis=0), task1.std(axis=0, ddof=0)
    n = ref.n_contexts

    end_idx = [ref.stage_end(k) for k in range(1, n + 1)]
    min_idx = [int(np.flatnonzero(ref.stage_mask(k))[np.argmin(c[ref.stage_mask(k)])])
               for k in range(1, n + 1)]
    final, s_final = c[end_idx], s[end_idx]
    mins, s_min = c[min_idx], s[min_idx]

    avg_acc = (final.mean(), math.sqrt(np.sum(s_final**2)) / n)
    if n > 1:
        avg_min = (mins[:-1].mean(), math.sqrt(np.sum(s_min[:-1] ** 2)) / (n - 1))
        wc = (final[-1] / n + (1 - 1 / n) * avg_min[0],
              math.sqrt((s_final[-1] / n) ** 2 + ((1 - 1 / n) * avg_min[1]) ** 2))
    else:
        avg_min = (math.nan, math.nan)
        wc = (final[0], s_final[0])

    sg = []
    for k in range(n - 1):
        f, sf, m, sm = final[k], s_final[k], mins[k + 1], s_min[k + 1]
        if f == 0:
            sg.append((math.nan, math.nan))
            continue
        var = (sf**2 + sm**2) / f**2 + (f - m) ** 2 * sf**2 / f**4
        sg.append(((f - m) / f, math.sqrt(var)))
    if sg:
        avg_sg = (np.mean([v for v, _ in sg]), math.sqrt(sum(e**2 for _, e in sg)) / (n - 1))
    else:
        avg_sg = (math.nan, math.nan)

    return _clean({
        "final": list(zip(final, s_final)),
        "min": list(zip(mins, s_min)),
        "avg_acc": avg_acc,
        "avg_min_acc": avg_min,
        "wc_acc": wc,
        "sg": sg,
        "avg_sg": avg_sg,
    })


def _mean_std(values: list, ddof: int) -> dict:
    """Mean and std over the defined (non-None) values; n = how many there were."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    mean = xs.mean() if xs.size else math.nan
    std = xs.std(ddof=ddof) if xs.size > ddof else math.nan
    return _clean({"mean": mean, "std": std, "n": int(xs.size)})


def mean_std_over_seeds(run_metric_list: list[dict], ddof: int = 0) -> dict:
    """Per-seed metrics, then mean +- std over seeds (docs/protocol.md §6, second aggregation).

    Input: a list of :func:`run_metrics` dicts (one per seed). For every scalar metric
    ``{"mean", "std", "n"}``; for every list metric (per stage or per switch) a list of such dicts,
    entry by entry. None values are left out of the statistics and ``n`` counts the values used: for
    ``recover`` this is the number of seeds that recovered at that switch (mean/std are None when no
    seed did). ``ddof`` 0 gives the population std (as the v1 table), 1 the sample std.
    """
    out = {}
    for family in run_metric_list[0]:
        per_seed = [rm[family] for rm in run_metric_list]
        fam_out = {}
        for key, first in per_seed[0].items():
            if isinstance(first, list):
                lengths = {len(m[key]) for m in per_seed}
                if len(lengths) != 1:
                    raise ValueError(f"{family}.{key}: seeds disagree on the number of entries")
                fam_out[key] = [_mean_std([m[key][i] for m in per_seed], ddof)
                                for i in range(len(first))]
            else:
                fam_out[key] = _mean_std([m[key] for m in per_seed], ddof)
        out[family] = fam_out
    return out
