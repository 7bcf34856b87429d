# What the config costs before it runs (stabgap.cost): per experiment group and benchmark, the runs,
# FLOPs per run for training and evaluation, and the hours predicted on each machine of the cost
# model. Plans nothing else: `snakemake cost` answers in seconds, before any data exists.


rule cost:
    output:
        md=f"{RESULTS}/cost.md",
        csv=f"{RESULTS}/cost.csv",
    log:
        f"{RESULTS}/logs/cost.log",
    resources:
        **RESOURCES["cost"],
    params:
        # any change of the config (runs, protocol, machines) rewrites the table
        config=config_hash(config),
        stem=lambda w, output: output.md[: -len(".md")],
    run:
        write_cost(config, GROUPS, run_config, params.stem, "this config", log=log[0])
