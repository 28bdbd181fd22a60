# Source data: the demo collection is built offline; COCO archives are downloaded and extracted;
# every kind ends in one split table (results/{dataset}/split.h5).


rule demo_images:
    output:
        instances="resources/{dataset}/instances_all.json",
        images=directory("resources/{dataset}/images"),
    params:
        build=section_json("source", "build"),
    log:
        "logs/demo_images/{dataset}.log",
    benchmark:
        "logs/benchmarks/demo_images/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(20),
    shell:
        "python -m pipeline.stages.demo_images --config-json {params.build:q} "
        "--out-json {output.instances} --out-images {output.images} 2> {log}"


rule download:
    output:
        "resources/{dataset}/archives/{archive}.zip",
    params:
        url=lookup(dpath="{dataset}/source/archives/{archive}/url", within=config),
        md5=lookup(dpath="{dataset}/source/archives/{archive}/md5", within=config),
    log:
        "logs/download/{dataset}_{archive}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}_{archive}.tsv"
    conda:
        "../envs/data.yaml"
    retries: 2
    resources:
        mem_mb=scaled(500),
        runtime=scaled(360),
    shell:
        "python -m pipeline.stages.download --url {params.url:q} --md5 {params.md5:q} "
        "--out {output} 2> {log}"


rule extract:
    input:
        "resources/{dataset}/archives/{archive}.zip",
    output:
        "resources/{dataset}/.{archive}.extracted",
    params:
        root=lookup(dpath="{dataset}/source/root", within=config),
    log:
        "logs/extract/{dataset}_{archive}.log",
    benchmark:
        "logs/benchmarks/extract/{dataset}_{archive}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(60),
    shell:
        "python -m pipeline.stages.extract --archive {input} "
        "--dest {params.root} --marker {output} 2> {log}"


rule manifest:
    input:
        manifest_producers,
    output:
        images="results/{dataset}/manifest/images.tsv",
        split_inputs="results/{dataset}/manifest/split_inputs.tsv",
    params:
        spec=manifest_spec_json,
    log:
        "logs/manifest/{dataset}.log",
    benchmark:
        "logs/benchmarks/manifest/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(30),
    shell:
        "python -m pipeline.stages.manifest --spec-json {params.spec:q} "
        "--images {output.images} --split-inputs {output.split_inputs} 2> {log}"


rule split:
    input:
        split_inputs,
    output:
        "results/{dataset}/split.h5",
    params:
        source=source_json,
        split=section_json("split"),
    log:
        "logs/split/{dataset}.log",
    benchmark:
        "logs/benchmarks/split/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=scaled(5000),
        runtime=scaled(30),
    shell:
        "python -m pipeline.stages.split --dataset {wildcards.dataset} "
        "--source-json {params.source:q} --split-json {params.split:q} --out {output} 2> {log}"
