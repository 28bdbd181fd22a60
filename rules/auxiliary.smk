# Auxiliary labels: a detector's outputs (kept above a low score floor), then thresholding.
# Changing auxiliary.threshold reruns only the `auxiliary` rule, not the detector.


rule cell_classifier:
    output:
        "resources/{dataset}/cell_classifier.pt",
    params:
        cfg=cell_classifier_json,
    threads: 2
    log:
        "logs/cell_classifier/{dataset}.log",
    benchmark:
        "benchmarks/cell_classifier/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=mem_mb_for("cell_classifier"),
        runtime=runtime_for("cell_classifier"),
    shell:
        "python -m pipeline.stages.cell_classifier --config-json {params.cfg:q} "
        "--threads {threads} --out {output} 2> {log}"


rule detect:
    input:
        unpack(detect_inputs),
    output:
        "results/{dataset}/detections.json",
    params:
        detector=detector_json,
        checkpoint=checkpoint_arg,
        device=device,
    threads: 2
    log:
        "logs/detect/{dataset}.log",
    benchmark:
        "benchmarks/detect/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=mem_mb_for("detect"),
        runtime=runtime_for("detect"),
        gpu=gpu_count,
    shell:
        "python -m pipeline.stages.detect --split {input.split} "
        "--detector-json {params.detector:q} {params.checkpoint} --device {params.device} "
        "--threads {threads} --out {output} 2> {log}"


rule auxiliary:
    input:
        unpack(aux_inputs),
    output:
        "results/{dataset}/aux.h5",
    params:
        threshold=aux_threshold,
        source=aux_args,
    log:
        "logs/auxiliary/{dataset}.log",
    benchmark:
        "benchmarks/auxiliary/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=mem_mb_for("auxiliary"),
        runtime=runtime_for("auxiliary"),
    shell:
        "python -m pipeline.stages.auxiliary --split {input.split} {params.source} "
        "--threshold {params.threshold} --out {output} 2> {log}"
