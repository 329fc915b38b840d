"""KFAtt (dpn_infer.nn.kfatt) against a direct float64 transcription of the KFAtt paper's posterior
means (KFAtt-base: prior + per-behaviour precisions; KFAtt-freq: one capped sensor per group), its
softmax-attention limit, masks; and the SE / separable-convolution generators and the Conv1D encoder
(shapes, parameter counts, padding)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer.nn import HeteroDPO, HomoDPO  # noqa: E402
from dpn_infer.nn.generators import Conv1DEncoder, SEGenerator, SeparableConv  # noqa: E402
from dpn_infer.nn.kfatt import KFAtt  # noqa: E402


def reference(att, q, x, mask, groups=None):
    """Per row and head, the posterior mean written out with plain exp / sums (float64)."""
    H, dh = att.heads, att.dim // att.heads
    Q = att.q(q).view(-1, H, dh)
    K, V = att.k(x).view(*x.shape[:2], H, dh), att.v(x).view(*x.shape[:2], H, dh)
    mu, p0 = att.prior_mean(q).view(-1, H, dh), torch.exp(att.prior_logprec(q))
    out = torch.zeros(q.shape[0], H, dh, dtype=torch.float64)
    for b in range(q.shape[0]):
        for h in range(H):
            ts = [t for t in range(x.shape[1]) if mask[b, t]]
            prec = {t: math.exp(float(Q[b, h] @ K[b, t, h]) / math.sqrt(dh)) for t in ts}
            num, den = p0[b, h] * mu[b, h], p0[b, h].clone()
            if att.mode == "base":
                for t in ts:
                    num = num + prec[t] * V[b, t, h]
                    den = den + prec[t]
            else:
                for g in sorted({int(groups[b, t]) for t in ts}):
                    mem = [t for t in ts if int(groups[b, t]) == g]
                    P = sum(prec[t] for t in mem)
                    vbar = sum(prec[t] * V[b, t, h] for t in mem) / P
                    sig2 = 1.0 / math.exp(float(att.group_logprec(x[b, mem].mean(0))[h]))
                    pi = 1.0 / (sig2 + 1.0 / P)
                    num = num + pi * vbar
                    den = den + pi
            out[b, h] = num / den
    return att.o(out.reshape(q.shape[0], att.dim))


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), heads=st.sampled_from([1, 2]),
       mode=st.sampled_from(["base", "freq"]), seed=st.integers(0, 2 ** 16))
def test_kfatt_matches_the_formulas(B, T, heads, mode, seed):
    torch.manual_seed(seed)
    att = KFAtt(3, 5, 4, out_dim=3, heads=heads, mode=mode).double()
    q, x = torch.randn(B, 3, dtype=torch.float64), torch.randn(B, T, 5, dtype=torch.float64)
    mask = torch.rand(B, T) < 0.7
    mask[0] = False                                   # an empty row: the prior mean
    groups = torch.randint(0, 3, (B, T))
    with torch.no_grad():
        got = att(q, x, mask, groups)
        want = reference(att, q, x, mask, groups)
        slots = att(q, x, mask, groups, num_groups=3)       # ids already slots in [0, 3)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(slots, want, rtol=1e-9, atol=1e-10)


def test_base_without_prior_is_softmax_attention():
    """1/sigma_q^2 -> 0 (prior log precision -> -inf): KFAtt-base is scaled dot-product attention."""
    torch.manual_seed(0)
    att = KFAtt(4, 4, 4, heads=2).double()
    with torch.no_grad():
        att.prior_logprec.weight.zero_()
        att.prior_logprec.bias.fill_(-1e4)
    q, x = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5, 4, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    with torch.no_grad():
        Q, K, V = att.q(q).view(3, 2, 2), att.k(x).view(3, 5, 2, 2), att.v(x).view(3, 5, 2, 2)
        a = torch.softmax(torch.einsum("bhe,bthe->bht", Q, K) / math.sqrt(2), dim=-1)
        want = att.o(torch.einsum("bht,bthe->bhe", a, V).reshape(3, 4))
        torch.testing.assert_close(att(q, x, mask), want, rtol=1e-12, atol=1e-12)


def test_freq_caps_a_repeated_group():
    """A group repeated n times: KFAtt-base's estimate is drowned by it (-> that behaviour's value),
    KFAtt-freq's weight for the group stays below 1/sigma_m^2, so the prior and the other group
    keep theirs and the estimate converges elsewhere."""
    torch.manual_seed(1)
    for mode in ("base", "freq"):
        att = KFAtt(2, 2, 2, mode=mode).double()
        with torch.no_grad():
            att.prior_logprec.weight.zero_()
            att.prior_logprec.bias.fill_(0.0)
            if mode == "freq":
                att.group_logprec.weight.zero_()
                att.group_logprec.bias.fill_(0.0)
        q = torch.randn(1, 2, dtype=torch.float64)
        one, other = torch.randn(1, 1, 2, dtype=torch.float64), torch.randn(1, 1, 2, dtype=torch.float64)
        res = []
        for n in (1000, 10000):
            x = torch.cat([one.expand(1, n, 2), other], 1)
            g = torch.tensor([[0] * n + [1]])
            with torch.no_grad():
                res.append(att(q, x, torch.ones(1, n + 1, dtype=torch.bool), g, num_groups=2))
        with torch.no_grad():
            v_one = att.o(att.v(one[:, 0]))
        off = float((res[1] - v_one).abs().max())
        if mode == "base":
            assert off < 1e-2, off
        else:
            assert off > 0.05 and float((res[1] - res[0]).abs().max()) < 1e-3, off


def test_padding_changes_nothing_and_gradients_flow():
    torch.manual_seed(2)
    att = KFAtt(3, 4, 4, heads=2, mode="freq")
    q, x = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [0] * 6], dtype=torch.bool)
    g = torch.tensor([[0, 0, 5, 1, 2, 2], [0] * 6])
    y = att(q, x, mask, g)
    x2 = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    torch.testing.assert_close(att(q, x2, mask, torch.where(mask, g, torch.full_like(g, 3))), y)
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in att.parameters())
    with pytest.raises(ValueError, match="groups"):
        att(q, x, mask)
    with pytest.raises(ValueError, match="heads"):
        KFAtt(3, 4, 5, heads=2)


def test_se_generator_parameter_count_and_shapes():
    for n, r, out in ((16, 4, 48), (32, 8, 96), (3, 4, 9)):
        g = SEGenerator(n, out, ratio=r)
        h = max(1, n // r)
        assert g.hidden == h and sum(p.numel() for p in g.parameters()) == n * h + h + h * out + out
        y = g(torch.randn(5, n))
        assert y.shape == (5, out) and bool(((y > 0) & (y < 1)).all())
    # HomoDPO's SE generator: the same count for its k*n kernel outputs
    hd = HomoDPO(16, 3, generator="se", ratio=4)
    assert sum(p.numel() for p in hd.parameters()) == 16 * 4 + 4 + 4 * 48 + 48


@pytest.mark.parametrize("k", [3, 5])
def test_separable_and_conv1d_shapes_and_padding(k):
    torch.manual_seed(k)
    x, lengths = torch.randn(3, 7, 6), torch.tensor([0, 4, 7])
    for mod in (SeparableConv(6, k), Conv1DEncoder(6, k)):
        y = mod(x, lengths)
        assert y.shape == (3, 7, 6)
        assert (y[0] == 0).all() and (y[1, 4:] == 0).all()
        x2 = x.clone()
        x2[1, 4:] = 1e3                                # padding: changes no output
        torch.testing.assert_close(mod(x2, lengths), y)
    assert sum(p.numel() for p in SeparableConv(6, k).parameters()) == 6 * k + 6 + 6 * 6 + 6


def test_sep_generators_in_homo_and_hetero_dpo():
    torch.manual_seed(3)
    x, lengths, q = torch.randn(4, 5, 8), torch.tensor([0, 1, 3, 5]), torch.randn(4, 6)
    hd = HomoDPO(8, 3, generator="sep", ratio=2)
    het = HeteroDPO(6, 8, 4, generator="sep", ratio=2)
    assert hd.hidden == 4 and het.dpo.hidden == 4
    y, z = hd(x, lengths), het(q, x, lengths)
    assert y.shape == (4, 5, 8) and z.shape == (4, 4)
    x2 = x.clone()
    x2[2, 3:] = 50.0
    torch.testing.assert_close(hd(x2, lengths), y)
    torch.testing.assert_close(het(q, x2, lengths), z)
    (y.sum() + z.sum()).backward()
    assert hd.sep.depthwise.grad is not None and het.sep.pointwise.weight.grad is not None
    with pytest.raises(ValueError, match="generator"):
        HeteroDPO(6, 8, 4, generator="conv")
