# ImageNet-CNN features of every image (rows in split.h5 order), or the rows of a user's
# feature file (`features: {backbone: file, path: ...}`, then an input of the rule).


rule features:
    input:
        unpack(features_inputs),
    output:
        "results/{dataset}/features.h5",
    params:
        backbone=section_json("features"),
        device=lookup(dpath="{dataset}/device", within=config),
    threads: 2
    log:
        "logs/features/{dataset}.log",
    benchmark:
        "logs/benchmarks/features/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(600),
        gpu=gpu_features,
    shell:
        "python -m pipeline.stages.features --split {input.split} "
        "--backbone-json {params.backbone:q} --device {params.device} --threads {threads} "
        "--out {output} 2> {log}"
