"""Training: a short run whose model.bin scores the test split exactly as PyTorch does, early
stopping, shipped configs, and `dpn-infer train` / `dpn-infer eval` end to end on tiny data."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dpn_infer  # noqa: E402
from dpn_infer import cli  # noqa: E402
from dpn_infer import train as T  # noqa: E402
from dpn_infer.datasets import find_shared_data, load_dataset  # noqa: E402
from dpn_infer.metrics import auc  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic", rows=3000, seed=5)


@pytest.mark.parametrize("kind", ["feature-dpn", "feature-dpn-full", "dnn", "crossnet", "field-dpn"])
def test_short_run_engine_auc_equals_torch(tiny, tmp_path, kind):
    cfg = T.load_config("synthetic")
    if kind == "feature-dpn-full":          # the full (materialized W(z)) form, context: one field
        kind = "feature-dpn"
        cfg["models"]["feature-dpn"]["layers"] = [
            {"out": 16, "dynamic": True, "context": ["category"], "hidden": 4}, {"out": 8}]
    model = T.build_model(kind, tiny.schema, cfg, seed=5)
    # lr 1e-2: one epoch spreads the scores, so no two test rows are within float32 rounding
    # of each other (near-ties could swap order between PyTorch and the engine)
    res = T.train(model, tiny, epochs=1, batch_size=256, lr=1e-2, seed=5, out=tmp_path,
                  progress=False, log=None)
    assert res["epochs_run"] == 1 and res["best_epoch"] == 1
    for name in ("model.bin", "checkpoint.pt", "train_info.json"):
        assert (tmp_path / name).is_file()
    eng = dpn_infer.load(tmp_path / "model.bin")
    p_eng = eng.predict(tiny.test.features)
    p_torch = T.predict(model, tiny.test)
    a_eng, a_torch = auc(tiny.test.labels, p_eng), auc(tiny.test.labels, p_torch)
    assert abs(a_eng - a_torch) < 1e-6
    assert abs(res["engine_test"]["auc"] - res["test"]["auc"]) < 1e-6
    assert abs(res["test"]["auc"] - auc(tiny.test.labels, T.predict(model, tiny.test, logits=True))) < 1e-12
    # the checkpoint rebuilds the same model
    from dpn_infer.nn import load_checkpoint

    again = load_checkpoint(tmp_path / "checkpoint.pt")
    np.testing.assert_allclose(T.predict(again, tiny.test), p_torch, rtol=0, atol=1e-6)
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["hyper"]["seed"] == 5 and info["test"]["auc"] == res["test"]["auc"]


@pytest.mark.skipif(find_shared_data("movielens-100k") is None, reason="../shared/data not present")
def test_movielens_one_epoch_dnn_engine_matches(tmp_path):
    ds = load_dataset("movielens-100k", seed=1)
    model = T.build_model("dnn", ds.schema, T.load_config("movielens"), seed=1)
    res = T.train(model, ds, epochs=1, batch_size=1024, seed=1, out=tmp_path, progress=False, log=None)
    assert res["test"]["auc"] > 0.75              # one epoch already ranks far above chance
    assert abs(res["engine_test"]["auc"] - res["test"]["auc"]) < 1e-6
    assert res["engine_max_abs_diff"] < 1e-5


def test_early_stopping_restores_best(tiny, monkeypatch):
    seq = iter([0.60, 0.70, 0.65, 0.64, 0.99])
    real = T.auc
    calls = {"n": 0}

    def fake_auc(y, p):
        calls["n"] += 1
        return next(seq) if calls["n"] <= 4 else real(y, p)

    monkeypatch.setattr(T, "auc", fake_auc)
    model = T.build_model("dnn", tiny.schema, T.load_config("synthetic"), seed=0)
    res = T.train(model, tiny, epochs=10, batch_size=512, seed=0, patience=2, progress=False, log=None)
    assert res["epochs_run"] == 4 and res["best_epoch"] == 2


def test_seed_makes_runs_repeatable(tiny):
    out = []
    for _ in range(2):
        m = T.build_model("dnn", tiny.schema, T.load_config("synthetic"), seed=9)
        out.append(T.train(m, tiny, epochs=1, batch_size=512, seed=9, progress=False, log=None))
    assert out[0]["test"] == out[1]["test"]


def test_configs_ship_and_load(tmp_path):
    names = T.config_names()
    assert {"movielens", "criteo", "frappe", "ml-tag", "synthetic"} <= set(names)
    for n in names:
        c = T.load_config(n)
        assert c["embed_dim"] == 16 and c["train"]["lr"] == 1e-3
        assert {"dnn", "crossnet", "feature-dpn"} <= set(c["models"]) and c["guessed"]
    assert T.load_config("criteo")["models"]["dnn"]["hidden"] == [400, 400, 400]
    assert (resources.files("dpn_infer.configs") / "movielens.json").is_file()
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(T.load_config("movielens")))
    assert T.load_config(str(p)) == T.load_config("movielens")
    with pytest.raises(FileNotFoundError, match="shipped"):
        T.load_config("no-such-config")


@pytest.mark.parametrize("config", ["synthetic", "movielens", "criteo", "frappe", "ml-tag"])
def test_field_dpn_from_every_shipped_config(tiny, config):
    """Every shipped config has a field-dpn section that builds (the synthetic schema has a dense
    field of dim 1: it is projected to a field row)."""
    model = T.build_model("field-dpn", tiny.schema, T.load_config(config), seed=1)
    assert type(model).__name__ == "FieldDPN" and len(model.field_layers) >= 1


@pytest.mark.parametrize("model", ["feature-dpn", "field-dpn"])
def test_cli_train_then_eval(tmp_path, capsys, model):
    out = tmp_path / "run"
    rc = cli.main(["train", "--dataset", "synthetic", "--rows", "2000", "--model", model,
                   "--epochs", "1", "--batch-size", "256", "--seed", "3", "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    info = json.loads((out / "train_info.json").read_text())
    assert info["dataset"] == "synthetic" and info["seed"] == 3
    assert info["loader_options"] == {"rows": 2000}
    capsys.readouterr()
    assert cli.main(["eval", str(out / "model.bin"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rows"] == 200 and res["seed"] == 3
    assert abs(res["auc"] - info["test"]["auc"]) < 1e-6
    assert abs(res["logloss"] - info["test"]["logloss"]) < 1e-5
    assert cli.main(["eval", str(out / "model.bin")]) == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "PyTorch at training time" in text


@pytest.mark.parametrize("impl", ["auto", "paper"])
def test_cli_train_impl(tmp_path, monkeypatch, impl):
    """--impl reaches every dynamic layer before training (auto when not given) and train_info.json."""
    from dpn_infer.nn.dylinear import ImplChoice

    seen, real_train = [], T.train

    def spy(model, *a, **kw):
        seen.append({m.impl for m in model.modules() if isinstance(m, ImplChoice)})
        return real_train(model, *a, **kw)

    monkeypatch.setattr(T, "train", spy)
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--rows", "600", "--model", "field-dpn", "--epochs", "1",
            "--batch-size", "256", "--out", str(out), "--no-progress"]
    assert cli.main(args + (["--impl", impl] if impl != "auto" else [])) == 0
    assert seen == [{impl}]
    assert json.loads((out / "train_info.json").read_text())["impl"] == impl
    with pytest.raises(SystemExit):
        cli.main(args + ["--impl", "bmm"])


def test_cli_eval_needs_a_dataset(tmp_path, capsys):
    model = T.build_model("dnn", load_dataset("synthetic", rows=300).schema, T.load_config("synthetic"))
    dpn_infer.save(model, tmp_path / "model.bin")
    assert cli.main(["eval", str(tmp_path / "model.bin")]) == 2
    assert "--dataset" in capsys.readouterr().err


def test_metrics_rank_logits_not_saturated_probabilities():
    y = np.array([1, 0, 1, 0], dtype=np.float32)
    z = np.array([25.0, 20.0, -20.0, -25.0], dtype=np.float32)
    p32 = torch.sigmoid(torch.from_numpy(z)).numpy()
    assert p32[0] == p32[1] == 1.0                      # float32 saturation: a false tie
    assert auc(y, p32) == 0.625
    assert T.evaluate_logits(y, z)["auc"] == 0.75       # the true ranking
    # logloss clips probabilities to [1e-7, 1 - 1e-7] (dpn_infer.metrics.logloss)
    expected = np.mean([np.log1p(np.exp(-25.0)), -np.log(1e-7), -np.log(1e-7), np.log1p(np.exp(-25.0))])
    assert abs(T.evaluate_logits(y, z)["logloss"] - expected) < 1e-6
