"""Real data as Parquet for the Ray and Spark scorer tests: a small model trained-shape (not
trained) on criteo-10k and on MovieLens-100K with its history fields, each split's rows written
with a ``row`` id column over a few files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Small layers: the tests are about moving rows, not about the model.
CRITEO_LAYERS = [{"out": 32, "dynamic": True, "context": "x0", "hidden": 4, "sigma": "relu",
                  "form": "decomp", "rank": 4, "w0": True}, {"out": 16}]


class Case:
    """A model file, its Parquet folder (``files`` files) and the same rows as one Arrow table."""

    def __init__(self, model_path: Path, parquet: Path, table: pa.Table):
        self.model_path = str(model_path)
        self.parquet = str(parquet)
        self.table = table


def id_lists(padded: np.ndarray) -> pa.ListArray:
    """A -1-padded int64 [N, T] id array as an Arrow list<int64> column (padding dropped)."""
    keep = padded >= 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(padded[keep], pa.int64()))


def split_table(features: dict) -> pa.Table:
    n = len(next(iter(features.values())))
    cols = {"row": pa.array(np.arange(n, dtype=np.int64))}
    for name, v in features.items():
        cols[name] = id_lists(v) if v.ndim == 2 else pa.array(v)
    return pa.table(cols)


def write_parquet(table: pa.Table, folder: Path, files: int = 4) -> Path:
    folder.mkdir(parents=True)
    step = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return folder


def _need(name: str):
    from dpn_infer.datasets import find_shared_data

    if find_shared_data(name) is None:
        pytest.skip(f"../shared/data/{name} not present (set DPN_DATA to its parent)")


def criteo_case(folder: Path) -> Case:
    """criteo-10k's train split (7000 rows, 39 sparse fields) and a small feature-dpn."""
    _need("criteo-10k")
    import dpn_infer
    from dpn_infer import train as T
    from dpn_infer.datasets import load_dataset

    ds = load_dataset("criteo", min_count=10)
    cfg = T.load_config("criteo")
    cfg["embed_dim"] = 8
    cfg["models"]["feature-dpn"]["layers"] = CRITEO_LAYERS
    module = T.build_model("feature-dpn", ds.schema, cfg, seed=0).eval()
    dpn_infer.save(module, folder / "criteo.bin")
    table = split_table(ds.train.features)
    return Case(folder / "criteo.bin", write_parquet(table, folder / "criteo"), table)


def movielens_case(folder: Path) -> Case:
    """MovieLens-100K's test split with hist_movie / hist_genre (sequence fields) and genres
    (multi-hot) as Arrow list columns, and the movielens config's seq-dpn."""
    _need("movielens-100k")
    import dpn_infer
    from dpn_infer import train as T
    from dpn_infer.datasets import load_dataset

    ds = load_dataset("movielens-100k", sequences=True, max_seq_len=8)
    module = T.build_model("seq-dpn", ds.schema, T.load_config("movielens"), seed=0).eval()
    dpn_infer.save(module, folder / "movielens.bin")
    table = split_table(ds.test.features)
    return Case(folder / "movielens.bin", write_parquet(table, folder / "movielens"), table)


def by_row(table: pa.Table) -> pa.Table:
    return table.sort_by("row")


def assert_scored(out: pa.Table, case: Case, reference: np.ndarray, keep=("row",), output="score"):
    """``out`` has every row of the case exactly once, the kept columns as they were, and
    exactly the in-process scores (same engine, same rows: batch boundaries change nothing)."""
    assert out.column_names == [*keep, output]
    out = by_row(out)
    rows = out["row"].to_numpy()
    assert len(rows) == case.table.num_rows and np.array_equal(rows, np.arange(case.table.num_rows)), \
        "rows lost or duplicated"
    assert out[output].type == pa.float32()
    np.testing.assert_array_equal(out[output].to_numpy(), reference)
    for name in keep:
        assert out[name].to_pylist() == case.table[name].to_pylist(), name  # list field names may differ
