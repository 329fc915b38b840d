"""Datasets as numpy: a schema (list of field dicts, docs/format.md §4.1) and train/valid/test splits.

Each split is a ``Split``: ``features`` (field name -> numpy array, the engine's batch layout) and
``labels`` (float32 [N]). Only numpy is needed; ``dpn_infer.nn.Schema.from_json(ds.schema)`` gives
the PyTorch schema.
"""
from ._common import Dataset, Split, find_shared_data
from .movielens import load_movielens_100k
from .synthetic import make_click_log

__all__ = ["Dataset", "Split", "find_shared_data", "load_movielens_100k", "make_click_log"]
