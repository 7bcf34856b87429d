# Stage 4: Table 1 (avg-ACC, avg-min-ACC, WC-ACC, avg-SG) and Table 2 (SG per switch) for all three
# aggregations, as CSV, Markdown, LaTeX and HTML, with a manifest of the runs that went in, per
# experiment group; and the learning-rate sweep's table.


# One rule per experiment group with tables (main: tables/, ablations: tables/ablations/). Only the
# main tables take tables.v1_layout; its flag keeps the command's spacing as it always was.
for _group, _folder, _category in TABLE_GROUPS:

    rule:
        name:
            "tables" if _group == "main" else f"tables_{_group}"
        input:
            files_of(group_runs(_group)),
        output:
            table_outputs(f"{RESULTS}/{_folder}", _category),
            manifest=f"{RESULTS}/{_folder}/manifest.json",
        log:
            f"{RESULTS}/logs/tables/{_group}.log",
        conda:
            ENV
        resources:
            **RESOURCES["tables"],
        params:
            runs=group_runs(_group),
            ddof=config["metrics"]["std_ddof"],
            layout=table_layout_flag(_group),
            out_dir=lambda w, output: str(Path(output.manifest).parent),
        shell:
            "python -m stabgap tables --out-dir {params.out_dir} --ddof {params.ddof}{params.layout}"
            " {params.runs} > {log} 2>&1"


rule table_lr_sweep:
    input:
        sweep_files,
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
        ENV
    resources:
        **RESOURCES["table_lr_sweep"],
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
