# Source data: the demo collection is built offline; COCO archives are downloaded and extracted;
# every kind ends in one split table (results/{dataset}/split.h5).


rule demo_images:
    output:
        instances="resources/{dataset}/instances_all.json",
        images=directory("resources/{dataset}/images"),
    params:
        build=demo_build_json,
    log:
        "logs/demo_images/{dataset}.log",
    benchmark:
        "benchmarks/demo_images/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=mem_mb_for("demo_images"),
        runtime=runtime_for("demo_images"),
    shell:
        "python -m pipeline.stages.demo_images --config-json {params.build:q} "
        "--out-json {output.instances} --out-images {output.images} 2> {log}"


rule download:
    output:
        "resources/{dataset}/archives/{archive}.zip",
    params:
        url=archive_url,
        md5=archive_md5,
    log:
        "logs/download/{dataset}_{archive}.log",
    benchmark:
        "benchmarks/download/{dataset}_{archive}.tsv"
    conda:
        "../envs/data.yaml"
    retries: 2
    resources:
        mem_mb=mem_mb_for("download"),
        runtime=runtime_for("download"),
    shell:
        "python -m pipeline.stages.download --url {params.url:q} --md5 {params.md5:q} "
        "--out {output} 2> {log}"


rule extract:
    input:
        "resources/{dataset}/archives/{archive}.zip",
    output:
        "resources/{dataset}/.{archive}.extracted",
    params:
        root=source_root,
    log:
        "logs/extract/{dataset}_{archive}.log",
    benchmark:
        "benchmarks/extract/{dataset}_{archive}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=mem_mb_for("extract"),
        runtime=runtime_for("extract"),
    shell:
        "python -m pipeline.stages.extract --archive {input} "
        "--dest {params.root} --marker {output} 2> {log}"


rule split:
    input:
        split_inputs,
    output:
        "results/{dataset}/split.h5",
    params:
        source=source_json,
        split=split_json,
    log:
        "logs/split/{dataset}.log",
    benchmark:
        "benchmarks/split/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=mem_mb_for("split"),
        runtime=runtime_for("split"),
    shell:
        "python -m pipeline.stages.split --dataset {wildcards.dataset} "
        "--source-json {params.source:q} --split-json {params.split:q} --out {output} 2> {log}"
