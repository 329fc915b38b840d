"""int8 GEMMs (kernels/gemm.h PackedMatrix::pack_int8, isa_kernels.h GemmI8Fn): the static GEMM and
the Kronecker GEMM of a dynamic layer with int8 weights, per ISA, against their reference versions
(gemm_int8_ref.cpp) and against float64 of the quantized operands; whole int8 models loaded with
int8_gemm=True against torch computing the same quantization (helpers/bf16ref.py, arith="int8").

What every path computes: the weight quantized per output column (s_j = max_k |B(k, j)| / 127,
q = rint(B / s_j)), each row of the left operand quantized at run time (sa = max|a| / 127,
qa = rint(clamp(a · (127 / max|a|), ±127))), C = act(fma(float(Σ qa·q), sa·s_j, bias)) in float32.
The integer sums are exact (|Σ| <= K·127·127 < 2^31) and the epilogue rounds in a fixed order, so:
- the VNNI kernels and the reference versions give the same bits for identity and relu (sigmoid and
  tanh: their vector forms are within 1e-6 absolute + 2e-6 relative, test_kernels);
- against float64 E = Σ qa·q · (sa·s_j) + bias (sa·s_j rounded to float32 as the kernels do): float(Σ)
  rounds once (relative 2^-24) and the fma once, so |C - E| <= 2^-23 · (|Σ·sa·s_j| + |bias|).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpn_infer import _engine, _testing
from dpn_infer.converters import format as F
from dpn_infer.converters.precision import quantize
from test_bf16_gemm import few_rows_many_panels, sweep_kn, sweep_m
from test_kernels import _act

ISAS = list(_engine.cpu_info()["available"])
ACTS = ["identity", "relu", "sigmoid", "tanh"]
# Tile edges: 12-row tiles, 1-3-row few-rows path, blocks of 256 KiB of quantized rows (K = 2100:
# 120 rows; small K: 192); 16/32-column vectors and panels (a last panel of <= 16 columns is packed
# 16 wide); k-quads (K not a multiple of 4).
EDGES_M = [1, 2, 3, 4, 11, 12, 13, 25, 71, 72, 73, 75]
EDGES_N = [1, 15, 16, 17, 31, 32, 33, 48, 49, 64, 65, 100, 161]
EDGES_K = [1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 127, 300]
SETTINGS = dict(deadline=None, print_blob=True,
                suppress_health_check=list(__import__("hypothesis").HealthCheck))


def quant_rows(A):
    """(qa int64, sa float32 [M]) as the kernels quantize each row, in float32."""
    A = np.asarray(A, np.float32)
    amax = np.max(np.abs(A), axis=1) if A.shape[1] else np.zeros(len(A), np.float32)
    ok = amax >= np.float32(1e-30)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.where(ok, np.float32(127) / amax, np.float32(0)).astype(np.float32)
        q = np.rint(np.clip(A * inv[:, None], np.float32(-127), np.float32(127)))
    q = np.where(ok[:, None], q, 0).astype(np.int64)
    return q, np.where(ok, amax / np.float32(127), np.float32(0)).astype(np.float32)


def exact(A, W, b, act):
    """(E, bound): the float64 result of the quantized operands and the epilogue's rounding bound
    (module docstring), through the activation (relu, tanh 1-Lipschitz; sigmoid 1/4)."""
    qa, sa = quant_rows(A)
    qb, sb = quantize(np.ascontiguousarray(W.T), per_column=True)  # [K, N], [1, N]
    acc = qa @ qb.astype(np.int64)
    s = (sa[:, None] * sb).astype(np.float32).astype(np.float64)
    pre = acc * s
    E = pre + (b if b is not None else 0.0)
    bound = 2.0 ** -23 * (np.abs(pre) + (np.abs(b) if b is not None else 0.0)) + 1e-30
    if act == "sigmoid":
        bound = bound / 4
    return _act(act, E), bound


def _data(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def check_pair(C, T, act, msg):
    """The kernel against the reference version: the same bits, up to the vector sigmoid / tanh."""
    if act in ("identity", "relu"):
        np.testing.assert_array_equal(C, T, err_msg=msg)
    else:
        assert np.all(np.abs(C - T) <= 1e-6 + 2e-6 * np.abs(T)), msg


def _check_gemm(A, W, b, act, isa):
    C = _testing.gemm(A, W, b, act, isa, int8=True)
    T = _testing.gemm(A, W, b, act, "ref", int8=True, twin=True)
    E, bound = exact(A, W, b, act)
    msg = f"isa={isa} M,K,N={A.shape[0]},{A.shape[1]},{W.shape[0]} act={act}"
    assert C.shape == E.shape and C.dtype == np.float32
    slack = 1e-6 + 2e-6 * np.abs(E) if act in ("sigmoid", "tanh") else 0.0  # scalar sigmoid / tanh
    assert np.all(np.abs(T - E) <= bound + slack), "reference " + msg
    check_pair(C, T, act, msg)
    return C


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_sweep_m(isa):
    sweep_m(_check_gemm, isa, list(range(1, 40, 2)) + [71, 72, 73], ((17, 33), (64, 49), (131, 16)))


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_sweep_kn(isa):
    sweep_kn(_check_gemm, isa, EDGES_K, EDGES_N, EDGES_M)


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_block_edges_and_row_independence(isa):
    """M across the blocks of quantized rows (K = 2100: 120 rows a block; K = 37: 192), K odd and
    deep; each row alone gives the bits it gets inside the call (a row's scale is its own). The AMX
    kernels' blocks: 256 rows and 1024 of K (300 and 513 rows, K 1025)."""
    rng = np.random.default_rng(3)
    for M, K, N in ((121, 2100, 40), (241, 2101, 17), (193, 37, 65), (13, 4099, 161), (300, 1025, 70),
                    (513, 130, 33)):
        A, W, b = _data(rng, (M, K)), _data(rng, (N, K)), _data(rng, N)
        A[5] *= 1e4  # rows of very different scales side by side
        A[6] *= 1e-4
        full = _check_gemm(A, W, b, "relu", isa)
        for i in (0, 5, 6, M - 1):
            np.testing.assert_array_equal(_testing.gemm(A[i:i + 1], W, b, "relu", isa, int8=True),
                                          full[i:i + 1], err_msg=f"isa={isa} K,N={K},{N} row {i}")


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_few_rows_many_panels(isa):
    """1-3 rows run several panels side by side (groups of up to 4 for one row, 2 for two or three)."""
    few_rows_many_panels(_check_gemm, isa, (5, 301))


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_exact_where_quantization_is(isa):
    """A row whose max is 127 and whose values are integers, and a weight column likewise, quantize
    to themselves (scale 1): C = A · W exactly (every sum an integer below 2^24), on every path."""
    rng = np.random.default_rng(6)
    for M, K, N in ((1, 1, 1), (3, 7, 17), (13, 33, 49), (75, 301, 65), (2, 1001, 400)):
        A = rng.integers(-127, 128, (M, K)).astype(np.float32)
        A[:, 0] = 127
        W = rng.integers(-127, 128, (N, K)).astype(np.float32)
        W[:, -1] = -127
        b = rng.integers(-99, 100, N).astype(np.float32)
        want = (A.astype(np.float64) @ W.T.astype(np.float64) + b).astype(np.float32)
        np.testing.assert_array_equal(_testing.gemm(A, W, b, "identity", isa, int8=True), want, err_msg=isa)
        np.testing.assert_array_equal(_testing.gemm(A, W, b, "identity", "ref", int8=True, twin=True), want)


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_k_zero_zero_rows_nan_and_deep_k(isa):
    b = np.array([-3.0, 0.0, 2.5], np.float32)
    C = _testing.gemm(np.zeros((4, 0), np.float32), np.zeros((3, 0), np.float32), b, "relu", isa, int8=True)
    np.testing.assert_array_equal(C, np.broadcast_to(np.maximum(b, 0), (4, 3)))
    A = np.ones((13, 5), np.float32)
    A[3, 2] = np.nan
    A[5, 1] = np.inf
    A[7] = 0.0
    A[8] = 1e-31  # below the smallest max quantized (1e-30): zeros, as the reference
    W = np.ones((37, 5), np.float32)
    bias = np.full(37, 0.5, np.float32)
    for act in ("identity", "relu"):
        C = _testing.gemm(A, W, bias, act, isa, int8=True)
        # a non-finite input gives NaN (float32 would give NaN or inf), never a plausible score
        assert np.isnan(C[3]).all() and np.isnan(C[5]).all(), act
        assert np.all(C[0] == 5.5) and np.all(C[7] == 0.5) and np.all(C[8] == 0.5), act
    # past kI8MaxK = 65536 the int32 sums could overflow: the weight stays float32 (the float32 bits)
    rng = np.random.default_rng(4)
    A, W = _data(rng, (2, 65537)), _data(rng, (3, 65537))
    np.testing.assert_array_equal(_testing.gemm(A, W, None, "identity", isa, int8=True),
                                  _testing.gemm(A, W, None, "identity", isa))


def _kron_left(x, h, with_h):
    l = h.shape[1]
    return np.concatenate([x] + [h[:, k:k + 1] * x for k in range(l)] + ([h] if with_h else []),
                          axis=1).astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
def test_int8_gemm_kron(isa):
    """[x, h1·x, …, hl·x, (h)] quantized per row as it is built (its max from max|x| and |h_k|),
    against the reference version (which builds the row, then quantizes it) and float64."""
    rng = np.random.default_rng(8)
    for R, m, l, N, with_h in ((1, 1, 1, 1, True), (13, 7, 3, 33, True), (30, 41, 8, 17, False),
                               (75, 100, 5, 40, True), (24, 3, 90, 65, True), (7, 64, 6, 31, False),
                               (130, 301, 5, 50, True), (2, 170, 9, 400, False), (3, 90, 5, 130, True),
                               (1, 200, 8, 161, True), (5, 0, 4, 20, True)):
        x, h = _data(rng, (R, m)), _data(rng, (R, l))
        if R > 3:
            h[2] *= 50.0  # a row whose max is an h_k·x product, or an h_k itself
            h[3] = 0.0
        K = (l + 1) * m + (l if with_h else 0)
        B, b = _data(rng, (K, N)), _data(rng, N)
        P = _kron_left(x, h, with_h)
        for act in ("identity", "relu", "tanh"):
            C = _testing.gemm_kron(x, h, B, b, act, with_h, isa, int8=True)
            T = _testing.gemm_kron(x, h, B, b, act, with_h, "ref", int8=True, twin=True)
            E, bound = exact(P, np.ascontiguousarray(B.T), b, act)
            msg = f"isa={isa} R,m,l,N={R},{m},{l},{N} act={act}"
            slack = 1e-6 + 2e-6 * np.abs(E) if act == "tanh" else 0.0
            assert np.all(np.abs(T - E) <= bound + slack), "reference " + msg
            check_pair(C, T, act, msg)
        # the same rows as a plain GEMM on the built panel: the same quantization, the same bits
        np.testing.assert_array_equal(
            _testing.gemm_kron(x, h, B, b, "relu", with_h, isa, int8=True),
            _testing.gemm(P, np.ascontiguousarray(B.T), b, "relu", isa, int8=True), err_msg=msg)


def test_int8_gemm_path_follows_vnni():
    """The avx512 levels run the VNNI kernels exactly where the CPU has AVX512_VNNI (its own CPUID
    bit, leaf 7 ECX bit 11), avx512amx the AMX-INT8 ones where it also has AMX-INT8 (leaf 7 EDX bit
    25); avx2 and ref run the reference int8 kernels; cpu_info says which."""
    info = _engine.cpu_info()
    assert isinstance(info["amx_int8"], bool) and (info["amx_bf16"] or not info["amx_int8"])
    for isa in ISAS:
        want = "avx512vnni" if info["avx512_vnni"] and isa.startswith("avx512") else "ref"
        if isa == "avx512amx" and info["amx_int8"]:
            want = "avx512amx"
        assert _testing.int8_gemm_path(isa) == want, isa
    assert info["reduced_precision"]["int8_gemm"] == _testing.int8_gemm_path(info["selected"])


# ---------------------------------------------------------------------------------------------
# whole models: an int8 file loaded with int8_gemm=True against torch computing the same
# quantization (helpers/bf16ref.py derives the bound F: one quantization step per GEMM input)

RTOL, ATOL = 1e-4, 1e-5  # float32 summation order (test_parity's criterion)


def judge_int8(z, ref, F, what="", tight_share=0.5):
    """Every row within the float32 tolerance plus twice the first-order bound F; and, from 8 rows
    on, at least ``tight_share`` of them within the float32 tolerance alone (the engine quantizes
    where the reference does: a float32 engine would be off by about F on nearly every row)."""
    z, ref = np.asarray(z, np.float64), np.asarray(ref, np.float64)
    err = np.abs(z - ref)
    tight = err <= ATOL + RTOL * np.abs(ref)
    loose = err <= ATOL + RTOL * np.abs(ref) + 2 * F
    i = int(np.argmax(err - ATOL - RTOL * np.abs(ref) - 2 * F))
    assert loose.all(), (f"engine != int8 reference {what}: row {i} engine {z[i]!r} torch {ref[i]!r} "
                         f"bound {2 * F[i]:.3g}; {int((~loose).sum())} of {len(z)} rows off")
    if len(z) >= 8:
        assert tight.mean() >= tight_share, f"only {tight.mean():.0%} of rows within float32 tolerance {what}"


def _save(model, path):
    from test_bf16 import _save_rounded

    return _save_rounded(model, path, "int8", "int8")


def _check_model(model, batch, what):
    pytest.importorskip("torch")
    from dpn_infer.engine import load
    from helpers import bf16ref

    with tempfile.TemporaryDirectory(prefix="dpn_i8g_") as d:
        path = os.path.join(d, "model.bin")
        rounded = _save(model, path)
        meta, _ = F.read(path)
        assert meta["arithmetic"] == "int8"
        m = load(path)
        z = m.predict(batch, logits=True)
        z3 = m.predict(batch, logits=True, threads=3)
    ref, sens = bf16ref.reference(rounded, meta, batch, arith="int8")
    judge_int8(z, ref, sens, what)
    judge_int8(z3, z, sens, f"threads=3 {what}")


def _prepare(spec):
    from test_bf16_gemm import _prepare as prepare

    return prepare(spec)


@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_int8_gemm_feature_models(data):
    pytest.importorskip("torch")
    from helpers import models as HM

    spec = data.draw(HM.model_specs().filter(lambda s: s["norm"] != "batchnorm"))
    _check_model(*_prepare(spec), what=f"for spec {HM.describe(spec)}")


@settings(max_examples=12, **SETTINGS)
@given(data=st.data(), kind=st.sampled_from(["field", "seq"]))
def test_int8_gemm_field_and_seq_models(data, kind):
    pytest.importorskip("torch")
    from helpers import field_models as FM
    from helpers import seqmodels as SM
    from test_seq_parity import _prepare as prepare_seq

    if kind == "field":
        spec = data.draw(FM.field_dpn_specs().filter(lambda s: s["feature_norm"] != "batchnorm"))
        model, batch = _prepare(spec)
    else:
        spec = data.draw(SM.seq_model_specs().filter(lambda s: s.get("norm") != "batchnorm"))
        model, batch = prepare_seq(spec)
    _check_model(model, batch, what=f"{kind} spec {spec!r}")


def test_int8_gemm_models_every_isa():
    """test_bf16_gemm.models_every_isa with int8 files (a plain load: the file asks for int8 GEMMs)."""
    pytest.importorskip("torch")
    from helpers import bf16ref
    from test_bf16_gemm import models_every_isa

    models_every_isa(_save, lambda r, meta, b: bf16ref.reference(r, meta, b, arith="int8"), judge_int8,
                     {}, 400, "dpn_i8g_isa_")


def test_int8_gemm_requests_split_layers():
    """Ranking requests on an int8 model: the layers that split per user (linear: W_u·x_u once per
    user; dylinear with a user-only context: A'_u once per user) quantize each part's rows on their
    own (x_u, or [x_u, h·x_u, h], per user; x_i's per candidate), not the whole row at once. A part's
    max is at most the row's, so each input moves by less than one step of the whole row's scale
    against the broadcast batch: within judge_int8's bound F (not bit for bit, and not necessarily
    within float32 tolerance)."""
    pytest.importorskip("torch")
    from helpers import bf16ref
    from test_bf16_gemm import requests_split_layers

    requests_split_layers(_save, lambda r, meta, b: bf16ref.reference(r, meta, b, arith="int8"),
                          lambda *a: judge_int8(*a, tight_share=0), {}, "dpn_i8g_req_")


def test_int8_gemm_follows_the_file(tmp_path):
    """save(precision="int8") records "arithmetic": "int8", so a plain load runs int8 GEMMs (the
    bits of int8_gemm=True); int8_gemm=False computes in float32 on the dequantized weights (the
    bits of the dequantized float32 file); a file without the key (every int8 file written before
    it) keeps float32 arithmetic unless asked; a bad value is refused whatever the caller asks."""
    from dpn_infer import ModelFormatError
    from dpn_infer.engine import load
    from test_bf16 import _small_model
    from test_int8 import dequantized_file

    model, batch = _small_model()
    _save(model, tmp_path / "q.bin")
    meta, tensors = F.read(tmp_path / "q.bin")
    assert meta["arithmetic"] == "int8"
    dequantized_file(tmp_path / "q.bin", tmp_path / "d.bin")
    z8 = load(tmp_path / "q.bin").predict(batch, logits=True)
    np.testing.assert_array_equal(load(tmp_path / "q.bin", int8_gemm=True).predict(batch, logits=True), z8)
    z32 = load(tmp_path / "q.bin", int8_gemm=False).predict(batch, logits=True)
    np.testing.assert_array_equal(load(tmp_path / "d.bin").predict(batch, logits=True), z32)
    assert np.any(z8 != z32)  # quantized activations: not the float32 arithmetic
    old = dict(meta)
    del old["arithmetic"]
    F.write(tmp_path / "old.bin", old, tensors)
    np.testing.assert_array_equal(load(tmp_path / "old.bin").predict(batch, logits=True), z32)
    np.testing.assert_array_equal(load(tmp_path / "old.bin", int8_gemm=True).predict(batch, logits=True), z8)
    # bf16_gemm has nothing to act on in an int8 file
    np.testing.assert_array_equal(load(tmp_path / "q.bin", bf16_gemm=True).predict(batch, logits=True), z8)
    import pickle

    m = load(tmp_path / "q.bin", int8_gemm=False)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(m)).predict(batch, logits=True), z32)
    with pytest.raises(TypeError, match="int8_gemm must be"):
        load(tmp_path / "q.bin", int8_gemm="yes")
    bad = dict(meta, arithmetic="int4")
    F.write(tmp_path / "bad.bin", bad, tensors)
    for flag in (None, False, True):
        with pytest.raises(ModelFormatError, match="'arithmetic' must be"):
            load(tmp_path / "bad.bin", int8_gemm=flag)
