"""libfm / NFM-style files: one row per line, ``label idx:val idx:val ...``.

Field inference: the files NFM and AFN ship (frappe, MovieLens-tag) are one-hot, every row lists
exactly one feature per field, in field order. So column position k is field ``f{k}`` and a global
feature index maps to the field of the position it appears at (checked: an index seen at two
positions is an error). Within a field, indices are re-indexed to 0..V-1 (sorted). Values other than
1 are rejected (one-hot only). Labels -1/1 (or 0/1) become 0/1.

The plain "label user movie tag" layout of ``shared/data/ml-tag-sample`` (ids without ``:val``) is
read the same way: each column is a field (names given by ``field_names``).

Datasets:
- ``frappe`` (``shared/data/frappe``): only NFM's ``frappe.validation.libfm`` and
  ``frappe.test.libfm`` are there (the train file is not). :func:`load_frappe` pools both files
  (86,582 rows) and re-splits them at random 7:2:1 (NFM's own ratio) with the seed; the vocabulary
  is built over the pooled rows.
- ``ml-tag`` (``shared/data/ml-tag-sample/ml-tag-sample.data``, label user movie tag): random 7:2:1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import Dataset, Split, dataset_path, find_shared_data, split_indices

WHERE_FRAPPE = ("frappe not found. Pass NFM's frappe folder (frappe.train.libfm and/or "
                "frappe.validation.libfm, frappe.test.libfm; github.com/hexiangnan/neural_factorization_machine "
                "data/frappe) as --data / path, or put it at $DPN_DATA/frappe or ../shared/data/frappe")
WHERE_MLTAG = ("ml-tag not found. Pass a 'label user movie tag' file (e.g. PaddleRec "
               "models/rank/sign/data/ml-tag-sample.data) or NFM's ml-tag libfm files as --data / path, "
               "or put it at $DPN_DATA/ml-tag-sample/ml-tag-sample.data or "
               "../shared/data/ml-tag-sample/ml-tag-sample.data")


def _parse_line(line: str, where: str):
    p = line.split()
    label = float(p[0])
    idx = []
    for tok in p[1:]:
        if ":" in tok:
            k, v = tok.split(":", 1)
            if float(v) != 1.0:
                raise ValueError(f"{where}: feature {tok!r} has value {v}; only one-hot libfm "
                                 f"data (every value 1) is supported")
            idx.append(int(k))
        else:
            idx.append(int(float(tok)))
    return label, idx


def read_libfm(files):
    """-> labels float32 [N] (0/1), raw indices int64 [N, F] (F columns, same for every row)."""
    labels, rows = [], []
    width = None
    for fpath in files:
        with open(fpath, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                lab, idx = _parse_line(line, f"{fpath}:{n}")
                if width is None:
                    width = len(idx)
                elif len(idx) != width:
                    raise ValueError(f"{fpath}:{n}: {len(idx)} features, earlier rows have {width}; "
                                     f"field inference needs one feature per field on every row")
                labels.append(lab)
                rows.append(idx)
    if not rows:
        raise ValueError(f"no rows in {[str(f) for f in files]}")
    y = np.array(labels, dtype=np.float32)
    y = (y > 0).astype(np.float32)                 # -1/1 and 0/1 -> 0/1
    return y, np.array(rows, dtype=np.int64)


def infer_fields(raw: np.ndarray):
    """Column k -> field k. -> (ids int64 [N, F] re-indexed per field, vocab sizes, luts).
    Raises ValueError when one global index appears in two columns (then columns are not fields)."""
    owner: dict = {}
    ids = np.empty_like(raw)
    vocabs, luts = [], []
    for k in range(raw.shape[1]):
        uniq, inv = np.unique(raw[:, k], return_inverse=True)
        for u in uniq.tolist():
            if owner.setdefault(u, k) != k:
                raise ValueError(f"feature index {u} appears in columns {owner[u]} and {k}: cannot "
                                 f"infer fields by position")
        ids[:, k] = inv.reshape(-1)
        vocabs.append(len(uniq))
        luts.append(dict(zip(uniq.tolist(), range(len(uniq)))))
    return ids, vocabs, luts


def load_libfm(path_or_files, seed: int = 2022, embed_dim: int = 16, field_names=None,
               fractions=(0.7, 0.2, 0.1), name: str = "libfm") -> Dataset:
    """Load one-hot libfm file(s) (pooled) and split them at random by ``fractions``."""
    files = [path_or_files] if isinstance(path_or_files, (str, Path)) else list(path_or_files)
    files = [Path(f) for f in files]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found")
    labels, raw = read_libfm(files)
    ids, vocabs, _ = infer_fields(raw)
    F = ids.shape[1]
    names = list(field_names) if field_names else [f"f{k}" for k in range(F)]
    if len(names) != F:
        raise ValueError(f"field_names has {len(names)} names, the data has {F} fields")
    features = {nm: np.ascontiguousarray(ids[:, k]) for k, nm in enumerate(names)}
    schema = [{"name": nm, "kind": "sparse", "vocab": int(v), "dim": embed_dim, "policy": "oov_bucket"}
              for nm, v in zip(names, vocabs)]
    all_rows = Split(features, labels)
    tr, va, te = split_indices(len(labels), tuple(fractions), seed)
    return Dataset(name, schema, all_rows.take(tr), all_rows.take(va), all_rows.take(te),
                   info={"path": ";".join(str(f) for f in files), "rows": int(len(labels)),
                         "positive_rate": float(labels.mean()), "seed": seed,
                         "fractions": list(fractions)})


def load_frappe(path=None, seed: int = 2022, embed_dim: int = 16) -> Dataset:
    """frappe (NFM libfm files) pooled and re-split 7:2:1; see the module doc."""
    folder = dataset_path("frappe", path)
    if folder is None:
        raise FileNotFoundError(WHERE_FRAPPE)
    if folder.is_file():
        files = [folder]
    else:
        files = [folder / f"frappe.{s}.libfm" for s in ("train", "validation", "test")
                 if (folder / f"frappe.{s}.libfm").exists()]
        if not files:
            raise FileNotFoundError(f"{folder}: no frappe.*.libfm files. {WHERE_FRAPPE}")
    return load_libfm(files, seed=seed, embed_dim=embed_dim, name="frappe")


def load_ml_tag(path=None, seed: int = 2022, embed_dim: int = 16) -> Dataset:
    """MovieLens-tag: 'label user movie tag' rows (or NFM's ml-tag libfm files), split 7:2:1."""
    if path:
        p = dataset_path("ml-tag-sample", path)
    else:
        d = find_shared_data("ml-tag-sample")
        p = d / "ml-tag-sample.data" if d else None
    if p is None or not p.exists():
        raise FileNotFoundError(WHERE_MLTAG if p is None else f"{p}: not found. {WHERE_MLTAG}")
    if p.is_dir():
        files = sorted(p.glob("*.libfm")) or sorted(p.glob("*.data"))
        if not files:
            raise FileNotFoundError(f"{p}: no *.libfm or *.data files. {WHERE_MLTAG}")
    else:
        files = [p]
    return load_libfm(files, seed=seed, embed_dim=embed_dim, field_names=["user", "movie", "tag"],
                      name="ml-tag")
