"""DIEN and DIEN + Heter served by the engine (ops ``gru``, ``dien_attention``, ``augru``; docs/format.md
§5c, opset 5) against the PyTorch reference (dpn_infer.nn.dien, eval mode).

Parity criterion: test_parity.judge (engine logits and probabilities within rtol 1e-4 / atol 1e-5 of
the float32 model; on a miss both are judged against the float64 model plus a rounding slack).
Random models over max_len 1..50, one or two sequence fields of odd widths, both behaviour orders,
batch sizes 1, odd and past a block; batches with empty, one-item and full histories; every kernel ISA
the machine has (child processes). The gate kernel is swept against float64 numpy per ISA; corrupt
files are refused with ModelFormatError naming the node; a DIEN trained on MovieLens-100K histories
is reproduced by the engine (AUC within 1e-6)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer.converters import format as F  # noqa: E402
from dpn_infer.converters import torch_export  # noqa: E402
from helpers import seqmodels as SM  # noqa: E402
from test_seq_parity import _check_every_isa, _fixed, _prepare, check, check_rows_independent  # noqa: E402,E501

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                print_blob=True)
ORDERS = ("oldest_first", "newest_first")


@st.composite
def dien_specs(draw):
    spec = draw(SM.seq_model_specs(kind=draw(st.sampled_from(["dien", "dien_heter"]))))
    spec["order"] = draw(st.sampled_from(ORDERS))
    return spec


def _dien(kind="dien", order="newest_first", **kw):
    return _fixed(kind=kind, order=order, **kw)


@settings(max_examples=25, **SETTINGS)
@given(spec=dien_specs())
def test_parity_dien_models(spec):
    model, batch = _prepare(spec)
    check(model, batch, what=f"for spec {spec!r}")


@pytest.mark.parametrize("kind", ["dien", "dien_heter"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("B", [1, 7, 257])
def test_parity_dien_fixed(kind, order, B):
    # T = 50 (the history), two sequence fields of odd widths (d = 6 + 5 = 11)
    spec = _dien(kind, order, B=B, T=50, Tin=50, hetero_out=3,
                 seqs=[{"name": "hist item", "cand": "item", "vocab": 40, "dim": 6, "policy": "hash",
                        "share": True},
                       {"name": "hist.cat", "cand": "cat", "vocab": 7, "dim": 5, "policy": "oov_bucket",
                        "share": True}])
    model, batch = _prepare(spec)
    check(model, batch, what=f"for {kind} {order} B={B}")


def test_parity_dien_every_isa():
    specs = [_dien(k, o, B=b, T=t, Tin=t) for k in ("dien", "dien_heter") for o in ORDERS
             for b, t in ((1, 1), (7, 13), (300, 50))]
    specs += [_dien(T=8, Tin=0, B=5), _dien(T=50, Tin=60, truncate=True, B=33, extra_cand=True)]
    _check_every_isa(specs)


@settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate], **SETTINGS)
@given(specs=st.lists(dien_specs(), min_size=8, max_size=8))
def test_parity_dien_every_isa_random(specs):
    """A fixed (derandomized) sample of random DIEN models under every ISA; no shrinking."""
    _check_every_isa(specs)


@settings(max_examples=10, **SETTINGS)
@given(spec=dien_specs(), rows=st.lists(st.integers(0, 299), min_size=1, max_size=5))
def test_dien_rows_are_independent(spec, rows):
    """The recurrence orders a block's rows by length: a row's output must not depend on the
    other rows (their lengths, their order) nor on its place in the batch."""
    check_rows_independent(spec, rows)


def test_parity_dien_longer_than_a_pass():
    """max_len 600 x width 96: a pass holds 18 rows (2^22 floats of scratch), so 45 rows take
    three passes; full, empty and random-length rows."""
    spec = _dien(B=45, T=600, Tin=600, profile=[], layers=[4],
                 seqs=[{"name": "hist item", "cand": "item", "vocab": 40, "dim": 96, "policy": "hash",
                        "share": True}])
    model, batch = _prepare(spec)
    batch["hist item"][3] = np.arange(600) % 40           # every column valid
    check(model, batch, what="T=600")


def test_dien_records_opset_5_and_other_models_stay():
    meta, _ = torch_export.export(SM.build(_dien()))
    assert meta["opset"] == 5 == F.OP_OPSET["gru"] == F.OP_OPSET["augru"] == F.OP_OPSET["dien_attention"]
    ops = [n["op"] for n in meta["graph"]["nodes"]]
    assert ops.count("gru") == ops.count("augru") == ops.count("dien_attention") == 1
    assert [n for n in meta["graph"]["nodes"] if n["op"] == "gru"][0]["attrs"]["reverse"] is True
    assert torch_export.export(SM.build(_fixed()))[0]["opset"] == 2


# ---------------------------------------------------------------------------------------------
# the gate kernel, every ISA against float64 numpy


def _gates64(gi, gh, state, att):
    gi, gh, s = (np.asarray(a, np.float64) for a in (gi, gh, state))
    h = s.shape[1]
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    r = sig(gi[:, :h] + gh[:, :h])
    u = sig(gi[:, h:2 * h] + gh[:, h:2 * h])
    n = np.tanh(gi[:, 2 * h:] + r * gh[:, 2 * h:])
    if att is None:
        return (1 - u) * n + u * s
    ua = np.asarray(att, np.float64)[:, None] * u
    return (1 - ua) * s + ua * n


@pytest.mark.parametrize("augru", [False, True])
def test_gru_kernel_every_isa(augru):
    """Hidden sizes across every vector width and tail (1..65), rows 1..5, pre-activations up to
    ±12 (σ and tanh saturated too): within 2e-6 absolute of float64 (states are in [-1, 1]; σ and
    tanh are a few ulp), and each ISA within 1e-6 of the reference twin."""
    from dpn_infer import _testing
    from helpers.isa import available_isas

    rng = np.random.default_rng(7)
    for h in list(range(1, 34)) + [47, 48, 63, 64, 65]:
        for R in (1, 2, 5):
            scale = rng.choice([0.5, 3.0, 12.0])
            gi = (rng.standard_normal((R, 3 * h)) * scale).astype(np.float32)
            gh = (rng.standard_normal((R, 3 * h)) * scale).astype(np.float32)
            st_ = rng.uniform(-1, 1, (R, h)).astype(np.float32)
            att = rng.uniform(0, 1, R).astype(np.float32) if augru else None
            want = _gates64(gi, gh, st_, att)
            ref = _testing.kernel("gru", "ref", gi=gi, gh=gh, state=st_, att=att)
            np.testing.assert_allclose(ref, want, rtol=0, atol=2e-6, err_msg=f"ref h={h} R={R}")
            for isa in available_isas():
                got = _testing.kernel("gru", isa, gi=gi, gh=gh, state=st_, att=att)
                np.testing.assert_allclose(got, want, rtol=0, atol=2e-6, err_msg=f"{isa} h={h} R={R}")
                np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, err_msg=f"{isa} vs ref h={h}")


# ---------------------------------------------------------------------------------------------
# corrupt and hand-edited files


def _base():
    model = SM.build(_dien("dien_heter", T=6, Tin=6))
    return torch_export.export(model)


def _node(meta, op):
    return next(n for n in meta["graph"]["nodes"] if n["op"] == op)


def _r(*shape):
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def _cases():
    c = {}

    def case(name, op, expect, fn):
        c[name] = (fn, expect, op)

    def attrs(op, **kw):
        return lambda mt, t: _node(mt, op)["attrs"].update(kw)

    for op in ("gru", "augru"):
        for name, upd in [("max_len_mismatch", {"max_len": 5}), ("in_mismatch", {"in": 3}),
                          ("hidden_mismatch", {"hidden": 4}), ("hidden_zero", {"hidden": 0}),
                          ("max_len_zero", {"max_len": 0}), ("max_len_huge", {"max_len": 1 << 40}),
                          ("in_huge", {"in": 1 << 40}), ("hidden_not_int", {"hidden": "11"})]:
            case(f"{op}_{name}", op, "error", attrs(op, **upd))
        for role, shape in [("weight_ih", (33, 10)), ("weight_hh", (33, 12)), ("bias_ih", (32,)),
                            ("bias_hh", (11,))]:
            def wrong(mt, t, op=op, role=role, shape=shape):
                t[_node(mt, op)["params"][role]] = _r(*shape)
            case(f"{op}_{role}_wrong_shape", op, "error", wrong)

            def missing(mt, t, op=op, role=role):
                del _node(mt, op)["params"][role]
            case(f"{op}_{role}_missing", op, "error", missing)

        def no_len(mt, t, op=op):
            _node(mt, op)["inputs"] = _node(mt, op)["inputs"][:-1]
        case(f"{op}_one_input_short", op, "error", no_len)

        def len_is_wide(mt, t, op=op):            # the lengths input must be width 1
            _node(mt, op)["inputs"][-1] = "q"
        case(f"{op}_lengths_not_width_1", op, "error", len_is_wide)
    case("gru_reverse_not_bool", "gru", "error", attrs("gru", reverse=1))
    case("gru_reverse_default", "gru", "ok", lambda mt, t: _node(mt, "gru")["attrs"].pop("reverse"))
    case("gru_unknown_attr_ignored", "gru", "ok", attrs("gru", zz_future=[1]))

    def att_wrong_width(mt, t):                   # augru's attention input must be [B, max_len]
        _node(mt, "augru")["inputs"][1] = "q"
    case("augru_att_wrong_width", "augru", "error", att_wrong_width)
    for name, upd in [("max_len_mismatch", {"max_len": 7}), ("dim_mismatch", {"dim": 9}),
                      ("query_mismatch", {"query": 3}), ("query_zero", {"query": 0}),
                      ("dim_huge", {"dim": 1 << 40})]:
        case(f"att_{name}", "dien_attention", "error", attrs("dien_attention", **upd))

    def att_weight_wrong(mt, t):
        t[_node(mt, "dien_attention")["params"]["weight"]] = _r(11, 12)
    case("att_weight_wrong_shape", "dien_attention", "error", att_weight_wrong)

    def att_weight_missing(mt, t):
        del _node(mt, "dien_attention")["params"]["weight"]
    case("att_weight_missing", "dien_attention", "error", att_weight_missing)

    def att_two_inputs(mt, t):
        _node(mt, "dien_attention")["inputs"] = _node(mt, "dien_attention")["inputs"][1:]
    case("att_two_inputs", "dien_attention", "error", att_two_inputs)
    return c


_CASES = _cases()


@pytest.fixture(scope="module")
def results():
    from helpers.isolated import run_edited

    meta0, tensors0 = _base()
    yield run_edited(meta0, tensors0, _CASES, SM.make_batch(_dien("dien_heter", T=6, Tin=6), 9, 3))


@pytest.mark.parametrize("case", list(_CASES))
def test_dien_crafted_file(case, results):
    from helpers.isolated import check_edited

    _, expect, op = _CASES[case]
    check_edited(case, expect, results[case], r"\(" + re.escape(op) + " '")


# ---------------------------------------------------------------------------------------------
# trained on MovieLens-100K histories


@pytest.fixture(scope="module")
def movielens():
    """MovieLens-100K with each user's earlier movies (newest first, max 20), 6,000 training rows,
    2,000 validation and 3,000 test rows (the first of each split; the splits are random)."""
    import dataclasses

    from dpn_infer.datasets import load_movielens_100k
    from dpn_infer.datasets._common import find_shared_data

    if find_shared_data("movielens-100k") is None:
        pytest.skip("MovieLens-100K not in ../shared/data")
    ds = load_movielens_100k(sequences=True, max_seq_len=20, embed_dim=8)
    return dataclasses.replace(ds, train=ds.train.take(np.arange(6000)), valid=ds.valid.take(np.arange(2000)),
                               test=ds.test.take(np.arange(3000)))


@pytest.mark.parametrize("kind", ["dien", "dien-heter"])
def test_movielens_dien_trained_and_reproduced(movielens, kind, tmp_path):
    """dpn_infer.train (the movielens config's DIEN: hist_movie newest first, auxiliary loss) for
    one short epoch writes a model.bin whose test AUC equals PyTorch's within 1e-6; DIEN + Heter's
    (a superset of DIEN's ops) predictions pass the parity criterion under every kernel ISA."""
    from dpn_infer.train import build_model, load_config, train
    from helpers.isa import available_isas, predict_under_isa
    from test_parity import judge
    from test_seq_parity import _truth

    cfg = load_config("movielens")
    cfg["embed_dim"] = 8
    cfg["models"][kind].update(layers=[16], dropout=0.0)
    model = build_model(kind, movielens.schema, cfg, seed=1)
    assert model.order == "newest_first"
    res = train(model, movielens, epochs=1, batch_size=512, lr=1e-2, seed=1, patience=0, log=None,
                progress=False, out=tmp_path)
    assert res["test"]["auc"] > 0.6, res["test"]
    assert res["model_bin"] and os.path.isfile(res["model_bin"])
    assert abs(res["engine_test"]["auc"] - res["test"]["auc"]) <= 1e-6, res
    if kind == "dien":
        return
    model.eval()
    xb = {k: v[:1500] for k, v in movielens.test.features.items() if k in model.schema.names}
    lengths = (xb["hist_movie"] != -1).sum(1)
    assert lengths.min() == 0 and lengths.max() == 20     # empty and full histories both present
    with torch.no_grad():
        ref = model(xb).numpy()
    bp = str(tmp_path / "b.npz")
    np.savez(bp, **xb)
    for isa in available_isas():
        selected, out = predict_under_isa(isa, [{"id": "ml", "model": res["model_bin"], "batch": bp}],
                                          str(tmp_path))
        assert selected == isa
        z, p, z3 = out["ml"]
        judge(z, p, ref, lambda: _truth(model, xb), xb, f"MovieLens {kind} under DPN_ISA={isa}")
        np.testing.assert_allclose(z3, z, rtol=1e-5, atol=1e-6)
