# Stage 4: Table 1 (avg-ACC, avg-min-ACC, WC-ACC, avg-SG) and Table 2 (SG per switch), both metric
# families, as CSV, Markdown and LaTeX, plus a manifest of the runs that went in.


rule tables:
    input:
        run_files(BENCHMARKS),
    output:
        [f"{RESULTS}/tables/{name}" for name in TABLE_FILES],
        manifest=f"{RESULTS}/tables/manifest.json",
    log:
        f"{RESULTS}/logs/tables.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=runs_of(BENCHMARKS),
        ddof=config["metrics"]["std_ddof"],
        v1=lambda w: "--v1-layout" if config["tables"]["v1_layout"] else "",
        out_dir=lambda w, output: str(Path(output.manifest).parent),
    shell:
        "python -m stabgap tables --out-dir {params.out_dir} --ddof {params.ddof} {params.v1}"
        " {params.runs} > {log} 2>&1"
