"""`python -m stabgap <command>`: the entry points the Snakemake rules call, plus `run` for one run by hand.

Each command reads explicit inputs and writes its outputs atomically; the rules pass every
setting that determines a result as an argument, so Snakemake reruns exactly what a config change touches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: not valid JSON: {text!r} ({err})")


def cmd_data(a) -> None:
    import os

    from .config import DATA_ROOT_ENV
    from .data import build_canonical

    source_dir = a.source_dir
    if source_dir is None:
        root = os.environ.get(DATA_ROOT_ENV)
        if not root:
            raise SystemExit(f"error: give --source-dir, or set ${DATA_ROOT_ENV} (the workflow sets it from data_root)")
        source_dir = os.path.join(root, a.name)
    build_canonical(a.builder, a.out, source_dir=source_dir, **_json(a.options))
    print(f"wrote {a.out} (raw files from {source_dir})")


def cmd_stream(a) -> None:
    from .streams import build_stream_file

    stream = build_stream_file(a.benchmark, a.data, a.out, _json(a.params))
    sizes = stream.task_sizes("train"), stream.task_sizes("test")
    print(f"wrote {a.out}: {stream.n_tasks} tasks, train sizes {sizes[0]}, test sizes {sizes[1]}")


def cmd_train(a) -> None:
    import os

    from .job import train_runs

    if len(a.run) != len(a.out_dir):
        raise SystemExit(f"error: give one --out-dir per --run ({len(a.run)} --run, {len(a.out_dir)} --out-dir)")
    every = a.checkpoint_every if a.checkpoint_every is not None else int(os.environ.get(CKPT_EVERY_ENV, "0"))
    keep = a.keep_checkpoint or os.environ.get(CKPT_KEEP_ENV, "") == "1"
    try:
        summaries = train_runs([_json(r) for r in a.run], a.stream, a.out_dir, checkpoint_path=a.checkpoint,
                               checkpoint_every=every, keep_checkpoint=keep)
    except ValueError as err:  # runs that cannot share a batch, a stream of another benchmark, ...
        raise SystemExit(f"error: {err}")
    for out_dir, summary in zip(a.out_dir, summaries):
        print(f"wrote {out_dir}/log.parquet ({summary['iterations']} iterations in {summary['train_seconds']} s, "
              f"device {summary['device']}, diverged: {summary['diverged']})")


CKPT_EVERY_ENV, CKPT_KEEP_ENV = "STABGAP_CHECKPOINT_EVERY", "STABGAP_KEEP_CHECKPOINTS"


def cmd_metrics(a) -> None:
    import pandas as pd

    from .fileio import atomic_write_text
    from .metrics import run_metrics

    summary = json.loads(Path(a.summary).read_text())
    if summary.get("diverged"):  # recorded as such; the tables count it, the workflow goes on
        result = {"diverged": True, "diverged_at": summary.get("diverged_at"), "task1": None, "seen": None}
    else:
        result = {"diverged": False, **run_metrics(pd.read_parquet(a.log), summary["run"].get("eval_scope", "seen"))}
    atomic_write_text(a.out, json.dumps(result, indent=1, allow_nan=False))
    print(f"wrote {a.out}")


def cmd_tables(a) -> None:
    from .tables import write_tables

    for path in write_tables(a.runs, a.out_dir, ddof=a.ddof, v1_layout=a.v1_layout):
        print(f"wrote {path}")


def cmd_reproduction(a) -> None:
    from .reproduction import write_reproduction

    for path in write_reproduction(a.runs, a.out_dir, _json(a.datasets), reference=a.reference, claims=a.claims,
                                   n_boot=a.bootstrap, k=a.k, alpha=a.alpha, seed=a.seed,
                                   curve_benchmarks=[b for b in a.curve_benchmarks.split(",") if b]):
        print(f"wrote {path}")


def cmd_figure(a) -> None:
    from . import figures as F

    if a.kind == "curves":
        paths = F.plot_task1_curves(a.runs, a.benchmarks, a.out, a.title)
    elif a.kind == "toy":
        paths = F.plot_toy(a.out, seed=a.seed)
    else:
        plot = {"gain_readout": F.plot_gain_readout, "train_accuracy": F.plot_train_accuracy,
                "seen_tasks": F.plot_seen_tasks, "lr_sweep": F.plot_lr_sweep}[a.kind]
        paths = plot(a.runs, a.out)
    for path in paths:
        print(f"wrote {path}")


def cmd_sweep_table(a) -> None:
    from .tables import write_sweep_table

    for path in write_sweep_table(a.runs, a.out, ddof=a.ddof):
        print(f"wrote {path}")


def cmd_run(a) -> None:
    """One benchmark × method × seed outside Snakemake, building its data and stream if missing."""
    from .config import data_root, dataset_options, load_config, run_config
    from .data import build_canonical
    from .streams import build_stream_file
    from .job import train_and_save

    config = load_config(a.config)
    for key, name in (("benchmarks", a.benchmark), ("methods", a.method)):
        if name not in config[key]:
            raise SystemExit(f"error: {key[:-1]} {name!r} is not in {a.config} (there: {', '.join(config[key])})")
    results = Path(config["results"])
    bench = config["benchmarks"][a.benchmark]
    ds = config["datasets"][bench["dataset"]]
    data_path = results / "data" / f"{bench['dataset']}.pt"
    if not data_path.exists():
        build_canonical(ds["builder"], data_path, source_dir=str(Path(data_root(config)) / bench["dataset"]),
                        **dataset_options(ds))
    stream_path = results / "streams" / f"{a.benchmark}.pt"
    if not stream_path.exists():
        build_stream_file(a.benchmark, data_path, stream_path, bench.get("stream"))
    out_dir = Path(a.out) if a.out else results / "runs" / a.benchmark / a.method / f"seed{a.seed}"
    run = run_config(config, a.benchmark, a.method, a.seed)
    summary = train_and_save(run, stream_path, out_dir)
    print(f"log: {out_dir / 'log.parquet'}\nsummary: {out_dir / 'summary.json'}\n"
          f"{summary['iterations']} iterations in {summary['train_seconds']} s on {summary['device']}")


def cmd_cost(a) -> None:
    """What a config costs before it runs: per experiment group and benchmark, runs, FLOPs, hours."""
    from .config import ConfigError, experiment_runs, load_config, run_config
    from .cost import write_cost

    try:
        config = load_config(a.config)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    print(write_cost(config, experiment_runs(config), run_config, a.out, a.config, a.gpu_tflops), end="")
    if a.out:
        print(f"wrote {a.out}.md and {a.out}.csv")


def cmd_list(a) -> None:
    """Every registered method, benchmark, network and data source with its defaults; with --config,
    the config's plugins registered first, and what the config uses marked with *."""
    import inspect

    from .archs import ARCHS
    from .benchmarks import BENCHMARKS
    from .config import ConfigError, load_config
    from .data import DATASETS
    from .methods import METHODS, Method

    used = {"methods": set(), "benchmarks": set(), "networks": set(), "datasets": set()}
    if a.config:
        try:
            config = load_config(a.config)
        except ConfigError as err:
            raise SystemExit(f"error: {err}")
        abl = config.get("ablations") or {}
        used["methods"] = set(config["methods"]) | set(abl.get("methods", {}))
        used["benchmarks"] = set(config["benchmarks"])
        used["networks"] = {BENCHMARKS[b].net for b in config["benchmarks"]}
        used["datasets"] = {d["builder"] for d in config["datasets"].values()}

    def section(title, kind, entries):
        print(f"{title} ({len(entries)}){'; * used by ' + a.config if a.config else ''}")
        for name, text in entries:
            print(f"  {'*' if name in used[kind] else ' '} {name:<20} {text}")
        print()

    def settings(values: dict) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in values.items())

    default = Method(name="", description="")  # a Method's field defaults
    section("methods", "methods", [
        (m.name, f"[{m.display}] {m.description}; settings other than Method's defaults: "
                 f"{settings({k: v for k, v in m.settings().items() if v != default.settings()[k]}) or 'none'}")
        for m in METHODS.values()])
    section("benchmarks", "benchmarks", [
        (b.name, f"{b.title or b.name}: {b.kind}, network {b.net}, {b.num_classes} outputs, data "
                 f"{' or '.join(b.data) or 'any'}; stream defaults {settings(b.defaults) or 'none'}"
                 + (f"; shifts images by {', '.join(b.task_keys)}" if b.task_keys else "")
                 + (f"; augment {b.augment}" if b.augment else ""))
        for b in BENCHMARKS.values()])
    section("networks", "networks", [
        (n.name, f"{n.description}; gains on {', '.join(n.modulated)}; evaluation batch {n.eval_batch_size}; "
                 f"{'asks for a GPU' if n.wants_gpu else 'CPU work'}")
        for n in ARCHS.values()])
    section("data sources (datasets: builder)", "datasets", [
        (d.name, f"{d.num_classes} classes of {'×'.join(map(str, d.image))} images; options "
                 f"{settings({k: p.default for k, p in inspect.signature(d.build).parameters.items() if k != 'source_dir'}) or 'none'}")
        for d in DATASETS.values()])
    print("Method's defaults (a method's settings not named above): " + settings(default.settings()))


def cmd_doctor(a) -> None:
    """Will it run here? (stabgap.doctor): exit status 1 when a check fails that would stop the run."""
    import os

    from . import doctor
    from .config import ConfigError, load_config, validate_schema, check_config

    try:
        if a.config_json:  # the workflow's config as Snakemake holds it (the doctor rule)
            config = json.loads(a.config_json)
            validate_schema(config)
            check_config(config)
            name = a.config_name or "the workflow's config"
        else:
            config = load_config(a.config)
            name = a.config
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    raise SystemExit(doctor.main(config, name, a.cores or os.cpu_count() or 1, a.out, a.timeout, not a.no_speed))


def cmd_rerun_check(a) -> None:
    from .rerun import rerun_check

    if a.command == "repro-check":
        print("note: `python -m stabgap repro-check` is now `python -m stabgap rerun-check`; the old name "
              "still works and will be removed", file=sys.stderr)
    results = rerun_check(a.runs, a.out, sample=a.sample, seed=a.seed, atol=a.atol)
    for r in results:
        print(f"{r['verdict']:>12}  {r['run']}")
    bad = [r for r in results if r["verdict"] == "DIFFERS"]
    print(f"wrote {a.out}.json and {a.out}.md: {len(results)} re-run, {len(bad)} differ")
    if bad and a.strict:
        raise SystemExit(2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="stabgap", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("data", help="raw dataset -> canonical tensor file + manifest")
    s.add_argument("--builder", required=True)
    s.add_argument("--name", required=True, help="the dataset's name in the config")
    s.add_argument("--source-dir", default=None,
                   help="folder of the raw files (default: $STABGAP_DATA_ROOT/<name>)")
    s.add_argument("--options", default="{}", help="builder options as JSON")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("stream", help="canonical data -> a benchmark's task stream")
    s.add_argument("--benchmark", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--params", default="{}", help="context-layout parameters as JSON")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_stream)

    s = sub.add_parser("train", help="one run, or several as one batch of models: log.parquet + summary.json each")
    s.add_argument("--run", required=True, action="append",
                   help="the resolved run settings as JSON (stabgap.config.run_config); repeat --run and --out-dir "
                        "to train several runs of one benchmark as one batch of models (multi-run batching)")
    s.add_argument("--stream", required=True)
    s.add_argument("--out-dir", required=True, action="append", help="the run's output folder (one per --run)")
    s.add_argument("--checkpoint", default=None, help="checkpoint file: resumed from if it exists, removed at the end")
    s.add_argument("--checkpoint-every", type=int, default=None,
                   help="iterations between checkpoints (default: $STABGAP_CHECKPOINT_EVERY, else 0 = none)")
    s.add_argument("--keep-checkpoint", action="store_true", help="keep the checkpoint of a finished run")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("metrics", help="a run's log -> metrics.json (both families)")
    s.add_argument("--log", required=True)
    s.add_argument("--summary", required=True, help="the run's summary.json (a diverged run has no metrics)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser("tables", help="run folders -> Table 1 and Table 2 (CSV, Markdown, LaTeX)")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--ddof", type=int, default=0)
    s.add_argument("--v1-layout", action="store_true")
    s.add_argument("runs", nargs="+", help="run folders")
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser("sweep-table", help="run folders of the lr sweep -> its table (CSV, Markdown, LaTeX, HTML)")
    s.add_argument("--out", required=True, help="output path without extension")
    s.add_argument("--ddof", type=int, default=0)
    s.add_argument("runs", nargs="+")
    s.set_defaults(func=cmd_sweep_table)

    s = sub.add_parser("reproduction", help="run folders -> our numbers beside the paper's, and its claims tested")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--datasets", required=True, help="JSON {benchmark: its config dataset entry}")
    s.add_argument("--reference", default=None, help="folder (or CSV) of reference values (default: the paper's)")
    s.add_argument("--claims", default=None, help="claims YAML (default: the paper's)")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    s.add_argument("--k", type=float, default=2.0, help="consistent if |Δ| <= k·SE_Δ")
    s.add_argument("--alpha", type=float, default=0.05, help="significance level of the claims' tests")
    s.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    s.add_argument("--curve-benchmarks", default="",
                   help="comma-separated benchmarks whose curves are drawn against the paper's "
                        "(curves_<benchmark>.pdf/png)")
    s.add_argument("runs", nargs="+", help="run folders of the main experiment")
    s.set_defaults(func=cmd_reproduction)

    s = sub.add_parser("figure", help="run folders -> one figure (PDF and PNG)")
    s.add_argument("--kind", required=True,
                   choices=["curves", "toy", "gain_readout", "train_accuracy", "seen_tasks", "lr_sweep"])
    s.add_argument("--benchmarks", nargs="*", default=[], help="columns of a 'curves' figure")
    s.add_argument("--title", default="")
    s.add_argument("--seed", type=int, default=0, help="seed of the toy simulation")
    s.add_argument("--out", required=True, help="output path without extension")
    s.add_argument("runs", nargs="*")
    s.set_defaults(func=cmd_figure)

    s = sub.add_parser("rerun-check", aliases=["repro-check"],
                       help="re-run a sample of finished runs and compare their logs (repro-check: its old name)")
    s.add_argument("--out", required=True, help="report path without extension (.json and .md are written)")
    s.add_argument("--sample", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--atol", type=float, default=1e-4, help="tolerance across device types")
    s.add_argument("--strict", action="store_true", help="exit with status 2 if a run differs")
    s.add_argument("runs", nargs="+")
    s.set_defaults(func=cmd_rerun_check)

    s = sub.add_parser("cost", help="what a config costs before it runs: FLOPs and predicted hours")
    s.add_argument("--config", default="config.yaml")
    s.add_argument("--gpu-tflops", type=float, default=None,
                   help="your GPU's achieved TFLOP/s, used for both networks in the 'gpu' column")
    s.add_argument("--out", default=None, help="also write <out>.md and <out>.csv")
    s.set_defaults(func=cmd_cost)

    s = sub.add_parser("doctor", help="will it run here? software, device, data, disk, speed and the GPU path, "
                                      "checked before a long reproduction")
    s.add_argument("--config", default="config.yaml")
    s.add_argument("--config-json", default=None, help=argparse.SUPPRESS)  # the workflow's rule passes its config
    s.add_argument("--config-name", default=None, help=argparse.SUPPRESS)
    s.add_argument("--cores", type=int, default=None,
                   help="cores the workflow will use (snakemake --cores; default: all of this machine's)")
    s.add_argument("--out", default=None, help="the Markdown report (default: <results>/doctor.md)")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a download server")
    s.add_argument("--no-speed", action="store_true", help="skip the timing, the wall-time prediction and the GPU proof")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("list", help="every registered method, benchmark, network and data source, with its defaults")
    s.add_argument("--config", default=None, help="a config whose plugins to register first (and whose entries to mark)")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("run", help="one benchmark × method × seed by hand, outside Snakemake")
    s.add_argument("--config", default="config.yaml")
    s.add_argument("--benchmark", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", default=None, help="output folder (default: <results>/runs/<benchmark>/<method>/seed<seed>)")
    s.set_defaults(func=cmd_run)

    args = p.parse_args(argv)
    try:
        from .config import load_plugins_from_env

        load_plugins_from_env()  # the config's plugins: their methods and benchmarks, registered
        args.func(args)
    except Exception as err:  # one clear line for the user, the traceback in the log above it
        import traceback

        traceback.print_exc()
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
