"""field_attention (kernels/field_attn.h) and field_mix (kernels/field_mix.h) per ISA.

field_attention: softmax over context fields, then the weighted sum of context rows. Swept over
t1, t2 in 1..9, n in 1..40 plus 127, 128, 129, rows 1..3, with scores at mixed magnitudes. The
vector versions use a vector exp, so they match the reference (and the reference a float64 numpy
computation) to rtol 1e-5 / atol 1e-6 of the sums of magnitudes. field_mix: see its test."""
from __future__ import annotations

import numpy as np
import pytest

from dpn_infer import _engine, _testing

ISAS = list(_engine.cpu_info()["available"])


def _numpy(s, z):
    s = s.astype(np.float64)
    w = np.exp(s - s.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)                          # [R, t2, t1]
    return np.einsum("rji,rjn->rin", w, z.astype(np.float64)), np.einsum("rji,rjn->rin", w,
                                                                         np.abs(z.astype(np.float64)))


def _cases():
    rng = np.random.default_rng(7)
    for n in list(range(1, 41)) + [127, 128, 129]:
        for t1, t2 in ((1, 1), (1, 5), (3, 1), (int(rng.integers(1, 10)), int(rng.integers(1, 10)))):
            R = int(rng.integers(1, 4))
            s = rng.standard_normal((R, t2, t1)) * 10.0 ** rng.uniform(-2, 1.5, (R, t2, t1))
            s = s.astype(np.float32)
            z = (rng.standard_normal((R, t2, n)) * 10.0 ** rng.uniform(-3, 3, (R, t2, n))).astype(np.float32)
            yield s, z


@pytest.mark.parametrize("isa", ISAS)
def test_field_attention(isa):
    for s, z in _cases():
        ref = _testing.kernel("field_attention", "ref", s=s, z=z)
        y = _testing.kernel("field_attention", isa, s=s, z=z)
        want, mag = _numpy(s, z)
        # vector exp (Cephes) vs std::exp: the weights differ by a few ulp
        assert np.all(np.abs(y - ref) <= 1e-6 + 1e-5 * mag), f"{isa} vs ref, s {s.shape}, z {z.shape}"
        assert y.shape == want.shape
        assert np.all(np.abs(y - want) <= 1e-6 + 1e-5 * mag), f"{isa} vs float64, s {s.shape}"


def test_field_attention_extreme_scores():
    """Scores of +-80 (exp would overflow without the max shift): weights stay finite and sum to 1."""
    s = np.array([[[80.0, -80.0], [79.0, 80.0], [-80.0, 0.0]]], np.float32)   # [1, t2=3, t1=2]
    z = np.ones((1, 3, 5), np.float32)
    for isa in ISAS:
        y = _testing.kernel("field_attention", isa, s=s, z=z)
        np.testing.assert_allclose(y, np.ones((1, 2, 5)), rtol=1e-6)


def test_field_attention_bad_shapes():
    with pytest.raises(ValueError):
        _testing.kernel("field_attention", "ref", s=np.zeros((2, 3, 1), np.float32),
                           z=np.zeros((2, 4, 5), np.float32))


def _mix_numpy(W, T, y, bias, accumulate):
    base = y.astype(np.float64) if accumulate else (np.zeros_like(y, np.float64) if bias is None
                                                    else np.broadcast_to(bias.astype(np.float64), y.shape))
    out = base + np.einsum("ik,rkc->ric", W.astype(np.float64), T.astype(np.float64))
    mag = np.abs(base) + np.einsum("ik,rkc->ric", np.abs(W.astype(np.float64)), np.abs(T.astype(np.float64)))
    return out, mag


@pytest.mark.parametrize("isa", ISAS)
def test_field_mix(isa):
    """field_mix (kernels/field_mix.h): y_i (+)= sum_k W[i,k] T_k per row; t in 1..9, c 1..40, 127..129,
    accumulate or bias or neither. Same bits as the reference; reference vs float64 within rtol 1e-5."""
    rng = np.random.default_rng(11)
    for c in list(range(1, 41)) + [127, 128, 129]:
        for t in (1, 2, int(rng.integers(3, 10))):
            R = int(rng.integers(1, 4))
            W = rng.standard_normal((t, t)).astype(np.float32)
            T = (rng.standard_normal((R, t, c)) * 10.0 ** rng.uniform(-2, 2, (R, t, c))).astype(np.float32)
            y = rng.standard_normal((R, t, c)).astype(np.float32)
            bias = rng.standard_normal(c).astype(np.float32)
            for kw, acc, b in ((dict(accumulate=True), True, None),
                               (dict(accumulate=False, bias=bias), False, bias),
                               (dict(accumulate=False), False, None)):
                ref = _testing.kernel("field_mix", "ref", W=W, T=T, y=y, **kw)
                got = _testing.kernel("field_mix", isa, W=W, T=T, y=y, **kw)
                np.testing.assert_array_equal(got, ref, err_msg=f"{isa} t={t} c={c} {list(kw)}")
                want, mag = _mix_numpy(W, T, y, b, acc)
                assert np.all(np.abs(got - want) <= 1e-6 + 1e-5 * mag), f"{isa} t={t} c={c} {list(kw)}"
