# Every helper of the workflow lives here; the stage files hold only rules. Config values reach
# commands as sorted JSON or through `lookup`, so a changed value reruns exactly its rule.
import copy
import json
import os
import shlex
import sys

from snakemake.utils import validate

from pipeline.detectors.coco_results import check_detector, results_inputs
from pipeline.methods import check_params, training_params

# Fills every default (the schema is the only place one lives), sections left out included.
validate(config, schema="../schemas/config.schema.yaml")
for _dataset in list(config):  # validate gives sections left out one shared default object
    config[_dataset] = copy.deepcopy(config[_dataset])


def row_params(dataset, row):
    """A methods row's implementation and parameters: for LAGNH the dataset's lagnh section
    (its `device` the dataset's unless set), then the row's overrides."""
    ds = config[dataset]
    spec = dict(ds["methods"][row])
    impl = spec.pop("method", row)
    base = dict(ds["lagnh"]) if impl == "lagnh" else {}
    if impl == "lagnh" and base.get("device", "auto") == "auto":
        base["device"] = ds["device"]
    return impl, {**base, **spec}


for _dataset, _ds in config.items():  # a bad methods row stops the run before any job
    for _row in _ds["methods"]:
        check_params(*row_params(_dataset, _row), where=f"config: {_dataset}.methods.{_row}")
    check_detector(_dataset, _ds)  # coco_results: the user's files exist; keys of its kind


wildcard_constraints:
    dataset="[a-z][a-z0-9]*",
    method="[a-z][a-z0-9_]*",
    bits="[0-9]+",
    archive="[A-Za-z0-9_]+",


def final_targets():
    """What the README promises for the demo (or the first dataset): tables, then figures."""
    d = "demo" if "demo" in config else next(iter(config))
    figures = [f"results/{d}_{name}.png" for name in ("topk_precision", "pr")]
    galleries = [f"results/{d}_gallery_{b}.png" for b in config[d]["bits"]]
    return [f"results/{d}_map.csv", f"results/{d}_table.md", f"results/{d}_timing.md",
            *figures, *galleries, *history_plots(d)]


def section_json(*keys):
    """Input function: the job's dataset section at `keys` as sorted JSON."""

    def get(wildcards):
        value = config[wildcards.dataset]
        for key in keys:
            value = value[key]
        return json.dumps(value, sort_keys=True)

    return get


def cell_classifier_json(wildcards):
    """The classifier's training section plus the mosaic geometry it classifies."""
    ds = config[wildcards.dataset]
    build = ds["source"].get("build", {})
    geometry = {k: build[k] for k in ("cell", "grid", "fashion_mnist_dir") if k in build}
    return json.dumps({**ds["detector"].get("train", {}), **geometry}, sort_keys=True)


def split_inputs(wildcards):
    """Source files the split stage reads, by dataset kind (missing ones fail early), and the
    manifest of those files and of the images present (a deleted image reruns the split)."""
    src, split = config[wildcards.dataset]["source"], config[wildcards.dataset]["split"]
    manifest = refreshed_manifest("split_inputs")(wildcards)
    if split["protocol"] == "lists":  # the list files replace the kind's annotation files
        names = [split[k] for k in ("train_list", "query_list", "database_list") if k in split]
        return [*names, manifest]
    if src["kind"] == "coco2017":
        return [*(f"resources/{wildcards.dataset}/.{name}.extracted" for name in src["archives"]),
                manifest]
    if src["kind"] == "nuswide":
        keys = ("image_list", "labels_dir", "tag_list", "tags_file")
        return [*(os.path.join(src["root"], src[k]) for k in keys if k in src), manifest]
    return [*(src[k] for k in ("instances",) if k in src), manifest]  # demo, coco_format


# --- Manifests: changed images and source files rerun exactly what reads them ----------------
# results/{dataset}/manifest/{images,split_inputs}.tsv (pipeline/data/inventory.py). The manifest
# rule writes them once; afterwards they are refreshed here, while the job graph is built and
# before Snakemake compares mtimes, and rewritten only when their content changed.
from pipeline.data import inventory as _manifest  # noqa: E402

_refreshed = set()


def manifest_spec(dataset):
    return _manifest.spec(config[dataset]["source"], config[dataset]["split"])


def manifest_spec_json(wildcards):
    return json.dumps(manifest_spec(wildcards.dataset), sort_keys=True)


def manifest_path(dataset, name):
    return f"results/{dataset}/manifest/{name}.tsv"


def refreshed_manifest(name):
    """Input function: the dataset's manifest `name` (images, split_inputs), refreshed first
    (once per workflow process) when both files exist."""

    def get(wildcards):
        d = wildcards.dataset
        images, inputs = manifest_path(d, "images"), manifest_path(d, "split_inputs")
        if d not in _refreshed and os.path.exists(images) and os.path.exists(inputs):
            written = _manifest.write_manifests(manifest_spec(d), images, inputs)
            for path, changed in zip((images, inputs), written):
                if changed:
                    print(f"manifest: {path} changed", file=sys.stderr)
        _refreshed.add(d)
        return manifest_path(d, name)

    return get


def manifest_producers(wildcards):
    """What must exist before the first scan: the demo's images (a directory output, its mtime
    that of its .snakemake_timestamp, which edits inside leave alone) and COCO's extraction
    markers. Rebuilding them reruns this rule and what follows in the same run."""
    src = config[wildcards.dataset]["source"]
    if config[wildcards.dataset]["split"]["protocol"] != "lists" and src["kind"] == "demo":
        return [src["images"], src["instances"]]
    if src["kind"] == "coco2017":
        return [f"resources/{wildcards.dataset}/.{name}.extracted"
                for name in src.get("archives", {})]
    return []


def source_json(wildcards):
    """The source section as sorted JSON, without `manifest` (how changes are noticed does not
    change what the split or the tags hold)."""
    src = {k: v for k, v in config[wildcards.dataset]["source"].items() if k != "manifest"}
    return json.dumps(src, sort_keys=True)


def uses_tags(wildcards):
    return config[wildcards.dataset]["source"]["kind"] == "nuswide"


def aux_inputs(wildcards):
    inputs = {"split": f"results/{wildcards.dataset}/split.h5"}
    if not uses_tags(wildcards):
        inputs["detections"] = f"results/{wildcards.dataset}/detections.h5"
    return inputs


def aux_args(wildcards, input):
    """Command-line source of the aux labels: detections, or NUS-WIDE's user tags."""
    if uses_tags(wildcards):
        return f"--tags-source-json {shlex.quote(source_json(wildcards))}"
    class_map = section_json("auxiliary", "class_map")(wildcards)
    return f"--detections {input.detections} --class-map-json {shlex.quote(class_map)}"


def detect_inputs(wildcards):
    inputs = {"split": f"results/{wildcards.dataset}/split.h5",
              "manifest": refreshed_manifest("images")(wildcards)}
    if config[wildcards.dataset]["detector"]["kind"] == "cell_classifier":
        inputs["checkpoint"] = f"resources/{wildcards.dataset}/cell_classifier.pt"
    inputs.update(results_inputs(config[wildcards.dataset]))  # coco_results: the user's files
    return inputs


def instances_arg(wildcards, input):
    return f"--instances {input.instances}" if "instances" in input.keys() else ""


def checkpoint_arg(wildcards, input):
    return f"--checkpoint {input.checkpoint}" if "checkpoint" in input.keys() else ""


def method_impl(wildcards):
    return row_params(wildcards.dataset, wildcards.method)[0]


def method_params(wildcards):
    """Everything the row sets (the encode rule: encode-time keys included)."""
    return json.dumps(row_params(wildcards.dataset, wildcards.method)[1], sort_keys=True)


def train_params(wildcards):
    """The row's parameters without encode-time keys: changing those does not retrain."""
    impl, params = row_params(wildcards.dataset, wildcards.method)
    return json.dumps({**training_params(impl, params), **tune_selection(wildcards)},
                      sort_keys=True)


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


def eval_jsons(wildcards):
    ds, d = config[wildcards.dataset], wildcards.dataset
    rows = [f"results/{d}/eval/{m}_{b}.json" for m in ds["methods"] for b in ds["bits"]]
    return [*rows, f"results/{d}/eval/float.json"]


def _timing_row(dataset, method):
    bits = config[dataset]["timing"]["bits"]
    owner = model_row(dataset, method)
    return {"method": method, "model_of": owner,
            "train": f"logs/benchmarks/train/{dataset}_{owner}_{bits}.tsv",
            "encode": f"logs/benchmarks/encode/{dataset}_{method}_{bits}.tsv"}


def timing_train_benchmarks(wildcards):
    """Benchmark files of the train jobs timed (a row sharing a model: that model's job)."""
    rows = [_timing_row(wildcards.dataset, m) for m in config[wildcards.dataset]["methods"]]
    return sorted({row["train"] for row in rows})


def timing_encode_benchmarks(wildcards):
    return [_timing_row(wildcards.dataset, m)["encode"]
            for m in config[wildcards.dataset]["methods"]]


def timing_rows_json(wildcards):
    rows = [_timing_row(wildcards.dataset, m) for m in config[wildcards.dataset]["methods"]]
    return json.dumps(rows, sort_keys=True)


def gallery_codes(wildcards):
    ds = config[wildcards.dataset]
    names = [m for m in ds["methods"] if m != "random"] or list(ds["methods"])
    return [f"results/{wildcards.dataset}/codes/{m}_{wildcards.bits}.h5" for m in names]


def history_plots(d):
    """Loss curves of the LAGNH rows that train their own model."""
    ds = config[d]
    return [f"results/{d}/models/{m}_{b}_history.png" for m in ds["methods"]
            if row_params(d, m)[0] == "lagnh" and model_row(d, m) == m for b in ds["bits"]]


def plot_files(wildcards):
    d, ds = wildcards.dataset, config[wildcards.dataset]
    return [f"results/{d}_topk_precision.png", f"results/{d}_pr.png",
            *[f"results/{d}_gallery_{b}.png" for b in ds["bits"]], *history_plots(d)]


# --- Scheduler resources ---------------------------------------------------------------------
# Memory (MB) and runtime (minutes) are fixed per rule in the rule files, sized for MS COCO from
# measured peaks (benchmarks/README.md) and multiplied by the attempt number (--retries); a
# profile overrides them per rule (set-resources). A job asks for a GPU only when it uses one.


def scaled(amount):
    """A resource that doubles on the second attempt, triples on the third."""

    def get(wildcards, attempt):
        return amount * attempt

    return get


def on_gpu(wildcards):
    """Whether the dataset's jobs may use CUDA (`device` not `cpu`)."""
    return config[wildcards.dataset]["device"] != "cpu"


def gpu_features(wildcards):
    """A CNN backbone may use the GPU; features read from a user's file (`file`) never do."""
    return int(on_gpu(wildcards) and config[wildcards.dataset]["features"]["backbone"] != "file")


def features_inputs(wildcards):
    """The features rule's inputs: the split, and the user's file with `backbone: file`, else
    the images' manifest (a changed image reruns the features)."""
    cfg = config[wildcards.dataset]["features"]
    inputs = {"split": f"results/{wildcards.dataset}/split.h5"}
    if cfg["backbone"] == "file":
        inputs["source"] = cfg["path"]
    else:
        inputs["manifest"] = refreshed_manifest("images")(wildcards)
    return inputs


def gpu_detect(wildcards):
    """The Faster R-CNN detector runs on the GPU; the demo's cell classifier does not ask."""
    return int(on_gpu(wildcards) and config[wildcards.dataset]["detector"]["kind"] == "faster_rcnn")


def gpu_method(wildcards):
    """LAGNH trains and encodes on the GPU; the numpy baselines never ask for one."""
    return int(on_gpu(wildcards) and method_impl(wildcards) == "lagnh")
