"""``scripts/sweep_method.py``: any method's settings on a validation split of the training
images (tiny synthetic inputs): one CSV row per setting beside ITQ, query and retrieval rows
never read, bad settings refused before any training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_tuning import make_inputs

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sweep_method", ROOT / "scripts/sweep_method.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def run(tmp_path: Path, *args: str, poison: bool = True) -> pd.DataFrame:
    make_inputs(tmp_path / "results/demo", poison=poison, n=(120, 10, 30))
    out = tmp_path / "out.csv"
    assert sweep.main(["--results", str(tmp_path / "results"), "--bits", "8", "--topk", "20",
                       "--jobs", "1", "--out", str(out), *args]) == 0
    return pd.read_csv(out)


def test_one_row_per_setting_beside_itq_never_reading_the_test_rows(tmp_path):
    args = ("--method", "sgh", "--setting", 'few={"anchors": 10}',
            "--setting", 'many={"anchors": 40}')
    df = run(tmp_path, *args)  # query and retrieval rows hold NaN features and all-ones labels
    assert df["setting"].tolist() == ["reference", "few", "many"]
    assert df["method"].tolist() == ["itq", "sgh", "sgh"]
    assert df["params"].tolist() == ["{}", '{"anchors": 10}', '{"anchors": 40}']
    assert (df["bits"] == 8).all() and df["map"].between(0, 1).all()
    # the same scores without the poison: only training rows count
    clean = run(tmp_path / "clean", *args, poison=False)
    np.testing.assert_allclose(clean["map"], df["map"])
    assert df.loc[1, "map"] != df.loc[2, "map"]  # the settings reach fit


@pytest.mark.parametrize("args, match", [
    (("--method", "sgh", "--setting", "x={bad"), r"--setting 'x=\{bad': the part after"),
    (("--method", "sgh", "--setting", "x"), "expected NAME="),
    (("--method", "sgh", "--setting", 'x={"nope": 1}'),
     r"--setting x: unknown parameter\(s\) \['nope'\] for method 'sgh'"),
    (("--method", "lagnh", "--setting", "x={}"), "use scripts/sweep_lagnh.py"),
])
def test_bad_settings_refused_before_any_training(tmp_path, args, match):
    # no input files exist: the refusal comes before they are read
    with pytest.raises(SystemExit, match=match):
        sweep.main(["--results", str(tmp_path), "--out", str(tmp_path / "o.csv"), *args])
