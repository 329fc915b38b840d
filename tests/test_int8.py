"""int8 files (docs/format.md §3.2, opset 4): int8 embedding tables (one float32 or float16 scale per
row) and int8 dense weights (one float32 scale per output), symmetric, no calibration data.

Bounds, derived: the engine reads every int8 value as ``scale · q``, one float32 multiply rounded to
nearest even, exactly what numpy's ``q.astype(float32) * scale`` gives (format.dequantize). Tables
are dequantized as they are gathered and then summed in pool_rows' order, weights once at load; so
an int8 file loaded with ``int8_gemm=False`` (float32 arithmetic; save(precision="int8") records
int8 GEMMs, tested in test_int8_gemm.py) gives **the same bits** as the float32 file of its
dequantized tensors, on every ISA
(asserted exactly below), and the per-kernel gathers are compared bit for bit with the reference.
Against torch run with the same dequantized parameters (helpers/precision.py), the criterion is
test_parity's float32 one (rtol 1e-4 / atol 1e-5, float64 fallback): only summation order differs.
The quantization error itself (|x - scale·q| ≤ scale / 2 per value) is checked on the converter."""
from __future__ import annotations

import json
import os
import re
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpn_infer import ModelFormatError, _testing
from dpn_infer.converters import format as F
from dpn_infer.converters.precision import quantize
from dpn_infer.engine import cpu_info, load

from test_bf16 import SETTINGS, _feature_specs, _prepare, _save_rounded, check_pool_kernel

ISAS = cpu_info()["available"]


# ---------------------------------------------------------------------------------------------
# the converter's quantization


@settings(max_examples=40, **SETTINGS)
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 40)), per_column=st.booleans(),
       seed=st.integers(0, 2 ** 16), zero_row=st.booleans())
def test_quantize_is_symmetric_and_within_half_a_step(shape, per_column, seed, zero_row):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 4)).astype(np.float32)
    if zero_row:
        x[0, :] = 0
    q, s = quantize(x, per_column)
    assert q.dtype == np.int8 and s.dtype == np.float32
    assert s.shape == ((1, shape[1]) if per_column else (shape[0], 1))
    assert q.min() >= -127 and q.max() <= 127
    amax = np.max(np.abs(x), axis=0 if per_column else 1, keepdims=True)
    np.testing.assert_array_equal(s, amax / np.float32(127))
    deq = F.dequantize(q, s).astype(np.float64)
    # round to nearest: within half a step, plus the float32 rounding of x / s and of s · q
    assert np.all(np.abs(deq - x) <= np.broadcast_to(s, x.shape) * (0.5 + 1e-5) + 1e-30)
    if zero_row and not per_column:
        assert s[0, 0] == 0 and not q[0].any()
    # the largest value of every row (column) is exactly ±127 steps
    assert np.all(np.max(np.abs(q.astype(np.int32)), axis=0 if per_column else 1)[amax.ravel() > 0] == 127)


def test_quantize_refuses_non_finite_and_1d():
    with pytest.raises(ValueError, match="non-finite"):
        quantize(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="2 or more"):
        quantize(np.ones(3, np.float32))
    q, s = quantize(np.ones((2, 3, 4), np.float32), per_column=True)
    assert s.shape == (2, 1, 4)


# ---------------------------------------------------------------------------------------------
# the gather kernel: every ISA, every tile edge (8 / 16 floats per vector, 4 vectors per block)

DIMS = list(range(1, 71)) + [127, 128, 129]


@pytest.mark.parametrize("isa", ISAS)
def test_pool_int8_kernel(isa):
    def table(rng, V, dim):
        q = rng.integers(-128, 128, (V, dim)).astype(np.int8)  # -128 too: the kernel takes any byte
        scales = (rng.random(V) * 0.1).astype(np.float32)
        scales[3] = 0.0
        return {"table": q, "scales": scales}, F.dequantize(q, scales[:, None])

    check_pool_kernel(isa, "pool_int8", table, 5, DIMS)


def test_every_int8_value_dequantizes_exactly():
    """All 256 bytes times awkward scales (subnormal, huge, 0) through the gather, per ISA."""
    q = np.tile(np.arange(-128, 128, dtype=np.int16).astype(np.int8), (5, 1))
    scales = np.array([1.0, 1e-40, 3.3e35, 0.0, 0.007874016], np.float32)
    rows = np.arange(5, dtype=np.int64)[:, None]
    want = F.dequantize(q, scales[:, None]) + np.float32(0)  # a sum from 0: -0 reads as +0
    for isa in ISAS:
        out = _testing.kernel("pool_int8", isa, table=q, scales=scales, rows=rows)
        np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32), err_msg=isa)


# ---------------------------------------------------------------------------------------------
# whole models: bit for bit against the dequantized float32 file, and against torch


def dequantized_file(src, dst):
    """Write ``dst``: ``src`` with every int8 tensor replaced by its float32 values (scales dropped)."""
    meta, t = F.read(src)
    out = {n: (F.dequantize(a, t[n + F.SCALE_SUFFIX]) if F.dtype_name(a) == "int8" else np.array(a))
           for n, a in t.items() if not (n.endswith(F.SCALE_SUFFIX) and n[:-len(F.SCALE_SUFFIX)] in t)}
    F.write(dst, dict(meta), out)


def _check(model, batch, precision, embeddings, truth=None, what=""):
    import torch

    from test_parity import _truth, judge

    with tempfile.TemporaryDirectory(prefix="dpn_int8_") as d:
        path, deq = os.path.join(d, "model.bin"), os.path.join(d, "deq.bin")
        ref_model = _save_rounded(model, path, precision, embeddings)
        dequantized_file(path, deq)
        m = load(path, int8_gemm=False)  # float32 arithmetic (tests/test_int8_gemm.py: the int8 GEMMs)
        z = m.predict(batch, logits=True)
        p = m.predict(batch)
        z3 = m.predict(batch, logits=True, threads=3)
        zd = load(deq).predict(batch, logits=True)
        meta, tensors = F.read(path)
    _check_dtypes(meta, tensors, precision, embeddings)
    np.testing.assert_array_equal(z, zd, err_msg=f"int8 file vs its dequantized float32 file: {what}")
    with torch.no_grad():
        ref = ref_model(batch).numpy()
    np.testing.assert_allclose(z3, z, rtol=1e-5, atol=1e-6, err_msg=f"threads=3 {what}")
    judge(z, p, ref, lambda: (truth or _truth)(ref_model, batch), batch, what)


def _check_dtypes(meta, tensors, precision, embeddings):
    from dpn_infer.converters.precision import COLUMN_ROLES

    tables = {t for n in meta["graph"]["nodes"] if n["op"] in ("embedding", "seq_embedding")
              for r, t in n["params"].items() if r == "table"}
    roles = {t: (n["op"], r) for n in meta["graph"]["nodes"] for r, t in n["params"].items()}
    int8 = False
    for name, a in tensors.items():
        if name not in roles:  # scales
            owner = tensors[name[:-len(F.SCALE_SUFFIX)]]
            assert name.endswith(F.SCALE_SUFFIX) and F.dtype_name(owner) == "int8", name
            continue
        if name in tables:
            want = embeddings
        elif a.ndim >= 2 and not roles[name][1].endswith("bias"):
            want = precision
        else:
            want = "fp32"
        assert F.dtype_name(a) == {"fp32": "float32", "int8": "int8"}[want], (name, F.dtype_name(a), want)
        if want == "int8":
            int8 = True
            s = tensors[name + F.SCALE_SUFFIX]
            per_column = roles[name] in COLUMN_ROLES and name not in tables
            assert s.shape == (a.shape[:-2] + (1, a.shape[-1]) if per_column else a.shape[:-1] + (1,))
    base = F.required_opset(meta)   # the graph's own opset (5 for the opset-5 operators)
    assert meta["opset"] == (max(base, 4) if int8 else base), (meta["opset"], base)


PRECISIONS = st.sampled_from([("int8", "int8"), ("int8", "fp32"), ("fp32", "int8")])


@settings(max_examples=60, **SETTINGS)
@given(data=st.data(), kind=st.sampled_from(["feature", "field", "seq"]), prec=PRECISIONS)
def test_parity_models(data, kind, prec):
    """Feature, field and sequence models (no BatchNorm: the exporter folds it into the weights, so
    its torch model is not the reference) with int8 tables and/or weights."""
    pytest.importorskip("torch")
    from helpers import field_models as FM
    from helpers import seqmodels as SM
    from test_seq_parity import _prepare as prepare_seq, _truth

    if kind == "seq":
        spec = data.draw(SM.seq_model_specs().filter(lambda s: s.get("norm") != "batchnorm"))
        model, batch = prepare_seq(spec)
    else:
        spec = data.draw(_feature_specs() if kind == "feature" else
                         FM.field_dpn_specs().filter(lambda s: s["feature_norm"] != "batchnorm"))
        model, batch = _prepare(spec)
    _check(model, batch, *prec, truth=_truth if kind == "seq" else None, what=f"{prec} {kind} spec {spec!r}")


def test_parity_every_isa():
    """Fixed int8 models (feature with a multi-hot field, field, sequence; int8 tables and weights)
    under every ISA, in child processes, each against torch with the dequantized parameters."""
    pytest.importorskip("torch")
    from test_bf16 import check_every_isa

    check_every_isa(lambda s: s["B"] > 64 and len(s["layers"]) >= 2 and s["norm"] is None
                    and any(f["kind"] == "multi_hot" for f in s["fields"]), lambda k: ("int8", "int8"))


# ---------------------------------------------------------------------------------------------
# converter and CLI


def _small_model():
    from test_bf16 import _small_model as small

    return small(form="decomp", rank=3, w0=True)  # decomp: P, Q, W0 get per-column scales


def test_dpn_convert_and_info(tmp_path, capsys):
    from dpn_infer.cli import main as infer_main
    from dpn_infer.converters.cli import main as convert_main
    from dpn_infer.nn import save_checkpoint

    model, batch = _small_model()
    ck = tmp_path / "m.pt"
    save_checkpoint(model, ck)
    assert convert_main([str(ck), "-o", str(tmp_path / "f.bin")]) == 0
    assert convert_main([str(ck), "-o", str(tmp_path / "q.bin"), "--precision", "int8",
                         "--embeddings", "int8"]) == 0
    capsys.readouterr()
    _, t32 = F.read(tmp_path / "f.bin")
    meta, tq = F.read(tmp_path / "q.bin")
    assert meta["opset"] == 4
    user = "inputs.embeddings.user.weight"
    assert F.dtype_name(tq[user]) == "int8" and tq[user + ".scale"].shape == (500, 1)
    assert F.dtype_name(tq["layers.0.g2.weight"]) == "int8"
    assert tq["layers.0.Q.scale"].shape == (1, 16)  # [rank, out]: one scale per output column
    assert F.dtype_name(tq["layers.0.g2.bias"]) == "float32"
    z32 = load(tmp_path / "f.bin").predict(batch, logits=True)
    zq = load(tmp_path / "q.bin").predict(batch, logits=True)
    assert 0 < np.max(np.abs(zq - z32)) < 0.05 * (1 + np.max(np.abs(z32)))  # quantized, not misread
    assert infer_main(["info", str(tmp_path / "q.bin")]) == 0
    out = capsys.readouterr().out
    assert re.search(re.escape(user) + r"\s+int8\s+\[500, 8\]", out), out
    emb = sum(a.nbytes for n, a in tq.items() if "embeddings" in n)  # int8 rows + their scales
    assert emb == 500 * 8 + 500 * 2 + 50 * 8 + 50 * 2   # float16 table scales (§3.2)
    assert f"embeddings {emb / 1024:.2f} KiB ({emb / (4 * 8 * 550):.2f}x float32)" in out, out


def test_save_int8_opset_and_name_clash(tmp_path):
    import dpn_infer

    model, _ = _small_model()
    dpn_infer.save(model, tmp_path / "e.bin", embeddings="int8")
    meta, t = F.read(tmp_path / "e.bin")
    assert meta["opset"] == 4 and F.dtype_name(t["layers.0.g2.weight"]) == "float32"
    dpn_infer.save(model, tmp_path / "b.bin", precision="bf16", embeddings="fp16")
    assert F.read(tmp_path / "b.bin")[0]["opset"] == 3  # no int8 tensor: still opset 3
    from dpn_infer.converters.precision import apply
    from dpn_infer.converters.torch_export import export

    meta, tensors = export(model)
    tensors = dict(tensors, **{"inputs.embeddings.user.weight.scale": np.ones(1, np.float32)})
    with pytest.raises(ValueError, match="already has a tensor 'inputs.embeddings.user.weight.scale'"):
        apply(meta, tensors, "fp32", "int8")


# ---------------------------------------------------------------------------------------------
# corrupt and hand-edited files


def _int8_file(opset=4, scale=None, table_scale=None, bias_int8=False, table_dtype=5):
    """One int8 embedding table + an int8 linear weight [3, 5] + a float32 one, through the format writer; the arguments
    replace a scale tensor (or make the bias int8) to build an invalid file."""
    fields = [{"name": "u", "kind": "sparse", "dim": 5, "vocab": 6, "policy": "hash"}]
    nodes = [{"op": "embedding", "name": "emb", "inputs": [], "output": "e", "attrs": {"field": "u"},
              "params": {"table": "table"}},
             {"op": "linear", "name": "fc", "inputs": ["e"], "output": "h",
              "attrs": {"in": 5, "out": 3}, "params": {"weight": "w", "bias": "b"}},
             {"op": "linear", "name": "out", "inputs": ["h"], "output": "y",
              "attrs": {"in": 3, "out": 1}, "params": {"weight": "w2"}}]
    meta = {"producer": "test", "opset": opset, "model_type": "handmade", "schema": {"fields": fields},
            "graph": {"nodes": nodes, "output": "y"}}
    rng = np.random.default_rng(0)
    t = {}
    t["table"], t["table.scale"] = quantize(rng.standard_normal((6, 5)).astype(np.float32))
    if table_dtype != 5:
        t["table"] = rng.standard_normal((6, 5)).astype(np.float32)
    t["w"], t["w.scale"] = quantize(rng.standard_normal((3, 5)).astype(np.float32))
    t["b"] = np.zeros(3, np.float32)
    t["w2"] = rng.standard_normal((1, 3)).astype(np.float32)
    if bias_int8:
        t["b"], t["b.scale"] = np.zeros((3, 1), np.int8), np.ones((3, 1), np.float32)
        nodes[1]["params"]["bias"] = "b"
    if scale is not None:
        t["w.scale"] = scale
        if scale is False:
            del t["w.scale"]
    if table_scale is not None:
        t["table.scale"] = table_scale
    return meta, t


def _load_file(tmp_path, meta, t):
    p = tmp_path / "m.bin"
    F.write(p, meta, t)
    return load(p)


def test_hand_built_int8_file_loads(tmp_path):
    meta, t = _int8_file()
    m = _load_file(tmp_path, meta, t)
    z = m.predict({"u": np.arange(6, dtype=np.int64)}, logits=True)
    want = F.dequantize(t["table"], t["table.scale"]).astype(np.float64) @ \
        F.dequantize(t["w"], t["w.scale"]).astype(np.float64).T @ t["w2"].astype(np.float64).T
    np.testing.assert_allclose(z, want[:, 0], rtol=1e-5, atol=1e-6)
    # per-column scales for a [out, in] weight are allowed too (any dense weight, §3.2)
    meta, t = _int8_file(scale=(np.arange(1, 6, dtype=np.float32) / 4)[None, :])
    z = _load_file(tmp_path, meta, t).predict({"u": np.arange(6, dtype=np.int64)}, logits=True)
    want = F.dequantize(t["table"], t["table.scale"]).astype(np.float64) @ \
        (t["w"].astype(np.float64) * np.arange(1, 6) / 4).T @ t["w2"].astype(np.float64).T
    np.testing.assert_allclose(z, want[:, 0], rtol=1e-5, atol=1e-6)
    # a zero scale means a zero row, whatever its bytes
    meta, t = _int8_file()
    t["table.scale"] = t["table.scale"].copy()
    t["table.scale"][2] = 0
    z = _load_file(tmp_path, meta, t).predict({"u": np.array([2], np.int64)}, logits=True)
    np.testing.assert_array_equal(z, 0)


@pytest.mark.parametrize("kw, words", [
    ({"scale": np.ones((4, 1), np.float32)},
     "int8 tensor 'w' [3, 5]: its scales 'w.scale' have shape [4, 1], expected [3, 1] (per row) or [1, 5]"),
    ({"scale": np.ones(3, np.float32)}, "its scales 'w.scale' have shape [3]"),
    ({"scale": False}, "int8 tensor 'w' has no scales (tensor 'w.scale')"),
    ({"scale": np.ones((3, 1), np.float16)}, "its scales 'w.scale' are float16, not float32"),
    ({"scale": np.array([[1.0], [np.inf], [1.0]], np.float32)}, "int8 tensor 'w': scale 1 is inf"),
    ({"scale": np.array([[np.nan], [1.0], [1.0]], np.float32)}, "int8 tensor 'w': scale 0 is nan"),
    ({"table_scale": np.full((6, 1), -1.0, np.float32)}, "int8 tensor 'table': scale 0 is -1"),
    ({"table_scale": np.ones((1, 5), np.float32)},
     "param 'table' (tensor 'table') is an int8 table with per-column scales"),
    ({"bias_int8": True}, "param 'bias' (tensor 'b') is int8; a bias must be"),
    ({"opset": 3}, "param 'table' (tensor 'table') is int8, which needs opset 4 (the file says 3)"),
    ({"opset": 3, "table_dtype": 0}, "param 'weight' (tensor 'w') is int8, which needs opset 4 (the file says 3)"),
])
def test_corrupt_int8_files(tmp_path, kw, words):
    with pytest.raises(ModelFormatError, match=re.escape(words)):
        _load_file(tmp_path, *_int8_file(**kw))


def test_unused_int8_tensor_needs_opset_4_too(tmp_path):
    """§3.2 refuses an int8 tensor in a file of opset < 4 whether or not a node names it."""
    meta, t = _int8_file(opset=3, table_dtype=0)
    t["w"] = np.ones((3, 5), np.float32)
    del t["w.scale"]
    _load_file(tmp_path, meta, t)  # no int8 tensor: an opset-3 file loads
    t["spare"], t["spare.scale"] = quantize(np.ones((2, 2), np.float32))
    with pytest.raises(ModelFormatError, match=re.escape("tensor 'spare' is int8, which needs opset 4")):
        _load_file(tmp_path, meta, t)


def test_dequantized_copies_count_against_the_load_bound(tmp_path):
    """int8 weights are dequantized to float32 at load (4 bytes per file byte): that copy is charged to
    max_alloc_bytes like the packed weights, so a bound below copy + packing refuses the file."""
    meta, t = _int8_file()
    p, p32 = tmp_path / "m.bin", tmp_path / "f32.bin"
    F.write(p, meta, t)
    dequantized_file(p, p32)  # the same graph in float32: the same packing, no copy

    def loads(path, limit):
        try:
            load(path, max_alloc_bytes=limit)
            return True
        except ModelFormatError as e:
            assert "beyond its file to load" in str(e)
            return False

    lo, hi = 0, 1 << 20  # the float32 file's packing P: loads at P, not at P - 1
    assert loads(p32, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if loads(p32, mid) else (mid, hi)
    copy = 3 * 5 * 4  # w [3, 5] as float32; the int8 table is gathered in place, never copied
    assert not loads(p, hi) and not loads(p, hi + copy - 1)
    assert loads(p, hi + copy)


def _entry_pos(buf, name):
    """Byte offset of ``name``'s dtype field in the tensor table of an encoded file."""
    h = dict(zip(("toff", "count"), struct.unpack_from("<QQ", buf, 40)))
    p = h["toff"]
    for _ in range(h["count"]):
        (n,) = struct.unpack_from("<I", buf, p)
        this = bytes(buf[p + 4:p + 4 + n]).decode()
        p += 4 + n
        if this == name:
            return p
        _, nd = struct.unpack_from("<II", buf, p)
        p += 8 + 8 * nd + 16
    raise KeyError(name)


def test_truncated_and_mistyped_int8_entries(tmp_path):
    meta, t = _int8_file()
    good = F.encode(meta, t)
    # the weight's nbytes one short of its shape (truncated data)
    buf = bytearray(good)
    p = _entry_pos(buf, "w")
    nd = struct.unpack_from("<I", buf, p + 4)[0]
    struct.pack_into("<Q", buf, p + 8 + 8 * nd + 8, 14)
    F.refresh_checksum(buf)
    (tmp_path / "t.bin").write_bytes(bytes(buf))
    with pytest.raises(ModelFormatError, match=re.escape("tensor 'w': nbytes 14 does not match its shape")):
        load(tmp_path / "t.bin")
    # the file cut short
    (tmp_path / "c.bin").write_bytes(bytes(good[:-64]))
    with pytest.raises(ModelFormatError, match="truncated"):
        load(tmp_path / "c.bin")
    # a 1-d int8 tensor (its bias entry relabelled int8 with 3 bytes)
    buf = bytearray(good)
    p = _entry_pos(buf, "b")
    struct.pack_into("<I", buf, p, 5)
    struct.pack_into("<Q", buf, p + 8 + 8 + 8, 3)
    F.refresh_checksum(buf)
    (tmp_path / "d.bin").write_bytes(bytes(buf))
    with pytest.raises(ModelFormatError, match=re.escape("int8 tensor 'b' has 1 dimension(s); int8 needs 2")):
        load(tmp_path / "d.bin")


def test_older_engine_opset_and_future_opset(tmp_path):
    meta, t = _int8_file(opset=6)      # one past the engine's opset (5 since the session operators)
    with pytest.raises(ModelFormatError, match="opset 6, newer than this dpn_infer supports \\(5\\)"):
        _load_file(tmp_path, meta, t)
    meta, t = _int8_file()
    m = _load_file(tmp_path, meta, t)
    assert json.loads(json.dumps(m.metadata))["opset"] == 4


# ---------------------------------------------------------------------------------------------
# float16 scales of int8 embedding tables (§3.2): 2 bytes a row instead of 4


@settings(max_examples=40, **SETTINGS)
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 40)), seed=st.integers(0, 2 ** 16),
       exponent=st.integers(-2, 5), zero_row=st.booleans())
def test_quantize_table_float16_scales_within_half_a_step(shape, seed, exponent, zero_row):
    """Scales rounded up to float16 (at most 2^-10 relative above max|x| / 127), q against them:
    still |q| ≤ 127 and within half a (float16) step of x."""
    from dpn_infer.converters.precision import quantize_table

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10.0 ** exponent).astype(np.float32)
    # every row's max|x| at least 10^exponent ≥ 0.01 and below 10^6: its scale a normal float16
    x[:, 0] = np.where(np.abs(x[:, 0]) < 10.0 ** exponent, 10.0 ** exponent, x[:, 0])
    if zero_row:
        x[0, :] = 0
    q, s = quantize_table(x)
    assert q.dtype == np.int8 and s.dtype == np.float16 and s.shape == (shape[0], 1)
    assert q.min() >= -127 and q.max() <= 127
    wide = s.astype(np.float32)
    exact = np.max(np.abs(x), axis=1, keepdims=True) / np.float32(127)
    assert np.all(wide >= exact) and np.all(wide <= exact * (1 + 2.0 ** -10))
    deq = F.dequantize(q, s).astype(np.float64)
    assert np.all(np.abs(deq - x) <= np.broadcast_to(wide, x.shape) * (0.5 + 1e-5))
    if zero_row:
        assert s[0, 0] == 0 and not q[0].any()


def test_quantize_table_keeps_float32_scales_out_of_float16_range():
    """A row whose scale would be a float16 subnormal (max|x| < 127 · 2^-14) or overflow keeps the
    whole table's scales float32: the same as quantize()."""
    from dpn_infer.converters.precision import quantize_table

    x = np.ones((3, 4), np.float32)
    for tiny_or_huge in (1e-4, 1e7):
        y = x.copy()
        y[1] *= np.float32(tiny_or_huge)
        q, s = quantize_table(y)
        q32, s32 = quantize(y)
        assert s.dtype == np.float32
        np.testing.assert_array_equal(s, s32)
        np.testing.assert_array_equal(q, q32)
    assert quantize_table(x)[1].dtype == np.float16


def _half_scale_file(table_scale=None, weight_scale=None):
    """_int8_file with the table's scales float16 (as the writer stores them), or as given."""
    meta, t = _int8_file()
    t["table.scale"] = t["table.scale"].astype(np.float16) if table_scale is None else table_scale
    if weight_scale is not None:
        t["w.scale"] = weight_scale
    return meta, t


def test_float16_table_scales_load_and_dequantize(tmp_path):
    meta, t = _half_scale_file()
    z = _load_file(tmp_path, meta, t).predict({"u": np.arange(6, dtype=np.int64)}, logits=True)
    want = F.dequantize(t["table"], t["table.scale"]).astype(np.float64) @ \
        F.dequantize(t["w"], t["w.scale"]).astype(np.float64).T @ t["w2"].astype(np.float64).T
    np.testing.assert_allclose(z, want[:, 0], rtol=1e-5, atol=1e-6)
    # the same bits as the float32 file of the widened scales (widening float16 is exact)
    t32 = dict(t, **{"table.scale": t["table.scale"].astype(np.float32)})
    z32 = _load_file(tmp_path, meta, t32).predict({"u": np.arange(6, dtype=np.int64)}, logits=True)
    np.testing.assert_array_equal(z, z32)


@pytest.mark.parametrize("kw, words", [
    ({"table_scale": np.array([[1], [-1], [1], [1], [1], [1]], np.float16)},
     "int8 tensor 'table': scale 1 is -1"),
    ({"table_scale": np.array([[1], [1], [np.inf], [1], [1], [1]], np.float16)},
     "int8 tensor 'table': scale 2 is inf"),
    ({"table_scale": np.array([[np.nan], [1], [1], [1], [1], [1]], np.float16)},
     "int8 tensor 'table': scale 0 is nan"),
    ({"table_scale": np.ones((6, 2), np.float16)},
     "int8 tensor 'table' [6, 5]: its scales 'table.scale' have shape [6, 2]"),
    ({"table_scale": F.to_bfloat16(np.ones((6, 1), np.float32))},
     "its scales 'table.scale' are bfloat16, not float32 or float16"),
    ({"table_scale": np.ones((6, 1), np.int32)}, "its scales 'table.scale' are int32, not float32 or float16"),
    ({"table_scale": np.ones((1, 5), np.float16)},
     "param 'table' (tensor 'table') is an int8 table with per-column scales"),
    ({"weight_scale": np.ones((3, 1), np.float16)},
     "param 'weight': int8 tensor 'w': its scales 'w.scale' are float16, not float32 (float16 scales are "
     "for embedding tables only)"),
])
def test_broken_float16_scales(tmp_path, kw, words):
    with pytest.raises(ModelFormatError, match=re.escape(words)):
        _load_file(tmp_path, *_half_scale_file(**kw))


def test_save_int8_tables_with_float16_scales(tmp_path):
    """save(embeddings="int8") stores table scales as float16, weight scales as float32, in opset 4;
    the file scores as torch with the same dequantized parameters (helpers/precision.py), in float32
    arithmetic (int8_gemm=False: what this test pins is the tables' storage, not the int8 GEMMs)."""
    import copy

    import torch

    import dpn_infer
    from helpers.precision import round_params_

    model, batch = _small_model()
    dpn_infer.save(model, tmp_path / "q.bin", precision="int8", embeddings="int8")
    meta, t = F.read(tmp_path / "q.bin")
    assert meta["opset"] == 4
    tables = [n for n in t if n.startswith("inputs.embeddings.") and not n.endswith(".scale")]
    assert tables and all(t[n + ".scale"].dtype == np.float16 for n in tables)
    assert all(a.dtype == np.float32 for n, a in t.items() if n.endswith(".scale") and
               not n.startswith("inputs.embeddings."))
    with torch.no_grad():
        ref = round_params_(copy.deepcopy(model), "int8", "int8")(batch).numpy()
    np.testing.assert_allclose(load(tmp_path / "q.bin", int8_gemm=False).predict(batch, logits=True),
                               ref, rtol=1e-4, atol=1e-5)
