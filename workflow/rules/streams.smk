# Stage 2: each benchmark's task stream as files (contexts, classes, rotations, permutations).


rule stream:
    input:
        data=lambda w: f"{RESULTS}/data/{config['benchmarks'][w.benchmark]['dataset']}.pt",
    output:
        stream=f"{RESULTS}/streams/{{benchmark}}.pt",
        spec=f"{RESULTS}/streams/{{benchmark}}.pt.json",
    log:
        f"{RESULTS}/logs/streams/{{benchmark}}.log",
    priority: UPSTREAM_PRIORITY
    conda:
        ENV
    resources:
        **RESOURCES["stream"],
    params:
        stream=stream_params,
    shell:
        "python -m stabgap stream --benchmark {wildcards.benchmark} --data {input.data}"
        " --params {params.stream:q} --out {output.stream} > {log} 2>&1"


rule all_streams:
    input:
        expand(f"{RESULTS}/streams/{{benchmark}}.pt", benchmark=BENCHMARKS),
