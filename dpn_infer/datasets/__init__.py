"""Datasets as numpy: a schema (list of field dicts, docs/format.md §4.1) and train/valid/test splits.

Each split is a ``Split``: ``features`` (field name -> numpy array, the engine's batch layout) and
``labels`` (float32 [N]). Only numpy is needed; ``dpn_infer.nn.Schema.from_json(ds.schema)`` gives
the PyTorch schema.

``load_dataset(name, path, seed, **options)`` picks a loader by the names the CLI uses
(:data:`DATASETS`). A loader raises FileNotFoundError saying where to put data it cannot find.

Your own data: ``from_frame(df_or_dict, label=..., categorical=[...], dense=[...])`` (or
``load_table(path, label=...)`` for a CSV / Parquet file; dataset name "table") returns a Dataset
whose ``indexer`` (an :class:`Indexer`, fitted on the train rows) turns raw rows into the batch.
"""
from ._common import Dataset, Split, dataset_path, find_shared_data
from .criteo import bucket_int, load_criteo
from .indexer import Indexer
from .libfm import infer_fields, load_frappe, load_libfm, load_ml_tag, read_libfm
from .movielens import download_movielens_100k, load_movielens_100k, load_movielens_1m
from .synthetic import make_click_log
from .table import TABLE_SUFFIXES, from_frame, load_table, read_table

# name -> (loader, options the loader accepts besides path / seed / embed_dim)
DATASETS = {
    "movielens-100k": (load_movielens_100k, ("sequences", "max_seq_len", "download", "timestamps")),
    "movielens-1m": (load_movielens_1m, ("sequences", "max_seq_len", "timestamps")),
    "criteo": (load_criteo, ("min_count", "hash_buckets")),
    "frappe": (load_frappe, ()),
    "ml-tag": (load_ml_tag, ()),
    "synthetic": (None, ("rows",)),
    "table": (load_table, ("label", "categorical", "dense", "multi_hot", "split", "min_count",
                           "hash_buckets", "max_len", "sep", "indexer")),
}


def load_dataset(name: str, path=None, seed: int = 2022, embed_dim: int = 16, **options) -> Dataset:
    """Load dataset ``name`` (a key of :data:`DATASETS`). Options a loader does not take raise
    TypeError; ``None`` options are dropped (loader defaults)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (expected one of {sorted(DATASETS)})")
    fn, allowed = DATASETS[name]
    opts = {k: v for k, v in options.items() if v is not None}
    bad = set(opts) - set(allowed)
    if bad:
        raise TypeError(f"dataset {name!r} does not take options {sorted(bad)} (it takes {list(allowed)})")
    if name == "synthetic":
        return make_click_log(seed=seed, embed_dim=embed_dim, **opts)
    return fn(path, seed=seed, embed_dim=embed_dim, **opts)


__all__ = ["Dataset", "Split", "Indexer", "dataset_path", "find_shared_data", "load_dataset", "DATASETS",
           "load_movielens_100k", "load_movielens_1m", "download_movielens_100k", "load_criteo",
           "bucket_int", "load_libfm", "read_libfm", "infer_fields", "load_frappe", "load_ml_tag",
           "make_click_log", "from_frame", "load_table", "read_table", "TABLE_SUFFIXES"]
