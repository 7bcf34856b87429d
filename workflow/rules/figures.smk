# Stage 5: the paper's figures (SPEC §7), one rule each, PDF and PNG. Curves are seed means with a
# ±1 std band, context switches marked, one fixed colour per method.


rule figure_toy:
    output:
        pdf=f"{RESULTS}/figures/fig1_toy.pdf",
        png=report(
            f"{RESULTS}/figures/fig1_toy.png",
            caption="../report/fig1.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/figures/fig1_toy.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seed=config["figures"]["toy_seed"],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    shell:
        "python -m stabgap figure --kind toy --seed {params.seed} --out {params.stem} > {log} 2>&1"


rule figure_curves:
    input:
        lambda w: files_of(
            group_runs("main", figure_benchmarks(w.kind)),
            names=("summary.json", "log.parquet"),
        ),
    output:
        pdf=f"{RESULTS}/figures/{{fig}}_{{kind}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{fig}}_{{kind}}.png",
            caption="../report/curves.rst",
            category="Figures",
        ),
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
        runs=lambda w: group_runs("main", figure_benchmarks(w.kind)),
        benchmarks=lambda w: figure_benchmarks(w.kind),
        title=lambda w: w.kind.replace("_", "-").capitalize() + " benchmarks",
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    shell:
        "python -m stabgap figure --kind curves --benchmarks {params.benchmarks}"
        " --title {params.title:q} --out {params.stem} {params.runs} > {log} 2>&1"


rule figure_ablations:
    input:
        files_of(group_runs("ablations"), names=("summary.json", "log.parquet")),
    output:
        pdf=f"{RESULTS}/figures/fig7a_ablations.pdf",
        png=report(
            f"{RESULTS}/figures/fig7a_ablations.png",
            caption="../report/ablations.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/figures/fig7a_ablations.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=group_runs("ablations"),
        benchmarks=(config.get("ablations") or {}).get("benchmarks", []),
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    shell:
        "python -m stabgap figure --kind curves --benchmarks {params.benchmarks}"
        " --title 'Ablations' --out {params.stem} {params.runs} > {log} 2>&1"


rule figure_from_runs:
    input:
        lambda w: files_of(figure_runs(w.name), names=FIGURE_FILES[w.name]),
    output:
        pdf=f"{RESULTS}/figures/{{fig}}_{{name}}.pdf",
        png=report(
            f"{RESULTS}/figures/{{fig}}_{{name}}.png",
            caption="../report/from_runs.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/figures/{{fig}}_{{name}}.log",
    wildcard_constraints:
        fig="fig4|fig5|fig6|fig7b",
        name="gain_readout|train_accuracy|seen_tasks|lr_sweep",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        runs=lambda w: figure_runs(w.name),
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    shell:
        "python -m stabgap figure --kind {wildcards.name} --out {params.stem} {params.runs} > {log} 2>&1"


rule figures:
    input:
        all_figures(),
