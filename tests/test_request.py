"""Ranking requests: ``predict(cands, shared=users, groups=offsets)`` against ``predict`` of the
broadcast batch (each user's shared values repeated on its candidates' rows, built in numpy).

Tolerance: rtol 1e-4 / atol 1e-5 on the logits, the parity tests' bound (test_parity.py). Where the
planner only runs the user-only nodes once per user and gathers their values, the scores are equal
bit for bit (checked on the models where no op splits); a layer that splits its GEMM (W_u·u once
per user + W_i·i per candidate, docs/performance.md) sums in another order, as a different kernel
would. threads=3 splits rows and GEMM columns in other ways again: the same bound.

Families: FeatureDPN with each context kind (x0, the previous layer, named fields: user-only when
every named field is shared), FieldDPN, SeqDPN, DINHeter, DNN, CrossNet; users with 0, 1 and many
candidates; random shared sets; every ISA the machine has (child processes, helpers/isa.py); many
threads on one model with different shared sets; requests the engine must refuse."""
from __future__ import annotations

import os
import tempfile
import threading

import numpy as np
from pathlib import Path
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dpn_infer.engine import InputError, load
from helpers import files as HF
from helpers.requests import make_request, save_request

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                print_blob=True)
RTOL, ATOL = 1e-4, 1e-5
FAMILIES = ["feature_dpn:x0", "feature_dpn:prev", "feature_dpn:fields", "field_dpn", "seqdpn",
            "din_heter", "dnn", "crossnet"]


# --------------------------------------------------------------------------------------------
# models of every family (torch builds and converts them)

@st.composite
def _spec(draw, family):
    from helpers import field_models as FM
    from helpers import models as HM
    from helpers import seqmodels as SM

    if family.startswith("feature_dpn"):
        ctx = family.split(":")[1]
        spec = draw(HM.model_specs(kind="feature_dpn"))
        names = [f["name"] for f in spec["fields"]]
        for layer in spec["layers"]:
            if layer["dynamic"]:
                layer["context"] = (draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
                                    if ctx == "fields" else ctx)
        return spec
    if family == "field_dpn":
        return draw(FM.field_dpn_specs())
    if family in ("seqdpn", "din_heter"):
        return draw(SM.seq_model_specs(kind=family))
    return draw(HM.model_specs(kind=family))


def _build(spec, path):
    from dpn_infer.converters import torch_export
    from helpers import models as HM
    from helpers import seqmodels as SM

    model = SM.build(spec) if spec["kind"] in ("seqdpn", "din_heter") else HM.build(spec)
    torch_export.save(model, path)


def _batch(spec, rows, seed):
    from helpers import models as HM
    from helpers import seqmodels as SM

    if spec["kind"] in ("seqdpn", "din_heter"):
        return SM.make_batch(spec, rows, seed)
    return HM.make_batch(spec["fields"], rows, seed)


def _names(path):
    return [f["name"] for f in load(path).schema]


def _check(m, r, what, exact=False):
    want = m.predict(r["broadcast"], logits=True)
    got = m.predict(r["cands"], shared=r["shared"], groups=r["groups"], logits=True)
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=what)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)
    got3 = m.predict(r["cands"], shared=r["shared"], groups=r["groups"], logits=True, threads=3)
    np.testing.assert_allclose(got3, want, rtol=RTOL, atol=ATOL, err_msg=f"threads=3 {what}")


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=12, **SETTINGS)
@given(data=st.data())
def test_request_equals_broadcast(family, data, tmp_path_factory):
    pytest.importorskip("torch")
    spec = data.draw(_spec(family))
    path = str(tmp_path_factory.mktemp("req") / "m.bin")
    _build(spec, path)
    m = load(path)
    counts = data.draw(st.lists(st.one_of(st.sampled_from([0, 1]), st.integers(2, 40)), min_size=1,
                                max_size=5))
    names = [f["name"] for f in m.schema]
    shared = data.draw(st.lists(st.sampled_from(names), unique=True))
    r = make_request(_batch(spec, len(counts), spec["seed"] + 7), _batch(spec, int(sum(counts)), spec["seed"] + 8),
                     shared, counts)
    _check(m, r, f"shared {shared}, counts {counts}, spec {spec!r}")
    # One user: groups may be left out (with every field shared, the request is then one row).
    if len(counts) == 1 and (r["cands"] or counts == [1]):
        got = m.predict(r["cands"], shared=r["shared"], logits=True)
        np.testing.assert_allclose(got, m.predict(r["broadcast"], logits=True), rtol=RTOL, atol=ATOL)


def test_request_every_isa():
    """A fixed sample of every family under each DPN_ISA (derandomized; child processes)."""
    pytest.importorskip("torch")
    from helpers.isa import available_isas, run_under_isa

    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "requestworker.py")
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory(prefix="dpn_req_isa_") as d:
        jobs = []
        for k, family in enumerate(FAMILIES):
            spec = _spec_example(family, k)
            mp, rp = os.path.join(d, f"m{k}.bin"), os.path.join(d, f"r{k}.npz")
            _build(spec, mp)
            names = _names(mp)
            shared = [n for n in names if rng.random() < 0.5] or names[:1]
            counts = [3, 0, 1, 40][: 1 + k % 4]
            save_request(rp, make_request(_batch(spec, len(counts), k), _batch(spec, sum(counts), k + 1),
                                          shared, counts))
            jobs.append({"id": f"job{k}", "model": mp, "request": rp, "what": f"{family} shared {shared}"})
        for isa in available_isas():
            z = run_under_isa(isa, jobs, d, worker=worker)
            assert str(z["__isa__"]) == isa
            for j in jobs:
                what = f"DPN_ISA={isa} {j['what']}"
                np.testing.assert_allclose(z[j["id"] + "/request"], z[j["id"] + "/broadcast"], rtol=RTOL,
                                           atol=ATOL, err_msg=what)
                np.testing.assert_allclose(z[j["id"] + "/request_t3"], z[j["id"] + "/broadcast"],
                                           rtol=RTOL, atol=ATOL, err_msg=what)


def _spec_example(family, seed):
    @settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate], **SETTINGS)
    @given(data=st.data())
    def draw(data):
        out.append(data.draw(_spec(family)))

    out = []
    draw()
    spec = out[0]
    spec["seed"] = seed
    return spec


# --------------------------------------------------------------------------------------------
# the tiny hand-built model: no torch

def test_request_tiny_every_shared_set(tiny_model):
    """No op of the tiny model splits (its dynamic layers' contexts are x0 and a concat of their
    own), so the request gives the broadcast batch's scores bit for bit."""
    names = [f["name"] for f in tiny_model.schema]
    users, cands = HF.tiny_batch(4, seed=3), HF.tiny_batch(9, seed=4)
    for mask in range(1 << len(names)):
        shared = [n for i, n in enumerate(names) if mask >> i & 1]
        # Small requests take the broadcast path, large ones the split (kMinSavedPerCall).
        for counts in ([9], [0, 4, 0, 5], [1, 1, 7, 0], [0], [0, 300, 1, 400]):
            c = {k: np.resize(v, (sum(counts),) + v.shape[1:]) for k, v in cands.items()}
            r = make_request({k: v[: len(counts)] for k, v in users.items()}, c, shared, counts)
            _check(tiny_model, r, f"shared {shared}, counts {counts}", exact=True)


def test_request_ragged_shared_sequence():
    """A user's history given once as a ragged (values, offsets) row, as a server sends it."""
    pytest.importorskip("torch")
    from helpers import seqmodels as SM

    spec = _spec_example("seqdpn", 3)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.bin")
        _build(spec, path)
        m = load(path)
        seq = [f["name"] for f in m.schema if f["kind"] == "sequence"]
        users, cands = SM.make_batch(spec, 2, 1), SM.make_batch(spec, 30, 2)
        r = make_request(users, cands, seq, [12, 18])
        for n in seq:
            rows = [row[row != -1] for row in users[n]]
            offsets = np.concatenate([[0], np.cumsum([len(x) for x in rows])]).astype(np.int64)
            r["shared"][n] = (np.concatenate(rows + [np.zeros(0, np.int64)]).astype(np.int64), offsets)
        got = m.predict(r["cands"], shared=r["shared"], groups=r["groups"], logits=True)
        np.testing.assert_allclose(got, m.predict(r["broadcast"], logits=True), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_request_collapsed_user_weight(tmp_path, threads):
    """A dynamic layer whose context is the user's: a user with at least 16 candidates (the op's
    kCollapseMinRows) gets the layer's weight collapsed for their h (W_h = A_0 + Σ_k h_k A_k,
    docs/performance.md), fewer candidates keep the Kronecker GEMM; one request mixes both, with
    candidates of collapsed and Kronecker users in one row block. Against the broadcast batch, the
    parity tolerance (another summation order)."""
    import torch

    from dpn_infer.converters import torch_export
    from dpn_infer.nn import FeatureDPN, LayerSpec, Schema, SparseField

    torch.manual_seed(3)
    user, item = [f"u{i}" for i in range(3)], [f"i{i}" for i in range(4)]
    schema = Schema([SparseField(n, vocab=50, dim=8, policy="hash") for n in user + item])
    layers = [LayerSpec(40, dynamic=True, context=user, hidden=3, sigma="relu"),
              LayerSpec(17, dynamic=True, context="x0", hidden=2, sigma="sigmoid")]
    path = str(tmp_path / "m.bin")
    torch_export.save(FeatureDPN(schema, layers, activation="relu").eval(), path)
    m = load(path)
    rng = np.random.default_rng(5)
    counts = [0, 16, 1, 15, 40, 3, 17]
    def ids(n):
        return {k: rng.integers(0, 50, n).astype(np.int64) for k in user + item}

    r = make_request(ids(len(counts)), ids(sum(counts)), user, counts)
    want = m.predict(r["broadcast"], logits=True)
    got = m.predict(r["cands"], shared=r["shared"], groups=r["groups"], logits=True, threads=threads)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_request_threads_different_shared_sets(tmp_path):
    """8 threads on one model, each with its own shared sets (more sets in all than the model caches,
    so both the cached plans and, past the cache, the broadcast path run), every answer equal to its
    broadcast batch's."""
    fields = [{"name": f"f{i}", "kind": "sparse", "dim": 4, "vocab": 30, "policy": "hash"} for i in range(8)]
    meta, tensors = HF.tiny_model(0)
    meta["schema"]["fields"] = fields
    nodes = [{"op": "embedding", "name": f"e{i}", "attrs": {"field": f"f{i}"}, "params": {"table": f"t{i}"},
              "output": f"e{i}"} for i in range(8)]
    rng = np.random.default_rng(0)
    tensors = {f"t{i}": rng.standard_normal((30, 4)).astype(np.float32) for i in range(8)}
    nodes.append({"op": "concat", "inputs": [f"e{i}" for i in range(8)], "output": "x"})
    tensors["w1"] = rng.standard_normal((16, 32)).astype(np.float32) * 0.3
    tensors["w2"] = rng.standard_normal((1, 16)).astype(np.float32) * 0.3
    nodes.append({"op": "linear", "inputs": ["x"], "attrs": {"in": 32, "out": 16, "act": "relu"},
                  "params": {"weight": "w1"}, "output": "h"})
    nodes.append({"op": "linear", "inputs": ["h"], "attrs": {"in": 16, "out": 1}, "params": {"weight": "w2"},
                  "output": "logit"})
    meta["graph"] = {"nodes": nodes, "output": "logit"}
    path = tmp_path / "eight.bin"
    path.write_bytes(HF.build(meta, tensors))
    m = load(str(path))
    users = {f"f{i}": rng.integers(0, 30, 3) for i in range(8)}
    cands = {f"f{i}": rng.integers(0, 30, 600) for i in range(8)}
    cases = []
    for mask in range(256):
        shared = [f"f{i}" for i in range(8) if mask >> i & 1]
        r = make_request(users, cands, shared, [200, 0, 400])
        cases.append((r, m.predict(r["broadcast"], logits=True)))
    errors = []

    def work(t):
        try:
            for k in range(t, len(cases), 8):
                r, want = cases[k % len(cases)]
                got = m.predict(r["cands"], shared=r["shared"], groups=r["groups"], logits=True,
                                threads=1 + k % 2)
                if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
                    errors.append((t, k))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --------------------------------------------------------------------------------------------
# refused requests

def _good(tiny_model):
    users, cands = HF.tiny_batch(2, seed=3), HF.tiny_batch(5, seed=4)
    return make_request(users, cands, ["user", "ctx"], [2, 3])


@pytest.mark.parametrize("groups, match", [
    ([1, 2, 5], "start at 0"),
    ([0, 3, 2], "non-decreasing"),
    ([0, 2, 4], "groups end at 4"),
    ([0, 2, 6], "non-decreasing"),
    ([0, 2, 3, 5], "one row per user"),
])
def test_request_bad_groups(tiny_model, groups, match):
    r = _good(tiny_model)
    with pytest.raises(InputError, match=match):
        tiny_model.predict(r["cands"], shared=r["shared"], groups=np.array(groups, np.int64))


def test_request_long_truncated_history_broadcast(tiny_model):
    """A truncating sequence field's shared row may be far longer than max_len (hist_cat: 6): the
    broadcast path repeats only the ids the model keeps (the last 6 valid ones), so its scores equal
    the broadcast batch's exactly, -1 padding inside the row included. Few candidates per user
    take the broadcast path (a split would not pay)."""
    m = load(str(Path(__file__).parent / "golden" / "v1" / "opset2-seq" / "model.bin"))
    rng = np.random.default_rng(5)
    for n_ids, n_cands in ((1000, 1), (1000, 2), (3, 2), (0, 3)):
        ids = rng.integers(-1, 7, n_ids)                     # -1 anywhere: padding, skipped
        shared = {"user": np.array([4]), "hist_cat": (ids, np.array([0, n_ids])),
                  "hist_item": (np.array([1, 2, 3]), np.array([0, 3]))}
        cands = {"item": rng.integers(0, 40, n_cands), "cat": rng.integers(0, 7, n_cands)}
        offs = np.arange(n_cands + 1) * n_ids
        full = dict(cands, user=np.full(n_cands, 4), hist_cat=(np.tile(ids, n_cands), offs),
                    hist_item=(np.tile([1, 2, 3], n_cands), np.arange(n_cands + 1) * 3))
        assert np.array_equal(m.predict(cands, shared=shared), m.predict(full)), (n_ids, n_cands)


def test_request_every_field_shared_checks_groups_before_sizing(tiny_model):
    """With no per-candidate field the groups give the row count: they are checked first (a
    decreasing or huge last offset must not size the output)."""
    users = HF.tiny_batch(2, seed=3)
    for groups in ([0, 5, 2], [3, 1, 2**50]):
        with pytest.raises(InputError, match="non-decreasing offsets starting at 0"):
            tiny_model.predict({}, shared=users, groups=np.array(groups, np.int64))


def test_request_refused(tiny_model):
    r = _good(tiny_model)
    p = tiny_model.predict
    assert p(r["cands"], shared=r["shared"], groups=r["groups"]).shape == (5,)
    both = dict(r["cands"], user=r["broadcast"]["user"])
    with pytest.raises(InputError, match="field 'user': is given both"):
        p(both, shared=r["shared"], groups=r["groups"])
    with pytest.raises(InputError, match="is shared with 2 rows, but the request has 1 user"):  # no groups
        p(r["cands"], shared=r["shared"])
    with pytest.raises(InputError, match="field 'user': is shared with 2 rows, but the request has 3 users"):
        p(r["cands"], shared=r["shared"], groups=np.array([0, 1, 2, 5], np.int64))
    missing = {k: v for k, v in r["cands"].items() if k != "item"}
    with pytest.raises(InputError, match="field 'item': missing from the batch and from shared"):
        p(missing, shared=r["shared"], groups=r["groups"])
    with pytest.raises(InputError, match="field 'nope': is not a field"):
        p(r["cands"], shared=dict(r["shared"], nope=np.zeros(2, np.int64)), groups=r["groups"])
    with pytest.raises(InputError, match="groups must be a 1-d int64 array"):
        p(r["cands"], shared=r["shared"], groups=r["groups"].astype(np.int32))
    with pytest.raises(InputError, match="groups must be a 1-d int64 array"):
        p(r["cands"], shared=r["shared"], groups=np.zeros(0, np.int64))
    with pytest.raises(InputError, match="field 'ctx': expected float32"):
        p(r["cands"], shared=dict(r["shared"], ctx=r["shared"]["ctx"].astype(np.float64)), groups=r["groups"])
    bad_ctx = r["shared"]["ctx"].copy()
    bad_ctx[1, 0] = np.nan
    with pytest.raises(InputError, match="field 'ctx': NaN value at row 1"):
        p(r["cands"], shared=dict(r["shared"], ctx=bad_ctx), groups=r["groups"])
    with pytest.raises(TypeError, match="shared must be a mapping"):
        p(r["cands"], shared=[1, 2])
    # cast=True converts the shared fields as it does the batch's.
    wide = dict(r["shared"], ctx=r["shared"]["ctx"].astype(np.float64))
    np.testing.assert_array_equal(p(r["cands"], shared=wide, groups=r["groups"], cast=True),
                                  p(r["broadcast"]))


def test_request_data_frame_candidates(tiny_model):
    """Candidates as a pandas DataFrame or an Arrow table, the user's fields as a dict."""
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    users, cands = HF.tiny_batch(1, seed=3), HF.tiny_batch(9, seed=4)
    r = make_request(users, cands, ["tags", "ctx"], [9])
    frame = pd.DataFrame({k: v for k, v in r["cands"].items()})
    want = tiny_model.predict(r["broadcast"])
    np.testing.assert_array_equal(tiny_model.predict(frame, shared=r["shared"]), want)
    np.testing.assert_array_equal(tiny_model.predict(pa.Table.from_pandas(frame), shared=r["shared"]), want)
    wide = frame.astype({"price": np.float64})
    np.testing.assert_array_equal(tiny_model.predict(wide, shared=r["shared"], cast=True), want)
