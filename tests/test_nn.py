"""dpn_infer.nn: schema, input layer, DyLinear in paper form vs hand-derived math, the Kronecker
identity the engine relies on (docs/format.md §7), DCN as a special case of DPO (paper §2.3)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpn_infer.nn import (DNN, CrossLayer, CrossNet, DenseField, DyLinear, FeatureDPN, InputLayer,
                          LayerSpec, MultiHotField, Schema, SparseField, load_checkpoint,
                          save_checkpoint, to_torch_batch)
from helpers.batches import random_batch as _random_batch


def f64(t):
    return t.detach().double().numpy()


def sigma_np(name, a):
    if name == "identity":
        return a
    if name == "relu":
        return np.maximum(a, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-a))
    e = np.exp(a - a.max())
    return e / e.sum()


def dylinear_loops(dl, x, z):
    """Eqn. 4-5 with explicit loops over the layout of docs/format.md §5 `dylinear`."""
    x, z = f64(x), f64(z)
    m, c = dl.in_features, dl.out_features
    B = x.shape[0]
    y = np.zeros((B, c))
    for b in range(B):
        if dl.generator == "mlp":
            h = sigma_np(dl.sigma, f64(dl.g1.weight) @ z[b] + f64(dl.g1.bias))
        else:
            h = z[b]
        t = f64(dl.g2.weight) @ h + f64(dl.g2.bias)
        P = len(t)
        bias = t[P - c:]
        if dl.form == "full":
            H = dl.heads
            mh, ch = m // H, c // H
            for g in range(H):
                for i in range(mh):
                    for j in range(ch):
                        y[b, g * ch + j] += x[b, g * mh + i] * t[g * mh * ch + i * ch + j]
        else:
            r = dl.rank
            phi = np.array([[t[i * r + j] for j in range(r)] for i in range(r)])
            u = f64(dl.P).T @ x[b]
            v = phi.T @ u
            y[b] = f64(dl.Q).T @ v
            if dl.w0:
                y[b] += f64(dl.W0).T @ x[b]
        y[b] += bias
    return y


DYL_CASES = [
    dict(form="full", heads=1, generator="mlp", sigma="relu"),
    dict(form="full", heads=1, generator="mlp", sigma="identity"),
    dict(form="full", heads=1, generator="mlp", sigma="sigmoid"),
    dict(form="full", heads=1, generator="mlp", sigma="softmax"),
    dict(form="full", heads=2, generator="mlp", sigma="relu"),
    dict(form="full", heads=3, generator="mlp", sigma="softmax"),
    dict(form="full", heads=1, generator="linear"),
    dict(form="full", heads=3, generator="linear"),
    dict(form="decomp", rank=3, generator="mlp", sigma="relu"),
    dict(form="decomp", rank=2, w0=True, generator="mlp", sigma="sigmoid"),
    dict(form="decomp", rank=4, w0=True, generator="linear"),
]


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("kw", DYL_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_dylinear_matches_loops(kw):
    torch.manual_seed(0)
    m, c, n = 6, 12, 5
    dl = DyLinear(m, c, n, hidden=3, **kw)
    _randomize(dl)
    x, z = torch.randn(4, m), torch.randn(4, n)
    y = dl(x, z)
    assert y.shape == (4, c) and y.dtype == torch.float32
    np.testing.assert_allclose(f64(y), dylinear_loops(dl, x, z), rtol=1e-4, atol=1e-4)


def _w_from_vec(dl, tw):
    """The m x c matrix W (block-diagonal for heads) whose entries are the weight part tw."""
    m, c, H = dl.in_features, dl.out_features, dl.heads
    mh, ch = m // H, c // H
    W = np.zeros((m, c))
    for g in range(H):
        W[g * mh:(g + 1) * mh, g * ch:(g + 1) * ch] = tw[g * mh * ch:(g + 1) * mh * ch].reshape(mh, ch)
    return W


@pytest.mark.parametrize("kw", DYL_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_kronecker_identity(kw):
    """y == [x, h1 x, ..., hl x, h] @ [A_0; A_1; ...; A_l; Bd] + b0 (docs/format.md §7)."""
    torch.manual_seed(1)
    m, c, n = 6, 12, 5
    dl = DyLinear(m, c, n, hidden=3, **kw)
    _randomize(dl, seed=3)
    x, z = torch.randn(7, m), torch.randn(7, n)
    xs, zs = f64(x), f64(z)
    if dl.generator == "mlp":
        h = f64(dl.g1(z))
        h = np.stack([sigma_np(dl.sigma, r) for r in h])
    else:
        h = zs
    W2, b2 = f64(dl.g2.weight), f64(dl.g2.bias)
    ws = dl.weight_size
    l = W2.shape[1]
    if dl.form == "full":
        blocks = [_w_from_vec(dl, b2[:ws])] + [_w_from_vec(dl, W2[:ws, k]) for k in range(l)]
        u = xs
    else:
        r = dl.rank
        blocks = [b2[:ws].reshape(r, r)] + [W2[:ws, k].reshape(r, r) for k in range(l)]
        u = xs @ f64(dl.P)
    A = np.concatenate(blocks, axis=0)               # [A_0; A_1; ...; A_l], (l+1)·m rows
    Bd = W2[ws:, :].T                                # l rows: the dynamic bias from h
    left = np.concatenate([u] + [h[:, k:k + 1] * u for k in range(l)], axis=1)
    if dl.form == "full":                            # one GEMM, K = (l+1)·m + l
        Ap = np.concatenate([A, Bd], axis=0)
        assert Ap.shape[0] == (l + 1) * m + l
        y = np.concatenate([left, h], axis=1) @ Ap + b2[ws:]
    else:                                            # the same GEMM with m = c = r on P^T x, then Q
        y = (left @ A) @ f64(dl.Q) + h @ Bd + b2[ws:]
        if dl.w0:
            y += xs @ f64(dl.W0)
    np.testing.assert_allclose(y, f64(dl(x, z)), rtol=1e-4, atol=1e-4)


def test_hyperdense_reproduces_cross_layer():
    """Paper §2.3: W(z) = (w·z)·I and b(z) = b + z make a HyperDense DPO a DCN cross layer."""
    torch.manual_seed(2)
    d = 5
    cross = CrossLayer(d)
    with torch.no_grad():
        cross.bias.normal_()
    dl = DyLinear(d, d, d, generator="linear")
    assert dl.hidden == d and dl.generated_size == d * d + d
    with torch.no_grad():
        W2 = torch.zeros(d * d + d, d)
        b2 = torch.zeros(d * d + d)
        for i in range(d):
            W2[i * d + i, :] = cross.weight          # W(z)[i, i] = w·z
        W2[d * d:, :] = torch.eye(d)                 # b(z) = z + b
        b2[d * d:] = cross.bias
        dl.g2.weight.copy_(W2)
        dl.g2.bias.copy_(b2)
    x0, xl = torch.randn(8, d), torch.randn(8, d)
    torch.testing.assert_close(dl(x0, xl), cross(x0, xl), rtol=1e-5, atol=1e-5)
    expect = f64(x0) * (f64(xl) @ f64(cross.weight))[:, None] + f64(cross.bias) + f64(xl)
    np.testing.assert_allclose(f64(cross(x0, xl)), expect, rtol=1e-5, atol=1e-5)


def test_dylinear_validation():
    with pytest.raises(ValueError, match="heads"):
        DyLinear(6, 9, 4, heads=4)
    with pytest.raises(ValueError, match="rank"):
        DyLinear(6, 9, 4, form="decomp")
    with pytest.raises(ValueError, match="sigma"):
        DyLinear(6, 9, 4, sigma="tanh")
    with pytest.raises(ValueError, match="generator"):
        DyLinear(6, 9, 4, generator="conv")
    with pytest.raises(ValueError, match="form"):
        DyLinear(6, 9, 4, form="lowrank")
    with pytest.raises(ValueError, match="x must be"):
        DyLinear(6, 9, 4)(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(ValueError, match="z must be"):
        DyLinear(6, 9, 4)(torch.randn(2, 6), torch.randn(2, 3))


def test_dylinear_init_is_order_one():
    torch.manual_seed(0)
    dl = DyLinear(64, 32, 40, hidden=4)
    y = dl(torch.randn(256, 64), torch.randn(256, 40))
    assert 0.1 < float(y.detach().std()) < 5


# -- schema ---------------------------------------------------------------------------------------

def test_schema_json_roundtrip_and_keys():
    s = Schema([SparseField("user", 10, 4, policy="oov_bucket"),
                MultiHotField("genres", 5, 3, pooling="sum", max_len=4, policy="error"),
                DenseField("age")])
    js = s.to_json()
    assert js == [
        {"name": "user", "kind": "sparse", "dim": 4, "vocab": 10, "policy": "oov_bucket"},
        {"name": "genres", "kind": "multi_hot", "dim": 3, "vocab": 5, "policy": "error",
         "pooling": "sum", "max_len": 4},
        {"name": "age", "kind": "dense", "dim": 1}]
    assert Schema.from_json(js) == s
    assert Schema.from_json({"fields": js}) == s
    assert s.names == ["user", "genres", "age"] and s["genres"].pooling == "sum"
    assert s.width() == 8


@pytest.mark.parametrize("make, msg", [
    (lambda: Schema([SparseField("a", 3, 2), DenseField("a")]), "duplicate"),
    (lambda: SparseField("a", 3, 0), "dim"),
    (lambda: SparseField("a", 0, 2), "vocab"),
    (lambda: SparseField("a", 3, 2, policy="clip"), "policy"),
    (lambda: MultiHotField("a", 3, 2, pooling="max"), "pooling"),
    (lambda: MultiHotField("a", 3, 2, max_len=-1), "max_len"),
    (lambda: DenseField("", 1), "name"),
    (lambda: Schema([]), "at least one"),
    (lambda: Schema.from_json([{"name": "a", "kind": "seq", "dim": 1}]), "kind"),
    (lambda: Schema.from_json([{"name": "a", "kind": "dense", "dim": 1, "vocab": 3}]), "unexpected"),
])
def test_schema_validation(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


# -- input layer ----------------------------------------------------------------------------------

def _table(layer, name):
    return layer.embedding(name).weight.detach()


def test_sparse_policies():
    s = Schema([SparseField("h", 5, 2, "hash"), SparseField("o", 5, 2, "oov_bucket"),
                SparseField("e", 5, 2, "error")])
    layer = InputLayer(s)
    assert _table(layer, "h").shape == (5, 2) and _table(layer, "o").shape == (6, 2)
    assert _table(layer, "e").shape == (5, 2)
    ids = np.array([0, 4, 5, 12, -1, -7], dtype=np.int64)
    out = layer({"h": ids, "o": ids, "e": np.zeros(6, dtype=np.int64)})
    torch.testing.assert_close(out["h"], _table(layer, "h")[torch.tensor([0, 4, 0, 2, 4, 3])])
    torch.testing.assert_close(out["o"], _table(layer, "o")[torch.tensor([0, 4, 5, 5, 5, 5])])
    with pytest.raises(ValueError, match=r"field 'e': id 5 out of range \[0, 5\)"):
        layer({"h": ids, "o": ids, "e": np.array([1, 5, 2, 0, 0, 0])})
    with pytest.raises(ValueError, match=r"field 'e': id -1 out of range"):
        layer({"h": ids, "o": ids, "e": np.array([1, -1, 2, 0, 0, 0])})


@pytest.mark.parametrize("policy", ["hash", "oov_bucket", "error"])
@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_multi_hot_pooling(policy, pooling):
    s = Schema([MultiHotField("g", 6, 3, pooling=pooling, max_len=4, policy=policy)])
    layer = InputLayer(s)
    E = _table(layer, "g").double().numpy()
    ids = np.array([[1, -1, 2, -1],     # padding in the middle
                    [-1, -1, -1, -1],   # empty row -> zeros
                    [-1, 3, 3, 0],      # padding first, repeated id
                    [5, 4, 0, 2]], dtype=np.int64)
    out = f64(layer({"g": ids})["g"])
    for b in range(4):
        valid = [i for i in ids[b] if i != -1]
        expect = np.zeros(3) if not valid else E[valid].sum(0) / (len(valid) if pooling == "mean" else 1)
        np.testing.assert_allclose(out[b], expect, atol=1e-6)
    # out-of-range ids go through the policy; -1 alone is padding
    odd = np.array([[7, -1], [-2, 1]], dtype=np.int64)
    if policy == "error":
        with pytest.raises(ValueError, match=r"field 'g': id 7 out of range \[0, 6\)"):
            layer({"g": odd})
    else:
        rows = [[1], [4, 1]] if policy == "hash" else [[6], [6, 1]]
        out = f64(layer({"g": odd})["g"])
        for b in range(2):
            expect = E[rows[b]].sum(0) / (len(rows[b]) if pooling == "mean" else 1)
            np.testing.assert_allclose(out[b], expect, atol=1e-6)
    with pytest.raises(ValueError, match="field 'g'.*max_len"):
        layer({"g": np.zeros((2, 5), dtype=np.int64)})


def test_dense_and_errors():
    s = Schema([DenseField("a"), DenseField("v", 3), SparseField("u", 4, 2)])
    layer = InputLayer(s)
    a = np.array([1.5, -2.0], dtype=np.float32)
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    u = np.array([0, 1])
    out = layer({"a": a, "v": v, "u": u, "label": np.array([0, 1])})   # extra keys are ignored
    assert out["a"].shape == (2, 1) and out["v"].shape == (2, 3) and out["u"].shape == (2, 2)
    assert out["a"].dtype == torch.float32
    np.testing.assert_array_equal(out["a"].numpy()[:, 0], a)
    out2 = layer(to_torch_batch({"a": a[:, None], "v": v, "u": u}))
    torch.testing.assert_close(out2["a"], out["a"])
    with pytest.raises(ValueError, match="field 'u': missing"):
        layer({"a": a, "v": v})
    with pytest.raises(ValueError, match="field 'a': NaN"):
        layer({"a": np.array([np.nan, 1], dtype=np.float32), "v": v, "u": u})
    with pytest.raises(ValueError, match="field 'v': expected shape"):
        layer({"a": a, "v": v[:, :2], "u": u})
    with pytest.raises(ValueError, match="field 'u': expected int64 ids, got torch.float64"):
        layer({"a": a, "v": v, "u": np.array([0.0, 1.0])})
    with pytest.raises(ValueError, match="field 'u': 3 rows"):
        layer({"a": a, "v": v, "u": np.array([0, 1, 2])})


def test_field_names_that_are_not_identifiers():
    s = Schema([SparseField("user.id", 4, 2), SparseField("keys", 4, 2), SparseField("field0", 4, 2)])
    layer = InputLayer(s)
    assert len(set(layer.keys.values())) == 3
    out = layer({"user.id": np.array([1]), "keys": np.array([2]), "field0": np.array([3])})
    torch.testing.assert_close(out["keys"], _table(layer, "keys")[[2]])


# -- models ---------------------------------------------------------------------------------------

SCHEMA = Schema([SparseField("user", 20, 4, "hash"),
                 MultiHotField("genres", 7, 3, pooling="mean", max_len=4, policy="oov_bucket"),
                 DenseField("age"), DenseField("vec", 2)])


def random_batch(schema, B=6, seed=0):
    return _random_batch(schema, B, seed, default_T=5, negative_ids=False)


def test_feature_dpn_forward_and_config_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = FeatureDPN(SCHEMA, [LayerSpec(8, dynamic=True, context="x0", hidden=3),
                                LayerSpec(6, dynamic=True, context=["genres", "age"], heads=2),
                                LayerSpec(6, dynamic=True, context="prev", form="decomp", rank=2,
                                          w0=True),
                                4], activation="tanh", norm="layernorm", dropout=0.1)
    model.eval()
    batch = random_batch(SCHEMA)
    logits = model(batch)
    assert logits.shape == (6,) and logits.dtype == torch.float32
    torch.testing.assert_close(model.predict_proba(batch), torch.sigmoid(logits))
    clone = FeatureDPN.from_config(model.config())
    clone.load_state_dict(model.state_dict())
    clone.eval()
    torch.testing.assert_close(clone(batch), logits)
    path = tmp_path / "ck.pt"
    save_checkpoint(model, path)
    torch.testing.assert_close(load_checkpoint(path)(batch), logits)


def test_feature_dpn_layer_semantics():
    """Hand-computed forward of a 2-layer FeatureDPN (context = named fields, then prev)."""
    torch.manual_seed(1)
    model = FeatureDPN(SCHEMA, [LayerSpec(5, dynamic=True, context=["vec", "user"]),
                                LayerSpec(3, dynamic=True, context="prev")], activation="sigmoid")
    batch = random_batch(SCHEMA, seed=4)
    vals = model.inputs(batch)
    x0 = torch.cat([vals[n] for n in SCHEMA.names], 1)
    x1 = torch.sigmoid(torch.tensor(dylinear_loops(model.layers[0], x0,
                                                   torch.cat([vals["vec"], vals["user"]], 1))))
    x2 = torch.sigmoid(torch.tensor(dylinear_loops(model.layers[1], x1.float(), x1.float())))
    expect = f64(model.classifier.weight) @ x2.numpy().T + f64(model.classifier.bias)[:, None]
    np.testing.assert_allclose(f64(model(batch)), expect[0], rtol=1e-4, atol=1e-5)


def test_dnn_and_crossnet():
    torch.manual_seed(0)
    batch = random_batch(SCHEMA)
    dnn = DNN(SCHEMA, [8, 4], norm="batchnorm").eval()
    assert all(isinstance(l, torch.nn.Linear) for l in dnn.layers)
    assert dnn(batch).shape == (6,)
    assert DNN.from_config(dnn.config()).config() == dnn.config()
    for hidden in ((), (5, 3)):
        cn = CrossNet(SCHEMA, num_cross=2, hidden=hidden).eval()
        d = SCHEMA.width()
        assert cn.classifier.in_features == d + (3 if hidden else 0)
        vals = cn.inputs(batch)
        x0 = torch.cat([vals[n] for n in SCHEMA.names], 1)
        xl = cn.cross[1](x0, cn.cross[0](x0, x0))
        if hidden:
            deep = torch.relu(cn.layers[1](torch.relu(cn.layers[0](x0))))
            xl = torch.cat([xl, deep], 1)
        torch.testing.assert_close(cn(batch), cn.classifier(xl).squeeze(-1))
        assert CrossNet.from_config(cn.config()).config() == cn.config()


@pytest.mark.parametrize("make, exc, msg", [
    (lambda: FeatureDPN(SCHEMA, [LayerSpec(4, dynamic=True, context=["nope"])]), ValueError, "nope"),
    (lambda: LayerSpec(4, context="genres"), ValueError, r"\['genres'\]"),
    (lambda: LayerSpec(0), ValueError, "out"),
    (lambda: FeatureDPN(SCHEMA, [4], activation="gelu"), ValueError, "activation"),
    (lambda: FeatureDPN(SCHEMA, [4], norm="groupnorm"), ValueError, "norm"),
    (lambda: FeatureDPN(SCHEMA, ["4"]), TypeError, "LayerSpec"),
    (lambda: FeatureDPN(SCHEMA, [LayerSpec(4, dynamic=True, heads=3)]), ValueError, "heads"),
])
def test_model_validation(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()
