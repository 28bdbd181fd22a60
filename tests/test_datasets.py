"""Split builders on tiny hand-written datasets: coco2017, nuswide, lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import coco2017, lists, nuswide
from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN, build_split

# ---------------------------------------------------------------- MS COCO 2017 (paper protocol)

CATS = [(90, "toothbrush"), (3, "car"), (11, "fire hydrant"), (1, "person"), (7, "train")]
#: image id → category ids of its annotations (ids 28, 29, 30 have none)
TRAIN_ANN = {i: [[1], [3, 90], [7], [11, 1], [90, 90, 3]][i % 5] for i in range(1, 28)}
VAL_ANN = {101: [1, 7], 102: [90], 103: [3], 104: [11], 105: [1, 3, 7, 11, 90], 106: []}


def write_instances(path: Path, ann: dict[int, list[int]], ids: list[int]) -> None:
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in ids]
    anns = []
    for i, cats in ann.items():
        for c in cats:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c,
                         "bbox": [1, 2, 10, 10], "area": 100.0, "iscrowd": 0})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": c, "name": n} for c, n in CATS]}))


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    write_instances(root / "annotations" / "instances_train2017.json", TRAIN_ANN,
                    list(range(1, 31)))
    write_instances(root / "annotations" / "instances_val2017.json", VAL_ANN, list(VAL_ANN))
    (root / "train2017").mkdir()
    (root / "val2017").mkdir()
    return root


def coco_source(root: Path) -> dict:
    return {"kind": "coco2017", "root": str(root)}


def counts(table) -> tuple[int, int, int]:
    return tuple(int((table.split == c).sum()) for c in (TRAIN, QUERY, RETRIEVAL))


def test_coco2017_counts_keep_empty_images(coco_root: Path) -> None:
    # keep (config.yaml's coco section): 30 - 10 retrieval, all 6 val
    t = build_split(coco_source(coco_root), {"train": 10, "seed": 0, "empty_images": "keep"})
    assert counts(t) == (10, 6, 20)
    assert t.protocol == "coco2017-paper"
    assert t.attrs["n_empty_images"] == 4 and t.attrs["empty_images"] == "keep"
    assert t.image_root == str(coco_root)
    train_ids = set(t.ids[t.split == TRAIN].tolist())
    ret_ids = set(t.ids[t.split == RETRIEVAL].tolist())
    assert not train_ids & ret_ids
    assert train_ids | ret_ids == set(range(1, 31))
    assert set(t.ids[t.split == QUERY].tolist()) == set(VAL_ANN)
    paths = dict(zip(t.ids.tolist(), t.paths.tolist(), strict=True))
    assert paths[9] == "train2017/000000000009.jpg"
    assert paths[103] == "val2017/000000000103.jpg"


def test_coco2017_drop_empty_images(coco_root: Path) -> None:
    t = build_split(coco_source(coco_root), {"train": 10, "seed": 0, "empty_images": "drop"})
    assert counts(t) == (10, 5, 17)
    # drop is the schema's default, the split stage's default for every protocol
    default = build_split(coco_source(coco_root), {"train": 10, "seed": 0})
    assert counts(default) == (10, 5, 17) and default.attrs["empty_images"] == "drop"
    assert not {28, 29, 30, 106} & set(t.ids.tolist())
    assert (t.labels.sum(1) > 0).all()


def test_coco2017_label_mapping(coco_root: Path) -> None:
    t = build_split(coco_source(coco_root), {"train": 10, "seed": 0, "empty_images": "keep"})
    # columns: ascending sparse category id 1, 3, 7, 11, 90
    assert t.attrs["category_ids"] == [1, 3, 7, 11, 90]
    assert t.class_names == ["person", "car", "train", "fire hydrant", "toothbrush"]
    lab = dict(zip(t.ids.tolist(), t.labels.tolist(), strict=True))
    assert lab[5] == [1, 0, 0, 0, 0]    # person
    assert lab[1] == [0, 1, 0, 0, 1]    # car + toothbrush
    assert lab[2] == [0, 0, 1, 0, 0]    # train
    assert lab[3] == [1, 0, 0, 1, 0]    # fire hydrant + person
    assert lab[4] == [0, 1, 0, 0, 1]    # toothbrush twice + car
    assert lab[29] == [0, 0, 0, 0, 0]   # no annotation
    assert lab[101] == [1, 0, 1, 0, 0]
    assert lab[105] == [1, 1, 1, 1, 1]
    assert t.labels.dtype == np.uint8


def test_coco2017_seeded(coco_root: Path) -> None:
    a = build_split(coco_source(coco_root), {"train": 10, "seed": 1})
    b = build_split(coco_source(coco_root), {"train": 10, "seed": 1})
    c = build_split(coco_source(coco_root), {"train": 10, "seed": 2})
    assert np.array_equal(a.split, b.split)
    assert not np.array_equal(a.split, c.split)


def test_coco2017_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_split({"kind": "coco2017", "root": str(tmp_path)}, {"train": 10, "seed": 0})
    msg = str(err.value)
    assert "instances_train2017.json (source.train_instances)" in msg
    assert "instances_val2017.json (source.val_instances)" in msg


def test_coco2017_train_too_large(coco_root: Path) -> None:
    with pytest.raises(ValueError, match="split.train=30"):
        coco2017.build_split(coco_source(coco_root), {"train": 30, "seed": 0})


# ---------------------------------------------------------------------------------- NUS-WIDE

N_IMG = 300
RARE = ["zebra", "earthquake", "elk", "whales"]             # 4 rare concepts: not selected
COMMON = ["sky", "clouds", "person", "water", "animal", "grass", "buildings", "window",
          "plants", "lake", "ocean", "road", "flowers", "sunset", "reflection", "rocks",
          "vehicle", "snow", "tree", "beach", "birds"]       # the 21 most frequent


def write_nuswide(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    labels = {c: (rng.random(N_IMG) < 0.12 + 0.01 * k).astype(int)
              for k, c in enumerate(COMMON)}
    labels.update({c: (rng.random(N_IMG) < 0.02).astype(int) for c in RARE})
    for c in COMMON:
        labels[c][:20] = 0      # images 0..19 have no common concept → dropped
    (root / "ImageList").mkdir(parents=True)
    folders = ["actor", "beach", "sky"]
    (root / "ImageList" / "Imagelist.txt").write_text("".join(
        f"C:\\ImageData\\Flickr\\{folders[i % 3]}\\{i:04d}_{1000 + i}.jpg\r\n"
        for i in range(N_IMG)))
    ldir = root / "Groundtruth" / "AllLabels"
    ldir.mkdir(parents=True)
    for c, col in labels.items():
        (ldir / f"Labels_{c}.txt").write_text("".join(f"{v}\n" for v in col))
    # user tags: noisy copies of the labels; 'birds' is tagged as 'bird'
    tag_names = [c if c != "birds" else "bird" for c in COMMON + RARE] + ["nikon", "canon"]
    order = rng.permutation(len(tag_names))
    tag_names = [tag_names[i] for i in order]
    base = [labels[c] for c in COMMON + RARE] + [rng.integers(0, 2, N_IMG)] * 2
    tags = np.stack([base[i] for i in order], 1) ^ (rng.random((N_IMG, len(order))) < 0.1)
    (root / "NUS_WID_Tags").mkdir()
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(tag_names) + "\n")
    (root / "NUS_WID_Tags" / "AllTags1k.txt").write_text(
        "".join("\t".join(str(int(v)) for v in row) + "\t\n" for row in tags))
    return {"labels": labels, "tags": tags.astype(np.uint8),
            "tag_names": np.asarray(tag_names)}


@pytest.fixture
def nus(tmp_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    root = tmp_path / "nus"
    data = write_nuswide(root)
    return {"kind": "nuswide", "root": str(root), "tag_map": {"birds": "bird"}}, data


def test_nuswide_split(nus: tuple[dict, dict[str, np.ndarray]]) -> None:
    source, data = nus
    per, n_train = 5, 50
    t = build_split(source, {"per_concept_query": per, "train": n_train, "seed": 3})
    assert t.protocol == "nuswide21-paper"
    assert t.class_names == sorted(COMMON)
    common = np.stack([data["labels"][c] for c in sorted(COMMON)], 1)
    kept = np.flatnonzero(common.any(1))
    assert t.ids.tolist() == kept.tolist()      # ids = image-list line numbers
    assert np.array_equal(t.labels, common[kept])
    q, tr, ret = counts(t)[1], counts(t)[0], counts(t)[2]
    assert tr == n_train
    assert q + tr + ret == len(kept)
    # a union of 21 draws of 5: at most 105, fewer after de-duplication here
    assert per <= q < per * len(COMMON)
    assert (t.labels[t.split == QUERY].sum(0) >= per).all()
    assert t.paths[0] == f"Flickr/{['actor', 'beach', 'sky'][kept[0] % 3]}/" \
                         f"{kept[0]:04d}_{1000 + kept[0]}.jpg"
    again = build_split(source, {"per_concept_query": per, "train": n_train, "seed": 3})
    assert np.array_equal(t.split, again.split)


def test_nuswide_explicit_concepts(nus: tuple[dict, dict[str, np.ndarray]]) -> None:
    source, data = nus
    t = build_split({**source, "concepts": ["zebra", "sky"]},
                    {"per_concept_query": 2, "train": 5, "seed": 0})
    assert t.class_names == ["zebra", "sky"]
    want = np.stack([data["labels"]["zebra"], data["labels"]["sky"]], 1)
    assert np.array_equal(t.labels, want[t.ids])


def test_nuswide_tag_aux_labels(nus: tuple[dict, dict[str, np.ndarray]]) -> None:
    source, data = nus
    t = build_split(source, {"per_concept_query": 5, "train": 50, "seed": 0})
    ids = t.ids[::-1]
    aux = nuswide.tag_aux_labels(source, ids, t.class_names)
    col = {n: i for i, n in enumerate(data["tag_names"])}
    want = np.stack([data["tags"][:, col["bird" if c == "birds" else c]]
                     for c in t.class_names], 1)[ids]
    assert aux.dtype == np.uint8 and aux.shape == (len(ids), 21)
    assert np.array_equal(aux, want)
    # concepts re-selected from the label files when not given
    assert np.array_equal(nuswide.tag_aux_labels(source, ids), aux)
    no_map = {k: v for k, v in source.items() if k != "tag_map"}
    with pytest.raises(ValueError, match=r"\['birds'\].*source.tag_map"):
        nuswide.tag_aux_labels(no_map, ids, t.class_names)


def test_nuswide_missing_files_listed_once(tmp_path: Path) -> None:
    (tmp_path / "ImageList").mkdir()
    (tmp_path / "ImageList" / "Imagelist.txt").write_text("a\\b.jpg\n")
    with pytest.raises(FileNotFoundError) as err:
        build_split({"kind": "nuswide", "root": str(tmp_path)}, {"seed": 0})
    msg = str(err.value)
    assert "3 required file(s) missing" in msg
    for key in ("source.labels_dir", "source.tags_file", "source.tag_list"):
        assert key in msg
    assert "source.image_list" not in msg
    with pytest.raises(FileNotFoundError) as err:
        build_split({"kind": "nuswide", "root": str(tmp_path / "nothing")}, {"seed": 0})
    assert "4 required file(s) missing" in str(err.value)


def test_read_binary_matrix(tmp_path: Path) -> None:
    f = tmp_path / "m.txt"
    f.write_text("0 1 1\n\n1\t0 0 \r\n0 0 1\n")
    assert nuswide.read_binary_matrix(f).tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 1]]
    assert nuswide.read_binary_matrix(f, columns=[2, 0]).tolist() == [[1, 0], [0, 1], [1, 0]]
    f.write_text("0 1 1\n1 0\n0 0 1 1\n")   # counts balance out: still an error
    with pytest.raises(ValueError, match="data line 2"):
        nuswide.read_binary_matrix(f)
    f.write_text("0 1\n1 2\n")
    with pytest.raises(ValueError, match="data line 2"):
        nuswide.read_binary_matrix(f)


# ------------------------------------------------------------------------------------ lists

def test_lists_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sets = {"train": 7, "test": 4, "database": 9}
    rows: list[tuple[str, list[int], int]] = []
    for (name, n), code in zip(sets.items(), (TRAIN, QUERY, RETRIEVAL), strict=True):
        lines = []
        for i in range(n):
            path = f"images/{name}_{i}.jpg" if i != 1 else f"my images/{name} {i}.jpg"
            if name == "database" and i == 0:
                path = "images/train_0.jpg"      # listed in train too
            lab = rng.integers(0, 2, 6).tolist()
            rows.append((path, lab, code))
            lines.append(path + " " + " ".join(map(str, lab)))
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    names = ["a", "b", "c", "d", "e", "f"]
    (tmp_path / "classes.txt").write_text("\n".join(names))
    split = {"protocol": "lists", "train_list": str(tmp_path / "train.txt"),
             "query_list": str(tmp_path / "test.txt"),
             "database_list": str(tmp_path / "database.txt"),
             "class_names": str(tmp_path / "classes.txt")}
    t = build_split({"kind": "coco_format", "root": "resources/mine"}, split)
    assert t.ids.tolist() == list(range(20))
    assert t.paths.tolist() == [r[0] for r in rows]
    assert t.labels.tolist() == [r[1] for r in rows]
    assert t.split.tolist() == [r[2] for r in rows]
    assert t.class_names == names
    assert t.image_root == "resources/mine"
    assert t.protocol == "lists:train.txt,test.txt,database.txt"
    assert t.attrs["n_duplicate_paths"] == 1
    t2 = lists.build_split({"images": "imgs"}, {**split, "class_names": None})
    assert t2.class_names == [f"class_{i}" for i in range(6)] and t2.image_root == "imgs"


def test_lists_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x.jpg 0 1\ny.jpg 0 1 1\n")
    with pytest.raises(ValueError, match=r"a.txt:2"):
        lists.read_list(tmp_path / "a.txt")
    with pytest.raises(FileNotFoundError, match="split.query_list"):
        lists.build_split({}, {"train_list": str(tmp_path / "a.txt"),
                               "query_list": str(tmp_path / "nope.txt"),
                               "database_list": str(tmp_path / "a.txt")})


def write_nuswide_images(root: Path) -> list[str]:
    """A JPEG for every image-list line under root/Flickr; returns their relative paths."""
    from PIL import Image

    folders = ["actor", "beach", "sky"]
    rel = [f"Flickr/{folders[i % 3]}/{i:04d}_{1000 + i}.jpg" for i in range(N_IMG)]
    for r in rel:
        (root / r).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (len(r) % 255, 0, 0)).save(root / r)
    return rel


def test_nuswide_drops_missing_empty_and_unreadable_images(nus) -> None:
    """NUS-WIDE as shipped: files that are missing, empty or not images are dropped at split
    time by default (split.missing_images: drop for this protocol), counted in the attrs;
    split.missing_images: error stops and names the option."""
    source, data = nus
    root = Path(source["root"])
    rel = write_nuswide_images(root)
    common = np.stack([data["labels"][c] for c in sorted(COMMON)], 1)
    kept = np.flatnonzero(common.any(1))
    gone, empty, junk = (int(i) for i in kept[[3, 10, 40]])
    (root / rel[gone]).unlink()
    (root / rel[empty]).write_bytes(b"")
    (root / rel[junk]).write_bytes(b"not a jpeg at all")
    (root / rel[5]).unlink()                    # image 5 has no common concept: not counted
    t = build_split(source, {"protocol": "nuswide", "per_concept_query": 5, "train": 50,
                             "seed": 3})
    assert t.ids.tolist() == [i for i in kept.tolist() if i not in (gone, empty, junk)]
    assert (t.attrs["missing_images"], t.attrs["n_dropped_images"]) == ("drop", 3)
    assert (t.attrs["n_missing_files"], t.attrs["n_empty_files"],
            t.attrs["n_unreadable_files"]) == (1, 1, 1)
    assert t.attrs["missing_images_checked"] is True
    assert counts(t)[0] == 50 and sum(counts(t)) == len(kept) - 3
    with pytest.raises(ValueError, match=r"3 of \d+ image files .*split\.missing_images: drop"):
        build_split(source, {"per_concept_query": 5, "train": 50, "seed": 3,
                             "missing_images": "error"})


def test_missing_images_default_by_protocol() -> None:
    """drop for the nuswide protocol (the schema's protocol-specific default), error
    otherwise."""
    from pipeline import schema

    assert schema.fill("split", {"protocol": "nuswide"})["missing_images"] == "drop"
    for protocol in ("random", "coco2017", "lists"):
        assert schema.fill("split", {"protocol": protocol})["missing_images"] == "error"
    assert schema.fill("split", {"protocol": "nuswide",
                                 "missing_images": "error"})["missing_images"] == "error"


def test_coco_format_missing_image_stops_naming_the_option(coco_collection) -> None:
    src = {"kind": "coco_format", "instances": str(coco_collection["instances"]),
           "images": str(coco_collection["images"])}
    first = sorted(Path(src["images"]).iterdir())[0]
    first.unlink()
    with pytest.raises(ValueError, match=rf"{first.name} \(missing\).*split\.missing_images"):
        build_split(src, {"protocol": "random", "train": 4, "query": 2, "seed": 0})
    t = build_split(src, {"protocol": "random", "train": 4, "query": 2, "seed": 0,
                          "missing_images": "drop"})
    assert first.name not in set(t.paths) and t.attrs["n_missing_files"] == 1


def test_nuswide_labels_and_tags_reading(nus) -> None:
    """split.nuswide_images: labels_and_tags keeps the images whose ground truth and user tags
    both hold one of the concepts (the paper's wording); attrs record the reading and counts."""
    source, data = nus
    split = {"protocol": "nuswide", "per_concept_query": 3, "train": 20, "seed": 0}
    common = np.stack([data["labels"][c] for c in sorted(COMMON)], 1)
    col = {n: i for i, n in enumerate(data["tag_names"])}
    data["tags"][30:40] = 0  # ten labelled images without any tag
    (Path(source["root"]) / "NUS_WID_Tags" / "AllTags1k.txt").write_text(
        "".join("\t".join(str(int(v)) for v in row) + "\t\n" for row in data["tags"]))
    tags = np.stack([data["tags"][:, col["bird" if c == "birds" else c]]
                     for c in sorted(COMMON)], 1)
    both = np.flatnonzero(common.any(1) & tags.any(1))
    t = build_split(source, {**split, "nuswide_images": "labels_and_tags"})
    assert t.ids.tolist() == both.tolist() and len(both) < int(common.any(1).sum())
    assert t.attrs["nuswide_images"] == "labels_and_tags"
    assert t.attrs["n_images_with_concepts"] == int(common.any(1).sum())
    assert t.attrs["paper_counts"]["images"] == 145733
    default = build_split(source, split)
    assert default.attrs["nuswide_images"] == "labels"
    assert default.ids.tolist() == np.flatnonzero(common.any(1)).tolist()


@pytest.mark.parametrize("total", [30, 90])
def test_nuswide_query_count_exact_by_construction(nus, total: int) -> None:
    """split.query trims (30 < the union) or tops up (90 > it) the de-duplicated draws to
    exactly that many queries, seeded."""
    source, _ = nus
    split = {"protocol": "nuswide", "per_concept_query": 3, "train": 20, "seed": 0}
    drawn = build_split(source, split)
    n_union = counts(drawn)[1]
    assert n_union == drawn.attrs["n_queries_drawn"] and 30 < n_union < 90
    t = build_split(source, {**split, "query": total})
    assert counts(t)[1] == total and counts(t)[0] == 20
    again = build_split(source, {**split, "query": total})
    assert np.array_equal(t.split, again.split)
    if total < n_union:  # trimmed: every query comes from the per-concept draws
        assert set(t.ids[t.split == QUERY]) <= set(drawn.ids[drawn.split == QUERY])
