"""Training on your own data: the Indexer against hand-computed mappings, from_frame on a pandas
DataFrame, an Arrow table and a dict, `dpn-infer train` -> `dpn-infer eval` on a user's CSV /
Parquet file, serving raw rows through the saved indexer, and the docs example."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dpn_infer.datasets import Indexer, from_frame, load_dataset, make_click_log


# -- Indexer ------------------------------------------------------------------------------------

def test_vocabulary_min_count_boundary_and_oov():
    col = np.array(["b", "a", "b", "c", "a", "b", None, ""], dtype=object)
    idx = Indexer(["x"], min_count=2).fit({"x": col})
    # counts b 3, a 2 (exactly min_count: kept), c 1 (dropped); sorted tokens a, b -> 1, 2;
    # c (rare), None and "" (missing) -> the OOV id 0
    assert idx.columns["x"]["tokens"] == ["a", "b"] and idx.vocab("x") == 3
    assert idx.transform({"x": col})["x"].tolist() == [2, 1, 2, 0, 1, 2, 0, 0]
    # unseen at transform time -> 0
    assert idx.transform({"x": np.array(["z", "a"], dtype=object)})["x"].tolist() == [0, 1]
    assert Indexer(["x"], min_count=3).fit({"x": col}).transform({"x": col})["x"].tolist() == \
        [1, 0, 1, 0, 0, 1, 0, 0]
    # fit counts only the rows it is given (the train split): rows 0-2 have b twice, a once
    only = Indexer(["x"], min_count=2).fit({"x": col}, rows=np.array([0, 1, 2]))
    assert only.columns["x"]["tokens"] == ["b"]
    assert idx.schema(8) == [{"name": "x", "kind": "sparse", "vocab": 3, "dim": 8, "policy": "oov_bucket"}]


def test_tokens_are_the_values_text():
    idx = Indexer(["n"]).fit({"n": np.array([7, 7, 8, 10])})
    # sorted as text: "10" < "7" < "8"; 7.0, "7" and np.int64(7) are the token "7"; NaN is missing
    assert idx.columns["n"]["tokens"] == ["10", "7", "8"]
    mixed = np.array([7.0, "7", np.int64(8), np.nan, None, 10.0, 7.5], dtype=object)
    assert idx.transform({"n": mixed})["n"].tolist() == [2, 2, 3, 0, 0, 1, 0]
    assert idx.transform({"n": np.array([7.0, np.nan, 10.0])})["n"].tolist() == [2, 0, 1]


def test_multi_hot_lists_and_separated_strings():
    cells = [["x", "y"], ["y"], [], "x|z|y", None]
    idx = Indexer(multi_hot=["t"]).fit({"t": cells})
    assert idx.columns["t"]["tokens"] == ["x", "y", "z"] and idx.columns["t"]["max_len"] == 3
    out = idx.transform({"t": cells + [["y", "q", "x", "x"]]})["t"]
    assert out.dtype == np.int64 and out.tolist() == [
        [1, 2, -1], [2, -1, -1], [-1, -1, -1], [1, 3, 2], [-1, -1, -1],
        [2, 0, 1]]                     # unseen q -> 0; the row is cut to max_len 3
    f = idx.schema(4)[0]
    assert f == {"name": "t", "kind": "multi_hot", "vocab": 4, "dim": 4, "policy": "oov_bucket",
                 "pooling": "mean", "max_len": 3}
    assert Indexer(multi_hot=["t"], max_len=1).fit({"t": cells}).transform({"t": cells})["t"].shape == (5, 1)


def test_hashing_is_crc32_and_stable_across_processes(tmp_path):
    data = {"user": np.array(["alice", "bob", "", "alice"], dtype=object)}
    idx = Indexer(["user"], hash_buckets=1000).fit(data)
    ids = idx.transform(data)["user"].tolist()
    # crc32(b"user:alice") % 1000 = 422 and crc32(b"user:bob") % 1000 = 10, computed by hand with
    # zlib; a missing value -> 0
    assert ids == [422, 10, 0, 422]
    assert ids[:2] == [zlib.crc32(b"user:alice") % 1000, zlib.crc32(b"user:bob") % 1000]
    assert idx.schema()[0]["policy"] == "hash" and idx.vocab("user") == 1000
    # another interpreter, another str-hash seed (Python's hash() of a str would differ)
    code = ("import numpy as np; from dpn_infer.datasets import Indexer; "
            "d = {'user': np.array(['alice', 'bob', '', 'alice'], dtype=object)}; "
            "print(Indexer(['user'], hash_buckets=1000).fit(d).transform(d)['user'].tolist())")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=tmp_path)
        assert json.loads(out.stdout) == ids


def test_save_load_dense_and_errors(tmp_path):
    data = {"c": np.array(["p", "q", "p"], dtype=object), "d": np.array([1.5, np.nan, -2.0]),
            "m": [["a"], ["a", "b"], []]}
    idx = Indexer(["c"], ["m"], ["d"], min_count={"c": 2}).fit(data)
    batch = idx.transform(data)
    assert batch["d"].dtype == np.float32 and batch["d"].tolist() == [1.5, 0.0, -2.0]   # NaN -> 0
    assert batch["c"].tolist() == [1, 0, 1]
    again = Indexer.load(idx.save(tmp_path / "indexer.json"))
    for k, v in again.transform(data).items():
        np.testing.assert_array_equal(v, batch[k])
    assert again.schema() == idx.schema()
    with pytest.raises(RuntimeError, match="before fit"):
        Indexer(["c"]).transform(data)
    with pytest.raises(ValueError, match="not in the data"):
        idx.transform({"c": data["c"]})
    with pytest.raises(ValueError, match="min_count"):
        Indexer(["c"], min_count=0)
    with pytest.raises(ValueError, match="not a dpn_infer.indexer"):
        Indexer.from_json({"format": "other"})


# -- from_frame ---------------------------------------------------------------------------------

def _raw_table(rows=600, seed=0) -> pd.DataFrame:
    """A user's table: string and integer ids, a list column, a float column, a 0/1 label."""
    ds = make_click_log(rows=rows, seed=seed)
    parts = (ds.train, ds.valid, ds.test)
    col = {k: np.concatenate([s.features[k] for s in parts]) for k in ds.train.features}
    return pd.DataFrame({
        "user": [f"u{u}" for u in col["user"]], "item": col["item"], "hour": col["hour"],
        "tags": ["|".join(str(t) for t in r if t >= 0) for r in col["tags"]],
        "price": col["price"].astype(np.float64),
        "click": np.concatenate([s.labels for s in parts]).astype(np.int64)})


COLUMNS = dict(categorical=["user", "item", "hour"], multi_hot=["tags"], dense=["price"])


def test_from_frame_dataframe_dict_and_arrow_agree():
    df = _raw_table()
    a = from_frame(df, label="click", seed=3, **COLUMNS)
    b = from_frame({c: df[c].to_numpy() for c in df.columns}, label="click", seed=3, **COLUMNS)
    c = from_frame(pa.Table.from_pandas(df), label="click", seed=3, **COLUMNS)
    assert a.schema == b.schema == c.schema
    assert [f["name"] for f in a.schema] == ["user", "item", "hour", "tags", "price"]
    for other in (b, c):
        for s in ("train", "valid", "test"):
            x, y = getattr(a, s), getattr(other, s)
            np.testing.assert_array_equal(x.labels, y.labels)
            for k in x.features:
                np.testing.assert_array_equal(x.features[k], y.features[k])
    assert (len(a.train), len(a.valid), len(a.test)) == (480, 60, 60)
    assert a.train.features["tags"].shape[1] == a.indexer.columns["tags"]["max_len"] <= 4
    # the vocabulary is the train split's: a user seen only outside it is OOV
    train_rows = _split(len(df), 3)[0]
    assert a.indexer.columns["user"]["tokens"] == sorted(set(df["user"].to_numpy()[train_rows]))


def _split(n, seed):
    """from_frame's default split: train, valid, test row indices."""
    from dpn_infer.datasets._common import split_indices

    return split_indices(n, (0.8, 0.1, 0.1), seed)


def test_from_frame_infers_columns_split_column_and_checks_labels():
    d = {"u": np.array([1, 2, 1, 3]), "f": np.array([0.5, 1.0, 2.0, 0.0]),
         "l": [[1], [1, 2], [], [3]], "fold": np.array(["train", "train", "valid", "test"]),
         "y": np.array([1, 0, 1, 0])}
    ds = from_frame(d, label="y", split="fold")
    assert ds.info["categorical"] == ["u"] and ds.info["dense"] == ["f"] and ds.info["multi_hot"] == ["l"]
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (2, 1, 1)
    assert ds.train.features["u"].tolist() == [1, 2] and ds.test.features["u"].tolist() == [0]  # 3: unseen
    # an indexer from training indexes new rows the same way (no refit)
    again = from_frame({**d, "u": np.array([3, 3, 2, 1])}, label="y", split="fold", indexer=ds.indexer)
    assert again.train.features["u"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        from_frame({**d, "y": np.array([1, 2, 0, 0])}, label="y")
    with pytest.raises(ValueError, match="label column"):
        from_frame(d, label="nope")
    with pytest.raises(ValueError, match="three fractions"):
        from_frame(d, label="y", split=(0.5, 0.5))


# -- CLI: train -> eval on a user's file --------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_train_eval_on_a_user_table(tmp_path, monkeypatch, capsys, fmt):
    torch = pytest.importorskip("torch")
    import dpn_infer
    from dpn_infer import cli
    from dpn_infer import train as T
    from dpn_infer.metrics import auc
    from dpn_infer.nn import load_checkpoint

    df = _raw_table(rows=3000, seed=1)
    path = tmp_path / f"log.{fmt}"
    df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
    out = tmp_path / "run"
    # lr 1e-2: one epoch spreads the scores, so no two test rows are within float32 rounding
    # of each other (near-ties could swap order between PyTorch and the engine)
    rc = cli.main(["train", "--data", str(path), "--label", "click", "--categorical", "user", "item",
                   "hour", "--multi-hot", "tags", "--dense", "price", "--model", "feature-dpn",
                   "--epochs", "1", "--batch-size", "256", "--lr", "1e-2", "--seed", "4", "--threads", "1",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    info = json.loads((out / "train_info.json").read_text())
    assert info["dataset"] == "table" and info["data"] == str(path)
    assert info["loader_options"]["label"] == "click" and info["loader_options"]["multi_hot"] == ["tags"]
    assert (out / "indexer.json").is_file() and info["indexer"] == str(out / "indexer.json")
    # eval from elsewhere, with nothing but model.bin's folder: path, columns, split, indexer recorded
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["eval", str(out / "model.bin"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rows"] == 300 and res["seed"] == 4
    assert res["auc"] == info["engine_test"]["auc"]
    # the engine's AUC equals PyTorch's on that model (stated tolerance 1e-6)
    assert abs(res["auc"] - info["test"]["auc"]) < 1e-6
    idx = Indexer.load(out / "indexer.json")
    ds = from_frame(df, label="click", seed=4, indexer=idx)
    model = load_checkpoint(out / "checkpoint.pt")
    with torch.no_grad():
        a_torch = auc(ds.test.labels, T.predict(model, ds.test, logits=True))
    assert abs(a_torch - res["auc"]) < 1e-6
    # serving: raw rows -> indexer.transform -> the engine, equal to the scored test split
    eng = dpn_infer.load(out / "model.bin")
    raw = df.iloc[_split(len(df), 4)[2]]
    np.testing.assert_array_equal(eng.predict(idx.transform(raw)), eng.predict(ds.test.features))


def test_cli_table_errors(tmp_path, capsys):
    pytest.importorskip("torch")
    from dpn_infer import cli

    p = tmp_path / "t.csv"
    pd.DataFrame({"a": [1, 2, 3, 4], "y": [0, 1, 0, 1]}).to_csv(p, index=False)
    assert cli.main(["train", "--data", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "--label" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(p), "--label", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "label column 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "o")]) == 2
    assert "--dataset" in capsys.readouterr().err
    with pytest.raises(TypeError, match="does not take"):
        load_dataset("criteo", label="y")


def test_docs_training_on_your_own_data(tmp_path, monkeypatch):
    """docs/training.md "Training on your own data": its example blocks run as written."""
    torch = pytest.importorskip("torch")
    from helpers import docs

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # the example's two epochs stall on shared, busy cores otherwise
    try:
        assert docs.run("training.md", tags=("custom",)) >= 2
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "runs" / "mine" / "indexer.json").is_file()
