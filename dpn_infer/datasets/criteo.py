"""Criteo Display Advertising Challenge, raw TSV: label, I1-I13 (integers), C1-C26 (hex hashes),
tab-separated, empty fields for missing values.

- Integer features are bucketed (:func:`bucket_int`): ``floor(log(x)^2)`` for x > 2, else x itself
  (0, 1, 2 and negatives keep their own bucket); a missing value is its own bucket. The buckets are
  then indexed like categories.
- Categorical features: indexed by frequency on the train split with a ``min_count`` threshold —
  tokens seen fewer than ``min_count`` times in train, unseen tokens and missing values share one
  OOV id (0); or, with ``hash_buckets=N``, hashed (``crc32(field:token) % N``, schema policy "hash").
  Both are :class:`dpn_infer.datasets.Indexer` rules (the one a user's table is indexed by).
- Random 7:2:1 train/valid/test split (seeded).

Every field is "sparse": integers become bucket ids, so the schema has no dense fields.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._common import Dataset, Split, dataset_path, split_indices
from .indexer import Indexer

INT_FIELDS = [f"I{i}" for i in range(1, 14)]
CAT_FIELDS = [f"C{i}" for i in range(1, 27)]
WHERE = ("Criteo not found. Pass the raw TSV (Criteo Display Advertising Challenge train.txt, or a "
         "prefix of it: label, I1-I13, C1-C26, tab-separated) as --data / path, or put it at "
         "$DPN_DATA/criteo-10k/train.tsv or ../shared/data/criteo-10k/train.tsv")


def bucket_int(value: str) -> str:
    """The bucket token of one raw integer field: '' (missing) -> 'NA'; x > 2 -> floor(log(x)^2);
    else x."""
    if value == "":
        return "NA"
    x = int(value)
    if x > 2:
        return str(int(math.floor(math.log(x) ** 2)))
    return str(x)


def _read(path: Path):
    labels, ints, cats = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            p = line.split("\t")
            if len(p) != 40:
                raise ValueError(f"{path}:{n}: expected 40 tab-separated columns (label, I1-I13, "
                                 f"C1-C26), got {len(p)}")
            labels.append(float(p[0]))
            ints.append([bucket_int(v) for v in p[1:14]])
            cats.append(p[14:40])
    return np.array(labels, dtype=np.float32), ints, cats


def load_criteo(path=None, seed: int = 2022, embed_dim: int = 16, min_count: int = 10,
                hash_buckets: int | None = None) -> Dataset:
    """Load a Criteo raw TSV file as a CTR task (see the module doc for the preprocessing)."""
    p = dataset_path("criteo-10k", path)         # the TSV, its folder, or the folder's parent
    if p is not None and p.is_dir():
        p = p / "train.tsv" if (p / "train.tsv").exists() else p / "train.txt"
    if p is None or not p.is_file():
        raise FileNotFoundError(WHERE if p is None else f"{p}: not found. {WHERE}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if hash_buckets is not None and hash_buckets < 1:
        raise ValueError(f"hash_buckets must be >= 1, got {hash_buckets}")
    labels, ints, cats = _read(p)
    n = len(labels)
    tr, va, te = split_indices(n, (0.7, 0.2, 0.1), seed)
    columns = {name: np.array([r[j] for r in ints], dtype=object) for j, name in enumerate(INT_FIELDS)}
    columns.update({name: np.array([r[j] for r in cats], dtype=object) for j, name in enumerate(CAT_FIELDS)})
    # Integer buckets: always indexed (few distinct values), min_count 1 on train; unseen -> OOV 0.
    indexer = Indexer(INT_FIELDS + CAT_FIELDS,
                      min_count={**{k: 1 for k in INT_FIELDS}, **{k: min_count for k in CAT_FIELDS}},
                      hash_buckets={k: hash_buckets for k in CAT_FIELDS})
    features = indexer.fit_transform(columns, rows=tr)
    schema = indexer.schema(embed_dim)
    all_rows = Split(features, labels)
    return Dataset("criteo", schema, all_rows.take(tr), all_rows.take(va), all_rows.take(te),
                   info={"path": str(p), "rows": n, "positive_rate": float(labels.mean()),
                         "seed": seed, "min_count": min_count, "hash_buckets": hash_buckets})
