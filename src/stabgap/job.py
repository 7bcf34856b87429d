"""The training job: runs of one stream -> each run's `log.parquet` and `summary.json` (with
provenance), and the checkpoints a killed job resumes from. The training iteration and its loop are
trainer.py's.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import torch

from .config import batch_key, config_hash
from .fileio import atomic_write_bytes, atomic_write_text, remove_stale_temps, sha256_file
from .methods import resolve_method
from .streams import load_stream
from .trainer import RunSettings, Trainer, resolve_device, train


def provenance() -> dict:
    """Library versions, the CPU's kernel level, and the code version: the git commit and dirty
    flag of the checkout the package runs from, or git_commit "not a checkout" when it is
    installed elsewhere."""
    import platform
    import subprocess

    import numpy
    import pandas

    # the CPU's vector instructions choose torch's kernels: bitwise-equal results need the same
    # kind of CPU as well as the same thread count (an AVX2-only machine's demo differs from an AVX-512 one's)
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    from . import __version__

    info["stabgap"] = __version__
    package = Path(__file__).resolve().parent
    info["git_commit"], info["git_dirty"] = "not a checkout", None
    try:
        top = subprocess.run(["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        # a checkout of this project: the package is its src/stabgap (not some other repository's file)
        if top and package == Path(top).resolve() / "src" / "stabgap":
            commit = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip() != ""
            info["git_commit"], info["git_dirty"] = commit or None, dirty if commit else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def set_precision(precision: str, device: torch.device) -> dict:
    """The numeric protocol of a job (compute.precision), applied globally and returned for the
    summary. fp32 (default): full-precision matmuls and cuDNN convolutions, deterministic cuDNN
    algorithms, no autotuning; tf32: TF32 tensor cores for both (Ampere and later GPUs; a CPU has
    none, so it changes nothing there)."""
    if precision not in ("fp32", "tf32"):
        raise ValueError(f"compute.precision must be fp32 or tf32, got {precision!r}")
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return {"precision": precision, "matmul_tf32": tf32, "cudnn_tf32": tf32,
            "cudnn_deterministic": device.type == "cuda"}


def save_checkpoint(trainer: Trainer, path, run_hash: str, train_seconds: float) -> None:
    """Atomically (a kill mid-write leaves the previous checkpoint intact)."""
    buf = io.BytesIO()
    torch.save({"run_hash": run_hash, "train_seconds": train_seconds, "trainer": trainer.state_dict()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def set_aside(path: Path, why: str, progress=sys.stderr) -> Path:
    """Move a checkpoint that cannot be resumed from out of the way (`<name>.set-aside`, replacing an
    older one), say so in the job's log, and let the run start from iteration 0: never a crash loop."""
    aside = path.with_name(path.name + ".set-aside")
    os.replace(path, aside)
    print(f"checkpoint {path} {why}; set aside as {aside.name}, starting from iteration 0", file=progress, flush=True)
    return aside


def load_checkpoint(path, run_hash: str, device: torch.device, progress=sys.stderr) -> dict | None:
    """The checkpoint at `path` if it belongs to a run with these exact settings, written by this
    trainer's format, else None (any other checkpoint is set aside, never resumed from)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or corrupted checkpoint: start over, say so
        set_aside(path, f"is unreadable ({type(err).__name__}: {err})", progress)
        return None
    if not isinstance(state, dict) or state.get("run_hash") != run_hash:
        set_aside(path, "belongs to other settings", progress)
        return None
    if state.get("trainer", {}).get("format") != Trainer.CHECKPOINT_FORMAT:
        set_aside(path, "was written by an older trainer", progress)
        return None
    return state


def run_settings(run: dict) -> RunSettings:
    """A run's settings (config.run_config's dict) as the trainer takes them."""
    return RunSettings(iters_per_context=run["iters_per_context"], batch_size=run["batch_size"], eta=run["eta"],
                       eval_every=run["eval_every"], eval_subset=run["eval_subset"],
                       eval_batch_size=run["eval_batch_size"], test_augment=run.get("test_augment", False),
                       eval_scope=run.get("eval_scope", "seen"),
                       eval_dense_after_switch=run.get("eval_dense_after_switch", 0),
                       eval_bf16=run.get("eval_bf16", False))


def train_and_save(run: dict, stream_path, out_dir, progress=sys.stderr, checkpoint_path=None,
                   checkpoint_every: int = 0, keep_checkpoint: bool = False) -> dict:
    """Train one (benchmark, method, seed) run and write `log.parquet` and `summary.json` atomically.

    With `checkpoint_path`, the state is saved there every `checkpoint_every` iterations and a rerun
    resumes from it; on a CPU at the same thread count the resumed log is byte-identical to an
    uninterrupted run's. The checkpoint is removed at the end unless `keep_checkpoint`."""
    return train_runs([run], stream_path, [out_dir], progress, checkpoint_path, checkpoint_every,
                      keep_checkpoint)[0]


def train_runs(runs: list[dict], stream_path, out_dirs: list, progress=sys.stderr, checkpoint_path=None,
               checkpoint_every: int = 0, keep_checkpoint: bool = False) -> list[dict]:
    """Train runs of one stream as one batch of models (trainer.Trainer; multi-run batching when there
    are several) and write each run's `log.parquet` and `summary.json` atomically into its folder of
    `out_dirs`. The runs may differ only in method and seed (config.batch_key); each run's log is the
    one it would get alone (bitwise on the CPU). Checkpoints as in `train_and_save`; a batch has one."""
    if len(runs) != len(out_dirs) or not runs:
        raise ValueError(f"give one output folder per run ({len(runs)} runs, {len(out_dirs)} folders)")
    first = runs[0]
    for run in runs[1:]:
        if batch_key(run) != batch_key(first):
            differ = sorted(k for k in batch_key(run) if batch_key(run)[k] != batch_key(first).get(k))
            raise ValueError(f"runs trained as one batch may differ only in method and seed; "
                             f"{run['variant']}/seed{run['seed']} differs from {first['variant']}/seed{first['seed']} "
                             f"in: {', '.join(differ)}")
    torch.set_num_threads(int(first["threads"]))
    device = resolve_device(first["device"])
    numerics = set_precision(first.get("precision", "fp32"), device)
    started = datetime.datetime.now(datetime.timezone.utc)
    code = provenance()  # the code as the job started (a tree edited while it trains must not be recorded)
    stream = load_stream(stream_path)
    if stream.benchmark != first["benchmark"]:
        raise ValueError(f"stream {stream_path} holds benchmark {stream.benchmark!r}, not {first['benchmark']!r}")
    settings = run_settings(first)
    methods = [resolve_method(r["method"], r["method_settings"]) for r in runs]
    trainer = Trainer(stream, methods, [r["seed"] for r in runs], settings, device)
    # a checkpoint resumes only into these settings on this very stream (a rebuilt stream reruns its
    # runs through their input; its checkpoint must not be resumed into them)
    stream_sha256 = sha256_file(stream_path)
    run_hash = config_hash({"runs": runs, "stream_sha256": stream_sha256})
    before, resumed_from = 0.0, None
    if checkpoint_path:  # a job killed while writing its checkpoint leaves the temp file behind
        remove_stale_temps(checkpoint_path)
    state = load_checkpoint(checkpoint_path, run_hash, device, progress) if checkpoint_path else None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        before, resumed_from = state["train_seconds"], trainer.iteration
        print(f"resumed from checkpoint {checkpoint_path} at iteration {resumed_from}", file=progress, flush=True)
    t0 = time.perf_counter()

    def checkpoint(tr) -> None:
        save_checkpoint(tr, checkpoint_path, run_hash, before + time.perf_counter() - t0)

    train(trainer, progress=progress, checkpoint=checkpoint if checkpoint_path else None,
          checkpoint_every=checkpoint_every)
    wall = before + time.perf_counter() - t0
    batch = None
    if len(runs) > 1:
        batch = {"size": len(runs), "runs": [f"{r['variant']}/seed{r['seed']}" for r in runs]}
    common = {"resumed_from": resumed_from, "device": str(device), "threads": torch.get_num_threads(),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "numerics": {**numerics, "eval_bf16": settings.eval_bf16},
              "stream": str(stream_path), "stream_sha256": stream_sha256, "started": started.isoformat(),
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(), **code}
    summaries = []
    for run, r, out_dir in zip(runs, trainer.runs, out_dirs):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        trainer.log(r.m).to_parquet(buf, index=False)
        atomic_write_bytes(out_dir / "log.parquet", buf.getvalue())
        summary = {
            "benchmark": run["benchmark"], "method": run["method"], "seed": run["seed"], "run": run,
            "config_hash": config_hash(run), "resolved_method": method_record(r.method),
            "n_contexts": trainer.schedule.n_contexts, "iterations": r.iteration, "diverged": r.diverged(),
            "diverged_at": r.diverged_at, "total_iterations": trainer.total_iters,
            "log_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            # a batch's runs share one process: its wall time, and the batch they were trained in
            "train_seconds": round(wall, 3), "iterations_per_second": round(r.iteration / max(wall, 1e-9), 2),
            "batch": batch, **common,
        }
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1))
        summaries.append(summary)
    if checkpoint_path and not keep_checkpoint:
        Path(checkpoint_path).unlink(missing_ok=True)
        remove_stale_temps(checkpoint_path)
    return summaries


def method_record(method) -> dict:
    """The resolved method as a summary records it: its settings and names, not the caption note
    a table prints beside it (documentation, not a setting of the run)."""
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(method).items() if k != "note"}
