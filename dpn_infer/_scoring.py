"""Score one Arrow batch into an Arrow batch: the step shared by ``dpn-infer score``, the Ray Data
scorer (``dpn_infer.ray``) and the Spark scorer (``dpn_infer.spark``).

The output holds the kept input columns (zero-copy: the same Arrow buffers) followed by one float32
score column. pyarrow is imported only when this module is.
"""
from __future__ import annotations

import importlib
import os
from typing import Sequence

import numpy as np

from ._engine import InputError

try:
    import pyarrow as pa
except ModuleNotFoundError as e:  # the one place the offline scorers' pyarrow need is told
    raise ImportError(f"dpn_infer's offline scoring (dpn-infer score, dpn_infer.ray, dpn_infer.spark) needs "
                      f"pyarrow ({e}): pip install pyarrow, or the extra: pip install \"dpn_infer[ray]\" "
                      f"or \"dpn_infer[spark]\"") from e


def need(extra: str, package: str, *modules: str) -> None:
    """Import ``modules``, or raise an ImportError naming the extra (and the package) that installs them."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"dpn_infer.{extra} needs {package}, which is not importable here ({e}); install "
                          f"the extra: pip install \"dpn_infer[{extra}]\" (or pip install \"{package}\")") from e


def as_model(model):
    """A Model from a path or a model file's content (loaded and checked here), or the Model given."""
    from . import engine

    if isinstance(model, engine.Model):
        return model
    if isinstance(model, (str, os.PathLike)) or engine._is_buffer(model):
        return engine.load(model)
    raise TypeError(f"model must be a path, a model file's bytes or a dpn_infer.Model (or, for Ray, an "
                    f"ObjectRef to one), got {type(model).__name__}")


def output_names(columns: Sequence[str], keep: Sequence[str] | None, output: str) -> list[str]:
    """The kept column names (all when ``keep`` is None), checked against the input's columns and
    the score column's name; raises InputError naming what is wrong."""
    columns = list(columns)
    kept = columns if keep is None else list(keep)
    missing = [c for c in kept if c not in columns]
    if missing:
        raise InputError(f"columns to keep not in the input: {missing} (the input has {columns})")
    if len(set(kept)) != len(kept):
        raise InputError(f"a column to keep is named twice: {kept}")
    if output in kept:
        raise InputError(f"the score column '{output}' would replace an input column of that name; "
                         "name it otherwise")
    return kept


def score_batch(model, batch, *, keep: Sequence[str] | None = None, output: str = "score",
                threads: int | None = None, logits: bool = False, cast: bool = False,
                allow_nan: bool = False):
    """``batch`` (a pyarrow RecordBatch or Table) scored by ``model``: the kept columns (the same
    Arrow arrays, not copied) plus ``output`` (float32), as the same kind of object.
    ``keep=None`` keeps every input column, ``keep=[]`` none."""
    if not isinstance(batch, (pa.RecordBatch, pa.Table)):
        raise TypeError(f"expected a pyarrow RecordBatch or Table, got {type(batch).__name__}")
    kept = output_names(batch.schema.names, keep, output)
    scores = model.predict(batch, threads=threads, logits=logits, cast=cast, allow_nan=allow_nan)
    arrays = [batch.column(name) for name in kept] + [pa.array(np.asarray(scores, np.float32))]
    schema = pa.schema([batch.schema.field(name) for name in kept] + [pa.field(output, pa.float32(), nullable=False)])
    return type(batch).from_arrays(arrays, schema=schema)
