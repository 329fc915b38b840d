"""Your own data: a table (pandas DataFrame, pyarrow Table, dict of arrays, or a CSV / Parquet file)
with a 0/1 label column, as a :class:`Dataset` the trainer and the engine take.

    ds = from_frame(df, label="click", categorical=["user", "item"], dense=["price"],
                    multi_hot=["tags"], split=(0.8, 0.1, 0.1), seed=2022)

Columns are indexed by an :class:`Indexer` fitted on the train rows only (``min_count``,
``hash_buckets``, ``max_len``, ``sep``: see :mod:`dpn_infer.datasets.indexer`); it is
``ds.indexer``, and training saves it as OUT/indexer.json. Without ``categorical``, ``dense`` and
``multi_hot`` every other column is used: float columns as dense, columns of lists as multi-hot,
the rest as categorical. ``split``: train/valid/test fractions (a seeded random split), or the name
of a column whose values are "train", "valid" and "test".
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._common import Dataset, Split, split_indices
from .indexer import Indexer, columns_of

SPLITS = ("train", "valid", "test")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_table(path) -> dict:
    """A CSV file, a Parquet file or a folder of Parquet files -> column name -> numpy array.
    Needs pyarrow (pandas for CSV when pyarrow is missing)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder (expected a .csv or .parquet table)")
    csv = p.suffix.lower() == ".csv"
    try:
        if csv:
            from pyarrow import csv as pacsv

            return columns_of(pacsv.read_csv(p))
        import pyarrow.parquet as pq

        return columns_of(pq.read_table(p))
    except ImportError:
        if not csv:
            raise ImportError("reading Parquet needs pyarrow: pip install pyarrow") from None
        import pandas as pd

        return columns_of(pd.read_csv(p))


def _infer_columns(cols: dict, label: str, split) -> tuple:
    categorical, multi_hot, dense = [], [], []
    for name, a in cols.items():
        if name == label or (isinstance(split, str) and name == split):
            continue
        if a.dtype.kind == "f":
            dense.append(name)
        elif a.dtype.kind == "O" and any(isinstance(c, (list, tuple, np.ndarray)) for c in a[:100]):
            multi_hot.append(name)
        else:
            categorical.append(name)
    return categorical, multi_hot, dense


def _labels(cols: dict, label: str) -> np.ndarray:
    if label not in cols:
        raise ValueError(f"label column {label!r} is not in the data (it has {sorted(cols)[:20]})")
    y = np.asarray(cols[label], dtype=np.float64)
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"label column {label!r}: row {i} is {cols[label][i]!r}; labels must be 0 or 1")
    return y.astype(np.float32)


def _split_rows(cols: dict, n: int, split, seed: int):
    if isinstance(split, str):
        if split not in cols:
            raise ValueError(f"split column {split!r} is not in the data")
        v = np.asarray(cols[split]).astype(str)
        unknown = sorted(set(v.tolist()) - set(SPLITS))
        if unknown:
            raise ValueError(f"split column {split!r}: values must be {SPLITS}, found {unknown[:5]}")
        return [np.flatnonzero(v == s) for s in SPLITS]
    fr = tuple(float(f) for f in split)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split must be three fractions (train, valid, test) summing to 1, got {split}")
    return split_indices(n, fr, seed)


def from_frame(data, label: str, categorical=None, dense=None, multi_hot=None, *,
               split=(0.8, 0.1, 0.1), seed: int = 2022, embed_dim: int = 16, min_count=1,
               hash_buckets=None, max_len=None, sep: str = "|", indexer: Indexer | None = None,
               name: str = "table") -> Dataset:
    """A :class:`Dataset` from a DataFrame / Arrow table / dict of arrays (see the module doc).

    ``indexer``: an Indexer already fitted (e.g. ``Indexer.load`` of a training run's
    indexer.json) to index the rows with instead of fitting a new one; its columns are used."""
    cols = columns_of(data)
    y = _labels(cols, label)
    tr, va, te = _split_rows(cols, len(y), split, seed)
    if indexer is None:
        if categorical is None and dense is None and multi_hot is None:
            categorical, multi_hot, dense = _infer_columns(cols, label, split)
        indexer = Indexer(categorical or (), multi_hot or (), dense or (), min_count=min_count,
                          hash_buckets=hash_buckets, max_len=max_len, sep=sep).fit(cols, rows=tr)
    if not indexer.columns:
        raise ValueError("no feature columns: name some with categorical= / dense= / multi_hot=")
    if label in indexer.columns:
        raise ValueError(f"the label column {label!r} is also a feature column")
    all_rows = Split(indexer.transform(cols), y)
    kinds = {k: [c for c, v in indexer.columns.items() if v["kind"] == k] for k in ("sparse", "multi_hot", "dense")}
    info = {"rows": int(len(y)), "positive_rate": float(y.mean()) if len(y) else 0.0, "seed": seed,
            "label": label, "split": split if isinstance(split, str) else [float(f) for f in split],
            "categorical": kinds["sparse"], "multi_hot": kinds["multi_hot"], "dense": kinds["dense"]}
    return Dataset(name, indexer.schema(embed_dim), all_rows.take(tr), all_rows.take(va), all_rows.take(te),
                   info=info, indexer=indexer)


def load_table(path=None, seed: int = 2022, embed_dim: int = 16, label: str | None = None, **options) -> Dataset:
    """:func:`from_frame` of :func:`read_table` ``(path)``; ``options`` are from_frame's."""
    if not path:
        raise FileNotFoundError("a table needs its path: --data FILE.csv|FILE.parquet|FOLDER")
    if not label:
        raise ValueError("a table needs its label column: --label COL")
    ds = from_frame(read_table(path), label, seed=seed, embed_dim=embed_dim, name="table", **options)
    ds.info = {"path": os.path.abspath(path), **ds.info}
    return ds
