# LAGNH settings chosen on a validation split of the training images (one job per grid point,
# gathered by the `tune` checkpoint that the train rule reads), and the paper's Figures 3-4
# (MAP vs epochs, MAP vs lambda1..3) on the real split, one training per point.


wildcard_constraints:
    point="[a-z0-9_]+",
    figure="epochs|sensitivity",


rule tune_point:
    input:
        split="results/{dataset}/split.h5",
        features="results/{dataset}/features.h5",
        aux="results/{dataset}/aux.h5",
    output:
        "results/{dataset}/tune/{method}/point_{point}.json",
    params:
        point=tune_point_json,
        tune=tune_settings_json,
        seed=lookup(dpath="{dataset}/seed", within=config),
    threads: 1
    log:
        "logs/tune_point/{dataset}_{method}_{point}.log",
    benchmark:
        "logs/benchmarks/tune_point/{dataset}_{method}_{point}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(120),
        gpu=gpu_method,
    shell:
        "python -m pipeline.stages.tune_point --split {input.split} "
        "--features {input.features} --aux {input.aux} --point-json {params.point:q} "
        "--tune-json {params.tune:q} --seed {params.seed} --threads {threads} "
        "--out {output} 2> {log}"


checkpoint tune:
    input:
        tune_point_files,
    output:
        "results/{dataset}/tune/{method}.json",
    params:
        tune=tune_settings_json,
    log:
        "logs/tune/{dataset}_{method}.log",
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.tune --inputs {input} --tune-json {params.tune:q} "
        "--out {output} 2> {log}"


rule figure_point:
    input:
        split="results/{dataset}/split.h5",
        features="results/{dataset}/features.h5",
        aux="results/{dataset}/aux.h5",
    output:
        "results/{dataset}/figures/{figure}/{point}.json",
    params:
        point=figure_point_json,
        bits=lookup(dpath="{dataset}/figures/bits", within=config),
        topk=lookup(dpath="{dataset}/eval/topk", within=config),
        seed=lookup(dpath="{dataset}/seed", within=config),
    threads: 1
    log:
        "logs/figure_point/{dataset}_{figure}_{point}.log",
    benchmark:
        "logs/benchmarks/figure_point/{dataset}_{figure}_{point}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(120),
        gpu=lambda wildcards: int(on_gpu(wildcards)),
    shell:
        "python -m pipeline.stages.figure_point --split {input.split} "
        "--features {input.features} --aux {input.aux} --point-json {params.point:q} "
        "--bits {params.bits} --topk {params.topk} --seed {params.seed} "
        "--threads {threads} --out {output} 2> {log}"


rule figure:
    input:
        figure_point_files,
    output:
        png=report(
            "results/{dataset}_{figure}.png",
            caption="../captions/figure.rst",
            category="Plots",
            subcategory="Parameters",
            labels={"dataset": "{dataset}", "figure": "{figure}"},
        ),
        pdf="results/{dataset}_{figure}.pdf",
        csv="results/{dataset}_{figure}.csv",
    params:
        bits=lookup(dpath="{dataset}/figures/bits", within=config),
    log:
        "logs/figure/{dataset}_{figure}.log",
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.figure --figure {wildcards.figure} --title {wildcards.dataset} "
        "--bits {params.bits} --inputs {input} --png {output.png} --pdf {output.pdf} "
        "--csv {output.csv} 2> {log}"
