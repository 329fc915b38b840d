"""bfloat16 GEMMs (kernels/gemm.h, PackedMatrix::pack_bf16): the static GEMM and the Kronecker GEMM of a
dynamic layer with bfloat16 weights, per ISA, against their reference twins (gemm_bf16_ref.cpp, the
same bfloat16 layout read by scalar code) and against float64.

What every path computes: C = act(bf16(A) · bf16(B) + bias), with bf16() rounding to nearest even and
the Kronecker left operand [x, h1·x, …, hl·x, h] rounded after its float32 products. The products of
two bfloat16 values (8 significant bits each) are exact in float32, so the paths differ only by float32
summation order. Bound (recursive summation of n = K + 1 terms, unit roundoff u = 2^-24): each path is
within K·u·S/(1 - K·u) of the exact sum, S = Σ_k |a_k b_k| + |bias|, so two paths are within twice
that. The data here are normal floats of magnitude >= 1e-6 or 0, so no product is subnormal (the
AVX512_BF16 instructions flush bfloat16 subnormals; the widening paths do not). Small-integer data make
every sum exact: there all paths must give the same bits as float64.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpn_infer import _engine, _testing
from dpn_infer.converters import format as F
from test_kernels import _act

ISAS = list(_engine.cpu_info()["available"])
ACTS = ["identity", "relu", "sigmoid", "tanh"]
# Tile edges: 12-row tiles, 72-row blocks, 3-row few-rows path; 16/32-column vectors and panels
# (a last panel of <= 16 columns is packed 16 wide); k-pairs (odd K) and 1536-k blocks.
EDGES_M = [1, 2, 3, 4, 11, 12, 13, 25, 71, 72, 73, 75]
EDGES_N = [1, 15, 16, 17, 31, 32, 33, 48, 49, 64, 65, 100, 161]
EDGES_K = [1, 2, 3, 16, 17, 31, 32, 33, 64, 65, 127, 300]


def rb(a):
    """float32 values rounded to bfloat16 (nearest even), widened back."""
    return F.to_float32(F.to_bfloat16(np.ascontiguousarray(a, np.float32)))


def _bound(Ar, Br, bias, act, factor=1.0):
    """factor · K·u·S/(1 - K·u) per element (Ar [M, K], Br [K, N] already rounded), through the
    activation: relu and tanh are 1-Lipschitz, sigmoid 1/4; the vector sigmoid / tanh themselves are
    within 1e-6 absolute, 2e-6 relative (test_kernels.test_vector_activations_accuracy)."""
    K = Ar.shape[1]
    S = np.abs(Ar).astype(np.float64) @ np.abs(Br).astype(np.float64)
    if bias is not None:
        S = S + np.abs(bias)
    u = 2.0 ** -24
    b = factor * K * u / (1 - K * u) * S + 1e-30
    if act == "sigmoid":
        return b / 4 + 1e-6 + 2e-6 * 0.5
    if act == "tanh":
        return b + 1e-6 + 2e-6
    return b


def _data(rng, shape, scale=1.0):
    a = rng.standard_normal(shape) * scale
    a[np.abs(a) < 1e-6] = 0.0  # no subnormal products (module docstring)
    return a.astype(np.float32)


def _check_gemm(A, W, b, act, isa, what=""):
    """The ISA's bfloat16 GEMM vs the twin (2x the bound) and vs float64 (the bound)."""
    C = _testing.gemm(A, W, b, act, isa, bf16=True)
    T = _testing.gemm(A, W, b, act, "ref", bf16=True, twin=True)
    Ar, Br = rb(A), rb(W).T
    ref = Ar.astype(np.float64) @ Br.astype(np.float64)
    if b is not None:
        ref = ref + b
    ref = _act(act, ref)
    bound = _bound(Ar, Br, b, act)
    msg = f"isa={isa} M,K,N={A.shape[0]},{A.shape[1]},{W.shape[0]} act={act} {what}"
    assert C.shape == ref.shape and C.dtype == np.float32
    assert np.all(np.abs(T - ref) <= bound), "twin " + msg
    assert np.all(np.abs(C - ref) <= bound), msg
    assert np.all(np.abs(C - T) <= 2 * bound), msg
    return C


# The tile-edge sweeps, shared with test_int8_gemm.py: check(A, W, bias, act, isa) per shape.
def sweep_m(check, isa, Ms, shapes):
    rng = np.random.default_rng(1)
    for M in Ms:
        for K, N in shapes:
            A, W = _data(rng, (M, K)), _data(rng, (N, K))
            b = _data(rng, N) if M % 3 else None
            check(A, W, b, ACTS[M % 4], isa)


def sweep_kn(check, isa, Ks, Ns, Ms):
    rng = np.random.default_rng(2)
    for K in Ks:
        for N in Ns:
            M = Ms[(K + N) % len(Ms)]
            A, W = _data(rng, (M, K)), _data(rng, (N, K))
            check(A, W, _data(rng, N) if N % 2 else None, ACTS[K % 4], isa)


def few_rows_many_panels(check, isa, Ks):
    rng = np.random.default_rng(5)
    for K in Ks:
        for N in (32, 64, 96, 128, 160, 161, 200, 257, 400):
            A, W, b = _data(rng, (3, K)), _data(rng, (N, K)), _data(rng, N)
            for M in (1, 2, 3):
                check(A[:M], W, b, ACTS[(K + N + M) % 4], isa)


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_sweep_m(isa):
    sweep_m(_check_gemm, isa, range(1, 76, 2), ((17, 33), (64, 49), (129, 16)))


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_sweep_kn(isa):
    sweep_kn(_check_gemm, isa, EDGES_K, EDGES_N, EDGES_M)


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_block_edges_and_row_independence(isa):
    """K across the 1536-k blocks (odd: a padded last pair inside the last block), M across the
    72-row blocks and the 3-row few-rows path, B past 8 MiB of bfloat16 (K outer loop); each row
    alone gives the bits it gets inside a 75-row call (its result must not depend on the batch)."""
    rng = np.random.default_rng(3)
    for K, N in ((1535, 40), (1536, 33), (1537, 161), (3073, 70), (2100, 2100)):
        A, W, b = _data(rng, (75, K)), _data(rng, (N, K)), _data(rng, N)
        act = ACTS[K % 4]
        full = _check_gemm(A, W, b, act, isa)
        for i in (0, 1, 2, 71, 72, 74):
            np.testing.assert_array_equal(_testing.gemm(A[i:i + 1], W, b, act, isa, bf16=True),
                                          full[i:i + 1], err_msg=f"isa={isa} K,N={K},{N} row {i}")
        np.testing.assert_array_equal(_testing.gemm(A[:3], W, b, act, isa, bf16=True), full[:3])


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_amx_block_edges(isa):
    """The AMX kernels' blocks, 256 rows × 512 of K, and 16/32-row tiles: M and K across them, each
    row alone as inside the call (so on every ISA)."""
    rng = np.random.default_rng(4)
    for M, K, N in ((300, 1025, 70), (513, 130, 33), (257, 511, 17), (47, 513, 161)):
        A, W, b = _data(rng, (M, K)), _data(rng, (N, K)), _data(rng, N)
        full = _check_gemm(A, W, b, ACTS[M % 4], isa)
        for i in (0, 16, 31, 255, 256, M - 1):
            if i < M:
                np.testing.assert_array_equal(_testing.gemm(A[i:i + 1], W, b, ACTS[M % 4], isa, bf16=True),
                                              full[i:i + 1], err_msg=f"isa={isa} M,K,N={M},{K},{N} row {i}")


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_few_rows_many_panels(isa):
    """1-3 rows run several panels side by side (groups of up to 4 for one row, 2 for two or three)."""
    few_rows_many_panels(_check_gemm, isa, (5, 301, 1600))


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_exact_on_small_integers(isa):
    """Integers |a| <= 15, |b| <= 15 are bfloat16 values and every partial sum is an exact float32
    integer: the kernels, the twin and float64 give the same bits (a layout slip cannot hide in a
    tolerance)."""
    rng = np.random.default_rng(6)
    for M, K, N in ((1, 1, 1), (3, 7, 17), (13, 33, 49), (75, 1537, 65), (2, 3073, 400)):
        A = rng.integers(-15, 16, (M, K)).astype(np.float32)
        W = rng.integers(-15, 16, (N, K)).astype(np.float32)
        b = rng.integers(-99, 100, N).astype(np.float32)
        want = (A.astype(np.float64) @ W.T.astype(np.float64) + b).astype(np.float32)
        np.testing.assert_array_equal(_testing.gemm(A, W, b, "identity", isa, bf16=True), want, err_msg=isa)
        np.testing.assert_array_equal(_testing.gemm(A, W, b, "identity", "ref", bf16=True, twin=True), want)


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_rounds_its_inputs_to_nearest_even(isa):
    """C = A · I returns bf16(A) exactly: the left operand and the weight are rounded to nearest
    even (ties both ways, values just off a tie, large and small normals), as torch rounds."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    ties = (np.arange(1, 97, dtype=np.uint32) << 16 | np.uint32(0x8000)).view(np.float32)
    near = np.concatenate([ties.view(np.uint32) + 1, ties.view(np.uint32) - 1]).astype(np.uint32).view(np.float32)
    x = np.concatenate([ties, -ties, near, rng.standard_normal(200).astype(np.float32) * 1e3,
                        np.float32(1e-30) * rng.standard_normal(40).astype(np.float32),
                        np.array([0.0, 3.3e38, -3.3e38, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], np.float32)])
    x = x[(x == 0) | (np.abs(x) >= 2.0 ** -126)].astype(np.float32)  # normals (module docstring)
    K = 96
    A = np.resize(x, (len(x) // K + 1) * K).reshape(-1, K).astype(np.float32)
    want = torch.from_numpy(A).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(_testing.gemm(A, np.eye(K, dtype=np.float32), None, "identity", isa,
                                                bf16=True), want, err_msg=isa)
    # the weight side: rows of W = the values, A = I
    Wt = A[:K]
    np.testing.assert_array_equal(_testing.gemm(np.eye(K, dtype=np.float32), Wt, None, "identity", isa,
                                                bf16=True), want[:K].T, err_msg=isa)


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_k_zero_and_nan(isa):
    b = np.array([-3.0, 0.0, 2.5], np.float32)
    C = _testing.gemm(np.zeros((4, 0), np.float32), np.zeros((3, 0), np.float32), b, "relu", isa,
                      bf16=True)
    np.testing.assert_array_equal(C, np.broadcast_to(np.maximum(b, 0), (4, 3)))
    A = np.ones((13, 5), np.float32)
    A[3, 2] = np.nan
    A[5, 1] = np.inf
    W = np.ones((37, 5), np.float32)
    C = _testing.gemm(A, W, None, "relu", isa, bf16=True)
    assert np.isnan(C[3]).all() and np.isposinf(C[5]).all() and np.all(C[0] == 5.0)


def _kron_ref(x, h, B, with_h):
    l = h.shape[1]
    P = np.concatenate([x] + [h[:, k:k + 1] * x for k in range(l)] + ([h] if with_h else []), axis=1)
    return rb(P.astype(np.float32)), rb(B)


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_kron(isa):
    """[x, h1·x, …, hl·x, (h)] built and rounded block by block (K blocks cutting through the
    segments, odd K), against the twin and float64 with the bound above."""
    rng = np.random.default_rng(8)
    for R, m, l, N, with_h in ((1, 1, 1, 1, True), (13, 7, 3, 33, True), (30, 41, 8, 17, False),
                               (75, 100, 5, 40, True), (24, 3, 90, 65, True), (7, 64, 6, 31, False),
                               (80, 300, 5, 50, True), (2, 170, 9, 400, False), (3, 90, 5, 130, True),
                               (1, 200, 8, 161, True)):
        x, h = _data(rng, (R, m)), _data(rng, (R, l))
        K = (l + 1) * m + (l if with_h else 0)
        B, b = _data(rng, (K, N)), _data(rng, N)
        Pr, Br = _kron_ref(x, h, B, with_h)
        for act in ("identity", "relu", "tanh"):
            C = _testing.gemm_kron(x, h, B, b, act, with_h, isa, bf16=True)
            T = _testing.gemm_kron(x, h, B, b, act, with_h, "ref", bf16=True, twin=True)
            ref = _act(act, Pr.astype(np.float64) @ Br.astype(np.float64) + b)
            bound = _bound(Pr, Br, b, act)
            msg = f"isa={isa} R,m,l,N={R},{m},{l},{N} act={act}"
            assert np.all(np.abs(T - ref) <= bound), "twin " + msg
            assert np.all(np.abs(C - ref) <= bound), msg
            assert np.all(np.abs(C - T) <= 2 * bound), msg
        if R >= 3:  # a row alone, the same bits
            full = _testing.gemm_kron(x, h, B, b, "relu", with_h, isa, bf16=True)
            np.testing.assert_array_equal(_testing.gemm_kron(x[1:2], h[1:2], B, b, "relu", with_h, isa,
                                                             bf16=True), full[1:2], err_msg=msg)


@pytest.mark.parametrize("isa", ISAS)
def test_bf16_gemm_kron_exact_on_small_integers(isa):
    rng = np.random.default_rng(9)
    for R, m, l, N, with_h in ((1, 5, 3, 17, True), (13, 33, 4, 40, False), (75, 101, 3, 33, True)):
        x = rng.integers(-7, 8, (R, m)).astype(np.float32)
        h = rng.integers(-7, 8, (R, l)).astype(np.float32)
        K = (l + 1) * m + (l if with_h else 0)
        B = rng.integers(-3, 4, (K, N)).astype(np.float32)
        Pr, Br = _kron_ref(x, h, B, with_h)
        want = (Pr.astype(np.float64) @ Br.astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(_testing.gemm_kron(x, h, B, None, "identity", with_h, isa, bf16=True),
                                      want, err_msg=isa)
        np.testing.assert_array_equal(_testing.gemm_kron(x, h, B, None, "identity", with_h, "ref", bf16=True,
                                                         twin=True), want)


def test_avx512bf16_level():
    """The level needs AVX512_BF16 and the avx512 level; it is the best ISA where the CPU has it
    and no AMX."""
    info = _engine.cpu_info()
    has = info["avx512_bf16"] and "avx512" in info["available"]
    assert ("avx512bf16" in info["available"]) == has
    if has and not info["amx_bf16"] and info["override"] is None:
        assert info["selected"] == "avx512bf16"
    native = info["selected"] == "avx512bf16"
    assert ("vdpbf16ps" in info["reduced_precision"]["weights"]) == native


def test_avx512amx_level():
    """avx512amx needs the avx512bf16 level and usable AMX-BF16 tiles (CPUID, XCR0 and the OS's
    permission); it is then the best ISA, and cpu_info() says the bfloat16 GEMMs run on tiles."""
    info = _engine.cpu_info()
    assert isinstance(info["amx_bf16"], bool)
    has = info["amx_bf16"] and "avx512bf16" in info["available"]
    assert ("avx512amx" in info["available"]) == has
    if has and info["override"] is None:
        assert info["selected"] == "avx512amx"
    native = info["selected"] == "avx512amx"
    assert ("tdpbf16ps" in info["reduced_precision"]["weights"]) == native


def test_amx_can_be_refused():
    """DPN_AMX=0 keeps the process off the tiles (no permission asked): avx512amx is not offered."""
    code = "import json, dpn_infer; i = dpn_infer.cpu_info(); print(json.dumps([i['amx_bf16'], i['available']]))"
    env = dict(os.environ, DPN_AMX="0")
    env.pop("DPN_ISA", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(),
                         capture_output=True, text=True, check=True).stdout
    amx, avail = json.loads(out)
    assert amx is False and "avx512amx" not in avail
    assert avail == [i for i in _engine.cpu_info()["available"] if i != "avx512amx"]


# ---------------------------------------------------------------------------------------------
# whole models: a bfloat16 file loaded with bf16_gemm=True against torch computing the same
# roundings (helpers/bf16ref.py, whose docstring derives the bound)

SETTINGS = dict(deadline=None, print_blob=True,
                suppress_health_check=list(__import__("hypothesis").HealthCheck))
RTOL, ATOL = 1e-4, 1e-5  # float32 summation order (test_parity's criterion)


def judge_bf16(z, ref, F, what=""):
    """Every row within the float32 tolerance plus twice the first-order flip bound 2^-7·F; and,
    from 8 rows on, at least half of them within the float32 tolerance alone (the engine rounds
    where the reference rounds: unrounded inputs would move nearly every row by ~2^-9 relative)."""
    z, ref = np.asarray(z, np.float64), np.asarray(ref, np.float64)
    err = np.abs(z - ref)
    tight = err <= ATOL + RTOL * np.abs(ref)
    loose = err <= ATOL + RTOL * np.abs(ref) + 2 * 2.0 ** -7 * F
    i = int(np.argmax(err - ATOL - RTOL * np.abs(ref) - 2 * 2.0 ** -7 * F))
    assert loose.all(), (f"engine != bf16 reference {what}: row {i} engine {z[i]!r} torch {ref[i]!r} "
                         f"flip bound {2 * 2.0 ** -7 * F[i]:.3g}; {int((~loose).sum())} of {len(z)} rows off")
    if len(z) >= 8:
        assert tight.mean() >= 0.5, f"only {tight.mean():.0%} of rows within float32 tolerance {what}"


def _save(model, path):
    from dpn_infer.converters import torch_export
    from helpers.precision import round_params_

    rounded = round_params_(copy.deepcopy(model), "bf16", "bf16")
    torch_export.save(model, path, precision="bf16", embeddings="bf16")
    return rounded


def _check_model(model, batch, what):
    pytest.importorskip("torch")
    from dpn_infer.engine import load
    from helpers import bf16ref

    with tempfile.TemporaryDirectory(prefix="dpn_bf16g_") as d:
        path = os.path.join(d, "model.bin")
        rounded = _save(model, path)
        meta, _ = F.read(path)
        m = load(path, bf16_gemm=True)
        z = m.predict(batch, logits=True)
        z3 = m.predict(batch, logits=True, threads=3)
    ref, sens = bf16ref.reference(rounded, meta, batch)
    judge_bf16(z, ref, sens, what)
    judge_bf16(z3, z, sens, f"threads=3 {what}")  # other row blocks / column splits


def _prepare(spec):
    from helpers import models as HM

    model = HM.build(spec)
    batch = HM.make_batch(spec["fields"], spec["B"], spec["seed"] + 1)
    HM.calibrate_(model, batch, seed=spec["seed"])
    return model, batch


@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_bf16_gemm_feature_models(data):
    pytest.importorskip("torch")
    from helpers import models as HM

    # BatchNorm is folded into the exported weights (not the torch model's); see test_bf16.py
    spec = data.draw(HM.model_specs().filter(lambda s: s["norm"] != "batchnorm"))
    _check_model(*_prepare(spec), what=f"for spec {HM.describe(spec)}")


@settings(max_examples=10, **SETTINGS)
@given(data=st.data())
def test_bf16_gemm_field_models(data):
    pytest.importorskip("torch")
    from helpers import field_models as FM

    spec = data.draw(FM.field_dpn_specs().filter(lambda s: s["feature_norm"] != "batchnorm"))
    _check_model(*_prepare(spec), what=f"for spec {spec!r}")


@settings(max_examples=10, **SETTINGS)
@given(data=st.data())
def test_bf16_gemm_seq_models(data):
    pytest.importorskip("torch")
    from helpers import seqmodels as SM
    from test_seq_parity import _prepare as prepare_seq

    spec = data.draw(SM.seq_model_specs().filter(lambda s: s.get("norm") != "batchnorm"))
    _check_model(*prepare_seq(spec), what=f"for spec {spec!r}")


def models_every_isa(save, reference, judge, job, seed, prefix):
    """Fixed models (batch 1, an odd batch, a batch past the 72-row blocks; full with heads, decomp
    with W0), saved by ``save(model, path)`` (the rounded torch model back), under every ISA (DPN_ISA,
    child processes), each against ``reference(rounded, meta, batch)`` -> (logits, F) with
    ``judge``; ``job``: the load options of the jobs."""
    from helpers.isa import available_isas, predict_under_isa

    fields = [{"name": "user", "kind": "sparse", "dim": 8, "vocab": 50, "policy": "hash"},
              {"name": "item", "kind": "sparse", "dim": 16, "vocab": 40, "policy": "oov_bucket"},
              {"name": "tags", "kind": "multi_hot", "dim": 8, "vocab": 30, "policy": "hash",
               "pooling": "mean", "T": 5, "max_len": 0},
              {"name": "feat", "kind": "dense", "dim": 9}]
    dyn = {"dynamic": True, "context": "x0", "generator": "mlp", "hidden": 6, "sigma": "relu"}
    cases = [
        [dict(dyn, out=40, form="full", heads=1), {"out": 33},
         dict(dyn, out=17, context="prev", sigma="softmax", form="full", heads=1)],
        [{"out": 48}, dict(dyn, out=64, form="full", heads=4, generator="linear", hidden=41),
         dict(dyn, out=7, form="decomp", rank=4, w0=True, context="prev")],
    ]
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        jobs, refs = [], {}
        for i, layers in enumerate(cases):
            for B in (1, 37, 257):
                spec = {"kind": "feature_dpn", "fields": fields, "layers": layers, "activation": "relu",
                        "norm": None, "seed": seed + i, "B": B}
                model, batch = _prepare(spec)
                jid = f"m{i}b{B}"
                mp, bp = os.path.join(d, jid + ".bin"), os.path.join(d, jid + ".npz")
                rounded = save(model, mp)
                np.savez(bp, **batch)
                meta, _ = F.read(mp)
                refs[jid] = reference(rounded, meta, batch)
                jobs.append(dict(job, id=jid, model=mp, batch=bp))
        for isa in available_isas():
            selected, res = predict_under_isa(isa, jobs, d)
            assert selected == isa
            for jid, (z, p, z3) in res.items():
                ref, sens = refs[jid]
                judge(z, ref, sens, f"{jid} under DPN_ISA={isa}")
                judge(z3, z, sens, f"{jid} threads=3 under DPN_ISA={isa}")
                np.testing.assert_allclose(p, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-5, atol=1e-6)


def test_bf16_gemm_models_every_isa():
    """models_every_isa with bfloat16 files and bf16_gemm=True."""
    pytest.importorskip("torch")
    from helpers import bf16ref

    models_every_isa(_save, bf16ref.reference, judge_bf16, {"bf16_gemm": True}, 300, "dpn_bf16g_isa_")


def test_bf16_gemm_follows_the_file(tmp_path):
    """save(precision="bf16") records "arithmetic": "bf16", so a plain load runs bfloat16 GEMMs (the
    bits of bf16_gemm=True); bf16_gemm=False computes in float32 on the widened weights, as a
    bfloat16 file without the key does (the outputs recorded in tests/golden): the outputs move by
    about bfloat16's rounding. A float32 file gives the same bits whatever is asked."""
    pytest.importorskip("torch")
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import ModelFormatError, load

    spec = {"kind": "feature_dpn", "activation": "relu", "norm": None, "seed": 5, "B": 64,
            "fields": [{"name": "user", "kind": "sparse", "dim": 8, "vocab": 500, "policy": "hash"},
                       {"name": "feat", "kind": "dense", "dim": 7}],
            "layers": [{"out": 32, "dynamic": True, "context": "x0", "hidden": 3, "sigma": "relu",
                        "form": "full"}, {"out": 16}]}
    model, batch = _prepare(spec)
    torch_export.save(model, tmp_path / "b.bin", precision="bf16")
    torch_export.save(model, tmp_path / "f.bin")
    from dpn_infer.converters import format as F

    assert F.read(tmp_path / "b.bin")[0]["arithmetic"] == "bf16"
    assert "arithmetic" not in F.read(tmp_path / "f.bin")[0]
    z0 = load(tmp_path / "b.bin", bf16_gemm=False).predict(batch, logits=True)
    z1 = load(tmp_path / "b.bin", bf16_gemm=True).predict(batch, logits=True)
    assert 1e-5 < np.max(np.abs(z1 - z0)) < 0.05 * (1 + np.max(np.abs(z0)))
    np.testing.assert_array_equal(load(tmp_path / "b.bin").predict(batch, logits=True), z1)
    # the same file without the key (as written before it existed) computes in float32
    meta, tensors = F.read(tmp_path / "b.bin")
    del meta["arithmetic"]
    F.write(tmp_path / "old.bin", meta, tensors)
    np.testing.assert_array_equal(load(tmp_path / "old.bin").predict(batch, logits=True), z0)
    np.testing.assert_array_equal(load(tmp_path / "old.bin", bf16_gemm=True).predict(batch, logits=True), z1)
    for bad in (["bf16"], "int4", 1):
        meta["arithmetic"] = bad
        F.write(tmp_path / "bad.bin", meta, tensors)
        with pytest.raises(ModelFormatError, match="'arithmetic' must be"):
            load(tmp_path / "bad.bin")
        for flag in (False, True):  # refused whatever the caller asks for
            with pytest.raises(ModelFormatError, match="'arithmetic' must be"):
                load(tmp_path / "bad.bin", bf16_gemm=flag)
    with pytest.raises(TypeError, match="bf16_gemm must be"):
        load(tmp_path / "b.bin", bf16_gemm="yes")
    for flag in (False, True):
        np.testing.assert_array_equal(load(tmp_path / "f.bin", bf16_gemm=flag).predict(batch, logits=True),
                                      load(tmp_path / "f.bin").predict(batch, logits=True))
    import pickle

    m = pickle.loads(pickle.dumps(load(tmp_path / "b.bin", bf16_gemm=True)))
    np.testing.assert_array_equal(m.predict(batch, logits=True), z1)


def requests_split_layers(save, reference, judge, load_kw, prefix):
    """Ranking requests against the broadcast batch (judge with the reference's F), on models whose
    layers split per user (a linear; a dylinear with a user-only context), threads 1 and 3."""
    from dpn_infer.engine import load
    from helpers import models as HM
    from helpers.requests import make_request

    fields = [{"name": "user", "kind": "sparse", "dim": 16, "vocab": 50, "policy": "hash"},
              {"name": "age", "kind": "dense", "dim": 9},
              {"name": "item", "kind": "sparse", "dim": 16, "vocab": 40, "policy": "oov_bucket"}]
    dyn = {"out": 48, "dynamic": True, "context": ["user", "age"], "generator": "mlp", "hidden": 5,
           "sigma": "relu", "form": "full", "heads": 1}
    counts = [3, 1, 17, 0, 40]
    r = make_request(HM.make_batch(fields, len(counts), 21), HM.make_batch(fields, sum(counts), 22),
                     ["user", "age"], counts)
    for layers in ([dyn, {"out": 24}], [{"out": 32}, dict(dyn, context="x0")]):
        spec = {"kind": "feature_dpn", "fields": fields, "layers": layers, "activation": "relu",
                "norm": None, "seed": 11, "B": 8}
        model, _ = _prepare(spec)
        with tempfile.TemporaryDirectory(prefix=prefix) as d:
            path = os.path.join(d, "m.bin")
            rounded = save(model, path)
            meta, _ = F.read(path)
            m = load(path, **load_kw)
            want = m.predict(r["broadcast"], logits=True)
            _, sens = reference(rounded, meta, r["broadcast"])
            for threads in (1, 3):
                got = m.predict(r["cands"], shared=r["shared"], groups=r["groups"], logits=True,
                                threads=threads)
                judge(got, want, sens, f"request, layers {layers}, threads={threads}")


def test_bf16_gemm_requests_split_layers():
    """Ranking requests on a bfloat16 model with bf16_gemm=True: the layers that split per user
    (linear: W_u·x_u once per user; dylinear with a user-only context: A'_u once per user) round
    x_u and x_i as the whole row's GEMM does, so the request equals the broadcast batch within
    judge_bf16's bound (sums in another order; a rare rounding flip)."""
    pytest.importorskip("torch")
    from helpers import bf16ref

    requests_split_layers(_save, bf16ref.reference, judge_bf16, {"bf16_gemm": True}, "dpn_bf16g_req_")
