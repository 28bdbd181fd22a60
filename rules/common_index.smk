# Helpers of rules/index.smk: extra image collections encoded with an existing model, so a
# database grows without retraining; the rest is rules/common.smk.


def index_section(wildcards):
    """The config section index.NAME as sorted JSON (a missing NAME fails with the key)."""
    index = config[wildcards.dataset]["index"]
    if wildcards.name not in index:
        raise ValueError(f"config: {wildcards.dataset}.index has no collection "
                         f"'{wildcards.name}' (known: {sorted(index)})")
    return json.dumps(index[wildcards.name], sort_keys=True)


def index_split_inputs(wildcards):
    section = json.loads(index_section(wildcards))
    inputs = {"split": f"results/{wildcards.dataset}/split.h5", "images": section["images"]}
    if section.get("instances"):
        inputs["instances"] = section["instances"]
    return inputs


def index_detect_inputs(wildcards):
    d = f"results/{wildcards.dataset}/index/{wildcards.name}"
    inputs = {"split": f"{d}/split.h5"}
    if config[wildcards.dataset]["detector"]["kind"] == "cell_classifier":
        inputs["checkpoint"] = f"resources/{wildcards.dataset}/cell_classifier.pt"
    return inputs
