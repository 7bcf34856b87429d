# Stage 3: one training job per benchmark x variant x seed (a method, with optional overrides, e.g.
# ngm@lr=0.1), then its metrics. Snakemake's own job timings go to <results>/jobtimes/.


rule train:
    input:
        cuda_present,
        stream=f"{RESULTS}/streams/{{benchmark}}.pt",
    output:
        log=f"{RESULTS}/runs/{{benchmark}}/{{variant}}/seed{{seed}}/log.parquet",
        summary=f"{RESULTS}/runs/{{benchmark}}/{{variant}}/seed{{seed}}/summary.json",
    log:
        f"{RESULTS}/logs/train/{{benchmark}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/jobtimes/train/{{benchmark}}/{{variant}}/seed{{seed}}.tsv"
    # benchmarks under multi-run batching are trained by the batch rules below
    wildcard_constraints:
        benchmark="|".join(UNBATCHED_BENCHMARKS) or "(?!)",
    priority: lambda w: train_priority(w.benchmark, w.variant, int(w.seed))
    # MLP runs share one group, so a cluster profile can pack many into one scheduler job
    # (--group-components mlp_runs=N; planning.job_group); every GPU run is a group of its own.
    group:
        train_group
    conda:
        ENV
    threads: config["compute"]["threads"]
    resources:
        # a retry (--retries) asks for 50% more memory and twice the time per attempt
        mem_mb=lambda w, attempt: retry_mem(train_mem(w), attempt),
        # minutes: the cost model's prediction times cost.safety_factor (stabgap.cost)
        runtime=lambda w, attempt: retry_runtime(train_runtime(w), attempt),
        gpu=uses_gpu,
    params:
        run=run_params,
        out_dir=lambda w, output: str(Path(output.log).parent),
        # outside the declared outputs, so Snakemake never deletes it; a rerun resumes from it
        checkpoint=lambda w: f"{RESULTS}/checkpoints/{w.benchmark}/{w.variant}/seed{w.seed}.pt",
    shell:
        "python -m stabgap train --run {params.run:q} --stream {input.stream}"
        " --out-dir {params.out_dir} --checkpoint {params.checkpoint:q} >> {log} 2>&1"


# Multi-run batching (compute.batch_runs > 1): one job trains a batch of runs of one benchmark as
# a batch of models in one process, and still writes one output set per run (bitwise the same files
# on a CPU). One rule per batch, named train_<benchmark>_batch<i>; rebuilding one of its runs
# retrains the batch.
for _bench, _i, _members in BATCHES:

    rule:
        name:
            f"train_{_bench}_batch{_i}"
        input:
            cuda_present,
            stream=f"{RESULTS}/streams/{_bench}.pt",
        output:
            [
                f"{run_dir(_bench, v, s)}/{name}"
                for v, s in _members
                for name in ("log.parquet", "summary.json")
            ],
        log:
            f"{RESULTS}/logs/train/{_bench}/batch{_i}.log",
        benchmark:
            f"{RESULTS}/jobtimes/train/{_bench}/batch{_i}.tsv"
        priority: train_priority(_bench, *_members[0], len(_members))
        group:
            batch_group(_bench, _i)
        conda:
            ENV
        threads: config["compute"]["threads"]
        resources:
            mem_mb=batch_resource(_bench, "mem_mb", _members),
            runtime=batch_resource(_bench, "runtime", _members),
            gpu=uses_gpu_bench(_bench),
        params:
            runs=batch_args(_bench, _members),
            # outside the declared outputs; its name changes with the batch's runs
            checkpoint=f"{RESULTS}/checkpoints/{_bench}/batch{_i}-{len(_members)}runs.pt",
        shell:
            "python -m stabgap train {params.runs} --stream {input.stream}"
            " --checkpoint {params.checkpoint:q} >> {log} 2>&1"


rule metrics:
    input:
        log=f"{RESULTS}/runs/{{benchmark}}/{{variant}}/seed{{seed}}/log.parquet",
        summary=f"{RESULTS}/runs/{{benchmark}}/{{variant}}/seed{{seed}}/summary.json",
    output:
        f"{RESULTS}/runs/{{benchmark}}/{{variant}}/seed{{seed}}/metrics.json",
    log:
        f"{RESULTS}/logs/metrics/{{benchmark}}/{{variant}}/seed{{seed}}.log",
    group:
        train_group
    conda:
        ENV
    resources:
        **RESOURCES["metrics"],
    shell:
        "python -m stabgap metrics --log {input.log} --summary {input.summary} --out {output} > {log} 2>&1"


rule all_runs:
    input:
        files_of(sorted({d for g in GROUPS for d in group_runs(g)})),


# One target per benchmark: all its runs and their metrics (e.g. `snakemake benchmark_split_mnist`).
for _bench in BENCHMARKS:

    rule:
        name:
            f"benchmark_{_bench}"
        input:
            files_of(sorted({d for g in GROUPS for d in group_runs(g, [_bench])})),
