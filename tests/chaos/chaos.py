"""Chaos runs of the whole workflow: interrupt the tiny config N times at seeded random moments,
rerun the same command after each interruption as the README tells a user to, and compare the end
result with an uninterrupted run's.

    python tests/chaos/chaos.py --interruptions 50 --seed 1 --workdir /tmp/stabgap-chaos

Interruptions, drawn in turn from a seeded schedule: SIGKILL of a training job (its shell and its
python: the whole job), of a metrics or table job, SIGINT and SIGTERM of Snakemake (it cleans up),
and SIGKILL of Snakemake with all its jobs (its lock is left behind: `snakemake --unlock`, then the
rerun). Every rerun is `snakemake --cores 2 --rerun-incomplete`. At the end: every log.parquet,
metrics.json and table CSV byte-identical to the uninterrupted run's, summaries equal apart from
their time fields, every figure there, no temporary or partial file, no checkpoint left, no process
left over, and no finished run trained twice. Prints one report; exits 1 if anything is off.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "results": "results",
    "datasets": {"mnist5k": {"builder": "mnist5k", "test_per_class": 20, "seed": 0}},
    "benchmarks": {
        "split_mnist": {"dataset": "mnist5k", "iters_per_context": 40, "batch_size": 16, "eta": 0.4,
                        "stream": {"classes": [[0, 1], [2, 3]]}},
        "permuted_mnist": {"dataset": "mnist5k", "iters_per_context": 30, "batch_size": 16, "eta": 0.3,
                           "stream": {"n_contexts": 2}},
    },
    "methods": {"sgd": {"lr": 0.01}, "ngm": {"lr": 0.01, "gamma": 0.9}},
    "seeds": [1, 2],
    "figures": {"class_incremental": ["split_mnist"], "domain_incremental": ["permuted_mnist"]},
    "compute": {"checkpoint_every": 5},  # checkpoints often, so a killed run resumes mid-way
}
KINDS = ("kill-train", "kill-metrics-or-tables", "sigint-snakemake", "sigterm-snakemake", "sigkill-snakemake")
TIME_FIELDS = {"started", "finished", "train_seconds", "iterations_per_second", "resumed_from"}


def snakemake_cmd(workdir: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "chaos.yaml"), "--cores", "2", *extra]


def prepare(workdir: Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "chaos.yaml").write_text(yaml.safe_dump(CONFIG))


def jobs_of(proc: psutil.Process, words: tuple[str, ...]) -> list[psutil.Process]:
    """The job processes under Snakemake whose command line runs one of `words` (stabgap train, ...):
    the job's shell and the python it started."""
    found = []
    for child in proc.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if any(f"stabgap {w}" in cmd for w in words):
            found.append(child)
    return found


def finished_stamps(results: Path, metrics_too: bool = False) -> dict[str, str]:
    """Run folder -> the `finished` stamp of its summary. metrics_too: only runs whose metrics.json
    exists too, i.e. whose training job Snakemake had seen finish (the metrics job ran after it)."""
    out = {}
    for s in results.glob("runs/*/*/*/summary.json"):
        if metrics_too and not (s.parent / "metrics.json").is_file():
            continue
        try:
            out[str(s.parent.relative_to(results))] = json.loads(s.read_text())["finished"]
        except (OSError, ValueError, KeyError):
            pass
    return out


def interrupt_once(workdir: Path, kind: str, rng: random.Random, log) -> str:
    """Start the workflow, wait for a moment of the given kind, interrupt; returns what happened."""
    proc = subprocess.Popen(snakemake_cmd(workdir, "--rerun-incomplete"), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + rng.uniform(0.5, 6.0)
    words = {"kill-train": ("train",), "kill-metrics-or-tables": ("metrics", "tables", "sweep-table", "figure")}
    what = "finished before the interruption"
    while proc.poll() is None:
        if kind in words:
            victims = jobs_of(ps, words[kind])
            if victims and time.monotonic() >= deadline:
                for v in victims:
                    try:
                        v.kill()
                    except psutil.Error:
                        pass
                what = f"{kind}: {len(victims)} job process(es)"
                break
        elif time.monotonic() >= deadline:
            if kind == "sigkill-snakemake":
                os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job: a node going down
            else:
                proc.send_signal(signal.SIGINT if kind == "sigint-snakemake" else signal.SIGTERM)
            what = kind
            break
        time.sleep(0.05)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        what += " (Snakemake did not stop within 300 s: killed)"
    if kind == "sigkill-snakemake" and what == kind:
        # what the README tells a user after a killed Snakemake: remove the stale lock
        subprocess.run(snakemake_cmd(workdir, "--unlock"), stdout=log, stderr=subprocess.STDOUT, check=True)
    return what


def compare(ref: Path, got: Path) -> list[str]:
    problems = []
    names = sorted({p.relative_to(ref) for pat in ("runs/**/log.parquet", "runs/**/metrics.json", "tables/**/*.csv",
                                                   "reproduction/*.csv", "cost.csv")
                    for p in ref.glob(pat)})
    for name in names:
        if not (got / name).is_file():
            problems.append(f"missing {name}")
        elif (got / name).read_bytes() != (ref / name).read_bytes():
            problems.append(f"differs: {name}")
    for s in ref.glob("runs/*/*/*/summary.json"):
        a, b = json.loads(s.read_text()), json.loads((got / s.relative_to(ref)).read_text())
        keep = lambda d: {k: v for k, v in d.items() if k not in TIME_FIELDS}  # noqa: E731
        if keep(a) != keep(b):
            diff = sorted(k for k in set(a) | set(b) if k not in TIME_FIELDS and a.get(k) != b.get(k))
            problems.append(f"summary differs beyond its time fields: {s.relative_to(ref)} ({', '.join(diff)})")
    for fig in ref.glob("figures/*"):
        if not (got / fig.relative_to(ref)).is_file():
            problems.append(f"missing figure {fig.relative_to(ref)}")
    leftovers = [p for p in got.rglob("*") if p.is_file() and (p.name.endswith((".tmp", ".part", ".set-aside"))
                                                             or p.parent.name == "checkpoints" or "checkpoints" in p.parts)]
    problems += [f"left over: {p.relative_to(got)}" for p in leftovers]
    return problems, len(names)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interruptions", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/stabgap-chaos"))
    a = p.parse_args()
    rng = random.Random(a.seed)
    ref, chaos = a.workdir / "reference", a.workdir / "chaos"
    prepare(ref)
    prepare(chaos)
    t0 = time.monotonic()
    subprocess.run(snakemake_cmd(ref), check=True, capture_output=True)
    print(f"uninterrupted run: {time.monotonic() - t0:.0f} s", flush=True)
    schedule = [KINDS[i % len(KINDS)] for i in range(a.interruptions)]
    rng.shuffle(schedule)
    happened, retrained, unfinished_reruns = Counter(), [], []
    with open(a.workdir / "chaos.log", "w") as log:
        for i, kind in enumerate(schedule):
            before = finished_stamps(chaos / "results", metrics_too=True)
            written = finished_stamps(chaos / "results")
            what = interrupt_once(chaos, kind, rng, log)
            happened[what.split(":")[0] if not what.startswith("finished") else "finished before the interruption"] += 1
            after = finished_stamps(chaos / "results")
            retrained += [r for r in before if after.get(r) != before[r]]
            # files written by a job that was interrupted before Snakemake saw it finish: rerun by design
            unfinished_reruns += [r for r in written if r not in before and after.get(r) != written[r]]
            print(f"[{i + 1}/{len(schedule)}] {what}", flush=True)
            if what.startswith("finished"):
                # the workflow completed: start over from scratch so the next interruptions hit work again
                for stamp_dir in (chaos / "results",):
                    shutil.rmtree(stamp_dir, ignore_errors=True)
        before = finished_stamps(chaos / "results", metrics_too=True)
        final = subprocess.run(snakemake_cmd(chaos, "--rerun-incomplete"), stdout=log, stderr=subprocess.STDOUT)
        after = finished_stamps(chaos / "results")
        retrained += [r for r in before if after.get(r) != before[r]]
    problems, n_files = compare(ref / "results", chaos / "results")
    if final.returncode != 0:
        problems.append(f"the final rerun failed (exit {final.returncode}); see {a.workdir / 'chaos.log'}")
    ours = {os.getpid(), *(pr.pid for pr in psutil.Process().parents())}  # this script and whatever started it
    stray = [pr for pr in psutil.process_iter(["cmdline", "cwd"]) if pr.pid not in ours and (
        str(a.workdir) in " ".join(pr.info["cmdline"] or []) or str(pr.info["cwd"] or "").startswith(str(a.workdir)))]
    problems += [f"process left over: {pr.pid} {' '.join(pr.info['cmdline'])}" for pr in stray]
    problems += [f"finished run trained again: {r}" for r in sorted(set(retrained))]
    print(f"\ninterruptions: {a.interruptions} (seed {a.seed}); by what happened:")
    for what, n in sorted(happened.items()):
        print(f"  {what}: {n}")
    print(f"files compared byte for byte with the uninterrupted run: {n_files} (log.parquet, metrics.json, "
          f"table, reproduction and cost CSVs), "
          f"plus {len(list((ref / 'results').glob('runs/*/*/*/summary.json')))} summaries and the figures")
    print(f"finished runs trained again: {len(set(retrained))}")
    print(f"runs whose job was interrupted after writing its files, before Snakemake saw it finish, and so "
          f"rerun (by design): {len(unfinished_reruns)}")
    print("problems: " + ("none" if not problems else "\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
