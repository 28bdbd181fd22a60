"""detections.h5: your own detector's COCO results json (kind coco_results), a detection run
that resumes after an interruption with a file identical to an uninterrupted run's, and an
auxiliary stage that reads the detections in bounded blocks.

* coco_results matches entries by image id or, where given, by file name; ignores images of the
  collection left out of the split; names unknown images and category ids with the fix; takes
  its categories from the instances file, ``coco2017`` or a categories file;
* :func:`pipeline.detectors.coco_results.iter_json_list` parses a list in small chunks exactly
  as ``json.load`` does;
* the cell classifier stopped after 7 of 11 images (an injected failure, and a SIGTERM'd
  subprocess) resumes from its last commit and writes the same file; a changed checkpoint
  discards the partial file; commits come by time as well as by image count; rewinding forgets
  the images after the boundary;
* :func:`pipeline.detectors.store.iter_blocks` is a generator of bounded blocks and the
  auxiliary labels of a 400,000-detection file are built within a tracemalloc bound far below
  the size of its columns, equal to :func:`scores_to_multihot`'s.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.artifacts import partial_path, read_h5
from pipeline.detectors import cell_mlp, coco_results
from pipeline.detectors.multihot import detections_file_to_aux, scores_to_multihot
from pipeline.detectors.store import DetectionWriter, dets_to_arrays, iter_blocks
from pipeline.stages.auxiliary import main as aux_main
from pipeline.stages.detect import main as detect_main
from pipeline.stages.split import main as split_main
from tests.conftest import venv_env

ROOT = Path(__file__).resolve().parents[1]


def _split(coll: dict, tmp_path: Path, retrieval: int = 3) -> Path:
    """split.h5 of the conftest collection: 9 of its 11 annotated images (4 train, 2 query,
    ``retrieval`` retrieval); image 12 (no annotation) is dropped."""
    out = tmp_path / "split.h5"
    source = {"kind": "coco_format", "instances": str(coll["instances"]),
              "images": str(coll["images"])}
    split = {"protocol": "random", "train": 4, "query": 2, "retrieval": retrieval, "seed": 0,
             "empty_images": "drop"}
    assert split_main(["--dataset", "mine", "--source-json", json.dumps(source),
                       "--split-json", json.dumps(split), "--out", str(out)]) == 0
    return out


def _detect(tmp_path: Path, split: Path, cfg: dict, *extra: str) -> Path:
    out = tmp_path / "detections.h5"
    assert detect_main(["--split", str(split), "--detector-json", json.dumps(cfg),
                        "--out", str(out), *extra]) == 0
    return out


def _per_image(path: Path) -> dict[int, list[tuple[int, float]]]:
    """image id → [(category id, score)] read back from a detections.h5."""
    data, _ = read_h5(path)
    start = np.concatenate([[0], np.cumsum(data["n_detections"])])
    return {int(i): [(int(c), round(float(s), 4)) for c, s in zip(
        data["det_category_id"][start[r]:start[r + 1]], data["det_score"][start[r]:start[r + 1]],
        strict=True)] for r, i in enumerate(data["ids"])}


def test_coco_results_are_matched_by_id_or_file_name(coco_collection, tmp_path):
    coll = coco_collection
    split = _split(coll, tmp_path)
    ids = read_h5(split, ["ids"])[0]["ids"].tolist()
    outside = sorted(set(range(1, 13)) - set(ids))  # in the collection, not in the split
    a, b, c = ids[0], ids[1], ids[2]
    results = [
        {"image_id": a, "category_id": 5, "score": 0.9, "bbox": [1, 2, 3, 4]},
        {"image_id": a, "category_id": 2, "score": 0.3, "bbox": [0, 0, 1, 1]},
        {"image_id": 999, "file_name": f"img{b:02d}.jpg", "category_id": 9, "score": 0.8,
         "bbox": [0, 0, 2, 2]},                                    # by name, not by its id
        {"image_id": c, "category_id": 9, "score": 0.01, "bbox": [0, 0, 1, 1]},  # < floor
        {"image_id": outside[0], "category_id": 2, "score": 0.99, "bbox": [0, 0, 1, 1]},
    ]
    (tmp_path / "res.json").write_text(json.dumps(results))
    out = _detect(tmp_path, split, {"kind": "coco_results", "path": str(tmp_path / "res.json")},
                  "--instances", str(coll["instances"]))
    got = _per_image(out)
    assert got[a] == [(5, 0.9), (2, 0.3)] and got[b] == [(9, 0.8)] and got[c] == []
    assert sum(len(v) for v in got.values()) == 3
    data, attrs = read_h5(out)
    assert attrs["stage"] == "detect" and attrs["categories"] == [
        {"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 9, "name": "kite"}]
    assert attrs["results"]["by_file_name"] == 1 and attrs["results"]["outside_split"] == 1
    assert attrs["results"]["categories_from"] == str(coll["instances"])
    assert data["det_bbox"][0].tolist() == [1, 2, 3, 4]
    assert not partial_path(out).exists()
    # the auxiliary stage reads the file: threshold 0.5 keeps dog on a and kite on b
    assert aux_main(["--split", str(split), "--detections", str(out), "--threshold", "0.5",
                     "--out", str(tmp_path / "aux.h5")]) == 0
    aux, aux_attrs = read_h5(tmp_path / "aux.h5", stage="auxiliary")
    rows = {i: r for r, i in enumerate(aux["ids"].tolist())}
    assert aux_attrs["class_names"] == ["cat", "dog", "kite"]
    assert aux["aux_labels"][rows[a]].tolist() == [0, 1, 0]
    assert aux["aux_labels"][rows[b]].tolist() == [0, 0, 1]
    assert aux["aux_labels"].sum() == 2
    assert aux_attrs["detector"]["kind"] == "coco_results"


def test_coco_results_name_unknown_images_and_classes(coco_collection, tmp_path):
    coll = coco_collection
    split = _split(coll, tmp_path)
    cfg = {"kind": "coco_results", "path": str(tmp_path / "res.json")}
    args = ("--instances", str(coll["instances"]))
    (tmp_path / "res.json").write_text(json.dumps([
        {"image_id": 77, "category_id": 2, "score": 0.9, "bbox": [0, 0, 1, 1]},
        {"file_name": "nope.jpg", "category_id": 2, "score": 0.9}]))
    with pytest.raises(SystemExit, match=r"2 images the collection does not have: \[77, "
                                         r"'nope.jpg'\].*file_name"):
        _detect(tmp_path, split, cfg, *args)
    (tmp_path / "res.json").write_text(json.dumps([
        {"image_id": 1, "category_id": 3, "score": 0.9, "bbox": [0, 0, 1, 1]},
        {"image_id": 2, "category_id": 2, "score": 0.9, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(SystemExit, match=r"category ids not among the detector's categories: "
                                         r"\[3\]; set detector.categories"):
        _detect(tmp_path, split, cfg, *args)
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": 1, "score": 0.9}]))
    with pytest.raises(SystemExit, match="entry 0 .* lacks"):
        _detect(tmp_path, split, cfg, *args)
    assert not (tmp_path / "detections.h5").exists()


def test_coco_results_categories_from_instances_coco2017_or_a_file(coco_collection, tmp_path):
    cats, where = coco_results.load_categories(None, coco_collection["instances"])
    assert [c["name"] for c in cats] == ["cat", "dog", "kite"]
    cats, where = coco_results.load_categories("coco2017")
    assert len(cats) == 80 and cats[11] == {"id": 13, "name": "stop sign"}
    (tmp_path / "c.json").write_text(json.dumps([{"id": 1, "name": "hat"}]))
    assert coco_results.load_categories(str(tmp_path / "c.json"))[0] == [{"id": 1, "name": "hat"}]
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="detector.categories: .*bad.json has no list"):
        coco_results.load_categories(str(tmp_path / "bad.json"))


def test_startup_check_names_the_key(tmp_path):
    ds = {"source": {"kind": "coco_format", "instances": "i.json"},
          "detector": {"kind": "coco_results", "path": str(tmp_path / "missing.json")}}
    with pytest.raises(ValueError, match=r"mine.detector.path: .*missing.json is not a file"):
        coco_results.check_detector("mine", ds)
    (tmp_path / "r.json").write_text("[]")
    ds["detector"]["path"] = str(tmp_path / "r.json")
    coco_results.check_detector("mine", ds)
    assert coco_results.results_inputs(ds) == {"results": str(tmp_path / "r.json"),
                                               "instances": "i.json"}
    with pytest.raises(ValueError, match="mine.detector.categories: .*no instances file"):
        coco_results.check_detector("mine", {"source": {"kind": "coco2017"},
                                             "detector": ds["detector"]})
    with pytest.raises(ValueError, match="mine.detector.path is read only by kind coco_results"):
        coco_results.check_detector("mine", {"source": {}, "detector": {
            "kind": "faster_rcnn", "path": "x.json"}})


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 20])
def test_json_list_is_parsed_in_chunks_as_json_load_does(tmp_path, chunk):
    items = [{"image_id": i, "category_id": 1000 + i, "score": 0.123456789 * i,
              "bbox": [1.5, 2e-3, 300, 4], "file_name": "a \"quoted\" ]name[.jpg"}
             for i in range(20)] + [12345678901234, "x", []]
    (tmp_path / "r.json").write_text(" \n[ " + " ,\n".join(json.dumps(x) for x in items) + "]\n")
    assert list(coco_results.iter_json_list(tmp_path / "r.json", chunk=chunk)) == items
    (tmp_path / "o.json").write_text(json.dumps({"annotations": items[:2], "images": []}))
    assert list(coco_results.iter_json_list(tmp_path / "o.json", chunk=chunk)) == items[:2]
    (tmp_path / "bad.json").write_text('[{"image_id": 1} {"image_id": 2}]')
    with pytest.raises(ValueError, match=r"expected ',' or '\]'.* at character 17"):
        list(coco_results.iter_json_list(tmp_path / "bad.json", chunk=chunk))


# --- resuming -----------------------------------------------------------------------------


def _cell_setup(tmp_path: Path, seed: int = 0) -> tuple[Path, dict]:
    """split.h5 of 10 random 32-px mosaics and a broken file, and a random-weight cell
    classifier (its outputs are as good as any for checking the file)."""
    from pipeline.data.split_table import SplitTable, write_split

    rng = np.random.default_rng(0)
    (tmp_path / "im").mkdir(exist_ok=True)
    names = []
    for i in range(10):
        names.append(f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(
            tmp_path / "im" / names[-1])
    names.insert(5, "broken.png")
    (tmp_path / "im" / "broken.png").write_bytes(b"not an image")
    n = len(names)
    table = SplitTable(np.arange(101, 101 + n), np.array(names, dtype=object),
                       np.zeros((n, 10), np.uint8), np.zeros(n, np.uint8),
                       [f"c{i}" for i in range(10)], str(tmp_path / "im"), "random", {})
    write_split(table, tmp_path / "split.h5", "cells", 0)
    torch.manual_seed(seed)
    torch.save({"state_dict": cell_mlp.make_mlp((16,)).state_dict(), "hidden": [16],
                "cell": 16, "grid": 2}, tmp_path / f"cc{seed}.pt")
    return tmp_path / "split.h5", {"kind": "cell_classifier", "checkpoint":
                                   str(tmp_path / f"cc{seed}.pt"), "batch_size": 2,
                                   "score_floor": 0.05}


def _same_files(a: Path, b: Path) -> None:
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert sorted(fa) == sorted(fb)
        for name in fa:
            np.testing.assert_array_equal(fa[name][...], fb[name][...], err_msg=name)
        skip = {"created"}
        assert {k: v for k, v in fa.attrs.items() if k not in skip}.keys() == \
            {k: v for k, v in fb.attrs.items() if k not in skip}.keys()
        for k in fa.attrs:
            if k not in skip:
                assert str(fa.attrs[k]) == str(fb.attrs[k]), k


def _fail_after(k_fail: int, starts: list[int] | None = None):
    """``cell_mlp.iter_detect`` that raises after ``k_fail`` images (recording each call's
    first id in ``starts``)."""
    real = cell_mlp.iter_detect

    def failing(paths, ids, c, device, **kw):
        if starts is not None:
            starts.append(int(ids[0]))
        for k, item in enumerate(real(paths, ids, c, device, **kw)):
            if k == k_fail:
                raise RuntimeError(f"injected failure after {k_fail} images")
            yield item
    return failing


def test_interrupted_detection_resumes_to_the_same_file(tmp_path, monkeypatch):
    split, cfg = _cell_setup(tmp_path)
    ref = tmp_path / "ref" / "detections.h5"
    ref.parent.mkdir()
    assert detect_main(["--split", str(split), "--detector-json", json.dumps(cfg),
                        "--out", str(ref)]) == 0
    data, attrs = read_h5(ref)
    assert data["valid"].tolist() == [1] * 5 + [0] + [1] * 5
    assert attrs["n_skipped_images"] == 1 and data["n_detections"][5] == 0
    assert attrs["n_detections"] == len(data["det_row"]) > 11

    real = cell_mlp.iter_detect
    starts: list[int] = []
    monkeypatch.setattr(cell_mlp, "iter_detect", _fail_after(7, starts))
    out = tmp_path / "detections.h5"
    argv = ["--split", str(split), "--detector-json", json.dumps(cfg), "--out", str(out),
            "--commit-images", "2"]
    with pytest.raises(RuntimeError, match="injected"):
        detect_main(argv)
    assert not out.exists() and partial_path(out).exists()
    with h5py.File(partial_path(out)) as f:
        assert f.attrs["rows-complete"] == 6  # batches of 2, committed every 2 images

    def recording(paths, ids, c, device, **kw):
        starts.append(int(ids[0]))
        yield from real(paths, ids, c, device, **kw)

    monkeypatch.setattr(cell_mlp, "iter_detect", recording)
    assert detect_main(argv) == 0
    assert starts == [101, 107]  # the rerun began at the 7th image, not the first
    assert not partial_path(out).exists()
    _same_files(ref, out)


def test_partial_file_of_another_checkpoint_is_discarded(tmp_path, monkeypatch, caplog):
    split, cfg = _cell_setup(tmp_path)
    real = cell_mlp.iter_detect
    monkeypatch.setattr(cell_mlp, "iter_detect", _fail_after(4))
    out = tmp_path / "detections.h5"
    with pytest.raises(RuntimeError):
        detect_main(["--split", str(split), "--detector-json", json.dumps(cfg), "--out",
                     str(out), "--commit-images", "2"])
    monkeypatch.setattr(cell_mlp, "iter_detect", real)
    # the checkpoint file is retrained (same path, other weights)
    _cell_setup(tmp_path, seed=1)
    os.replace(tmp_path / "cc1.pt", tmp_path / "cc0.pt")
    with caplog.at_level("WARNING"):
        detect_main(["--split", str(split), "--detector-json", json.dumps(cfg), "--out",
                     str(out)])
    assert "discarded partial file" in caplog.text
    fresh = tmp_path / "fresh" / "detections.h5"
    fresh.parent.mkdir()
    detect_main(["--split", str(split), "--detector-json", json.dumps(cfg), "--out",
                 str(fresh)])
    _same_files(fresh, out)


def test_sigterm_leaves_a_partial_file_that_a_rerun_completes(tmp_path):
    """A real kill: the detect stage in a subprocess gets SIGTERM once it has committed some
    images (the detector is slowed to one image per 0.3 s); the rerun writes the file an
    uninterrupted run writes."""
    split, cfg = _cell_setup(tmp_path)
    out = tmp_path / "detections.h5"
    slow = ("import time, sys\nfrom pipeline.detectors import cell_mlp\n"
            "real = cell_mlp.iter_detect\n"
            "def slow(*a, **k):\n    for x in real(*a, **k):\n        time.sleep(0.3)\n"
            "        yield x\n"
            "cell_mlp.iter_detect = slow\n"
            "from pipeline.stages.detect import main\nsys.exit(main(sys.argv[1:]))\n")
    argv = ["--split", str(split), "--detector-json", json.dumps(cfg), "--out", str(out),
            "--commit-images", "2"]
    proc = subprocess.Popen([sys.executable, "-c", slow, *argv], cwd=ROOT, env=venv_env(),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 2:
        time.sleep(0.2)
        try:
            with h5py.File(partial_path(out), "r", locking=False) as f:
                done = int(f.attrs.get("rows-complete", 0))
        except (OSError, KeyError):
            pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert not out.exists() and partial_path(out).exists()
    with h5py.File(partial_path(out)) as f:
        killed_at = int(f.attrs["rows-complete"])
    assert 2 <= killed_at < 11
    assert detect_main(argv) == 0
    ref = tmp_path / "ref" / "detections.h5"
    ref.parent.mkdir()
    detect_main(["--split", str(split), "--detector-json", json.dumps(cfg), "--out", str(ref)])
    _same_files(ref, out)


# --- reading in blocks --------------------------------------------------------------------


def _synthetic(path: Path, n_images: int, per_image: int, seed: int = 0) -> dict:
    """A detections.h5 of ``n_images`` × ``per_image`` detections over categories 3, 7, 11
    (names a, b, c), written through the DetectionWriter 1,000 images at a time."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n_images, dtype=np.int64) * 2 + 1
    with DetectionWriter(path, ids=ids, resume_key={"synthetic": seed},
                         attrs={"detector": {"kind": "synthetic"}, "categories": [
                             {"id": 3, "name": "a"}, {"id": 7, "name": "b"},
                             {"id": 11, "name": "c"}]}) as w:
        for s in range(0, n_images, 1000):
            k = min(1000, n_images - s)
            m = k * per_image
            w.add({"n_detections": np.full(k, per_image, np.int32),
                   "det_category_id": rng.choice([3, 7, 11], m).astype(np.int32),
                   "det_score": np.round(rng.random(m), 5).astype(np.float32),
                   "det_bbox": np.zeros((m, 4), np.float32)})
            w.commit()
    return {"ids": ids}


def test_blocks_are_a_bounded_generator(tmp_path):
    path = tmp_path / "d.h5"
    _synthetic(path, 30, 7)
    gen = iter_blocks(path, block=50)
    assert inspect.isgenerator(gen)
    sizes = [len(b["det_row"]) for b in gen]
    assert sizes == [50, 50, 50, 50, 10]
    rows = np.concatenate([b["det_row"] for b in iter_blocks(path, block=64)])
    assert rows.tolist() == np.repeat(np.arange(30), 7).tolist()


def test_aux_from_a_large_file_reads_in_blocks_within_a_memory_bound(tmp_path):
    path = tmp_path / "d.h5"
    ids = _synthetic(path, 4000, 100)["ids"]  # 400,000 detections: 4.8 MB of row/id/score
    tracemalloc.start()
    aux, scores, cmap, _ = detections_file_to_aux(str(path), ids, ["a", "b", "c"], {}, 0.9,
                                                  block=4096)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, peak  # the columns alone are 4.8 MB
    # the same labels as the in-memory equation on the same detections
    data, _ = read_h5(path)
    dets = [{"image_id": int(ids[r]), "category_id": int(c), "score": float(s)}
            for r, c, s in zip(data["det_row"], data["det_category_id"], data["det_score"],
                               strict=True)]
    labels, ref_scores = scores_to_multihot(dets, ids, [3, 7, 11], 0.9)
    np.testing.assert_array_equal(aux, labels)
    np.testing.assert_array_equal(scores, ref_scores)
    assert cmap == {"a": "a", "b": "b", "c": "c"}


def test_a_score_equal_to_the_threshold_counts_in_the_file_path(tmp_path):
    path = tmp_path / "d.h5"
    with DetectionWriter(path, ids=np.array([1, 2]), resume_key={}, attrs={
            "detector": {}, "categories": [{"id": 1, "name": "a"}]}) as w:
        w.add(dets_to_arrays([[{"category_id": 1, "score": 0.7}],
                              [{"category_id": 1, "score": 0.69999}]]))
        w.commit()
    aux, _, _, _ = detections_file_to_aux(str(path), np.array([1, 2]), ["a"], {}, 0.7)
    assert aux[:, 0].tolist() == [1, 0]


def test_rewind_forgets_the_images_after_it(tmp_path):
    """Rewinding to a batch boundary and adding other images gives the file written directly."""
    cats = {"detector": {}, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}

    def image(cid: int, n: int) -> list[dict]:
        return [{"category_id": cid, "score": 0.1 * (k + 1), "bbox": [k, 0, 1, 1]}
                for k in range(n)]

    with DetectionWriter(tmp_path / "a.h5", ids=np.arange(3), resume_key={}, attrs=cats) as w:
        w.add(dets_to_arrays([image(1, 2), image(2, 1), image(1, 3)]))
        w.rewind(1)
        w.add(dets_to_arrays([image(2, 4), image(2, 0)]))
        w.commit()
    with DetectionWriter(tmp_path / "b.h5", ids=np.arange(3), resume_key={}, attrs=cats) as w:
        w.add(dets_to_arrays([image(1, 2), image(2, 4), image(2, 0)]))
        w.commit()
    _same_files(tmp_path / "a.h5", tmp_path / "b.h5")
    assert read_h5(tmp_path / "a.h5")[0]["det_row"].tolist() == [0, 0, 1, 1, 1, 1]


def test_a_slow_detector_commits_by_time_too(tmp_path, monkeypatch):
    """With many images per commit, a commit still comes at the first batch boundary after
    COMMIT_SECONDS (here 0): a failure after 7 images keeps 6."""
    import pipeline.stages.detect as detect_stage

    split, cfg = _cell_setup(tmp_path)
    monkeypatch.setattr(cell_mlp, "iter_detect", _fail_after(7))
    monkeypatch.setattr(detect_stage, "COMMIT_SECONDS", 0.0)
    out = tmp_path / "detections.h5"
    with pytest.raises(RuntimeError):
        detect_main(["--split", str(split), "--detector-json", json.dumps(cfg), "--out",
                     str(out), "--commit-images", "1000"])
    with h5py.File(partial_path(out)) as f:
        assert f.attrs["rows-complete"] == 6


def test_coco_results_refuses_to_run_on_new_images():
    with pytest.raises(ValueError, match="cannot run on new images: .*--detections"):
        coco_results.detect(["new.jpg"], np.array([1]), {"kind": "coco_results"})
