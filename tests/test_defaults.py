"""The schema is the only place a config default lives; one config section adds a collection and
one module plus one registry line adds a hashing method.

* a source scan (ast) of ``pipeline/``: no ``.get("<schema key>", <literal>)``, no module-level
  ``*DEFAULT*`` dict or constant, and no ``add_argument("--<schema key>", default=<literal>)``
  keeps its own default for a key of the config schema (the scan is itself tested on a
  disagreeing default);
* LAGNH's ``DEFAULT_PARAMS`` is the schema's ``lagnh`` defaults;
* Snakemake's ``validate`` fills the nested defaults of sections left out, exactly as
  :func:`pipeline.schema.fill` does for code run outside Snakemake;
* a COCO-format collection of :data:`MINE` (<= 15 lines) validates and plans the whole chain;
* a toy method, one module registered by one line, trains, encodes and evaluates.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from pipeline import schema
from pipeline.methods import METHODS
from tests.conftest import job_counts, venv_env

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
SCHEMA = str(ROOT / "schemas" / "config.schema.yaml")

#: (file, key) pairs whose literal default is not a config default
NOT_CONFIG = {
    ("pipeline/lagnh/training.py", "sigma"),  # a running sum of per-batch bandwidths
    ("pipeline/stages/gallery.py", "k"),  # --k: neighbours shown, not LAGNH's k
    ("pipeline/__main__.py", "k"),  # --k: results printed
    ("pipeline/__main__.py", "method"),  # search --method: the methods row searched
    ("pipeline/__main__.py", "seed"),  # mosaic --seed: chooses the new mosaic's items
}
#: modules of hashing methods: their DEFAULTS are method parameters, which the schema does not
#: hold (methods rows are free-form; each method module is the one place for them)
METHOD_FILES = {str(Path(*m.split("."))) + ".py" for m in METHODS.values()}


def schema_defaults() -> dict[str, list[Any]]:
    """Every property name of the schema -> the defaults it has anywhere (empty: none)."""
    out: dict[str, list[Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                out.setdefault(key, [])
                if isinstance(sub, dict) and "default" in sub:
                    out[key].append(sub["default"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema.load())
    return out


def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def copied_defaults(source: str, filename: str,
                    known: dict[str, list[Any]] | None = None) -> list[str]:
    """Config defaults that ``source`` keeps itself, one line each (empty: none).

    A literal default for a schema key is a copy: ``.get(key, literal)`` and
    ``add_argument("--key", default=literal)`` always; a module-level ``*DEFAULT*`` dict or
    ``DEFAULT_<KEY>`` constant when its value differs from every schema default of that key.
    """
    known = schema_defaults() if known is None else known
    found = []
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "get" and len(node.args) == 2 and isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
            ok, value = _literal(node.args[1])
            if key in known and ok and (filename, key) not in NOT_CONFIG:
                found.append(f"{filename}:{node.lineno}: .get({key!r}, {value!r}) "
                             f"(schema: {known[key] or 'no default'})")
        if name == "add_argument" and node.args and isinstance(node.args[0], ast.Constant):
            key = str(node.args[0].value).lstrip("-").replace("-", "_")
            for kw in node.keywords:
                ok, value = _literal(kw.value) if kw.arg == "default" else (False, None)
                if key in known and ok and value is not None \
                        and (filename, key) not in NOT_CONFIG:
                    found.append(f"{filename}:{node.lineno}: --{key} default {value!r} "
                                 f"(schema: {known[key] or 'no default'})")
    if filename in METHOD_FILES:
        return found
    for node in tree.body:  # module level
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value else []
        for target in targets:
            name = getattr(target, "id", "")
            if "DEFAULT" not in name:
                continue
            ok, value = _literal(node.value)
            if not ok:
                continue
            pairs = value.items() if isinstance(value, dict) else \
                [(name.split("DEFAULT_", 1)[-1].lower(), value)]
            for key, v in pairs:
                if key in known and not any(_same(v, d) for d in known[key]):
                    found.append(f"{filename}:{node.lineno}: {name}[{key!r}] = {v!r} "
                                 f"(schema: {known[key] or 'no default'})")
    return found


def test_no_module_keeps_its_own_config_default() -> None:
    known = schema_defaults()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        found += copied_defaults(path.read_text(), rel, known)
    assert not found, "config defaults kept outside the schema:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet, fragment", [
    ('def f(cfg):\n    return cfg.get("batch_size", 4)\n', ".get('batch_size', 4)"),
    ('def f(cfg):\n    return cfg.get("jpeg_quality", 90)\n', ".get('jpeg_quality', 90)"),
    ('SPLIT_DEFAULTS = {"train": 5000, "empty_images": "keep"}\n', "['empty_images'] = 'keep'"),
    ("DEFAULT_TOPK = 500\n", "DEFAULT_TOPK['topk'] = 500"),
    ('p.add_argument("--threshold", type=float, default=0.7)\n', "--threshold default 0.7"),
])
def test_the_scan_sees_a_copied_default(snippet: str, fragment: str) -> None:
    found = copied_defaults(snippet, "pipeline/x.py")
    assert len(found) == 1 and fragment in found[0], found
    # equal module-level copies pass (the scan is about disagreement there) ...
    assert not copied_defaults('SPLIT_DEFAULTS = {"empty_images": "drop"}\n', "pipeline/x.py")
    # ... and a method module's own parameters are not config defaults
    assert not copied_defaults('DEFAULTS = {"sigma": 3.0}\n', "pipeline/baselines/sgh.py")


def test_lagnh_default_params_are_the_schemas() -> None:
    from pipeline.lagnh.model import DEFAULT_PARAMS, resolve_options

    lagnh = schema.section("lagnh")
    assert DEFAULT_PARAMS == {k: v["default"] for k, v in lagnh["properties"].items()}
    assert DEFAULT_PARAMS == schema.defaults("lagnh")
    assert resolve_options({}).encode_mode == lagnh["properties"]["encode_mode"]["default"]


def _dataset(kind: str) -> dict[str, Any]:
    sources = {"demo": {"kind": "demo", "images": "i", "instances": "j.json"},
               "coco2017": {"kind": "coco2017", "root": "r"},
               "nuswide": {"kind": "nuswide", "root": "r"}}
    protocol = {"demo": "random", "coco2017": "coco2017", "nuswide": "nuswide"}[kind]
    ds = {"source": sources[kind], "split": {"protocol": protocol, "query": 3},
          "features": {"backbone": "vgg16_fc7"}, "methods": {"lsh": {}}}
    if kind != "nuswide":
        ds["detector"] = {"kind": "cell_classifier" if kind == "demo" else "faster_rcnn"}
    return ds


@pytest.mark.parametrize("kind", ["demo", "coco2017", "nuswide"])
def test_validate_fills_sections_left_out_as_schema_fill_does(kind: str) -> None:
    given = _dataset(kind)
    cfg = {"a": copy.deepcopy(given), "b": copy.deepcopy(given)}
    validate(cfg, SCHEMA)
    ds = cfg["a"]
    for name in ("lagnh", "eval", "auxiliary"):  # absent: every inner default filled
        assert ds[name] == schema.defaults(name), name
    assert ds["lagnh"]["hidden"] == 1024 and ds["eval"]["topk"] == 1000
    assert ds["auxiliary"] == {"threshold": 0.5, "class_map": {}}
    assert ds["bits"] == [16, 32, 64, 128] and ds["seed"] == 0 and ds["device"] == "auto"
    for name in ("source", "split", "features", "detector"):
        if name in given:
            assert ds[name] == schema.fill(name, given[name]), name
    src = ds["source"]
    if kind == "demo":  # kind-specific defaults, nested ones included
        assert src["build"]["n_images"] == 4300 and ds["detector"]["train"]["epochs"] == 15
    else:
        assert "build" not in src and "train" not in ds.get("detector", {})
    assert ("train_instances" in src) == (kind == "coco2017")
    assert ("image_list" in src) == (kind == "nuswide")
    assert ds["split"]["empty_images"] == "drop"
    if "detector" in ds:
        assert ds["detector"]["batch_size"] == 8


def test_shipped_configs_hold_only_what_differs() -> None:
    """A key of config.yaml equal to its schema default is noise: it is left out."""
    def same_as_default(given: Any, filled: Any, path: str) -> list[str]:
        if isinstance(given, dict) and isinstance(filled, dict):
            return [p for k, v in given.items()
                    for p in same_as_default(v, filled[k], f"{path}.{k}")]
        return []

    for name in ("config.yaml", ".test/config.yaml"):
        cfg = yaml.safe_load((ROOT / name).read_text())
        for ds_name, ds in cfg.items():
            for section_name, given in ds.items():
                if section_name in ("methods",) or not isinstance(given, dict):
                    continue
                default = schema.fill(section_name, {k: given[k] for k in ("kind",)
                                                     if k in given})
                equal = [f"{name}: {ds_name}.{section_name}.{k}" for k, v in given.items()
                         if k != "kind" and k in default and _same(v, default[k])]
                assert not equal, equal


#: a COCO-format collection of your own: the README quotes this section
MINE = """\
mine:                                        # a COCO-format collection of your own
  source:
    kind: coco_format
    instances: {root}/instances.json         # COCO instances json: images, categories
    images: {root}/images                    # the folder its file_name values are under
  split: {{protocol: random, train: 20, query: 5}}   # retrieval: all the other images
  features: {{backbone: vgg16_fc7}}
  detector: {{kind: coco_results, path: {root}/detections.json}}   # your detector's results
  auxiliary:                                 # its class names differ from yours? map them:
    class_map: {{}}                            # detector class -> your class, or null to drop
  bits: [16, 32]
  methods: {{aux: {{}}, itq: {{}}, lagnh: {{}}}}
"""

#: what the end-to-end run of :data:`MINE` changes so that it runs offline in about a minute
MINE_OFFLINE = """\
mine:
  features: {backbone: efficientnet_lite0, image_size: 32, batch_size: 32}
  lagnh: {epochs: 2, hidden: 32, d_att: 16, batch_size: 16}
  eval: {topk: 10, gallery_queries: 1}
  bits: [16]
  device: cpu
"""


def _collection(root: Path, n: int = 32) -> dict[int, list[int]]:
    """``n`` small JPEGs of up to two of 3 classes (COCO ids 1, 4, 6: cat, dog, kite) with a
    COCO instances file; returns image id → its category ids."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    cats = [{"id": 1, "name": "cat"}, {"id": 4, "name": "dog"}, {"id": 6, "name": "kite"}]
    truth, images, anns = {}, [], []
    for i in range(1, n + 1):
        name = f"im{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 40, "height": 40})
        truth[i] = sorted({[1, 4, 6][i % 3], [1, 4, 6][(i // 3) % 3]})
        for cid in truth[i]:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cid,
                         "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})
    (root / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": cats}))
    return truth


def _snakemake(tmp_path: Path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), *args],
                         capture_output=True, text=True, cwd=ROOT, env=venv_env())
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-3000:]
    return text


def test_a_coco_format_collection_is_one_short_section(tmp_path: Path) -> None:
    section = MINE.format(root=tmp_path)
    assert len(section.splitlines()) <= 15
    (tmp_path / "images").mkdir()
    (tmp_path / "instances.json").write_text('{"images": [], "annotations": [], '
                                             '"categories": []}')
    (tmp_path / "detections.json").write_text("[]")
    cfg = yaml.safe_load(section)
    validate(copy.deepcopy(cfg), SCHEMA)
    path = tmp_path / "mine.yaml"
    path.write_text(section)
    text = _snakemake(tmp_path, "--configfile", str(path), "-n", "results/mine_map.csv")
    rows, bits = 3, 2
    assert job_counts(text) == {
        "manifest": 1, "split": 1, "features": 1, "detect": 1, "auxiliary": 1,
        "evaluate_float": 1,
        "train": rows * bits, "encode": rows * bits, "evaluate": rows * bits, "table": 1,
        "report": 1,
        "curves": 1, "gallery": bits, "history_plot": bits}  # LAGNH's loss curves
    # the detect rule reads the user's results json: no file to hand-place
    (tmp_path / "detections.json").unlink()
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(path), "-n",
                          "results/mine_map.csv"],
                         capture_output=True, text=True, cwd=ROOT, env=venv_env())
    text = run.stdout + run.stderr
    assert run.returncode != 0
    assert "mine.detector.path" in text and "detections.json is not a file" in text, text


@pytest.mark.slow
def test_the_coco_format_section_runs_end_to_end_with_its_own_detections(tmp_path: Path):
    """:data:`MINE` on a 32-image COCO-format collection and a results json of its own
    detector (noisy: one class missed on every fourth image, a false one on every fifth),
    offline (:data:`MINE_OFFLINE`): the table is made with nothing placed under results/; the
    aux row's labels are the detections' above the threshold; editing the results json reruns
    detect and what follows, never split or features."""
    from pipeline.artifacts import read_h5

    truth = _collection(tmp_path)
    results = []
    for i, cids in truth.items():
        for k, cid in enumerate(cids):
            if i % 4 == 0 and k == 0:
                continue
            results.append({"image_id": i, "category_id": cid, "score": 0.9,
                            "bbox": [1.0, 1.0, 5.0, 5.0]})
        if i % 5 == 0:
            results.append({"image_id": i, "category_id": 6 if 6 not in cids else 1,
                            "score": 0.6, "bbox": [0.0, 0.0, 3.0, 3.0]})
        results.append({"image_id": i, "category_id": 4, "score": 0.2, "bbox": [0, 0, 1, 1]})
    (tmp_path / "detections.json").write_text(json.dumps(results))
    (tmp_path / "mine.yaml").write_text(MINE.format(root=tmp_path))
    (tmp_path / "offline.yaml").write_text(MINE_OFFLINE)
    configs = ["--configfile", str(tmp_path / "mine.yaml"), str(tmp_path / "offline.yaml")]
    _snakemake(tmp_path, *configs, "--cores", "2", "results/mine_map.csv")
    table = (tmp_path / "results" / "mine_map.csv").read_text()
    assert [line.split(",")[0] for line in table.splitlines()] == [
        "method", "itq", "aux", "lagnh", "float"]
    aux, attrs = read_h5(tmp_path / "results" / "mine" / "aux.h5", stage="auxiliary")
    assert attrs["detector"]["kind"] == "coco_results" and attrs["threshold"] == 0.5
    names = attrs["class_names"]
    for i, row in zip(aux["ids"].tolist(), aux["aux_labels"], strict=True):
        expect = {cid: 1 for cid in truth[i][(1 if i % 4 == 0 else 0):]}
        if i % 5 == 0:
            expect[6 if 6 not in truth[i] else 1] = 1
        assert row.tolist() == [expect.get(cid, 0) for cid in (1, 4, 6)], (i, names)
    # an edited results file: detect and what follows, not split or features
    time.sleep(1)
    (tmp_path / "detections.json").write_text(json.dumps(results[:-1]))
    jobs = job_counts(_snakemake(tmp_path, *configs, "-n", "results/mine_map.csv"))
    assert jobs["detect"] == 1 and jobs["auxiliary"] == 1 and jobs["train"] >= 1
    assert "features" not in jobs and "split" not in jobs


TOY = '''\
"""A toy hashing method: the sign of each feature minus its training mean."""
import numpy as np

PARAMS = ("shift",)


def fit(X, Y, bits, params, seed):
    return {"mean": X.mean(0)[:bits] + float(params.get("shift", 0.0))}


def encode(state, X, Y, params):
    return X[:, :len(state["mean"])] > state["mean"]
'''


def test_a_hashing_method_is_one_module_and_one_registry_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.artifacts import read_h5, write_h5
    from pipeline.codes import unpack_codes
    from pipeline.methods import check_params
    from pipeline.stages.encode import main as encode_main
    from pipeline.stages.evaluate import main as evaluate_main
    from pipeline.stages.train import main as train_main

    (tmp_path / "toy_hash.py").write_text(TOY)  # the module
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(METHODS, "toy", "toy_hash")  # the registry line
    check_params("toy", {"shift": 0.1})  # the workflow's start-up check knows it
    with pytest.raises(ValueError, match="shift"):
        check_params("toy", {"shfit": 0.1})

    rng = np.random.default_rng(0)
    n, bits = 60, 8
    split = np.array([0] * 20 + [1] * 10 + [2] * 30, np.uint8)
    ids = np.arange(n, dtype=np.int64) + 1
    labels = (rng.random((n, 4)) < 0.4).astype(np.uint8)
    feats = (labels @ rng.normal(size=(4, 16)) + 0.3 * rng.normal(size=(n, 16))).astype(
        np.float32)
    write_h5(tmp_path / "split.h5", {"ids": ids, "paths": np.array([f"{i}.jpg" for i in ids]),
                                     "labels": labels, "split": split}, stage="split",
             attrs={"dataset": "toy", "image_root": str(tmp_path),
                    "class_names": ["a", "b", "c", "d"]})
    write_h5(tmp_path / "features.h5", {"ids": ids, "features": feats,
                                        "valid": np.ones(n, np.uint8)}, stage="features")
    write_h5(tmp_path / "aux.h5", {"ids": ids, "aux_labels": labels}, stage="auxiliary")
    inputs = ["--split", str(tmp_path / "split.h5"), "--features",
              str(tmp_path / "features.h5"), "--aux", str(tmp_path / "aux.h5")]
    model, codes, out = tmp_path / "toy_8.pt", tmp_path / "toy_8.h5", tmp_path / "toy_8.json"
    assert train_main(["--method", "toy", "--bits", str(bits), *inputs, "--params-json",
                       '{"shift": 0.0}', "--out", str(model), "--history",
                       str(tmp_path / "h.csv")]) == 0
    assert encode_main(["--model", str(model), *inputs, "--out", str(codes)]) == 0
    data, attrs = read_h5(codes, ["codes"], stage="codes")
    assert attrs["method"] == "toy" and unpack_codes(data["codes"], bits).shape == (40, bits)
    assert evaluate_main(["--split", str(tmp_path / "split.h5"), "--codes", str(codes),
                          "--no-pr", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "toy" and result["bits"] == bits
    assert 0 < result["map"] <= 1
