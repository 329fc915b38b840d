"""bench/run.py's peers on the Kronecker-form export and its size / load-time columns: the plumbing,
on a small ml1m-shaped model (nothing is timed here; speed is bench/'s business).

ort-kron-int8 (ONNX Runtime's dynamic int8 quantization of the export) must score like the float32
export: weights quantized per tensor to 255 levels and activations per call, its logits stay within
2% of the float32 ones' largest magnitude on this model (seen: 0.35%; a misquantized graph moves them
by as much as they are). OpenVINO is an optional bench dependency that CI does not install: where
it is missing the ov-* runners must say so; where it is installed, ov-kron must give the float32
export's logits (rtol 1e-4 / atol 1e-5, as tests/test_onnx.py: float32 both, summed in another order).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"
PEERS = ["engine", "ort-kron", "ort-kron-int8", "ov-kron", "ov-kron-bf16"]


@pytest.fixture(scope="module")
def bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.VOCAB = 500   # small tables: the export and the quantizer take a fraction of a second
    return mod


@pytest.fixture(scope="module")
def runners(bench_run, tmp_path_factory):
    return bench_run.Runners("ml1m", tmp_path_factory.mktemp("bench"), PEERS)


def _openvino_installed():
    return importlib.util.find_spec("openvino") is not None


def _logits(out):
    return np.asarray(out[0] if isinstance(out, list) else next(iter(out.values()))).reshape(-1)


def test_int8_export_is_smaller_and_scores_like_fp32(bench_run, runners):
    assert runners.files["ort-kron"] == runners.files["ov-kron"]   # one export for every kron peer
    assert runners.model_bytes("ort-kron-int8") < 0.5 * runners.model_bytes("ort-kron")
    batch = bench_run.make_batch("ml1m", 64, np.random.default_rng(3))
    fp32, load32 = runners.get("ort-kron", 1)
    int8, load8 = runners.get("ort-kron-int8", 1)
    assert load32 > 0 and load8 > 0
    a, b = _logits(fp32(batch)), _logits(int8(batch))
    assert a.shape == (64,) and np.abs(a).max() > 1e-3
    assert np.abs(a - b).max() < 0.02 * np.abs(a).max()


def test_openvino_runners_run_or_say_why(bench_run, runners):
    if not _openvino_installed():
        for name in ("ov-kron", "ov-kron-bf16"):
            assert "openvino is not installed" in runners.skipped[name]
        return
    assert "ov-kron" not in runners.skipped
    batch = bench_run.make_batch("ml1m", 16, np.random.default_rng(4))
    ov, load = runners.get("ov-kron", 1)
    ref, _ = runners.get("ort-kron", 1)
    assert load > 0
    np.testing.assert_allclose(_logits(ov(batch)), _logits(ref(batch)), rtol=1e-4, atol=1e-5)


def test_records_and_tables(bench_run):
    """measure_config's records carry model_bytes and load_s, a skipped runner its reason; the summary
    gains the precision table (engine ÷ peer at the same precision) and the files table."""
    rec = {"batch": 16, "threads": 2, "samples_per_s": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0,
           "pct_fma_peak": 50.0, "pct_read_limit": 1.0, "load_s": 0.25}
    records = [dict(rec, config="ml1m", runner="engine", model_bytes=2**20),
               dict(rec, config="ml1m", runner="ort-kron", samples_per_s=500.0, model_bytes=2**21),
               dict(rec, config="ml1m", runner="engine-int8", samples_per_s=1200.0, model_bytes=2**18),
               dict(rec, config="ml1m", runner="ort-kron-int8", samples_per_s=400.0, model_bytes=2**19),
               {"config": "ml1m", "batch": 16, "threads": 2, "runner": "ov-kron", "model_bytes": 2**21,
                "skipped": "openvino is not installed"}]
    text = bench_run.summarize(records)
    assert "| engine ÷ ort-kron | engine ÷ ov-kron | engine-int8 ÷ ort-kron-int8 |" in text
    assert "| ml1m | 16 | 2 | 1,000 | 500 | skipped | 1,200 | 400 | 2.00 | skipped | 3.00 |" in text
    assert "| ml1m | 2 | ort-kron-int8 | 0.50 | 0.250 |" in text
    assert "| ml1m | 2 | ov-kron | 2.00 | openvino is not installed |" in text


def test_missing_openvino_is_reported(bench_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)   # import openvino -> ImportError
    assert "pip install dpn_infer[bench]" in bench_run.openvino_missing("ov-kron")


def test_dyjoint_ort_kron_runner_scores_like_the_engine(tmp_path, monkeypatch):
    """bench/dyjoint.py's ort-kron runner on a tiny DyJoint: the export is fed the sessions that
    presegment builds from the engine's [B, T] ids and timestamps, and its logits are the engine's
    within 1e-5 (float32 both, summed in another order); the FLOP count covers every part."""
    import json

    spec = importlib.util.spec_from_file_location("bench_dyjoint", BENCH.parent / "dyjoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "VOCAB", 50)
    monkeypatch.setitem(mod.CONFIGS, "tiny", {"fields": 4, "dim": 4, "mlp": [8, 4], "S": 3, "L": 4,
                                              "T": 20, "dense": 3, "heads": 2, "l": 2})
    out = tmp_path / "r.json"
    mod.main(["--config", "tiny", "--batches", "1,9", "--seconds", "0", "--runners", "engine,ort-kron",
              "--request", "1x7,2x3", "--json", str(out)])
    res = json.loads(out.read_text())
    rows = res["rows"]
    # Requests: the user's part once (shared=) gives the broadcast batch's logits (float32, the same
    # kernels on other row counts: 1e-5).
    assert [(r["users"], r["candidates"]) for r in res["requests"]] == [(1, 7), (2, 3)]
    for r in res["requests"]:
        assert r["max_abs_shared_vs_broadcast"] < 1e-5 and r["shared_p50_ms"] > 0 and r["x_ort"] > 0
    assert [r["batch"] for r in rows] == [1, 9]
    for r in rows:
        assert r["ort_max_abs_logit_diff"] < 1e-5 and r["ort_p50_ms"] > 0 and "torch_p50_ms" not in r
        assert set(r["mflop_by_part"]) == {"encoder", "decoder", "field", "dymlp"}
        assert all(v > 0 for v in r["mflop_by_part"].values()) or r["behaviours_per_row"] == 0
    assert rows[1]["behaviours_per_row"] > 0

    batch = mod.make_batch("tiny", 9, np.random.default_rng(1))
    pre, lengths = mod.presegment(mod.build("tiny"), batch)
    assert "hist_time" not in pre and pre["hist_item"].shape == pre["hist_cat"].shape == (9, 3, 4)
    np.testing.assert_array_equal((pre["hist_item"] != -1).sum(2), lengths)
