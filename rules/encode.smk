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
    # peak 1.1 GiB at COCO scale on a CPU (benchmarks/README.md, memory); the rest is headroom
    # for a CUDA context, which was not measured (no GPU lent)
    resources:
        mem_mb=scaled(3000),
        runtime=scaled(60),
        gpu=gpu_method,
    shell:
        "python -m pipeline.stages.encode --model {input.model} --split {input.split} "
        "--features {input.features} --aux {input.aux} --threads {threads} "
        "--method {wildcards.method} --params-json {params.hp:q} --out {output} 2> {log}"
