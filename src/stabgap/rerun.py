"""The re-run check: re-run a sample of finished runs and compare their logs with the stored ones
(is a run a function of its settings and seed?). Not to be confused with reproduction.py, which
holds our results against the paper's.

On the same device type at the same thread count a run must reproduce its log byte for byte; across
device types (a CUDA run checked on a CPU, say) the numbers must agree within a stated tolerance.
The stored log is also checked against the sha256 its summary recorded when it was written, so a log
changed afterwards is flagged even where a re-run would be too costly.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import atomic_write_text, sha256_file

NUMERIC = ("accuracy", "loss", "entropy", "lr")


def compare_logs(stored: pd.DataFrame, fresh: pd.DataFrame, atol: float) -> tuple[bool, float]:
    """(within tolerance, largest absolute difference) of two logs of the same run."""
    if list(stored.columns) != list(fresh.columns) or len(stored) != len(fresh):
        return False, float("inf")
    keys = ["iteration", "context", "split", "task", "n"]
    if not stored[keys].equals(fresh[keys]):
        return False, float("inf")
    cols = [c for c in stored.columns if c in NUMERIC or c.startswith("gain_")]
    diff = np.nanmax(np.abs(stored[cols].to_numpy(float) - fresh[cols].to_numpy(float))) if cols else 0.0
    same_nan = np.array_equal(np.isnan(stored[cols].to_numpy(float)), np.isnan(fresh[cols].to_numpy(float)))
    return bool(same_nan and diff <= atol), float(diff)


def check_run(run_dir: Path, atol: float) -> dict:
    from .job import train_and_save
    from .trainer import resolve_device

    summary = json.loads((run_dir / "summary.json").read_text())
    log_path = run_dir / "log.parquet"
    result = {"run": str(run_dir), "stored_sha256_ok": summary.get("log_sha256") in (None, sha256_file(log_path))}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = train_and_save(summary["run"], summary["stream"], tmp, progress=None)
        fresh_log = Path(tmp) / "log.parquet"
        identical = fresh_log.read_bytes() == log_path.read_bytes()
        within, diff = compare_logs(pd.read_parquet(log_path), pd.read_parquet(fresh_log), atol)
    same_setup = (resolve_device(summary["run"]["device"]).type == summary["device"].split(":")[0]
                  and fresh["threads"] == summary["threads"])
    result.update(identical=identical, max_abs_diff=diff, same_device_and_threads=same_setup,
                  device=summary["device"], recheck_device=fresh["device"], threads=summary["threads"])
    if same_setup:
        result["verdict"] = "reproduced" if identical and result["stored_sha256_ok"] else "DIFFERS"
    else:
        result["verdict"] = f"within {atol:g}" if within and result["stored_sha256_ok"] else "DIFFERS"
    return result


def rerun_check(run_dirs, out_stem, sample: int = 2, seed: int = 0, atol: float = 1e-4) -> list[dict]:
    """Re-run `sample` finished runs (drawn with `seed`; diverged ones are skipped) and write
    `<out_stem>.json` and `<out_stem>.md`. Returns the per-run results."""
    finished = [Path(d) for d in run_dirs
                if not json.loads((Path(d) / "summary.json").read_text()).get("diverged")]
    chosen = sorted(random.Random(seed).sample(finished, min(sample, len(finished))))
    results = [check_run(d, atol) for d in chosen]
    lines = ["| run | verdict | identical bytes | max abs diff | device (stored / re-run) | threads |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['run']} | {r['verdict']} | {r['identical']} | {r['max_abs_diff']:.3g} | "
                     f"{r['device']} / {r['recheck_device']} | {r['threads']} |")
    n_bad = sum(r["verdict"] == "DIFFERS" for r in results)
    lines.append(f"\n{len(results)} run(s) re-run, {n_bad} differ. Bitwise comparison on the same device type "
                 f"and thread count; otherwise within an absolute tolerance of {atol:g}.")
    atomic_write_text(f"{out_stem}.json", json.dumps({"sample": sample, "seed": seed, "atol": atol,
                                                       "results": results}, indent=1))
    atomic_write_text(f"{out_stem}.md", "\n".join(lines) + "\n")
    return results
