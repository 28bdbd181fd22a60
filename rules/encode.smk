# Packed hash codes of the query and retrieval images.


rule encode:
    input:
        model=encode_model,
        split="results/{dataset}/split.h5",
        features="results/{dataset}/features.h5",
        aux="results/{dataset}/aux.h5",
    output:
        "results/{dataset}/codes/{method}_{bits}.h5",
    params:
        hp=method_params,
    threads: 2
    log:
        "logs/encode/{dataset}_{method}_{bits}.log",
    benchmark:
        "logs/benchmarks/encode/{dataset}_{method}_{bits}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(60),
        gpu=gpu_method,
    shell:
        "python -m pipeline.stages.encode --model {input.model} --split {input.split} "
        "--features {input.features} --aux {input.aux} --threads {threads} "
        "--method {wildcards.method} --params-json {params.hp:q} --out {output} 2> {log}"
