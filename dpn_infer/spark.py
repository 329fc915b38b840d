"""Score a Spark DataFrame with a dpn_infer model: ``mapInArrow`` over Arrow batches, or a pandas UDF.

Needs the ``spark`` extra (``pip install "dpn_infer[spark]"``: pyspark with pandas and pyarrow, and a
Java runtime); pyspark is imported only when a function here is called.

- ``score(df, model)``: a DataFrame of the kept columns plus a float32 score column, scored batch by
  batch with ``mapInArrow`` (no pandas in the way; list columns stay Arrow lists);
- ``udf(model)``: a pandas UDF for ``df.withColumn("score", udf(model)())``.

The model (a path, bytes or a Model) is loaded and checked on the driver; its file's bytes go to
the executors once, as a broadcast, and each Python worker loads them once (cached by their
BLAKE2b digest), not once per task or batch.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any, Sequence

from ._scoring import as_model as _as_model
from ._scoring import need  # pyarrow missing: an ImportError naming the extra

__all__ = ["score", "udf"]


def _pyspark():
    need("spark", "pyspark[sql]", "pyspark", "pyspark.sql", "pandas")
    import pyspark

    return pyspark


# Models loaded in this (worker) process, by content digest: Spark reuses a Python worker for many
# tasks, and each task would otherwise load the broadcast bytes again.
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()
_MODELS_MAX = 4  # a few model versions in one job; older ones are dropped first


def _worker_model(digest: bytes, payload):
    with _MODELS_LOCK:
        model = _MODELS.get(digest)
        if model is None:
            from .engine import load

            data = payload if isinstance(payload, bytes) else payload.value  # the bytes, or a Broadcast
            model = load(data)
            while len(_MODELS) >= _MODELS_MAX:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[digest] = model
    return model


def _ship(spark, model):
    """(digest, payload): the model file's bytes as a broadcast, or the bytes themselves where the
    session has no SparkContext (Spark Connect: they then travel in the function's closure)."""
    data = bytes(model.file_bytes())
    digest = hashlib.blake2b(data, digest_size=32).digest()
    try:
        sc = spark.sparkContext
    except Exception:  # Spark Connect sessions have none (PySparkNotImplementedError or similar)
        return digest, data
    return digest, sc.broadcast(data)


def score(df, model: Any, *, keep: Sequence[str] | None = None, output: str = "score", threads: int = 1,
          logits: bool = False, cast: bool = False, allow_nan: bool = False):
    """``df`` (a Spark DataFrame holding the model's fields as columns) scored by ``model``: a
    DataFrame of the ``keep`` columns (all when None) followed by ``output`` (float, not null),
    computed with ``mapInArrow``, ``threads`` intra-op threads per Python worker (leave 1 when
    Spark runs one task per core). Lazy, like any DataFrame. The column names are checked here;
    an error in the data raises the engine's InputError in the task, whose message Spark's
    exception on the driver carries."""
    _pyspark()
    from pyspark.sql.types import FloatType, StructField, StructType

    from ._scoring import output_names
    from .engine import _check_threads

    m = _as_model(model)
    _check_threads(threads)
    kept = output_names(df.columns, keep, output)
    schema = StructType([df.schema[c] for c in kept] + [StructField(output, FloatType(), False)])
    digest, payload = _ship(df.sparkSession, m)
    options = dict(keep=kept, output=output, threads=threads, logits=logits, cast=cast, allow_nan=allow_nan)

    def score_partition(batches):
        from ._scoring import score_batch

        worker_model = _worker_model(digest, payload)
        for batch in batches:
            yield score_batch(worker_model, batch, **options)

    return df.mapInArrow(score_partition, schema)


def udf(model: Any, *, threads: int = 1, logits: bool = False, cast: bool = False, allow_nan: bool = False):
    """A function making the score Column: ``df.withColumn("score", udf(model)())`` reads the
    model's fields from the DataFrame's columns of those names; ``udf(model)(*columns)`` from the
    columns given (names or Columns, named as the fields: ``F.col("x").alias("item")``). The
    column is a pandas UDF returning float."""
    pyspark = _pyspark()
    from pyspark.sql import functions as F

    from .engine import _check_threads

    m = _as_model(model)
    _check_threads(threads)
    fields = [f["name"] for f in m.schema]
    spark = pyspark.sql.SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("dpn_infer.spark.udf needs an active SparkSession (to broadcast the model)")
    digest, payload = _ship(spark, m)

    import pandas as pd

    def dpn_score(frame):  # the struct of the field columns, as a pandas DataFrame
        scores = _worker_model(digest, payload).predict(frame, threads=threads, logits=logits, cast=cast,
                                                        allow_nan=allow_nan)
        return pd.Series(scores, index=frame.index)

    # pandas_udf reads the UDF's kind from real annotations (this module's are strings).
    dpn_score.__annotations__ = {"frame": pd.DataFrame, "return": pd.Series}
    dpn_score = F.pandas_udf(dpn_score, "float")

    def column(*columns):
        return dpn_score(F.struct(*(columns or fields)))

    return column
