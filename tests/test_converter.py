"""converters.torch_export / dpn-convert: the exported graph, evaluated by a small numpy interpreter
written from docs/format.md alone, must give the PyTorch module's logits (eval mode)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

from dpn_infer.converters import format as fmt
from dpn_infer.converters import torch_export
from dpn_infer.converters.cli import main as convert_main
from dpn_infer.nn import (DNN, CrossNet, DenseField, FeatureDPN, LayerSpec, MultiHotField, Schema,
                          SparseField, save_checkpoint)
from helpers.batches import random_batch as _random_batch


# -- a numpy interpreter of opset 1 (docs/format.md §5) ----------------------------------------------

def _act(name, x):
    return {"identity": lambda v: v, "relu": lambda v: np.maximum(v, 0),
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[name](x)


def _rows(f, ids):
    v = f["vocab"]
    if f["policy"] == "hash":
        return np.mod(ids, v)                      # numpy mod is the non-negative remainder
    bad = (ids < 0) | (ids >= v)
    if f["policy"] == "oov_bucket":
        return np.where(bad, v, ids)
    if bad.any():
        raise ValueError(f"field '{f['name']}': id out of range")
    return ids


def _sigma(name, a):
    if name == "softmax":
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return _act(name, a)


def run_graph(meta, tensors, batch):
    assert meta["opset"] == 1
    fields = {f["name"]: f for f in meta["schema"]["fields"]}
    T = {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}
    env = {}
    for node in meta["graph"]["nodes"]:
        op, a = node["op"], node.get("attrs", {})
        p = {role: T[name] for role, name in node.get("params", {}).items()}
        xs = [env[i] for i in node["inputs"]]      # KeyError = use before definition
        assert node["output"] not in env, "value defined twice"
        if op == "embedding":
            f = fields[a["field"]]
            ids = np.asarray(batch[f["name"]], dtype=np.int64)
            table = p["table"]
            assert table.shape == (f["vocab"] + (f["policy"] == "oov_bucket"), f["dim"])
            if f["kind"] == "sparse":
                y = table[_rows(f, ids)]
            else:
                y = np.zeros((ids.shape[0], f["dim"]))
                for b in range(ids.shape[0]):
                    valid = ids[b][ids[b] != -1]
                    if len(valid):
                        vecs = table[_rows(f, valid)]
                        y[b] = vecs.sum(0) if f["pooling"] == "sum" else vecs.mean(0)
        elif op == "dense_input":
            f = fields[a["field"]]
            y = np.asarray(batch[f["name"]], dtype=np.float64).reshape(-1, f["dim"])
        elif op == "concat":
            y = np.concatenate(xs, axis=1)
        elif op == "linear":
            x = xs[0]
            assert p["weight"].shape == (a["out"], a["in"]) and x.shape[1] == a["in"]
            y = x @ p["weight"].T + (p["bias"] if "bias" in p else 0)
            y = _act(a["act"], y)
        elif op == "dylinear":
            x, z = xs
            m, c, n, l = a["in"], a["out"], a["context"], a["hidden"]
            assert x.shape[1] == m and z.shape[1] == n
            if a["generator"] == "mlp":
                assert p["g1_weight"].shape == (l, n)
                h = _sigma(a["sigma"], z @ p["g1_weight"].T + p["g1_bias"])
            else:
                assert l == n and "g1_weight" not in p
                h = z
            t = h @ p["g2_weight"].T + p["g2_bias"]
            P = t.shape[1]
            bias = t[:, P - c:]
            B = x.shape[0]
            y = np.zeros((B, c))
            if a["form"] == "full":
                H = a["heads"]
                mh, ch = m // H, c // H
                assert P == H * mh * ch + c
                for b in range(B):
                    W = np.zeros((m, c))
                    for g in range(H):
                        for i in range(mh):
                            for j in range(ch):
                                W[g * mh + i, g * ch + j] = t[b, g * mh * ch + i * ch + j]
                    y[b] = W.T @ x[b]
            else:
                r = a["rank"]
                assert P == r * r + c and p["P"].shape == (m, r) and p["Q"].shape == (r, c)
                for b in range(B):
                    phi = t[b, :r * r].reshape(r, r)
                    y[b] = p["Q"].T @ phi.T @ p["P"].T @ x[b]
                    if a["w0"]:
                        y[b] += p["W0"].T @ x[b]
                assert ("W0" in p) == a["w0"]
            y = _act(a["act"], y + bias)
        elif op == "layernorm":
            x = xs[0]
            mu = x.mean(1, keepdims=True)
            var = ((x - mu) ** 2).mean(1, keepdims=True)
            y = _act(a["act"], (x - mu) / np.sqrt(var + a["eps"]) * p["weight"] + p["bias"])
        elif op == "cross":
            x0, xl = xs
            y = x0 * (xl @ p["weight"])[:, None] + p["bias"] + xl
        elif op == "act":
            y = _act(a["act"], xs[0])
        else:
            raise AssertionError(f"unknown op {op}")
        env[node["output"]] = y
    out = env[meta["graph"]["output"]]
    assert out.shape[1] == 1
    return out[:, 0]


# -- fixtures -------------------------------------------------------------------------------------

SCHEMA = Schema([SparseField("user", 30, 4, "hash"),
                 SparseField("item", 12, 3, "oov_bucket"),
                 MultiHotField("genres", 7, 3, pooling="mean", max_len=5, policy="hash"),
                 MultiHotField("tags", 9, 2, pooling="sum", max_len=0, policy="error"),
                 DenseField("age"), DenseField("vec", 3)])


def random_batch(schema=SCHEMA, B=9, seed=0):
    return _random_batch(schema, B, seed, default_T=4, negative_ids=True)


def randomize(model, seed=0):
    """Random weights and BatchNorm running statistics (so folding is really exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g))
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 2 + 0.2)
    return model


def check_parity(model, seed=0, tmp_path=None):
    was_training = model.training
    meta, tensors = torch_export.export(model)
    assert model.training == was_training              # export leaves the mode alone
    if tmp_path is not None:                           # and through the container
        torch_export.save(model, tmp_path / "model.bin")
        meta, tensors = fmt.read(tmp_path / "model.bin")
    for t in tensors.values():
        assert t.dtype == np.float32 and t.flags["C_CONTIGUOUS"]
    batch = random_batch(seed=seed)
    got = run_graph(meta, tensors, batch)
    model.train(False)
    try:
        with torch.no_grad():
            want = model(batch).double().numpy()
    finally:
        model.train(was_training)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return meta, tensors


FDPN_CASES = {
    "x0-full": [LayerSpec(8, dynamic=True, context="x0", hidden=3, sigma="relu"), 6],
    "fields-heads": [LayerSpec(8, dynamic=True, context=["genres", "age"], heads=2, sigma="softmax"),
                     LayerSpec(6, dynamic=True, context=["genres", "age"], heads=2)],
    "single-field-ctx": [LayerSpec(6, dynamic=True, context=["item"], sigma="sigmoid")],
    "prev-decomp": [6, LayerSpec(6, dynamic=True, context="prev", form="decomp", rank=2, w0=True),
                    LayerSpec(4, dynamic=True, context="prev", form="decomp", rank=3,
                              sigma="identity")],
    "hyperdense": [LayerSpec(6, dynamic=True, context=["vec", "user"], generator="linear", heads=2),
                   LayerSpec(4, dynamic=True, context="x0", generator="linear", form="decomp",
                             rank=2)],
}


@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
@pytest.mark.parametrize("case", sorted(FDPN_CASES))
def test_feature_dpn_parity(case, norm):
    torch.manual_seed(0)
    model = randomize(FeatureDPN(SCHEMA, FDPN_CASES[case], activation="relu", norm=norm,
                                 dropout=0.2))
    model.train()
    meta, tensors = check_parity(model, seed=1)
    assert model.training
    ops = [n["op"] for n in meta["graph"]["nodes"]]
    assert ("layernorm" in ops) == (norm == "layernorm")
    assert "act" not in ops


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
def test_activations(activation, tmp_path):
    model = randomize(FeatureDPN(SCHEMA, [LayerSpec(5, dynamic=True), 4], activation=activation,
                                 norm="batchnorm"), seed=2)
    check_parity(model, seed=3, tmp_path=tmp_path)


@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
def test_dnn_parity(norm, tmp_path):
    model = randomize(DNN(SCHEMA, [7, 5], norm=norm), seed=4)
    meta, _ = check_parity(model, tmp_path=tmp_path)
    assert meta["model_type"] == "DNN"
    assert meta["extra"]["config"]["hidden"] == [7, 5]


@pytest.mark.parametrize("hidden, norm", [((), None), ((6, 4), None), ((5,), "batchnorm"),
                                          ((5,), "layernorm")])
def test_crossnet_parity(hidden, norm, tmp_path):
    model = randomize(CrossNet(SCHEMA, num_cross=3, hidden=hidden, norm=norm), seed=5)
    meta, _ = check_parity(model, tmp_path=tmp_path)
    ops = [n["op"] for n in meta["graph"]["nodes"]]
    assert ops.count("cross") == 3
    assert meta["model_type"] == "CrossNet"
    assert ("concat" in ops[-2:]) == bool(hidden)


def test_graph_layout():
    """The node sequence, value names and tensor names the engine sees for a FeatureDPN."""
    model = FeatureDPN(SCHEMA, [LayerSpec(8, dynamic=True, context="x0"),
                                LayerSpec(6, dynamic=True, context=["genres", "age"]),
                                LayerSpec(4, dynamic=True, context=["genres", "age"]), 3],
                       norm="layernorm")
    meta, tensors = torch_export.export(model)
    assert meta["producer"] == "dpn_infer 0.1.0" and meta["opset"] == 1
    assert meta["model_type"] == "FeatureDPN"
    assert meta["schema"] == {"fields": SCHEMA.to_json()}
    assert FeatureDPN.from_config(meta["extra"]["config"]).config() == model.config()
    nodes = meta["graph"]["nodes"]
    assert [(n["op"], n["output"]) for n in nodes] == [
        ("embedding", "emb/user"), ("embedding", "emb/item"), ("embedding", "emb/genres"),
        ("embedding", "emb/tags"), ("dense_input", "dense/age"), ("dense_input", "dense/vec"),
        ("concat", "x0"),
        ("dylinear", "h0.pre"), ("layernorm", "h0"),
        ("concat", "ctx0"),                       # one concat per distinct field-subset context
        ("dylinear", "h1.pre"), ("layernorm", "h1"),
        ("dylinear", "h2.pre"), ("layernorm", "h2"),
        ("linear", "h3.pre"), ("layernorm", "h3"),
        ("linear", "logit")]
    assert meta["graph"]["output"] == "logit"
    assert nodes[7]["inputs"] == ["x0", "x0"] and nodes[10]["inputs"] == ["h0", "ctx0"]
    assert nodes[9]["inputs"] == ["emb/genres", "dense/age"]
    assert nodes[7]["params"] == {"g1_weight": "layers.0.g1.weight", "g1_bias": "layers.0.g1.bias",
                                  "g2_weight": "layers.0.g2.weight", "g2_bias": "layers.0.g2.bias"}
    assert nodes[7]["attrs"] == {"in": 16, "out": 8, "context": 16, "generator": "mlp", "hidden": 4,
                                 "sigma": "relu", "form": "full", "heads": 1, "act": "identity"}
    assert nodes[8]["attrs"]["act"] == "relu"
    assert nodes[0]["params"] == {"table": "inputs.embeddings.user.weight"}
    state = model.state_dict()
    for name, arr in tensors.items():               # no BatchNorm: tensors are the parameters
        np.testing.assert_array_equal(arr, state[name].numpy())
    json.dumps(meta, allow_nan=False)


def test_batchnorm_folding_names_and_fusion():
    model = randomize(FeatureDPN(SCHEMA, [LayerSpec(6, dynamic=True, form="decomp", rank=2), 4],
                                 norm="batchnorm"))
    meta, tensors = torch_export.export(model)
    nodes = meta["graph"]["nodes"]
    assert [n["op"] for n in nodes[-3:]] == ["dylinear", "linear", "linear"]
    assert nodes[-3]["attrs"]["act"] == "relu" and nodes[-2]["attrs"]["act"] == "relu"
    assert not any(k.startswith("norms.") for k in tensors)
    # the folded tensors differ from the raw parameters, the module itself is untouched
    assert not np.allclose(tensors["layers.1.weight"], model.layers[1].weight.detach().numpy())
    assert set(tensors) == {k for k in model.state_dict() if not k.startswith("norms.")}


def test_linear_without_bias_and_layernorm_without_affine():
    model = randomize(DNN(SCHEMA, [5, 4], norm="batchnorm"))
    model.layers[0] = nn.Linear(model.layers[0].in_features, 5, bias=False)
    meta, tensors = check_parity(model)
    assert "layers.0.bias" in tensors                 # created by folding
    model = randomize(DNN(SCHEMA, [5], norm=None))
    model.layers[0] = nn.Linear(model.layers[0].in_features, 5, bias=False)
    meta, tensors = check_parity(model)
    assert "bias" not in meta["graph"]["nodes"][-2]["params"]
    model = randomize(DNN(SCHEMA, [5], norm="layernorm"))
    model.norms[0] = nn.LayerNorm(5, elementwise_affine=False)
    check_parity(model)


class Custom(nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("breaker, exc, words", [
    (lambda m: m.layers.__setitem__(0, Custom()), TypeError, ["layers.0", "Custom"]),
    (lambda m: m.acts.__setitem__(1, nn.GELU()), TypeError, ["acts.1", "GELU"]),
    (lambda m: m.norms.__setitem__(1, nn.BatchNorm1d(4, track_running_stats=False)), ValueError,
     ["norms.1", "BatchNorm1d"]),
    (lambda m: m.norms.__setitem__(0, nn.GroupNorm(1, 6)), TypeError, ["norms.0", "GroupNorm"]),
    (lambda m: setattr(m, "dropout", nn.AlphaDropout(0.1)), TypeError, ["dropout", "AlphaDropout"]),
    (lambda m: setattr(m, "classifier", nn.Linear(4, 2)), ValueError, ["classifier"]),
    (lambda m: m.layers[1].register_forward_hook(lambda *a: None), ValueError, ["layers.1", "hook"]),
    (lambda m: m.inputs.embeddings["user"].__setattr__("max_norm", 1.0), ValueError,
     ["inputs.embeddings.user", "max_norm"]),
    (lambda m: m.inputs.embeddings.__setitem__("item", nn.Embedding(12, 3)), ValueError,
     ["inputs.embeddings.item", "[13, 3]"]),
    (lambda m: m.layers[2].weight.data.fill_(float("nan")), ValueError, ["layers.2.weight", "NaN"]),
])
def test_unsupported_is_refused(breaker, exc, words):
    model = FeatureDPN(SCHEMA, [LayerSpec(6, dynamic=True), LayerSpec(4, dynamic=True, context="prev"),
                                4])
    breaker(model)
    with pytest.raises(exc) as e:
        torch_export.export(model)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_not_a_model_is_refused():
    with pytest.raises(TypeError, match="Sequential"):
        torch_export.export(nn.Sequential(nn.Linear(2, 1)))

    class MyDPN(FeatureDPN):
        def forward(self, batch):
            return super().forward(batch) * 2

    with pytest.raises(TypeError, match="MyDPN"):
        torch_export.export(MyDPN(SCHEMA, [4]))


def test_checkpoint_to_dpn_convert(tmp_path, capsys):
    model = randomize(FeatureDPN(SCHEMA, [LayerSpec(6, dynamic=True, context=["user", "vec"], heads=2),
                                          LayerSpec(4, dynamic=True, context="prev", form="decomp",
                                                    rank=2, w0=True)],
                                 norm="batchnorm"), seed=7)
    ck = tmp_path / "model.pt"
    save_checkpoint(model, ck)
    out = tmp_path / "model.bin"
    assert convert_main([str(ck), "-o", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "6 fields" in line and "nodes" in line and "tensors" in line
    assert f"{out.stat().st_size} bytes" in line
    meta, tensors = fmt.read(out)
    batch = random_batch(seed=8)
    with torch.no_grad():
        want = model.eval()(batch).double().numpy()
    np.testing.assert_allclose(run_graph(meta, tensors, batch), want, rtol=1e-4, atol=1e-4)
    # same bytes as dpn_infer.save-style export of the same module
    assert out.read_bytes() == bytes(fmt.encode(*torch_export.export(model)))


def test_dpn_convert_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"something": 1}, bad)
    assert convert_main([str(bad), "-o", str(tmp_path / "x.bin")]) == 1
    assert "not a dpn_infer checkpoint" in capsys.readouterr().err
    assert convert_main([str(tmp_path / "missing.pt")]) == 1
    with pytest.raises(SystemExit) as e:
        convert_main(["--help"])
    assert e.value.code == 0
    assert "dpn-convert" in capsys.readouterr().out


_HOLDER_SCRIPT = r"""
import sys, numpy as np
from dpn_infer.engine import load
b = dict(np.load(sys.argv[2]))
m = load(sys.argv[1])            # memory-mapped
before = m.predict(b)
print("LOADED", flush=True)
sys.stdin.readline()             # the parent saves another model over the same path meanwhile
after = m.predict(b)
print("SAME" if np.array_equal(before, after) else "CHANGED", flush=True)
"""


def test_save_over_a_loaded_model_is_atomic(tmp_path):
    """dpn_infer.save (and so train(out=...)) writes a temporary file beside the target and renames
    it: a process that has the old file mapped keeps scoring with the old bytes. Writing in place
    ("wb") truncated the mapped file under it (SIGBUS) or changed its weights mid-life."""
    import os
    import subprocess
    import sys

    import dpn_infer

    path = tmp_path / "live.bin"
    small, big = randomize(FeatureDPN(SCHEMA, [LayerSpec(8)]), 1), randomize(FeatureDPN(SCHEMA, [LayerSpec(64, dynamic=True)]), 2)
    dpn_infer.save(big, path)
    b = random_batch(B=5)
    np.savez(tmp_path / "b.npz", **{k: np.asarray(v) for k, v in b.items()})
    p = subprocess.Popen([sys.executable, "-c", _HOLDER_SCRIPT, str(path), str(tmp_path / "b.npz")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=tmp_path)
    try:
        assert p.stdout.readline().strip() == "LOADED", p.stderr.read()
        dpn_infer.save(small, path)          # smaller file: an in-place rewrite would truncate
        out, err = p.communicate("\n", timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0 and out.strip() == "SAME", (p.returncode, out, err[-2000:])
    assert sorted(os.listdir(tmp_path)) == ["b.npz", "live.bin"]      # no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)          # as open(..., "wb") would
    np.testing.assert_allclose(dpn_infer.load(path).predict(b),
                               torch_sigmoid_np(small, b), rtol=1e-4, atol=1e-5)


def torch_sigmoid_np(model, b):
    with torch.no_grad():
        return torch.sigmoid(model(b)).numpy()
