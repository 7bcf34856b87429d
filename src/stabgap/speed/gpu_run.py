"""One config's main runs through the package's command line, as the workflow's rules run them, for
a machine without Snakemake (the GPU machine of src/stabgap/speed/gpu.sh): data, stream, the runs of each
benchmark as one batch (`python -m stabgap train`, repeated --run), their metrics, and the
reproduction stage (numbers, claims, curves against the paper's).

    python -m stabgap.speed.gpu_run --config configs/cifar10_jpeg_gpu.yaml --out gpu-out/run
    python -m stabgap.speed.gpu_run --config configs/cifar10_jpeg_gpu.yaml --out /tmp/check --check

--check: a CPU rehearsal of the same commands, 4 iterations of 16 images per context on two contexts,
50 test images per task, so the script is known to work before device time is spent on it.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from stabgap.config import dataset_options, experiment_runs, load_config, run_config, stream_config


def sh(*args: str) -> None:
    print("$ python -m stabgap " + " ".join(a if len(a) < 80 else a[:77] + "..." for a in args), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stabgap", *args], check=True)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--check", action="store_true", help="CPU rehearsal: 4 iterations per context, 2 contexts")
    a = p.parse_args()
    config = load_config(a.config)
    out = a.out
    runs = experiment_runs(config)["main"]
    for name, ds in config["datasets"].items():
        options = dataset_options(ds)
        sh("data", "--builder", ds["builder"], "--name", name, "--options", json.dumps(options),
           "--out", f"{out}/data/{name}.pt")
    run_dirs = []
    for bench, spec in config["benchmarks"].items():
        stream = stream_config(config, bench)
        if a.check and "classes" in stream:
            stream["classes"] = stream["classes"][:2]
        sh("stream", "--benchmark", bench, "--data", f"{out}/data/{spec['dataset']}.pt", "--params", json.dumps(stream),
           "--out", f"{out}/streams/{bench}.pt")
        args = []
        for b, variant, seed in runs:
            if b != bench:
                continue
            run = run_config(config, b, variant, seed)
            if a.check:
                run.update(iters_per_context=4, batch_size=16, eval_subset=50, eval_dense_after_switch=2, eval_every=2,
                           device="cpu", threads=2)
            folder = f"{out}/runs/{b}/{variant}/seed{seed}"
            args += ["--run", json.dumps(run, sort_keys=True), "--out-dir", folder]
            run_dirs.append(folder)
        sh("train", *args, "--stream", f"{out}/streams/{bench}.pt")
    for folder in run_dirs:
        sh("metrics", "--log", f"{folder}/log.parquet", "--summary", f"{folder}/summary.json",
           "--out", f"{folder}/metrics.json")
    datasets = {b: config["datasets"][s["dataset"]] for b, s in config["benchmarks"].items()}
    sh("reproduction", "--out-dir", f"{out}/reproduction", "--datasets", json.dumps(datasets),
       "--curve-benchmarks", ",".join(config["benchmarks"]), *run_dirs)
    print(open(os.path.join(out, "reproduction", "curves.md")).read())
    print(open(os.path.join(out, "reproduction", "curve_stages.csv")).read())


if __name__ == "__main__":
    main()
