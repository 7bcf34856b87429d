# Stage 6: did it reproduce? Our numbers beside the paper's (the reference data of the package, or
# the config's reproduction.reference), the paper's claims tested on our per-seed values, and our
# curves against the paper's per-iteration curves, one figure per benchmark that has them
# (stabgap.reproduction). The report opens with it.


rule reproduction:
    input:
        files_of(group_runs("main")),
    output:
        [
            report_item(
                f"{RESULTS}/reproduction/{name}.html",
                caption=f"../report/reproduction_{name}.rst",
                category="1. Reproduction",
            )
            for name in ("claims", "comparison", "curves")
        ],
        [
            f"{RESULTS}/reproduction/{name}.{ext}"
            for name in ("claims", "comparison", "curves")
            for ext in ("csv", "md", "tex")
        ],
        f"{RESULTS}/reproduction/curve_stages.csv",
        [
            f"{RESULTS}/reproduction/curves_{bench}.pdf"
            for bench in planning.paper_curve_benchmarks(config)
        ],
        [
            report_item(
                f"{RESULTS}/reproduction/curves_{bench}.png",
                caption="../report/reproduction_curves_figure.rst",
                category="1. Reproduction",
            )
            for bench in planning.paper_curve_benchmarks(config)
        ],
        pdf=f"{RESULTS}/reproduction/figure.pdf",
        png=report(
            f"{RESULTS}/reproduction/figure.png",
            caption="../report/reproduction_figure.rst",
            category="1. Reproduction",
        ),
    log:
        f"{RESULTS}/logs/reproduction.log",
    conda:
        ENV
    resources:
        **RESOURCES["reproduction"],
    params:
        runs=group_runs("main"),
        datasets=lambda w: json.dumps(
            {
                b: config["datasets"][s["dataset"]]
                for b, s in config["benchmarks"].items()
            },
            sort_keys=True,
        ),
        options=lambda w: " ".join(
            f"--{key} {shlex.quote(str(value))}"
            for key, value in config["reproduction"].items()
            if value is not None
        ),
        curves=",".join(planning.paper_curve_benchmarks(config)),
        out_dir=lambda w, output: str(Path(output.pdf).parent),
    shell:
        "python -m stabgap reproduction --out-dir {params.out_dir} --datasets {params.datasets:q}"
        " {params.options} --curve-benchmarks {params.curves:q} {params.runs} > {log} 2>&1"
