# Stage 4: Table 1 (avg-ACC, avg-min-ACC, WC-ACC, avg-SG) and Table 2 (SG per switch), both metric
# families, as CSV, Markdown and LaTeX, plus a manifest of the runs that went in.


rule tables:
    input:
        run_files(BENCHMARKS),
    output:
        [f"{RESULTS}/tables/{name}" for name in TABLE_FILES],
        manifest=f"{RESULTS}/tables/manifest.json",
    params:
        runs=runs_of(BENCHMARKS),
        ddof=config["metrics"]["std_ddof"],
        v1=lambda w: "--v1-layout" if config["tables"]["v1_layout"] else "",
    log:
        f"{RESULTS}/logs/tables.log",
    threads: 1
    conda:
        "../../envs/stabgap.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m stabgap tables --out-dir {RESULTS}/tables --ddof {params.ddof} {params.v1}"
        " {params.runs} > {log} 2>&1"
