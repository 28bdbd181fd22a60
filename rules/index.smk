# Additional image collections ({dataset}.index.{name}) encoded with the dataset's trained
# models: a database grows without retraining. python -m pipeline search --index NAME reads them.
# Their input functions are in rules/common.smk.


rule index_split:
    input:
        unpack(index_split_inputs),
    output:
        "results/{dataset}/index/{name}/split.h5",
    params:
        index=index_section,
    log:
        "logs/index_split/{dataset}_{name}.log",
    benchmark:
        "logs/benchmarks/index_split/{dataset}_{name}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(20),
    shell:
        "python -m pipeline.stages.index_split --dataset-split {input.split} "
        "--dataset {wildcards.dataset} --name {wildcards.name} --index-json {params.index:q} "
        "--out {output} 2> {log}"


rule index_features:
    input:
        split="results/{dataset}/index/{name}/split.h5",
    output:
        "results/{dataset}/index/{name}/features.h5",
    params:
        backbone=section_json("features"),
        device=lookup(dpath="{dataset}/device", within=config),
    threads: 2
    log:
        "logs/index_features/{dataset}_{name}.log",
    benchmark:
        "logs/benchmarks/index_features/{dataset}_{name}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(600),
        gpu=gpu_features,
    shell:
        "python -m pipeline.stages.index_features --split {input.split} "
        "--backbone-json {params.backbone:q} --device {params.device} --threads {threads} "
        "--out {output} 2> {log}"


rule index_aux:
    input:
        unpack(index_detect_inputs),
    output:
        "results/{dataset}/index/{name}/aux.h5",
    params:
        detector=section_json("detector"),
        auxiliary=section_json("auxiliary"),
        checkpoint=checkpoint_arg,
        device=lookup(dpath="{dataset}/device", within=config),
    threads: 2
    log:
        "logs/index_aux/{dataset}_{name}.log",
    benchmark:
        "logs/benchmarks/index_aux/{dataset}_{name}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(600),
        gpu=gpu_detect,
    shell:
        "python -m pipeline.stages.index_aux --split {input.split} "
        "--detector-json {params.detector:q} {params.checkpoint} "
        "--auxiliary-json {params.auxiliary:q} --device {params.device} --threads {threads} "
        "--out {output} 2> {log}"


rule index_encode:
    input:
        model=encode_model,
        split="results/{dataset}/index/{name}/split.h5",
        features="results/{dataset}/index/{name}/features.h5",
        aux="results/{dataset}/index/{name}/aux.h5",
    output:
        "results/{dataset}/index/{name}/codes/{method}_{bits}.h5",
    params:
        hp=method_params,
    threads: 2
    log:
        "logs/index_encode/{dataset}_{name}_{method}_{bits}.log",
    benchmark:
        "logs/benchmarks/index_encode/{dataset}_{name}_{method}_{bits}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(60),
        gpu=gpu_method,
    shell:
        "python -m pipeline.stages.index_encode --model {input.model} --split {input.split} "
        "--features {input.features} --aux {input.aux} --threads {threads} "
        "--method {wildcards.method} --params-json {params.hp:q} --out {output} 2> {log}"
