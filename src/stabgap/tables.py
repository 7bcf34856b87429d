"""Tables 1 and 2 of docs/protocol.md §7 from finished runs (pure pandas: no torch).

A run folder holds `summary.json` (benchmark, method, seed, ...), `log.parquet` and
`metrics.json` (metrics.run_metrics of the log). Three aggregations are tabulated:

- "task1_v1": the v1 table's numbers: metrics of the seed-mean task-1 curve, ± by first-order
  propagation of the per-iteration seed std (metrics.task1_metrics_v1);
- "task1": the same task-1 metrics per seed, then mean ± std over seeds;
- "seen": the all-seen-tasks metrics (v2 / De Lange et al.) per seed, then mean ± std over seeds.

Each table is written as CSV (numbers: mean and std columns), Markdown and LaTeX (formatted
"mean ± std", best per benchmark in bold: highest accuracy, lowest avg-SG).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import metrics as M
from .config import parse_variant
from .fileio import atomic_write_text
from .methods import METHODS, method_label

TABLE1_COLUMNS = {  # family -> [(metric key, column title, higher is better)]
    "task1": [("avg_acc", "avg-ACC", True), ("avg_min_acc", "avg-min-ACC", True), ("wc_acc", "WC-ACC", True),
              ("avg_sg", "avg-SG", False)],
    "seen": [("avg_acc", "avg-ACC", True), ("min_acc", "min-ACC", True), ("wc_acc", "WC-ACC", True),
             ("avg_sg", "avg-SG", False)],
}
TABLE1_COLUMNS["task1_v1"] = TABLE1_COLUMNS["task1"]
V1_METHODS = ("msgd", "adam", "ngm")


def variant_label(variant: str) -> str:
    """'ngm@lr=0.1,test_augment=false' -> 'NGM-SGD (lr=0.1, test_augment=false)'."""
    method, overrides = parse_variant(variant)
    label = method_label(method)
    return f"{label} ({', '.join(f'{k}={json.dumps(v)}' for k, v in overrides.items())})" if overrides else label


def load_runs(run_dirs) -> list[dict]:
    runs = []
    for d in map(Path, run_dirs):
        summary = json.loads((d / "summary.json").read_text())
        runs.append({"dir": str(d), "benchmark": summary["benchmark"],
                     "method": summary["run"].get("variant", summary["method"]), "base": summary["method"],
                     "seed": summary["seed"], "diverged": bool(summary.get("diverged", False)),
                     "metrics": json.loads((d / "metrics.json").read_text()),
                     "provenance": {k: summary.get(k) for k in ("config_hash", "log_sha256", "git_commit", "git_dirty",
                                                                 "device", "threads", "finished")}})
    return runs


def _aggregate(runs: list[dict], family: str, ddof: int) -> tuple[dict | None, int]:
    """Mean ± std over the runs of one family's metrics; (None, skipped) when no run has them. A run
    evaluated on task 1 only (evaluation.scope task1) has no "seen" metrics: it is skipped, counted."""
    have = [r["metrics"][family] for r in runs if r["metrics"].get(family) is not None]
    agg = M.mean_std_over_seeds([{family: m} for m in have], ddof=ddof)[family] if have else None
    return agg, len(runs) - len(have)


def _groups(runs):
    """(benchmark, method) -> runs, in the order benchmarks and methods first appear."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        out.setdefault((r["benchmark"], r["method"]), []).append(r)
    return out


def table_frames(runs: list[dict], ddof: int = 0, methods: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Long tables: one row per (benchmark, method, metric) with mean, std and the seeds used."""
    rows1, rows2 = [], []
    for (bench, method), group in _groups(runs).items():
        if methods is not None and group[0]["base"] not in methods:
            continue
        ok = [r for r in group if not r["diverged"]]
        base = {"benchmark": bench, "method": method, "seeds": len(ok), "diverged": len(group) - len(ok)}
        for family in ("task1", "seen"):
            agg, skipped = _aggregate(ok, family, ddof)
            row = {**base, "seeds": len(ok) - skipped, "skipped": skipped, "family": family}
            for key, title, _ in TABLE1_COLUMNS[family]:
                stat = agg[key] if agg else {"mean": None, "std": None}
                rows1.append({**row, "metric": title, "mean": stat["mean"], "std": stat["std"]})
            for k, stat in enumerate(agg["sg"] if agg else [], start=1):
                rows2.append({**row, "switch": f"{k}->{k + 1}", "mean": stat["mean"], "std": stat["std"]})
        if ok:
            v1 = M.task1_metrics_v1([M.test_curves(pd.read_parquet(Path(r["dir"]) / "log.parquet"), tasks=1)
                                     for r in ok])
            for key, title, _ in TABLE1_COLUMNS["task1_v1"]:
                rows1.append({**base, "skipped": 0, "family": "task1_v1", "metric": title, "mean": v1[key][0],
                              "std": v1[key][1]})
            for k, (value, sigma) in enumerate(v1["sg"], start=1):
                rows2.append({**base, "skipped": 0, "family": "task1_v1", "switch": f"{k}->{k + 1}", "mean": value,
                              "std": sigma})
    return {"table1": pd.DataFrame(rows1), "table2": pd.DataFrame(rows2)}


def _fmt(mean, std, scale=1.0, digits=2) -> str:
    if mean is None or pd.isna(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    if std is not None and not pd.isna(std):
        s += f" ± {std * scale:.{digits}f}"
    return s


def wide_table1(long: pd.DataFrame, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted table, mask of the cells to print in bold)."""
    sub = long[long.family == family]
    cols = TABLE1_COLUMNS[family]
    keys = list(dict.fromkeys(zip(sub.benchmark, sub.method)))
    text, bold = [], []
    for bench, method in keys:
        cell = sub[(sub.benchmark == bench) & (sub.method == method)].set_index("metric")
        row, brow = {"benchmark": bench, "method": variant_label(method)}, {}
        for _, title, higher in cols:
            scale, digits = (100.0, 2) if title == "avg-SG" else (1.0, 2)  # SG shown in percent
            row[title] = _fmt(cell.loc[title, "mean"], cell.loc[title, "std"], scale, digits)
            others = sub[(sub.benchmark == bench) & (sub.metric == title)]["mean"].dropna()
            value = cell.loc[title, "mean"]
            best = others.max() if higher else others.min()
            brow[title] = value is not None and not pd.isna(value) and value == best and len(others) > 1
        if cell["diverged"].iloc[0]:
            row["method"] += f" ({cell['diverged'].iloc[0]} diverged)"
        if cell["skipped"].iloc[0]:
            row["method"] += f" ({cell['skipped'].iloc[0]} evaluated task 1 only: no seen metrics)"
        text.append(row)
        bold.append(brow)
    return pd.DataFrame(text), pd.DataFrame(bold)


def wide_table2(long: pd.DataFrame, family: str) -> pd.DataFrame:
    sub = long[long.family == family]
    if sub.empty:
        return pd.DataFrame(columns=["benchmark", "method"])
    sub = sub.assign(cell=[_fmt(m, s, 100.0) for m, s in zip(sub["mean"], sub["std"])])
    wide = sub.pivot_table(index=["benchmark", "method"], columns="switch", values="cell", aggfunc="first", sort=False)
    wide = wide.reset_index().fillna("")  # benchmarks with fewer switches leave cells empty
    wide["method"] = wide["method"].map(variant_label)
    return wide


# The three text formats, written by pandas: Markdown by DataFrame.to_markdown (tabulate), LaTeX
# and HTML by the Styler, which escapes every cell and header (LaTeX: & % $ # _ { } ~ ^ \; HTML:
# < > & " '). Captions are ours and hold none of those characters (tests/test_tables.py).

def _bold_cells(df: pd.DataFrame, bold: pd.DataFrame | None, css: str) -> pd.DataFrame:
    """Per-cell styles for Styler.apply: `css` where `bold` is true."""
    out = pd.DataFrame("", index=df.index, columns=df.columns)
    if bold is not None:
        for c in bold.columns:
            out[c] = [css if bool(b) else "" for b in bold[c]]
    return out


def _styler(df: pd.DataFrame, bold: pd.DataFrame | None, css: str, escape: str, math=lambda v: v):
    return (df.style.hide(axis="index")
            .format(lambda v: math(str(v)), escape=escape)
            .format_index(lambda v: math(str(v)), escape=escape, axis=1)
            .apply(lambda d: _bold_cells(d, bold, css), axis=None))


def to_markdown(df: pd.DataFrame, bold: pd.DataFrame | None = None) -> str:
    cells = df.astype(str)
    if bold is not None:
        for c in bold.columns:
            cells[c] = [f"**{v}**" if bool(b) else v for v, b in zip(cells[c], bold[c])]
    return cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True) + "\n"


def to_latex(df: pd.DataFrame, bold: pd.DataFrame | None = None, caption: str = "") -> str:
    # after escaping: ± and -> in math mode
    math = lambda v: v.replace("±", r"$\pm$").replace("->", r"$\to$")
    styler = _styler(df, bold, "textbf:--rwrap;", "latex", math)
    return styler.to_latex(column_format="ll" + "r" * (len(df.columns) - 2), hrules=True, position="t",
                           position_float="centering", caption=caption or None)


def to_html(df: pd.DataFrame, bold: pd.DataFrame | None = None, caption: str = "") -> str:
    styler = _styler(df, bold, "font-weight: bold;", "html").set_uuid("table")
    if caption:
        import html

        styler = styler.set_caption(html.escape(caption))  # the Styler leaves captions as they are
    return styler.to_html()


CAPTIONS = {
    "task1_v1": "Task-1 metrics of the seed-mean curve (v1 table aggregation); ± by error propagation "
                "of the per-iteration seed std. avg-SG in percent.",
    "task1": "Task-1 metrics per seed, then mean ± std over seeds. avg-SG in percent.",
    "seen": "All-seen-tasks metrics (pooled accuracy of tasks seen before each switch) per seed, "
            "then mean ± std over seeds. avg-SG in percent. Runs evaluated on task 1 only (evaluation.scope "
            "task1) have none and are left out, counted beside the method.",
}


def write_tables(run_dirs, out_dir, ddof: int = 0, v1_layout: bool = False) -> list[Path]:
    """Write table1_<family> and table2_<family> (.csv, .md, .tex) plus manifest.json of the runs used."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(run_dirs)
    frames = table_frames(runs, ddof=ddof, methods=V1_METHODS if v1_layout else None)
    written = []
    notes = " ".join(dict.fromkeys(METHODS[r["base"]].note for r in runs if r["base"] in METHODS and METHODS[r["base"]].note))
    for family in ("task1_v1", "task1", "seen"):
        long1 = frames["table1"][frames["table1"].family == family]
        text, bold = wide_table1(frames["table1"], family)
        long2 = frames["table2"][frames["table2"].family == family] if not frames["table2"].empty else frames["table2"]
        table2 = wide_table2(frames["table2"], family) if not frames["table2"].empty else pd.DataFrame()
        for name, long, wide, b in (("table1", long1, text, bold), ("table2", long2, table2, None)):
            stem = out_dir / f"{name}_{family}"
            atomic_write_text(f"{stem}.csv", long.to_csv(index=False))
            atomic_write_text(f"{stem}.md", to_markdown(wide, b))
            caption = " ".join(filter(None, [CAPTIONS[family], notes]))
            atomic_write_text(f"{stem}.tex", to_latex(wide, b, caption))
            atomic_write_text(f"{stem}.html", to_html(wide, b, caption))
            written += [Path(f"{stem}.{ext}") for ext in ("csv", "md", "tex", "html")]
    manifest = {"runs": [{**{k: r[k] for k in ("benchmark", "method", "seed", "diverged", "dir")}, **r["provenance"]}
                         for r in runs],
                "std_ddof": ddof, "v1_layout": v1_layout}
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1))
    return written


def write_sweep_table(run_dirs, out_stem, ddof: int = 0) -> list[Path]:
    """The learning-rate sweep: per benchmark, method and lr, the final accuracy over all tasks
    (seen avg-ACC) and the avg-SG of both families, mean ± std over the seeds that did not diverge."""
    rows = []
    for (bench, variant), group in _groups(load_runs(run_dirs)).items():
        method, overrides = parse_variant(variant)
        ok = [r for r in group if not r["diverged"]]
        agg = {family: _aggregate(ok, family, ddof)[0] for family in ("task1", "seen")}
        row = {"benchmark": bench, "method": method, "lr": overrides.get("lr"), "seeds": len(ok),
               "diverged": len(group) - len(ok)}
        for family, key, col in (("seen", "avg_acc", "final_acc"), ("seen", "avg_sg", "avg_sg_seen"),
                                 ("task1", "avg_sg", "avg_sg_task1")):
            stat = agg[family][key] if agg[family] else {"mean": None, "std": None}
            row[f"{col}_mean"], row[f"{col}_std"] = stat["mean"], stat["std"]
        rows.append(row)
    long = pd.DataFrame(rows)
    wide = pd.DataFrame({
        "benchmark": long.benchmark, "method": long.method.map(method_label), "lr": long.lr,
        "final avg-ACC": [_fmt(m, s) for m, s in zip(long.final_acc_mean, long.final_acc_std)],
        "avg-SG (seen)": [_fmt(m, s, 100.0) for m, s in zip(long.avg_sg_seen_mean, long.avg_sg_seen_std)],
        "avg-SG (task 1)": [_fmt(m, s, 100.0) for m, s in zip(long.avg_sg_task1_mean, long.avg_sg_task1_std)],
        "diverged runs": long.diverged})
    caption = ("Learning-rate sweep: final accuracy over all tasks and avg-SG (percent), mean ± std over the "
               "seeds that did not diverge; diverged runs are counted, not averaged.")
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(f"{stem}.csv", long.to_csv(index=False))
    atomic_write_text(f"{stem}.md", to_markdown(wide))
    atomic_write_text(f"{stem}.tex", to_latex(wide, caption=caption))
    atomic_write_text(f"{stem}.html", to_html(wide, caption=caption))
    return [Path(f"{stem}.{ext}") for ext in ("csv", "md", "tex", "html")]
