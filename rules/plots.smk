# Figures: topK-precision and PR curves (paper Fig. 2), retrieval galleries, LAGNH loss curves.


rule curves:
    input:
        eval_jsons,
    output:
        pk_png=report(
            "results/{dataset}_topk_precision.png",
            caption="../captions/topk_precision.rst",
            category="Plots",
            subcategory="Retrieval curves",
            labels={"dataset": "{dataset}", "figure": "precision@K"},
        ),
        pk_pdf="results/{dataset}_topk_precision.pdf",
        pr_png=report(
            "results/{dataset}_pr.png",
            caption="../captions/pr.rst",
            category="Plots",
            subcategory="Retrieval curves",
            labels={"dataset": "{dataset}", "figure": "precision-recall"},
        ),
        pr_pdf="results/{dataset}_pr.pdf",
    log:
        "logs/curves/{dataset}.log",
    benchmark:
        "logs/benchmarks/curves/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.curves --title {wildcards.dataset} --inputs {input} "
        "--pk-png {output.pk_png} --pk-pdf {output.pk_pdf} --pr-png {output.pr_png} "
        "--pr-pdf {output.pr_pdf} 2> {log}"


rule gallery:
    input:
        split="results/{dataset}/split.h5",
        codes=gallery_codes,
    output:
        report(
            "results/{dataset}_gallery_{bits}.png",
            caption="../captions/gallery.rst",
            category="Plots",
            subcategory="Retrieval galleries",
            labels={"dataset": "{dataset}", "bits": "{bits}"},
        ),
    params:
        n_queries=lookup(dpath="{dataset}/eval/gallery_queries", within=config),
        seed=lookup(dpath="{dataset}/seed", within=config),
    log:
        "logs/gallery/{dataset}_{bits}.log",
    benchmark:
        "logs/benchmarks/gallery/{dataset}_{bits}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.gallery --split {input.split} --codes {input.codes} "
        "--n-queries {params.n_queries} --seed {params.seed} --out {output} 2> {log}"


rule history_plot:
    input:
        "results/{dataset}/models/{method}_{bits}_history.csv",
    output:
        report(
            "results/{dataset}/models/{method}_{bits}_history.png",
            caption="../captions/history.rst",
            category="Training",
            labels={"dataset": "{dataset}", "method": "{method}", "bits": "{bits}"},
        ),
    log:
        "logs/history_plot/{dataset}_{method}_{bits}.log",
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    shell:
        "python -m pipeline.stages.history_plot --history {input} --out {output} 2> {log}"
