"""dpn_infer.spark on a local Spark (local[2]): criteo-10k and MovieLens-100K (list columns) read
from Parquet and scored with mapInArrow and with the pandas UDF give exactly the in-process
predictions, every row once; errors in the data reach the driver with the engine's message."""
from __future__ import annotations

import os
import sys

import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("torch")  # makes the models (dpn_infer.save)
from pyspark.sql import SparkSession  # the test extra installs pyspark: no skip when it is missing
from pyspark.sql import functions as F

import dpn_infer
import dpn_infer.spark as dspark
from helpers import offline as O


@pytest.fixture(scope="module")
def spark():
    # The Python workers must be this interpreter (the one with dpn_infer), not `python3` on PATH.
    old = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2]").appName("dpn_infer-tests")
               .config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")  # several batches a task
               .getOrCreate())
    session.sparkContext.setLogLevel("FATAL")  # the error tests' task failures would flood the log
    yield session
    session.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_spark_scores_criteo_and_movielens_as_predict(spark, criteo, movielens):
    for case in (criteo, movielens):
        model = dpn_infer.load(case.model_path)
        ref = model.predict(case.table)
        df = spark.read.parquet(case.parquet)
        keep = ("row",) if case is criteo else ("row", "hist_movie")
        scored = dspark.score(df, case.model_path, keep=list(keep))
        assert scored.schema["score"].dataType.simpleString() == "float"
        assert not scored.schema["score"].nullable
        O.assert_scored(scored.toArrow(), case, ref, keep=keep)
        # the pandas UDF: the model's fields found by name among the DataFrame's columns
        with_udf = df.withColumn("p", dspark.udf(model)()).select("row", "p")
        O.assert_scored(with_udf.toArrow(), case, ref, output="p")


def test_spark_udf_takes_columns_and_options(spark, criteo):
    model = dpn_infer.load(criteo.model_path)
    df = spark.read.parquet(criteo.parquet).withColumnRenamed("I1", "first")
    fields = [F.col("first").alias("I1")] + [f["name"] for f in model.schema[1:]]
    out = df.select("row", dspark.udf(model, logits=True)(*fields).alias("z")).toArrow()
    O.assert_scored(out, criteo, model.predict(criteo.table, logits=True), output="z")


def test_spark_data_errors_reach_the_driver(spark, criteo):
    model = dpn_infer.load(criteo.model_path)
    df = spark.read.parquet(criteo.parquet)
    cases = [(df.drop("I1"), "field 'I1': missing from the data"),
             (df.withColumn("C3", F.col("C3").cast("int")), "field 'C3': expected int64 ids, got int32")]
    runs = [lambda bad: dspark.score(bad, model).collect(),
            lambda bad: bad.select(dspark.udf(model)()).collect()]
    for (bad, message), run in [(cases[0], runs[0]), (cases[1], runs[0]), (cases[1], runs[1])]:
        with pytest.raises(Exception, match="InputError") as ei:
            run(bad)
        assert message in str(ei.value)
    # the UDF names its columns: Spark itself refuses a missing one, before any task runs
    with pytest.raises(Exception, match="I1"):
        runs[1](cases[0][0])
    # cast=True converts the int32 ids, as predict(cast=True) does
    out = dspark.score(cases[1][0], model, keep=["row"], cast=True).toArrow()
    O.assert_scored(out, criteo, model.predict(criteo.table))


def test_spark_checks_names_on_the_driver(spark, criteo):
    df = spark.read.parquet(criteo.parquet)
    with pytest.raises(dpn_infer.InputError, match="not in the input"):
        dspark.score(df, criteo.model_path, keep=["row", "nope"])
    with pytest.raises(dpn_infer.InputError, match="'row' would replace"):
        dspark.score(df, criteo.model_path, output="row")
    with pytest.raises(TypeError, match="model must be"):
        dspark.score(df, 3.5)


def test_worker_cache_loads_each_model_once(criteo):
    """A Python worker loads a broadcast model once: later tasks find it by its digest and never
    read the broadcast again."""
    raw = open(criteo.model_path, "rb").read()

    class Broadcast:  # a Broadcast's face: .value, read once
        reads = 0

        @property
        def value(self):
            Broadcast.reads += 1
            return raw

    dspark._MODELS.clear()
    bc = Broadcast()
    a, b = dspark._worker_model(b"k" * 32, bc), dspark._worker_model(b"k" * 32, bc)
    assert a is b and Broadcast.reads == 1
    for i in range(dspark._MODELS_MAX + 1):  # a bounded cache: the oldest versions go first
        dspark._worker_model(bytes([i]) * 32, raw)
    assert len(dspark._MODELS) == dspark._MODELS_MAX and b"k" * 32 not in dspark._MODELS


def test_missing_pyspark_names_the_extra(criteo, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ImportError, match=r"dpn_infer\[spark\]"):
        dspark.score(None, criteo.model_path)


def test_offline_doc_spark_example_runs(spark, tmp_path, monkeypatch):
    """docs/offline.md's Spark example, after the page's plain examples (it reuses the session)."""
    from helpers import docs

    monkeypatch.chdir(tmp_path)
    assert docs.run("offline.md", tags=("", "spark")) >= 6
