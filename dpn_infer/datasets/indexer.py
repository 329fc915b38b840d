"""Raw table columns -> the engine's batch: an :class:`Indexer` fitted on the train rows.

Categorical values become int64 ids by one of two rules, per column:

- **vocabulary** (default): the values seen at least ``min_count`` times in the rows ``fit`` is
  given get ids 1..V-1, in sorted order of their tokens; every other value — rarer, unseen at
  ``transform`` time, or missing — gets the one OOV id 0. The schema field has ``vocab`` V and
  policy ``oov_bucket``.
- **hashing** (``hash_buckets=N``): ``crc32("column:token") % N`` (a missing value: 0). crc32 does
  not change between processes or Python versions (Python's ``hash`` of a str does). Policy ``hash``.

A token is the value's text: ``7``, ``7.0``, ``np.int64(7)`` and ``"7"`` are one token (a CSV
column of ids with a gap reads as float); ``None``, NaN and ``""`` are missing. A multi-hot column
holds a list (or array) of values per row, or a string split at ``sep``; each row is padded with -1
to ``max_len`` (default: the longest row ``fit`` saw) and longer rows keep their first ``max_len``
values; missing entries are dropped (in a 2-D integer array every entry is a value, -1 included:
give ragged rows as lists). Dense columns pass through as float32 (NaN -> 0.0).

``save`` / ``load`` keep the fitted mapping as JSON (training writes OUT/indexer.json beside
model.bin), so serving indexes new rows exactly as training did::

    idx = Indexer.load("runs/mine/indexer.json")
    scores = dpn_infer.load("runs/mine/model.bin").predict(idx.transform(new_rows))
"""
from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FORMAT = "dpn_infer.indexer"
VERSION = 1
KINDS = ("sparse", "multi_hot", "dense")


def columns_of(data) -> dict:
    """column name -> numpy array for a mapping of arrays / lists, a pandas DataFrame or a pyarrow
    Table / RecordBatch (list cells become object arrays of sequences)."""
    if isinstance(data, Mapping):
        out = {str(k): _array(v) for k, v in data.items()}
    elif hasattr(data, "schema") and hasattr(data, "column") and hasattr(data, "num_rows"):   # pyarrow
        out = {name: np.asarray(data.column(name).to_numpy(zero_copy_only=False))
               for name in data.schema.names}
    elif hasattr(data, "columns") and hasattr(data, "to_numpy"):                               # pandas
        out = {str(c): data[c].to_numpy() for c in data.columns}
    else:
        raise TypeError(f"expected a mapping of column arrays, a pandas DataFrame or a pyarrow Table, "
                        f"got {type(data).__name__}")
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    return out


def _array(v) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, (list, tuple)) and any(isinstance(c, (list, tuple, np.ndarray)) for c in v):
        a = np.empty(len(v), dtype=object)      # ragged rows: one object per row, never a 2-D array
        a[:] = [c for c in v]
        return a
    if hasattr(v, "to_numpy"):
        return v.to_numpy()
    return np.asarray(v)


def _missing(x) -> bool:
    if x is None:
        return True
    if isinstance(x, (float, np.floating)):
        return bool(np.isnan(x))
    return type(x).__name__ in ("NAType", "NaTType")


def _token(x) -> str:
    if _missing(x):
        return ""
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return str(int(x)) if x.is_integer() and abs(x) < 2 ** 63 else repr(x)
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    return str(x)


def tokens(values) -> np.ndarray:
    """The tokens (object array of str, "" = missing) of a 1-D column."""
    a = np.asarray(values)
    if a.dtype.kind in "iu":
        return a.astype(str).astype(object)
    if a.dtype.kind == "U":
        return a.astype(object)
    if a.dtype.kind == "f":
        out = np.full(a.shape, "", dtype=object)
        ok = ~np.isnan(a)
        whole = ok & (a == np.floor(np.where(ok, a, 0))) & (np.abs(np.where(ok, a, 0)) < 2 ** 63)
        out[whole] = a[whole].astype(np.int64).astype(str)
        rest = ok & ~whole
        out[rest] = [repr(float(x)) for x in a[rest]]
        return out
    flat = [x if type(x) is str else _token(x) for x in a.reshape(-1).tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def _cell_tokens(cell, sep: str) -> list:
    """One multi-hot cell -> its non-missing tokens."""
    if isinstance(cell, str):
        parts = cell.split(sep) if cell else []
    elif isinstance(cell, (list, tuple, np.ndarray)):
        parts = [_token(x) for x in (cell.tolist() if isinstance(cell, np.ndarray) else cell)]
    elif _missing(cell):
        parts = []
    else:
        parts = [_token(cell)]
    return [t for t in parts if t != ""]


def _lookup(toks, lut: dict) -> np.ndarray:
    return np.fromiter((lut.get(t, 0) for t in toks), dtype=np.int64, count=len(toks))


def _hash(name: str, toks, buckets: int) -> np.ndarray:
    """crc32("name:token") % buckets per token; a missing token -> 0. One crc32 per distinct token."""
    lut = {t: zlib.crc32(f"{name}:{t}".encode()) % buckets if t else 0 for t in set(toks)}
    return _lookup(toks, lut)


def _check_1d(name, values, rows_ok):
    """A column is one value (or, multi-hot, one row of values) per row."""
    if np.ndim(values) != 1 and not (rows_ok and np.ndim(values) == 2):
        raise ValueError(f"column {name!r}: expected one value per row, got shape {np.shape(values)}")


def _per_column(value, name, default):
    if isinstance(value, Mapping):
        return value.get(name, default)
    return default if value is None else value


class Indexer:
    """Categorical (sparse), multi-hot and dense columns of a table -> the engine's batch.

    ``min_count``, ``hash_buckets`` and ``max_len``: one value for every column, or a dict column ->
    value (columns it leaves out: min_count 1, no hashing, max_len from the data). See the module
    doc for the rules."""

    def __init__(self, categorical=(), multi_hot=(), dense=(), *, min_count=1, hash_buckets=None,
                 max_len=None, sep: str = "|"):
        self.sep = sep
        self.columns: dict = {}          # name -> {"kind": ..., rule and fitted state}
        for kind, names in (("sparse", categorical), ("multi_hot", multi_hot), ("dense", dense)):
            for name in names or ():
                if name in self.columns:
                    raise ValueError(f"column {name!r} is given twice")
                col = {"kind": kind}
                if kind != "dense":
                    mc = _per_column(min_count, name, 1)
                    hb = _per_column(hash_buckets, name, None)
                    if int(mc) < 1:
                        raise ValueError(f"column {name!r}: min_count must be >= 1, got {mc}")
                    if hb is not None and int(hb) < 1:
                        raise ValueError(f"column {name!r}: hash_buckets must be >= 1, got {hb}")
                    col.update(min_count=int(mc), hash_buckets=None if hb is None else int(hb))
                if kind == "multi_hot":
                    ml = _per_column(max_len, name, None)
                    col["max_len"] = None if ml is None else int(ml)
                self.columns[name] = col
        self.fitted = False

    # -- fit / transform ----------------------------------------------------------------------------

    def fit(self, data, rows=None) -> "Indexer":
        """Learn each vocabulary column's tokens from ``data`` (restricted to ``rows``, e.g. the
        train split's indices, when given)."""
        cols = self._inputs(data)
        for name, col in self.columns.items():
            if col["kind"] == "dense":
                continue
            values = cols[name] if rows is None else cols[name][rows]
            _check_1d(name, values, col["kind"] == "multi_hot")
            if col["kind"] == "sparse":
                toks = tokens(values)
            else:
                cells = [_cell_tokens(c, self.sep) for c in values]
                if col["max_len"] is None:
                    col["max_len"] = max([len(c) for c in cells] + [1])
                toks = np.array([t for c in cells for t in c], dtype=object)
            if col["hash_buckets"] is None:
                counts = Counter(toks.tolist())
                col["tokens"] = sorted(t for t, c in counts.items() if c >= col["min_count"] and t != "")
        self._luts = None
        self.fitted = True
        return self

    def transform(self, data) -> dict:
        """The engine's batch for ``data``: sparse int64 [N], multi-hot int64 [N, max_len] padded
        with -1, dense float32 [N]. Columns of ``data`` that the indexer does not know are ignored."""
        if not self.fitted:
            raise RuntimeError("Indexer.transform before fit (or load)")
        cols = self._inputs(data)
        out = {}
        for name, col in self.columns.items():
            values = cols[name]
            _check_1d(name, values, col["kind"] == "multi_hot")
            if col["kind"] == "dense":
                v = np.asarray(values, dtype=np.float32)
                out[name] = np.where(np.isnan(v), np.float32(0), v).astype(np.float32)
            elif col["kind"] == "sparse":
                out[name] = self._ids(name, tokens(values))
            else:
                T = col["max_len"]
                cells = [_cell_tokens(c, self.sep)[:T] for c in values]
                flat = self._ids(name, np.array([t for c in cells for t in c], dtype=object))
                ids = np.full((len(cells), T), -1, dtype=np.int64)
                lengths = np.array([len(c) for c in cells], dtype=np.int64)
                rows = np.repeat(np.arange(len(cells)), lengths)
                starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(cells) else lengths
                ids[rows, np.arange(len(flat)) - np.repeat(starts, lengths)] = flat
                out[name] = ids
        return out

    def fit_transform(self, data, rows=None) -> dict:
        return self.fit(data, rows).transform(data)

    def _ids(self, name: str, toks) -> np.ndarray:
        col = self.columns[name]
        if col["hash_buckets"] is not None:
            return _hash(name, toks, col["hash_buckets"])
        if getattr(self, "_luts", None) is None:
            self._luts = {}
        lut = self._luts.get(name)
        if lut is None:
            lut = self._luts[name] = {t: i + 1 for i, t in enumerate(col["tokens"])}   # 0 = OOV
        return _lookup(toks, lut)

    def _inputs(self, data) -> dict:
        cols = data if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()) \
            else columns_of(data)
        missing = [n for n in self.columns if n not in cols]
        if missing:
            raise ValueError(f"columns {missing} are not in the data (it has {sorted(cols)[:20]})")
        return cols

    # -- what the model sees ------------------------------------------------------------------------

    def vocab(self, name: str) -> int:
        """Rows of column ``name``'s embedding table: V (vocabulary: its tokens + the OOV id 0) or N."""
        col = self.columns[name]
        return col["hash_buckets"] if col["hash_buckets"] is not None else len(col["tokens"]) + 1

    def schema(self, embed_dim: int = 16, pooling: str = "mean") -> list:
        """The schema field dicts (docs/format.md §4.1) of the batch ``transform`` returns."""
        out = []
        for name, col in self.columns.items():
            if col["kind"] == "dense":
                out.append({"name": name, "kind": "dense", "dim": 1})
                continue
            f = {"name": name, "kind": col["kind"], "vocab": int(self.vocab(name)), "dim": int(embed_dim),
                 "policy": "oov_bucket" if col["hash_buckets"] is None else "hash"}
            if col["kind"] == "multi_hot":
                f.update(pooling=pooling, max_len=int(col["max_len"]))
            out.append(f)
        return out

    # -- JSON ---------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "sep": self.sep, "fitted": self.fitted,
                "columns": {n: dict(c) for n, c in self.columns.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Indexer":
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} document "
                             f"(format {d.get('format')!r}, version {d.get('version')!r})")
        idx = cls(sep=d["sep"])
        for name, col in d["columns"].items():
            if col.get("kind") not in KINDS:
                raise ValueError(f"column {name!r}: unknown kind {col.get('kind')!r}")
            idx.columns[name] = dict(col)
        idx.fitted = bool(d["fitted"])
        return idx

    def save(self, path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_json(), ensure_ascii=False) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path) -> "Indexer":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        kinds = {k: [n for n, c in self.columns.items() if c["kind"] == k] for k in KINDS}
        return (f"Indexer({', '.join(f'{k}={v}' for k, v in kinds.items() if v)}"
                f"{'' if self.fitted else ', not fitted'})")
