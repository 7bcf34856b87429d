# Stage 1: raw dataset -> one canonical tensor file (+ manifest with shapes, class counts, sha256).


rule data:
    output:
        data=f"{RESULTS}/data/{{dataset}}.pt",
        manifest=f"{RESULTS}/data/{{dataset}}.pt.manifest.json",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    conda:
        "../../envs/stabgap.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        builder=lambda w: config["datasets"][w.dataset]["builder"],
        options=dataset_options,
        source_dir=lambda w: f"{data_root(config)}/{w.dataset}",
    shell:
        "python -m stabgap data --builder {params.builder} --source-dir {params.source_dir:q}"
        " --options {params.options:q} --out {output.data} > {log} 2>&1"


rule all_data:
    input:
        expand(f"{RESULTS}/data/{{dataset}}.pt", dataset=DATASETS),
