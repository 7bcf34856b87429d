"""Our numbers beside the paper's published ones (no torch).

Reference data (package data in reference/, or the config's `reproduction.reference`: a folder of
CSV files in the same format, with its own protocols.yaml): one CSV per published table, one row per
value with its source (version, table, metric family, the protocol it came from). Accuracies are
in percent, SG values fractions, as published.

The rule, one row per benchmark × method × family × metric:
- ours: the family's statistic over our seeds (task1_v1: on the seed-mean task-1 curve, as v1;
  seen: the mean of the per-seed values; gain: the seed mean of NGM-SGD's mean output gain per stage);
- SE: seed-level bootstrap (resample our seeds with replacement, recompute the statistic the way
  the family computes it), floored at one test image's worth (100 / task-1 test images for an
  accuracy, 1 / that for an SG);
- assuming the paper's runs have the spread of ours, SE_Δ = √2·SE; *consistent* if |Δ| ≤ k·SE_Δ
  (k = 2), else *differs*. The paper's propagated ± is shown, never used as a sample std;
- *not run*: we have no such runs; *not in ours*: a metric our family does not compute; *not in the
  paper*: ours, without a paper value.
Beside the verdict, `comparable` says whether our runs are the paper's protocol: "yes", or "not the
paper's protocol: <the reasons>" when they differ in anything but the accepted deviations of
protocols.yaml (the dataset, iterations, seeds, ...). A verdict on runs that are not the paper's
protocol is a verdict on our runs only.

The groups of our runs and the comparability check here serve the claims (claims.py) and the
curves (curves.py) too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics as M
from .reference import REFERENCE_DIR, curves_index

REFERENCE_COLUMNS = ["version", "table", "family", "benchmark", "method", "metric", "value", "pm", "protocol", "source"]
FAMILIES = ("task1_v1", "seen", "gain")  # the families a reference may hold
OUR_METRICS = {"task1_v1": ["avg_acc", "avg_min_acc", "wc_acc", "avg_sg"], "seen": ["avg_acc", "min_acc", "wc_acc", "avg_sg"]}
ACCURACY_METRICS = {"avg_acc", "avg_min_acc", "min_acc", "wc_acc", "final", "min"}
METHOD_KEYS = ("optimizer", "lr", "momentum", "modulated_momentum", "beta1", "beta2", "eps", "gain", "g0", "gamma")
RUN_KEYS = ("iters_per_context", "batch_size", "eta", "test_augment")


# ---------------------------------------------------------------- reference data

def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """All reference rows of a folder of CSVs (default: the package's) or of one CSV file. Curve
    files (those named in the folder's curves.yaml) are curves.py's, not rows."""
    path = Path(path) if path else REFERENCE_DIR
    curve_files = set()
    if path.is_dir() and (path / "curves.yaml").is_file():
        curve_files = {entry["file"] for entry in curves_index(path)[1]}
    files = sorted(f for f in path.glob("*.csv") if f.name not in curve_files) if path.is_dir() else [path]
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


def comparability(group: Group, protocol: dict, curves: bool = False) -> list[str]:
    """Why our runs are not the paper's (empty: comparable). Accepted deviations are never listed.
    `curves`: for a curve comparison, which compares on the iterations both sides evaluated and
    weighs our seed count itself: the evaluation interval and the number of seeds are not reasons."""
    reasons = []
    bench = protocol["benchmarks"].get(group.benchmark)
    if bench is None:
        return [f"the paper's protocol has no benchmark {group.benchmark}"]
    builder = group.dataset.get("builder")
    if bench.get("dataset") and builder != bench["dataset"]:
        reasons.append(f"dataset {builder}, the paper's {bench['dataset']}")
    if group.dataset.get("lookalike"):
        reasons.append(f"look-alike data, not the original files: {group.dataset['lookalike']}")
    if group.dataset.get("check_md5") is False:
        reasons.append("md5 checks off: the data are not verified to be the original files")
    if not group.runs:
        return reasons + ["no run finished without diverging"]
    run, resolved = group.runs[0][0]["run"], group.runs[0][0]["resolved_method"]
    if bench.get("contexts") is not None and not curves and group.runs[0][0].get("n_contexts") != bench["contexts"]:
        reasons.append(f"{group.runs[0][0].get('n_contexts')} contexts, the paper's {bench['contexts']}")
    for key in RUN_KEYS:
        if bench.get(key) is not None and run.get(key) != bench[key]:
            reasons.append(f"{key} {run.get(key)}, the paper's {bench[key]}")
    for key, want in protocol.get("evaluation", {}).items():
        if run.get(key) != want and not (curves and key == "eval_every"):
            reasons.append(f"{key} {run.get(key)}, the paper's {want}")
    for key, want in protocol.get("methods", {}).get(group.method, {}).items():
        got = resolved.get(key)
        same = (got == want) if isinstance(want, str) or want is None else (
            got is not None and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12))
        if not same:
            reasons.append(f"{group.method}.{key} {got}, the paper's {want}")
    if group.method not in protocol.get("methods", {}):
        reasons.append(f"the paper's protocol has no method {group.method}")
    if group.n < protocol.get("seeds", 0) and not curves:
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
        # one seed-mean curve's metrics serve every metric of the family and every bootstrap draw
        # of the same seeds in the same order (a few dozen distinct draws of 1,000 with 3 seeds)
        key = ("task1_v1", tuple(int(i) for i in idx))
        if key not in group.cache:
            curves = group.curves()
            group.cache[key] = M.task1_metrics_v1([curves[i] for i in idx])
        v1 = group.cache[key]
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
               "delta": math.nan, "se_delta": math.nan, "seeds": 0, "verdict": "", "comparable": "", "note": "",
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
                       "paper": math.nan, "paper_pm": math.nan, "comparable": "", "version": "", "table": "", "source": ""}
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
    row.update(verdict="consistent" if abs(delta) <= k * se_delta else "differs", comparable=comparable(reasons),
               note="; ".join(notes))
    return row


def comparable(reasons: list[str]) -> str:
    """The `comparable` column: "yes", or what makes our runs not the paper's protocol."""
    return "yes" if not reasons else "not the paper's protocol: " + "; ".join(reasons)


def protocol_for(benchmark: str, protocols: dict) -> dict | None:
    """The paper's protocol of a benchmark: v1's where v1 has it, else v2's."""
    for name in ("v1", "v2"):
        if name in protocols and benchmark in protocols[name]["benchmarks"]:
            return protocols[name]
    return next((p for p in protocols.values() if isinstance(p, dict) and benchmark in p.get("benchmarks", {})), None)



# ---------------------------------------------------------------- the table as shown

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
        "comparable": comp.comparable, "version": comp.version, "note": comp.note})


COMPARISON_CAPTION = ("Our numbers beside the paper's, per benchmark, method, metric family and metric. SE: "
                      "seed-level bootstrap, floored at one test image; the SE of the difference is √2·SE; consistent "
                      "if the difference lies within 2 of them. The paper's ± is shown as published, not used. "
                      "Comparable: whether our runs are the paper's protocol (if not, the verdict is on our runs only).")
