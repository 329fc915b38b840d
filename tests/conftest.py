"""Shared fixtures. Test helpers (strategies, hand-built files, the numpy spec interpreter) live in
tests/helpers/ and are imported as ``helpers.*``."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import pytest

# .ci/run sets DPN_REQUIRE_DATA=1 where ../shared/data is present: a real-data test that skips for
# want of its data set is then a failure (a data folder renamed or moved must not pass quietly).
_REQUIRE_DATA = os.environ.get("DPN_REQUIRE_DATA") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if _REQUIRE_DATA and rep.skipped and "shared/data" in str(rep.longrepr):
        rep.outcome = "failed"
        rep.longrepr = f"DPN_REQUIRE_DATA=1 but the test skipped: {rep.longrepr}"

# Tests run from the checkout, whose dpn_infer/ has no compiled extension: child processes started
# with `python -c` must import the installed package, not the source folder in their cwd.
os.environ["PYTHONSAFEPATH"] = "1"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _importable_engine():
    """Where dpn_infer._engine is found, or None. `python -m pytest` from the checkout puts the
    checkout first on sys.path, and its dpn_infer/ has no compiled engine unless it was installed
    editable (`pip install -e .`): then an installed dpn_infer elsewhere is used instead."""
    spec = importlib.util.find_spec("dpn_infer._engine")
    if spec is not None:
        return spec.origin
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
    for name in [m for m in sys.modules if m == "dpn_infer" or m.startswith("dpn_infer.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    spec = importlib.util.find_spec("dpn_infer._engine") if importlib.util.find_spec("dpn_infer") else None
    return spec.origin if spec is not None else None


ENGINE = _importable_engine()


def pytest_configure(config):
    if ENGINE is None:  # one clear error instead of an ImportError in every test file
        raise pytest.UsageError(
            f"the tests need dpn_infer with its compiled engine, and none is importable here. "
            f"Contributors: `pip install -e \".[test]\"` in {ROOT}, then `pytest` (see CONTRIBUTING.md).")


def pytest_report_header(config):
    return f"dpn_infer engine: {ENGINE}"


class TinyFile:
    """A hand-built model.bin (helpers.files.tiny_model) on disk, with its metadata and tensors."""

    def __init__(self, path, meta, tensors):
        self.path = path
        self.meta = meta
        self.tensors = tensors


def _write_tiny(tmp_path_factory, name, mutate=None):
    from helpers import files as HF

    meta, tensors = HF.tiny_model(0)
    if mutate:
        mutate(meta, tensors)
    p = tmp_path_factory.mktemp("tiny") / name
    p.write_bytes(HF.build(meta, tensors))
    return TinyFile(str(p), meta, tensors)


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory):
    """Fields: user (sparse, hash, vocab 7), tags (multi_hot, oov_bucket, mean, max_len 4),
    item (sparse, error, vocab 4), price (dense dim 1), ctx (dense dim 3)."""
    return _write_tiny(tmp_path_factory, "tiny.bin")


@pytest.fixture(scope="session")
def tiny_model(tiny_file):
    from dpn_infer.engine import load

    return load(tiny_file.path)


@pytest.fixture(scope="session")
def tiny_err_file(tmp_path_factory):
    """tiny_model with field 'tags' under policy 'error' (and sum pooling)."""

    def mutate(meta, tensors):
        f = next(f for f in meta["schema"]["fields"] if f["name"] == "tags")
        f["policy"] = "error"
        f["pooling"] = "sum"
        tensors["emb.tags"] = tensors["emb.tags"][:5].copy()

    return _write_tiny(tmp_path_factory, "tiny_err.bin", mutate)


@pytest.fixture(scope="session")
def tiny_err_model(tiny_err_file):
    from dpn_infer.engine import load

    return load(tiny_err_file.path)


@pytest.fixture(scope="session")
def criteo(tmp_path_factory):
    """criteo-10k's train split as Parquet and a small model (helpers/offline.py; Ray and Spark tests)."""
    from helpers import offline

    return offline.criteo_case(tmp_path_factory.mktemp("criteo"))


@pytest.fixture(scope="session")
def movielens(tmp_path_factory):
    """MovieLens-100K's test split (history list columns) as Parquet and a seq-dpn (helpers/offline.py)."""
    from helpers import offline

    return offline.movielens_case(tmp_path_factory.mktemp("movielens"))
