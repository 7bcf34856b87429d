"""Which runs share a training job (multi-run batching), planned without torch.

With `compute.batch_runs: N > 1`, the runs of each benchmark are grouped by the settings they must
share (config.batch_key), sorted by (variant, seed) within a group, and cut into chunks of at most
N runs; each chunk is one job training a batch of models (train.Trainer). Consequences: adding or
removing runs can regroup, and so retrain, later batches of that benchmark; rebuilding one run
retrains its batch.
"""

from __future__ import annotations

import json

from .config import batch_key, run_config


def train_batches(config: dict, groups: dict[str, list[tuple[str, str, int]]]) -> list[tuple[str, int, list]]:
    """(benchmark, index, [(variant, seed), ...]) per batch, for every benchmark of the config; []
    when batching is off (batch_runs 1). A run shared by experiment groups is planned once."""
    size = config["compute"]["batch_runs"]
    if size <= 1:
        return []
    runs = sorted({r for group in groups.values() for r in group})
    batches = []
    for bench in config["benchmarks"]:
        by_key: dict[str, list] = {}  # runs that may share a batch
        for b, v, s in runs:
            if b == bench:
                key = json.dumps(batch_key(run_config(config, b, v, s)), sort_keys=True)
                by_key.setdefault(key, []).append((v, s))
        chunks = [by_key[key][i:i + size] for key in sorted(by_key) for i in range(0, len(by_key[key]), size)]
        batches += [(bench, i, chunk) for i, chunk in enumerate(chunks)]
    return batches
