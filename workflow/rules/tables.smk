# Stage 4: Table 1 (avg-ACC, avg-min-ACC, WC-ACC, avg-SG) and Table 2 (SG per switch) for all three
# aggregations, as CSV, Markdown, LaTeX and HTML, with a manifest of the runs that went in; the same
# for the ablation group; and the learning-rate sweep's table.


rule tables:
    input:
        files_of(group_runs("main")),
    output:
        table_outputs(f"{RESULTS}/tables", "Tables"),
        manifest=f"{RESULTS}/tables/manifest.json",
    log:
        f"{RESULTS}/logs/tables/main.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=group_runs("main"),
        ddof=config["metrics"]["std_ddof"],
        v1=lambda w: "--v1-layout" if config["tables"]["v1_layout"] else "",
        out_dir=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "python -m stabgap tables --out-dir {params.out_dir} --ddof {params.ddof} {params.v1}"
        " {params.runs} > {log} 2>&1"


rule tables_ablations:
    input:
        files_of(group_runs("ablations")),
    output:
        table_outputs(f"{RESULTS}/tables/ablations", "Ablation tables"),
        manifest=f"{RESULTS}/tables/ablations/manifest.json",
    log:
        f"{RESULTS}/logs/tables/ablations.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=group_runs("ablations"),
        ddof=config["metrics"]["std_ddof"],
        out_dir=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "python -m stabgap tables --out-dir {params.out_dir} --ddof {params.ddof}"
        " {params.runs} > {log} 2>&1"


rule table_lr_sweep:
    input:
        files_of(group_runs("lr_sweep"), names=("metrics.json", "summary.json")),
    output:
        multiext(f"{RESULTS}/tables/lr_sweep", ".csv", ".md", ".tex"),
        html=report(
            f"{RESULTS}/tables/lr_sweep.html",
            caption="../report/tables.rst",
            category="Learning-rate sweep",
        ),
    log:
        f"{RESULTS}/logs/tables/lr_sweep.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=group_runs("lr_sweep"),
        ddof=config["metrics"]["std_ddof"],
        stem=lambda w, output: output[0][: -len(".csv")],
    shell:
        "python -m stabgap sweep-table --out {params.stem} --ddof {params.ddof}"
        " {params.runs} > {log} 2>&1"


rule all_tables:
    input:
        all_tables(),


# Not part of `all`: re-runs a sample of finished runs and reports any whose log differs from the
# stored one (`snakemake repro_check`; add `--forcerun repro_check` to draw again).
rule repro_check:
    input:
        files_of(group_runs("main"), names=("summary.json", "log.parquet")),
    output:
        multiext(f"{RESULTS}/reproducibility/report", ".json", ".md"),
    log:
        f"{RESULTS}/logs/repro_check.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: config["compute"]["threads"]
    resources:
        mem_mb=config["compute"]["train_mem_mb"],
        runtime=repro_runtime(),
    params:
        runs=group_runs("main"),
        sample=config["reproducibility"]["sample"],
        seed=config["reproducibility"]["seed"],
        atol=config["reproducibility"]["atol"],
        stem=lambda w, output: output[0][: -len(".json")],
    shell:
        "python -m stabgap repro-check --out {params.stem} --sample {params.sample} --seed {params.seed}"
        " --atol {params.atol} {params.runs} > {log} 2>&1"
