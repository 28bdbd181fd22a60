# One model per method and code length, trained on the train split.


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/{dataset}/models/{method}_{bits}.pt",
        history="results/{dataset}/models/{method}_{bits}_history.csv",
    params:
        impl=method_impl,
        hp=train_params,
        seed=lookup(dpath="{dataset}/seed", within=config),
        tune=tune_arg,
    # One thread per model: two 1-thread trainings side by side sustain more of a CPU's matmul
    # rate than one 2-thread training (benchmarks/README.md); raise with --set-threads train=N.
    threads: 1
    log:
        "logs/train/{dataset}_{method}_{bits}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}_{method}_{bits}.tsv"
    conda:
        "../envs/torch.yaml"
    # peak 0.97 GiB at COCO scale on a CPU (benchmarks/README.md, memory); the rest is headroom
    # for a CUDA context, which was not measured (no GPU lent)
    resources:
        mem_mb=scaled(3000),
        runtime=scaled(120),
        gpu=gpu_method,
    shell:
        "python -m pipeline.stages.train --method {wildcards.method} --impl {params.impl} "
        "--bits {wildcards.bits} --split {input.split} --features {input.features} "
        "--aux {input.aux} --params-json {params.hp:q} --seed {params.seed} "
        "--threads {threads} {params.tune} --out {output.model} --history {output.history} 2> {log}"
