"""Score a Ray Data ``Dataset`` with a dpn_infer model: one model per actor, Arrow batches.

Needs the ``ray`` extra (``pip install "dpn_infer[ray]"``); Ray is imported only when a function
here is called. Two ways in:

- ``score(ds, model, actors=2, threads_per_actor=1)``: the whole step, returning a lazy Dataset of
  the kept columns plus a float32 score column;
- ``Scorer``: the callable class for ``ds.map_batches(Scorer, fn_constructor_kwargs={"model": ...},
  batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=...))``, for pipelines that set
  the options themselves.

A model is given as a path (loaded on the driver by ``score``, which then ships its bytes), bytes,
a ``Model`` or a Ray ``ObjectRef`` to either: its bytes travel through Ray's object store, so no
worker needs to see the driver's files.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

from ._scoring import as_model, need, score_batch  # pyarrow missing: an ImportError naming the extra

__all__ = ["Scorer", "score"]


def _ray():
    need("ray", "ray[data]", "ray", "ray.data")  # ray without its [data] part has no ray.data
    import ray

    return ray


def _as_model(model):
    if type(model).__name__ == "ObjectRef":  # resolved here, in the actor, from the object store
        model = _ray().get(model)
    return as_model(model)


class Scorer:
    """The map_batches callable: ``Scorer(model, threads=1, keep=None, output="score",
    logits=False, cast=False, allow_nan=False)``, built once per actor. Each call takes a
    pyarrow Table (``batch_format="pyarrow"``) and returns a pyarrow Table: the ``keep`` columns
    (all when None) and ``output``, float32. Errors in the data raise the engine's InputError,
    which Ray hands to the driver."""

    def __init__(self, model: Any, *, threads: int = 1, keep: Sequence[str] | None = None,
                 output: str = "score", logits: bool = False, cast: bool = False,
                 allow_nan: bool = False) -> None:
        from .engine import _check_threads

        self.model = _as_model(model)
        self.options = dict(threads=_check_threads(threads), keep=None if keep is None else list(keep),
                            output=output, logits=logits, cast=cast, allow_nan=allow_nan)

    def __call__(self, batch):
        return score_batch(self.model, batch, **self.options)


def score(ds, model: Any, *, actors: int = 2, threads_per_actor: int = 1, batch_size: int = 8192,
          keep: Sequence[str] | None = None, output: str = "score", logits: bool = False,
          cast: bool = False, allow_nan: bool = False, scorer: type = Scorer):
    """``ds`` (a ray.data.Dataset holding the model's fields as columns) scored by ``model`` on
    ``actors`` actors of ``threads_per_actor`` intra-op threads (and as many CPUs reserved) each,
    in batches of up to ``batch_size`` rows. Returns a lazy Dataset: the ``keep`` columns (all
    when None) plus ``output`` (float32), rows in no set order (keep an id column to join on).

    ``model``: a path (loaded and checked here, on the driver), bytes, a Model or an ObjectRef;
    put in the object store once for all actors. An actor that dies (its process killed, its node
    lost) is restarted and its unfinished batches rerun, the lost attempts' output dropped, so every
    row comes out exactly once; an error in the data (InputError) is not retried: the driver's
    exception (a Ray UserCodeException) carries its message. ``scorer``: the callable class, a
    Scorer subclass to add to each batch's work (it takes Scorer's arguments)."""
    ray = _ray()
    from .engine import _check_threads

    _check_threads(threads_per_actor)
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"actors must be a positive integer, got {actors!r}")
    if not ray.is_initialized():
        ray.init()
    cpus = ray.cluster_resources().get("CPU", 0)
    if actors * threads_per_actor >= cpus:
        # The actors hold every CPU for the whole job, so the read tasks that feed them never start.
        warnings.warn(f"{actors} actor(s) x {threads_per_actor} thread(s) reserve all {cpus:g} CPUs of the Ray "
                      "cluster: a Dataset read by Ray tasks (read_parquet, ...) then waits forever unless "
                      "the cluster grows; leave a CPU for the reads", RuntimeWarning, stacklevel=2)
    ref = model if type(model).__name__ == "ObjectRef" else ray.put(_as_model(model))
    return ds.map_batches(
        scorer, fn_constructor_kwargs=dict(model=ref, threads=threads_per_actor, keep=keep, output=output,
                                           logits=logits, cast=cast, allow_nan=allow_nan),
        batch_format="pyarrow", batch_size=batch_size, num_cpus=threads_per_actor,
        # Ray Data's actor pools restart a dead actor and rerun its tasks: max_restarts and
        # max_task_retries default to -1 there (passing them as map_batches' remote args warns as
        # deprecated in Ray 2.60). tests/test_ray.py kills an actor mid-job to hold Ray to it.
        compute=ray.data.ActorPoolStrategy(size=actors))
