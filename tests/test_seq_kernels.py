"""The dynamic depthwise convolution kernel of homo_dpo and its mean (the separable generator's
context, seq_sepconv_pool) (kernels/dwconv_*.cpp) per ISA.

`_testing.kernel("dwconv"|"dwconv_mean", isa, x=[T, n], K=[k, n], length=L)` runs one ISA's version. Swept
over k in 1..9 (odd), n in 1..40 plus 63, 64, 65, 129, T in 1..12 plus 50, lengths 0, 1, L, T.
Every ISA gives the same bits as the reference (taps added in order, no FMA); the reference matches an
independent float64 numpy computation within rtol 1e-5 / atol 1e-6. Rows at or past the length
are never written (the test fills them with 0 before the call and checks they stay 0).
"""
from __future__ import annotations

import numpy as np
import pytest

from dpn_infer import _engine, _testing

ISAS = list(_engine.cpu_info()["available"])
NS = list(range(1, 41)) + [63, 64, 65, 129]
KS = [1, 3, 5, 7, 9]


def _numpy_dwconv(x, K, L):
    T, n = x.shape
    k = K.shape[0]
    y = np.zeros((T, n), np.float64)
    for i in range(L):
        for t in range(k):
            p = i + t - k // 2
            if 0 <= p < L:
                y[i] += K[t].astype(np.float64) * x[p].astype(np.float64)
    return y


def _cases(seed):
    rng = np.random.default_rng(seed)
    for n in NS:
        for k in KS:
            T = int(rng.choice([1, 2, 3, 5, 8, 12, 50]))
            for L in sorted({0, 1, T, int(rng.integers(0, T + 1))}):
                yield rng, n, k, T, L


@pytest.mark.parametrize("isa", ISAS)
def test_dwconv_matches_reference_bits_and_numpy(isa):
    for rng, n, k, T, L in _cases(5):
        x = rng.standard_normal((T, n)).astype(np.float32)
        x[L:] = np.nan                    # positions past the length must never be read
        K = rng.standard_normal((k, n)).astype(np.float32)
        y = _testing.kernel("dwconv", isa, x=x, K=K, length=L)
        ref = _testing.kernel("dwconv", "ref", x=x, K=K, length=L)
        what = f"isa={isa} n={n} k={k} T={T} L={L}"
        np.testing.assert_array_equal(y, ref, err_msg=what)
        assert np.all(y[L:] == 0), what
        np.testing.assert_allclose(y[:L], _numpy_dwconv(x, K, L)[:L], rtol=1e-5, atol=1e-6,
                                   err_msg=what)


@pytest.mark.parametrize("isa", ISAS)
def test_dwconv_mean_matches_reference_bits_and_numpy(isa):
    """The mean over i < L of dwconv's rows without forming them: the reference's bits on every ISA
    (same order of sums, no FMA), every entry written (the binding pre-fills NaN), zeros for L = 0, and
    within rtol 1e-5 / atol 1e-5·Σ_τ|K[τ, j]|·max|x| of float64 numpy (it sums whole windows as S less
    the edges: that cancellation costs float32 rounding of S, not of the window)."""
    for rng, n, k, T, L in _cases(7):
        x = rng.standard_normal((T, n)).astype(np.float32) * np.float32(rng.uniform(0.1, 4.0))
        x[L:] = np.nan
        K = rng.standard_normal((k, n)).astype(np.float32)
        y = _testing.kernel("dwconv_mean", isa, x=x, K=K, length=L)
        ref = _testing.kernel("dwconv_mean", "ref", x=x, K=K, length=L)
        what = f"isa={isa} n={n} k={k} T={T} L={L}"
        np.testing.assert_array_equal(y, ref, err_msg=what)
        if L == 0:
            assert np.all(y == 0), what
            continue
        want = _numpy_dwconv(x, K, L)[:L].mean(0)
        atol = 1e-5 * np.abs(K).sum(0) * float(np.abs(x[:L]).max())
        assert np.all(np.abs(y - want) <= atol + 1e-5 * np.abs(want)), what


def test_dwconv_rejects_bad_shapes():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError):
        _testing.kernel("dwconv", "ref", x=x, K=np.zeros((2, 3), np.float32))   # even k
    with pytest.raises(ValueError):
        _testing.kernel("dwconv", "ref", x=x, K=np.zeros((3, 4), np.float32))   # n mismatch
    with pytest.raises(ValueError):
        _testing.kernel("dwconv", "ref", x=x, K=np.zeros((3, 3), np.float32), length=5)
    with pytest.raises(ValueError):
        _testing.kernel("dwconv_mean", "ref", x=x, K=np.zeros((3, 3), np.float32), length=-1)


# -- attention core (kernels/attention_*.cpp) ---------------------------------------------------

def _numpy_attention(qkv, H, scale):
    L, d3 = qkv.shape
    d = d3 // 3
    dh = d // H
    q, k, v = (qkv[:, p * d:(p + 1) * d].astype(np.float64) for p in range(3))
    out = np.zeros((L, d))
    for h in range(H):
        c = slice(h * dh, (h + 1) * dh)
        s = q[:, c] @ k[:, c].T * scale
        s = np.exp(s - s.max(1, keepdims=True))
        out[:, c] = (s / s.sum(1, keepdims=True)) @ v[:, c]
    return out


@pytest.mark.parametrize("isa", ISAS)
def test_attention_core_matches_numpy(isa):
    """Every ISA within rtol 1e-5 / atol 1e-5 x max|value| of float64 numpy (outputs are weighted sums
    of values of either sign, so small outputs carry the rounding of the large terms; the vector
    versions use a vector exp and FMA: not bit-equal to the reference), over L in 1..40 and 50,
    d in 1..40 and 64, 65, heads dividing d."""
    rng = np.random.default_rng(9)
    for L in list(range(1, 41)) + [50]:
        d = int(rng.choice(list(range(1, 41)) + [64, 65]))
        divs = [h for h in range(1, d + 1) if d % h == 0]
        H = int(rng.choice(divs))
        qkv = rng.standard_normal((L, 3 * d)).astype(np.float32) * np.float32(rng.uniform(0.1, 3.0))
        A = _testing.kernel("attention", isa, qkv=qkv, heads=H)
        want = _numpy_attention(qkv, H, 1.0 / np.sqrt(d // H))
        atol = 1e-5 * float(np.abs(qkv[:, 2 * d:]).max())
        np.testing.assert_allclose(A, want, rtol=1e-5, atol=atol, err_msg=f"isa={isa} L={L} d={d} H={H}")


# -- KFAtt loops (kernels/kfatt_*.cpp) ---------------------------------------------------------
# Widths dh 1..40 and 63-65, 129 cross the 8 / 16-lane vectors and the 64-channel accumulator
# blocks; rows n 0..20 and 50; K and V with leading dimension past dh (KFAtt's rows are [k, v] of
# 2·att_dim). Bound: a dot product / weighted sum of n terms in float32 is within n·2^-24·Σ|terms|
# of the exact value for any summation order and with or without fused multiply-adds, so each ISA
# is within that (times 1.01) of float64; the vector ISAs share one lane order, so they also give
# each other's bits.
DHS = list(range(1, 41)) + [63, 64, 65, 129]
VEC_BASE = "avx2" if "avx2" in ISAS else None     # the vector ISAs give its bits


@pytest.mark.parametrize("isa", ISAS)
def test_kfatt_scores_match_numpy(isa):
    rng = np.random.default_rng(21)
    for dh in DHS:
        n = int(rng.choice(list(range(0, 21)) + [50]))
        ld = dh + int(rng.integers(0, 5))
        q = rng.standard_normal(dh).astype(np.float32)
        K = rng.standard_normal((n, ld)).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(dh))
        got = _testing.kernel("kfatt_scores", isa, q=q, K=K, scale=float(scale))
        terms = np.abs(K[:, :dh].astype(np.float64) * q.astype(np.float64))
        want = (K[:, :dh].astype(np.float64) @ q.astype(np.float64)) * np.float64(scale)
        bound = 1.01 * (dh + 1) * 2.0 ** -24 * terms.sum(1) * float(scale) + 1e-30
        assert got.shape == (n,)
        assert np.all(np.abs(got - want) <= bound), f"isa={isa} dh={dh} n={n}"
        if isa != "ref" and VEC_BASE:
            np.testing.assert_array_equal(got, _testing.kernel("kfatt_scores", VEC_BASE, q=q, K=K,
                                                               scale=float(scale)))


@pytest.mark.parametrize("isa", ISAS)
def test_kfatt_wsum_matches_numpy(isa):
    rng = np.random.default_rng(22)
    for dh in DHS:
        n = int(rng.choice(list(range(0, 21)) + [50]))
        ld = dh + int(rng.integers(0, 5))
        w = rng.random(n).astype(np.float32)
        V = rng.standard_normal((n, ld)).astype(np.float32)
        acc = rng.standard_normal(dh).astype(np.float32)
        got = _testing.kernel("kfatt_wsum", isa, w=w, V=V, acc=acc)
        terms = np.abs(w[:, None].astype(np.float64) * V[:, :dh].astype(np.float64))
        want = acc.astype(np.float64) + w.astype(np.float64) @ V[:, :dh].astype(np.float64)
        bound = 1.01 * (n + 1) * 2.0 ** -24 * (terms.sum(0) + np.abs(acc)) + 1e-30
        assert got.shape == (dh,)
        assert np.all(np.abs(got - want) <= bound), f"isa={isa} dh={dh} n={n}"
        if isa != "ref" and VEC_BASE:
            np.testing.assert_array_equal(got, _testing.kernel("kfatt_wsum", VEC_BASE, w=w, V=V, acc=acc))
