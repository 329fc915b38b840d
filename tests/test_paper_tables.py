"""The pure parts of the paper-protocol runner (bench/paper_tables.py, bench/accuracy.py): the paper's
numbers, the protocol definitions (every model builds, with the parameter count it states), mean /
std, table formatting, the ordering comparison and the report section writer. One training run of a
few hundred rows checks the runner's record (engine AUC against PyTorch's)."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.append(str(BENCH))     # paper_tables; appended: bench/ has run.py, ab.py, ... that must not shadow anything

import paper_tables as P  # noqa: E402


_ACC = []


def _accuracy():
    """bench/accuracy.py as a module, loaded once; the sys.path entries it adds are undone so that
    later tests import dpn_infer as before."""
    if not _ACC:
        saved = list(sys.path)
        try:
            spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH / "accuracy.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        finally:
            sys.path[:] = saved
        _ACC.append(mod)
    return _ACC[0]


# Schemas with the field names and dims of the shared data (vocab sizes do not change the
# non-embedding parameter counts the protocols state).
def _schema(dataset, sequences=True):
    if dataset == "ml-tag":
        return [{"name": n, "kind": "sparse", "vocab": 50, "dim": 10, "policy": "oov_bucket"}
                for n in ("user", "movie", "tag")]
    if dataset == "criteo":
        return [{"name": n, "kind": "sparse", "vocab": 20, "dim": 10, "policy": "oov_bucket"}
                for n in [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]]
    if dataset == "frappe":     # libfm: 10 one-hot fields f0..f9
        return [{"name": f"f{i}", "kind": "sparse", "vocab": 20, "dim": 10, "policy": "oov_bucket"}
                for i in range(10)]
    assert dataset == "movielens-100k"
    d = 16 if sequences else 10     # the sequence protocol's embedding 16, Table 1's 10
    s = [{"name": n, "kind": "sparse", "vocab": 30, "dim": d, "policy": "oov_bucket"}
         for n in ("user", "movie", "age", "gender", "occupation", "zip")]
    s.append({"name": "genres", "kind": "multi_hot", "vocab": 19, "dim": d, "pooling": "mean", "max_len": 6,
              "policy": "error"})
    if not sequences:
        return s
    s += [{"name": "hist_movie", "kind": "multi_hot", "vocab": 30, "dim": 16, "pooling": "mean", "max_len": 20,
           "policy": "oov_bucket"},
          {"name": "hist_genre", "kind": "multi_hot", "vocab": 19, "dim": 16, "pooling": "mean", "max_len": 20,
           "policy": "error"}]
    return s


def test_paper_numbers_lookup():
    assert P.paper_numbers("Table 1", "Feature-based DPN", "criteo") == {"auc": 0.8097, "logloss": 0.4425}
    assert P.paper_numbers("Table 1", "DNN", "ml-tag") == {"auc": 0.9521, "logloss": 0.2576}
    assert P.paper_numbers("Table 2a", "HyperDense", "ml-tag") == {"auc": 0.9524, "logloss": 0.2715,
                                                                    "params": "371k"}
    c = P.paper_numbers("Table 2c", "Field-based DPN (Concat + implicit)", "ml-tag")
    assert c == {"auc": 0.9507, "logloss": 0.2561, "params": "87k", "cpu_s": 95.5}
    assert P.paper_numbers("Table 5", "SDPN", "amazon") == {"auc": 0.8849, "auc_new": 0.8615,
                                                            "auc_infrequent": 0.8590}
    assert P.paper_numbers("Table 1", "DNN", "frappe") is None
    assert P.paper_numbers("Table 9", "DNN", "ml-tag") is None
    # rows the paper prints twice agree (Table 1's MovieLens-tag rows repeat Table 2's)
    assert P.PAPER["Table 1"]["DNN"]["ml-tag"] == P.PAPER["Table 2b"]["Base (2-layer MLP), None"]["ml-tag"][:2]
    assert P.PAPER["Table 1"]["Feature-based DPN"]["ml-tag"] == \
        P.PAPER["Table 2b"]["fc1 + fc2, (x0, x0)"]["ml-tag"][:2]
    assert P.PAPER["Table 1"]["Field-based DPN"]["ml-tag"] == \
        P.PAPER["Table 2c"]["Field-based DPN (Concat + implicit)"]["ml-tag"][:2]


def test_protocol_definitions_are_consistent():
    t1 = {m["key"] for m in P.PROTOCOLS["table1"]["models"]}
    for name, proto in P.PROTOCOLS.items():
        keys = [m["key"] for m in proto["models"]]
        assert len(keys) == len(set(keys)), name
        for m in proto["models"]:
            assert set(m["params"]) <= set(proto["datasets"]), (name, m["key"])
            if m["paper"] is None:      # a model the paper gives no number for: the note says so
                assert "no number" in m["note"], (name, m["key"])
            else:
                table, row = m["paper"]
                assert table == proto["table"] and row in P.PAPER[table], (name, m["key"])
            assert m["lr_from"] is None or m["lr_from"] in t1, (name, m["key"])
            if name != "table1" and "lr" not in proto["setting"]:
                assert m["lr_from"], f"{name}/{m['key']}: no learning rate to use"


def test_protocol_models_build_with_the_params_they_state():
    pytest.importorskip("torch")
    acc = _accuracy()
    seen = {}
    for name, proto in P.PROTOCOLS.items():
        for m in proto["models"]:
            for dataset, want in m["params"].items():
                seq = bool(proto["setting"].get("sequences"))
                sig = (dataset, seq, m["kind"], repr(P.section_for(m, dataset)))
                if sig not in seen:
                    model = acc.build_paper_model(m, dataset, _schema(dataset, seq), proto["setting"]["embed_dim"],
                                                  seed=1)
                    seen[sig] = acc.non_embedding_params(model)
                assert seen[sig] == want, f"{name} / {m['key']} on {dataset}: {seen[sig]} != {want}"


def test_fm_model_is_fm_at_start():
    """The FM entry's second-order part is FM's pairwise sum (fm_operator, frozen generator)."""
    torch = pytest.importorskip("torch")
    acc = _accuracy()
    fm = next(m for m in P.PROTOCOLS["table1"]["models"] if m["kind"] == "fm")
    model = acc.build_paper_model(fm, "ml-tag", _schema("ml-tag"), 10, seed=3)
    with torch.no_grad():
        model.classifier.weight[:, 3:] = 0.0        # drop the first-order part
        model.classifier.bias.zero_()
    batch = {n: torch.tensor([1, 7, 20]) for n in ("user", "movie", "tag")}
    v = model.inputs(batch)
    u, mo, t = v["user"], v["movie"], v["tag"]
    want = (u * mo).sum(1) + (u * t).sum(1) + (mo * t).sum(1)
    torch.testing.assert_close(model.eval()(batch), want, rtol=1e-5, atol=1e-6)
    assert not model.field_layers[0].g2_weight.requires_grad


def test_mean_std_and_formatting():
    m, s = P.mean_std([0.5, 0.7, 0.6])
    assert m == pytest.approx(0.6) and s == pytest.approx(0.1)
    assert P.mean_std([0.8]) == (0.8, 0.0)
    with pytest.raises(ValueError):
        P.mean_std([])
    assert P.fmt_ms(0.75, 0.0123) == "0.7500 ± 0.0123"
    assert [P.fmt_params(n) for n in (34, 2_731, 101_101, 1_750_329)] == ["34", "2.7k", "101k", "1.75M"]
    assert P.markdown_table(["a", "b"], [["x", 1]]) == ["| a | b |", "| --- | ---: |", "| x | 1 |"]


def test_compare_and_kendall():
    assert P.compare((0.80, 0.001, 5), (0.70, 0.001, 5)) == ">"
    assert P.compare((0.70, 0.001, 5), (0.80, 0.001, 5)) == "<"
    assert P.compare((0.80, 0.05, 5), (0.79, 0.05, 5)) == "≈"
    assert P.compare((0.8, 0.0, 1), (0.7, 0.0, 1)) == "?"
    assert P.kendall_tau([3, 2, 1], [30, 20, 10]) == 1.0
    assert P.kendall_tau([3, 2, 1], [10, 20, 30]) == -1.0
    assert P.kendall_tau([3, 2, 1], [20, 30, 10]) == pytest.approx(1 / 3)
    assert math.isnan(P.kendall_tau([1], [1]))
    assert P.rank_order([("a", 0.1), ("b", 0.3), ("c", 0.2)]) == ["b", "c", "a"]


def test_replace_section_keeps_the_rest_byte_for_byte():
    other = "<!-- reduced-precision:begin -->\n\n## RP\n\nx  \n\n<!-- reduced-precision:end -->\n"
    text = "# T\n\n" + other
    t1 = P.replace_section(text, "paper-table1", "## one", before="reduced-precision")
    assert t1.endswith(other) and "<!-- paper-table1:begin -->\n\n## one\n\n<!-- paper-table1:end -->" in t1
    t2 = P.replace_section(t1, "paper-table1", "## two\n")
    assert t2 == t1.replace("## one", "## two")
    t3 = P.replace_section(t2, "paper-sequence", "## seq")          # no anchor: appended
    assert t3.startswith(t2) and t3.rstrip().endswith("<!-- paper-sequence:end -->")
    with pytest.raises(ValueError):
        P.replace_section("<!-- x:begin --> no end", "x", "y")


def _rec(key, label, aucs, dauc=0.0):
    return [{"dataset": "ml-tag", "key": key, "label": label, "kind": "dnn", "lr": 0.01, "seed": i + 1,
             "test_auc": a, "test_logloss": 0.5, "valid_auc": a, "engine_test_auc": a + dauc,
             "engine_dauc": dauc, "engine_max_dp": 1e-7, "engine_flipped_pairs": 0.5 if dauc else 0.0,
             "params": 101_101, "params_total": 200_000, "best_epoch": 3, "epochs_run": 6, "s_epoch": 0.2,
             "cpu_s_epoch": 0.2, "valid_curve": [0.6, a], "seconds": 1.0} for i, a in enumerate(aucs)]


def test_report_section_puts_ours_beside_the_papers():
    acc = _accuracy()
    models = {m["key"]: m for m in P.PROTOCOLS["table2b"]["models"]}
    result = {"ml-tag": [(models["dnn"], 0.01, _rec("dnn", "Base (2-layer MLP)", [0.70, 0.71, 0.72])),
                         (models["feature-dpn"], 0.003, _rec("feature-dpn", "fc1 + fc2, (x0, x0)",
                                                             [0.74, 0.75, 0.76], dauc=1.4e-6)),
                         (models["fc2"], None, [])]}

    class Args:
        argv, threads = ["--protocol", "table2b"], 1

    text = acc.paper_report("table2b", result, Args, 60.0, {"ml-tag": "ml-tag: rows"})
    assert text.startswith("## Table 2b")
    row = next(line for line in text.splitlines() if line.startswith("| fc1 + fc2, (x0, x0) |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["101k", "0.003", "0.7500 ± 0.0100", "0.5000 ± 0.0000", "0.9535"]
    assert cells[6:8] == ["0.2538", "400k"] and cells[-1] == "1.4e-06"
    assert "| fc2, x0 | — | — | not run |" in text
    assert "Of 1 pairs the paper orders, 1 are in the same order here (1 of them" in text
    assert "0.5 (positive, negative) pair(s)" in text and "counts half" in text


def test_report_section_says_unserved_models_have_no_engine_check():
    """A run made while the engine did not serve its model (DIEN, DyJoint runs cached before they
    were served) shows "— (run before the engine served it)" instead of an engine |ΔAUC|, the served models keep theirs, and a model without a paper row
    gets "—" in the paper column."""
    acc = _accuracy()
    models = {m["key"]: m for m in P.PROTOCOLS["sequence"]["models"]}

    def recs(key, aucs, served):
        rs = _rec(key, models[key]["label"], aucs, dauc=2e-6 if served else 0.0)
        for r in rs:
            r["dataset"] = "movielens-100k"
            if not served:
                r.update(served=False, engine_test_auc=None, engine_dauc=None, engine_max_dp=None,
                         engine_flipped_pairs=None)
        return rs

    result = {"movielens-100k": [(models["din"], 1e-3, recs("din", [0.70, 0.71], True)),
                                 (models["dien"], 1e-3, recs("dien", [0.72, 0.73], False)),
                                 (models["dyjoint"], 1e-3, recs("dyjoint", [0.74, 0.75], False))]}

    class Args:
        argv, threads = ["--protocol", "sequence"], 1

    text = acc.paper_report("sequence", result, Args, 60.0, {})
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| D")}
    assert rows["DIN"][-1] == "2.0e-06"
    assert rows["DIEN"][-1] == rows["DyJoint"][-1] == "— (run before the engine served it)"
    assert rows["DIEN"][5] == "0.8675" and rows["DyJoint"][5] == "—"
    assert "No engine check (runs made while the engine did not serve the model, so no model.bin): DIEN, DyJoint." in text
    assert "largest |AUC(engine) − AUC(PyTorch)| 2.0e-06 (movielens-100k, DIN, seed" in text


def test_one_run_records_engine_and_pytorch_auc(tmp_path):
    pytest.importorskip("torch")
    from dpn_infer.datasets import find_shared_data

    if find_shared_data("ml-tag-sample") is None:
        pytest.skip("ml-tag-sample not in ../shared/data")
    acc = _accuracy()
    setting = dict(P.PAPER_SETTING, epochs=1, batch_size=256)
    ds = acc.load_paper_dataset("ml-tag", setting)
    ds.train = ds.train.take(np.arange(512))
    fm = next(m for m in P.PROTOCOLS["table1"]["models"] if m["kind"] == "fm")
    rec = acc.run_paper_one(ds, "ml-tag", fm, setting, 1e-2, 1, tmp_path)
    assert rec["params"] == fm["params"]["ml-tag"] and rec["epochs_run"] == 1
    assert abs(rec["engine_test_auc"] - rec["test_auc"]) == pytest.approx(rec["engine_dauc"])
    assert rec["engine_dauc"] <= 1e-4      # float rounding may reorder a near-tied pair, no more
    assert len(rec["valid_curve"]) == 1 and 0.0 <= rec["test_auc"] <= 1.0


def test_plots_are_skipped_without_matplotlib(tmp_path, monkeypatch):
    acc = _accuracy()
    models = {m["key"]: m for m in P.PROTOCOLS["table2b"]["models"]}
    result = {"ml-tag": [(models["dnn"], 0.01, _rec("dnn", "Base (2-layer MLP)", [0.70, 0.71]))]}
    assert acc.paper_plot("table2b", {"ml-tag": [(models["dnn"], None, [])]}, tmp_path) == "no plot: no runs yet"
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    assert acc.paper_plot("table2b", result, tmp_path).startswith("plots skipped: matplotlib is not installed")
    assert list(tmp_path.iterdir()) == []


def test_data_names_follow_the_setting():
    """MovieLens-100K is read with histories by the sequence protocol and without by Table 1: the
    report names each as loaded."""
    acc = _accuracy()
    seq = P.PROTOCOLS["sequence"]["setting"]
    t1 = P.PROTOCOLS["table1"]["setting"]
    assert "histories" in acc.data_name("movielens-100k", seq)
    assert "histories" not in acc.data_name("movielens-100k", t1)
    assert acc.data_name("frappe", t1).startswith("frappe")
    assert set(P.PROTOCOLS["table1"]["datasets"]) <= set(acc.DATA_NAMES)
