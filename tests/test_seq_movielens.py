"""A SeqDPN trained on real behaviour sequences (MovieLens-100K from ../shared/data: each user's
earlier rated movies, oldest first, with each movie's first genre as its category) for a few seconds;
the engine must reproduce its predictions on the held-out rows under every kernel ISA (criterion of
test_parity.judge: rtol 1e-4 / atol 1e-5 on logits and probabilities)."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpn_infer import nn as dnn  # noqa: E402
from dpn_infer.converters import torch_export  # noqa: E402
from dpn_infer.datasets._common import find_shared_data  # noqa: E402
from dpn_infer.engine import load  # noqa: E402
from test_parity import judge  # noqa: E402
from test_seq_parity import _truth  # noqa: E402

T = 20
D = 8


def _chronological(h):
    """Dataset histories are most recent first (valid ids as a prefix); the sequence kind reads rows
    oldest first (truncation keeps the last ids)."""
    out = np.full_like(h, -1)
    n = (h != -1).sum(1)
    for r in range(len(h)):
        out[r, :n[r]] = h[r, :n[r]][::-1]
    return out


@pytest.fixture(scope="module")
def data():
    if find_shared_data("movielens-100k") is None:
        pytest.skip("MovieLens-100K not in ../shared/data")
    from dpn_infer.datasets.movielens import GENRES, load_movielens_100k

    ds = load_movielens_100k(sequences=True, max_seq_len=T, embed_dim=D)
    vocab = {f["name"]: f["vocab"] for f in ds.schema}

    def batch(split):
        f = split.features
        g = f["genres"][:, 0]
        return {"movie": f["movie"], "genre": np.where(g < 0, len(GENRES), g),
                "user": f["user"], "age": f["age"], "gender": f["gender"],
                "occupation": f["occupation"],
                "hist_movie": _chronological(f["hist_movie"]),
                "hist_genre": _chronological(f["hist_genre"])}, split.labels

    schema = dnn.Schema([
        dnn.SparseField("movie", vocab["movie"], D, policy="oov_bucket"),
        dnn.SparseField("genre", len(GENRES), D, policy="oov_bucket"),
        dnn.SparseField("user", vocab["user"], D, policy="oov_bucket"),
        dnn.SparseField("age", vocab["age"], 4, policy="oov_bucket"),
        dnn.SparseField("gender", vocab["gender"], 2, policy="oov_bucket"),
        dnn.SparseField("occupation", vocab["occupation"], 4, policy="oov_bucket"),
        dnn.SequenceField("hist_movie", vocab["movie"], D, T, policy="oov_bucket", table="movie"),
        dnn.SequenceField("hist_genre", len(GENRES), D, T, policy="oov_bucket", table="genre"),
    ])
    return schema, batch(ds.train), batch(ds.test)


def _train(model, train, seconds=4.0, bs=256):
    (xb, y) = train
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(0)
    model.train()
    losses = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = rng.integers(0, len(y), bs)
        loss = loss_fn(model({k: v[idx] for k, v in xb.items()}), torch.as_tensor(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    k = max(1, len(losses) // 5)
    return model.eval(), float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


@pytest.mark.parametrize("kind", ["seqdpn", "din_heter"])
def test_movielens_seq_model_trains_and_engine_matches(data, kind):
    from helpers.isa import available_isas, predict_under_isa

    schema, train, test = data
    torch.manual_seed(0)
    common = dict(profile=["user", "age", "gender", "occupation"], heads=2, att_hidden=16,
                  layers=[32, 16])
    if kind == "seqdpn":
        model = dnn.SeqDPN(schema, ["hist_movie", "hist_genre"], ["movie", "genre"], **common)
    else:
        model = dnn.DINHeter(schema, ["hist_movie", "hist_genre"], ["movie", "genre"], **common)
    model, first, last = _train(model, train)
    assert last < first, f"training did not lower the loss (first fifth {first:.4f}, last {last:.4f})"
    xb, _ = test
    xb = {k: v[:1500] for k, v in xb.items()}
    lengths = (xb["hist_movie"] != -1).sum(1)
    assert lengths.min() == 0 and lengths.max() == T     # empty and full histories both present
    with torch.no_grad():
        ref = model(xb).numpy()
    with tempfile.TemporaryDirectory(prefix="dpn_ml_seq_") as d:
        mp, bp = os.path.join(d, "m.bin"), os.path.join(d, "b.npz")
        torch_export.save(model, mp)
        np.savez(bp, **xb)
        z, p = load(mp).predict(xb, logits=True), load(mp).predict(xb)
        judge(z, p, ref, lambda: _truth(model, xb), xb, f"MovieLens {kind}")
        for isa in available_isas():
            selected, res = predict_under_isa(isa, [{"id": "ml", "model": mp, "batch": bp}], d)
            assert selected == isa
            z, p, z3 = res["ml"]
            judge(z, p, ref, lambda: _truth(model, xb), xb, f"MovieLens {kind} under DPN_ISA={isa}")
            np.testing.assert_allclose(z3, z, rtol=1e-5, atol=1e-6)


def test_train_builds_seq_dpn_from_the_movielens_config():
    """dpn_infer.train.build_model('seq-dpn') on MovieLens with sequences: hist_* become sequence
    fields (hist_movie sharing movie's table); without sequences it says what is missing."""
    if find_shared_data("movielens-100k") is None:
        pytest.skip("MovieLens-100K not in ../shared/data")
    from dpn_infer import train as T
    from dpn_infer.datasets import load_dataset

    cfg = T.load_config("movielens")
    ds = load_dataset("movielens-100k", sequences=True, max_seq_len=8)
    model = T.build_model("seq-dpn", ds.schema, cfg, seed=0).eval()
    f = model.schema["hist_movie"]
    assert isinstance(model, dnn.SeqDPN) and f.kind == "sequence" and f.table == "movie"
    xb = {k: v[:300] for k, v in ds.test.features.items()}
    with torch.no_grad():
        ref = model(xb).numpy()
    with tempfile.TemporaryDirectory() as d:
        torch_export.save(model, os.path.join(d, "m.bin"))
        z = load(os.path.join(d, "m.bin")).predict(xb, logits=True)
    np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="--sequences"):
        T.build_model("seq-dpn", load_dataset("movielens-100k").schema, cfg)
