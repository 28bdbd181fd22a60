# Helpers of rules/tune.smk (settings chosen on a validation split of the training images, and
# the paper's Figures 3-4) and of the train rule's tuned inputs; the rest is rules/common.smk.

from pipeline.tuning import figure_points, grid_epochs, grid_points, n_trainings


def tuned(dataset, method):
    """Whether a LAGNH row's training settings come from the tune checkpoint."""
    return config[dataset]["tune"]["enabled"] and row_params(dataset, method)[0] == "lagnh"


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


def figure_base(dataset):
    """The training parameters the figures vary: the `lagnh` row's, else the lagnh section's."""
    ds = config[dataset]
    impl, params = row_params(dataset, "lagnh") if "lagnh" in ds["methods"] else (
        "lagnh", {**ds["lagnh"], "device": ds["device"]})
    return training_params(impl, params)


def figure_point_json(wildcards):
    ds = config[wildcards.dataset]
    base = figure_base(wildcards.dataset)
    override, epochs = figure_points(wildcards.figure, ds["figures"], base["epochs"])[
        wildcards.point]
    return json.dumps({"override": override, "params": {**base, **override}, "epochs": epochs},
                      sort_keys=True)


def figure_point_files(wildcards):
    ds = config[wildcards.dataset]
    names = figure_points(wildcards.figure, ds["figures"], figure_base(wildcards.dataset)["epochs"])
    return [f"results/{wildcards.dataset}/figures/{wildcards.figure}/{p}.json" for p in names]


def print_costs():
    """The trainings a run implies, before anything runs: a tuned row's grid, and the
    figures when one is among the requested targets."""
    targets = " ".join(sys.argv[1:])  # the command line's targets (parsed before the DAG)
    for dataset, ds in config.items():
        if ds["tune"]["enabled"]:
            rows = [m for m in ds["methods"] if tuned(dataset, m) and model_row(dataset, m) == m]
            for point in grid_points(ds["tune"]["grid"]) if rows else []:
                check_params("lagnh", {**row_params(dataset, rows[0])[1], **point},
                             where=f"config: {dataset}.tune.grid")
            print(f"tune: {dataset}: {n_trainings(ds['tune']['grid'])} training(s) per tuned "
                  f"row x {len(rows)} row(s) {rows} at {ds['tune']['bits']} bits",
                  file=sys.stderr)
        for figure in ("epochs", "sensitivity"):
            if f"results/{dataset}_{figure}." in targets:
                n = len(figure_points(figure, ds["figures"], figure_base(dataset)["epochs"]))
                print(f"figure: {dataset}_{figure}: {n} training(s) at {ds['figures']['bits']} "
                      f"bits", file=sys.stderr)


print_costs()
