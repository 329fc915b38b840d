"""Batches from pandas DataFrames and pyarrow Tables / RecordBatches, and ``cast=True``.

Imported by engine.py only when ``predict`` gets something other than a dict without ``cast``:
neither pandas nor pyarrow is imported here at module level (both stay optional). Each field
becomes the array the engine reads (see ``Model.predict``); columns that are not fields are ignored.

Arrow list columns are read without copying the ids: a sequence field becomes the ragged
``(values, offsets)`` pair over the Arrow buffers; a multi-hot field is padded to [B, T] with -1
(T: the longest row). A null list, or a null anywhere in a field's column, is an InputError naming
the field: a missing value has no id the model could read (pass an empty list for "no ids").
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._engine import InputError

_F32_MAX = float(np.finfo(np.float32).max)


def _package(obj) -> str:
    return (type(obj).__module__ or "").split(".")[0]  # "pandas" (3.x) or "pandas.core.frame"


def is_pandas(obj) -> bool:
    return _package(obj) == "pandas" and type(obj).__name__ == "DataFrame"


def is_arrow(obj) -> bool:
    return _package(obj) == "pyarrow" and type(obj).__name__ in ("Table", "RecordBatch")


def _err(name: str, msg: str) -> InputError:
    return InputError(f"field '{name}': {msg}")


# --- dtypes --------------------------------------------------------------------------------------

def _ids(name: str, a: np.ndarray, cast: bool) -> np.ndarray:
    """int64 ids; with cast, any integer dtype whose values fit int64."""
    if a.dtype == np.int64:
        return a
    if not cast or a.dtype.kind not in "iub":
        hint = "" if cast or a.dtype.kind not in "iu" else " (pass cast=True to convert integer ids)"
        raise _err(name, f"expected int64 ids, got {a.dtype}{hint}")
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise _err(name, f"id {int(a.max())} does not fit int64")
    return a.astype(np.int64)


def _values(name: str, a: np.ndarray, cast: bool) -> np.ndarray:
    """float32 values; with cast, float16/float64 and integers of up to 16 bits (all exact in
    float32). A finite float64 that float32 cannot hold is refused, never turned into inf."""
    if a.dtype == np.float32:
        return a
    exact = a.dtype.kind == "f" or (a.dtype.kind in "iub" and a.dtype.itemsize <= 2)
    if not cast or not exact:
        hint = "" if cast or a.dtype.kind not in "fiub" else " (pass cast=True to convert)"
        raise _err(name, f"expected float32 values, got {a.dtype}{hint}")
    with np.errstate(over="ignore"):  # overflow is looked for below, and refused
        out = a.astype(np.float32)
    if a.dtype.itemsize > 4:
        bad = np.isinf(out) & np.isfinite(a)
        if bad.any():
            i = np.flatnonzero(bad.reshape(-1))[0]
            raise _err(name, f"value {a.reshape(-1)[i]!r} is beyond float32's range "
                             f"(±{_F32_MAX:.6g}); cast=True converts only values float32 can hold")
    return out


# Kinds a list column feeds as ragged (values, offsets): a sequence, and its timestamps (which the
# engine reads laid out as the sequence's ids, the same offsets).
_RAGGED = ("sequence", "timestamps")


def cast_field(field: dict, value: Any) -> Any:
    """One dict value with the safe casts of ``cast=True`` (a ragged tuple: both parts)."""
    name = field["name"]
    if field["kind"] in _RAGGED and isinstance(value, tuple):
        return tuple(_ids(name, np.asarray(v), True) for v in value)
    a = np.asarray(value)
    return _values(name, a, True) if field["kind"] == "dense" else _ids(name, a, True)


# --- Arrow ---------------------------------------------------------------------------------------

def _no_nulls(name: str, arr) -> None:
    if arr.null_count:
        raise _err(name, f"has {arr.null_count} null value(s) in its column (nulls have no id or "
                         f"value the model can read; for a list column, pass an empty list)")


def _ragged(name: str, arr, pa) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list / large_list / fixed_size_list array, values not copied."""
    _no_nulls(name, arr)
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        flat = arr.flatten()  # honours a slice offset; a view of the child
        _no_nulls(name, flat)
        offsets = np.arange(len(arr) + 1, dtype=np.int64) * t.list_size
        return flat.to_numpy(zero_copy_only=False), offsets
    # .offsets is sliced with the array but not rebased; .values is the whole child array.
    offsets = np.asarray(arr.offsets)
    start, stop = int(offsets[0]), int(offsets[-1])
    child = arr.values.slice(start, stop - start)
    _no_nulls(name, child)
    offsets = offsets.astype(np.int64, copy=False)
    if start:
        offsets = offsets - start
    return child.to_numpy(zero_copy_only=False), offsets


def _is_list(t, pa) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _arrow_field(field: dict, arr, cast: bool, pa) -> Any:
    name, kind = field["name"], field["kind"]
    if isinstance(arr, pa.ChunkedArray):  # Tables: one chunk per column is read in place
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    if pa.types.is_null(arr.type) and not len(arr):  # an empty object column: no type to read
        return _no_rows(field, cast)
    if _is_list(arr.type, pa):
        values, offsets = _ragged(name, arr, pa)
        return _from_ragged(field, values, offsets, cast)
    if kind in ("multi_hot",) + _RAGGED:
        raise _err(name, f"a {kind} field needs a list column, got Arrow type {arr.type}")
    _no_nulls(name, arr)
    a = arr.to_numpy(zero_copy_only=False)  # no copy for a primitive array without nulls
    return _values(name, a, cast) if kind == "dense" else _ids(name, a, cast)


def _no_rows(field: dict, cast: bool) -> Any:
    """A field of 0 rows, from a column that has no type to read (an empty object column)."""
    if field["kind"] == "sparse":
        return np.zeros(0, np.int64)
    return _from_ragged(field, np.zeros(0), np.zeros(1, np.int64), cast)


def _from_ragged(field: dict, values: np.ndarray, offsets: np.ndarray, cast: bool) -> Any:
    name, kind = field["name"], field["kind"]
    rows = len(offsets) - 1
    if not values.size:  # no ids at all: the column's lists may have no type (Arrow null, float64)
        values = np.zeros(0, np.float32 if kind == "dense" else np.int64)
    if kind in _RAGGED:
        return (_ids(name, values, cast), offsets)
    lengths = np.diff(offsets)
    if kind == "dense":
        dim = int(field.get("dim", 1))
        if rows and (lengths != dim).any():
            b = int(np.flatnonzero(lengths != dim)[0])
            raise _err(name, f"row {b} has {int(lengths[b])} values, but the field's dim is {dim}")
        return _values(name, values, cast).reshape(rows, dim)
    if kind == "multi_hot":
        ids = _ids(name, values, cast)
        # T = the longest row (at least 1: a [B, 0] batch has no slot to pad); the engine refuses
        # T > max_len as it does for a padded array.
        width = max(int(lengths.max()) if rows else 0, 1)
        out = np.full((rows, width), -1, dtype=np.int64)
        out[np.arange(width) < lengths[:, None]] = ids
        return out
    raise _err(name, f"a list column cannot feed a {kind} field (one value per row)")


def _columns(fields: list[dict], names: list, column: Callable, convert: Callable) -> dict:
    """{field: convert(field, its column)}, each field found in exactly one column."""
    out = {}
    for f in fields:
        name = f["name"]
        if names.count(name) != 1:
            raise _missing(name, names) if name not in names else _err(name, "appears in more than one column")
        out[name] = convert(f, column(name))
    return out


def _arrow_batch(fields: list[dict], table, cast: bool) -> dict:
    import pyarrow as pa

    return _columns(fields, table.schema.names, table.column, lambda f, c: _arrow_field(f, c, cast, pa))


# --- pandas --------------------------------------------------------------------------------------

def _pandas_batch(fields: list[dict], df, cast: bool) -> dict:
    return _columns(fields, list(df.columns), df.__getitem__, lambda f, c: _pandas_field(f, c, cast))


def _pandas_field(field: dict, col, cast: bool) -> Any:
    name, kind = field["name"], field["kind"]
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iufb":
        if kind in ("multi_hot",) + _RAGGED:
            raise _err(name, f"a {kind} field needs a column of lists, got {dtype}")
        a = col.to_numpy()  # a view of the column's block
        return _values(name, a, cast) if kind == "dense" else _ids(name, a, cast)
    # Object columns (lists, numpy arrays), nullable and Arrow-backed dtypes: through Arrow when
    # pyarrow is installed, else numpy.
    try:
        import pyarrow as pa
    except ImportError:
        return _pandas_numpy(field, col, cast)
    try:
        ext = col.array
        arr = pa.array(ext) if hasattr(ext, "__arrow_array__") else \
            pa.array(col.to_numpy(dtype=object), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise _err(name, f"cannot read column of dtype {dtype} ({e})") from None
    return _arrow_field(field, arr, cast, pa)


def _pandas_numpy(field: dict, col, cast: bool) -> Any:
    name = field["name"]
    cells = col.to_numpy(dtype=object)
    if any(c is None or (np.ndim(c) == 0 and c != c) for c in cells):
        raise _err(name, "has missing values in its column")
    if not len(cells):
        return _no_rows(field, cast)
    if np.ndim(cells[0]) == 0:  # scalars in an object column
        return _from_scalars(field, cells, cast)
    rows = [np.asarray(c) for c in cells]
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # Empty rows left out: np.asarray([]) is float64, and would make integer ids float.
    values = np.concatenate([r.reshape(-1) for r in rows if r.size] or [np.zeros(0)])
    return _from_ragged(field, values, offsets, cast)


def _from_scalars(field: dict, cells: np.ndarray, cast: bool) -> Any:
    a = np.array(cells.tolist())
    name = field["name"]
    return _values(name, a, cast) if field["kind"] == "dense" else _ids(name, a, cast)


def _missing(name: str, columns) -> InputError:
    shown = ", ".join(repr(c) for c in list(columns)[:20])
    return _err(name, f"missing from the data (its columns are {shown}{', ...' if len(columns) > 20 else ''})")


def to_batch(fields: list[dict], data, cast: bool) -> dict:
    """The dict of arrays ``predict`` passes to the engine, for a DataFrame, an Arrow Table or
    RecordBatch, or (with cast) a mapping."""
    convert: Callable | None = _pandas_batch if is_pandas(data) else _arrow_batch if is_arrow(data) else None
    if convert is not None:
        return convert(fields, data, cast)
    by_name = {f["name"]: f for f in fields}
    # Unknown keys are kept so the engine refuses them, as without cast.
    return {k: cast_field(by_name[k], v) if k in by_name else v for k, v in data.items()}
