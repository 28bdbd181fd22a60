# Every helper of the workflow lives here; the stage files hold only rules.
import json
import os

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


wildcard_constraints:
    dataset="[a-z][a-z0-9]*",
    method="[a-z][a-z0-9_]*",
    bits="[0-9]+",
    archive="[A-Za-z0-9_]+",


def final_targets():
    """Default target: the MAP table of the demo (or of the first dataset configured)."""
    name = "demo" if "demo" in config else next(iter(config))
    return [f"results/{name}_map.csv"]


def dataset_cfg(wildcards):
    return config[wildcards.dataset]


def as_json(obj):
    """Config values reach commands as sorted JSON (params change -> rule reruns)."""
    return json.dumps(obj, sort_keys=True)


def source_json(wildcards):
    return as_json(config[wildcards.dataset]["source"])


def split_json(wildcards):
    return as_json(config[wildcards.dataset]["split"])


def demo_build_json(wildcards):
    return as_json(config[wildcards.dataset]["source"]["build"])


def features_json(wildcards):
    return as_json(config[wildcards.dataset]["features"])


def detector_json(wildcards):
    return as_json(config[wildcards.dataset]["detector"])


def cell_classifier_json(wildcards):
    src = config[wildcards.dataset]["source"]["build"]
    train = config[wildcards.dataset]["detector"].get("train", {})
    keep = ("cell", "grid", "fashion_mnist_dir")
    return as_json({**train, **{k: src[k] for k in keep if k in src}})


def split_inputs(wildcards):
    """Source files the split stage reads, by dataset kind (missing ones fail early)."""
    src = config[wildcards.dataset]["source"]
    kind = src["kind"]
    if kind == "demo":
        return [src["instances"], src["images"]]
    if kind == "coco2017":
        return [f"resources/{wildcards.dataset}/.{name}.extracted" for name in src["archives"]]
    if kind == "coco_format":
        return [src["instances"]]
    if kind == "nuswide":
        keys = ("image_list", "labels_dir", "tag_list", "tags_file")
        return [os.path.join(src["root"], src[k]) for k in keys if k in src]
    return []


def archive_url(wildcards):
    return config[wildcards.dataset]["source"]["archives"][wildcards.archive]["url"]


def source_root(wildcards):
    return config[wildcards.dataset]["source"].get("root", f"resources/{wildcards.dataset}")


def archive_md5(wildcards):
    return config[wildcards.dataset]["source"]["archives"][wildcards.archive]["md5"]


def aux_threshold(wildcards):
    return config[wildcards.dataset]["auxiliary"]["threshold"]


def uses_tags(wildcards):
    return config[wildcards.dataset]["source"]["kind"] == "nuswide"


def aux_inputs(wildcards):
    inputs = {"split": f"results/{wildcards.dataset}/split.h5"}
    if not uses_tags(wildcards):
        inputs["detections"] = f"results/{wildcards.dataset}/detections.json"
    return inputs


def aux_args(wildcards, input):
    """Command-line source of the aux labels: detections, or NUS-WIDE's user tags."""
    if uses_tags(wildcards):
        return "--tags-source-json " + shell_quote(source_json(wildcards))
    return f"--detections {input.detections}"


def shell_quote(text):
    import shlex

    return shlex.quote(text)


def detect_inputs(wildcards):
    inputs = {"split": f"results/{wildcards.dataset}/split.h5"}
    if config[wildcards.dataset]["detector"]["kind"] == "cell_classifier":
        inputs["checkpoint"] = f"resources/{wildcards.dataset}/cell_classifier.pt"
    return inputs


def checkpoint_arg(wildcards, input):
    return f"--checkpoint {input.checkpoint}" if "checkpoint" in input.keys() else ""


def method_impl(wildcards):
    spec = config[wildcards.dataset]["methods"][wildcards.method]
    return spec.get("method", wildcards.method)


def method_params(wildcards):
    """A method's parameters: the dataset's lagnh section for LAGNH, then the row's overrides."""
    ds = config[wildcards.dataset]
    if wildcards.method not in ds["methods"]:
        raise ValueError(f"method '{wildcards.method}' is not in {wildcards.dataset}.methods")
    spec = dict(ds["methods"][wildcards.method])
    impl = spec.pop("method", wildcards.method)
    base = dict(ds["lagnh"]) if impl == "lagnh" else {}
    if impl == "lagnh" and base.get("device", "auto") == "auto":
        base["device"] = ds.get("device", "auto")
    return as_json({**base, **spec})


def dataset_seed(wildcards):
    return config[wildcards.dataset].get("seed", 0)


def eval_option(name):
    def get(wildcards):
        return config[wildcards.dataset]["eval"][name]

    return get


def eval_jsons(wildcards):
    ds = config[wildcards.dataset]
    files = [
        f"results/{wildcards.dataset}/eval/{m}_{b}.json"
        for m in ds["methods"]
        for b in ds["bits"]
    ]
    return files + [f"results/{wildcards.dataset}/eval/float.json"]


def gallery_codes(wildcards):
    ds = config[wildcards.dataset]
    names = [m for m in ds["methods"] if m != "random"] or list(ds["methods"])
    return [f"results/{wildcards.dataset}/codes/{m}_{wildcards.bits}.h5" for m in names]


def plot_files(wildcards):
    ds = config[wildcards.dataset]
    d = wildcards.dataset
    files = [f"results/{d}_topk_precision.png", f"results/{d}_pr.png"]
    files += [f"results/{d}_gallery_{b}.png" for b in ds["bits"]]
    files += [
        f"results/{d}/models/{m}_{b}_history.png"
        for m, spec in ds["methods"].items()
        if spec.get("method", m) == "lagnh"
        for b in ds["bits"]
    ]
    return files


def gpu_count(wildcards):
    """GPUs a rule asks the scheduler for: 1 unless the dataset is pinned to the CPU."""
    return 0 if config[wildcards.dataset].get("device", "auto") == "cpu" else 1


def device(wildcards):
    return config[wildcards.dataset].get("device", "auto")
