# Every helper of the workflow lives here; the stage files hold only rules.
import json
import os

from pipeline.methods import training_params

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


def row_params(dataset, row):
    """A methods row's implementation and the parameters its `train` job gets: the dataset's
    lagnh section for LAGNH, then the row's overrides."""
    ds = config[dataset]
    spec = dict(ds["methods"][row])
    impl = spec.pop("method", row)
    base = dict(ds["lagnh"]) if impl == "lagnh" else {}
    if impl == "lagnh" and base.get("device", "auto") == "auto":
        base["device"] = ds.get("device", "auto")
    return impl, {**base, **spec}


def check_method_rows():
    """Unknown implementations and parameters stop the run here, before any job starts."""
    from pipeline.methods import check_params

    for dataset, ds in config.items():
        for row in ds["methods"]:
            impl, params = row_params(dataset, row)
            check_params(impl, params, where=f"config: {dataset}.methods.{row}")


check_method_rows()


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
    split = config[wildcards.dataset]["split"]
    kind = src["kind"]
    if split["protocol"] == "lists":  # the list files replace the kind's annotation files
        keys = ("train_list", "query_list", "database_list")
        return [split[k] for k in keys if k in split]
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
    class_map = config[wildcards.dataset]["auxiliary"]["class_map"]
    return (f"--detections {input.detections} "
            f"--class-map-json {shell_quote(as_json(class_map))}")


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
    """Everything the row sets (the encode rule: encode-time keys included)."""
    if wildcards.method not in config[wildcards.dataset]["methods"]:
        raise ValueError(f"method '{wildcards.method}' is not in {wildcards.dataset}.methods")
    return as_json(row_params(wildcards.dataset, wildcards.method)[1])


def train_params(wildcards):
    """The row's parameters without encode-time keys: changing those does not retrain."""
    impl, params = row_params(wildcards.dataset, wildcards.method)
    return as_json(training_params(impl, params))


def model_row(dataset, method):
    """The first row of the same method and training parameters: whose model a row encodes."""
    impl, params = row_params(dataset, method)
    mine = training_params(impl, params)
    for other in config[dataset]["methods"]:
        other_impl, other_params = row_params(dataset, other)
        if other_impl == impl and training_params(impl, other_params) == mine:
            return other
    return method


def encode_model(wildcards):
    row = model_row(wildcards.dataset, wildcards.method)
    return f"results/{wildcards.dataset}/models/{row}_{wildcards.bits}.pt"


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
        if spec.get("method", m) == "lagnh" and model_row(d, m) == m
        for b in ds["bits"]
    ]
    return files


def gpu_count(wildcards):
    """GPUs a rule asks the scheduler for: 1 unless the dataset is pinned to the CPU."""
    return 0 if config[wildcards.dataset].get("device", "auto") == "cpu" else 1


def device(wildcards):
    return config[wildcards.dataset].get("device", "auto")


# ---------------------------------------------------------------------------------------------
# Scheduler resources (SLURM and other executors): memory in MB and runtime in minutes, sized
# from the dataset's config (image counts, backbone, batch sizes, epochs, device). Coarse upper
# bounds meant to fit on the first try; each retry (--retries) multiplies both by the attempt
# number. Local runs ignore them unless --resources caps mem_mb. Profiles can override a rule
# (set-resources); see profiles/README.md.
# ---------------------------------------------------------------------------------------------
KNOWN_IMAGE_COUNTS = {"coco2017": 123_287, "nuswide": 195_834}  # images kept by the protocols
FEATURE_DIMS = {"vgg16_fc7": 4096, "efficientnet_lite0": 1280, "resnet50": 2048}
MB = 2**20


def job_sizes(wildcards):
    """What a dataset's jobs scale with: image counts, feature size, batches, device."""
    ds = config[wildcards.dataset]
    src, split, feats = ds["source"], ds["split"], ds["features"]
    counts = [split[k] for k in ("train", "query", "retrieval") if isinstance(split.get(k), int)]
    if src["kind"] == "demo":
        images = src["build"]["n_images"]
    elif src["kind"] in KNOWN_IMAGE_COUNTS:
        images = KNOWN_IMAGE_COUNTS[src["kind"]]
    else:
        images = sum(counts) if len(counts) == 3 else 100_000
    query = split.get("query") or split.get("per_concept_query", 0) * src.get("n_concepts", 21)
    query = min(query or 5000, images)
    train = min(split.get("train") or 5000, images)
    detector = ds.get("detector", {})
    lagnh = ds["lagnh"]
    method = getattr(wildcards, "method", None)
    return {
        "images": images,
        "train": train,
        "query": query,
        "retrieval": max(images - query, 1),
        "dim": FEATURE_DIMS.get(feats["backbone"], 4096),
        "batch": feats["batch_size"],
        "pixels": feats["image_size"] ** 2,
        "workers": feats["num_workers"],
        "gpu": gpu_count(wildcards) > 0,
        "detector": detector.get("kind", "none"),
        "det_pixels": detector.get("min_size", 800) * detector.get("max_size", 1333),
        "det_batch": detector.get("batch_size", 8),
        "det_epochs": detector.get("train", {}).get("epochs", 15),
        "lagnh": method is not None and method_impl(wildcards) == "lagnh",
        "lagnh_steps": lagnh["epochs"] * -(-train // lagnh["batch_size"]),  # epochs x batches
    }


def _cuda_host_mb(s):
    return 2000 if s["gpu"] else 0  # CUDA context and pinned buffers on the host


def _features_per_second(s):
    return (300 if s["gpu"] else 10) * 224**2 / s["pixels"]  # VGG-16 at 224 px as reference


def _detections_per_second(s):
    return 500 if s["detector"] == "cell_classifier" else (10 if s["gpu"] else 0.3)


# rule -> memory (MB) from job_sizes(); arrays are float32 (4 bytes) unless noted
MEM_MB = {
    "demo_images": lambda s: 1000,
    "download": lambda s: 500,
    "extract": lambda s: 1000,
    "split": lambda s: 2000 + 0.04 * s["images"],  # COCO/NUS-WIDE annotation tables
    "features": lambda s: (
        1500 + 300 * s["workers"] + _cuda_host_mb(s)
        + 10 * s["batch"] * s["pixels"] * 3 * 4 / MB  # a batch and its activations
    ),
    "cell_classifier": lambda s: 1500,
    "detect": lambda s: (
        1500 if s["detector"] == "cell_classifier"
        else 3000 + _cuda_host_mb(s) + 10 * s["det_batch"] * s["det_pixels"] * 3 * 4 / MB
    ),
    "auxiliary": lambda s: 1000 + 0.05 * s["images"],  # parsed detections.json
    "train": lambda s: (
        2000 + _cuda_host_mb(s)
        + 4 * s["train"] * s["dim"] * 4 / MB  # copies of the train features
        + 4 * s["train"] ** 2 * 4 / MB  # dense train-by-train graphs
    ),
    "encode": lambda s: 2000 + _cuda_host_mb(s) + 3 * s["images"] * s["dim"] * 4 / MB,
    "evaluate": lambda s: 2000 + 0.01 * s["retrieval"],  # chunked Hamming ranking
    "evaluate_float": lambda s: 2000 + 2 * s["images"] * s["dim"] * 4 / MB,
    "report": lambda s: 1000,
    "curves": lambda s: 1000,
    "gallery": lambda s: 1000,
    "history_plot": lambda s: 1000,
}

# rule -> runtime (minutes) from job_sizes(); 10 minutes of start-up slack everywhere
RUNTIME_MIN = {
    "demo_images": lambda s: 10 + s["images"] / 1000,
    "download": lambda s: 360,  # tens of GB over the internet
    "extract": lambda s: 60,
    "split": lambda s: 10 + s["images"] / 5000,
    "features": lambda s: 10 + s["images"] / _features_per_second(s) / 60,
    "cell_classifier": lambda s: 10 + s["det_epochs"],
    "detect": lambda s: 10 + s["images"] / _detections_per_second(s) / 60,
    "auxiliary": lambda s: 10 + s["images"] / 20000,
    "train": lambda s: 20 + (
        s["lagnh_steps"] * (0.05 if s["gpu"] else 1.0) / 60  # LAGNH: seconds per step
        if s["lagnh"] else s["train"] / 500
    ),
    "encode": lambda s: 15 + s["images"] / 1000 / 60,
    "evaluate": lambda s: 10 + s["query"] * s["retrieval"] / 5e6 / 60,
    "evaluate_float": lambda s: 10 + s["query"] * s["retrieval"] * s["dim"] / 1e10 / 60,
    "report": lambda s: 10,
    "curves": lambda s: 10,
    "gallery": lambda s: 10,
    "history_plot": lambda s: 10,
}


def mem_mb_for(rule):
    """Memory a job of ``rule`` asks for (MB, rounded up to 100 MB), times the attempt."""

    def get(wildcards, attempt):
        return int(-(-MEM_MB[rule](job_sizes(wildcards)) // 100) * 100) * attempt

    return get


def runtime_for(rule):
    """Wall-clock limit of a job of ``rule`` (whole minutes), times the attempt."""

    def get(wildcards, attempt):
        return int(-(-RUNTIME_MIN[rule](job_sizes(wildcards)) // 1)) * attempt

    return get
