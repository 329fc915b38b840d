"""The README's demo end to end, and the dataset loaders on the real files in ../shared/data."""
import numpy as np
import pytest

from dpn_infer.datasets import find_shared_data, load_movielens_100k, make_click_log
from dpn_infer.metrics import auc, logloss


def test_auc_matches_hand_counts():
    # 3 positive x 2 negative pairs; pairs ordered right: (0.9>0.1),(0.9>0.5),(0.5=0.5 -> 1/2),
    # (0.5>0.1),(0.2>0.1),(0.2<0.5) -> 4.5 / 6
    y = [1, 1, 1, 0, 0]
    s = [0.9, 0.5, 0.2, 0.5, 0.1]
    assert auc(y, s) == pytest.approx(4.5 / 6)
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))


def test_synthetic_log_shapes_and_schema():
    ds = make_click_log(rows=1000, seed=3)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 1000
    names = [f["name"] for f in ds.schema]
    assert set(ds.train.features) == set(names)
    assert ds.train.features["tags"].dtype == np.int64 and ds.train.features["price"].dtype == np.float32
    assert 0.1 < ds.info["positive_rate"] < 0.9


@pytest.mark.skipif(find_shared_data("movielens-100k") is None, reason="../shared/data not present")
def test_movielens_100k_autoint_setting():
    ds = load_movielens_100k()
    # u.data has 100,000 ratings; 27,145 of them are 3 and are dropped in the AutoInt setting.
    assert ds.info["rows"] == 100000 - 27145
    n = ds.info["rows"]
    assert len(ds.train) == round(0.8 * n) and len(ds.valid) == round(0.1 * n)
    assert 0.7 < ds.info["positive_rate"] < 0.8
    g = ds.train.features["genres"]
    assert g.shape[1] == 6 and (g >= -1).all() and (g < 19).all()
    assert ((g >= 0).sum(1) >= 1).all()             # every movie has at least one genre
    for f in ds.schema:
        if f["kind"] == "sparse":
            v = ds.train.features[f["name"]]
            assert v.min() >= 0 and v.max() < f["vocab"]


def test_demo_runs_and_engine_agrees(tmp_path, capsys):
    pytest.importorskip("torch")
    from dpn_infer.demo import main

    res = main(["--synthetic", "4000", "--epochs", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "model.bin").exists()
    assert "generated click log" in out and "agreement" in out
    assert res["max_abs_diff"] < 1e-5
    assert abs(res["auc_torch"] - res["auc_engine"]) < 1e-4


def test_cli_demo_forwards_its_options(tmp_path, capsys):
    """`dpn-infer demo --synthetic N ...` (the README's main command) reaches the demo's own parser."""
    pytest.importorskip("torch")
    from dpn_infer.cli import main

    assert main(["demo", "--synthetic", "2000", "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "model.bin").exists()
    assert "agreement" in capsys.readouterr().out
