# Stage 1: raw dataset -> one canonical tensor file (+ manifest with shapes, class counts, sha256).
# The raw files are read from $STABGAP_DATA_ROOT/<dataset> (exported by common.smk from data_root);
# the folder is not a parameter, so staging the data elsewhere reruns nothing.


rule data:
    input:
        raw_data_present,
    output:
        data=f"{RESULTS}/data/{{dataset}}.pt",
        manifest=f"{RESULTS}/data/{{dataset}}.pt.manifest.json",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    priority: UPSTREAM_PRIORITY
    conda:
        ENV
    resources:
        **RESOURCES["data"],
    params:
        builder=lambda w: config["datasets"][w.dataset]["builder"],
        options=builder_options,
    shell:
        "python -m stabgap data --builder {params.builder} --name {wildcards.dataset}"
        " --options {params.options:q} --out {output.data} > {log} 2>&1"


rule all_data:
    input:
        expand(f"{RESULTS}/data/{{dataset}}.pt", dataset=DATASETS),
