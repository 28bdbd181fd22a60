# Every helper of the workflow lives here; the stage files hold only rules. Config values reach
# commands as sorted JSON or through `lookup`, so a changed value reruns exactly its rule.
import copy
import json
import os
import shlex
import sys

from snakemake.utils import validate

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
    """Source files the split stage reads, by dataset kind (missing ones fail early)."""
    src, split = config[wildcards.dataset]["source"], config[wildcards.dataset]["split"]
    if split["protocol"] == "lists":  # the list files replace the kind's annotation files
        return [split[k] for k in ("train_list", "query_list", "database_list") if k in split]
    if src["kind"] == "coco2017":
        return [f"resources/{wildcards.dataset}/.{name}.extracted" for name in src["archives"]]
    if src["kind"] == "nuswide":
        keys = ("image_list", "labels_dir", "tag_list", "tags_file")
        return [os.path.join(src["root"], src[k]) for k in keys if k in src]
    return [src[k] for k in ("instances", "images") if k in src]  # demo, coco_format


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
        return f"--tags-source-json {shlex.quote(section_json('source')(wildcards))}"
    class_map = section_json("auxiliary", "class_map")(wildcards)
    return f"--detections {input.detections} --class-map-json {shlex.quote(class_map)}"


def detect_inputs(wildcards):
    inputs = {"split": f"results/{wildcards.dataset}/split.h5"}
    if config[wildcards.dataset]["detector"]["kind"] == "cell_classifier":
        inputs["checkpoint"] = f"resources/{wildcards.dataset}/cell_classifier.pt"
    return inputs


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
    return int(on_gpu(wildcards))


def gpu_detect(wildcards):
    """The Faster R-CNN detector runs on the GPU; the demo's cell classifier does not ask."""
    return int(on_gpu(wildcards) and config[wildcards.dataset]["detector"]["kind"] == "faster_rcnn")


def gpu_method(wildcards):
    """LAGNH trains and encodes on the GPU; the numpy baselines never ask for one."""
    return int(on_gpu(wildcards) and method_impl(wildcards) == "lagnh")


# --- Settings by cross-validation and the paper's Figures 3-4 (rules/tune.smk) ----------------
from pipeline.tuning import figure_points, grid_epochs, grid_points, n_trainings  # noqa: E402


def tuned(dataset, method):
    """Whether a LAGNH row's training settings come from the tune checkpoint."""
    return config[dataset]["tune"]["enabled"] and row_params(dataset, method)[0] == "lagnh"


for _dataset, _ds in config.items():  # the cost of a grid, before anything runs
    if _ds["tune"]["enabled"]:
        _rows = [m for m in _ds["methods"] if tuned(_dataset, m) and model_row(_dataset, m) == m]
        for _point in grid_points(_ds["tune"]["grid"]):
            check_params("lagnh", {**row_params(_dataset, _rows[0])[1], **_point},
                         where=f"config: {_dataset}.tune.grid") if _rows else None
        print(f"tune: {_dataset}: {n_trainings(_ds['tune']['grid'])} training(s) per tuned row "
              f"x {len(_rows)} row(s) {_rows} at {_ds['tune']['bits']} bits", file=sys.stderr)


def tune_point_json(wildcards):
    """One grid point of the row: its overrides and the full training parameters."""
    tune = config[wildcards.dataset]["tune"]
    impl, params = row_params(wildcards.dataset, wildcards.method)
    base = training_params(impl, params)
    point = grid_points(tune["grid"])[int(wildcards.point)]
    return json.dumps({"override": point, "params": {**base, **point},
                       "epochs": grid_epochs(tune["grid"], base["epochs"])}, sort_keys=True)


def tune_settings_json(wildcards):
    """The validation split and its relevance (what every grid point is scored on)."""
    tune = config[wildcards.dataset]["tune"]
    keys = ("relevance", "query_fraction", "database_fraction", "seed", "topk", "bits")
    return json.dumps({k: tune[k] for k in keys}, sort_keys=True)


def tune_point_files(wildcards):
    n = len(grid_points(config[wildcards.dataset]["tune"]["grid"]))
    return [f"results/{wildcards.dataset}/tune/{wildcards.method}/point_{i}.json"
            for i in range(n)]


def train_inputs(wildcards):
    """The train rule's inputs; a tuned row also reads its selection (`ancient`: a rewritten
    but unchanged selection does not retrain, the parameters it sets decide)."""
    d = wildcards.dataset
    inputs = {k: f"results/{d}/{k}.h5" for k in ("split", "features", "aux")}
    if tuned(d, wildcards.method):
        inputs["tune"] = ancient(f"results/{d}/tune/{wildcards.method}.json")
    return inputs


def tune_selection(wildcards):
    """The selected settings of a tuned row (waits for the tune checkpoint), else {}."""
    if not tuned(wildcards.dataset, wildcards.method):
        return {}
    path = checkpoints.tune.get(dataset=wildcards.dataset, method=wildcards.method).output[0]
    with open(path) as f:
        return json.load(f)["selected"]


def tune_arg(wildcards, input):
    return f"--tune {input.tune}" if "tune" in input.keys() else ""


def figure_point_json(wildcards):
    ds = config[wildcards.dataset]
    impl, params = row_params(wildcards.dataset, "lagnh") if "lagnh" in ds["methods"] else (
        "lagnh", {**ds["lagnh"], "device": ds["device"]})
    base = training_params(impl, params)
    override, epochs = figure_points(wildcards.figure, ds["figures"], base["epochs"])[
        wildcards.point]
    return json.dumps({"override": override, "params": {**base, **override}, "epochs": epochs},
                      sort_keys=True)


def figure_point_files(wildcards):
    ds = config[wildcards.dataset]
    names = figure_points(wildcards.figure, ds["figures"], ds["lagnh"].get("epochs", 300))
    return [f"results/{wildcards.dataset}/figures/{wildcards.figure}/{p}.json" for p in names]
