# MAP@K, topK-precision and PR-within-radius per codes file; the table of all methods x bits.


rule evaluate:
    input:
        split="results/{dataset}/split.h5",
        codes="results/{dataset}/codes/{method}_{bits}.h5",
    output:
        "results/{dataset}/eval/{method}_{bits}.json",
    params:
        topk=lookup(dpath="{dataset}/eval/topk", within=config),
        zero_hit=lookup(dpath="{dataset}/eval/zero_hit", within=config),
    log:
        "logs/evaluate/{dataset}_{method}_{bits}.log",
    benchmark:
        "logs/benchmarks/evaluate/{dataset}_{method}_{bits}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(30),
    shell:
        "python -m pipeline.stages.evaluate --split {input.split} --codes {input.codes} "
        "--topk {params.topk} --zero-hit {params.zero_hit} --out {output} 2> {log}"


rule evaluate_float:
    input:
        split="results/{dataset}/split.h5",
        features="results/{dataset}/features.h5",
    output:
        "results/{dataset}/eval/float.json",
    params:
        topk=lookup(dpath="{dataset}/eval/topk", within=config),
        zero_hit=lookup(dpath="{dataset}/eval/zero_hit", within=config),
    log:
        "logs/evaluate/{dataset}_float.log",
    benchmark:
        "logs/benchmarks/evaluate/{dataset}_float.tsv"
    conda:
        "../envs/eval.yaml"
    # the query and retrieval features stay in memory: 1.8 GiB at COCO scale
    # (benchmarks/README.md, memory)
    resources:
        mem_mb=scaled(3500),
        runtime=scaled(60),
    shell:
        "python -m pipeline.stages.evaluate_float --split {input.split} "
        "--features {input.features} --method-name float --topk {params.topk} "
        "--zero-hit {params.zero_hit} --out {output} 2> {log}"


rule table:
    input:
        eval_jsons,
    output:
        "results/{dataset}_table.md",
    log:
        "logs/table/{dataset}.log",
    benchmark:
        "logs/benchmarks/table/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.table --dataset {wildcards.dataset} --inputs {input} "
        "--out {output} 2> {log}"


rule report:
    input:
        evals=eval_jsons,
        plots=plot_files,
        table="results/{dataset}_table.md",
    output:
        map_csv=report(
            "results/{dataset}_map.csv",
            caption="../captions/map.rst",
            category="Evaluation",
            labels={"dataset": "{dataset}", "table": "MAP"},
        ),
        pk_csv=report(
            "results/{dataset}_topk_precision.csv",
            caption="../captions/topk_precision_table.rst",
            category="Evaluation",
            labels={"dataset": "{dataset}", "table": "precision@K"},
        ),
    log:
        "logs/report/{dataset}.log",
    benchmark:
        "logs/benchmarks/report/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.report --inputs {input.evals} --map-csv {output.map_csv} "
        "--pk-csv {output.pk_csv} 2> {log}"


rule timing:
    input:
        train=timing_train_benchmarks,
        encode=timing_encode_benchmarks,
    output:
        report(
            "results/{dataset}_timing.md",
            caption="../captions/timing.rst",
            category="Evaluation",
            labels={"dataset": "{dataset}", "table": "timing"},
        ),
    params:
        rows=timing_rows_json,
        bits=lookup(dpath="{dataset}/timing/bits", within=config),
    log:
        "logs/timing/{dataset}.log",
    benchmark:
        "logs/benchmarks/timing/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(500),
        runtime=scaled(5),
    shell:
        "python -m pipeline.stages.timing --dataset {wildcards.dataset} --bits {params.bits} "
        "--rows-json {params.rows:q} --out {output} 2> {log}"
