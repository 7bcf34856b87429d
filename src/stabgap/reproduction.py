"""Did it reproduce? Our numbers beside the paper's, and the paper's claims tested (no torch).

Reference data (package data in reference/, or the config's `reproduction.reference`: a folder of
CSV files in the same format, with its own protocols.yaml): one CSV per published table, one row per
value with its source (version, table, metric family, the protocol it came from). Accuracies are
in percent, SG values fractions, as published.

Comparison rule (one row per benchmark × method × family × metric):
- ours: the family's statistic over our seeds (task1_v1: on the seed-mean task-1 curve, as v1;
  seen: the mean of the per-seed values; gain: the seed mean of NGM-SGD's mean output gain per stage);
- SE: seed-level bootstrap (resample our seeds with replacement, recompute the statistic the way
  the family computes it), floored at one test image's worth (100 / task-1 test images for an
  accuracy, 1 / that for an SG);
- assuming the paper's runs have the spread of ours, SE_Δ = √2·SE; *consistent* if |Δ| ≤ k·SE_Δ
  (k = 2), else *differs*. The paper's propagated ± is shown, never used as a sample std.
- *not comparable* (with the reason) when our runs' settings differ from the paper's protocol in
  anything but the accepted deviations of protocols.yaml; *not run*: we have no such runs; *not in
  ours*: a metric our family does not compute; *not in the paper*: ours, without a paper value.

Claims (claims.yaml): evaluated per benchmark (and comparator) on per-seed values with scipy.stats;
verdicts *holds*, *does not hold*, *inconclusive*, *not run*, *not comparable*, each row with the
numbers behind it, and a summary per claim ("holds on 4 of 5").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import metrics as M
from .fileio import atomic_write_text

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REFERENCE_COLUMNS = ["version", "table", "family", "benchmark", "method", "metric", "value", "pm", "protocol", "source"]
FAMILIES = ("task1_v1", "seen", "gain")  # the families a reference may hold
OUR_METRICS = {"task1_v1": ["avg_acc", "avg_min_acc", "wc_acc", "avg_sg"], "seen": ["avg_acc", "min_acc", "wc_acc", "avg_sg"]}
ACCURACY_METRICS = {"avg_acc", "avg_min_acc", "min_acc", "wc_acc", "final", "min"}
METHOD_KEYS = ("optimizer", "lr", "momentum", "modulated_momentum", "beta1", "beta2", "eps", "gain", "g0", "gamma")
RUN_KEYS = ("iters_per_context", "batch_size", "eta", "test_augment")


# ---------------------------------------------------------------- reference data

def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """All reference rows of a folder of CSVs (default: the package's) or of one CSV file."""
    path = Path(path) if path else REFERENCE_DIR
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"reproduction.reference: no CSV files in {path}")
    frames = []
    for f in files:
        df = pd.read_csv(f, dtype={"pm": float, "value": float}, keep_default_na=True)
        missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"reference file {f} lacks the column(s) {', '.join(missing)} "
                             f"(a reference file has: {', '.join(REFERENCE_COLUMNS)})")
        bad = sorted(set(df.family) - set(FAMILIES))
        if bad:
            raise ValueError(f"reference file {f}: unknown metric family {bad}; known: {', '.join(FAMILIES)}")
        frames.append(df[REFERENCE_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def load_protocols(path: str | Path | None = None) -> dict:
    """protocols.yaml beside the reference CSVs (the package's when the folder has none)."""
    folder = Path(path) if path else REFERENCE_DIR
    folder = folder if folder.is_dir() else folder.parent
    file = folder / "protocols.yaml" if (folder / "protocols.yaml").is_file() else REFERENCE_DIR / "protocols.yaml"
    return yaml.safe_load(file.read_text())


def load_claims(path: str | Path | None = None) -> list[dict]:
    file = Path(path) if path else REFERENCE_DIR / "claims.yaml"
    return yaml.safe_load(file.read_text())


# ---------------------------------------------------------------- our runs

@dataclass
class Group:
    """Our runs of one benchmark × method (the main experiment: no overrides)."""
    benchmark: str
    method: str
    dataset: dict  # the config's dataset entry (builder and options)
    runs: list = field(default_factory=list)  # (summary, metrics, log path) of runs that did not diverge
    diverged: int = 0

    @property
    def n(self) -> int:
        return len(self.runs)

    cache: dict = field(default_factory=dict, repr=False)  # read once: per-seed values, v1 curves

    def per_seed(self, family: str, metric: str) -> np.ndarray:
        """Per-seed values of `metric` (sg_k: the k-th switch; gain_k: the gain in stage k)."""
        if (family, metric) not in self.cache:
            self.cache[(family, metric)] = self._per_seed(family, metric)
        return self.cache[(family, metric)]

    def curves(self) -> list:
        if "curves" not in self.cache:
            self.cache["curves"] = [M.test_curves(pd.read_parquet(log), tasks=1) for _, _, log in self.runs]
        return self.cache["curves"]

    def _per_seed(self, family: str, metric: str) -> np.ndarray:
        if family == "gain":
            k = int(metric.split("_")[1])
            stages = [gain_per_stage(log) for _, _, log in self.runs]
            return np.array([g[k - 1] if len(g) >= k else math.nan for g in stages])
        out = []
        for _, m, _ in self.runs:
            fam = m.get(family)
            if fam is None:  # e.g. no "seen" metrics: the run evaluated task 1 only
                out.append(math.nan)
                continue
            if metric.startswith("sg_"):
                k = int(metric.split("_")[1])
                out.append(fam["sg"][k - 1] if len(fam["sg"]) >= k else math.nan)
            else:
                out.append(fam.get(metric, math.nan))
        return np.array([math.nan if v is None else float(v) for v in out])

    def missing(self, family: str) -> str:
        """Why some runs have no `family` metrics ("" when all have them)."""
        if family not in ("task1", "seen"):
            return ""
        skipped = [m.get("skipped", {}).get(family) for _, m, _ in self.runs if m.get(family) is None]
        return f"{len(skipped)} of {self.n} runs: {skipped[0]}" if skipped else ""

    def task1_test_images(self) -> int:
        if "n_test" not in self.cache:
            log = pd.read_parquet(self.runs[0][2], columns=["split", "task", "n"])
            self.cache["n_test"] = int(log[(log.split == "test") & (log.task == 1)]["n"].iloc[0])
        return self.cache["n_test"]


def gain_per_stage(log_path) -> list[float]:
    """Mean output gain (the last modulated layer) over the training iterations of each context."""
    log = pd.read_parquet(log_path)
    col = [c for c in log.columns if c.startswith("gain_")][-1]
    train = log[log.split == "train"]
    return train.groupby("context")[col].mean().tolist()


def load_groups(run_dirs, datasets: dict) -> dict[tuple[str, str], Group]:
    """(benchmark, method) -> Group, from run folders; datasets: {benchmark: its config dataset entry}."""
    groups: dict[tuple[str, str], Group] = {}
    for d in map(Path, run_dirs):
        summary = json.loads((d / "summary.json").read_text())
        if summary["run"].get("variant", summary["method"]) != summary["method"]:
            continue  # variants with overrides (the sweep) are not the paper's runs
        key = (summary["benchmark"], summary["method"])
        g = groups.setdefault(key, Group(*key, dataset=datasets.get(summary["benchmark"], {})))
        if summary.get("diverged"):
            g.diverged += 1
            continue
        g.runs.append((summary, json.loads((d / "metrics.json").read_text()), d / "log.parquet"))
    return groups


def comparability(group: Group, protocol: dict) -> list[str]:
    """Why our runs are not the paper's (empty: comparable). Accepted deviations are never listed."""
    reasons = []
    bench = protocol["benchmarks"].get(group.benchmark)
    if bench is None:
        return [f"the paper's protocol has no benchmark {group.benchmark}"]
    builder = group.dataset.get("builder")
    if bench.get("dataset") and builder != bench["dataset"]:
        reasons.append(f"dataset {builder}, the paper's {bench['dataset']}")
    if group.dataset.get("check_md5") is False:
        reasons.append("md5 checks off: the data are not verified to be the original files")
    if not group.runs:
        return reasons + ["no run finished without diverging"]
    run, resolved = group.runs[0][0]["run"], group.runs[0][0]["resolved_method"]
    for key in RUN_KEYS:
        if bench.get(key) is not None and run.get(key) != bench[key]:
            reasons.append(f"{key} {run.get(key)}, the paper's {bench[key]}")
    for key, want in protocol.get("evaluation", {}).items():
        if run.get(key) != want:
            reasons.append(f"{key} {run.get(key)}, the paper's {want}")
    for key, want in protocol.get("methods", {}).get(group.method, {}).items():
        got = resolved.get(key)
        same = (got == want) if isinstance(want, str) or want is None else (
            got is not None and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12))
        if not same:
            reasons.append(f"{group.method}.{key} {got}, the paper's {want}")
    if group.method not in protocol.get("methods", {}):
        reasons.append(f"the paper's protocol has no method {group.method}")
    if group.n < protocol.get("seeds", 0):
        reasons.append(f"{group.n} seeds, the paper's {protocol['seeds']}")
    return reasons


def unstated(protocol: dict, benchmark: str) -> list[str]:
    bench = protocol["benchmarks"].get(benchmark, {})
    return [k for k, v in bench.items() if v is None]


# ---------------------------------------------------------------- our statistic and its SE

def statistic(group: Group, family: str, metric: str, seeds=None) -> float:
    """The family's statistic over our seeds (`seeds`: indices into group.runs, for the bootstrap)."""
    idx = list(range(group.n)) if seeds is None else list(seeds)
    if family == "task1_v1":
        curves = group.curves()
        v1 = M.task1_metrics_v1([curves[i] for i in idx])
        if metric.startswith("sg_"):
            k = int(metric.split("_")[1])
            value = v1["sg"][k - 1][0] if len(v1["sg"]) >= k else None
        else:
            value = v1.get(metric, [None])[0]
        return math.nan if value is None else float(value)
    values = group.per_seed(family, metric)[idx]
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def bootstrap_se(group: Group, family: str, metric: str, n_boot: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    stats = [statistic(group, family, metric, rng.integers(0, group.n, group.n)) for _ in range(n_boot)]
    stats = np.array([s for s in stats if np.isfinite(s)])
    return float(stats.std(ddof=1)) if len(stats) > 1 else 0.0


def se_floor(metric: str, family: str, test_images: int) -> float:
    if family == "gain":
        return 0.0
    one_image = 1.0 / test_images
    return 100.0 * one_image if metric in ACCURACY_METRICS else one_image


# ---------------------------------------------------------------- the comparison table

def compare(groups: dict, reference: pd.DataFrame, protocols: dict, n_boot: int = 1000, k: float = 2.0,
            seed: int = 0) -> pd.DataFrame:
    rows = []
    ours_keys = set()
    for ref in reference.itertuples(index=False):
        key = (ref.benchmark, ref.method)
        row = {"benchmark": ref.benchmark, "method": ref.method, "family": ref.family, "metric": ref.metric,
               "ours": math.nan, "ours_se": math.nan, "paper": ref.value, "paper_pm": ref.pm,
               "delta": math.nan, "se_delta": math.nan, "seeds": 0, "verdict": "", "note": "",
               "version": ref.version, "table": ref.table, "source": ref.source}
        group = groups.get(key)
        if group is None or group.n == 0:
            row["verdict"] = "not run"
            if group is not None:
                row["note"] = f"all {group.diverged} runs diverged"
            rows.append(row)
            continue
        ours_keys.add((ref.benchmark, ref.method, ref.family, ref.metric))
        rows.append(_fill(row, group, protocols[ref.protocol], n_boot, k, seed))
    # ours, where the paper has no value
    for (bench, method), group in groups.items():
        if group.n == 0:
            continue
        families = {f for f in reference.family[reference.benchmark == bench]} or {"task1_v1", "seen"}
        for family in sorted(families & set(OUR_METRICS)):
            for metric in OUR_METRICS[family]:
                if (bench, method, family, metric) in ours_keys:
                    continue
                if ((reference.benchmark == bench) & (reference.method == method) & (reference.family == family)
                        & (reference.metric == metric)).any():
                    continue
                row = {"benchmark": bench, "method": method, "family": family, "metric": metric,
                       "paper": math.nan, "paper_pm": math.nan, "version": "", "table": "", "source": ""}
                rows.append(_fill(row, group, None, n_boot, k, seed))
    return pd.DataFrame(rows)


def _fill(row: dict, group: Group, protocol: dict | None, n_boot: int, k: float, seed: int) -> dict:
    family, metric = row["family"], row["metric"]
    ours = statistic(group, family, metric)
    row.update(ours=ours, seeds=group.n)
    if not math.isfinite(ours):
        row.update(verdict="not in ours", note=group.missing(family) or f"our {family} family has no {metric} here")
        return row
    se = max(bootstrap_se(group, family, metric, n_boot, seed), se_floor(metric, family, group.task1_test_images()))
    row.update(ours_se=se)
    if protocol is None:
        row.update(verdict="not in the paper", note="")
        return row
    delta, se_delta = ours - row["paper"], math.sqrt(2.0) * se
    row.update(delta=delta, se_delta=se_delta)
    reasons = comparability(group, protocol)
    notes = [f"not stated by the paper: {', '.join(unstated(protocol, group.benchmark))}"] if unstated(
        protocol, group.benchmark) else []
    if reasons:
        row.update(verdict="not comparable", note="; ".join(reasons + notes))
    else:
        row.update(verdict="consistent" if abs(delta) <= k * se_delta else "differs", note="; ".join(notes))
    return row


# ---------------------------------------------------------------- claims

def _protocol_for(benchmark: str, protocols: dict) -> dict | None:
    for name in ("v1", "v2"):
        if name in protocols and benchmark in protocols[name]["benchmarks"]:
            return protocols[name]
    return next((p for p in protocols.values() if isinstance(p, dict) and benchmark in p.get("benchmarks", {})), None)


def per_seed_values(group: Group, claim: dict) -> np.ndarray:
    if claim["kind"] == "slope":
        slopes = []
        for g in zip(*[group.per_seed("gain", f"gain_{k}") for k in range(1, _n_stages(group) + 1)]):
            slopes.append(np.polyfit(np.arange(1, len(g) + 1), g, 1)[0] if len(g) > 1 else math.nan)
        return np.array(slopes)
    return group.per_seed(claim["family"], claim["metric"])


def _n_stages(group: Group) -> int:
    return int(group.runs[0][0]["n_contexts"])


def bootstrap_diff_ci(a, b, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    d = [rng.choice(a, len(a)).mean() - rng.choice(b, len(b)).mean() for _ in range(n_boot)]
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def test_superiority(a, b, better: str, alpha: float, n_boot: int, seed: int) -> dict:
    """`a` better than `b` (better: "lower" or "higher"): one-sided Welch t-test and Mann-Whitney U."""
    from scipy import stats

    side = "less" if better == "lower" else "greater"
    welch = stats.ttest_ind(a, b, equal_var=False, alternative=side).pvalue
    mwu = stats.mannwhitneyu(a, b, alternative=side).pvalue
    lo, hi = bootstrap_diff_ci(a, b, n_boot, seed)
    diff = float(np.mean(a) - np.mean(b))
    if not np.isfinite(welch):  # no spread on either side: the means say it
        welch = 0.0 if (diff < 0 if better == "lower" else diff > 0) else 1.0
    wrong_side = lo > 0 if better == "lower" else hi < 0
    verdict = "holds" if welch < alpha and mwu < alpha else "does not hold" if wrong_side else "inconclusive"
    return {"verdict": verdict, "diff": diff, "ci_low": lo, "ci_high": hi, "p_welch": float(welch), "p_mwu": float(mwu),
            "tests": "Welch, Mann-Whitney U"}


def test_noninferiority(a, b, better: str, margin: float, alpha: float, n_boot: int, seed: int) -> dict:
    """`a` not worse than `b` by more than `margin` (one side of TOST, Welch): holds when H0 "worse
    by the margin or more" is rejected; does not hold when "within the margin" is rejected."""
    from scipy import stats

    shift = margin if better == "higher" else -margin
    ok_side, bad_side = ("greater", "less") if better == "higher" else ("less", "greater")
    p_ok = stats.ttest_ind(a + shift, b, equal_var=False, alternative=ok_side).pvalue
    p_bad = stats.ttest_ind(a + shift, b, equal_var=False, alternative=bad_side).pvalue
    lo, hi = bootstrap_diff_ci(a, b, n_boot, seed)
    diff = float(np.mean(a) - np.mean(b))
    if not np.isfinite(p_ok):
        inside = diff + shift > 0 if better == "higher" else diff + shift < 0
        p_ok, p_bad = (0.0, 1.0) if inside else (1.0, 0.0)
    verdict = "holds" if p_ok < alpha else "does not hold" if p_bad < alpha else "inconclusive"
    return {"verdict": verdict, "diff": diff, "ci_low": lo, "ci_high": hi, "p_welch": float(p_ok), "p_mwu": math.nan,
            "tests": "Welch vs margin"}


def test_slope(s, kind: str, margin: float, alpha: float, n_boot: int, seed: int) -> dict:
    """Per-seed slopes `s`: "positive" (t-test and Wilcoxon signed-rank against 0) or "flat"
    (not above `margin`: a one-sided t-test against it)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    boot = [rng.choice(s, len(s)).mean() for _ in range(n_boot)]
    lo, hi = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    out = {"diff": float(np.mean(s)), "ci_low": lo, "ci_high": hi}
    if kind == "positive":
        p = stats.ttest_1samp(s, 0.0, alternative="greater").pvalue
        w = stats.wilcoxon(s, alternative="greater").pvalue if np.any(s != 0) else 1.0
        p_neg = stats.ttest_1samp(s, 0.0, alternative="less").pvalue
        verdict = "holds" if p < alpha and w < alpha else "does not hold" if p_neg < alpha else "inconclusive"
        return {**out, "verdict": verdict, "p_welch": float(p), "p_mwu": float(w), "tests": "t-test, Wilcoxon"}
    p_ok = stats.ttest_1samp(s, margin, alternative="less").pvalue
    p_bad = stats.ttest_1samp(s, margin, alternative="greater").pvalue
    verdict = "holds" if p_ok < alpha else "does not hold" if p_bad < alpha else "inconclusive"
    return {**out, "verdict": verdict, "p_welch": float(p_ok), "p_mwu": math.nan, "tests": "t-test vs margin"}


def evaluate_claims(claims: list[dict], groups: dict, protocols: dict, alpha: float = 0.05, n_boot: int = 1000,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per claim × benchmark × comparator, one summary row per claim)."""
    rows, summary = [], []
    for claim in claims:
        claim_rows = []
        for bench in claim["benchmarks"]:
            versus = claim.get("versus") or [None]
            mine = groups.get((bench, claim["method"]))
            others = [groups.get((bench, v)) for v in versus if v is not None]
            base = {"claim": str(claim["id"]), "text": claim["text"], "benchmark": bench, "method": claim["method"],
                    "versus": "", "n": 0, "diff": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                    "p_welch": math.nan, "p_mwu": math.nan, "tests": "", "margin": claim.get("margin", math.nan), "note": ""}
            if mine is None or mine.n < 2 or any(o is None or o.n < 2 for o in others):
                claim_rows.append({**base, "versus": ", ".join(v for v in versus if v), "verdict": "not run",
                                   "note": "needs at least 2 seeds of every method"})
                continue
            missing = [g.missing(claim.get("family", "")) for g in [mine] + others]
            if any(missing):
                claim_rows.append({**base, "versus": ", ".join(v for v in versus if v), "verdict": "not run",
                                   "note": f"no {claim['family']} metrics in some runs ("
                                           + "; ".join(m for m in missing if m) + ")"})
                continue
            protocol = _protocol_for(bench, protocols)
            reasons = comparability(mine, protocol) if protocol else ["no paper protocol for this benchmark"]
            for o in others:
                reasons += [r for r in (comparability(o, protocol) if protocol else []) if r not in reasons]
            a = per_seed_values(mine, claim)
            if claim["kind"] == "slope":
                results = [(None, test_slope(a, claim["slope"], claim.get("margin", 0.0), alpha, n_boot, seed))]
            else:
                if claim.get("versus_best"):
                    best = max if claim["better"] == "higher" else min
                    others = [best(others, key=lambda g: np.nanmean(per_seed_values(g, claim)))]
                results = []
                for o in others:
                    b = per_seed_values(o, claim)
                    if claim["kind"] == "superiority":
                        res = test_superiority(a, b, claim["better"], alpha, n_boot, seed)
                    else:
                        res = test_noninferiority(a, b, claim["better"], claim["margin"], alpha, n_boot, seed)
                    results.append((o.method, res))
            for vs, res in results:
                row = {**base, **res, "versus": vs or "", "n": mine.n}
                if reasons:
                    row.update(note=f"{res['verdict']} on our runs, but " + "; ".join(reasons), verdict="not comparable")
                claim_rows.append(row)
        rows += claim_rows
        counts = pd.Series([r["verdict"] for r in claim_rows]).value_counts()
        evaluated = sum(counts.get(v, 0) for v in ("holds", "does not hold", "inconclusive"))
        parts = [f"holds on {counts.get('holds', 0)} of {evaluated}"] if evaluated else []
        parts += [f"{counts[v]} {v}" for v in ("does not hold", "inconclusive", "not comparable", "not run")
                  if counts.get(v, 0) and (v not in ("does not hold", "inconclusive"))]
        summary.append({"claim": str(claim["id"]), "text": claim["text"], "summary": "; ".join(parts) or "nothing evaluated"})
    return pd.DataFrame(rows), pd.DataFrame(summary)


# ---------------------------------------------------------------- files: tables, figure

def _num(v, digits=3) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def comparison_display(comp: pd.DataFrame) -> pd.DataFrame:
    from .benchmarks import benchmark_title
    from .methods import method_label

    return pd.DataFrame({
        "benchmark": comp.benchmark.map(benchmark_title), "method": comp.method.map(method_label),
        "family": comp.family, "metric": comp.metric,
        "ours ± SE": [f"{_num(o)} ± {_num(s)}" if math.isfinite(o) and math.isfinite(s) else _num(o)
                      for o, s in zip(comp.ours, comp.ours_se)],
        "paper (± as published)": [f"{_num(p)} ± {_num(q)}" if math.isfinite(q) else _num(p)
                                   for p, q in zip(comp.paper, comp.paper_pm)],
        "Δ": comp.delta.map(_num), "SE_Δ": comp.se_delta.map(_num), "verdict": comp.verdict,
        "version": comp.version, "note": comp.note})


def claims_display(rows: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    from .methods import method_label

    if rows.empty:
        return pd.DataFrame(columns=["claim", "benchmark", "comparison", "verdict"])
    lines = rows.assign(
        comparison=[f"{method_label(m)} vs " + ", ".join(method_label(x.strip()) for x in v.split(",")) if v else method_label(m)
                    for m, v in zip(rows.method, rows.versus.fillna(""))],
        difference=[f"{_num(d)} [{_num(lo)}, {_num(hi)}]" for d, lo, hi in zip(rows["diff"], rows.ci_low, rows.ci_high)],
        p=[f"{t}: " + _num(a, 4) + (f", {_num(b, 4)}" if math.isfinite(b) else "") if math.isfinite(a) else ""
           for t, a, b in zip(rows.tests.fillna(""), rows.p_welch, rows.p_mwu)])
    lines = lines.merge(summary[["claim", "summary"]], on="claim")
    return lines[["claim", "summary", "benchmark", "comparison", "n", "difference", "p", "verdict", "note"]].rename(
        columns={"difference": "difference [95% CI]", "n": "seeds"})


COMPARISON_CAPTION = ("Our numbers beside the paper's, per benchmark, method, metric family and metric. SE: "
                      "seed-level bootstrap, floored at one test image; the SE of Δ is √2·SE; consistent if Δ lies within 2 of them. "
                      "The paper's ± is shown as published, not used. Not comparable: our settings differ from "
                      "the paper's (reason in the note).")
CLAIMS_CAPTION = ("The paper's claims tested on our per-seed values: one-sided Welch and Mann-Whitney U tests "
                  "for superiority, a one-sided Welch test against the margin for non-inferiority, t and Wilcoxon "
                  "tests of per-seed gain slopes; bootstrap 95 percent intervals of the difference.")


def plot_comparison(comp: pd.DataFrame, out_stem) -> list[Path]:
    """Per benchmark (rows) and metric (columns), each method's paper value (hollow, ± as published)
    beside ours (filled, ± 2 SE), in the method colours of every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .benchmarks import benchmark_title
    from .figures import _save, style
    from .methods import METHODS, method_colour, method_label

    shown = comp[comp.paper.notna() & comp.ours.notna() & comp.family.isin(["task1_v1", "seen"])]
    shown = shown[~shown.metric.str.startswith("sg_")]
    panels = list(dict.fromkeys(zip(shown.family, shown.metric)))
    benches = list(dict.fromkeys(shown.benchmark))
    with plt.rc_context(style()):
        fig, axes = plt.subplots(max(len(benches), 1), max(len(panels), 1), squeeze=False,
                                 figsize=(2.6 * max(len(panels), 1), 2.2 * max(len(benches), 1)))
        for r, bench in enumerate(benches):
            for c, (family, metric) in enumerate(panels):
                ax = axes[r, c]
                sub = shown[(shown.benchmark == bench) & (shown.family == family) & (shown.metric == metric)]
                sub = sub.drop_duplicates(["method"])
                order = {m: i for i, m in enumerate(METHODS)}
                sub = sub.sort_values("method", key=lambda col: col.map(lambda m: order.get(m, len(order))))
                for i, row in enumerate(sub.itertuples()):
                    colour = method_colour(row.method)
                    ax.errorbar(i - 0.15, row.paper, yerr=0 if not math.isfinite(row.paper_pm) else row.paper_pm,
                                fmt="o", mfc="white", color=colour, capsize=2)
                    ax.errorbar(i + 0.15, row.ours, yerr=2 * row.ours_se, fmt="o", color=colour, capsize=2)
                ax.set_xticks(range(len(sub)), [method_label(m) for m in sub.method], rotation=45, fontsize=7)
                ax.set_title(f"{metric} ({family})" if r == 0 else "", fontsize=8)
                if c == 0:
                    ax.set_ylabel(benchmark_title(bench), fontsize=8)
        if not benches:
            axes[0, 0].text(0.5, 0.5, "no run has a paper value to compare with", ha="center", va="center")
            axes[0, 0].set_axis_off()
        fig.suptitle("Paper (hollow, ± as published) and ours (filled, ± 2 SE)", fontsize=9)
        fig.tight_layout()
        return _save(fig, out_stem)


def write_reproduction(run_dirs, out_dir, datasets: dict, reference=None, claims=None, n_boot: int = 1000,
                       k: float = 2.0, alpha: float = 0.05, seed: int = 0) -> list[Path]:
    from .tables import to_html, to_latex, to_markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = load_groups(run_dirs, datasets)
    ref, protocols = load_reference(reference), load_protocols(reference)
    comp = compare(groups, ref, protocols, n_boot=n_boot, k=k, seed=seed)
    rows, summary = evaluate_claims(load_claims(claims), groups, protocols, alpha=alpha, n_boot=n_boot, seed=seed)
    written = []
    for name, long, wide, caption in (("comparison", comp, comparison_display(comp), COMPARISON_CAPTION),
                                      ("claims", rows, claims_display(rows, summary), CLAIMS_CAPTION)):
        stem = out_dir / name
        atomic_write_text(f"{stem}.csv", long.to_csv(index=False))
        atomic_write_text(f"{stem}.md", to_markdown(wide))
        atomic_write_text(f"{stem}.tex", to_latex(wide, caption=caption))
        atomic_write_text(f"{stem}.html", to_html(wide, caption=caption))
        written += [Path(f"{stem}.{ext}") for ext in ("csv", "md", "tex", "html")]
    return written + plot_comparison(comp, out_dir / "figure")
