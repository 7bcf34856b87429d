# Stage 5: the paper's figures (docs/protocol.md, *Figures and tables*), one rule each, PDF and PNG. Curves are seed means with a
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
        ENV
    resources:
        **RESOURCES["figure_toy"],
    params:
        seed=config["figures"]["toy_seed"],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    shell:
        "python -m stabgap figure --kind toy --seed {params.seed} --out {params.stem} > {log} 2>&1"


# The curve figures (figures 2, 3 and 7a): task-1 accuracy, loss and gain per iteration, one column
# per benchmark, each over its experiment group's runs (planning.curve_figure_list).
for _fig, _group, _benchmarks, _title, _caption in CURVE_FIGURES:

    rule:
        name:
            f"figure_{_fig}"
        input:
            files_of(
                group_runs(_group, _benchmarks), names=("summary.json", "log.parquet")
            ),
        output:
            pdf=f"{RESULTS}/figures/{_fig}.pdf",
            png=report(
                f"{RESULTS}/figures/{_fig}.png",
                caption=f"../report/{_caption}",
                category="Figures",
            ),
        log:
            f"{RESULTS}/logs/figures/{_fig}.log",
        conda:
            ENV
        resources:
            **RESOURCES["figure_curves"],
        params:
            runs=group_runs(_group, _benchmarks),
            benchmarks=_benchmarks,
            title=f"'{_title}'",  # quoted for the shell (titles hold no quote)
            stem=lambda w, output: output.pdf[: -len(".pdf")],
        shell:
            "python -m stabgap figure --kind curves --benchmarks {params.benchmarks}"
            " --title {params.title} --out {params.stem} {params.runs} > {log} 2>&1"


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
        ENV
    resources:
        **RESOURCES["figure_from_runs"],
    params:
        runs=lambda w: figure_runs(w.name),
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    shell:
        "python -m stabgap figure --kind {wildcards.name} --out {params.stem} {params.runs} > {log} 2>&1"


rule figures:
    input:
        all_figures(),
