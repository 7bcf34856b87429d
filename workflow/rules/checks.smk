import sys


# Checks of finished runs, not part of `all`.
#
# The re-run check: re-runs a sample of finished runs and reports any whose log differs from the
# stored one (`snakemake rerun_check`; add `--forcerun rerun_check` to draw again).
rule rerun_check:
    input:
        files_of(group_runs("main"), names=("summary.json", "log.parquet")),
    output:
        multiext(f"{RESULTS}/rerun_check/report", ".json", ".md"),
    log:
        f"{RESULTS}/logs/rerun_check.log",
    conda:
        ENV
    threads: config["compute"]["threads"]
    resources:
        mem_mb=config["compute"]["train_mem_mb"],
        runtime=rerun_runtime(),
    params:
        runs=group_runs("main"),
        sample=config["rerun_check"]["sample"],
        seed=config["rerun_check"]["seed"],
        atol=config["rerun_check"]["atol"],
        stem=lambda w, output: output[0][: -len(".json")],
    shell:
        "python -m stabgap rerun-check --out {params.stem} --sample {params.sample} --seed {params.seed}"
        " --atol {params.atol} {params.runs} > {log} 2>&1"


# Its old name: still a target, with a note.
rule repro_check:
    input:
        rules.rerun_check.output,
    log:
        f"{RESULTS}/logs/repro_check.log",
    localrule: True
    run:
        note = "note: the target repro_check is now rerun_check; the old name still works and will be removed"
        print(note, file=sys.stderr)
        Path(log[0]).write_text(f"{note}\n")


# Will it run here? The preflight check of this config on the machine that runs the jobs
# (`snakemake doctor`; python -m stabgap doctor, stabgap/doctor.py): software, device, data, disk,
# speed and the predicted wall time, the GPU path. No output file of its own for Snakemake: it runs
# whenever it is asked for, and never as part of `all`. Its report is printed and written to
# <results>/doctor.md; the job fails when a check fails that would stop the run.
rule doctor:
    log:
        f"{RESULTS}/logs/doctor.log",
    conda:
        ENV
    threads: config["compute"]["threads"]
    resources:
        mem_mb=max(train_mem_mb(config, b) for b in BENCHMARKS),
        runtime=30,
        gpu=max(uses_gpu_bench(b) for b in BENCHMARKS),
    params:
        config=json.dumps(config),
        cores=lambda w: (
            f"--cores {workflow.resource_settings.cores}"
            if isinstance(workflow.resource_settings.cores, int)
            else ""
        ),
        out=f"{RESULTS}/doctor.md",
    shell:
        "python -m stabgap doctor --config-json {params.config:q} --config-name 'the workflow config'"
        " {params.cores} --out {params.out} 2>&1 | tee {log}"
