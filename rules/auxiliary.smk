# Auxiliary labels: a detector's outputs (kept above a low score floor), then thresholding.
# Changing auxiliary.threshold reruns only the `auxiliary` rule, not the detector. With
# detector.kind coco_results the detect rule reads the user's results json (an input: editing
# it reruns detect and what follows, not features).


rule cell_classifier:
    output:
        "resources/{dataset}/cell_classifier.pt",
    params:
        cfg=cell_classifier_json,
    threads: 2
    log:
        "logs/cell_classifier/{dataset}.log",
    benchmark:
        "logs/benchmarks/cell_classifier/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(30),
    shell:
        "python -m pipeline.stages.cell_classifier --config-json {params.cfg:q} "
        "--threads {threads} --out {output} 2> {log}"


rule detect:
    input:
        unpack(detect_inputs),
    output:
        "results/{dataset}/detections.h5",
    params:
        detector=section_json("detector"),
        checkpoint=checkpoint_arg,
        instances=instances_arg,
        device=lookup(dpath="{dataset}/device", within=config),
    threads: 2
    log:
        "logs/detect/{dataset}.log",
    benchmark:
        "logs/benchmarks/detect/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(600),
        gpu=gpu_detect,
    shell:
        "python -m pipeline.stages.detect --split {input.split} "
        "--detector-json {params.detector:q} {params.checkpoint} {params.instances} "
        "--device {params.device} "
        "--threads {threads} --out {output} 2> {log}"


rule auxiliary:
    input:
        unpack(aux_inputs),
    output:
        "results/{dataset}/aux.h5",
    params:
        threshold=lookup(dpath="{dataset}/auxiliary/threshold", within=config),
        source=aux_args,
    log:
        "logs/auxiliary/{dataset}.log",
    benchmark:
        "logs/benchmarks/auxiliary/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=scaled(3000),
        runtime=scaled(30),
    shell:
        "python -m pipeline.stages.auxiliary --split {input.split} {params.source} "
        "--threshold {params.threshold} --out {output} 2> {log}"
