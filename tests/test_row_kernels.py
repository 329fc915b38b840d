"""Row and elementwise kernels per ISA: pool_rows, layernorm_rows, cross_rows, act_inplace,
softmax_rows and kron_panel.

`_testing.kernel(kernel, isa, **arrays)` runs one ISA's version regardless of the process's
selected ISA. Every ISA the machine can run is swept over widths 1..70 and 127, 128, 129, 1000 and
rows 1..9, against the reference ISA and against an independent float64 numpy computation.

Expected agreement with the reference ISA: pool, relu and kron_panel bit for bit; sigmoid, tanh and
softmax within rtol 1e-5, atol 1e-6 (vectorized Cephes exp). layernorm and cross: the vector
versions sum a row in 16 lane partial sums and a fixed tree (the reference, kept bit-compatible with
the golden outputs, sums in order), so they match the reference within the rounding of those sums
(rtol 1e-5, atol 1e-6 for rows whose mean is not large against their spread) and match each other
(AVX2 == AVX-512) bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from dpn_infer import _engine, _testing

ISAS = list(_engine.cpu_info()["available"])
WIDTHS = list(range(1, 71)) + [127, 128, 129, 1000]
ROWS = range(1, 10)
ACTS = ["relu", "sigmoid", "tanh", "identity"]


def _rows(kernel, isa, **kw):
    return _testing.kernel(kernel, isa, **kw)


def _same_vector_isas(kernel, isa, y, **kw):
    """AVX2 and AVX-512 sum a row in the same order: the same bits."""
    if isa == "ref":
        return
    for other in ("avx2", "avx512"):
        if other in ISAS:
            np.testing.assert_array_equal(_rows(kernel, other, **kw), y, err_msg=f"{kernel} {other}")


def _data(rng, shape, big=False):
    """Normal data at mixed magnitudes (1e-3 .. 1e3, or up to 1e30 with big)."""
    top = 30 if big else 3
    scale = 10.0 ** rng.uniform(-3, top, size=shape)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _cases(seed):
    rng = np.random.default_rng(seed)
    for d in WIDTHS:
        for r in ROWS:
            yield rng, d, r


@pytest.mark.parametrize("isa", ISAS)
def test_pool(isa):
    for rng, dim, r in _cases(10):
        V = 7
        n = (dim + r) % 5  # 0..4 table rows pooled per output row (0: zeros)
        table = _data(rng, (V, dim))
        rows = rng.integers(0, V, size=(r, n)).astype(np.int64)
        scale = [1.0, 1.0 / max(n, 1), 0.37][r % 3]
        out = _rows("pool", isa, table=table, rows=rows, scale=scale)
        ref = _rows("pool", "ref", table=table, rows=rows, scale=scale)
        np.testing.assert_array_equal(out, ref, err_msg=f"isa={isa} dim={dim} r={r} n={n}")
        t64 = table.astype(np.float64)
        want = t64[rows].sum(axis=1) * np.float32(scale)
        bound = np.abs(t64[rows]).sum(axis=1) * abs(scale)
        assert np.all(np.abs(out - want) <= 4e-7 * bound + 1e-30), (isa, dim, r, n)


@pytest.mark.parametrize("isa", ISAS)
def test_layernorm(isa):
    for rng, d, r in _cases(11):
        ratio = [0.0, 10.0, 300.0][(d + r) % 3]  # mean / std of a row
        x = (rng.standard_normal((r, d)) + ratio * rng.standard_normal((r, 1))) * 10.0 ** rng.uniform(-2, 3)
        x = x.astype(np.float32)
        w = rng.standard_normal(d).astype(np.float32)
        b = rng.standard_normal(d).astype(np.float32)
        eps = 1e-5
        y = _rows("layernorm", isa, x=x, w=w, b=b, eps=eps)
        ref = _rows("layernorm", "ref", x=x, w=w, b=b, eps=eps)
        _same_vector_isas("layernorm", isa, y, x=x, w=w, b=b, eps=eps)
        x64 = x.astype(np.float64)
        mu = x64.mean(axis=1, keepdims=True)
        var = ((x64 - mu) ** 2).mean(axis=1, keepdims=True)
        msg = f"isa={isa} d={d} r={r} ratio={ratio}"
        if ratio == 0.0:
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6, err_msg=msg)
        else:  # a large mean: the two summation orders' rounding of the mean, scaled by 1/std
            cond = np.abs(x64).mean(axis=1, keepdims=True) / np.sqrt(var + eps)
            atol = 1e-6 + 4 * d * 2.0**-24 * cond * np.abs(w).max()
            assert np.all(np.abs(y - ref) <= 1e-5 * np.abs(ref) + atol), msg
        want = (x64 - mu) / np.sqrt(var + np.float32(eps)) * w + b
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=2e-5 * (1 + ratio) * max(1, np.abs(w).max()),
                                   err_msg=f"isa={isa} d={d} r={r} ratio={ratio}")


@pytest.mark.parametrize("isa", ISAS)
def test_cross(isa):
    for rng, d, r in _cases(12):
        x0 = _data(rng, (r, d))
        xl = _data(rng, (r, d))
        w = rng.standard_normal(d).astype(np.float32)
        b = _data(rng, (d,))
        y = _rows("cross", isa, x0=x0, xl=xl, w=w, b=b)
        ref = _rows("cross", "ref", x0=x0, xl=xl, w=w, b=b)
        _same_vector_isas("cross", isa, y, x0=x0, xl=xl, w=w, b=b)
        a, l = x0.astype(np.float64), xl.astype(np.float64)
        s = l @ w.astype(np.float64)
        want = a * s[:, None] + b + l
        # The dot product's rounding (either order: (d+1)·u of Σ|l·w|), then 2 roundings of the sum.
        dot_err = (d + 1) * 2.0**-24 * np.abs(a) * (np.abs(l) @ np.abs(w.astype(np.float64)))[:, None]
        out_err = 2 * 2.0**-24 * (np.abs(a * s[:, None]) + np.abs(b) + np.abs(l))
        assert np.all(np.abs(y - want) <= dot_err + out_err), (isa, d, r)
        assert np.all(np.abs(y - ref) <= 2 * dot_err + 2 * out_err), (isa, d, r)



def _act64(name, x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "relu":
            return np.where(np.isnan(x) | (x > 0), x, 0.0)  # NaN stays NaN, as torch.relu
        if name == "sigmoid":
            return 1.0 / (1.0 + np.exp(-x))
        if name == "tanh":
            return np.tanh(x)
    return x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
def test_act(isa, act):
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 88.0, -88.0, 104.0,
                         -104.0, 0.625, -0.625, 1e-30, -1e-30], np.float32)
    for rng, d, r in _cases(13):
        n = d * r
        x = _data(rng, n, big=(d % 7 == 0))
        x[rng.random(n) < 0.1] = 0.0
        k = min(n, 1 + n // 8)  # specials anywhere, the tail included
        pos = rng.choice(n, size=k, replace=False)
        pos[0] = n - 1
        x[pos] = specials[rng.integers(0, len(specials), size=k)]
        y = _rows("act", isa, x=x, act=act)
        ref = _rows("act", "ref", x=x, act=act)
        msg = f"isa={isa} act={act} n={n}"
        assert y.shape == x.shape and y.dtype == np.float32
        if act in ("relu", "identity"):
            np.testing.assert_array_equal(y, ref, err_msg=msg)
            np.testing.assert_array_equal(y, _act64(act, x).astype(np.float32), err_msg=msg)
        else:
            np.testing.assert_array_equal(np.isnan(y), np.isnan(x), err_msg=msg)  # NaN in, NaN out
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6, err_msg=msg)
            np.testing.assert_allclose(y, _act64(act, x), rtol=1e-5, atol=1e-6, err_msg=msg)


def _softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("isa", ISAS)
def test_softmax(isa):
    for rng, c, r in _cases(14):
        x = (rng.standard_normal((r, c)) * 10.0 ** rng.uniform(-2, 2.3, size=(r, 1))).astype(np.float32)
        nan_rows = np.zeros(r, bool)
        if r >= 3:  # one row with a NaN (anywhere, the tail included): all NaN in every version
            j = int(rng.integers(0, c)) if c % 2 else c - 1
            x[1, j] = np.nan
            nan_rows[1] = True
        y = _rows("softmax", isa, x=x)
        ref = _rows("softmax", "ref", x=x)
        msg = f"isa={isa} cols={c} r={r}"
        assert np.isnan(y[nan_rows]).all() and np.isnan(ref[nan_rows]).all(), msg
        ok = ~nan_rows
        assert not np.isnan(y[ok]).any(), msg
        np.testing.assert_allclose(y[ok], ref[ok], rtol=1e-5, atol=1e-6, err_msg=msg)
        np.testing.assert_allclose(y[ok], _softmax64(x[ok]), rtol=1e-5, atol=1e-6, err_msg=msg)
        np.testing.assert_allclose(y[ok].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_kron_panel(isa):
    for rng, m, r in _cases(15):
        l = [0, 1, 3, 5][(m + r) % 4]
        with_h = bool((m * r) % 2)
        x = _data(rng, (r, m))
        h = _data(rng, (r, l))
        P = _rows("kron", isa, x=x, h=h, with_h=with_h)
        ref = _rows("kron", "ref", x=x, h=h, with_h=with_h)
        np.testing.assert_array_equal(P, ref, err_msg=f"isa={isa} m={m} l={l} r={r}")
        x64, h64 = x.astype(np.float64), h.astype(np.float64)
        parts = [x64] + [h64[:, k:k + 1] * x64 for k in range(l)] + ([h64] if with_h else [])
        want = np.concatenate(parts, axis=1).astype(np.float32)  # exact products, rounded once
        np.testing.assert_array_equal(P, want, err_msg=f"isa={isa} m={m} l={l} r={r}")


def test_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown kernel"):
        _rows("nope", "ref", x=x)
    with pytest.raises(ValueError, match="unknown isa"):
        _rows("softmax", "sse9", x=x)
    with pytest.raises(ValueError, match="out of range"):
        _rows("pool", "ref", table=x, rows=np.array([[2]], np.int64))
