"""Random dpn_infer.nn models and batches for parity tests.

A model is described by a plain dict ("spec", drawn by Hypothesis in ``model_specs``); ``build`` turns
it into a torch module with randomized weights (``seed``), ``make_batch`` draws a batch for it. Keeping
the spec a plain dict makes a failing example printable and easy to turn into a reproducer."""
from __future__ import annotations

import math
from typing import Dict

import numpy as np
from hypothesis import strategies as st

FIELD_NAMES = ["user", "item", "genre s", "x0", "prev", "f.1", "ü", "c-7", "a", "b"]
BATCH_SIZES = [1, 2, 3, 7, 64, 255, 256, 257, 300, 511, 512, 513]
EXTREME_IDS = [-(1 << 63), (1 << 63) - 1, -(1 << 40), 1 << 40, -2, -1]


# --------------------------------------------------------------------------------------------
# strategies

@st.composite
def field_specs(draw, n_min=1, n_max=6):
    n = draw(st.integers(n_min, n_max))
    names = draw(st.permutations(FIELD_NAMES))[:n]
    fields = []
    for name in names:
        kind = draw(st.sampled_from(["sparse", "multi_hot", "dense"]))
        dim = draw(st.one_of(st.just(1), st.integers(1, 9)))
        f = {"name": name, "kind": kind, "dim": dim}
        if kind != "dense":
            f["vocab"] = draw(st.one_of(st.just(1), st.integers(1, 40), st.just(1000)))
            f["policy"] = draw(st.sampled_from(["hash", "oov_bucket", "error"]))
        if kind == "multi_hot":
            f["pooling"] = draw(st.sampled_from(["sum", "mean"]))
            f["T"] = draw(st.one_of(st.just(1), st.integers(1, 12)))
            f["max_len"] = draw(st.sampled_from([0, f["T"], f["T"] + 3]))
        if kind == "dense" and dim == 1:
            f["as_1d"] = draw(st.booleans())
        fields.append(f)
    return fields


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def layer_specs(draw, fields, depth_min=1, depth_max=4, dynamic=None):
    x0 = sum(f["dim"] for f in fields)
    width = x0
    layers = []
    for _ in range(draw(st.integers(depth_min, depth_max))):
        dyn = draw(st.booleans()) if dynamic is None else dynamic
        out = draw(st.one_of(st.just(1), st.integers(1, 13), st.integers(14, 48)))
        spec = {"out": out, "dynamic": dyn}
        if dyn:
            ctx = draw(st.sampled_from(["x0", "prev", "fields"]))
            if ctx == "fields":
                names = draw(st.permutations([f["name"] for f in fields]))
                ctx = names[:draw(st.integers(1, len(names)))]
            spec["context"] = ctx
            spec["generator"] = draw(st.sampled_from(["mlp", "linear"]))
            spec["hidden"] = draw(st.integers(1, 8))
            spec["sigma"] = draw(st.sampled_from(["identity", "sigmoid", "softmax", "relu"]))
            spec["form"] = draw(st.sampled_from(["full", "decomp"]))
            if spec["form"] == "full":
                spec["heads"] = draw(st.sampled_from(_divisors(math.gcd(width, out))))
            else:
                spec["rank"] = draw(st.integers(1, 5))
                spec["w0"] = draw(st.booleans())
        layers.append(spec)
        width = out
    return layers


@st.composite
def model_specs(draw, kind=None):
    kind = kind or draw(st.sampled_from(["feature_dpn", "feature_dpn", "feature_dpn", "dnn", "crossnet"]))
    fields = draw(field_specs())
    spec = {"kind": kind, "fields": fields,
            "activation": draw(st.sampled_from(["relu", "tanh", "sigmoid", "identity"])),
            "norm": draw(st.sampled_from([None, "layernorm", "batchnorm"])),
            "seed": draw(st.integers(0, 2 ** 31 - 1)),
            "B": draw(st.one_of(st.sampled_from(BATCH_SIZES), st.integers(1, 513)))}
    if kind == "feature_dpn":
        spec["layers"] = draw(layer_specs(fields))
        # the contexts' own embeddings (Table 2b's z0 / zt): a second InputLayer the contexts read
        spec["context_embeddings"] = draw(st.booleans())
    elif kind == "dnn":
        spec["hidden"] = draw(st.lists(st.integers(1, 13), min_size=0, max_size=3))
    else:
        spec["num_cross"] = draw(st.integers(1, 4))
        spec["hidden"] = draw(st.one_of(st.just([]), st.lists(st.integers(1, 13), min_size=1, max_size=3)))
    return spec


# --------------------------------------------------------------------------------------------
# building

def make_schema(fields):
    from dpn_infer import nn as dnn

    out = []
    for f in fields:
        if f["kind"] == "sparse":
            out.append(dnn.SparseField(f["name"], vocab=f["vocab"], dim=f["dim"], policy=f["policy"]))
        elif f["kind"] == "multi_hot":
            out.append(dnn.MultiHotField(f["name"], vocab=f["vocab"], dim=f["dim"], pooling=f["pooling"],
                                         max_len=f["max_len"], policy=f["policy"]))
        else:
            out.append(dnn.DenseField(f["name"], dim=f["dim"]))
    return dnn.Schema(out)


def _layer_spec(d):
    from dpn_infer import nn as dnn

    kw = {k: v for k, v in d.items() if k in ("out", "dynamic", "context", "hidden", "sigma", "generator",
                                                "form", "heads", "rank", "w0")}
    return dnn.LayerSpec(**kw)


def build(spec):
    """torch module (eval mode, randomized weights) for ``spec``."""
    import torch
    from dpn_infer import nn as dnn

    if spec["kind"] == "field_dpn":
        from .field_models import build_field
        return build_field(spec)
    torch.manual_seed(spec["seed"])
    schema = make_schema(spec["fields"])
    if spec["kind"] == "feature_dpn":
        model = dnn.FeatureDPN(schema, [_layer_spec(l) for l in spec["layers"]],
                               activation=spec["activation"], norm=spec["norm"],
                               context_embeddings=spec.get("context_embeddings", False))
    elif spec["kind"] == "dnn":
        model = dnn.DNN(schema, spec["hidden"], activation=spec["activation"], norm=spec["norm"])
    else:
        model = dnn.CrossNet(schema, num_cross=spec["num_cross"], hidden=spec["hidden"],
                             activation=spec["activation"], norm=spec["norm"])
    randomize_(model, spec["seed"])
    return model.eval()


def randomize_(model, seed):
    """Give every parameter and BatchNorm statistic a random value of a scale that keeps activations O(1)
    (default inits leave dynamic biases, norms and BatchNorm statistics trivial)."""
    import torch
    from torch import nn
    from dpn_infer import nn as dnn
    from dpn_infer.nn.generators import SeparableConv

    g = torch.Generator().manual_seed(seed ^ 0x5EED)

    def normal(shape, std):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float32)

    generators = set()
    for mod in model.modules():
        if isinstance(mod, dnn.DyLinear):
            generators.add(id(mod.g2))
            if mod.generator == "mlp":
                generators.add(id(mod.g1))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Embedding):
                mod.weight.copy_(normal(mod.weight.shape, 0.8))
            elif isinstance(mod, dnn.DyLinear):
                fan = mod.in_features // mod.heads if mod.form == "full" else mod.rank
                k = 1.0 / math.sqrt(fan)
                ws = mod.weight_size
                l = mod.hidden
                mod.g2.weight[:ws].copy_(normal((ws, l), 0.8 * k / math.sqrt(l)))
                mod.g2.bias[:ws].copy_(normal((ws,), 0.8 * k))
                mod.g2.weight[ws:].copy_(normal((mod.out_features, l), 0.5 / math.sqrt(l)))
                mod.g2.bias[ws:].copy_(normal((mod.out_features,), 0.3))
                if mod.generator == "mlp":
                    n = mod.context_features
                    mod.g1.weight.copy_(normal(mod.g1.weight.shape, 1.5 / math.sqrt(n)))
                    mod.g1.bias.copy_(normal(mod.g1.bias.shape, 0.3))
            elif isinstance(mod, nn.Linear):
                if id(mod) in generators:
                    continue
                mod.weight.copy_(normal(mod.weight.shape, 1.3 / math.sqrt(mod.in_features)))
                if mod.bias is not None:
                    mod.bias.copy_(normal(mod.bias.shape, 0.3))
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(uniform(mod.weight.shape, 0.5, 1.5))
                mod.bias.copy_(normal(mod.bias.shape, 0.3))
            elif isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.copy_(normal(mod.running_mean.shape, 0.5))
                mod.running_var.copy_(uniform(mod.running_var.shape, 0.3, 3.0))
                mod.weight.copy_(uniform(mod.weight.shape, 0.5, 1.5))
                mod.bias.copy_(normal(mod.bias.shape, 0.3))
            elif isinstance(mod, (dnn.GRU, dnn.AUGRU)):        # gates away from 1/2
                for n in ("weight_ih", "weight_hh"):
                    w = getattr(mod, n)
                    w.copy_(normal(w.shape, 1.3 / math.sqrt(w.shape[1])))
                mod.bias_ih.copy_(normal(mod.bias_ih.shape, 0.3))
                mod.bias_hh.copy_(normal(mod.bias_hh.shape, 0.3))
            elif isinstance(mod, dnn.CrossLayer):
                mod.weight.copy_(normal(mod.weight.shape, 0.7 / math.sqrt(mod.d)))
                mod.bias.copy_(normal(mod.bias.shape, 0.3))
            elif isinstance(mod, SeparableConv):   # its depthwise bias starts at zero
                mod.depthwise.copy_(normal(mod.depthwise.shape, 1.0 / math.sqrt(mod.kernel_size)))
                mod.bias.copy_(normal(mod.bias.shape, 0.3))
            elif isinstance(mod, nn.Conv1d):
                fan = mod.in_channels * mod.kernel_size[0]
                mod.weight.copy_(normal(mod.weight.shape, 1.3 / math.sqrt(fan)))
                if mod.bias is not None:
                    mod.bias.copy_(normal(mod.bias.shape, 0.3))


def calibrate_(model, batch, spread=3.0, max_gain=30.0, seed=0):
    """Rescale the classifier weight so the logits on ``batch`` are O(1-10): the root mean square of
    ``classifier.weight @ features`` becomes about ``spread`` (gain capped at ``max_gain``), and the bias
    is a small random offset. Not centred on purpose: subtracting a large mean would make logits near
    0 differences of large numbers, i.e. test float32 cancellation rather than the engine."""
    import torch

    seen = {}
    hook = model.classifier.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        hook.remove()
    x = seen["x"]
    if x.shape[0] == 0:
        return
    with torch.no_grad():
        w = model.classifier.weight
        pre = (x.double() @ w.double().T)[:, 0]
        rms = float(pre.pow(2).mean().sqrt())
        gain = min(max_gain, spread / rms) if rms > 1e-12 else 1.0
        w.mul_(gain)
        offset = float(np.random.default_rng(seed).normal(0.0, 0.5))
        model.classifier.bias.fill_(offset)


def make_batch(fields, B, seed) -> Dict[str, np.ndarray]:
    """Random batch: ids in range plus (for hash / oov_bucket) ids outside it, negative and >= vocab;
    multi-hot rows with -1 anywhere and some rows all -1; dense N(0, 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in fields:
        kind = f["kind"]
        if kind == "dense":
            v = rng.standard_normal((B, f["dim"])).astype(np.float32)
            out[f["name"]] = v[:, 0].copy() if f.get("as_1d") else v
            continue
        V = f["vocab"]
        shape = (B,) if kind == "sparse" else (B, f["T"])
        ids = rng.integers(0, V, size=shape, dtype=np.int64)
        if f["policy"] != "error":
            oob = rng.random(shape) < 0.2
            wild = np.where(rng.random(shape) < 0.5, rng.integers(V, V + 3 * V + 5, size=shape),
                            -rng.integers(2, 3 * V + 5, size=shape))
            ids = np.where(oob, wild, ids)
            ext = rng.random(shape) < 0.03
            ids = np.where(ext, rng.choice(np.array(EXTREME_IDS, np.int64), size=shape), ids)
            if kind == "sparse":
                ids = np.where(rng.random(shape) < 0.05, -1, ids)    # -1 is an id for sparse fields
        if kind == "multi_hot":
            ids = np.where(rng.random(shape) < rng.uniform(0.1, 0.6), -1, ids)
            empty = rng.random(B) < 0.15
            ids[empty] = -1
        out[f["name"]] = np.ascontiguousarray(ids, dtype=np.int64)
    return out


def describe(spec) -> str:
    """A compact, copy-pasteable description of a spec (for failure messages)."""
    return repr(spec)
