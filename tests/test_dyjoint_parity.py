"""DyJoint in the engine (session_embedding / session_length / kfatt and the `sessions` attribute of
the sequence operators, docs/format.md §5c) vs the PyTorch module (dpn_infer.nn.dyjoint, eval mode).

Criterion: test_parity's ``judge`` (engine logits within rtol 1e-4 / atol 1e-5 of torch float32, or
of torch float64 plus the rounding slack of a 2^-20 parameter perturbation). Random models and
batches (tests/helpers/dyjoint.py): 1..10 sessions of 1..25 behaviours, 0..60 input columns, gaps
of exactly the threshold, unsorted timestamps, empty histories, heads 1..3, both KFAtt modes, every
encoder / decoder subset (the Conv1D encoder too), "mlp", "se" and "sep" generators, batch sizes 1 and odd; every kernel ISA the
machine has (child processes). Also: bad timestamps are a typed InputError, the exporter's refusals."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer.converters import torch_export  # noqa: E402
from dpn_infer.engine import InputError, load  # noqa: E402
from helpers import dyjoint as DJ  # noqa: E402
from test_parity import engine_scores, judge, judge_scores  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                print_blob=True)


def _prepare(spec):
    return DJ.build(spec), DJ.make_batch(spec, spec["B"], spec["seed"] + 1)


def check(model, batch, what=""):
    ref = DJ.reference(model, batch)
    z, p, z3 = engine_scores(model, batch)
    judge_scores(z, p, z3, ref, lambda: DJ.truth(model, batch), batch, what)
    return z, ref


@settings(max_examples=25, **SETTINGS)
@given(spec=DJ.specs())
def test_parity_dyjoint_random(spec):
    model, batch = _prepare(spec)
    check(model, batch, what=f"for spec {spec!r}")


def _fixed(**kw):
    spec = {"seed": 7, "S": 3, "L": 4, "gap": 30, "dim": 4, "two_seqs": True, "heads": 2,
            "encoder": ["self_attention", "homo_dpo"], "residual": True, "decoder": ["kfatt", "hetero_dpo"],
            "mode": "freq", "gen": "mlp", "kernel_size": 3,
            "field_layers": [{"out": 4, "aggregation": "attention", "attention_hidden": 4}],
            "layers": [{"out": 8, "dynamic": True}, 5], "interest_dim": None, "dense": 3, "T": 20,
            "pad": 0.3, "shuffle": True, "B": 7}
    spec.update(kw)
    return spec


VARIANTS = {
    "full_freq": {},
    "full_base": dict(mode="base"),
    "se": dict(gen="se"),
    # separable generators per session (seq_sepconv_pool with sessions: per_session for HomoDPO, pooled
    # over every session for HeteroDPO) and the Conv1D encoder per session (conv1d with sessions)
    "sep": dict(gen="sep"),
    "conv1d": dict(encoder=["self_attention", "conv1d"], kernel_size=5),
    "sep_conv1d_paper_caps": dict(gen="sep", encoder=["self_attention", "homo_dpo", "conv1d"], S=10, L=25,
                                  T=60, gap=1800),
    "paper_caps": dict(S=10, L=25, T=60, gap=1800, dim=2, two_seqs=False, heads=1),
    "one_session_one_behaviour": dict(S=1, L=1),
    "kfatt_only": dict(encoder=["self_attention"], residual=False, decoder=["kfatt"]),
    "hetero_only": dict(encoder=["homo_dpo"], decoder=["hetero_dpo"], field_layers=[], layers=[6]),
    "residual_only": dict(encoder=[], residual=True, dense=0),
    "no_columns": dict(T=0),
    "gap_zero": dict(gap=0, shuffle=False),
    # scores of hundreds: the log-space softmaxes neither overflow nor lose the result
    "large_scores_freq": dict(score_scale=60.0),
    "large_scores_base": dict(score_scale=60.0, mode="base", encoder=["homo_dpo"]),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("B", [1, 9])
def test_parity_dyjoint_fixed(variant, B):
    spec = _fixed(B=B, **VARIANTS[variant])
    model, batch = _prepare(spec)
    check(model, batch, what=f"for spec {spec!r}")


def test_parity_dyjoint_every_isa():
    specs = [_fixed(B=b, **VARIANTS[v]) for v in VARIANTS for b in (1, 7)]
    _check_every_isa(specs)


@settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate], **SETTINGS)
@given(specs=st.lists(DJ.specs(), min_size=8, max_size=8))
def test_parity_dyjoint_every_isa_random(specs):
    """A fixed (derandomized) sample of random DyJoint models under every ISA; no shrinking."""
    _check_every_isa(specs)


def _check_every_isa(specs):
    from helpers.isa import check_models_every_isa

    cases = []
    for spec in specs:
        model, batch = _prepare(spec)
        cases.append((f"spec {spec!r}", model, batch, DJ.reference(model, batch),
                      lambda model=model, batch=batch: DJ.truth(model, batch)))
    with tempfile.TemporaryDirectory(prefix="dpn_dyj_isa_") as d:
        check_models_every_isa(cases, judge, d)


@settings(max_examples=10, **SETTINGS)
@given(spec=DJ.specs(max_S=4, max_L=6), rows=st.lists(st.integers(0, 40), min_size=1, max_size=5))
def test_dyjoint_rows_are_independent(spec, rows):
    """A row's output depends on its own history only (not on other rows, blocks or passes)."""
    spec = dict(spec, B=41)
    model, batch = _prepare(spec)
    with tempfile.TemporaryDirectory(prefix="dpn_dyj_rows_") as d:
        path = os.path.join(d, "model.bin")
        torch_export.save(model, path)
        m = load(path)
        full = m.predict(batch, logits=True)
        sub = m.predict({k: v[rows] for k, v in batch.items()}, logits=True)
    np.testing.assert_allclose(sub, full[rows], rtol=1e-4, atol=1e-5)


def test_timestamps_errors_are_typed(tmp_path):
    spec = _fixed()
    model, batch = _prepare(spec)
    path = str(tmp_path / "model.bin")
    torch_export.save(model, path)
    m = load(path)
    assert m.metadata["opset"] == 5
    cases = [
        (dict(hist_time=batch["hist_time"].astype(np.float64)), "expected int64 ids"),
        (dict(hist_time=batch["hist_time"][:, :-1].copy()), "must have the shape of 'hist'"),
        (dict(hist_time=batch["hist_time"][:, :, None].copy()), "expected shape \\[B, T\\]"),
        (dict(hist_time=np.where(batch["hist"] != -1, -5, batch["hist_time"])), "outside \\[0, 2\\^62\\)"),
        (dict(hist_cat=batch["hist_cat"][:, :-1].copy()), "must have the shape of 'hist_cat'"),
    ]
    for change, words in cases:
        with pytest.raises(InputError, match=words) as e:
            m.predict(dict(batch, **change))
        assert str(e.value).startswith("field 'hist_time'"), str(e.value)
    missing = dict(batch)
    del missing["hist_time"]
    with pytest.raises(InputError, match="hist_time"):
        m.predict(missing)
    # a padded position's timestamp is ignored, whatever it holds
    odd = np.where(batch["hist"] == -1, -(2 ** 63), batch["hist_time"])
    np.testing.assert_array_equal(m.predict(dict(batch, hist_time=odd)), m.predict(batch))


def test_sessions_longer_than_max_len_are_read_whole(tmp_path):
    """A sequence field laid out by sessions keeps every id (max_len / truncate do not apply; torch
    reads the whole history too), even with truncate off."""
    spec = _fixed(T=40)
    model, batch = _prepare(spec)
    for f in model.schema.fields:
        if f.name in ("hist", "hist_cat"):
            f.truncate = False
    check(model, batch, what="truncate off, T=40 > max_len=4")


def test_separable_and_conv1d_sessions_export():
    """Table 15's "Sep" generators and Conv1D encoder inside sessions: seq_sepconv_pool with sessions
    (each session's mean for HomoDPO, the mean over every session for HeteroDPO) and conv1d with
    sessions, at opset 5."""
    spec = _fixed(gen="sep", encoder=["self_attention", "homo_dpo", "conv1d"])
    meta, _ = torch_export.export(_prepare(spec)[0])
    assert meta["opset"] == 5
    nodes = {n["name"]: n for n in meta["graph"]["nodes"]}
    S = spec["S"]
    assert nodes["encoder.homo_dpo.sep"]["attrs"] == {"max_len": spec["L"], "dim": 8, "kernel": 3,
                                                     "sessions": S, "per_session": 1}
    assert nodes["decoder.hetero_dpo.sep"]["attrs"]["sessions"] == S
    assert "per_session" not in nodes["decoder.hetero_dpo.sep"]["attrs"]
    assert nodes["encoder.conv1d"]["attrs"]["sessions"] == S
    assert nodes["encoder.homo_dpo"]["inputs"][2] == nodes["encoder.homo_dpo.sep"]["output"]


# -- files the engine refuses ------------------------------------------------------------------

def _field(meta, name):
    return next(f for f in meta["schema"]["fields"] if f["name"] == name)


def _node(meta, op):
    return next(n for n in meta["graph"]["nodes"] if n["op"] == op)


def _kf(meta, **kw):
    _node(meta, "kfatt")["attrs"].update(kw)


def _drop_param(meta, op, role):
    del _node(meta, op)["params"][role]


@pytest.mark.parametrize("mutate,match", [
    (lambda m, t: _field(m, "hist_time").update(gap=-1), "'gap' must be >= 0"),
    (lambda m, t: _field(m, "hist_time").update(gap=1.5), "'gap' must be an integer"),
    (lambda m, t: _field(m, "hist_time").update(max_sessions=0), "max_sessions"),
    (lambda m, t: _field(m, "hist_time").update(session_len=70000), "max_sessions x session_len"),
    (lambda m, t: _field(m, "hist_time").update(sequence="user"), "'sequence' must name a sequence"),
    (lambda m, t: _field(m, "hist_time").update(sequence=3), "'sequence' must be"),
    (lambda m, t: _field(m, "hist_time").pop("session_len"), "missing key 'session_len'"),
    (lambda m, t: m["schema"]["fields"].append(dict(_field(m, "hist_time"), name="t2")),
     "already has timestamps"),
    (lambda m, t: _node(m, "session_embedding")["attrs"].update(timestamps="hist"),
     "not a timestamps field"),
    (lambda m, t: _node(m, "session_embedding")["attrs"].pop("timestamps"), "'timestamps'"),
    (lambda m, t: _node(m, "session_embedding")["attrs"].update(field="hist_time"), "not a sequence"),
    (lambda m, t: _node(m, "session_length")["attrs"].update(timestamps="nope"), "not in the schema"),
    (lambda m, t: _node(m, "self_attention")["attrs"].update(sessions=2), "expected sessions=2"),
    (lambda m, t: _node(m, "homo_dpo")["attrs"].update(sessions=0), "'sessions' must be >= 1"),
    (lambda m, t: _node(m, "seq_pool")["attrs"].update(sessions=1), "expected 1"),
    (lambda m, t: _node(m, "seq_add")["attrs"].update(max_len=5), "multiple"),
    (lambda m, t: _kf(m, mode="lstm"), "mode"),
    (lambda m, t: _kf(m, heads=3), "heads=3 must divide att_dim"),
    (lambda m, t: _kf(m, heads=0), "'heads' must be >= 1"),
    (lambda m, t: _kf(m, query_dim=5), "input q has width"),
    (lambda m, t: _kf(m, dim=3), "input x has width"),
    (lambda m, t: _kf(m, att_dim=6), "q_weight"),
    (lambda m, t: _kf(m, out=2), "input 3"),
    (lambda m, t: _kf(m, sessions=70000), "too large"),
    (lambda m, t: _drop_param(m, "kfatt", "group_logprec_weight"), "group_logprec_weight"),
    (lambda m, t: _drop_param(m, "kfatt", "prior_logprec_bias"), "prior_logprec_bias"),
    (lambda m, t: t.__setitem__("decoder.kfatt.prior_mean.weight", np.zeros((3, 3), np.float32)),
     "prior_mean_weight"),
    (lambda m, t: _node(m, "kfatt")["inputs"].__setitem__(2, "emb/user"), "lengths"),
])
def test_bad_session_files_are_refused(tmp_path, mutate, match):
    _refused(tmp_path, _fixed(two_seqs=False), mutate, match)


def _refused(tmp_path, spec, mutate, match):
    from dpn_infer.converters import format as F
    from dpn_infer.engine import ModelFormatError

    model, _ = _prepare(spec)
    path = str(tmp_path / "model.bin")
    torch_export.save(model, path)
    load(path)                                             # the unmutated file loads
    meta, tensors = F.read(path)
    tensors = {k: np.array(v) for k, v in tensors.items()}
    mutate(meta, tensors)
    F.write(path, meta, tensors)
    with pytest.raises(ModelFormatError, match=match):
        load(path)


@pytest.mark.parametrize("mutate,match", [
    (lambda m, t: _node(m, "conv1d")["attrs"].update(sessions=2), "expected sessions=2"),
    (lambda m, t: _node(m, "seq_sepconv_pool")["attrs"].update(per_session=2), "'per_session' must be 0 or 1"),
    (lambda m, t: _node(m, "seq_sepconv_pool")["attrs"].update(sessions=1), "the lengths\\) has width 3, expected 1"),
    (lambda m, t: _node(m, "seq_sepconv_pool")["attrs"].update(sessions=70000), "too large"),
    (lambda m, t: _node(m, "homo_dpo")["inputs"].__setitem__(2, "emb/user"), "expected sessions\\*dim="),
])
def test_bad_separable_and_conv1d_session_files_are_refused(tmp_path, mutate, match):
    _refused(tmp_path, _fixed(two_seqs=False, gen="sep", encoder=["self_attention", "homo_dpo", "conv1d"]),
             mutate, match)


def test_opset_5_is_only_written_when_needed(tmp_path):
    """A DyJoint file says opset 5; the session-free models keep their old opsets."""
    from dpn_infer.converters import format as F

    meta, _ = torch_export.export(_prepare(_fixed())[0])
    assert meta["opset"] == 5 == F.OP_OPSET["kfatt"] == F.FIELD_KIND_OPSET["timestamps"]
    assert {n["op"] for n in meta["graph"]["nodes"]} >= {"session_embedding", "session_length", "kfatt"}
    probe = {"graph": {"nodes": [{"op": "seq_add", "attrs": {"max_len": 2, "sessions": 3}}]},
             "schema": {"fields": [{"kind": "sequence"}]}}
    assert F.required_opset(probe) == 5
    probe["graph"]["nodes"][0]["attrs"].pop("sessions")
    assert F.required_opset(probe) == 2


def test_ranking_request_shares_the_history(tmp_path):
    """A ranking request (docs/cpp.md, "Ranking requests") that gives each user's history and
    timestamps once scores as the batch that repeats them; sharing only one of the two is refused."""
    spec = _fixed(B=5, T=30)
    model, users = _prepare(spec)
    path = str(tmp_path / "model.bin")
    torch_export.save(model, path)
    m = load(path)
    groups = np.array([0, 3, 3, 7, 8, 12], np.int64)         # a user with no candidate
    rng = np.random.default_rng(3)
    user_of = np.repeat(np.arange(5), np.diff(groups))
    shared_names = ("user", "hist", "hist_cat", "hist_time")
    cands = {"item": rng.integers(0, 23, 12), "cat": rng.integers(0, 8, 12),
             "visual": rng.standard_normal((12, 3)).astype(np.float32)}
    shared = {k: users[k] for k in shared_names}
    flat = dict(cands, **{k: users[k][user_of] for k in shared_names})
    want = m.predict(flat, logits=True)
    np.testing.assert_allclose(m.predict(cands, shared=shared, groups=groups, logits=True), want,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want, DJ.reference(model, flat), rtol=1e-4, atol=1e-5)
    half = {k: v for k, v in shared.items() if k != "hist_time"}
    with pytest.raises(InputError, match="both shared or both per candidate"):
        m.predict(dict(cands, hist_time=flat["hist_time"]), shared=half, groups=groups)


def test_list_columns_feed_timestamps_like_their_sequence(tmp_path):
    """A DataFrame with list columns (ragged rows) for the histories and their timestamps scores as
    the padded arrays; the ragged (values, offsets) form works the same."""
    pd = pytest.importorskip("pandas")
    spec = _fixed(B=6, T=15)
    model, batch = _prepare(spec)
    path = str(tmp_path / "model.bin")
    torch_export.save(model, path)
    m = load(path)
    want = m.predict(batch, logits=True)
    keep = [row != -1 for row in batch["hist"]]
    df = pd.DataFrame({k: list(v) for k, v in batch.items() if v.ndim == 1 or k == "visual"})
    df["visual"] = list(batch["visual"])
    for k in ("hist", "hist_cat", "hist_time"):
        df[k] = [r[kp] for r, kp in zip(batch[k], keep)]
    np.testing.assert_allclose(m.predict(df, logits=True), want, rtol=1e-6, atol=1e-6)
    offsets = np.concatenate([[0], np.cumsum([k.sum() for k in keep])]).astype(np.int64)
    ragged = dict(batch, **{k: (np.concatenate([r[kp] for r, kp in zip(batch[k], keep)]), offsets)
                            for k in ("hist", "hist_cat", "hist_time")})
    np.testing.assert_allclose(m.predict(ragged, logits=True), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("S_in,L_in", [(3, 4), (5, 2), (2, 7)])
def test_presegmented_batches(tmp_path, S_in, L_in):
    """ids [B, S', L'] (no timestamps) score as PyTorch scores them: the last S slots, each
    session's last L valid ids; empty slots anywhere, more or fewer slots than S, padding inside a
    slot (dpn_infer/_sessions.py)."""
    spec = _fixed(B=9)
    model, batch = _prepare(spec)
    path = str(tmp_path / "model.bin")
    torch_export.save(model, path)
    m = load(path)
    rng = np.random.default_rng(S_in * 10 + L_in)
    hist = rng.integers(0, 23, (9, S_in, L_in))
    hist[rng.random(hist.shape) < 0.3] = -1
    hist[1] = -1                                          # no history
    hist[2, -1] = -1                                      # the newest slot empty
    cat = np.where(hist == -1, -1, rng.integers(0, 6, hist.shape))
    pre = {k: v for k, v in batch.items() if k not in ("hist", "hist_cat", "hist_time")}
    pre.update(hist=hist.astype(np.int64), hist_cat=cat.astype(np.int64))
    want = DJ.reference(model, pre)
    np.testing.assert_allclose(m.predict(pre, logits=True), want, rtol=1e-4, atol=1e-5)


def test_readme_dyjoint_example_runs(tmp_path, monkeypatch, capsys):
    """The README's DyJoint example runs and prints matching engine / torch probabilities (the
    parity tolerance, rtol 1e-4 / atol 1e-5)."""
    from helpers.docs import check_readme_example

    check_readme_example("The production model: DyJoint", tmp_path, monkeypatch, capsys)
