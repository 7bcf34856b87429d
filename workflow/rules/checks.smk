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
        Path(log[0]).write_text(note + "\n")
