"""Reduced-precision files (docs/format.md §3, opset 3): bfloat16 weight matrices, float16 / bfloat16
embedding tables. The converter rounds to nearest even; the engine reads tables in place and widens
each value as it gathers it, and widens bfloat16 weights to float32 at load.

Bounds, derived: widening float16/bfloat16 to float32 is exact, so the engine on a reduced-precision
file computes exactly what it computes on the float32 file of the same rounded values. The reference
of every parity test here is therefore the torch model with its parameters rounded the way the
converter rounds them (helpers/precision.py), run in float32, judged with test_parity's criterion
(rtol 1e-4 / atol 1e-5, with its float64 fallback): the rounding of the weights is in both sides, and
what is left is float32 summation order. The gather kernels are compared bit for bit (widening is
exact and the sums run in the reference's order)."""
from __future__ import annotations

import copy
import json
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpn_infer import ModelFormatError, _testing
from dpn_infer.converters import format as F
from dpn_infer.engine import cpu_info, load
from helpers import files as HF

ISAS = cpu_info()["available"]


# ---------------------------------------------------------------------------------------------
# rounding (converters/format.py) against torch's own float32 -> bfloat16 / float16


def _edge_floats():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(20000).astype(np.float32) * np.float32(10.0) ** rng.integers(-40, 38, 20000)
    # exact halfway cases (ties to even both ways), the largest finite values, subnormals, zeros, inf
    ties = (np.arange(1, 600, dtype=np.uint32) << 16 | np.uint32(0x8000)).view(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 3.4028235e38, -3.4028235e38, 1e-45, 1.2e-38,
                        65504.0, 65520.0, 6e-8, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], np.float32)
    return np.concatenate([x.astype(np.float32), ties, -ties, special])


def test_bfloat16_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    x = _edge_floats()
    ours = F.to_bfloat16(x).view(np.uint16)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(F.to_float32(F.to_bfloat16(x)),
                                  torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    nan = F.to_float32(F.to_bfloat16(np.array([np.nan], np.float32)))
    assert np.isnan(nan).all()


# ---------------------------------------------------------------------------------------------
# the gather kernel: every ISA, every tile edge (8 / 16 floats per vector, 4 vectors per block)

DIMS = list(range(1, 70)) + [127, 128, 129]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bf16", [True, False])
def test_pool_half_kernel(isa, bf16):
    def table(rng, V, dim):
        t = (rng.standard_normal((V, dim)) * 3).astype(np.float32)
        raw = F.to_bfloat16(t).view(np.uint16) if bf16 else t.astype(np.float16).view(np.uint16)
        wide = F.to_float32(raw.view(F.BFLOAT16)) if bf16 else raw.view(np.float16).astype(np.float32)
        return {"table": raw, "bf16": bf16}, wide

    check_pool_kernel(isa, "pool_half", table, 3, DIMS)


def check_pool_kernel(isa, kernel, table, seed, dims):
    """``kernel`` under ``isa`` over tables ``table(rng, V, dim)`` -> (its keywords, the float32 values)
    for every dim: bit-equal to the reference kernel, which is bit-equal to the float32 gather of
    the widened table (widening / dequantizing is exact or one rounding, the sums run in order)."""
    rng = np.random.default_rng(seed)
    for dim in dims:
        V = 11
        kw, wide = table(rng, V, dim)
        n = dim % 5  # 0..4 rows pooled per output row (0: zeros)
        rows = rng.integers(0, V, (6, n)).astype(np.int64)
        for scale in (1.0, 0.25):
            out = _testing.kernel(kernel, isa, rows=rows, scale=scale, **kw)
            ref = _testing.kernel(kernel, "ref", rows=rows, scale=scale, **kw)
            f32 = _testing.kernel("pool", "ref", table=wide, rows=rows, scale=scale)
            np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32), err_msg=f"{isa} dim {dim}")
            np.testing.assert_array_equal(ref.view(np.uint32), f32.view(np.uint32), err_msg=f"dim {dim}")
            want = wide[rows].astype(np.float64).sum(axis=1) * scale
            np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_float16_widening_is_exact_for_every_value():
    """Every finite float16 bit pattern (normals, subnormals, zeros, inf) through the gather, per ISA."""
    bits = np.arange(65536, dtype=np.uint16)
    finite = bits[np.isfinite(bits.view(np.float16)) | np.isinf(bits.view(np.float16))]
    table = finite[: len(finite) // 64 * 64].reshape(-1, 64)
    rows = np.arange(len(table), dtype=np.int64)[:, None]
    want = table.view(np.float16).astype(np.float32) + np.float32(0)  # a sum from 0: -0 reads as +0
    for isa in ISAS:
        out = _testing.kernel("pool_half", isa, table=table, rows=rows, bf16=False)
        np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32), err_msg=isa)


# ---------------------------------------------------------------------------------------------
# whole models against torch with the same rounded parameters


def _save_rounded(model, path, precision, embeddings):
    """Round ``model``'s parameters like the converter, save with that precision; returns the rounded
    torch model (the exact float32 reference of the file)."""
    from dpn_infer.converters import torch_export
    from helpers.precision import round_params_

    ref = round_params_(copy.deepcopy(model), precision, embeddings)
    torch_export.save(model, path, precision=precision, embeddings=embeddings)
    return ref


def _check(model, batch, precision, embeddings, truth=None, what=""):
    import torch

    from test_parity import _truth, judge

    with tempfile.TemporaryDirectory(prefix="dpn_bf16_") as d:
        path = os.path.join(d, "model.bin")
        ref_model = _save_rounded(model, path, precision, embeddings)
        m = load(path, bf16_gemm=False)  # float32 arithmetic on the widened weights (tests/test_bf16_gemm.py: the bfloat16 GEMMs)
        z = m.predict(batch, logits=True)
        p = m.predict(batch)
        z3 = m.predict(batch, logits=True, threads=3)
        meta, tensors = F.read(path)
    _check_dtypes(meta, tensors, precision, embeddings)
    with torch.no_grad():
        ref = ref_model(batch).numpy()
    np.testing.assert_allclose(z3, z, rtol=1e-5, atol=1e-6, err_msg=f"threads=3 {what}")
    judge(z, p, ref, lambda: (truth or _truth)(ref_model, batch), batch, what)


_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _check_dtypes(meta, tensors, precision, embeddings):
    tables = {t for n in meta["graph"]["nodes"] if n["op"] in ("embedding", "seq_embedding")
              for r, t in n["params"].items() if r == "table"}
    roles = {t: r for n in meta["graph"]["nodes"] for r, t in n["params"].items()}
    for name, a in tensors.items():
        if name in tables:
            want = embeddings
        elif a.ndim >= 2 and not roles[name].endswith("bias"):
            want = precision
        else:
            want = "fp32"
        assert F.dtype_name(a) == _NAMES[want], (name, F.dtype_name(a), want)
    reduced = precision != "fp32" or (embeddings != "fp32" and tables)
    base = F.required_opset(meta)   # the graph's own opset (5 for the opset-5 operators)
    assert meta["opset"] == (max(base, 3) if reduced else base), (meta["opset"], base)


PRECISIONS = st.sampled_from([("bf16", "bf16"), ("bf16", "fp16"), ("bf16", "fp32"), ("fp32", "bf16"),
                              ("fp32", "fp16")])
SETTINGS = dict(deadline=None, print_blob=True,
                suppress_health_check=list(__import__("hypothesis").HealthCheck))


def _feature_specs():
    from helpers import models as HM

    # BatchNorm is folded into the weights by the exporter, so its torch model is not the rounded
    # file's exact reference; LayerNorm and no norm are.
    return HM.model_specs().filter(lambda s: s["norm"] != "batchnorm")


def _prepare(spec):
    """The model (calibrated to its batch) and batch of a feature or field spec."""
    from helpers import models as HM

    model = HM.build(spec)
    batch = HM.make_batch(spec["fields"], spec["B"], spec["seed"] + 1)
    HM.calibrate_(model, batch, seed=spec["seed"])
    return model, batch


@settings(max_examples=60, **SETTINGS)
@given(spec=_feature_specs(), prec=PRECISIONS)
def test_parity_feature_models(spec, prec):
    pytest.importorskip("torch")
    from helpers import models as HM

    _check(*_prepare(spec), *prec, what=f"{prec} for spec {HM.describe(spec)}")


@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), prec=PRECISIONS)
def test_parity_field_models(data, prec):
    pytest.importorskip("torch")
    from helpers import field_models as FM

    spec = data.draw(FM.field_dpn_specs().filter(lambda s: s["feature_norm"] != "batchnorm"))
    _check(*_prepare(spec), *prec, what=f"{prec} for spec {spec!r}")


@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), prec=PRECISIONS)
def test_parity_seq_models(data, prec):
    pytest.importorskip("torch")
    from helpers import seqmodels as SM
    from test_seq_parity import _prepare, _truth

    spec = data.draw(SM.seq_model_specs().filter(lambda s: s.get("norm") != "batchnorm"))
    model, batch = _prepare(spec)
    _check(model, batch, *prec, truth=_truth, what=f"{prec} for spec {spec!r}")


def test_parity_every_isa():
    """Fixed bf16 models (feature, field, sequence) under every ISA, in child processes."""
    pytest.importorskip("torch")
    check_every_isa(lambda s: s["B"] > 256 and len(s["layers"]) >= 2 and s["norm"] is None,
                    lambda k: ("bf16", "bf16" if k % 2 else "fp16"))


def check_every_isa(feature, precision):
    """A feature model (the first spec ``feature`` accepts), a field and a sequence model, job ``k``
    saved with ``precision(k)`` = (precision, embeddings), under every ISA against torch with the
    same rounded parameters."""
    import torch
    from helpers import field_models as FM
    from helpers import models as HM
    from helpers import seqmodels as SM
    from helpers.isa import available_isas, predict_under_isa
    from test_parity import judge

    from hypothesis import find
    specs = [("feature", find(HM.model_specs(kind="feature_dpn"), feature)),
             ("field", find(FM.field_dpn_specs(), lambda s: s["feature_norm"] != "batchnorm" and s["B"] > 7)),
             ("seq", find(SM.seq_model_specs(), lambda s: s["B"] > 7 and s.get("norm") != "batchnorm"))]
    with tempfile.TemporaryDirectory(prefix="dpn_reduced_isa_") as d:
        jobs, refs = [], {}
        for k, (kind, spec) in enumerate(specs):
            if kind == "seq":
                from test_seq_parity import _prepare as prepare_seq
                model, batch = prepare_seq(spec)
            else:
                model, batch = _prepare(spec)
            jid = f"job{k}"
            mp, bp = os.path.join(d, jid + ".bin"), os.path.join(d, jid + ".npz")
            ref_model = _save_rounded(model, mp, *precision(k))
            np.savez(bp, **batch)
            with torch.no_grad():
                refs[jid] = (spec, ref_model(batch).numpy())
            # float32 arithmetic on the widened / dequantized weights (the reduced-precision GEMMs:
            # test_bf16_gemm.py, test_int8_gemm.py)
            jobs.append({"id": jid, "model": mp, "batch": bp, "bf16_gemm": False, "int8_gemm": False})
        for isa in available_isas():
            selected, res = predict_under_isa(isa, jobs, d)
            assert selected == isa
            for jid, (z, p, z3) in res.items():
                spec, ref = refs[jid]
                judge(z, p, ref, lambda: pytest.fail(f"{isa}: {spec!r}"), {}, f"under DPN_ISA={isa}")


# ---------------------------------------------------------------------------------------------
# converter and CLI


def _small_model(**layer):
    """A small FeatureDPN (a sparse and a multi-hot field, one dynamic layer; ``layer`` overrides its
    full-form attributes) and a batch."""
    pytest.importorskip("torch")
    from helpers import models as HM

    spec = {"kind": "feature_dpn", "activation": "relu", "norm": None, "seed": 5, "B": 9,
            "fields": [{"name": "user", "kind": "sparse", "dim": 8, "vocab": 500, "policy": "hash"},
                       {"name": "tags", "kind": "multi_hot", "dim": 8, "vocab": 50, "policy": "hash",
                        "pooling": "mean", "T": 3, "max_len": 3}],
            "layers": [{"out": 16, "dynamic": True, "context": "x0", "hidden": 3, "sigma": "relu",
                        "form": "full", **layer}]}
    return HM.build(spec), HM.make_batch(spec["fields"], 9, 6)


@pytest.mark.parametrize("kw, words", [({"precision": "int4"}, "unknown precision 'int4'"),
                                       ({"embeddings": "fp8"}, "unknown embeddings precision 'fp8'"),
                                       ({"precision": "fp16"}, "expected one of fp32, bf16")])
def test_unknown_precision_is_refused(tmp_path, kw, words):
    import dpn_infer

    model, _ = _small_model()
    with pytest.raises(ValueError, match=words):
        dpn_infer.save(model, tmp_path / "m.bin", **kw)
    assert not (tmp_path / "m.bin").exists()


def test_fp16_overflow_is_refused(tmp_path):
    import torch

    import dpn_infer

    model, _ = _small_model()
    with torch.no_grad():
        model.inputs.embeddings["user"].weight[3, 1] = 1e5
    with pytest.raises(ValueError, match="beyond float16's range"):
        dpn_infer.save(model, tmp_path / "m.bin", embeddings="fp16")
    dpn_infer.save(model, tmp_path / "m.bin", embeddings="bf16")  # bfloat16 has float32's range


def test_dpn_convert_and_info(tmp_path, capsys):
    from dpn_infer.cli import main as infer_main
    from dpn_infer.converters.cli import main as convert_main
    from dpn_infer.nn import save_checkpoint

    model, batch = _small_model()
    ck = tmp_path / "m.pt"
    save_checkpoint(model, ck)
    assert convert_main([str(ck), "-o", str(tmp_path / "a.bin"), "--precision", "int4"]) == 2
    assert "unknown precision 'int4'" in capsys.readouterr().err
    assert convert_main([str(ck), "-o", str(tmp_path / "f.bin")]) == 0
    assert convert_main([str(ck), "-o", str(tmp_path / "b.bin"), "--precision", "bf16",
                         "--embeddings", "fp16"]) == 0
    capsys.readouterr()
    _, t32 = F.read(tmp_path / "f.bin")
    meta, tb = F.read(tmp_path / "b.bin")
    assert meta["opset"] == 3
    assert F.dtype_name(tb["inputs.embeddings.user.weight"]) == "float16"
    assert F.dtype_name(tb["layers.0.g2.weight"]) == "bfloat16"
    assert F.dtype_name(tb["layers.0.g2.bias"]) == "float32"
    # half the bytes of every tensor but the float32 biases
    assert {n: a.nbytes for n, a in tb.items()} == \
        {n: a.nbytes // (1 if n.endswith("bias") else 2) for n, a in t32.items()}
    z32 = load(tmp_path / "f.bin").predict(batch, logits=True)
    zb = load(tmp_path / "b.bin").predict(batch, logits=True)
    assert np.max(np.abs(zb - z32)) < 0.05 * (1 + np.max(np.abs(z32)))  # rounded, not misread
    assert infer_main(["info", str(tmp_path / "b.bin")]) == 0
    out = capsys.readouterr().out
    assert "inputs.embeddings.user.weight" in out and "float16" in out and "bfloat16" in out
    assert "arithmetic: bf16" in out
    emb = sum(a.nbytes for n, a in tb.items() if "embeddings" in n)
    assert f"embeddings {emb / 1024:.2f} KiB" in out, out
    assert "dense weights" in out and "file " in out


# ---------------------------------------------------------------------------------------------
# corrupt and hand-edited files


def _bf16_file(opset=3, dtype=2, nbytes=None, table_dtype=None):
    """A one-embedding + linear model with a bfloat16 weight, built by hand (helpers/files.py)."""
    fields = [{"name": "u", "kind": "sparse", "dim": 4, "vocab": 6, "policy": "hash"}]
    nodes = [{"op": "embedding", "name": "emb", "inputs": [], "output": "e", "attrs": {"field": "u"},
              "params": {"table": "table"}},
             {"op": "linear", "name": "fc", "inputs": ["e"], "output": "y",
              "attrs": {"in": 4, "out": 1}, "params": {"weight": "w", "bias": "b"}}]
    meta = {"producer": "test", "opset": opset, "model_type": "handmade", "schema": {"fields": fields},
            "graph": {"nodes": nodes, "output": "y"}}
    rng = np.random.default_rng(0)
    tensors = {"table": rng.standard_normal((6, 4)).astype(np.float32),
               "w": rng.standard_normal((1, 4)).astype(np.float32), "b": np.zeros(1, np.float32)}
    # build() writes float32 bytes; a bfloat16 entry records half of them (the first 8 bytes of w's 16
    # hold 4 bfloat16 values, any bits are a valid bfloat16).
    entries = {"w": {"dtype": dtype, "nbytes": 8 if nbytes is None else nbytes}}
    if table_dtype is not None:
        entries["table"] = {"dtype": table_dtype, "nbytes": 6 * 4 * 2}
    return HF.build(meta, tensors, entries=entries)


def _load_bytes(tmp_path, buf, name="m.bin"):
    p = tmp_path / name
    p.write_bytes(bytes(buf))
    return load(p)


def test_hand_built_bf16_file_loads(tmp_path):
    m = _load_bytes(tmp_path, _bf16_file(table_dtype=1))
    z = m.predict({"u": np.arange(6, dtype=np.int64)}, logits=True)
    meta, t = F.read(tmp_path / "m.bin")
    w = F.to_float32(t["w"])[0].astype(np.float64)
    want = t["table"].astype(np.float64) @ w
    np.testing.assert_allclose(z, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make, words", [
    (lambda: _bf16_file(nbytes=16), "nbytes 16 does not match its shape and dtype"),
    (lambda: _bf16_file(nbytes=6), "nbytes 6 does not match its shape and dtype"),
    (lambda: _bf16_file(opset=2), "param 'weight' (tensor 'w') is bfloat16, which needs opset 3 (the file says 2)"),
    (lambda: _bf16_file(opset=1, table_dtype=1), "is float16, which needs opset 3 (the file says 1)"),
    (lambda: _bf16_file(dtype=4, nbytes=16), "is int32; this engine reads float32, float16 or bfloat16"),
    (lambda: _bf16_file(dtype=3, nbytes=32), "is int64; this engine reads float32, float16 or bfloat16"),
])
def test_corrupt_reduced_precision_files(tmp_path, make, words):
    with pytest.raises(ModelFormatError, match=__import__("re").escape(words)):
        _load_bytes(tmp_path, make())


def test_newer_opset_is_refused_with_advice(tmp_path):
    # one past the engine's opset (5 since the session operators)
    with pytest.raises(ModelFormatError, match="opset 6, newer than this dpn_infer supports \\(5\\)"):
        _load_bytes(tmp_path, _bf16_file(opset=6))


def test_shared_bf16_weight_is_refused_like_float32(tmp_path):
    """A packed weight belongs to one node (docs/format.md §4.2): a bfloat16 one too, though the
    engine packs its widened copy, not the file's bytes."""
    buf = _bf16_file()
    meta = json.loads(bytes(buf[128:128 + HF.header(buf)["metadata_size"]]))
    meta["graph"]["nodes"].append({"op": "linear", "name": "fc2", "inputs": ["e"], "output": "y2",
                                   "attrs": {"in": 4, "out": 1}, "params": {"weight": "w"}})
    _, t = F.decode(bytes(buf))
    buf = F.encode(meta, {k: np.array(v) for k, v in t.items()})
    with pytest.raises(ModelFormatError, match="its weight tensor is already packed for node 1"):
        _load_bytes(tmp_path, buf)
