# Stage 5: the paper's figures 2 (class-incremental) and 3 (domain-incremental): task-1 accuracy,
# task-1 loss and NGM-SGD's output gain per iteration, seed-mean with a ±1 std band.


rule figure_curves:
    input:
        lambda w: run_files(figure_benchmarks(w.kind), names=("summary.json", "log.parquet")),
    output:
        pdf=f"{RESULTS}/figures/{{fig}}_{{kind}}.pdf",
        png=f"{RESULTS}/figures/{{fig}}_{{kind}}.png",
    wildcard_constraints:
        fig="fig2|fig3",
        kind="class_incremental|domain_incremental",
    params:
        runs=lambda w: runs_of(figure_benchmarks(w.kind)),
        benchmarks=lambda w: figure_benchmarks(w.kind),
        title=lambda w: w.kind.replace("_", "-").capitalize() + " benchmarks",
    log:
        f"{RESULTS}/logs/figures/{{fig}}_{{kind}}.log",
    threads: 1
    conda:
        "../../envs/stabgap.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m stabgap figure --benchmarks {params.benchmarks} --title {params.title:q}"
        " --out {RESULTS}/figures/{wildcards.fig}_{wildcards.kind} {params.runs} > {log} 2>&1"


rule figures:
    input:
        all_figures(),
