"""Random FieldDPN specs (kind "field_dpn") for the parity tests, in the style of helpers/models.py:
a plain dict drawn by Hypothesis, ``build_field`` turns it into a randomized torch module."""
from __future__ import annotations

import math

from hypothesis import strategies as st

from . import models as HM

AGGS = ["summation", "self", "attention", "concat"]
SIGMAS = ["identity", "sigmoid", "softmax", "relu"]


@st.composite
def field_schema(draw, t_min=1, t_max=6):
    """Fields of one common dim (a FieldDPN needs one row of X per field)."""
    t = draw(st.integers(t_min, t_max))
    d = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16]))
    names = draw(st.permutations(HM.FIELD_NAMES))[:t]
    fields = []
    for name in names:
        kind = draw(st.sampled_from(["sparse", "multi_hot", "dense"]))
        f = {"name": name, "kind": kind, "dim": d}
        if kind == "dense":
            f["dim"] = draw(st.sampled_from([d, d, 1, 3]))     # another width: projected to d
        if kind != "dense":
            f["vocab"] = draw(st.integers(1, 40))
            f["policy"] = draw(st.sampled_from(["hash", "oov_bucket", "error"]))
        if kind == "multi_hot":
            f["pooling"] = draw(st.sampled_from(["sum", "mean"]))
            f["T"] = draw(st.integers(1, 6))
            f["max_len"] = 0
        fields.append(f)
    return fields


@st.composite
def field_layer(draw, t, m, agg=None, names=()):
    out = draw(st.one_of(st.just(m), st.integers(1, 12)))
    spec = {"out": out, "aggregation": agg or draw(st.sampled_from(AGGS)),
            "context": draw(st.sampled_from(["x0", "prev", "fields"])),
            "generator": draw(st.sampled_from(["mlp", "mlp", "linear"])),
            "hidden": draw(st.integers(1, 6)), "sigma": draw(st.sampled_from(SIGMAS)),
            "heads": draw(st.sampled_from(HM._divisors(math.gcd(m, out)))),
            "shared": draw(st.booleans()), "attention_hidden": draw(st.integers(1, 6))}
    spec["exclude_self"] = spec["aggregation"] == "summation" and t >= 2 and draw(st.booleans())
    if spec["context"] == "fields":
        # a named subset of the fields as context rows (t2 != t1); self and exclude_self need t2 == t1
        perm = draw(st.permutations(list(names)))
        full = spec["aggregation"] == "self" or spec["exclude_self"]
        spec["context"] = perm if full else perm[:draw(st.integers(1, len(perm)))]
    spec["dynamic"], spec["implicit"] = draw(st.sampled_from([(True, False), (True, False),
                                                              (True, True), (False, True)]))
    return spec


@st.composite
def field_dpn_specs(draw, agg=None, combine=None):
    fields = draw(field_schema())
    t = len(fields)
    emb = [f["dim"] for f in fields if f["kind"] != "dense"]
    m = emb[0] if emb else fields[0]["dim"]
    if not emb:
        for f in fields:
            f["dim"] = m
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        layers.append(draw(field_layer(t, m, agg, [f["name"] for f in fields])))
        m = layers[-1]["out"]
    feat = draw(st.one_of(st.just([]), HM.layer_specs(fields, depth_min=1, depth_max=2)))
    return {"kind": "field_dpn", "fields": fields, "field_layers": layers, "layers": feat,
            "combine": combine or draw(st.sampled_from(["stacked", "parallel"])),
            "activation": draw(st.sampled_from(["relu", "tanh", "sigmoid", "identity"])),
            "norm": draw(st.sampled_from([None, "layernorm"])),
            "feature_norm": draw(st.sampled_from([None, "layernorm", "batchnorm"])),
            "residual": draw(st.booleans()),
            "seed": draw(st.integers(0, 2 ** 31 - 1)),
            "B": draw(st.one_of(st.sampled_from(HM.BATCH_SIZES), st.integers(1, 300)))}


def build_field(spec):
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(spec["seed"])
    schema = HM.make_schema(spec["fields"])
    feat = spec.get("layers", [])
    if spec.get("combine", "stacked") == "stacked" and feat:
        # Feature layers of a stacked model read the field output: its width, not x0's, is "prev".
        feat = [dict(l) for l in feat]
        for l in feat:
            if l.get("form") == "full" and "heads" in l:
                l["heads"] = 1
    model = dnn.FieldDPN(schema, [dnn.FieldLayerSpec(**l) for l in spec["field_layers"]],
                         [HM._layer_spec(l) for l in feat], combine=spec.get("combine", "stacked"),
                         activation=spec["activation"], norm=spec["norm"],
                         residual=spec.get("residual", False),
                         feature_norm=spec.get("feature_norm"))
    HM.randomize_(model, spec["seed"])
    randomize_field_(model, spec["seed"])
    return model.eval()


def randomize_field_(model, seed):
    """Random values for every FieldDyLinear parameter at a scale that keeps outputs O(1)."""
    import torch
    from dpn_infer import nn as dnn

    g = torch.Generator().manual_seed(seed ^ 0xF1E1D)

    def normal(shape, std):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std

    with torch.no_grad():
        for mod in model.modules():
            if not isinstance(mod, dnn.FieldDyLinear):
                continue
            m, c, t1 = mod.in_features, mod.out_features, mod.in_fields
            if mod.dynamic:
                k = 1.0 / math.sqrt(m // mod.heads)
                ws, l = mod.weight_size, mod.hidden
                mod.g2_weight[:, :ws].copy_(normal(mod.g2_weight[:, :ws].shape, 0.8 * k / math.sqrt(l)))
                mod.g2_bias[:, :ws].copy_(normal(mod.g2_bias[:, :ws].shape, 0.8 * k))
                mod.g2_weight[:, ws:].copy_(normal(mod.g2_weight[:, ws:].shape, 0.5 / math.sqrt(l)))
                mod.g2_bias[:, ws:].copy_(normal(mod.g2_bias[:, ws:].shape, 0.3))
                if mod.generator == "mlp":
                    n = mod.generator_input
                    mod.g1_weight.copy_(normal(mod.g1_weight.shape, 1.5 / math.sqrt(n)))
                    mod.g1_bias.copy_(normal(mod.g1_bias.shape, 0.3))
                if mod.aggregation == "attention":
                    mod.att.weight.copy_(normal(mod.att.weight.shape, 1.5 / math.sqrt(mod.context_features)))
                    mod.att.bias.copy_(normal(mod.att.bias.shape, 0.3))
                    mod.att_query.copy_(normal(mod.att_query.shape, 2.0))
            if mod.implicit:
                mod.field_weight.copy_(normal((t1, t1), 1.0 / math.sqrt(t1)))
                mod.feature_weight.copy_(normal((m, c), 1.0 / math.sqrt(m)))
                if not mod.dynamic:
                    mod.bias.copy_(normal((c,), 0.3))
