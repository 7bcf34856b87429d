"""The cost model's prediction for a config on the GPU the harness rows were measured on.

    python -m stabgap.speed.gpu_cost ROWS.md [--config config.yaml]

ROWS.md: speed harness rows (python -m stabgap.speed) of ResNet benchmarks on the GPU, at fp32, at
tf32 (setting "tf32") and with bf16 evaluation. Per precision, the median training and evaluation
GFLOP/s of the single-run rows become the gpu machine's ResNet rates (overheads included: the
harness times whole iterations and evaluations), and the whole config is priced with them, in both
evaluation scopes; beside it, the arithmetic floor at the GPU's nominal dense rate.
"""

import argparse
import copy
import statistics

from stabgap.config import experiment_runs, load_config, run_config
from stabgap.cost import schedule_alternatives
from stabgap.speed.harness import COLUMNS

NOMINAL_TFLOPS = {"fp32": 67.0, "tf32": 495.0, "tf32 + bf16 eval": 495.0}  # H200 dense; bf16: 790 measured


def rows(path):
    out = []
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) and cells[0] != "benchmark" and not cells[0].startswith("---"):
            out.append(dict(zip(COLUMNS, cells)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows")
    p.add_argument("--config", default="config.yaml")
    a = p.parse_args()
    measured = rows(a.rows)
    config = load_config(a.config)
    groups = experiment_runs(config)
    print("| precision | train TFLOP/s | eval TFLOP/s | scope | total PFLOP | predicted h | floor h at nominal |")
    print("|---|---|---|---|---|---|---|")
    for label in ("fp32", "tf32", "tf32 + bf16 eval"):
        def keep(r):
            bf16 = "bf16 eval" in r["setting"]
            return r["runs"] == "1" and r["precision"] == label.split(" ")[0] and bf16 == ("bf16" in label)
        chosen = [r for r in measured if keep(r) and r["train GFLOP/s"] and r["eval GFLOP/s"]]
        if not chosen:
            print(f"| {label} | (no rows) | | | | | |")
            continue
        train = statistics.median(float(r["train GFLOP/s"]) for r in chosen)
        evals = statistics.median(float(r["eval GFLOP/s"]) for r in chosen)
        cfg = copy.deepcopy(config)
        cfg["cost"]["machines"] = {"gpu": {"rate_gflops": {"resnet18_slim": train}, "eval_rate_gflops": {"resnet18_slim": evals},
                                           "per_iteration_s": {"resnet18_slim": 0.0}}}
        for alt in schedule_alternatives(cfg, groups, run_config):
            if alt["every"] != config["evaluation"]["every"]:
                continue
            floor = alt["total_pflop"] * 1e15 / (NOMINAL_TFLOPS[label] * 1e12) / 3600
            print(f"| {label} | {train / 1e3:.1f} | {evals / 1e3:.1f} | {alt['scope']} | {alt['total_pflop']:.1f} | "
                  f"{alt['hours_gpu']:.2f} | {floor:.2f} |")


if __name__ == "__main__":
    main()
