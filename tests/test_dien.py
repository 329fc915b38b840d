"""DIEN / DIEN + Heter (dpn_infer.nn.dien): the extractor against torch.nn.GRU on the same weights,
AUGRU against a step loop written from the DIEN equations, the models' forward / backward on batch
sizes 1 and odd, padding, behaviour order, the auxiliary loss and the checkpoint round trip."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer.nn import (AUGRU, DIEN, GRU, DIENHeter, Schema, SequenceField,  # noqa: E402
                          SparseField, load_checkpoint, save_checkpoint)


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(0, 7), d=st.integers(1, 5), h=st.integers(1, 5),
       seed=st.integers(0, 2 ** 16))
def test_gru_matches_torch_gru(B, T, d, h, seed):
    torch.manual_seed(seed)
    ours = GRU(d, h).double()
    ref = torch.nn.GRU(d, h, batch_first=True).double()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, n + "_l0").copy_(getattr(ours, n))
    x = torch.randn(B, T, d, dtype=torch.float64)
    lengths = torch.randint(0, T + 1, (B,))
    with torch.no_grad():
        states, last = ours(x, lengths)
        for b in range(B):
            n = int(lengths[b])
            if n == 0:
                assert (last[b] == 0).all() and (states[b] == 0).all()
                continue
            out, hn = ref(x[b:b + 1, :n])
            torch.testing.assert_close(states[b, :n], out[0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(last[b], hn[0, 0], rtol=1e-12, atol=1e-12)
            assert (states[b, n:] == 0).all()


def augru_reference(m, x, a, n):
    """DIEN's AUGRU, one row, written from the paper's equations (float64)."""
    H = m.hidden
    Wr, Wu, Wh = m.weight_ih[:H], m.weight_ih[H:2 * H], m.weight_ih[2 * H:]
    Ur, Uu, Uh = m.weight_hh[:H], m.weight_hh[H:2 * H], m.weight_hh[2 * H:]
    bir, biu, bih = m.bias_ih[:H], m.bias_ih[H:2 * H], m.bias_ih[2 * H:]
    bhr, bhu, bhh = m.bias_hh[:H], m.bias_hh[H:2 * H], m.bias_hh[2 * H:]
    h = torch.zeros(H, dtype=torch.float64)
    for t in range(n):
        u = torch.sigmoid(Wu @ x[t] + biu + Uu @ h + bhu)
        r = torch.sigmoid(Wr @ x[t] + bir + Ur @ h + bhr)
        ht = torch.tanh(Wh @ x[t] + bih + r * (Uh @ h + bhh))
        u2 = a[t] * u
        h = (1 - u2) * h + u2 * ht
    return h


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(0, 6), d=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_augru_matches_the_equations(B, T, d, seed):
    torch.manual_seed(seed)
    m = AUGRU(d, d).double()
    x = torch.randn(B, T, d, dtype=torch.float64)
    a = torch.rand(B, T, dtype=torch.float64)
    lengths = torch.randint(0, T + 1, (B,))
    with torch.no_grad():
        got = m(x, a, lengths)
        for b in range(B):
            torch.testing.assert_close(got[b], augru_reference(m, x[b], a[b], int(lengths[b])),
                                       rtol=1e-12, atol=1e-12)


def schema(T=6):
    return Schema([SparseField("user", 7, 4), SparseField("movie", 11, 4),
                   SequenceField("hist", 11, 4, T, policy="hash", truncate=True, table="movie")])


def batch(B, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(0, 11, (B, T), generator=g)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = 0                                       # an empty history
    hist[torch.arange(T).unsqueeze(0) >= lengths.unsqueeze(1)] = -1
    return {"user": torch.randint(0, 7, (B,), generator=g), "movie": torch.randint(0, 11, (B,), generator=g),
            "hist": hist}


@pytest.mark.parametrize("cls", [DIEN, DIENHeter])
@pytest.mark.parametrize("B", [1, 5])
def test_models_forward_backward_padding_checkpoint(cls, B, tmp_path):
    torch.manual_seed(B)
    m = cls(schema(), ["hist"], ["movie"], layers=[8], order="newest_first", dropout=0.0)
    b = batch(B)
    y = m(b)
    assert y.shape == (B,) and torch.isfinite(y).all()
    (y.sum() + m.aux_loss(b)).backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith("inputs"))
    m.eval()
    with torch.no_grad():
        y = m(b)
        # padding: two more -1 columns (T > max_len, truncated) change nothing
        wide = dict(b, hist=torch.cat([b["hist"], torch.full((B, 2), -1)], 1))
        torch.testing.assert_close(m(wide), y)
        # newest_first reads the reversed valid prefix as the same history
        rev = b["hist"].clone()
        for r in range(B):
            n = int((rev[r] != -1).sum())
            rev[r, :n] = rev[r, :n].flip(0)
        m2 = cls.from_config(dict(m.config(), order="oldest_first"))
        m2.load_state_dict(m.state_dict())
        torch.testing.assert_close(m2.eval()(dict(b, hist=rev)), y)
    save_checkpoint(m, tmp_path / "ck.pt")
    back = load_checkpoint(tmp_path / "ck.pt")
    assert type(back) is cls and back.config() == m.config()
    with torch.no_grad():
        torch.testing.assert_close(back(b), y)


def test_aux_loss_prefers_the_true_next_behaviour():
    """The auxiliary loss is a BCE over (h_t, e_{t+1}) against drawn negatives: it is finite on
    empty and one-behaviour rows, and training on it alone lowers it."""
    torch.manual_seed(0)
    m = DIEN(schema(), ["hist"], ["movie"], layers=[4])
    b = batch(9, seed=3)
    g = torch.Generator().manual_seed(0)
    first = float(m.aux_loss(b, generator=g).detach())
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(12):
        opt.zero_grad()
        loss = m.aux_loss(b, generator=torch.Generator().manual_seed(0))
        loss.backward()
        opt.step()
    assert 0 < float(loss.detach()) < first
    empty = {k: v[:1] for k, v in b.items()}             # row 0 has no history
    assert float(m.aux_loss(empty).detach()) == 0.0
    m.aux_weight = 0.25
    torch.manual_seed(5)
    extra = float(m.extra_loss(b).detach())
    torch.manual_seed(5)
    assert extra == pytest.approx(0.25 * float(m.aux_loss(b).detach()), rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        DIEN(schema(), ["hist"], ["movie"], order="random")
    with pytest.raises(ValueError, match="sequence field"):
        DIEN(schema(), ["user"], ["movie"])
    with pytest.raises(ValueError, match="aux_weight"):
        DIEN(schema(), ["hist"], ["movie"], aux_weight=-1)
