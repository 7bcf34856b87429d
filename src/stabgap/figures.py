"""Figures of docs/protocol.md §7 from finished runs (seaborn on matplotlib; figures never train).

One style for every figure, set in one place (`style()`: seaborn's "ticks" theme at "paper" scale
plus a few rc settings). Each method has one colour, its registry entry's (methods.Method.colour);
benchmarks are named by their registry titles. Seed bands are seaborn's: the seed-mean line with a
±1 std band (errorbar="sd", alpha 0.3), x = iteration, vertical lines at every context switch with
"Task k" under each stage, legend on top.

Plain matplotlib where seaborn does not fit: figure 1 (the toy model: arrays, not a tidy table,
and three learners drawn from one deterministic run) and figure 4 (error bars of per-context
means with a least-squares line through those means: seaborn's pointplot and regplot estimate
their own intervals and fits from the raw points instead).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .benchmarks import benchmark_title, get_benchmark  # noqa: E402
from .config import parse_variant  # noqa: E402
from .methods import method_colour, method_label  # noqa: E402
from .planning import gain_variants  # noqa: E402
from .tables import variant_label  # noqa: E402

PLOT_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 9,
           "axes.spines.top": False, "axes.spines.right": False}


def style() -> dict:
    """The rc settings of every figure: seaborn's "ticks" theme at "paper" scale, then PLOT_RC."""
    return {**sns.axes_style("ticks"), **sns.plotting_context("paper"), **PLOT_RC}


def colour(variant: str) -> str:
    """A run variant's colour: its method's (a variant of NGM-SGD is drawn in NGM-SGD's colour)."""
    return method_colour(parse_variant(variant)[0])


def task1_frame(run_dirs) -> pd.DataFrame:
    """Per run and iteration: task-1 accuracy and loss, and the output layer's mean gain."""
    frames = []
    for d in map(Path, run_dirs):
        summary = json.loads((d / "summary.json").read_text())
        if summary.get("diverged"):  # counted in the legend, not drawn
            frames.append(pd.DataFrame({"benchmark": [summary["benchmark"]], "method": [_variant(summary)],
                                        "seed": [summary["seed"]], "diverged": [True]}))
            continue
        log = pd.read_parquet(d / "log.parquet")
        gain_col = [c for c in log.columns if c.startswith("gain_")][-1]  # the output layer / head
        t1 = log[(log.split == "test") & (log.task == 1)][["iteration", "accuracy", "loss", gain_col]]
        t1 = t1.rename(columns={gain_col: "gain"})
        frames.append(t1.assign(benchmark=summary["benchmark"], method=_variant(summary), seed=summary["seed"],
                                diverged=False,
                                iters_per_context=summary["run"]["iters_per_context"],
                                n_contexts=summary["n_contexts"]))
    return pd.concat(frames, ignore_index=True)


def legend_label(method: str, df: pd.DataFrame | None = None) -> str:
    """A variant's label (methods.method_label, plus its overrides), with its diverged seeds counted."""
    label = variant_label(method)
    n_div = int(df[df.method == method].drop_duplicates("seed")["diverged"].sum()) if df is not None else 0
    return f"{label} ({n_div} diverged)" if n_div else label


def _band(ax, df: pd.DataFrame, column: str, method: str, label: str | None = None, x: str = "iteration",
          **kwargs) -> None:
    """Seed-mean line of `column` against `x` with a ±1 std band over seeds (ddof=1; none for one seed)."""
    df = df[~df["diverged"]]
    if df.empty:
        return
    kwargs.setdefault("err_kws", {"alpha": 0.3, "linewidth": 0})
    sns.lineplot(data=df, x=x, y=column, ax=ax, errorbar="sd", color=colour(method), linewidth=1.0,
                 label=label or variant_label(method), **kwargs)


def _context_marks(ax, iters_per_context: int, n_contexts: int, label: bool) -> None:
    for k in range(1, n_contexts):
        ax.axvline(k * iters_per_context, color="black", lw=0.6, ls="--", alpha=0.6)
    if label:
        for k in range(n_contexts):
            ax.text((k + 0.5) * iters_per_context, -0.16, f"Task {k + 1}", transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=8)


def plot_task1_curves(run_dirs, benchmarks: list[str], out_stem: str | Path, title: str) -> list[Path]:
    """Figures 2 and 3: rows task-1 accuracy, task-1 loss, NGM-SGD's output gain; one column per benchmark."""
    data = task1_frame(run_dirs)
    benchmarks = [b for b in benchmarks if b in set(data.benchmark)]
    if not benchmarks:
        raise ValueError(f"none of the runs belongs to the benchmarks asked for ({title})")
    gain_label = " / ".join(method_label(parse_variant(m)[0]) for m in gain_variants(dict.fromkeys(data.method))) or "no"
    rows = [("accuracy", "Task-1 accuracy (%)"), ("loss", "Task-1 loss (cross-entropy)"),
            ("gain", f"{gain_label} output gain")]
    with plt.rc_context(style()):
        fig, axes = plt.subplots(len(rows), len(benchmarks), figsize=(max(3.6 * len(benchmarks), 5.0), 7.6), squeeze=False,
                                 sharex="col")
        for c, bench in enumerate(benchmarks):
            sub = data[data.benchmark == bench]
            ok = sub[~sub["diverged"]]
            if ok.empty:
                raise ValueError(f"every run of {bench} diverged; nothing to draw")
            I, n = int(ok.iters_per_context.iloc[0]), int(ok.n_contexts.iloc[0])
            for r, (col, ylabel) in enumerate(rows):
                ax = axes[r, c]
                methods = list(dict.fromkeys(sub.method))
                methods = gain_variants(methods) if col == "gain" else methods
                for method in methods:
                    if method in set(sub.method):
                        _band(ax, sub[sub.method == method], col, method, legend_label(method, sub))
                _context_marks(ax, I, n, label=r == len(rows) - 1)
                if col == "accuracy":
                    ax.set_ylim(-2, 102)  # the ±std band must not stretch the percent axis
                ax.set_ylabel(ylabel if c == 0 else "")
                ax.set_xlabel("")
                if ax.get_legend():
                    ax.get_legend().remove()
                if r == 0:
                    ax.set_title(benchmark_title(bench))
                ax.set_xlim(0, I * n)
            axes[-1, c].set_xlabel("Training iteration", labelpad=14)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.suptitle(title, y=0.995)
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 0.97))
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        return _save(fig, out_stem)


def _save(fig, out_stem) -> list[Path]:
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, kwargs in (("pdf", {"metadata": {"CreationDate": None}}), ("png", {"dpi": 150})):
        path = out_stem.with_suffix(f".{ext}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=ext, bbox_inches="tight", **kwargs)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_toy(out_stem: str | Path, seed: int = 0) -> list[Path]:
    """Figure 1: the 1-D toy model (A: gain, B: three learners after a brief target flip, C: weights)."""
    from .toy import deterministic_models, noisy_gain_runs, step_target

    target = step_target()
    det = deterministic_models(target)
    noisy = noisy_gain_runs(seed=seed)
    steps = np.arange(len(noisy["target"]))
    ngm, sgd, msgd, adam = (method_colour(m) for m in ("ngm", "sgd", "msgd", "adam"))
    with plt.rc_context(style()):
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(11.0, 3.3))
        m, s = noisy["gain"].mean(0), noisy["gain"].std(0)
        a.plot(steps, m, color=ngm, label="gain g")
        a.fill_between(steps, m - s, m + s, color=ngm, alpha=0.3, lw=0)
        a.axhline(1.0, color="black", ls="--", lw=0.8, label="g0")
        a.axvline(44, color="black", lw=0.6, alpha=0.6)
        a.set(title="A  gain (50 noisy runs)", xlabel="Step", ylabel="Gain")
        a.legend(frameon=False, loc="upper left")

        window = slice(100, 201)
        x = np.arange(len(target))[window]
        b.plot(x, target[window], color="black", lw=0.8, ls=":", label="target")
        b.plot(x, det["slow"][window], color=sgd, label="slow weight")
        b.plot(x, det["fast_slow"][window], color=msgd, label="fast + slow")
        b.plot(x, det["gain"][window], color=ngm, label="gain-modulated")
        b.set(title="B  output after a brief target flip", xlabel="Step", ylabel="Output y")
        b.legend(frameon=False, loc="lower right", fontsize=8)

        for key, color, label in (("slow", msgd, "slow g0·w"), ("fast", adam, "fast (g − g0)·w"),
                                  ("effective", ngm, "effective g·w")):
            m, s = noisy[key].mean(0), noisy[key].std(0)
            c.plot(steps, m, color=color, label=label)
            c.fill_between(steps, m - s, m + s, color=color, alpha=0.3, lw=0)
        c.axvline(44, color="black", lw=0.6, alpha=0.6)
        c.set(title="C  weight components", xlabel="Step", ylabel="Weight")
        c.legend(frameon=False, loc="upper left", fontsize=8)
        fig.tight_layout()
        return _save(fig, out_stem)


# ---------------------------------------------------------------- appendix figures (docs/protocol.md §7.4)

def _runs(run_dirs) -> list[tuple[dict, pd.DataFrame | None]]:
    out = []
    for d in map(Path, run_dirs):
        summary = json.loads((d / "summary.json").read_text())
        out.append((summary, None if summary.get("diverged") else pd.read_parquet(d / "log.parquet")))
    return out


def _variant(summary: dict) -> str:
    return summary["run"].get("variant", summary["method"])


def plot_gain_readout(run_dirs, out_stem) -> list[Path]:
    """Figure 4: the seed-mean output gain of the gain-reading methods (NGM-SGD), mean ± std within
    each context, against the context index, with a dashed least-squares line; class- and
    domain-incremental panels."""
    per_bench: dict[str, list[pd.DataFrame]] = {}
    for summary, log in _runs(run_dirs):
        if log is None or not gain_variants([_variant(summary)]):
            continue
        gain_col = [c for c in log.columns if c.startswith("gain_")][-1]
        train = log[log.split == "train"][["iteration", "context", gain_col]].rename(columns={gain_col: "gain"})
        per_bench.setdefault(summary["benchmark"], []).append(train)
    kinds = {"class-incremental": [], "domain-incremental": []}
    for bench in per_bench:
        kinds[get_benchmark(bench).kind].append(bench)
    with plt.rc_context(style()):
        fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
        for ax, (kind, benches) in zip(axes, kinds.items()):
            for i, bench in enumerate(benches):
                mean_curve = pd.concat(per_bench[bench]).groupby(["iteration", "context"])["gain"].mean().reset_index()
                stats = mean_curve.groupby("context")["gain"].agg(["mean", "std"])
                k = stats.index.to_numpy(dtype=float)
                color = plt.cm.tab10(i)
                ax.errorbar(k, stats["mean"], yerr=stats["std"], fmt="o", color=color, capsize=3,
                            label=benchmark_title(bench))
                if len(k) > 1:
                    slope, intercept = np.polyfit(k, stats["mean"].to_numpy(), 1)
                    ax.plot(k, intercept + slope * k, ls="--", color=color, lw=1)
            ax.set(title=kind.capitalize(), xlabel="Context", ylabel="NGM-SGD output gain (mean ± std)")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if benches:
                ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return _save(fig, out_stem)


def _grid(n: int, ncols: int = 4):
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def plot_train_accuracy(run_dirs, out_stem) -> list[Path]:
    """Training-batch accuracy per iteration for every benchmark (seed mean ± std per method)."""
    frames = []
    for summary, log in _runs(run_dirs):
        if log is None:
            continue
        t = log[log.split == "train"][["iteration", "accuracy"]]
        frames.append(t.assign(benchmark=summary["benchmark"], method=_variant(summary), diverged=False,
                               I=summary["run"]["iters_per_context"], n=summary["n_contexts"]))
    data = pd.concat(frames, ignore_index=True)
    benches = list(dict.fromkeys(data.benchmark))
    with plt.rc_context(style()):
        fig, axes = _grid(len(benches))
        for ax, bench in zip(axes, benches):
            sub = data[data.benchmark == bench]
            for method in dict.fromkeys(sub.method):
                _band(ax, sub[sub.method == method], "accuracy", method)
            _context_marks(ax, int(sub.I.iloc[0]), int(sub.n.iloc[0]), label=False)
            ax.set(title=benchmark_title(bench), xlabel="Training iteration",
                   ylabel="Training-batch accuracy (%)", ylim=(-2, 102))
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[:len(benches)]:
            if ax.get_legend():
                ax.get_legend().remove()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        return _save(fig, out_stem)


def plot_seen_tasks(run_dirs, out_stem) -> list[Path]:
    """Accuracy of every seen task per iteration (seed mean): one row per benchmark, one column per
    method; the picture of the stability gap that the "seen" metrics summarise."""
    curves: dict[tuple[str, str], list[pd.DataFrame]] = {}
    meta, task1_only = {}, set()
    for summary, log in _runs(run_dirs):
        key = (summary["benchmark"], _variant(summary))
        meta[summary["benchmark"]] = (summary["run"]["iters_per_context"], summary["n_contexts"])
        if summary["run"].get("eval_scope") == "task1" and summary["n_contexts"] > 1:
            print(f"seen-tasks figure: left out {summary['benchmark']}/{key[1]}/seed{summary['seed']}: "
                  f"evaluated on task 1 only (evaluation.scope task1)")
            task1_only.add(key)
            continue
        if log is None:
            continue
        curves.setdefault(key, []).append(log[log.split == "test"][["iteration", "task", "accuracy"]])
    benches = list(dict.fromkeys(b for b, _ in [*curves, *task1_only]))
    methods = list(dict.fromkeys(m for _, m in [*curves, *task1_only]))
    with plt.rc_context(style()):
        fig, axes = plt.subplots(len(benches), len(methods), figsize=(3.0 * len(methods), 2.4 * len(benches)),
                                 squeeze=False, sharey=True)
        for r, bench in enumerate(benches):
            I, n = meta[bench]
            cmap = plt.get_cmap("viridis", max(n, 2))
            for c, method in enumerate(methods):
                ax = axes[r, c]
                if (bench, method) in curves:
                    mean = pd.concat(curves[(bench, method)]).groupby(["task", "iteration"])["accuracy"].mean()
                    mean = mean.reset_index().assign(task=lambda d: d.task.map(lambda j: f"Task {j}"))
                    sns.lineplot(data=mean, x="iteration", y="accuracy", hue="task", ax=ax, errorbar=None, linewidth=0.8,
                                 palette=[cmap(j) for j in range(mean.task.nunique())], legend=c == len(methods) - 1)
                elif (bench, method) in task1_only:
                    ax.text(0.5, 0.5, "task 1 only evaluated\n(evaluation.scope: task1)", ha="center", va="center",
                            transform=ax.transAxes, fontsize=7)
                ax.set(xlabel="", ylabel="")
                _context_marks(ax, I, n, label=False)
                if r == 0:
                    ax.set_title(variant_label(method))
                if c == 0:
                    ax.set_ylabel(f"{benchmark_title(bench)}\naccuracy (%)")
                if r == len(benches) - 1:
                    ax.set_xlabel("Training iteration")
                ax.set_ylim(-2, 102)
            if axes[r, -1].get_legend():
                axes[r, -1].legend(frameon=False, fontsize=7, loc="lower right")
        fig.tight_layout()
        return _save(fig, out_stem)


def plot_lr_sweep(run_dirs, out_stem) -> list[Path]:
    """Figure 7b: final accuracy (all tasks) and avg-SG against the learning rate, one line per
    method; diverged runs are left out of the means and marked with their count."""
    from .config import parse_variant

    rows = []
    for d in map(Path, run_dirs):
        summary = json.loads((d / "summary.json").read_text())
        metrics = json.loads((d / "metrics.json").read_text())
        method, overrides = parse_variant(_variant(summary))
        ok = not summary.get("diverged")
        seen = metrics.get("seen") if ok else None  # none: diverged, or evaluated on task 1 only
        rows.append({"benchmark": summary["benchmark"], "method": method, "lr": overrides["lr"], "diverged": not ok,
                     "acc": seen["avg_acc"] if seen else np.nan,
                     "sg": 100 * seen["avg_sg"] if seen and seen["avg_sg"] is not None else np.nan})
    data = pd.DataFrame(rows)
    benches = list(dict.fromkeys(data.benchmark))
    with plt.rc_context(style()):
        fig, axes = plt.subplots(len(benches), 2, figsize=(8.0, 3.2 * len(benches)), squeeze=False)
        for r, bench in enumerate(benches):
            sub = data[data.benchmark == bench]
            for c, (col, ylabel) in enumerate((("acc", "Final accuracy, all tasks (%)"), ("sg", "avg-SG (%)"))):
                ax = axes[r, c]
                for method in dict.fromkeys(sub.method):
                    one = sub[sub.method == method].assign(diverged=False)  # diverged runs: NaN, left out
                    _band(ax, one, col, method, method_label(method), x="lr", marker="o", err_style="bars",
                          err_kws={"capsize": 3})
                    for lr, n_div in sub[sub.method == method].groupby("lr")["diverged"].sum().items():
                        if n_div:
                            ax.annotate(f"{int(n_div)}× diverged", (lr, 0), xycoords=("data", "axes fraction"),
                                        color=colour(method), fontsize=7, rotation=90, va="bottom")
                    if ax.get_legend():
                        ax.get_legend().remove()
                ax.set_xscale("log")
                ax.set(xlabel="Learning rate", ylabel=ylabel, title=benchmark_title(bench))
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
        return _save(fig, out_stem)


# ---------------------------------------------------------------- did it reproduce? (reproduction.py)

def plot_comparison(comp: pd.DataFrame, out_stem) -> list[Path]:
    """Per benchmark (rows) and metric (columns), each method's paper value (hollow, ± as published)
    beside ours (filled, ± 2 SE), in the method colours of every figure."""
    from .methods import METHODS

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


def plot_curves_vs_paper(groups: dict, paper: pd.DataFrame, verdicts: pd.DataFrame, benchmark: str,
                         out_stem) -> list[Path]:
    """One benchmark: a column per method; task-1 accuracy on top, task-1 loss below, and NGM-SGD's
    output gain under its own column. The paper's mean ± std as a neutral band, our seed mean ± std
    in the method's colour, the context switches marked, each panel titled with its verdict."""
    from .curves import our_curve

    paper = paper[paper.benchmark == benchmark]
    methods = [m for (b, m), g in groups.items() if b == benchmark and g.n and (paper.method == m).any()]
    rows = [("task1_accuracy", "Task-1 accuracy (%)"), ("task1_loss", "Task-1 loss")]
    gain = [m for m in methods if (groups[(benchmark, m)].runs[0][0]["resolved_method"].get("gain") != "frozen")]
    if gain:
        rows.append(("gain_out", "Output gain"))
    with plt.rc_context(style()):
        fig, axes = plt.subplots(len(rows), max(len(methods), 1), squeeze=False, sharex=True,
                                 figsize=(3.2 * max(len(methods), 1), 2.3 * len(rows)))
        for c, method in enumerate(methods):
            group = groups[(benchmark, method)]
            theirs_all = paper[paper.method == method]
            I = int(group.runs[0][0]["run"]["iters_per_context"])  # context switches: ours
            n_contexts = int(group.runs[0][0]["n_contexts"])
            for r, (metric, ylabel) in enumerate(rows):
                ax = axes[r, c]
                if metric == "gain_out" and method not in gain:
                    ax.set_visible(False)
                    continue
                theirs = theirs_all[theirs_all.metric == metric]
                ax.fill_between(theirs.iteration, theirs["mean"] - theirs["std"], theirs["mean"] + theirs["std"],
                                color="0.8", linewidth=0, label="paper, mean ± std")
                # dashed, so that no method's colour (SGD's is a grey) is mistaken for the paper's mean
                ax.plot(theirs.iteration, theirs["mean"], color="0.35", linewidth=0.6, linestyle="--")
                ours = our_curve(group, metric)
                ax.fill_between(ours.iteration, ours["mean"] - ours["std"], ours["mean"] + ours["std"],
                                color=colour(method), alpha=0.3, linewidth=0)
                ax.plot(ours.iteration, ours["mean"], color=colour(method), linewidth=0.9,
                        label=f"ours ({group.n} seed{'s' if group.n > 1 else ''})")
                _context_marks(ax, I, n_contexts, label=False)
                ax.set_xlim(1, min(theirs.iteration.max(), ours.iteration.max() + I // 10) if len(ours) else None)
                if metric == "task1_loss" and len(ours):  # a first-iterations spike (Adam's loss reaches
                    # thousands) must not flatten the rest: the axis ends above the 99th percentile of both means
                    top = np.nanquantile(np.concatenate([theirs["mean"].to_numpy(), ours["mean"].to_numpy()]), 0.99)
                    ax.set_ylim(0, 1.15 * top)
                verdict = verdicts[(verdicts.benchmark == benchmark) & (verdicts.method == method)
                                   & (verdicts.metric == metric)] if not verdicts.empty else verdicts
                title = variant_label(method) if r == 0 else ""
                if len(verdict):
                    title += ("\n" if title else "") + f"{verdict.verdict.iloc[0]} ({verdict.share_2sd.iloc[0]:.0%} in ± 2 std)"
                ax.set_title(title, fontsize=8)
                if c == 0 or metric == "gain_out":
                    ax.set_ylabel(ylabel)
                if r == len(rows) - 1 or (metric == "task1_loss" and method not in gain):
                    ax.set_xlabel("Training iteration")
                    ax.tick_params(labelbottom=True)
                if r == 0 and c == 0:
                    ax.legend(frameon=False, fontsize=7, loc="lower left")
        if not methods:
            axes[0, 0].text(0.5, 0.5, f"no run of {benchmark} has a paper curve", ha="center", va="center")
            axes[0, 0].set_axis_off()
        fig.suptitle(f"{benchmark_title(benchmark)}: ours against the paper's v1 curves", fontsize=10)
        fig.tight_layout()
        return _save(fig, out_stem)

