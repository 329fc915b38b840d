"""Sequence fields: schema, validation and truncation on both sides (dpn_infer.nn and the engine),
shared embedding tables, the modules' own semantics, files the engine must refuse, crafted ragged
offsets, and one sequence model shared by many calling threads."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpn_infer import nn as dnn  # noqa: E402
from dpn_infer.converters import format as F  # noqa: E402
from dpn_infer.converters import torch_export  # noqa: E402
from dpn_infer.engine import InputError, ModelFormatError, load  # noqa: E402
from helpers import models as HM  # noqa: E402

T = 6
I64_MIN = int(np.iinfo(np.int64).min)
I64_MAX = int(np.iinfo(np.int64).max)


def _schema(truncate=False, policy="hash", table=True):
    return dnn.Schema([
        dnn.SparseField("item", 30, 4, policy=policy),
        dnn.SparseField("user", 9, 3),
        dnn.SequenceField("hist", 30, 4, T, policy=policy, truncate=truncate,
                          table="item" if table else None),
    ])


def _model(truncate=False, policy="hash", table=True, **kw):
    torch.manual_seed(0)
    kw = {"encoder": ["self_attention", "homo_dpo"], "decoder": ["target_attention", "hetero_dpo"],
          "heads": 2, "layers": [8], **kw}
    m = dnn.SeqDPN(_schema(truncate, policy, table), ["hist"], ["item"], **kw)
    HM.randomize_(m, 3)
    return m.eval()


def _batch(Tin, B=4, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 30, (B, Tin))
    h[rng.random((B, Tin)) < 0.3] = -1
    return {"item": rng.integers(0, 30, B), "user": rng.integers(0, 9, B), "hist": h}


@pytest.fixture()
def saved(tmp_path):
    def save(model):
        p = tmp_path / "m.bin"
        torch_export.save(model, p)
        return str(p)
    return save


def _both(model, path, batch):
    with torch.no_grad():
        ref = model(batch).numpy()
    z = load(path).predict(batch, logits=True)
    np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-5)
    return z


# -- schema ------------------------------------------------------------------------------------

def test_sequence_field_json_roundtrip_and_opset(saved):
    s = _schema(truncate=True)
    assert dnn.Schema.from_json(s.to_json()) == s
    meta, tensors = F.read(saved(_model(truncate=True)))
    assert meta["opset"] == 2
    f = meta["schema"]["fields"][2]
    assert f == {"name": "hist", "kind": "sequence", "dim": 4, "vocab": 30, "policy": "hash",
                 "max_len": T, "truncate": True, "table": "item"}
    tables = [n for n in tensors if n.startswith("inputs.embeddings")]
    assert tables == ["inputs.embeddings.item.weight", "inputs.embeddings.user.weight"]  # shared once
    tab = {n["op"]: n["params"].get("table") for n in meta["graph"]["nodes"]
           if n["op"] in ("embedding", "seq_embedding") and n["attrs"]["field"] in ("item", "hist")}
    assert tab == {"embedding": "inputs.embeddings.item.weight",
                   "seq_embedding": "inputs.embeddings.item.weight"}


def test_unshared_table_is_its_own(saved):
    m = _model(table=False)
    _, tensors = F.read(saved(m))
    assert "inputs.embeddings.hist.weight" in tensors


@pytest.mark.parametrize("bad,match", [
    (dict(max_len=0), "max_len"), (dict(truncate=1), "truncate"), (dict(table=""), "table"),
])
def test_sequence_field_rejects_bad_attributes(bad, match):
    kw = dict(name="h", vocab=5, dim=2, max_len=3)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        dnn.SequenceField(**kw)


@pytest.mark.parametrize("other,match", [
    (dnn.SparseField("item", 31, 4), "vocab, dim and policy"),
    (dnn.SparseField("item", 30, 5), "vocab, dim and policy"),
    (dnn.SparseField("item", 30, 4, policy="error"), "vocab, dim and policy"),
    (dnn.DenseField("item", 4), "sparse field"),
])
def test_shared_table_must_match(other, match):
    with pytest.raises(ValueError, match=match):
        dnn.Schema([other, dnn.SequenceField("hist", 30, 4, 5, table="item")])
    with pytest.raises(ValueError, match="sparse field"):
        dnn.Schema([dnn.SequenceField("hist", 30, 4, 5, table="nope")])


def test_feature_models_refuse_sequence_fields():
    for cls in (dnn.FeatureDPN, dnn.DNN, dnn.CrossNet):
        with pytest.raises(ValueError, match="sequence field"):
            cls(_schema())


def test_seqdpn_config_roundtrip(tmp_path):
    m = _model()
    path = tmp_path / "ck.pt"
    dnn.save_checkpoint(m, path)
    m2 = dnn.load_checkpoint(path)
    b = _batch(T)
    with torch.no_grad():
        np.testing.assert_array_equal(m(b).numpy(), m2(b).numpy())
    d = dnn.DINHeter(_schema(), ["hist"], ["item"], layers=[4])
    dnn.save_checkpoint(d, tmp_path / "d.pt")
    assert type(dnn.load_checkpoint(tmp_path / "d.pt")) is dnn.DINHeter


# -- lengths, truncation, validation -----------------------------------------------------------

def test_too_long_is_refused_naming_the_field(saved):
    m = _model()
    e = load(saved(m))
    b = _batch(T + 1)
    with pytest.raises(InputError, match="field 'hist'.*max_len 6"):
        e.predict(b)
    with pytest.raises(ValueError, match="field 'hist'.*max_len 6"):
        m(b)


def test_truncation_keeps_the_most_recent(saved):
    m = _model(truncate=True)
    e = load(saved(m))
    rng = np.random.default_rng(1)
    b = _batch(T + 5, B=7, seed=2)
    b["hist"][0] = -1                              # empty
    b["hist"][1, :] = np.arange(T + 5)            # full: the last T ids are kept
    z = _both(m, e._path, b)
    kept = b["hist"].copy()
    same = {k: v.copy() for k, v in b.items()}
    rows = []
    for r in kept:                                # the last T valid ids, oldest first
        v = r[r != -1][-T:]
        rows.append(np.concatenate([v, -np.ones(T - len(v), np.int64)]))
    same["hist"] = np.stack(rows)
    np.testing.assert_allclose(e.predict(same, logits=True), z, rtol=1e-5, atol=1e-6)
    # padding may stand anywhere: the kept ids scattered among -1s over 2T columns
    scattered = {k: v.copy() for k, v in same.items()}
    h = -np.ones((len(z), 2 * T), np.int64)
    for i, r in enumerate(same["hist"]):
        v = r[r != -1]
        pos = np.sort(rng.choice(2 * T, size=len(v), replace=False))
        h[i, pos] = v
    scattered["hist"] = h
    np.testing.assert_allclose(e.predict(scattered, logits=True), z, rtol=1e-5, atol=1e-6)


def test_empty_histories_and_zero_columns(saved):
    m = _model()
    e = load(saved(m))
    for b in (_batch(T), _batch(0)):
        b["hist"][:] = -1
        z = _both(m, e._path, b)
        assert np.all(np.isfinite(z))


def test_error_policy_checks_truncated_ids_too(saved):
    m = _model(truncate=True, policy="error")
    e = load(saved(m))
    b = _batch(T + 2)
    b["hist"] = np.where(b["hist"] < 0, 0, b["hist"])
    b["hist"][0, 0] = 30                           # oldest id: truncated away, still refused
    with pytest.raises(InputError, match="field 'hist'.*id 30"):
        e.predict(b)
    with pytest.raises(ValueError, match="field 'hist'.*id 30"):
        m(b)


@pytest.mark.parametrize("value,match", [
    (np.zeros((4, 3), np.float32), "int64"), (np.zeros(4, np.int64), r"\[B, T\]"),
    (np.zeros((3, 3), np.int64), "rows"),
])
def test_bad_sequence_arrays(saved, value, match):
    e = load(saved(_model()))
    b = _batch(T)
    b["hist"] = value
    with pytest.raises(InputError, match=f"field 'hist'.*{match}"):
        e.predict(b)


# -- module semantics (torch side) -------------------------------------------------------------

def test_homo_dpo_is_the_paper_convolution():
    torch.manual_seed(1)
    mod = dnn.HomoDPO(3, kernel_size=5, hidden=2)
    x = torch.randn(2, 7, 3)
    lengths = torch.tensor([7, 4])
    y = mod(x, lengths)
    for b in range(2):
        L = int(lengths[b])
        K = mod.kernels(x[b:b + 1] * (torch.arange(7) < L)[None, :, None], lengths[b:b + 1])[0]
        for i in range(7):
            want = torch.zeros(3)
            if i < L:
                for t in range(5):
                    p = i + t - 2
                    if 0 <= p < L:
                        want = want + K[t] * x[b, p]
            torch.testing.assert_close(y[b, i], want, rtol=1e-5, atol=1e-6)


def test_padding_never_changes_a_module():
    torch.manual_seed(2)
    x = torch.randn(3, 6, 4)
    q = torch.randn(3, 4)
    lengths = torch.tensor([0, 2, 6])
    junk = x.clone()
    junk[0] = 99.0
    junk[1, 2:] = -50.0
    mods = [dnn.HomoDPO(4), dnn.HomoDPO(4, generator="se", ratio=2), dnn.SelfAttention(4, 2)]
    for mod in mods:
        a, b = mod(x * (torch.arange(6) < lengths[:, None])[..., None], lengths), mod(junk, lengths)
        torch.testing.assert_close(a, b)
        assert torch.all(a[0] == 0) and torch.all(a[1, 2:] == 0)
    ta, het = dnn.TargetAttention(4, 5), dnn.HeteroDPO(4, 4, 3)
    xm = x * (torch.arange(6) < lengths[:, None])[..., None]
    junk_m = junk.clone()
    junk_m[0] = 0
    junk_m[1, 2:] = 0
    torch.testing.assert_close(ta(q, xm, lengths), ta(q, junk_m, lengths))
    torch.testing.assert_close(het(q, x, lengths), het(q, xm, lengths))


def test_seq_models_train_without_nan():
    """Backward through every module, empty histories included."""
    m = _model()
    m.train()
    b = _batch(T, B=8)
    b["hist"][:3] = -1
    loss = m(b).square().mean()
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.all(torch.isfinite(p.grad)), n


# -- files the engine refuses ------------------------------------------------------------------

def _rewrite(path, fn):
    meta, tensors = F.read(path)
    meta = copy.deepcopy(meta)
    tensors = {k: np.array(v) for k, v in tensors.items()}
    fn(meta, tensors)
    F.write(path, meta, tensors)
    return path


def _field(meta, name):
    return next(f for f in meta["schema"]["fields"] if f["name"] == name)


def _node(meta, op):
    return next(n for n in meta["graph"]["nodes"] if n["op"] == op)


@pytest.mark.parametrize("mutate,match", [
    (lambda m, t: _field(m, "hist").update(max_len=0), "max_len"),
    (lambda m, t: _field(m, "hist").update(truncate="yes"), "truncate"),
    (lambda m, t: _field(m, "hist").update(table="user"), "vocab, dim or policy"),
    (lambda m, t: _field(m, "hist").update(table="nope"), "table"),
    (lambda m, t: _field(m, "hist").update(table=3), "table"),
    (lambda m, t: _node(m, "homo_dpo")["attrs"].update(kernel=2), "odd"),
    (lambda m, t: _node(m, "homo_dpo")["attrs"].update(dim=3), "width"),
    (lambda m, t: _node(m, "homo_dpo")["attrs"].update(gate="softmax"), "gate"),
    (lambda m, t: _node(m, "self_attention")["attrs"].update(heads=3), "heads"),
    (lambda m, t: _node(m, "self_attention")["attrs"].update(max_len=5), "width"),
    (lambda m, t: _node(m, "target_attention")["attrs"].update(hidden=1000), "fc1_weight"),
    (lambda m, t: _node(m, "seq_embedding")["attrs"].update(field="user"), "not a sequence"),
    (lambda m, t: _node(m, "seq_length")["attrs"].update(field="item"), "not a sequence"),
    (lambda m, t: _node(m, "seq_pool")["attrs"].update(max_len=5), "multiple"),
    (lambda m, t: _node(m, "seq_add")["inputs"].__setitem__(-1, "emb/item"),
     "lengths"),
    (lambda m, t: next(n for n in m["graph"]["nodes"] if n["op"] == "embedding").update(
        attrs={"field": "hist"}), "sequence"),
])
def test_bad_sequence_files_are_refused(saved, mutate, match):
    path = _rewrite(saved(_model()), mutate)
    with pytest.raises(ModelFormatError, match=match):
        load(path)


def test_opset_1_engine_message_names_sequence_kind(saved):
    """A file claiming a future opset names the first unknown kind or op, and 'sequence' is known."""
    path = _rewrite(saved(_model()), lambda m, t: m.update(opset=99))
    with pytest.raises(ModelFormatError, match="opset 99") as e:
        load(path)
    assert "unknown field kind 'sequence'" not in str(e.value)


# -- ragged (values, offsets) input -------------------------------------------------------------

def _ragged(h):
    rows = [r[r != -1] for r in h]
    offs = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    vals = np.concatenate(rows + [np.zeros(0, np.int64)]).astype(np.int64)
    return vals, offs


@pytest.mark.parametrize("truncate", [False, True])
def test_ragged_equals_padded(saved, truncate):
    m = _model(truncate=truncate)
    e = load(saved(m))
    b = _batch(T + 4 if truncate else T, B=9, seed=4)
    b["hist"][0] = -1
    z = _both(m, e._path, b)
    r = dict(b, hist=_ragged(b["hist"]))
    np.testing.assert_allclose(e.predict(r, logits=True), z, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(m(r).numpy(), z, rtol=1e-4, atol=1e-5)
    vals, offs = r["hist"]                         # -1 inside a ragged row is padding too
    vals2 = np.insert(vals, offs[3], -1)
    offs2 = offs.copy()
    offs2[4:] += 1
    np.testing.assert_allclose(e.predict(dict(b, hist=(vals2, offs2)), logits=True), z, rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("value,match", [
    ((np.arange(3), np.array([0, 1, 2, 2, 2])), "offsets"),                 # last != len(values)
    ((np.arange(3), np.array([1, 1, 2, 3, 3])), "start at 0|rise from 0"),
    ((np.arange(3), np.array([0, 2, 1, 3, 3])), "non-decreasing|rise from 0"),
    ((np.arange(3), np.array([0, 1, 2, 3])), "rows"),                        # B = 3, not 4
    ((np.arange(3.0), np.array([0, 1, 2, 3, 3])), "int64"),
    ((np.arange(3),), "tuple"),
])
def test_bad_ragged_inputs(saved, value, match):
    m = _model()
    e = load(saved(m))
    b = _batch(T)
    b["hist"] = value
    with pytest.raises(InputError, match=f"field 'hist'.*({match})"):
        e.predict(b)


def test_ragged_row_longer_than_max_len(saved):
    m = _model()
    e = load(saved(m))
    b = _batch(T)
    b["hist"] = (np.arange(T + 1, dtype=np.int64), np.array([0, T + 1, T + 1, T + 1, T + 1]))
    with pytest.raises(InputError, match="field 'hist'.*max_len"):
        e.predict(b)
    with pytest.raises(ValueError, match="field 'hist'.*max_len"):
        m(b)


def test_readme_sequence_example_runs(tmp_path, monkeypatch, capsys):
    """The README's 'Behaviour sequences' example runs and prints matching engine / torch numbers."""
    from helpers.docs import check_readme_example

    check_readme_example("Behaviour sequences", tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("form", ["paper", "kron"])
def test_onnx_export_of_seq_models(tmp_path, form):
    """converters.onnx_export handles SeqDPN (the bench's ONNX Runtime peers): same logits as torch,
    empty histories included."""
    ort = pytest.importorskip("onnxruntime")
    from dpn_infer.converters.onnx_export import export_onnx

    m = _model(truncate=True)
    p = tmp_path / "m.onnx"
    export_onnx(m, p, _batch(T + 2, B=2), form=form)
    b = _batch(T + 2, B=7, seed=5)
    b["hist"][0] = -1
    out = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, b)[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, m(b).numpy(), rtol=1e-4, atol=1e-5)


def test_shared_table_owner_may_follow_the_sequence(tmp_path):
    schema = dnn.Schema([dnn.SequenceField("hist", 30, 4, T, table="item"), dnn.SparseField("item", 30, 4)])
    m = dnn.SeqDPN(schema, ["hist"], ["item"], layers=[4]).eval()
    HM.randomize_(m, 1)
    p = tmp_path / "m.bin"
    torch_export.save(m, p)
    b = _batch(T)
    b.pop("user")
    _both(m, str(p), b)


_NASTY_SEQ = [0, 1, -1, 2, 3, 5, 6, 7, 1 << 31, (1 << 32) + 1, 1 << 62, (1 << 63) - 1, -(1 << 63), 1e308,
              -0.0, 0.5, "", "len", "X", "E", "hist", "item", "user", "sequence", "sparse", "seq_add",
              "homo_dpo", "sigmoid", "identity", None, True, False, [], {}, ["len"], ["X", "len"],
              "conv1d", "seq_sepconv_pool", "homo.z", ["E", "len", "homo.z"]]
# The opset-5 generators and Conv1D: separable HomoDPO / HeteroDPO and a conv1d beside self-attention.
_GENERATORS = dict(encoder=["self_attention", "homo_dpo", "conv1d"], homo_generator="sep",
                   hetero_generator="sep", se_ratio=2)


@pytest.mark.parametrize("kw,count", [({}, 400), (_GENERATORS, 200)], ids=["opset2", "generators"])
def test_fuzz_sequence_model_metadata(tmp_path, kw, count):
    """Structure-aware fuzzing of a sequence model's metadata (every op of the sequence family, a shared
    table; checksum valid), each loaded and run on a batch in a child process: the load succeeds
    (and predict works or raises InputError) or raises ModelFormatError; never a crash."""
    import random

    from helpers.isolated import run_cases

    src = tmp_path / "seq.bin"
    torch_export.save(_model(truncate=True, **kw), src)
    meta, tensors = F.read(src)
    tensors = {k: np.array(v) for k, v in tensors.items()}

    def paths(obj, path=()):
        yield path
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from paths(v, path + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from paths(v, path + (i,))

    all_paths = [p for p in paths({k: meta[k] for k in ("schema", "graph")}) if p]
    rng = random.Random(4242)
    bpath = str(tmp_path / "batch.npz")
    b = _batch(T + 3, B=5)
    b["hist"][0] = -1
    np.savez(bpath, **b)
    cases = []
    for i in range(count):
        mt = copy.deepcopy(meta)
        what = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            p = rng.choice(all_paths)
            parent = mt
            try:
                for k in p[:-1]:
                    parent = parent[k]
                parent[p[-1]]
            except (KeyError, IndexError, TypeError):
                continue
            if not isinstance(parent, (dict, list)):
                continue
            if rng.random() < 0.15 and isinstance(parent, dict):
                del parent[p[-1]]
                what.append(f"del {p}")
            else:
                v = rng.choice(_NASTY_SEQ)
                parent[p[-1]] = copy.deepcopy(v)
                what.append(f"{p}={v!r}")
        path = tmp_path / f"{i:04d}.bin"
        F.write(path, mt, tensors)
        cases.append({"id": f"seqfuzz{i}: " + "; ".join(what), "path": str(path), "batch": bpath})
    res = run_cases(cases, timeout=240)

    def ok(r):
        return r["load"] == "ModelFormatError" or (r["load"] == "ok" and
                                                   r.get("predict") in ("ok", "InputError"))

    bad = [r for r in res.values() if not ok(r)]
    assert not bad, "\n".join(f"  {r['id']}: {r}" for r in bad[:15])
    assert sum(r["load"] == "ok" for r in res.values()) > 3      # not everything was refused


# -- crafted ragged offsets (each runs in a child process: a regression must not kill pytest) ----

@pytest.fixture(scope="module")
def seq_file(tmp_path_factory):
    """A truncating SeqDPN (encoder and decoder, hist sharing item's table) as model.bin."""
    p = tmp_path_factory.mktemp("review_seq") / "seq.bin"
    torch_export.save(_model(truncate=True), p)
    return str(p)


def _in_child(path, cases):
    """Runs predict on `path` with each case's ragged hist (values, offsets) in a child process;
    returns {case id: exception type name or 'ok'}; a crash fails the test with its output."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from dpn_infer.engine import load
        m = load(sys.argv[1])
        for c in json.loads(sys.argv[2]):
            print("START", c["id"], flush=True)
            B = len(c["offsets"]) - 1
            b = {"item": np.zeros(B, np.int64), "user": np.zeros(B, np.int64),
                 "hist": (np.asarray(c["values"], np.int64), np.asarray(c["offsets"], np.int64))}
            try:
                m.predict(b)
                r = "ok"
            except Exception as e:
                r = type(e).__name__ + ": " + str(e)
            print("RESULT", json.dumps([c["id"], r]), flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", script, path, json.dumps(cases)], capture_output=True,
                       text=True, timeout=120)
    out = dict(json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT "))
    assert p.returncode == 0 and len(out) == len(cases), (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return out


def test_ragged_offsets_that_wrap_are_refused(seq_file):
    """Offsets whose differences overflow int64 (a row from 1 to INT64_MIN "has" INT64_MAX ids)
    passed the monotonic check under truncate=true and made seq_embedding read far outside the
    values (a crash). Every such case must be an InputError naming the field."""
    vals = [1, 2, 3]
    cases = [
        {"id": "wrap-then-jump", "values": vals, "offsets": [0, 1, I64_MIN, I64_MIN + 10, 3]},
        {"id": "wrap-at-end", "values": vals, "offsets": [0, 1, 2, I64_MIN, 3]},
        {"id": "min-first", "values": vals, "offsets": [0, I64_MIN, I64_MIN + 5, 3, 3]},
        {"id": "max-first", "values": vals, "offsets": [0, I64_MAX, 3, 3, 3]},
        {"id": "negative", "values": vals, "offsets": [0, -1, 3, 3, 3]},
    ]
    for cid, r in _in_child(seq_file, cases).items():
        assert r.startswith("InputError") and "'hist'" in r and "offsets" in r, (cid, r)


def test_ragged_with_zero_rows(seq_file):
    m = load(seq_file)
    empty = np.zeros(0, np.int64)
    out = m.predict({"item": empty, "user": empty, "hist": (empty, np.zeros(1, np.int64))})
    assert out.shape == (0,)
    with pytest.raises(InputError, match="field 'hist'.*offsets"):
        m.predict({"item": empty, "user": empty, "hist": (np.arange(2), np.zeros(1, np.int64))})


def test_random_ragged_offsets_never_crash(seq_file):
    """200 offset arrays drawn from boundary values (0, cols, ±1, INT64 extremes, random): each is
    refused with an InputError naming the field exactly when it is not a valid ragged layout
    (starts at 0, non-decreasing, ends at len(values)); valid ones predict (the file truncates)."""
    rng = np.random.default_rng(7)
    cases = []
    for i in range(200):
        n = int(rng.integers(0, 12))
        B = int(rng.integers(1, 5))
        pool = [0, 1, n, n - 1, n + 1, -1, I64_MIN, I64_MIN + 1, I64_MAX, I64_MAX - 1, 1 << 62]
        offs = sorted(int(v) for v in rng.integers(0, n + 1, B + 1))
        offs[0], offs[-1] = 0, n
        for _ in range(int(rng.integers(0, 3))):
            offs[int(rng.integers(0, B + 1))] = int(rng.choice(pool))
        valid = offs[0] == 0 and offs[-1] == n and all(a <= b for a, b in zip(offs, offs[1:]))
        cases.append({"id": f"{i}:{valid}", "values": [int(v) for v in rng.integers(-1, 30, n)],
                      "offsets": offs})
    for cid, r in _in_child(seq_file, cases).items():
        if cid.endswith("True"):
            assert r == "ok", (cid, r)
        else:
            assert r.startswith("InputError") and "'hist'" in r, (cid, r)


# -- many callers sharing one sequence model ----------------------------------------------------

def _thread_batch(B, Tin, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 30, (B, Tin))
    h[rng.random((B, Tin)) < 0.3] = -1
    return {"item": rng.integers(0, 30, B), "user": rng.integers(0, 9, B), "hist": h}


def test_predict_from_threads_is_identical(seq_file):
    """One sequence model shared by 6 threads (intra-op threads 1 and 2, padded and ragged input,
    batch sizes that make one block, several blocks and row-split lanes) gives exactly the
    single-threaded answer every time."""
    m = load(seq_file)
    batches = [_thread_batch(B, Tin, seed=B) for B, Tin in ((1, T), (7, 0), (300, T + 4), (77, 3))]
    for b in batches[:2]:
        b["hist"][0] = -1
    ragged = []
    for b in batches:
        rows = [r[r != -1] for r in b["hist"]]
        offs = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        ragged.append(dict(b, hist=(np.concatenate(rows + [np.zeros(0, np.int64)]), offs)))
    batches += ragged
    from helpers.threaded import mismatches_from_threads

    errors = mismatches_from_threads(m, batches, threads=6, reps=3)
    assert not errors, errors[:5]
