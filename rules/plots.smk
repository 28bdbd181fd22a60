# Figures: topK-precision and PR curves (paper Fig. 2), retrieval galleries, LAGNH loss curves.


rule curves:
    input:
        eval_jsons,
    output:
        pk_png="results/{dataset}_topk_precision.png",
        pk_pdf="results/{dataset}_topk_precision.pdf",
        pr_png="results/{dataset}_pr.png",
        pr_pdf="results/{dataset}_pr.pdf",
    log:
        "logs/curves/{dataset}.log",
    benchmark:
        "benchmarks/curves/{dataset}.tsv"
    conda:
        "../envs/eval.yaml"
    shell:
        "python -m pipeline.plots --title {wildcards.dataset} --inputs {input} "
        "--pk-png {output.pk_png} --pk-pdf {output.pk_pdf} --pr-png {output.pr_png} "
        "--pr-pdf {output.pr_pdf} 2> {log}"


rule gallery:
    input:
        split="results/{dataset}/split.h5",
        codes=gallery_codes,
    output:
        "results/{dataset}_gallery_{bits}.png",
    params:
        n_queries=eval_option("gallery_queries"),
        seed=dataset_seed,
    log:
        "logs/gallery/{dataset}_{bits}.log",
    benchmark:
        "benchmarks/gallery/{dataset}_{bits}.tsv"
    conda:
        "../envs/eval.yaml"
    shell:
        "python -m pipeline.eval.gallery --split {input.split} --codes {input.codes} "
        "--n-queries {params.n_queries} --seed {params.seed} --out {output} 2> {log}"


rule history_plot:
    input:
        "results/{dataset}/models/{method}_{bits}_history.csv",
    output:
        "results/{dataset}/models/{method}_{bits}_history.png",
    log:
        "logs/history_plot/{dataset}_{method}_{bits}.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "python -m pipeline.history_plot --history {input} --out {output} 2> {log}"
