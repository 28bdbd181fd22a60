# ImageNet-CNN features of every image (rows in split.h5 order).


rule features:
    input:
        split="results/{dataset}/split.h5",
    output:
        "results/{dataset}/features.h5",
    params:
        backbone=features_json,
        device=device,
    threads: 2
    log:
        "logs/features/{dataset}.log",
    benchmark:
        "benchmarks/features/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=mem_mb_for("features"),
        runtime=runtime_for("features"),
        gpu=gpu_count,
    shell:
        "python -m pipeline.stages.features --split {input.split} "
        "--backbone-json {params.backbone:q} --device {params.device} --threads {threads} "
        "--out {output} 2> {log}"
