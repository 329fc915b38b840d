"""The dynamic depthwise convolution kernel of homo_dpo (kernels/dwconv_*.cpp) per ISA.

`_engine._test_rows("dwconv", isa, x=[T, n], K=[k, n], length=L)` runs one ISA's version. Swept
over k in 1..9 (odd), n in 1..40 plus 63, 64, 65, 129, T in 1..12 plus 50, lengths 0, 1, L, T.
Every ISA gives the same bits as the reference (taps added in order, no FMA); the reference matches an
independent float64 numpy computation within rtol 1e-5 / atol 1e-6. Rows at or past the length
are never written (the test fills them with 0 before the call and checks they stay 0).
"""
from __future__ import annotations

import numpy as np
import pytest

from dpn_infer import _engine

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
        y = _engine._test_rows("dwconv", isa, x=x, K=K, length=L)
        ref = _engine._test_rows("dwconv", "ref", x=x, K=K, length=L)
        what = f"isa={isa} n={n} k={k} T={T} L={L}"
        np.testing.assert_array_equal(y, ref, err_msg=what)
        assert np.all(y[L:] == 0), what
        np.testing.assert_allclose(y[:L], _numpy_dwconv(x, K, L)[:L], rtol=1e-5, atol=1e-6,
                                   err_msg=what)


def test_dwconv_rejects_bad_shapes():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError):
        _engine._test_rows("dwconv", "ref", x=x, K=np.zeros((2, 3), np.float32))   # even k
    with pytest.raises(ValueError):
        _engine._test_rows("dwconv", "ref", x=x, K=np.zeros((3, 4), np.float32))   # n mismatch
    with pytest.raises(ValueError):
        _engine._test_rows("dwconv", "ref", x=x, K=np.zeros((3, 3), np.float32), length=5)
