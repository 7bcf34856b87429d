# Stage 5: the paper's figures 2 (class-incremental) and 3 (domain-incremental): task-1 accuracy,
# task-1 loss and NGM-SGD's output gain per iteration, seed-mean with a ±1 std band.


rule figure_curves:
    input:
        lambda w: run_files(
            figure_benchmarks(w.kind), names=("summary.json", "log.parquet")
        ),
    output:
        pdf=f"{RESULTS}/figures/{{fig}}_{{kind}}.pdf",
        png=f"{RESULTS}/figures/{{fig}}_{{kind}}.png",
    log:
        f"{RESULTS}/logs/figures/{{fig}}_{{kind}}.log",
    wildcard_constraints:
        fig="fig2|fig3",
        kind="class_incremental|domain_incremental",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=lambda w: runs_of(figure_benchmarks(w.kind)),
        benchmarks=lambda w: figure_benchmarks(w.kind),
        stem=lambda w, output: output.pdf[: -len(".pdf")],
        title=lambda w: w.kind.replace("_", "-").capitalize() + " benchmarks",
    shell:
        "python -m stabgap figure --benchmarks {params.benchmarks} --title {params.title:q}"
        " --out {params.stem} {params.runs} > {log} 2>&1"


rule figures:
    input:
        all_figures(),
