"""The ONNX fallback (converters/onnx_export.py, `dpn-convert --onnx`, docs/onnx.md): every model family
exported in Kronecker form runs in ONNX Runtime and gives the engine's logits on batches whose size and
multi-hot / sequence widths differ from the export's example, with no warning or log line from the
exporter; the CLI writes the same graph.

Tolerance: rtol 1e-4 / atol 1e-5 on logits, the engine parity criterion (tests/test_parity.py): both
sides are float32, and the Kronecker form sums each dynamic layer's m·(l+1) products in another order
than the engine's kernels, so the two differ by float32 rounding only."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")   # torch.onnx.export(dynamo=True) translates with it

import dpn_infer  # noqa: E402
from dpn_infer import nn as dnn  # noqa: E402
from dpn_infer.converters.onnx_export import export_onnx, sample_batch  # noqa: E402
from helpers import models as HM  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)
MAX_LEN = 6     # "genre" (multi-hot) refuses more ids per row; "hist" (sequence) keeps that many


def _flat_schema():
    return dnn.Schema([
        dnn.SparseField("user", 30, 4),                                           # hash
        dnn.MultiHotField("genre", 19, 4, pooling="mean", max_len=MAX_LEN, policy="oov_bucket"),
        dnn.SparseField("item", 12, 4, policy="error"),
        dnn.DenseField("feat", 4),
        dnn.DenseField("price", 1),
        dnn.MultiHotField("tags", 7, 4, pooling="sum"),                           # no max_len
        dnn.SparseField("cat", 5, 4),       # the name of aten.cat's output inside the exported graph
    ])


def _seq_schema(truncate):
    return dnn.Schema([
        dnn.SparseField("item", 30, 4),
        dnn.SparseField("kind", 5, 2, policy="error"),
        dnn.SparseField("user", 9, 3, policy="oov_bucket"),
        dnn.SequenceField("hist", 30, 4, MAX_LEN, truncate=truncate, table="item"),
        dnn.SequenceField("hist_kind", 5, 2, MAX_LEN, policy="error", truncate=truncate, table="kind"),
        dnn.MultiHotField("tags", 7, 3, pooling="sum"),
    ])


SEQ = dict(sequence=["hist", "hist_kind"], candidate=["item", "kind"])


def _dyn(out, **kw):
    return dnn.LayerSpec(out, dynamic=True, **kw)


_FIELD = dict(aggregation="attention", hidden=3, attention_hidden=5)
MODELS = {
    # FeatureDPN with each context kind (x0, prev, a field list), both DyLinear forms, heads
    "feature_x0": lambda: dnn.FeatureDPN(_flat_schema(), [_dyn(8), _dyn(6, heads=2), 5], norm="layernorm"),
    "feature_prev_decomp": lambda: dnn.FeatureDPN(
        _flat_schema(), [10, _dyn(6, context="prev", form="decomp", rank=3, w0=True, sigma="softmax")]),
    "feature_fields_linear": lambda: dnn.FeatureDPN(
        _flat_schema(), [_dyn(8, context=["genre", "price"], generator="linear")], norm="batchnorm"),
    "dnn": lambda: dnn.DNN(_flat_schema(), [9, 5], activation="tanh"),
    "crossnet": lambda: dnn.CrossNet(_flat_schema(), num_cross=2, hidden=[7]),
    "field_stacked": lambda: dnn.FieldDPN(
        _flat_schema(), [dnn.FieldLayerSpec(4, **_FIELD),
                         dnn.FieldLayerSpec(4, aggregation="summation", context="prev", implicit=True)],
        layers=[_dyn(5)], norm="layernorm", residual=True),
    "field_parallel": lambda: dnn.FieldDPN(
        _flat_schema(), [dnn.FieldLayerSpec(3, aggregation="concat", context=["user", "genre"],
                                            shared=True),
                         dnn.FieldLayerSpec(3, dynamic=False, implicit=True)],
        layers=[6], combine="parallel"),
    "seqdpn": lambda: dnn.SeqDPN(_seq_schema(False), **SEQ, heads=2, layers=[8]),
    "seqdpn_truncate": lambda: dnn.SeqDPN(_seq_schema(True), **SEQ, encoder=["homo_dpo"],
                                          homo_generator="se", decoder=["hetero_dpo"], layers=[_dyn(6)]),
    "din_heter": lambda: dnn.DINHeter(_seq_schema(True), **SEQ, layers=[6]),
    # Table 15's separable + SE generators and Conv1D encoder
    "seqdpn_sep_conv1d": lambda: dnn.SeqDPN(_seq_schema(False), **SEQ, encoder=["homo_dpo", "conv1d"],
                                            homo_generator="sep", hetero_generator="sep", se_ratio=2,
                                            decoder=["hetero_dpo"], layers=[6]),
}


def _model(name):
    torch.manual_seed(0)
    m = MODELS[name]()
    HM.randomize_(m, 7)
    return m.eval()


def _batch(schema, B, width, seed):
    """Padded ids (-1 anywhere, whole rows of it too) with out-of-range ids under hash / oov_bucket;
    `width` ids per row for every multi-hot and sequence field (at most max_len where it refuses more)."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in schema:
        if f.kind == "dense":
            out[f.name] = rng.standard_normal((B, f.dim)).astype(np.float32)
            continue
        lo, hi = (0, f.vocab) if f.policy == "error" else (-3 * f.vocab, 3 * f.vocab)
        if f.kind == "sparse":
            out[f.name] = rng.integers(lo, hi, B, dtype=np.int64)
            continue
        w = width if f.kind == "multi_hot" and f.max_len == 0 or getattr(f, "truncate", False) \
            else min(width, f.max_len)
        ids = rng.integers(lo, hi, (B, w), dtype=np.int64)
        ids[rng.random((B, w)) < 0.3] = -1
        ids[::5] = -1
        out[f.name] = ids
    return out


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _engine(model, tmp_path):
    p = tmp_path / "model.bin"
    dpn_infer.save(model, p)
    return dpn_infer.load(p)


def _export_quietly(model, path, capfd, caplog, **kw):
    """export_onnx, asserting that it emitted no warning, no log record and printed nothing."""
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        axes = export_onnx(model, path, **kw)
    out, err = capfd.readouterr()
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert (out, err) == ("", "")
    return axes


# (rows, ids per row): batch 1, odd sizes, widths below, at and past the example's 3 and MAX_LEN
CASES = [(1, 1), (7, 2), (33, 6), (2, 9), (5, 0)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_engine(name, tmp_path, capfd, caplog):
    model = _model(name)
    axes = _export_quietly(model, tmp_path / "m.onnx", capfd, caplog)
    schema = model.schema
    want = {f.name: ["batch", f.dim] if f.kind == "dense" else
            ["batch", f"{f.name}_len"] if f.kind in ("multi_hot", "sequence") else ["batch"]
            for f in schema}
    assert axes == {**want, "logit": ["batch"]}
    sess, engine = _session(tmp_path / "m.onnx"), _engine(model, tmp_path)
    assert [i.name for i in sess.get_inputs()] == schema.names
    for k, (B, width) in enumerate(CASES):
        b = _batch(schema, B, width, seed=k)
        (got,) = sess.run(["logit"], b)
        assert got.shape == (B,) and got.dtype == np.float32
        np.testing.assert_allclose(got, engine.predict(b, logits=True), **TOL, err_msg=f"{B} x {width}")


def test_paper_form_has_the_same_axes(tmp_path, capfd, caplog):
    """form="paper" (the benchmark's other peer) goes through the same exporter: widths vary too."""
    model = _model("field_stacked")
    _export_quietly(model, tmp_path / "p.onnx", capfd, caplog, form="paper")
    sess, engine = _session(tmp_path / "p.onnx"), _engine(model, tmp_path)
    for B, width in ((3, 6), (1, 1)):
        b = _batch(model.schema, B, width, seed=B)
        np.testing.assert_allclose(sess.run(None, b)[0], engine.predict(b, logits=True), **TOL)


def test_cli_writes_onnx_and_model_bin(tmp_path, capsys):
    from dpn_infer.converters.cli import main

    model = _model("seqdpn_truncate")
    ck = tmp_path / "ck.pt"
    dnn.save_checkpoint(model, ck)
    assert main([str(ck), "--onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.bin")]) == 0
    out = capsys.readouterr().out
    assert "m.onnx" in out and "m.bin" in out
    assert "logit float32 [batch]: logits" in out and "hist int64 [batch, hist_len]" in out
    b = _batch(model.schema, 9, 11, seed=3)          # wider than max_len: truncated on both sides
    np.testing.assert_allclose(_session(tmp_path / "m.onnx").run(None, b)[0],
                               dpn_infer.load(tmp_path / "m.bin").predict(b, logits=True), **TOL)


def test_cli_onnx_alone_writes_no_model_bin(tmp_path, monkeypatch, capsys):
    from dpn_infer.converters.cli import main

    monkeypatch.chdir(tmp_path)
    dnn.save_checkpoint(_model("dnn"), "ck.pt")
    assert main(["ck.pt", "--onnx", "m.onnx"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt", "m.onnx"]
    assert main(["ck.pt"]) == 0                      # neither given: model.bin, as before
    assert (tmp_path / "model.bin").exists()


def test_graph_refuses_what_the_engine_refuses_by_lookup(tmp_path):
    """An id outside [0, vocab) under policy "error" fails the graph's lookup (a negative one is not
    read from the table's end); a NaN dense value is not checked by the graph and gives a NaN logit
    (the engine refuses both, naming the field: docs/onnx.md)."""
    model = _model("feature_x0")
    export_onnx(model, tmp_path / "m.onnx")
    sess = _session(tmp_path / "m.onnx")
    for bad in (-5, 12):
        b = _batch(model.schema, 4, 3, seed=1)
        b["item"][2] = bad
        with pytest.raises(Exception, match="out of (data )?bounds|indices"):
            sess.run(None, b)
    b = _batch(model.schema, 4, 3, seed=1)
    b["feat"][1, 0] = np.nan
    z = sess.run(None, b)[0]
    assert np.isnan(z[1]) and np.isfinite(np.delete(z, 1)).all()


def test_bad_exports_are_refused_naming_the_cause(tmp_path):
    model = _model("dnn")
    with pytest.raises(ValueError, match="form"):
        export_onnx(model, tmp_path / "m.onnx", form="fast")
    with pytest.raises(TypeError, match="dpn_infer.nn model"):
        export_onnx(torch.nn.Linear(2, 1), tmp_path / "m.onnx")
    ex = sample_batch(model.schema)
    with pytest.raises(ValueError, match="lacks field.*'tags'"):
        export_onnx(model, tmp_path / "m.onnx", {k: v for k, v in ex.items() if k != "tags"})
    ex["user"] = ex["user"].astype(np.float32)      # what the model refuses, under the exporter's page
    with pytest.raises(RuntimeError, match="cannot export DNN to ONNX: ValueError: field 'user': "
                                           "expected int64 ids"):
        export_onnx(model, tmp_path / "m.onnx", ex)
    with pytest.raises(ValueError, match="field named 'logit'"):
        export_onnx(dnn.DNN(dnn.Schema([dnn.DenseField("logit")]), [2]), tmp_path / "m.onnx")


def test_example_of_one_row_and_one_id_keeps_the_axes(tmp_path):
    """Sizes of 1 in the example are not fixed in the graph (torch.export would specialize them
    without Dim.AUTO's size-oblivious tracing)."""
    model = _model("dnn")
    axes = export_onnx(model, tmp_path / "m.onnx", sample_batch(model.schema, rows=1, width=1))
    assert axes["genre"] == ["batch", "genre_len"] and axes["logit"] == ["batch"]
    b = _batch(model.schema, 6, 5, seed=2)
    np.testing.assert_allclose(_session(tmp_path / "m.onnx").run(None, b)[0],
                               _engine(model, tmp_path).predict(b, logits=True), **TOL)


def test_onnx_doc_example_runs(tmp_path, monkeypatch, capsys):
    """docs/onnx.md's example runs as written (its assert compares ONNX Runtime with the engine)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "onnx.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/onnx.md", "exec"), {})
    assert "output logit float32 [batch]: logits" in capsys.readouterr().out
    assert (tmp_path / "model.onnx").exists() and (tmp_path / "model.bin").exists()


def _dyjoint_spec():
    return {"seed": 7, "S": 3, "L": 4, "gap": 30, "dim": 4, "two_seqs": True, "heads": 2,
            "encoder": ["self_attention", "homo_dpo"], "residual": True, "decoder": ["kfatt", "hetero_dpo"],
            "mode": "freq", "gen": "se", "kernel_size": 3,
            "field_layers": [{"out": 4, "aggregation": "attention", "attention_hidden": 4}],
            "layers": [{"out": 8, "dynamic": True}, 5], "interest_dim": None, "dense": 3, "T": 20,
            "pad": 0.3, "shuffle": True}


def test_dyjoint_graph_takes_sessions_and_matches_engine(tmp_path, capfd, caplog):
    """A DyJoint's graph takes its sequence fields pre-segmented [B, S, L] and no timestamps
    (converters/onnx_export.py): on the sessions segment_sessions builds from a [B, T] batch with
    timestamps (unsorted, gaps at the threshold, empty histories, hash-policy ids out of range) it
    gives the logits the engine and the torch module give on that batch."""
    from dpn_infer.nn.sessions import segment_sessions
    from helpers import dyjoint as DJ

    spec = _dyjoint_spec()
    model = DJ.build(spec)
    axes = _export_quietly(model, tmp_path / "m.onnx", capfd, caplog)
    assert axes == {"user": ["batch"], "item": ["batch"], "hist": ["batch", 3, 4], "cat": ["batch"],
                    "hist_cat": ["batch", 3, 4], "visual": ["batch", 3], "logit": ["batch"]}
    sess, engine = _session(tmp_path / "m.onnx"), _engine(model, tmp_path)
    for B in (1, 9):
        b = DJ.make_batch(spec, B, seed=B)
        s = segment_sessions(torch.from_numpy(b["hist"]), torch.from_numpy(b["hist_time"]),
                             spec["gap"], spec["S"], spec["L"])
        pre = {k: v for k, v in b.items() if k != "hist_time"}
        pre["hist"], pre["hist_cat"] = s.ids.numpy(), s.take(torch.from_numpy(b["hist_cat"])).numpy()
        (got,) = sess.run(["logit"], pre)
        np.testing.assert_allclose(got, engine.predict(b, logits=True), **TOL, err_msg=f"B={B}")
        np.testing.assert_allclose(got, DJ.reference(model, b), **TOL, err_msg=f"B={B}")


def test_dyjoint_example_must_be_sessions(tmp_path):
    from helpers import dyjoint as DJ

    spec = _dyjoint_spec()
    model = DJ.build(spec)
    ex = DJ.make_batch(spec, 2, seed=0)             # [B, T] ids with timestamps: not the graph's layout
    with pytest.raises(ValueError, match=r"field 'hist': a DyJoint graph takes sessions \[B, 3, 4\]"):
        export_onnx(model, tmp_path / "m.onnx", ex)


def test_cli_names_a_dyjoint_graphs_session_inputs(tmp_path, capsys):
    from dpn_infer.converters.cli import main
    from helpers import dyjoint as DJ

    ck = tmp_path / "ck.pt"
    dnn.save_checkpoint(DJ.build(_dyjoint_spec()), ck)
    assert main([str(ck), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "hist int64 [batch, 3, 4], cat int64 [batch], hist_cat int64 [batch, 3, 4]" in out
    assert "hist_time" not in out
    assert [i.name for i in _session(tmp_path / "m.onnx").get_inputs()] == \
        ["user", "item", "hist", "cat", "hist_cat", "visual"]
