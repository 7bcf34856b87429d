"""Did it reproduce, curve by curve: our seed-mean curves beside the paper's per-iteration curves
(no torch).

Reference curves: the files named in curves.yaml of the reference folder (the package's: the
authors' released v1 results as the seed mean and std per iteration; a user's folder may hold its
own curves.yaml and files, else the package's are used). Our curve: the mean over our seeds (and
their population std) at every iteration all seeds evaluated. The two are compared on the
iterations both have, so a slice of a run (its first contexts) or a sparsely evaluated run (every ρ,
with or without a dense window after each switch) is compared over what it covers, and says so.

Per benchmark × method × metric (task-1 accuracy and loss; the output gain of a method whose gain
moves):
- band shares: the share of those iterations where our seed-mean lies within the paper's mean ± 1
  std and ± 2 std (its std over its 5 seeds);
- per stage (task-1 accuracy): the final value and the minimum of both curves, and where the minimum
  falls (iterations after the switch).

The verdict, "tracks the paper" or "departs", and where its thresholds come from:
- If our runs and the paper's were draws of one process (i.i.d. normal at each iteration), our
  n-seed mean would lie within the paper's 5-seed mean ± 2 std with probability `expected_share(n)`:
  0.95 for 5 seeds, 0.82 for a single seed (computed by simulation below). The rule asks for that
  share minus SLACK (0.10: the model ignores that curves are correlated over iterations, so a share
  over a few hundred iterations varies far more than an i.i.d. count would, and that on saturated
  stretches, MNIST at 99 %, 5 seeds give a std of a few hundredths of a point). Five faithful seeds
  therefore need 85 % of their iterations within ± 2 std; one seed needs 72 %.
- And, for task-1 accuracy, every minimum after a switch like the paper's, judged like with like:
  the stability gap is a few iterations of a curve, which a share cannot see, and a seed-mean
  curve smooths the dip, whose depth and timing vary from seed to seed, so that a mean over fewer
  seeds dips deeper. With k of our seeds, our statistic X is the minimum, over the stage's
  iterations we evaluated, of our k-seed mean curve. The reference is the same statistic over the
  paper's per-seed curves (a `per_seed` file in curves.yaml), on the same iterations: the minima
  R_S of the k-seed mean curves of every subset S of k of its n seeds (n = 5: C(5, k) subsets),
  centred at m = mean(R_S). Its spread, from the paper's per-seed minima (their std s, ddof 1): a
  k-seed mean's minimum varies as s/√k, and m itself, estimated from n seeds, as s/√n, so
  X − m has sd σ = s·√(1/k + 1/n) (floored at one task-1 test image's worth). X lies within
  m ± t·σ, t the two-sided 95 % Student quantile with n − 1 degrees of freedom (2.78 for n = 5:
  s is estimated from n values). Simulated on curves whose dips jitter in depth (sd 12 points) and
  time (a window of 9 or 22 iterations), a faithful replicate's minimum reads "departs" in 4-7 %
  of cases for k = 1, 2, 3, 5 (`minimum_rule_rates`), where the pointwise mean ± 2 std rule used
  before read one seed's minimum "departs" in 14 %; a gap deeper by 2.5 dip sds is caught in
  40-50 % of cases (5 reference seeds allow no more). Where the reference has no per-seed curves
  (a user's folder), a minimum is held against the paper's mean-curve minimum ± 2 std, the std
  being the larger of the paper's at its minimum and ours at ours, and the row says so.
- A metric other than task-1 accuracy is judged by its band share alone.
Comparability is reported beside the verdict as for the metric rows (comparison.comparability): a
look-alike dataset, other iterations or another protocol are named; the number of seeds and the
evaluation interval are not reasons here (the rule weighs the seeds; the comparison covers the
evaluated iterations).
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd


from .comparison import Group, comparability, comparable, protocol_for
from .reference import curves_index

CURVE_COLUMNS = ["benchmark", "method", "metric", "iteration", "mean", "std", "n_seeds"]
METRICS = ("task1_accuracy", "task1_loss", "gain_out")  # the curves we compare (our logs have all three)
SLACK = 0.10
VERDICTS = ("tracks the paper", "departs")


# ---------------------------------------------------------------- the paper's curves

def _curve_files(path, per_seed: bool, columns: list[str], what: str) -> pd.DataFrame:
    """The reference's curve files of one kind (curves.yaml's `per_seed` entries or the others),
    each checked for its columns and tagged with its protocol; empty when there are none."""
    folder, entries = curves_index(path)
    frames = []
    for entry in entries:
        if bool(entry.get("per_seed")) != per_seed:
            continue
        df = pd.read_csv(folder / entry["file"])
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{what} {folder / entry['file']} lack the column(s) {', '.join(missing)} "
                             f"(such a file has: {', '.join(columns)}{' and its metrics' if per_seed else ''})")
        frames.append((df if per_seed else df[columns]).assign(protocol=entry["protocol"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns + ["protocol"])


def load_curves(path: str | Path | None = None) -> pd.DataFrame:
    """Every reference curve (seed mean and std), with the protocol of its file."""
    return _curve_files(path, False, CURVE_COLUMNS, "reference curves")


SEED_COLUMNS = ["benchmark", "method", "seed", "iteration"]


def load_seed_curves(path: str | Path | None = None) -> pd.DataFrame:
    """Every reference curve seed by seed (the `per_seed` files of curves.yaml): columns benchmark,
    method, seed, iteration and one per metric; empty when the reference has none."""
    return _curve_files(path, True, SEED_COLUMNS, "per-seed reference curves")


def seed_table(seeds: pd.DataFrame, benchmark: str, method: str, metric: str) -> pd.DataFrame | None:
    """The reference's per-seed curves of one benchmark × method × metric: iterations × seeds (None: none)."""
    if metric not in seeds.columns:
        return None
    mine = seeds[(seeds.benchmark == benchmark) & (seeds.method == method)]
    if mine.empty:
        return None
    return mine.pivot(index="iteration", columns="seed", values=metric).dropna()


# ---------------------------------------------------------------- our curves

def run_curve(log: pd.DataFrame, metric: str) -> pd.Series:
    """One run's curve: iteration -> value (task 1's evaluated iterations; the gain at every one)."""
    if metric == "gain_out":  # the last modulated layer's gain: our MLP's gain_out, our ResNet's gain_head
        col = [c for c in log.columns if c.startswith("gain_")][-1]
        train = log[log.split == "train"]
        return pd.Series(train[col].to_numpy(), index=train.iteration.to_numpy())
    test = log[(log.split == "test") & (log.task == 1)]
    return pd.Series(test["accuracy" if metric == "task1_accuracy" else "loss"].to_numpy(),
                     index=test.iteration.to_numpy())


def our_seeds(group: Group, metric: str) -> pd.DataFrame:
    """Our runs' curves at the iterations every seed has: iterations × seeds."""
    return pd.concat([run_curve(pd.read_parquet(log), metric) for _, _, log in group.runs], axis=1, join="inner")


def our_curve(group: Group, metric: str, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The seed mean and population std of our runs at the iterations every seed has."""
    table = our_seeds(group, metric) if table is None else table
    return pd.DataFrame({"iteration": table.index.to_numpy(), "mean": table.mean(axis=1).to_numpy(),
                         "std": table.std(axis=1, ddof=0).to_numpy(), "n_seeds": table.shape[1]})


# ---------------------------------------------------------------- the rule

@lru_cache(maxsize=None)
def expected_share(n_ours: int, n_paper: int = 5, k: float = 2.0, draws: int = 200_000) -> float:
    """P(|mean of n_ours draws − mean of n_paper draws| ≤ k · population std of the n_paper draws)
    for i.i.d. normal draws: the band share a faithful replicate is expected to reach (simulated,
    fixed seed)."""
    rng = np.random.default_rng(0)
    paper = rng.standard_normal((draws, n_paper))
    ours = rng.standard_normal((draws, n_ours)).mean(axis=1)
    return float((np.abs(ours - paper.mean(axis=1)) <= k * paper.std(axis=1)).mean())


def threshold(n_ours: int, n_paper: int = 5) -> float:
    return expected_share(n_ours, n_paper) - SLACK


def minimum_reference(theirs: np.ndarray, k: int, floor: float = 0.0) -> dict:
    """The reference for the minimum of a k-seed mean curve over some iterations, from the paper's
    curves on those iterations (theirs: seeds × iterations): the centre m (the mean over every subset
    of k of its n seeds of the minimum of that subset's mean curve), the sd σ of our minimum minus m,
    and the half-width t·σ of the band (module docstring)."""
    from scipy import stats

    n = len(theirs)
    k_ref = min(k, n)
    subset_minima = [theirs[list(S)].mean(axis=0).min() for S in combinations(range(n), k_ref)]
    spread = float(np.std(theirs.min(axis=1), ddof=1)) if n > 1 else math.nan
    sd = max(spread * math.sqrt(1.0 / k + 1.0 / n), floor)
    t = float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.nan
    return {"centre": float(np.mean(subset_minima)), "low": float(min(subset_minima)), "high": float(max(subset_minima)),
            "sd": sd, "t": t, "half_width": t * sd}


def minimum_within(ours: np.ndarray, theirs: np.ndarray, floor: float = 0.0) -> bool:
    """Whether the minimum of our seeds' mean curve (ours: seeds × iterations) lies within the band
    of the paper's seeds (theirs, on the same iterations): the rule of the module docstring."""
    if len(theirs) < 2:
        raise ValueError("the rule needs the paper's curves of at least 2 seeds (their spread)")
    ref = minimum_reference(theirs, len(ours), floor)
    return bool(abs(ours.mean(axis=0).min() - ref["centre"]) <= ref["half_width"])


def synthetic_dips(rng, n: int, iterations: int = 50, depth: float = 40.0, depth_sd: float = 12.0,
                   onset: tuple[float, float] = (3.0, 12.0), width: float = 3.0, noise: float = 1.0,
                   level: float = 90.0) -> np.ndarray:
    """n curves (n × iterations) of the first iterations after a switch: a Gaussian dip below
    `level` whose depth (mean `depth`, sd `depth_sd`), centre (uniform in `onset`) and width
    (log-normal around `width`) vary from seed to seed, plus noise: the test bed of the minima rule."""
    t = np.arange(1, iterations + 1)
    d = np.clip(rng.normal(depth, depth_sd, n), 0.0, level)
    c = rng.uniform(onset[0], onset[1], n)
    w = width * np.exp(rng.normal(0.0, 0.3, n))
    return level - d[:, None] * np.exp(-((t[None] - c[:, None]) / w[:, None]) ** 2) + rng.normal(0.0, noise, (n, len(t)))


def minimum_rule_rates(k: int, deeper: float = 0.0, onset: tuple[float, float] = (3.0, 12.0), reps: int = 2000,
                       seed: int = 0, rule: str = "seeds") -> float:
    """The share of `reps` simulated comparisons in which k of our seeds' minimum reads "departs"
    against 5 reference seeds of the same process, our dips `deeper` points deeper (0: the
    false-departure rate). rule "seeds": this module's; "mean curve": the pointwise rule it
    replaces (the paper's mean-curve minimum ± 2 std, the larger of its std there and ours)."""
    rng = np.random.default_rng(seed)
    departs = 0
    for _ in range(reps):
        theirs = synthetic_dips(rng, 5, onset=onset)
        ours = synthetic_dips(rng, k, onset=onset, depth=40.0 + deeper)
        if rule == "seeds":
            departs += not minimum_within(ours, theirs)
        else:
            m, i, j = theirs.mean(axis=0), theirs.mean(axis=0).argmin(), ours.mean(axis=0).argmin()
            sd = max(theirs.std(axis=0)[i], ours.std(axis=0)[j] if k > 1 else 0.0)
            departs += abs(ours.mean(axis=0)[j] - m[i]) > 2 * sd
    return departs / reps


def stages(ours: pd.DataFrame, paper: pd.DataFrame, iters_per_context: int) -> list[dict]:
    """Per stage our curve covers: final value and minimum of both (the paper's over the iterations
    of the stage up to the last one we cover), where the minimum falls (iterations after the
    stage's start), the spacing of our evaluations around our minimum, the std at each minimum."""
    I = iters_per_context
    out = []
    ours = ours.assign(stage=(ours.iteration - 1) // I + 1)
    paper = paper.assign(stage=(paper.iteration - 1) // I + 1)
    for k, mine in ours.groupby("stage"):
        theirs = paper[(paper.stage == k) & (paper.iteration <= mine.iteration.max())]
        if theirs.empty:
            continue
        last = mine.iteration.max()
        i_o, i_p = mine["mean"].to_numpy().argmin(), theirs["mean"].to_numpy().argmin()
        at_o, at_p = int(mine.iteration.iloc[i_o]), int(theirs.iteration.iloc[i_p])
        its = mine.iteration.to_numpy()
        before = at_o - (its[i_o - 1] if i_o > 0 else (k - 1) * I)
        after = its[i_o + 1] - at_o if i_o + 1 < len(its) else 1
        end = theirs[theirs.iteration == last]
        out.append({"stage": int(k), "covered_to": int(last - (k - 1) * I), "final_ours": float(mine["mean"].iloc[-1]),
                    "final_paper": float(end["mean"].iloc[0]) if len(end) else math.nan,
                    "min_ours": float(mine["mean"].iloc[i_o]), "min_ours_at": at_o - (k - 1) * I,
                    "min_ours_std": float(mine["std"].iloc[i_o]), "min_gap": int(max(before, after)),
                    "min_paper": float(theirs["mean"].iloc[i_p]), "min_paper_at": at_p - (k - 1) * I,
                    "min_paper_std": float(theirs["std"].iloc[i_p])})
    return out


def compare_curve(ours: pd.DataFrame, paper: pd.DataFrame, iters_per_context: int, n_contexts: int,
                  metric: str = "task1_accuracy", paper_seeds: pd.DataFrame | None = None,
                  floor: float = 0.0) -> dict:
    """Our curve (iteration, mean, std, n_seeds) against the paper's (iteration, mean, std, n_seeds):
    band shares on the common iterations, the stages, the verdict and why. With the paper's per-seed
    curves (iterations × seeds, at least 2), each minimum after a switch is judged against the same
    statistic over the paper's seeds (the module docstring); else against its mean curve."""
    both = ours.merge(paper, on="iteration", suffixes=("", "_paper"))
    n, n_paper = int(ours.n_seeds.iloc[0]), int(paper.n_seeds.iloc[0])
    diff = (both["mean"] - both["mean_paper"]).abs()
    share1 = float((diff <= both["std_paper"]).mean()) if len(both) else math.nan
    share2 = float((diff <= 2 * both["std_paper"]).mean()) if len(both) else math.nan
    need = threshold(n, n_paper)
    why = [] if share2 >= need else [f"band share {share2:.2f} < {need:.2f}"]
    st = stages(ours[ours.iteration.isin(both.iteration)], paper, iters_per_context) if metric == "task1_accuracy" else []
    by_seed = paper_seeds is not None and len(paper_seeds.columns) > 1
    for s in st[1:]:  # the minimum after each switch
        its = both.iteration[(both.iteration - 1) // iters_per_context + 1 == s["stage"]].to_numpy()
        its = its[np.isin(its, paper_seeds.index)] if by_seed else its  # iterations every paper seed has
        if by_seed and len(its):
            n_paper = len(paper_seeds.columns)
            ref = minimum_reference(paper_seeds.loc[its].to_numpy().T, n, floor)
            centre, half = ref["centre"], ref["half_width"]
            rule = f"{n}-seed means of the paper's {n_paper} seeds"
            if n > n_paper:  # more seeds than the paper's: its n-seed mean is the nearest it has
                rule = f"{n} seeds against the mean of all the paper's {n_paper} (it has no {n}-seed means)"
            s.update(min_rule=rule, min_ref=centre, min_ref_low=ref["low"], min_ref_high=ref["high"],
                     min_ref_sd=ref["sd"], min_band=half)
        else:
            centre, half = s["min_paper"], 2 * max(s["min_paper_std"], s["min_ours_std"] if n > 1 else 0.0)
            s.update(min_rule="the paper's mean curve ± 2 std (no per-seed reference curves)", min_ref=centre,
                     min_ref_low=math.nan, min_ref_high=math.nan, min_ref_sd=half / 2, min_band=half)
        s["min_within"] = bool(abs(s["min_ours"] - centre) <= half)
        if not s["min_within"]:
            kind = "deeper" if s["min_ours"] < centre else "shallower"
            what = (f"the minima of {n}-seed means of the paper's seeds, {centre:.1f} ± {half:.1f}" if by_seed
                    else f"{centre:.1f} ± {half:.1f}")
            why.append(f"{kind} gap after switch {s['stage'] - 1}: minimum {s['min_ours']:.1f} against {what}")
    contexts = sorted(set((both.iteration - 1) // iters_per_context + 1))
    total = iters_per_context * n_contexts
    covered = (f"contexts {contexts[0]}-{contexts[-1]} of {n_contexts}" if contexts else "nothing") + \
        f": {len(both)} of {total} iterations"
    return {"seeds": n, "iterations": len(both), "covered": covered, "share_1sd": share1, "share_2sd": share2,
            "expected_2sd": expected_share(n, n_paper), "threshold": need,
            "verdict": VERDICTS[1] if why or not len(both) else VERDICTS[0], "why": "; ".join(why), "stages": st}


def compare_curves(groups: dict, curves: pd.DataFrame, protocols: dict,
                   seed_curves: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per benchmark × method × metric, one row per stage of the task-1 accuracy);
    seed_curves: the reference's per-seed curves (load_seed_curves), for the minima."""
    seed_curves = pd.DataFrame(columns=SEED_COLUMNS) if seed_curves is None else seed_curves
    rows, stage_rows = [], []
    for (bench, method), group in groups.items():
        paper_all = curves[(curves.benchmark == bench) & (curves.method == method)]
        if paper_all.empty or group.n == 0:
            continue
        protocol = protocols.get(paper_all.protocol.iloc[0]) or protocol_for(bench, protocols)
        I = paper_iters_per_context(group, protocol)
        n_contexts = int(paper_all.iteration.max()) // I
        reasons = comparability(group, protocol, curves=True) if protocol else ["no paper protocol for this benchmark"]
        for metric in METRICS:
            paper = paper_all[paper_all.metric == metric]
            if paper.empty or (metric == "gain_out" and not _gain_moves(group, paper)):
                continue
            mine = our_seeds(group, metric)
            theirs = seed_table(seed_curves, bench, method, metric)
            floor = 100.0 / group.task1_test_images() if metric == "task1_accuracy" else 0.0
            result = compare_curve(our_curve(group, metric, mine), paper, I, n_contexts, metric, theirs, floor)
            stage_rows += [{"benchmark": bench, "method": method, **s} for s in result.pop("stages")]
            rows.append({"benchmark": bench, "method": method, "metric": metric, **result,
                         "comparable": comparable(reasons)})
    return pd.DataFrame(rows), pd.DataFrame(stage_rows)


def paper_iters_per_context(group: Group, protocol: dict | None) -> int:
    """The paper's iterations per context for a group's benchmark (its protocol's; ours if unstated):
    the stages of both curves are the paper's."""
    stated = ((protocol or {}).get("benchmarks", {}).get(group.benchmark) or {}).get("iters_per_context")
    return int(stated or group.runs[0][0]["run"]["iters_per_context"])


def _gain_moves(group: Group, paper: pd.DataFrame) -> bool:
    """A gain curve says something only for a method whose gain moves (the paper's, or ours)."""
    return bool((paper["mean"] != 1.0).any()) or group.runs[0][0]["resolved_method"].get("gain") != "frozen"


# ---------------------------------------------------------------- the table as shown

def curves_display(rows: pd.DataFrame) -> pd.DataFrame:
    from .benchmarks import benchmark_title
    from .methods import method_label

    if rows.empty:
        return pd.DataFrame(columns=["benchmark", "method", "metric", "verdict"])
    return pd.DataFrame({
        "benchmark": rows.benchmark.map(benchmark_title), "method": rows.method.map(method_label),
        "metric": rows.metric, "seeds": rows.seeds, "compared": rows.covered,
        "within ± 1 std": rows.share_1sd.map(lambda v: f"{v:.0%}"),
        "within ± 2 std": rows.share_2sd.map(lambda v: f"{v:.0%}"),
        "needed": rows.threshold.map(lambda v: f"{v:.0%}"), "verdict": rows.verdict, "why": rows.why,
        "comparable": rows.comparable})


CURVES_CAPTION = ("Our seed-mean curves against the paper's per-iteration mean and std, on the iterations both "
                  "have: the share within the paper's mean plus or minus 1 and 2 std; tracks the paper if the 2-std "
                  "share reaches what a faithful replicate with our seed count would reach, less 0.10, and every "
                  "task-1 minimum after a switch lies within the band of the same statistic over the paper's seeds "
                  "(the minima of means of as many of its seeds as we have). Comparable: whether our runs are "
                  "the paper's protocol.")
