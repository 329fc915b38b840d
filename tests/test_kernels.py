"""GEMM kernels per ISA against float64 numpy, and whole models under each ISA (DPN_ISA).

Every ISA the machine can run is tested: `_testing.gemm` runs one ISA's GEMM (weight packed for
that ISA's panel width) regardless of the process's selected ISA. The whole-model check runs in
subprocesses because DPN_ISA is read once per process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dpn_infer import _engine, _testing

ISAS = list(_engine.cpu_info()["available"])
ACTS = ["identity", "relu", "sigmoid", "tanh"]
EDGES = [1, 3, 7, 15, 16, 17, 31, 33, 47, 48, 49, 64, 65, 100, 257]


def _act(name, x):
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    return x


def _check(A, W, b, act, isa):
    C = _testing.gemm(A, W, b, act, isa)
    ref = A.astype(np.float64) @ W.astype(np.float64).T
    if b is not None:
        ref = ref + b.astype(np.float64)
    ref = _act(act, ref)
    K = A.shape[1]
    assert C.shape == ref.shape and C.dtype == np.float32
    np.testing.assert_allclose(C, ref, rtol=1e-4, atol=1e-5 * np.sqrt(max(K, 1)),
                               err_msg=f"isa={isa} M,K,N={A.shape[0]},{K},{W.shape[0]} act={act}")


def test_cpu_info_shape():
    info = _engine.cpu_info()
    for k in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_bf16"):
        assert isinstance(info[k], bool)
    assert info["selected"] in ("avx512amx", "avx512bf16", "avx512", "avx2", "ref")
    assert info["selected"] in info["available"] and "ref" in info["available"]
    import dpn_infer

    assert dpn_infer.cpu_info() == info


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_sweep_m(isa):
    rng = np.random.default_rng(1)
    for M in range(1, 66):
        for K, N in ((17, 33), (65, 49)):
            A = rng.standard_normal((M, K)).astype(np.float32)
            W = rng.standard_normal((N, K)).astype(np.float32)
            b = rng.standard_normal(N).astype(np.float32) if M % 2 else None
            _check(A, W, b, ACTS[M % 4], isa)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_few_rows_many_panels(isa):
    """M <= 3 runs several full panels side by side on AVX-512 (batch 1): widths of 1..5 full
    panels plus a partial one, K across the K-block edge (256). Each row must also equal, bit for
    bit, the same row computed inside a 13-row GEMM (the regular 12-row tile path)."""
    rng = np.random.default_rng(5)
    for K in (5, 256, 300, 600):
        for N in (32, 64, 96, 128, 160, 161, 200, 257, 400):
            big = rng.standard_normal((13, K)).astype(np.float32)
            W = rng.standard_normal((N, K)).astype(np.float32)
            b = rng.standard_normal(N).astype(np.float32)
            act = ACTS[(K + N) % 4]
            full = _testing.gemm(big, W, b, act, isa)
            for M in (1, 2, 3):
                _check(big[:M], W, b, act, isa)
                np.testing.assert_array_equal(_testing.gemm(big[:M], W, b, act, isa), full[:M],
                                              err_msg=f"isa={isa} M,K,N={M},{K},{N}")


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_block_edges(isa):
    """K across the K blocks (AVX-512 and AVX2 768, ref 256) and M across the M blocks (72 on
    AVX-512 and AVX2), under both loop orders (AVX-512 and AVX2 run rows outer for a packed B up to
    8 MiB, K outer above: the K=2100, N=1024 case). Against float64, and each row bit for bit equal to the
    same row computed alone (its result must not depend on the rows around it)."""
    rng = np.random.default_rng(11)
    for K, N in ((255, 40), (767, 33), (768, 48), (769, 161), (1537, 70), (2100, 1024)):
        W = rng.standard_normal((N, K)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        A = rng.standard_normal((149, K)).astype(np.float32)
        act = ACTS[K % 4]
        for M in ((4, 73, 149) if N < 1024 else (75,)):
            _check(A[:M], W, b, act, isa)
        full = _testing.gemm(A[:75], W, b, act, isa)
        for i in (0, 71, 72, 74):
            np.testing.assert_array_equal(_testing.gemm(A[i:i + 1], W, b, act, isa), full[i:i + 1],
                                          err_msg=f"isa={isa} K,N={K},{N} row {i}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
def test_gemm_sweep_kn(isa, act):
    rng = np.random.default_rng(2)
    for K in EDGES:
        for N in EDGES:
            M = int(rng.integers(1, 30))
            A = rng.standard_normal((M, K)).astype(np.float32)
            W = rng.standard_normal((N, K)).astype(np.float32)
            for b in (None, rng.standard_normal(N).astype(np.float32)):
                _check(A, W, b, act, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_large_k_blocks(isa):
    # K spans several K blocks and M several M blocks; N spans several panels with a ragged edge.
    rng = np.random.default_rng(3)
    for M, K, N in ((200, 1100, 70), (13, 513, 257), (97, 257, 31)):
        A = rng.standard_normal((M, K)).astype(np.float32)
        W = rng.standard_normal((N, K)).astype(np.float32)
        _check(A, W, rng.standard_normal(N).astype(np.float32), "relu", isa)
        _check(A, W, None, "sigmoid", isa)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_k_zero_and_extremes(isa):
    # K == 0: C = act(bias); large magnitudes through sigmoid/tanh stay finite.
    b = np.array([-3.0, 0.0, 2.5], np.float32)
    C = _testing.gemm(np.zeros((4, 0), np.float32), np.zeros((3, 0), np.float32), b,
                           "sigmoid", isa)
    np.testing.assert_allclose(C, np.broadcast_to(1 / (1 + np.exp(-b.astype(np.float64))), (4, 3)),
                               rtol=1e-6)
    A = np.full((3, 5), 1e4, np.float32)
    W = np.ones((37, 5), np.float32)
    W[::2] *= -1
    for act in ("sigmoid", "tanh"):
        C = _testing.gemm(A, W, None, act, isa)
        assert np.all(np.isfinite(C))
        _check(A, W, None, act, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_kron(isa):
    # [x, h_1 x, ..., h_l x, (h)] @ B, with K blocks cutting through the segments.
    rng = np.random.default_rng(4)
    for R, m, l, N, with_h in ((1, 1, 1, 1, True), (13, 7, 3, 33, True), (30, 41, 8, 17, False),
                               (65, 100, 5, 40, True), (24, 3, 90, 65, True), (7, 64, 6, 31, False),
                               (80, 300, 4, 50, True), (14, 170, 9, 20, False)):
        x = rng.standard_normal((R, m)).astype(np.float32)
        h = rng.standard_normal((R, l)).astype(np.float32)
        K = (l + 1) * m + (l if with_h else 0)
        B = rng.standard_normal((K, N)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        P = np.concatenate([x] + [h[:, k:k + 1] * x for k in range(l)] + ([h] if with_h else []),
                           axis=1).astype(np.float64)
        for act in ("identity", "relu", "tanh"):
            C = _testing.gemm_kron(x, h, B, b, act, with_h, isa)
            ref = _act(act, P @ B.astype(np.float64) + b)
            np.testing.assert_allclose(C, ref, rtol=1e-4, atol=1e-5 * np.sqrt(K),
                                       err_msg=f"isa={isa} R,m,l,N={R},{m},{l},{N} act={act}")


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_collapsed(isa):
    """A ranking request's per-user weight (kron_collapse + gemm_packed): x · (A_0 + Σ_k h_k A_k)
    equals the Kronecker GEMM [x, h_1 x, …, h_l x] · B with one h for every row. Against float64,
    tolerance as the Kronecker GEMM's (fp32 sums of K = (l+1)·m terms, another order): rtol 1e-4,
    atol 1e-5·sqrt(K). N sweeps the panel edges of every ISA (8, 16, 32: a half last panel or a
    full one), 1 and 2 threads (the collapse and the GEMM split by panels)."""
    rng = np.random.default_rng(12)
    for R, m, l, N in ((1, 1, 1, 1), (5, 7, 3, 8), (17, 41, 4, 16), (33, 100, 5, 31), (2, 13, 1, 32),
                       (64, 64, 2, 33), (9, 208, 4, 400), (3, 30, 8, 47)):
        x = rng.standard_normal((R, m)).astype(np.float32)
        h = rng.standard_normal(l).astype(np.float32)
        B = rng.standard_normal(((l + 1) * m, N)).astype(np.float32)
        P = np.concatenate([x] + [h[k] * x for k in range(l)], axis=1).astype(np.float64)
        want = P @ B.astype(np.float64)
        for threads in (1, 2):
            C = _testing.gemm_collapsed(x, h, B, isa, threads)
            np.testing.assert_allclose(C, want, rtol=1e-4, atol=1e-5 * np.sqrt((l + 1) * m),
                                       err_msg=f"isa={isa} R,m,l,N={R},{m},{l},{N} threads={threads}")


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_kron_few_rows(isa):
    """1-3 rows (batch 1) take the few-rows path on AVX-512, which builds [x, h·x, h] for all of K
    at once instead of by K blocks and groups panels evenly: K well past the K block (256), panel
    counts that leave 1, 2 or 3 in a group, a half last panel. Against float64, and bit for bit
    against the same rows inside a 13-row call (a row's result must not depend on its batch)."""
    rng = np.random.default_rng(9)
    for m, l, N, with_h in ((100, 4, 400, True), (64, 6, 70, False), (90, 5, 130, True),
                            (33, 2, 16, True), (200, 3, 161, False)):
        K = (l + 1) * m + (l if with_h else 0)
        x = rng.standard_normal((13, m)).astype(np.float32)
        h = rng.standard_normal((13, l)).astype(np.float32)
        B = rng.standard_normal((K, N)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        full = _testing.gemm_kron(x, h, B, b, "relu", with_h, isa)
        for R in (1, 2, 3):
            P = np.concatenate([x[:R]] + [h[:R, k:k + 1] * x[:R] for k in range(l)] +
                               ([h[:R]] if with_h else []), axis=1).astype(np.float64)
            C = _testing.gemm_kron(x[:R], h[:R], B, b, "relu", with_h, isa)
            np.testing.assert_allclose(C, _act("relu", P @ B.astype(np.float64) + b), rtol=1e-4,
                                       atol=1e-5 * np.sqrt(K), err_msg=f"isa={isa} R,m,l,N={R},{m},{l},{N}")
            np.testing.assert_array_equal(C, full[:R], err_msg=f"isa={isa} R,m,l,N={R},{m},{l},{N}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows", [1, 2, 13, 75])  # the few-rows tile, full tiles and a tail
def test_relu_epilogue_propagates_nan(isa, rows):
    # torch.relu(NaN) is NaN: an overflow inside a layer (1e30 * w - 1e30 * w) must reach the score
    # as NaN, not as a plausible 0 activation. -0 -> +0, +inf stays, -inf -> 0.
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.5, 2.5], np.float32)
    rng = np.random.default_rng(rows)
    N = 37  # a full panel and a half one
    bias = rng.choice(specials, size=N).astype(np.float32)
    A = np.ones((rows, 1), np.float32)
    W = np.zeros((N, 1), np.float32)
    C = _testing.gemm(A, W, bias, "relu", isa)
    with np.errstate(invalid="ignore"):
        want = np.where(np.isnan(bias) | (bias > 0), bias, 0.0).astype(np.float32)
    for r in range(rows):
        np.testing.assert_array_equal(C[r], want, err_msg=f"isa={isa} rows={rows}")
    assert not np.signbit(C[:, bias == 0]).any(), "relu(-0) must be +0"


@pytest.mark.parametrize("isa", ISAS)
def test_vector_activations_accuracy(isa):
    # The fused sigmoid/tanh epilogues (vector exp on AVX2/AVX-512) against float64, elementwise.
    x = np.concatenate([np.linspace(-120, 120, 20001), np.linspace(-1, 1, 20001),
                        np.linspace(-1e-3, 1e-3, 1001), [0.0, -0.0, 0.625, -0.625, 1e-30, -1e-30,
                                                         np.inf, -np.inf, np.nan]]).astype(np.float32)
    A, W = x.reshape(-1, 1), np.ones((1, 1), np.float32)
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        refs = {"sigmoid": 1.0 / (1.0 + np.exp(-x64)), "tanh": np.tanh(x64)}
    for act, ref in refs.items():
        C = _testing.gemm(A, W, None, act, isa)[:, 0].astype(np.float64)
        assert np.isnan(C[-1]) and C[-3] == 1.0, (act, isa, C[-3:])
        if act == "sigmoid":
            assert 0.0 <= C[-2] < 1e-37, (act, isa, C[-2])
        else:
            assert C[-2] == -1.0, (act, isa, C[-2])
        ok = np.isfinite(x64)
        err = np.abs(C[ok] - ref[ok])
        assert err.max() < 1e-6, (act, isa, err.max())
        big = np.abs(ref[ok]) > 1e-37
        assert (err[big] / np.abs(ref[ok][big])).max() < 2e-6, (act, isa)


def test_gemm_rejects_bad_args():
    A = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError):
        _testing.gemm(A, np.ones((4, 5), np.float32), None, "identity", "ref")
    with pytest.raises(ValueError):
        _testing.gemm(A, np.ones((4, 3), np.float32), None, "gelu", "ref")
    with pytest.raises(ValueError):
        _testing.gemm(A, np.ones((4, 3), np.float32), None, "identity", "sse9")


# --- whole models under each ISA, one subprocess per ISA ------------------------------------

FIELDS = [
    {"name": "user", "kind": "sparse", "dim": 8, "vocab": 50, "policy": "hash"},
    {"name": "item", "kind": "sparse", "dim": 16, "vocab": 40, "policy": "oov_bucket"},
    {"name": "tags", "kind": "multi_hot", "dim": 8, "vocab": 30, "policy": "hash", "pooling": "mean",
     "T": 5, "max_len": 0},
    {"name": "feat", "kind": "dense", "dim": 9},
]  # x0 width 41


def _dyn(**kw):
    d = {"out": 40, "dynamic": True, "context": "x0", "generator": "mlp", "hidden": 6,
         "sigma": "relu", "form": "full", "heads": 1}
    d.update(kw)
    if d["form"] == "decomp":
        d.pop("heads", None)
        d.setdefault("rank", 5)
        d.setdefault("w0", False)
    return d


MODEL_CASES = [
    [_dyn(), {"out": 33}, _dyn(out=17, context="prev", sigma="softmax")],
    [{"out": 48}, _dyn(out=64, heads=4, generator="linear", hidden=41),
     _dyn(out=7, form="decomp", rank=4, w0=True, context="prev")],
    [{"out": 65}, _dyn(out=31, sigma="sigmoid", hidden=8, context=["user", "feat"])],
]

_WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import copy, os, tempfile
    import torch
    import dpn_infer
    from dpn_infer.converters import torch_export
    from helpers import models as HM
    cases = json.loads(sys.argv[2])
    out = {"info": dpn_infer.cpu_info(), "cases": []}
    with tempfile.TemporaryDirectory() as d:
        for i, layers in enumerate(cases):
            spec = {"kind": "feature_dpn", "fields": json.loads(sys.argv[3]), "layers": layers,
                    "activation": "relu", "norm": None, "seed": 100 + i, "B": 257}
            model = HM.build(spec)
            batch = HM.make_batch(spec["fields"], spec["B"], spec["seed"] + 1)
            HM.calibrate_(model, batch, seed=spec["seed"])
            with torch.no_grad():
                ref32 = model(batch).numpy()
                ref64 = copy.deepcopy(model).double()(batch).numpy()
            path = os.path.join(d, f"m{i}.bin")
            torch_export.save(model, path)
            m = dpn_infer.load(path)
            z = m.predict(batch, logits=True)
            z2 = m.predict(batch, logits=True, threads=2)
            out["cases"].append({"z": z.tolist(), "z2": z2.tolist(), "ref32": ref32.tolist(),
                                 "ref64": ref64.tolist()})
    print(json.dumps(out))
    """
)


def _run_under(isa_env):
    env = dict(os.environ)
    if isa_env is None:
        env.pop("DPN_ISA", None)
    else:
        env["DPN_ISA"] = isa_env
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", _WORKER, tests, json.dumps(MODEL_CASES),
                        json.dumps(FIELDS)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"worker under DPN_ISA={isa_env} failed:\n{r.stderr[-4000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def per_isa_results():
    pytest.importorskip("torch")
    pytest.importorskip("hypothesis")
    return {isa: _run_under(isa) for isa in ISAS}


@pytest.mark.parametrize("isa", ISAS)
def test_models_under_isa(per_isa_results, isa):
    res = per_isa_results[isa]
    info = res["info"]
    assert info["selected"] == isa and info["override"] == isa and info["note"] == ""
    for i, c in enumerate(res["cases"]):
        z, ref32, ref64 = (np.asarray(c[k]) for k in ("z", "ref32", "ref64"))
        np.testing.assert_allclose(c["z2"], z, rtol=1e-5, atol=1e-6)
        # engine within tolerance of torch, or (ill-conditioned rows) no worse than torch's own
        # float32 error against float64 plus the tolerance.
        if not np.allclose(z, ref32, rtol=1e-4, atol=1e-5):
            tol = 1e-4 * np.abs(ref64) + 1e-5 + 3 * np.abs(ref32 - ref64).max()
            assert np.all(np.abs(z - ref64) <= tol), f"isa={isa} case {i}"


def test_models_agree_across_isas(per_isa_results):
    base = per_isa_results["ref"]["cases"]
    for isa in ISAS:
        for i, (a, b) in enumerate(zip(per_isa_results[isa]["cases"], base)):
            np.testing.assert_allclose(a["z"], b["z"], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{isa} vs ref, case {i}")


def test_isa_override_fallbacks():
    info = _run_under("sse9")["info"]
    assert info["override"] == "sse9" and "ignored" in info["note"]
    assert info["selected"] == ISAS[0]
    info = _run_under("REF")["info"]
    assert info["selected"] == "ref"
    for want in ("avx512amx", "avx512bf16", "avx512", "avx2"):
        if want not in ISAS:
            info = _run_under(want)["info"]
            assert info["selected"] == ISAS[0] and "does not support" in info["note"]
