"""Figures of SPEC §7 from finished runs (matplotlib; figures never train).

Common style: seed-mean line with a ±1 std band (alpha 0.3), x = iteration, vertical lines at every
context switch with "Task k" under each stage, legend on top, one fixed colour per method.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import METHOD_LABELS, variant_label  # noqa: E402

COLORS = {"adam": "mediumseagreen", "msgd": "royalblue", "ngm": "darkorange", "sgd": "dimgray",
          "fixed_gain": "goldenrod", "entropy_lr": "crimson", "msgd_reset": "lightsteelblue",
          "adam_reset": "darkseagreen", "gain_bump": "peru"}
BENCHMARK_TITLES = {"split_mnist": "Split MNIST", "permuted_mnist": "Permuted MNIST", "rotated_mnist": "Rotated MNIST",
                    "split_cifar10": "Split CIFAR-10", "domain_cifar100_v1": "Domain CIFAR-100 (v1)",
                    "domain_cifar100_v2": "Domain CIFAR-100 (v2)", "split_miniimagenet": "Split mini-ImageNet"}
PLOT_STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 9,
              "axes.spines.top": False, "axes.spines.right": False}


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


def method_label(method: str, df: pd.DataFrame | None = None) -> str:
    label = variant_label(method)
    n_div = int(df[df.method == method].drop_duplicates("seed")["diverged"].sum()) if df is not None else 0
    return f"{label} ({n_div} diverged)" if n_div else label


def _band(ax, df: pd.DataFrame, column: str, method: str, label: str | None = None) -> None:
    df = df[~df["diverged"]]
    if df.empty:
        return
    stats = df.groupby("iteration")[column].agg(["mean", "std"])  # std over seeds (ddof=1)
    x, m, s = stats.index.to_numpy(), stats["mean"].to_numpy(), stats["std"].fillna(0.0).to_numpy()
    color = COLORS.get(method.split("@")[0])
    ax.plot(x, m, color=color, lw=1.0, label=label or variant_label(method))
    ax.fill_between(x, m - s, m + s, color=color, alpha=0.3, lw=0)


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
    rows = [("accuracy", "Task-1 accuracy (%)"), ("loss", "Task-1 loss (cross-entropy)"),
            ("gain", "NGM-SGD output gain")]
    with plt.rc_context(PLOT_STYLE):
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
                methods = ["ngm"] if col == "gain" else list(dict.fromkeys(sub.method))
                for method in methods:
                    if method in set(sub.method):
                        _band(ax, sub[sub.method == method], col, method, method_label(method, sub))
                _context_marks(ax, I, n, label=r == len(rows) - 1)
                if col == "accuracy":
                    ax.set_ylim(-2, 102)  # the ±std band must not stretch the percent axis
                if c == 0:
                    ax.set_ylabel(ylabel)
                if r == 0:
                    ax.set_title(BENCHMARK_TITLES.get(bench, bench))
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
    with plt.rc_context(PLOT_STYLE):
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(11.0, 3.3))
        m, s = noisy["gain"].mean(0), noisy["gain"].std(0)
        a.plot(steps, m, color=COLORS["ngm"], label="gain g")
        a.fill_between(steps, m - s, m + s, color=COLORS["ngm"], alpha=0.3, lw=0)
        a.axhline(1.0, color="black", ls="--", lw=0.8, label="g0")
        a.axvline(44, color="black", lw=0.6, alpha=0.6)
        a.set(title="A  gain (50 noisy runs)", xlabel="Step", ylabel="Gain")
        a.legend(frameon=False, loc="upper left")

        window = slice(100, 201)
        x = np.arange(len(target))[window]
        b.plot(x, target[window], color="black", lw=0.8, ls=":", label="target")
        b.plot(x, det["slow"][window], color=COLORS["sgd"], label="slow weight")
        b.plot(x, det["fast_slow"][window], color=COLORS["msgd"], label="fast + slow")
        b.plot(x, det["gain"][window], color=COLORS["ngm"], label="gain-modulated")
        b.set(title="B  output after a brief target flip", xlabel="Step", ylabel="Output y")
        b.legend(frameon=False, loc="lower right", fontsize=8)

        for key, color, label in (("slow", COLORS["msgd"], "slow g0·w"), ("fast", COLORS["adam"], "fast (g − g0)·w"),
                                  ("effective", COLORS["ngm"], "effective g·w")):
            m, s = noisy[key].mean(0), noisy[key].std(0)
            c.plot(steps, m, color=color, label=label)
            c.fill_between(steps, m - s, m + s, color=color, alpha=0.3, lw=0)
        c.axvline(44, color="black", lw=0.6, alpha=0.6)
        c.set(title="C  weight components", xlabel="Step", ylabel="Weight")
        c.legend(frameon=False, loc="upper left", fontsize=8)
        fig.tight_layout()
        return _save(fig, out_stem)


# ---------------------------------------------------------------- appendix figures (SPEC §7.4)

def _runs(run_dirs) -> list[tuple[dict, pd.DataFrame | None]]:
    out = []
    for d in map(Path, run_dirs):
        summary = json.loads((d / "summary.json").read_text())
        out.append((summary, None if summary.get("diverged") else pd.read_parquet(d / "log.parquet")))
    return out


def _variant(summary: dict) -> str:
    return summary["run"].get("variant", summary["method"])


def plot_gain_readout(run_dirs, out_stem) -> list[Path]:
    """Figure 4: NGM-SGD's seed-mean output gain, mean ± std within each context, against the
    context index, with a dashed least-squares line; class- and domain-incremental panels."""
    from .streams import get_benchmark

    per_bench: dict[str, list[pd.DataFrame]] = {}
    for summary, log in _runs(run_dirs):
        if log is None or _variant(summary) != "ngm":
            continue
        gain_col = [c for c in log.columns if c.startswith("gain_")][-1]
        train = log[log.split == "train"][["iteration", "context", gain_col]].rename(columns={gain_col: "gain"})
        per_bench.setdefault(summary["benchmark"], []).append(train)
    kinds = {"class-incremental": [], "domain-incremental": []}
    for bench in per_bench:
        kinds[get_benchmark(bench).kind].append(bench)
    with plt.rc_context(PLOT_STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
        for ax, (kind, benches) in zip(axes, kinds.items()):
            for i, bench in enumerate(benches):
                mean_curve = pd.concat(per_bench[bench]).groupby(["iteration", "context"])["gain"].mean().reset_index()
                stats = mean_curve.groupby("context")["gain"].agg(["mean", "std"])
                k = stats.index.to_numpy(dtype=float)
                color = plt.cm.tab10(i)
                ax.errorbar(k, stats["mean"], yerr=stats["std"], fmt="o", color=color, capsize=3,
                            label=BENCHMARK_TITLES.get(bench, bench))
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
    with plt.rc_context(PLOT_STYLE):
        fig, axes = _grid(len(benches))
        for ax, bench in zip(axes, benches):
            sub = data[data.benchmark == bench]
            for method in dict.fromkeys(sub.method):
                _band(ax, sub[sub.method == method], "accuracy", method)
            _context_marks(ax, int(sub.I.iloc[0]), int(sub.n.iloc[0]), label=False)
            ax.set(title=BENCHMARK_TITLES.get(bench, bench), xlabel="Training iteration",
                   ylabel="Training-batch accuracy (%)", ylim=(-2, 102))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        return _save(fig, out_stem)


def plot_seen_tasks(run_dirs, out_stem) -> list[Path]:
    """Accuracy of every seen task per iteration (seed mean): one row per benchmark, one column per
    method; the picture of the stability gap that the "seen" metrics summarise."""
    curves: dict[tuple[str, str], list[pd.DataFrame]] = {}
    meta = {}
    for summary, log in _runs(run_dirs):
        if log is None:
            continue
        key = (summary["benchmark"], _variant(summary))
        curves.setdefault(key, []).append(log[log.split == "test"][["iteration", "task", "accuracy"]])
        meta[summary["benchmark"]] = (summary["run"]["iters_per_context"], summary["n_contexts"])
    benches = list(dict.fromkeys(b for b, _ in curves))
    methods = list(dict.fromkeys(m for _, m in curves))
    with plt.rc_context(PLOT_STYLE):
        fig, axes = plt.subplots(len(benches), len(methods), figsize=(3.0 * len(methods), 2.4 * len(benches)),
                                 squeeze=False, sharey=True)
        for r, bench in enumerate(benches):
            I, n = meta[bench]
            cmap = plt.get_cmap("viridis", max(n, 2))
            for c, method in enumerate(methods):
                ax = axes[r, c]
                if (bench, method) in curves:
                    mean = pd.concat(curves[(bench, method)]).groupby(["task", "iteration"])["accuracy"].mean()
                    for j in sorted(mean.index.get_level_values(0).unique()):
                        s = mean.loc[j]
                        ax.plot(s.index, s.to_numpy(), lw=0.8, color=cmap(j - 1), label=f"Task {j}")
                _context_marks(ax, I, n, label=False)
                if r == 0:
                    ax.set_title(variant_label(method))
                if c == 0:
                    ax.set_ylabel(f"{BENCHMARK_TITLES.get(bench, bench)}\naccuracy (%)")
                if r == len(benches) - 1:
                    ax.set_xlabel("Training iteration")
                ax.set_ylim(-2, 102)
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
        rows.append({"benchmark": summary["benchmark"], "method": method, "lr": overrides["lr"], "diverged": not ok,
                     "acc": metrics["seen"]["avg_acc"] if ok else np.nan,
                     "sg": 100 * metrics["seen"]["avg_sg"] if ok and metrics["seen"]["avg_sg"] is not None else np.nan})
    data = pd.DataFrame(rows)
    benches = list(dict.fromkeys(data.benchmark))
    with plt.rc_context(PLOT_STYLE):
        fig, axes = plt.subplots(len(benches), 2, figsize=(8.0, 3.2 * len(benches)), squeeze=False)
        for r, bench in enumerate(benches):
            sub = data[data.benchmark == bench]
            for c, (col, ylabel) in enumerate((("acc", "Final accuracy, all tasks (%)"), ("sg", "avg-SG (%)"))):
                ax = axes[r, c]
                for method in dict.fromkeys(sub.method):
                    m = sub[sub.method == method].groupby("lr").agg(mean=(col, "mean"), std=(col, "std"),
                                                                    div=("diverged", "sum"))
                    ax.errorbar(m.index, m["mean"], yerr=m["std"].fillna(0), marker="o", capsize=3,
                                color=COLORS.get(method), label=METHOD_LABELS.get(method, method))
                    for lr, n_div in m["div"].items():
                        if n_div:
                            ax.annotate(f"{int(n_div)}× diverged", (lr, 0), xycoords=("data", "axes fraction"),
                                        color=COLORS.get(method), fontsize=7, rotation=90, va="bottom")
                ax.set_xscale("log")
                ax.set(xlabel="Learning rate", ylabel=ylabel, title=BENCHMARK_TITLES.get(bench, bench))
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
        return _save(fig, out_stem)
