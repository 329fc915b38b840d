"""Smoke tests of the C++ engine against plain numpy written from docs/format.md §5.

Models are handcrafted with converters.format; the dylinear reference materializes W(z) per row
(the engine must not, but the test may)."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from dpn_infer.converters import format as F
from dpn_infer.engine import InputError, ModelFormatError, load

RTOL, ATOL = 1e-4, 1e-5

FIELDS = [
    {"name": "u", "kind": "sparse", "dim": 3, "vocab": 7, "policy": "hash"},
    {"name": "o", "kind": "sparse", "dim": 2, "vocab": 5, "policy": "oov_bucket"},
    {"name": "e", "kind": "sparse", "dim": 2, "vocab": 4, "policy": "error"},
    {"name": "gs", "kind": "multi_hot", "dim": 3, "vocab": 6, "policy": "hash", "pooling": "sum", "max_len": 5},
    {"name": "gm", "kind": "multi_hot", "dim": 2, "vocab": 4, "policy": "oov_bucket", "pooling": "mean",
     "max_len": 0},
    {"name": "d", "kind": "dense", "dim": 2},
    {"name": "s", "kind": "dense", "dim": 1},
]
X0 = 3 + 2 + 2 + 3 + 2 + 2 + 1  # width of the concat of every field


def f32(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


ACTS = {"identity": lambda v: v, "relu": lambda v: np.maximum(v, 0), "sigmoid": sig, "tanh": np.tanh}


def tables(rng):
    t = {}
    for f in FIELDS:
        if f["kind"] != "dense":
            rows = f["vocab"] + (1 if f["policy"] == "oov_bucket" else 0)
            t["emb." + f["name"]] = f32(rng, rows, f["dim"])
    return t


def input_nodes():
    nodes = []
    for f in FIELDS:
        op = "dense_input" if f["kind"] == "dense" else "embedding"
        n = {"op": op, "name": "in." + f["name"], "inputs": [], "output": "v_" + f["name"],
             "attrs": {"field": f["name"]}}
        if op == "embedding":
            n["params"] = {"table": "emb." + f["name"]}
        nodes.append(n)
    nodes.append({"op": "concat", "inputs": ["v_" + f["name"] for f in FIELDS], "output": "x0"})
    return nodes


def make_batch(rng, B):
    gs = rng.integers(-3, 9, size=(B, 5))
    gs[rng.random((B, 5)) < 0.3] = -1  # padding anywhere, including the middle
    if B > 1:
        gs[1] = -1  # an empty row
    gm = rng.integers(0, 6, size=(B, 3))  # ids 4, 5 are out of range -> oov row
    gm[:, 1] = -1
    if B > 2:
        gm[2] = -1
    return {
        "u": rng.integers(-20, 20, size=B).astype(np.int64),
        "o": rng.integers(-2, 8, size=B).astype(np.int64),
        "e": rng.integers(0, 4, size=B).astype(np.int64),
        "gs": gs.astype(np.int64),
        "gm": gm.astype(np.int64),
        "d": f32(rng, B, 2, scale=1.0),
        "s": f32(rng, B, scale=1.0),
    }


def ref_field(f, t, x):
    """The value of one field's input node, per docs/format.md §4.1 and §5."""
    if f["kind"] == "dense":
        return x.reshape(len(x), f["dim"]).astype(np.float64)
    V = f["vocab"]

    def row(i):
        if 0 <= i < V:
            return i
        if f["policy"] == "hash":
            return i % V  # Python %: non-negative remainder
        if f["policy"] == "oov_bucket":
            return V
        raise AssertionError("error policy id out of range in a valid batch")

    table = t["emb." + f["name"]].astype(np.float64)
    if f["kind"] == "sparse":
        return np.stack([table[row(int(i))] for i in x])
    out = np.zeros((len(x), f["dim"]))
    for b, ids in enumerate(x):
        valid = [row(int(i)) for i in ids if i != -1]
        if valid:
            out[b] = table[valid].sum(0)
            if f["pooling"] == "mean":
                out[b] /= len(valid)
    return out


def ref_x0(t, batch):
    return np.concatenate([ref_field(f, t, batch[f["name"]]) for f in FIELDS], axis=1)


def save(tmp_path, nodes, tensors, output, fields=FIELDS, name="m.bin", **meta_extra):
    meta = {"producer": "test", "opset": 1, "model_type": "handmade", "schema": {"fields": fields},
            "graph": {"nodes": nodes, "output": output}, "extra": {"note": "ignored"}}
    meta.update(meta_extra)
    p = tmp_path / name
    F.write(p, meta, tensors)
    return p


# --------------------------------------------------------------------------------------------
# Static ops: embedding (every policy, pooling), dense_input, concat, linear, layernorm, cross, act


def static_model(tmp_path, rng):
    t = tables(rng)
    nodes = input_nodes()
    t.update({"l1.w": f32(rng, 6, X0), "l1.b": f32(rng, 6), "ln.w": f32(rng, 6) + 1, "ln.b": f32(rng, 6),
              "cr.w": f32(rng, X0), "cr.b": f32(rng, X0), "l2.w": f32(rng, 5, X0), "l3.w": f32(rng, 1, 11),
              "l3.b": f32(rng, 1)})
    nodes += [
        {"op": "linear", "name": "l1", "inputs": ["x0"], "output": "h1",
         "attrs": {"in": X0, "out": 6, "act": "relu"}, "params": {"weight": "l1.w", "bias": "l1.b"}},
        {"op": "layernorm", "name": "ln", "inputs": ["h1"], "output": "h2",
         "attrs": {"eps": 1e-5, "act": "tanh"}, "params": {"weight": "ln.w", "bias": "ln.b"}},
        {"op": "cross", "name": "cr", "inputs": ["x0", "x0"], "output": "c1",
         "params": {"weight": "cr.w", "bias": "cr.b"}},
        {"op": "linear", "name": "l2", "inputs": ["c1"], "output": "h3", "attrs": {"in": X0, "out": 5},
         "params": {"weight": "l2.w"}},
        {"op": "act", "inputs": ["h3"], "output": "h4", "attrs": {"act": "sigmoid"}},
        {"op": "concat", "inputs": ["h2", "h4"], "output": "h5"},
        {"op": "linear", "name": "head", "inputs": ["h5"], "output": "logit", "attrs": {"in": 11, "out": 1},
         "params": {"weight": "l3.w", "bias": "l3.b"}},
    ]
    return save(tmp_path, nodes, t, "logit"), t


def ref_static(t, batch):
    g = {k: v.astype(np.float64) for k, v in t.items()}
    x0 = ref_x0(t, batch)
    h1 = np.maximum(x0 @ g["l1.w"].T + g["l1.b"], 0)
    mu = h1.mean(1, keepdims=True)
    var = ((h1 - mu) ** 2).mean(1, keepdims=True)
    h2 = np.tanh((h1 - mu) / np.sqrt(var + 1e-5) * g["ln.w"] + g["ln.b"])
    c1 = x0 * (x0 @ g["cr.w"])[:, None] + g["cr.b"] + x0
    h4 = sig(c1 @ g["l2.w"].T)
    return (np.concatenate([h2, h4], 1) @ g["l3.w"].T + g["l3.b"])[:, 0]


@pytest.mark.parametrize("B", [1, 3, 17, 300, 600])
def test_static_ops(tmp_path, B):
    rng = np.random.default_rng(B)
    path, t = static_model(tmp_path, rng)
    m = load(path)
    batch = make_batch(rng, B)
    want = ref_static(t, batch)
    z = m.predict(batch, logits=True)
    assert z.dtype == np.float32 and z.shape == (B,)
    np.testing.assert_allclose(z, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(m.predict(batch), sig(want), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(m.predict(batch, logits=True, threads=3), z)


def test_dense_dim1_as_column_and_noncontiguous(tmp_path):
    rng = np.random.default_rng(5)
    path, t = static_model(tmp_path, rng)
    m = load(path)
    batch = make_batch(rng, 8)
    z = m.predict(batch, logits=True)
    b2 = dict(batch, s=batch["s"].reshape(8, 1), d=np.asfortranarray(batch["d"]),
              gs=np.ascontiguousarray(np.concatenate([batch["gs"], batch["gs"]], 1)[:, :5]),
              u=np.stack([batch["u"], batch["u"]], 1)[:, 0])
    np.testing.assert_array_equal(m.predict(b2, logits=True), z)


# --------------------------------------------------------------------------------------------
# dylinear: every generator, sigma, heads, decomp with and without w0


def ref_dylinear(x, z, a, p):
    p = {k: v.astype(np.float64) for k, v in p.items()}
    m, c, l = a["in"], a["out"], a["hidden"]
    if a["generator"] == "mlp":
        pre = z @ p["g1_weight"].T + p["g1_bias"]
        s = a["sigma"]
        if s == "softmax":
            e = np.exp(pre - pre.max(1, keepdims=True))
            h = e / e.sum(1, keepdims=True)
        else:
            h = {"identity": pre, "relu": np.maximum(pre, 0), "sigmoid": sig(pre)}[s]
    else:
        h = z
    assert h.shape[1] == l
    t = h @ p["g2_weight"].T + p["g2_bias"]
    ys = []
    for b in range(len(x)):
        bz = t[b, -c:]
        if a["form"] == "full":
            H = a.get("heads", 1)
            mh, ch = m // H, c // H
            W = np.zeros((m, c))
            for g in range(H):
                W[g * mh:(g + 1) * mh, g * ch:(g + 1) * ch] = t[b, g * mh * ch:(g + 1) * mh * ch].reshape(mh, ch)
        else:
            r = a["rank"]
            phi = t[b, :r * r].reshape(r, r)
            W = p["P"] @ phi @ p["Q"]
            if a.get("w0"):
                W = W + p["W0"]
        ys.append(W.T @ x[b] + bz)
    return ACTS[a.get("act", "identity")](np.array(ys))


DY_CASES = {
    "mlp_identity": dict(generator="mlp", sigma="identity", hidden=3, form="full"),
    "mlp_sigmoid": dict(generator="mlp", sigma="sigmoid", hidden=4, form="full", act="relu"),
    "mlp_softmax": dict(generator="mlp", sigma="softmax", hidden=5, form="full", act="tanh"),
    "mlp_relu": dict(generator="mlp", sigma="relu", hidden=2, form="full", act="sigmoid"),
    "heads3": dict(generator="mlp", sigma="relu", hidden=3, form="full", heads=3),
    "heads5_ctx_field": dict(generator="mlp", sigma="sigmoid", hidden=2, form="full", heads=5, ctx="v_gs"),
    "linear_gen": dict(generator="linear", form="full", ctx="v_gs"),
    "linear_gen_heads": dict(generator="linear", form="full", ctx="v_u", heads=3, act="relu"),
    "decomp": dict(generator="mlp", sigma="relu", hidden=3, form="decomp", rank=2),
    "decomp_w0": dict(generator="mlp", sigma="softmax", hidden=4, form="decomp", rank=3, w0=True, act="relu"),
    "decomp_linear_w0": dict(generator="linear", form="decomp", rank=4, w0=True, ctx="v_d"),
}
CTX_W = {"x0": X0, "v_gs": 3, "v_u": 3, "v_d": 2}


@pytest.mark.parametrize("case", list(DY_CASES))
@pytest.mark.parametrize("B", [1, 5, 260])
def test_dylinear(tmp_path, case, B):
    rng = np.random.default_rng(zlib.crc32(case.encode()) + B)
    spec = dict(DY_CASES[case])
    ctx = spec.pop("ctx", "x0")
    m, c, n = X0, 30, CTX_W[ctx]
    a = {"in": m, "out": c, "context": n, **spec}
    if a["generator"] == "linear":
        a["hidden"] = n
    l = a["hidden"]
    P = (c + a["rank"] ** 2) if a["form"] == "decomp" else (m // a.get("heads", 1)) * (c // a.get("heads", 1)) * a.get("heads", 1) + c
    if a.get("heads", 1) > 1:
        assert m % a["heads"] == 0 and c % a["heads"] == 0  # m = 15, c = 30
    p = {"g2_weight": f32(rng, P, l), "g2_bias": f32(rng, P)}
    if a["generator"] == "mlp":
        p.update(g1_weight=f32(rng, l, n), g1_bias=f32(rng, l))
    if a["form"] == "decomp":
        p.update(P=f32(rng, m, a["rank"]), Q=f32(rng, a["rank"], c))
        if a.get("w0"):
            p["W0"] = f32(rng, m, c)
    t = tables(rng)
    t.update({"dy." + k: v for k, v in p.items()})
    t["out.w"] = f32(rng, 1, c)
    nodes = input_nodes() + [
        {"op": "dylinear", "name": "layers.0", "inputs": ["x0", ctx], "output": "y", "attrs": a,
         "params": {k: "dy." + k for k in p}},
        {"op": "linear", "inputs": ["y"], "output": "logit", "attrs": {"in": c, "out": 1},
         "params": {"weight": "out.w"}},
    ]
    model = load(save(tmp_path, nodes, t, "logit"))
    batch = make_batch(rng, B)
    x0 = ref_x0(t, batch)
    vals = {"x0": x0, "v_gs": ref_field(FIELDS[3], t, batch["gs"]), "v_u": ref_field(FIELDS[0], t, batch["u"]),
            "v_d": ref_field(FIELDS[5], t, batch["d"])}
    y = ref_dylinear(x0, vals[ctx], a, p)
    want = (y @ t["out.w"].astype(np.float64).T)[:, 0]
    np.testing.assert_allclose(model.predict(batch, logits=True), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(batch, logits=True, threads=2), want, rtol=RTOL, atol=ATOL)


def test_dylinear_wide_chunks(tmp_path):
    """Wide layer: the left panel is built in row chunks; results must not depend on chunking."""
    rng = np.random.default_rng(9)
    m, c, l = 200, 40, 9
    fields = [{"name": "d", "kind": "dense", "dim": m}]
    P = m * c + c
    p = {"g1_weight": f32(rng, l, m, scale=0.1), "g1_bias": f32(rng, l), "g2_weight": f32(rng, P, l, scale=0.1),
         "g2_bias": f32(rng, P, scale=0.1)}
    a = {"in": m, "out": c, "context": m, "generator": "mlp", "hidden": l, "sigma": "sigmoid", "form": "full"}
    t = {k: v for k, v in p.items()}
    t["w"] = f32(rng, 1, c)
    nodes = [{"op": "dense_input", "inputs": [], "output": "x", "attrs": {"field": "d"}},
             {"op": "dylinear", "inputs": ["x", "x"], "output": "y", "attrs": a, "params": {k: k for k in p}},
             {"op": "linear", "inputs": ["y"], "output": "o", "attrs": {"in": c, "out": 1}, "params": {"weight": "w"}}]
    model = load(save(tmp_path, nodes, t, "o", fields=fields))
    x = f32(rng, 300, m, scale=1.0)
    want = (ref_dylinear(x.astype(np.float64), x.astype(np.float64), a, p) @ t["w"].T.astype(np.float64))[:, 0]
    np.testing.assert_allclose(model.predict({"d": x}, logits=True), want, rtol=RTOL, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Inputs: errors name the field; empty batch


def test_input_errors(tmp_path):
    rng = np.random.default_rng(1)
    path, _ = static_model(tmp_path, rng)
    m = load(path)
    good = make_batch(rng, 4)

    def err(field, **changes):
        b = dict(good)
        for k, v in changes.items():
            if v is None:
                del b[k]
            else:
                b[k] = v
        with pytest.raises(InputError) as ei:
            m.predict(b)
        assert str(ei.value).startswith(f"field '{field}': "), str(ei.value)
        return str(ei.value)

    assert "missing" in err("u", u=None)
    msg = err("u", u=good["u"].astype(np.float64))
    assert "int64" in msg and "float64" in msg
    assert "float32" in err("d", d=good["d"].astype(np.float64))
    err("u", u=good["u"].reshape(4, 1))
    err("gs", gs=np.zeros((4, 6), np.int64))  # T > max_len 5
    err("gs", gs=np.zeros(4, np.int64))
    err("d", d=np.zeros((4, 3), np.float32))
    err("o", o=np.zeros(5, np.int64))
    assert "out of range [0, 4)" in err("e", e=np.array([0, 1, 4, 2], np.int64))
    assert "-1 out of range" in err("e", e=np.array([0, -1, 1, 2], np.int64))
    err("d", d=np.array([[0, 1], [np.nan, 0], [0, 0], [0, 0]], np.float32))
    err("s", s=np.array([0, 1, np.inf, 0], np.float32))
    err("bogus", bogus=np.zeros(4, np.int64))
    # gm has no max_len: long rows are fine
    b = dict(good, gm=np.full((4, 50), -1, np.int64))
    assert m.predict(b).shape == (4,)
    with pytest.raises(ValueError):
        m.predict(good, threads=0)


def test_empty_batch(tmp_path):
    rng = np.random.default_rng(2)
    path, _ = static_model(tmp_path, rng)
    m = load(path)
    b = make_batch(rng, 3)
    b = {k: v[:0] for k, v in b.items()}
    out = m.predict(b)
    assert out.dtype == np.float32 and out.shape == (0,)


def test_api_surface(tmp_path):
    rng = np.random.default_rng(3)
    path, _ = static_model(tmp_path, rng)
    m = load(path)  # os.PathLike
    assert [f["name"] for f in m.schema] == [f["name"] for f in FIELDS]
    assert m.metadata["model_type"] == "handmade"
    assert "handmade" in repr(m)
    m2 = load(str(path))
    b = make_batch(rng, 4)
    np.testing.assert_array_equal(m.predict(b), m2.predict(b))


# --------------------------------------------------------------------------------------------
# Bad files


def test_bad_files(tmp_path):
    rng = np.random.default_rng(4)
    path, t = static_model(tmp_path, rng)
    good = bytearray(path.read_bytes())

    def refused(buf, match=None):
        p = tmp_path / "bad.bin"
        p.write_bytes(bytes(buf))
        with pytest.raises(ModelFormatError, match=match):
            load(p)

    with pytest.raises(FileNotFoundError, match="nope.bin"):
        load(tmp_path / "nope.bin")
    refused(b"", "128-byte")
    b = bytearray(good); b[0] = ord("X"); refused(b, "magic")
    b = bytearray(good); struct.pack_into("<I", b, 12, 0x0D0C0B0A); refused(b, "big-endian")
    b = bytearray(good); struct.pack_into("<I", b, 8, 7)
    refused(b, r"format version 7 is newer than this dpn_infer supports \(1\); upgrade dpn_infer")
    b = bytearray(good); b[-1] ^= 0x55; refused(b, "checksum")
    b = bytearray(good); struct.pack_into("<I", b, 72, 1); refused(b, "flags")
    refused(good + b"\0", "file_size")
    b = bytearray(good); struct.pack_into("<Q", b, 32, 10 ** 9); F.refresh_checksum(b); refused(b, "metadata")
    # opset too new, unknown op
    nodes = input_nodes() + [{"op": "fancy", "inputs": ["x0"], "output": "y"}]
    p = save(tmp_path, nodes, tables(rng), "y", name="op.bin", opset=99)
    with pytest.raises(ModelFormatError, match=r"opset 99.*'fancy'.*upgrade"):
        load(p)
    # param shape mismatch
    t2 = dict(t); t2["l1.w"] = f32(rng, 6, X0 + 1)
    meta, _ = F.read(path)
    with pytest.raises(ModelFormatError, match="l1.w"):
        load(save(tmp_path, meta["graph"]["nodes"], t2, "logit", name="shape.bin"))
    # every truncation is refused, never a crash
    for n in range(0, len(good), max(1, len(good) // 400)):
        refused(good[:n])
