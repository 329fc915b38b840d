"""dpn_infer.ray on a local Ray: criteo-10k and MovieLens-100K (list columns) read from Parquet and
scored by actors give exactly the in-process predictions, every row once, also when an actor
dies mid-job; errors in the data reach the driver with the engine's message."""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("torch")  # makes the models (dpn_infer.save)
import ray  # the test extra installs ray[data]: no skip when it is missing

import dpn_infer
import dpn_infer.ray as dray
from helpers import offline as O


@contextlib.contextmanager
def _chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # 3 logical CPUs: two single-thread actors hold two for the whole job, the Parquet reads need one.
    # Ray puts the driver's working folder on its workers' sys.path: started from the checkout, the
    # workers would import its source tree (no compiled engine) instead of the installed package.
    with _chdir(tmp_path_factory.mktemp("ray")):
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, object_store_memory=256 << 20,
                 configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


def collect(ds) -> pa.Table:
    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def test_scorer_in_process_from_path_bytes_and_model(criteo):
    """The callable class itself (what each actor builds), without Ray: any model form, options."""
    model = dpn_infer.load(criteo.model_path)
    ref = model.predict(criteo.table)
    raw = open(criteo.model_path, "rb").read()
    for m in (criteo.model_path, raw, model):
        out = dray.Scorer(m, keep=["row"], output="p")(criteo.table)
        assert out.column_names == ["row", "p"]
        np.testing.assert_array_equal(out["p"].to_numpy(), ref)
    z = dray.Scorer(model, keep=[], logits=True, threads=2)(criteo.table.slice(10, 100))
    np.testing.assert_array_equal(z["score"].to_numpy(), model.predict(criteo.table.slice(10, 100), logits=True))
    with pytest.raises(TypeError, match="model must be"):
        dray.Scorer(12)
    with pytest.raises(dpn_infer.InputError, match="'I1' would replace"):
        dray.Scorer(model, keep=["row", "I1"], output="I1")(criteo.table)


def test_ray_scores_criteo_and_movielens_as_predict(local_ray, criteo, movielens):
    for case, actors in ((criteo, 2), (movielens, 1)):
        model = dpn_infer.load(case.model_path)
        ref = model.predict(case.table)
        ds = ray.data.read_parquet(case.parquet).repartition(4)
        keep = ("row",) if case is criteo else ("row", "hist_movie")
        # a path: loaded on the driver, its bytes sent to the actors through the object store
        out = collect(dray.score(ds, case.model_path, actors=actors, batch_size=1000, keep=list(keep)))
        O.assert_scored(out, case, ref, keep=keep)


def test_ray_actor_killed_midway_loses_and_duplicates_nothing(local_ray, criteo, tmp_path):
    """One actor's process exits on its 3rd batch (once: a marker file stops its replacement from
    doing it again); Ray restarts it and reruns the lost batches."""
    marker = str(tmp_path / "died")

    class DiesOnce(dray.Scorer):  # defined here: cloudpickle sends it to the actors by value
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 3 and not os.path.exists(marker):
                open(marker, "w").close()
                sys.stdout.flush()
                os._exit(1)
            return super().__call__(batch)

    model = dpn_infer.load(criteo.model_path)
    ds = ray.data.read_parquet(criteo.parquet).repartition(4)
    out = collect(dray.score(ds, model, actors=2, batch_size=250, keep=["row"], output="p", scorer=DiesOnce))
    assert os.path.exists(marker), "no actor died: the test proved nothing"
    O.assert_scored(out, criteo, model.predict(criteo.table), output="p")


def test_ray_data_errors_reach_the_driver(local_ray, criteo):
    model = dpn_infer.load(criteo.model_path)
    small = criteo.table.slice(0, 50)
    cases = [(small.drop_columns(["I1"]), "field 'I1': missing from the data"),
             (small.set_column(small.schema.get_field_index("C3"), "C3", small["C3"].cast(pa.int32())),
              "field 'C3': expected int64 ids, got int32")]
    for table, message in cases:
        with pytest.raises(Exception, match="InputError") as ei:
            collect(dray.score(ray.data.from_arrow(table), model, actors=1))
        assert message in str(ei.value)
    # cast=True converts the int32 ids, as predict(cast=True) does
    out = collect(dray.score(ray.data.from_arrow(cases[1][0]), model, actors=1, keep=[], cast=True))
    np.testing.assert_array_equal(out["score"].to_numpy(), model.predict(small))


def test_ray_argument_errors_and_missing_ray(local_ray, criteo, monkeypatch):
    ds = ray.data.from_arrow(criteo.table.slice(0, 10))
    with pytest.raises(ValueError, match="actors"):
        dray.score(ds, criteo.model_path, actors=0)
    with pytest.raises(ValueError, match="threads"):
        dray.score(ds, criteo.model_path, threads_per_actor=0)
    with pytest.warns(RuntimeWarning, match="reserve all 3 CPUs"):
        dray.score(ds, criteo.model_path, actors=3)  # lazy: nothing runs
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"dpn_infer\[ray\]"):
        dray.score(ds, criteo.model_path)


def test_offline_doc_ray_example_runs(local_ray, tmp_path, monkeypatch):
    """docs/offline.md's Ray Data example, after the page's plain examples (it reuses the cluster)."""
    from helpers import docs

    monkeypatch.chdir(tmp_path)
    assert docs.run("offline.md", tags=("", "ray")) >= 6
