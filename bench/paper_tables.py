"""The paper's protocols as data, and the pure parts of their report (no torch needed).

"Dynamic Parameterized Network for CTR Prediction" (arXiv 2111.04983): Table 1
(feature-based models), Table 2a-2c (ablations on MovieLens-tag) and Table 5 (sequence models). Each
protocol names its datasets, its training setting and its models; each model names the config
section ``dpn_infer.train.build_model`` reads, the paper row it stands for, and its non-embedding
parameter count (the paper counts parameters without the embedding tables; tests check the count
against the built model). ``bench/accuracy.py --protocol NAME`` runs them.

Where ours differs from the paper's model, the model's ``note`` says so. One difference holds
throughout: the generator's output layer has a bias (our counts are (l+1)·P per dynamic layer where
the paper's are about l·P). A context reads the input embeddings (the paper's x0 / xt) unless the
model has ``context_embeddings`` (FeatureDPN's option: the paper's z0 / zt, embedding tables of the
contexts' own, not counted as parameters, as the input tables are not).
"""
from __future__ import annotations

import math
import statistics

PAPER_REF = "arXiv 2111.04983"

# The paper's numbers, by table and row as printed there: dataset -> metrics. "auc" / "logloss" are
# 5-run means (Table 1 / 2: std about 1e-3, Table 2c gives it), "params" excludes embeddings,
# "cpu_s" is Table 2c's CPU seconds per epoch (12-core Xeon E5-2683 v4, TensorFlow, the full
# MovieLens-tag data). Avazu is in Table 1 but not in ../shared/data.
PAPER = {
    "Table 1": {
        "FM": {"ml-tag": (0.9388, 0.2797), "avazu": (0.7497, 0.3740), "criteo": (0.7933, 0.4574)},
        "AFM": {"ml-tag": (0.9414, 0.2804), "avazu": (0.7454, 0.3766), "criteo": (0.7953, 0.4554)},
        "HOFM": {"ml-tag": (0.9410, 0.3088), "avazu": (0.7516, 0.3756), "criteo": (0.7960, 0.4551)},
        "NFM": {"ml-tag": (0.9355, 0.2955), "avazu": (0.7531, 0.3761), "criteo": (0.7968, 0.4537)},
        "PNN": {"ml-tag": (0.9469, 0.2792), "avazu": (0.7526, 0.3737), "criteo": (0.8026, 0.4509)},
        "CIN": {"ml-tag": (0.9494, 0.2600), "avazu": (0.7533, 0.3756), "criteo": (0.8042, 0.4472)},
        "AFN": {"ml-tag": (0.9477, 0.2753), "avazu": (0.7512, 0.3731), "criteo": (0.8061, 0.4458)},
        "CrossNet": {"ml-tag": (0.9323, 0.2929), "avazu": (0.7498, 0.3756), "criteo": (0.7915, 0.4585)},
        "CrossMix": {"ml-tag": (0.9379, 0.2934), "avazu": (0.7526, 0.3738), "criteo": (0.8019, 0.4490)},
        "DNN": {"ml-tag": (0.9521, 0.2576), "avazu": (0.7533, 0.3745), "criteo": (0.8028, 0.4483)},
        "Feature-based DPN": {"ml-tag": (0.9535, 0.2538), "avazu": (0.7556, 0.3733),
                              "criteo": (0.8097, 0.4425)},
        "Field-based DPN": {"ml-tag": (0.9507, 0.2561), "avazu": (0.7536, 0.3750),
                            "criteo": (0.8049, 0.4467)},
    },
    # (auc, logloss, params)
    "Table 2a": {
        "Base (3-layer MLP)": {"ml-tag": (0.9471, 0.2656, "192k")},
        "Base (2-layer MLP)": {"ml-tag": (0.9521, 0.2576, "101k")},
        "Base (2-layer MLP, 400)": {"ml-tag": (0.9514, 0.2568, "175k")},
        "HyperDense": {"ml-tag": (0.9524, 0.2715, "371k")},
        "Eqn. (5), l=4, σ=sigmoid": {"ml-tag": (0.9522, 0.2756, "129k")},
        "Eqn. (5), l=4, σ=softmax": {"ml-tag": (0.9527, 0.2563, "129k")},
        "Eqn. (5), h=2, σ=softmax": {"ml-tag": (0.9515, 0.2622, "101k")},
        "P φ(z) Q": {"ml-tag": (0.9503, 0.2609, "108k")},
        "W0 + P φ(z) Q": {"ml-tag": (0.9520, 0.2566, "117k")},
    },
    "Table 2b": {
        "Base (2-layer MLP), None": {"ml-tag": (0.9521, 0.2576, "101k")},
        "fc1, z0": {"ml-tag": (0.9527, 0.2563, "129k")},
        "fc2, z0": {"ml-tag": (0.9522, 0.2582, "372k")},
        "fc1 + fc2, (z0, z0)": {"ml-tag": (0.9532, 0.2562, "400k")},
        "fc1 + fc2, (x0, x0)": {"ml-tag": (0.9535, 0.2538, "400k")},
        "fc1 + fc2, (x0, yl0)": {"ml-tag": (0.9530, 0.2549, "401k")},
        "fc1 + fc2, (xt, xt)": {"ml-tag": (0.9533, 0.2545, "400k")},
        "fc1 + fc2, (zt, zt)": {"ml-tag": (0.9544, 0.2566, "400k")},
        "fc1 + fc2, (zm, zm)": {"ml-tag": (0.9530, 0.2575, "400k")},
    },
    # (auc, logloss, params, cpu s / epoch); Table 2c prints a std per row: kept in "std"
    "Table 2c": {
        "DNN": {"ml-tag": (0.9521, 0.2576, "101k", 44.7)},
        "Field-DNN (implicit), 100-100": {"ml-tag": (0.9445, 0.2669, "11k", 76.7)},
        "Larger Field-DNN, 200-200": {"ml-tag": (0.9473, 0.2663, "44k", 175.4)},
        "Feature-based DPN, (zt, zt)": {"ml-tag": (0.9544, 0.2566, "400k", 61.4)},
        "Field-based DPN (Summation)": {"ml-tag": (0.9451, 0.2720, "46k", 44.2)},
        "Field-based DPN (Self + implicit)": {"ml-tag": (0.9488, 0.2607, "57k", 86.4)},
        "Field-based DPN (Summation + implicit)": {"ml-tag": (0.9495, 0.2595, "57k", 90.0)},
        "Field-based DPN (Attention + implicit)": {"ml-tag": (0.9489, 0.2620, "57k", 93.7)},
        "Field-based DPN (Concat + implicit)": {"ml-tag": (0.9507, 0.2561, "87k", 95.5)},
    },
    # Amazon Electronics (not in ../shared/data), AUC only: (all, new, infrequent users)
    "Table 5": {
        "DIN": {"amazon": (0.8292, 0.8029, 0.7937)},
        "DIEN": {"amazon": (0.8675, 0.8457, 0.8375)},
        "Trans": {"amazon": (0.8718, 0.8522, 0.8438)},
        "KFAtt": {"amazon": (0.8789, 0.8578, 0.8496)},
        "DIN + Heter": {"amazon": (0.8836, 0.8554, 0.8583)},
        "DIEN + Heter": {"amazon": (0.8693, 0.8476, 0.8414)},
        "Trans + Heter": {"amazon": (0.8809, 0.8608, 0.8526)},
        "Trans + Homo": {"amazon": (0.8728, 0.8530, 0.8440)},
        "SDPN": {"amazon": (0.8849, 0.8615, 0.8590)},
    },
}
PAPER_STD_2C = {"DNN": 5e-4, "Field-DNN (implicit), 100-100": 1e-3, "Larger Field-DNN, 200-200": 8e-4,
                "Feature-based DPN, (zt, zt)": 6e-4}   # the other Table 2c rows: ±1e-3


def paper_numbers(table: str, row: str, dataset: str) -> dict | None:
    """The paper's numbers for (table, row) on ``dataset`` as a dict (auc, logloss, params, cpu_s
    where printed), or None when the paper has no such cell."""
    cell = PAPER.get(table, {}).get(row, {}).get(dataset)
    if cell is None:
        return None
    if table == "Table 5":
        return dict(zip(("auc", "auc_new", "auc_infrequent"), cell))
    return dict(zip(("auc", "logloss", "params", "cpu_s"), cell))


# -- model sections ------------------------------------------------------------------------------
# §3.1: embedding 10, MLP with BatchNorm and ReLU, Adam, batch 4096. Table 2a's baseline is a
# 2-layer MLP (300-300), and Table 1's MovieLens-tag DNN row repeats that baseline's numbers, so the
# MovieLens-tag models are 300-300; Criteo gets §3.1's 400-400-400, and so do frappe and MovieLens-100K
# (not in the paper's Table 1: §3.1's setting is the only one it gives).
HIDDEN = {"ml-tag": [300, 300], "criteo": [400, 400, 400], "frappe": [400, 400, 400],
          "movielens-100k": [400, 400, 400]}
# FieldDPN's field-layer width per dataset (the paper gives one only for MovieLens-tag's 3 fields).
FIELD_WIDTH = {"ml-tag": 100, "criteo": 32, "frappe": 64, "movielens-100k": 64}


def mlp(hidden):
    return {"hidden": list(hidden), "activation": "relu", "norm": "batchnorm", "dropout": 0.0}


def dy(out, context="x0", sigma="softmax", **kw):
    """A full DyLinear layer, Eqn. (5) with l = 4 and σ = softmax (Table 2a's best generator)."""
    return {"out": out, "dynamic": True, "context": context, "hidden": 4, "sigma": sigma, **kw}


def feature_dpn(layers, **kw):
    return {"layers": list(layers), "activation": "relu", "norm": "batchnorm", "dropout": 0.0, **kw}


def field_dpn(layers):
    return {"field_layers": list(layers), "layers": [], "combine": "stacked", "activation": "relu",
            "norm": None, "residual": False, "dropout": 0.0}


def fl(out, aggregation, context, implicit=True):
    """A field layer: shared generator (l = 4, softmax) — Table 2c's 46k for the summation model
    fits one generator for all fields, not one per field."""
    return {"out": out, "aggregation": aggregation, "context": context, "hidden": 4, "sigma": "softmax",
            "shared": True, "implicit": implicit}


def field_dnn(widths):
    return field_dpn([{"out": w, "dynamic": False, "implicit": True} for w in widths])


# FM: the second-order part is dpn_infer.nn.fm_operator as a field layer (combine "parallel": the
# classifier also reads x0, which is the first-order term: w·v_i is a free weight per id).
FM_SECTION = {"field_layers": [{"out": 1, "aggregation": "summation", "generator": "linear", "shared": True,
                                "exclude_self": True}],
              "layers": [], "combine": "parallel", "activation": "identity", "norm": None,
              "residual": False, "dropout": 0.0}


def _m(key, label, kind, section, params, paper=None, lr_from=None, note="", data=None):
    """One model of a protocol. ``params``: dataset -> non-embedding parameters (trainable ones: FM's
    frozen identity generator is not counted). ``paper``: (table, row) in PAPER, None where the paper
    has no such row (``note`` says so). ``lr_from``: the Table 1 model (on the same dataset) whose
    searched learning rate this one uses. ``data``: extra loader options this model alone needs."""
    m = {"key": key, "label": label, "kind": kind, "section": section, "params": params,
         "paper": paper, "lr_from": lr_from, "note": note}
    if data:    # only where set: the other models' run signatures stay as they were
        m["data"] = dict(data)
    return m


def _table1_models():
    return [
        _m("fm", "FM", "fm", FM_SECTION, {"ml-tag": 34, "criteo": 430, "frappe": 111, "movielens-100k": 78}, ("Table 1", "FM"),
           note="Σ_i α_i ⟨v_i, mean_{j≠i} v_j⟩ + w·x0 + b: the fm_operator field layer (its identity generator "
                "frozen), α_i starting at (t−1)/2 (where the sum is FM's pairwise one) and trained with w and b"),
        _m("dnn", "DNN", "dnn", {"per_dataset": {d: mlp(h) for d, h in HIDDEN.items()}},
           {"ml-tag": 101_101, "criteo": 480_001, "frappe": 364_001, "movielens-100k": 352_001},
           ("Table 1", "DNN")),
        _m("crossnet", "CrossNet", "crossnet",
           {"num_cross": 3, "hidden": [], "activation": "relu", "norm": None, "dropout": 0.0},
           {"ml-tag": 211, "criteo": 2_731, "frappe": 701, "movielens-100k": 491}, ("Table 1", "CrossNet"),
           note="3 cross layers and no deep tower (Table 1's models are single models without a DNN part)"),
        _m("feature-dpn", "FeatureDPN", "feature-dpn",
           {"per_dataset": {d: feature_dpn([dy(h[0]), dy(h[1])] + h[2:]) for d, h in HIDDEN.items()}},
           {"ml-tag": 499_749, "criteo": 1_750_329, "frappe": 1_168_009, "movielens-100k": 1_107_769}, ("Table 1", "Feature-based DPN"),
           note="fc1 + fc2 full DyLinear, context (x0, x0): Table 1's MovieLens-tag row repeats Table 2b's "
                "(x0, x0) row; the third layer of the 400-400-400 models (Criteo, frappe, MovieLens-100K) is static"),
        _m("field-dpn", "FieldDPN", "field-dpn",
           {"per_dataset": {d: field_dpn([fl(w, "concat", "x0"), fl(w, "concat", "prev")])
                            for d, w in FIELD_WIDTH.items()}},
           {"ml-tag": 68_647, "criteo": 19_235, "frappe": 32_865, "movielens-100k": 31_683}, ("Table 1", "Field-based DPN"),
           note="Concat + implicit, context (x0, previous layer): Table 1's MovieLens-tag row repeats Table "
                "2c's Concat + implicit row (field layers 100-100); on Criteo's 39 fields 32-32 (the paper "
                "gives no width; even at 32 an epoch costs about 10x the DNN's CPU time there); on frappe's 10 and "
                "MovieLens-100K's 7 fields 64-64 (chosen here)"),
    ]


def _table2a_models():
    h = HIDDEN["ml-tag"][0]
    one = lambda **kw: feature_dpn([dy(h, **kw), h])  # noqa: E731  (fc1 dynamic, fc2 static)
    return [
        _m("dnn3", "Base (3-layer MLP)", "dnn", mlp([h, h, h]), {"ml-tag": 192_001},
           ("Table 2a", "Base (3-layer MLP)"), lr_from="dnn"),
        _m("dnn", "Base (2-layer MLP)", "dnn", mlp([h, h]), {"ml-tag": 101_101},
           ("Table 2a", "Base (2-layer MLP)"), lr_from="dnn"),
        _m("dnn400", "Base (2-layer MLP, 400)", "dnn", mlp([400, 400]), {"ml-tag": 174_801},
           ("Table 2a", "Base (2-layer MLP, 400)"), lr_from="dnn"),
        _m("fc1-hyper", "HyperDense (generator linear, l = n)", "feature-dpn",
           feature_dpn([dy(h, generator="linear"), h]), {"ml-tag": 380_101},
           ("Table 2a", "HyperDense"), lr_from="feature-dpn"),
        _m("fc1-sigmoid", "Eqn. (5), l=4, σ=sigmoid", "feature-dpn", one(sigma="sigmoid"),
           {"ml-tag": 138_425}, ("Table 2a", "Eqn. (5), l=4, σ=sigmoid"), lr_from="feature-dpn"),
        _m("fc1", "Eqn. (5), l=4, σ=softmax", "feature-dpn", one(), {"ml-tag": 138_425},
           ("Table 2a", "Eqn. (5), l=4, σ=softmax"), lr_from="feature-dpn"),
        _m("fc1-h2", "Eqn. (5), h=2, σ=softmax", "feature-dpn", one(heads=2), {"ml-tag": 115_925},
           ("Table 2a", "Eqn. (5), h=2, σ=softmax"), lr_from="feature-dpn"),
        _m("fc1-pq", "P φ(z) Q (rank 32)", "feature-dpn", one(form="decomp", rank=32),
           {"ml-tag": 109_105}, ("Table 2a", "P φ(z) Q"), lr_from="feature-dpn",
           note="rank not given in the paper: 32 comes closest to its 108k"),
        _m("fc1-w0pq", "W0 + P φ(z) Q (rank 32)", "feature-dpn", one(form="decomp", rank=32, w0=True),
           {"ml-tag": 118_105}, ("Table 2a", "W0 + P φ(z) Q"), lr_from="feature-dpn",
           note="rank 32 as above"),
    ]


def _table2b_models():
    h = HIDDEN["ml-tag"][0]
    two = lambda c1, c2, **kw: feature_dpn([dy(h, context=c1), dy(h, context=c2)], **kw)  # noqa: E731
    return [
        _m("dnn", "Base (2-layer MLP)", "dnn", mlp([h, h]), {"ml-tag": 101_101},
           ("Table 2b", "Base (2-layer MLP), None"), lr_from="dnn"),
        _m("fc1", "fc1, x0", "feature-dpn", feature_dpn([dy(h), h]), {"ml-tag": 138_425},
           ("Table 2b", "fc1, z0"), lr_from="feature-dpn"),
        _m("fc2", "fc2, x0", "feature-dpn", feature_dpn([h, dy(h)]), {"ml-tag": 462_425},
           ("Table 2b", "fc2, z0"), lr_from="feature-dpn"),
        _m("feature-dpn", "fc1 + fc2, (x0, x0)", "feature-dpn", two("x0", "x0"), {"ml-tag": 499_749},
           ("Table 2b", "fc1 + fc2, (x0, x0)"), lr_from="feature-dpn"),
        _m("fc12-z0", "fc1 + fc2, (z0, z0): context embeddings", "feature-dpn",
           two("x0", "x0", context_embeddings=True), {"ml-tag": 499_749},
           ("Table 2b", "fc1 + fc2, (z0, z0)"), lr_from="feature-dpn"),
        _m("fc12-prev", "fc1 + fc2, (x0, previous layer)", "feature-dpn", two("x0", "prev"),
           {"ml-tag": 500_829}, ("Table 2b", "fc1 + fc2, (x0, yl0)"), lr_from="feature-dpn"),
        _m("fc12-tag", "fc1 + fc2, (tag, tag)", "feature-dpn", two(["tag"], ["tag"]), {"ml-tag": 499_589},
           ("Table 2b", "fc1 + fc2, (xt, xt)"), lr_from="feature-dpn"),
        _m("fc12-ztag", "fc1 + fc2, (z tag, z tag): context embeddings", "feature-dpn",
           two(["tag"], ["tag"], context_embeddings=True), {"ml-tag": 499_589},
           ("Table 2b", "fc1 + fc2, (zt, zt)"), lr_from="feature-dpn"),
        _m("fc12-movie", "fc1 + fc2, (movie, movie)", "feature-dpn", two(["movie"], ["movie"]),
           {"ml-tag": 499_589}, ("Table 2b", "fc1 + fc2, (zm, zm)"), lr_from="feature-dpn"),
    ]


def _table2c_models():
    h = HIDDEN["ml-tag"][0]
    return [
        _m("dnn", "DNN", "dnn", mlp([h, h]), {"ml-tag": 101_101}, ("Table 2c", "DNN"), lr_from="dnn"),
        _m("field-dnn", "Field-DNN (implicit), 100-100", "field-dpn", field_dnn([100, 100]),
           {"ml-tag": 11_519}, ("Table 2c", "Field-DNN (implicit), 100-100"), lr_from="field-dpn"),
        _m("field-dnn200", "Larger Field-DNN, 200-200", "field-dpn", field_dnn([200, 200]),
           {"ml-tag": 43_019}, ("Table 2c", "Larger Field-DNN, 200-200"), lr_from="field-dpn"),
        _m("fc12-tag", "Feature-based DPN, (tag, tag)", "feature-dpn",
           feature_dpn([dy(h, context=["tag"]), dy(h, context=["tag"])]), {"ml-tag": 499_589},
           ("Table 2c", "Feature-based DPN, (zt, zt)"), lr_from="feature-dpn"),
        _m("field-sum", "Field-based DPN (Summation)", "field-dpn",
           field_dpn([fl(100, "summation", "x0", False), fl(100, "summation", "prev", False)]),
           {"ml-tag": 56_749}, ("Table 2c", "Field-based DPN (Summation)"), lr_from="field-dpn"),
        _m("field-self", "Field-based DPN (Self + implicit)", "field-dpn",
           field_dpn([fl(100, "self", "x0"), fl(100, "self", "prev")]), {"ml-tag": 67_767},
           ("Table 2c", "Field-based DPN (Self + implicit)"), lr_from="field-dpn"),
        _m("field-sum-imp", "Field-based DPN (Summation + implicit)", "field-dpn",
           field_dpn([fl(100, "summation", "x0"), fl(100, "summation", "prev")]), {"ml-tag": 67_767},
           ("Table 2c", "Field-based DPN (Summation + implicit)"), lr_from="field-dpn"),
        _m("field-att-imp", "Field-based DPN (Attention + implicit)", "field-dpn",
           field_dpn([dict(fl(100, "attention", "x0"), attention_hidden=8),
                      dict(fl(100, "attention", "prev"), attention_hidden=8)]), {"ml-tag": 68_711},
           ("Table 2c", "Field-based DPN (Attention + implicit)"), lr_from="field-dpn"),
        _m("field-dpn", "Field-based DPN (Concat + implicit)", "field-dpn",
           field_dpn([fl(100, "concat", "x0"), fl(100, "concat", "prev")]), {"ml-tag": 68_647},
           ("Table 2c", "Field-based DPN (Concat + implicit)"), lr_from="field-dpn"),
    ]


SEQ_FIELDS = {"sequence": ["hist_movie", "hist_genre"], "candidate": ["movie", "genres"],
              "tables": {"hist_movie": "movie"}}
SEQ_HEAD = {"layers": [64, 64], "activation": "relu", "norm": None, "dropout": 0.2}


def seq_section(encoder, decoder):
    """SeqDPN over MovieLens-100K histories (the shipped movielens config's seq-dpn section, with the
    encoder / decoder parts named)."""
    return {**SEQ_FIELDS, "encoder": list(encoder), "decoder": list(decoder),
            "heads": 2, "kernel_size": 3, "att_hidden": 36, **SEQ_HEAD}


def dien_section(heter=False):
    """DIEN (or DIEN + Heter) over the same histories: the shipped movielens config's dien /
    dien-heter section (newest behaviour first, auxiliary loss weight 1)."""
    return {**SEQ_FIELDS, "order": "newest_first", "aux_weight": 1.0,
            **({"hetero_hidden": 4} if heter else {}), **SEQ_HEAD}


# The shipped movielens config's dyjoint section (docs/dyjoint.md): sessions of hist_time.
DYJOINT_SECTION = {
    **SEQ_FIELDS, "sessions": {"name": "hist_time", "gap": 1800, "max_sessions": 4, "session_len": 10},
    "field_layers": [{"out": 16, "aggregation": "attention", "context": "x0", "hidden": 4, "sigma": "relu",
                      "attention_hidden": 16}],
    "layers": [{"out": 64, "dynamic": True, "context": "x0", "hidden": 4, "sigma": "relu", "form": "decomp",
                "rank": 16, "w0": True}, 64],
    "encoder": ["self_attention", "homo_dpo"], "decoder": ["kfatt", "hetero_dpo"], "heads": 2, "kernel_size": 3,
    "homo_generator": "se", "hetero_generator": "se", "se_ratio": 4, "kfatt_mode": "freq",
    "activation": "relu", "norm": None, "field_norm": "layernorm", "residual": True, "dropout": 0.2}


def _sequence_models():
    return [
        _m("din", "DIN", "seq-dpn", seq_section([], ["target_attention"]), {"movielens-100k": 18_186},
           ("Table 5", "DIN"), note="SeqDPN with no encoder and DIN's target attention as the decoder"),
        _m("din-heter", "DIN + Heter", "seq-dpn", seq_section([], ["target_attention", "hetero_dpo"]),
           {"movielens-100k": 25_646}, ("Table 5", "DIN + Heter"),
           note="the DINHeter architecture (target attention and HeteroDPO, no encoder)"),
        _m("sdpn", "SDPN (Homo encoder, Heter decoder)", "seq-dpn", seq_section(["homo_dpo"], ["hetero_dpo"]),
           {"movielens-100k": 19_529}, ("Table 5", "SDPN"),
           note="Table 4's last row (no self-attention) is Table 5's SDPN"),
        _m("dien", "DIEN", "dien", dien_section(), {"movielens-100k": 27_201}, ("Table 5", "DIEN"),
           note="GRU interest extractor with DIEN's auxiliary loss, AUGRU interest evolution"),
        _m("dien-heter", "DIEN + Heter", "dien-heter", dien_section(heter=True),
           {"movielens-100k": 34_661}, ("Table 5", "DIEN + Heter"),
           note="DIEN's evolved interest beside a HeteroDPO from the query over the extractor's states"),
        _m("dyjoint", "DyJoint", "dyjoint", DYJOINT_SECTION, {"movielens-100k": 49_253}, None,
           data={"timestamps": True},
           note="the paper gives DyJoint no number on public data (Table 5 has no DyJoint row), so there is "
                "none to show; sessions of hist_time (the loader's timestamps option, only for this row)"),
    ]


# -- protocols -------------------------------------------------------------------------------------
TABLE1_LRS = (3e-3, 1e-2, 3e-2)   # Adam at batch 4096 on 7-9k training rows: 2-3 steps an epoch
PAPER_SETTING = {"embed_dim": 10, "batch_size": 4096, "epochs": 40, "patience": 3}

SETTING_TEXT = ("Setting (§3.1): embedding 10 for every field, hidden layers with BatchNorm and ReLU, no dropout, "
                "Adam at batch 4096, no weight decay; at most 40 epochs, early stopping when validation AUC has "
                "not improved for 3 epochs, the best epoch's model is scored on the test split.")
SMALL_DATA = ("Read with care: the paper trains on the full data (App. B.1: MovieLens-tag 2.0M tuples, Criteo "
              "about 45M records; 7:2:1 as here), these samples have 12,800 and 10,000 rows. In the "
              "MovieLens-tag sample 70% of the test rows carry a tag never seen in training (26% an unseen "
              "movie, 14% an unseen user); in the Criteo sample 41% of the test split's categorical values fall "
              "in the rare / missing bucket (min count 10). So what the paper's models mostly learn, the "
              "embeddings, is barely learnable here, and at batch 4096 an epoch is 2-3 Adam steps: each model's "
              "AUC comes from the few frequent ids it fits before it overfits. The test splits (1,280 and 1,000 "
              "rows) alone give an AUC a sampling standard error of about 0.015 and 0.02; the rows are the same "
              "for every model, so that error is not in the ± columns (seeds), but it bounds how far an "
              "ordering seen on these rows carries to other rows. The paper's gaps between models are mostly "
              "0.001-0.01 with std about 1e-3; here the std over seeds alone is 0.003-0.03, so only an effect "
              "several times the paper's could show.")

PROTOCOLS = {
    "table1": {"title": "Table 1: feature-based models (§3.1 setting)", "table": "Table 1",
               "datasets": ["ml-tag", "criteo", "frappe", "movielens-100k"], "setting": PAPER_SETTING,
               "lrs": TABLE1_LRS,
               "models": _table1_models(),
               "about": SETTING_TEXT + " Learning rate per model: the best validation AUC of seed 1 among "
                        + ", ".join(f"{x:g}" for x in TABLE1_LRS) + " (the paper searched it and does not give "
                        "it), then seeds 1-5 at that rate. MovieLens-tag models are 300-300 (Table 2a's baseline, "
                        "whose numbers Table 1's MovieLens-tag DNN row repeats), Criteo's 400-400-400. Avazu "
                        "(Table 1's third dataset) is not among the datasets available here. frappe and "
                        "MovieLens-100K are not in the paper's Table 1: they run in the same setting (400-400-400, "
                        "FieldDPN 64-64) as two more, larger samples (about 60k training rows each, 15 Adam steps "
                        "an epoch), with no paper numbers beside them; frappe is split 7:2:1, MovieLens-100K "
                        "8:1:1 (its loader's AutoInt split, ratings 4-5 positive, 1-2 negative, 3 dropped).",
               "reading": SMALL_DATA + " frappe and MovieLens-100K (about 60k training rows, 7-10 fields) "
                          "have no paper numbers; on both the five models land within 0.008-0.009 AUC of each "
                          "other with seed stds of 0.001-0.003: FieldDPN first on frappe and last on "
                          "MovieLens-100K, FM first on MovieLens-100K, FeatureDPN in the middle on both (no "
                          "gain over the DNN beyond 2 standard errors)."},
    "table2a": {"title": "Table 2a: weight-generate functions (one dynamic layer as fc1)", "table": "Table 2a",
                "datasets": ["ml-tag"], "setting": PAPER_SETTING, "models": _table2a_models(),
                "about": SETTING_TEXT + " The first layer of the 300-300 MLP is replaced by one DyLinear "
                         "(context x0) with the generator named; learning rates: the Table 1 search's "
                         "(DNN's for the MLPs, FeatureDPN's for the dynamic models).",
                "reading": SMALL_DATA},
    "table2b": {"title": "Table 2b: dynamic layers and contexts", "table": "Table 2b", "datasets": ["ml-tag"],
                "setting": PAPER_SETTING, "models": _table2b_models(),
                "about": SETTING_TEXT + " fc1 / fc2 / fc1 + fc2 of the 300-300 MLP replaced by full DyLinear "
                         "layers (l = 4, σ = softmax) with the contexts named; x0 / tag read the input embeddings, "
                         "z0 / z tag embeddings of the contexts' own (FeatureDPN(context_embeddings=True)). "
                         "Learning rates: the Table 1 search's (FeatureDPN's for the dynamic models).",
                "reading": SMALL_DATA},
    "table2c": {"title": "Table 2c: field-based DPN aggregations, parameters and CPU time", "table": "Table 2c",
                "datasets": ["ml-tag"], "setting": PAPER_SETTING, "models": _table2c_models(),
                "about": SETTING_TEXT + " Two field layers of 100 (Field-DNN: 100-100 and 200-200, implicit "
                         "only), one generator shared by the fields (l = 4, σ = softmax), context (x0, previous "
                         "layer), the classifier on the flattened field outputs. Learning rates: the Table 1 "
                         "search's (FieldDPN's for the field models). CPU s / epoch is process CPU time at one "
                         "torch thread over the run's epochs (training plus scoring the validation split); the "
                         "paper's column is TensorFlow on 12 cores over the full data, so only the ratios "
                         "between rows compare.",
                "reading": SMALL_DATA},
    "sequence": {"title": "Sequence models (Table 5's rows) on MovieLens-100K histories", "table": "Table 5",
                 "datasets": ["movielens-100k"],
                 "setting": {"embed_dim": 16, "batch_size": 1024, "epochs": 20, "patience": 2,
                             "lr": 1e-3, "sequences": True, "max_seq_len": 20},
                 "models": _sequence_models(),
                 "about": "Setting: the shipped movielens config's (embedding 16, Adam lr 1e-3, batch 1024, "
                          "head MLP 64-64 with dropout 0.2, early stopping with patience 2, at most 20 epochs); "
                          "behaviours: each user's 20 most recent earlier ratings (movie and its first genre), "
                          "the candidate movie and its genres as the query. The paper's Table 5 is Amazon "
                          "Electronics in KFAtt's setting, which is not among the datasets here: its numbers are shown "
                          "for the rows, not as a target. DIEN / DIEN + Heter read the same histories newest first "
                          "(GRU with the auxiliary loss, then AUGRU); DyJoint also reads each behaviour's "
                          "timestamp (hist_time) to cut the history into sessions (30-minute gap, at most 4 x "
                          "10). The DIEN, DIEN + Heter and DyJoint runs, first made before the engine served those "
                          "models, were trained again once it did (2026-12-02, `--rerun-unserved`, on an Intel "
                          "Xeon where the first runs were on an AMD EPYC), so every row has the engine check: "
                          "DIEN's and DIEN + Heter's test AUCs came out the same to the last digit, DyJoint's "
                          "moved by up to 0.005 per seed (seed 5 stopped at epoch 7 instead of 12: torch's CPU "
                          "kernels round differently on the two CPUs, tests/test_checkpoints.py, and early "
                          "stopping amplifies that), its mean from 0.8505 to 0.8492.",
                 "reading": "Read with care: the paper's Amazon Electronics set has 1.69M instances (App. B.1) "
                            "and a different task (will the user review this item; negatives sampled); "
                            "MovieLens-100K has 72,855 rated rows after dropping rating 3, 76% of them positive, "
                            "and its label is a rating threshold, not an interaction. Table 5's gaps "
                            "(DIN + Heter 0.054 above DIN) are not a target at this size and on this task. What the "
                            "numbers show: the three recurrent / session models (DIEN, DIEN + Heter, DyJoint) sit "
                            "together about 0.004-0.005 above DIN, DIN + Heter and SDPN (1-2 of their seed stds; "
                            "they also train longer, best epoch about 9-11 against 6-8). Table 5 has DIEN 0.038 "
                            "above DIN but below DIN + Heter and SDPN; here DIEN is above those two (clearly above "
                            "DIN + Heter, within 2 standard errors of SDPN; DIEN + Heter clearly above both), so "
                            "the paper's order of the attention rows against DIEN is not reproduced. Heter adds nothing "
                            "measurable on either base (DIN −0.0006, DIEN +0.0006, within one std), where Table 5 "
                            "has +0.054 and +0.002. DyJoint (no public-data number in the paper) is not above DIEN "
                            "+ Heter: its sessions, KFAtt decoder and dynamic head buy nothing measurable on "
                            "20-rating MovieLens histories."},
}
PAPER_PROTOCOLS = list(PROTOCOLS)


def section_for(model: dict, dataset: str) -> dict:
    """The config section of ``model`` on ``dataset`` (``{"per_dataset": {dataset: section}}`` where
    the model's shape depends on the dataset)."""
    s = model["section"]
    return s["per_dataset"][dataset] if "per_dataset" in s else s


# -- report helpers -------------------------------------------------------------------------------
def mean_std(xs) -> tuple:
    """(mean, sample std); std 0.0 for one value."""
    xs = list(xs)
    if not xs:
        raise ValueError("mean_std of no values")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt_ms(m, s, digits=4) -> str:
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def fmt_params(n) -> str:
    """1234 -> '1.2k', 101401 -> '101k' (the paper's style), 1764391 -> '1.76M'."""
    if n < 1000:
        return str(int(n))
    if n < 10_000:
        return f"{n / 1000:.1f}k"
    if n < 1_000_000:
        return f"{round(n / 1000)}k"
    return f"{n / 1e6:.2f}M"


def compare(a: tuple, b: tuple) -> str:
    """'>' / '<' when mean a differs from mean b by more than 2 standard errors of the difference
    (a, b: (mean, std, n)), else '≈'."""
    (ma, sa, na), (mb, sb, nb) = a, b
    if na < 2 or nb < 2:
        return "?"
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb)
    if abs(ma - mb) <= 2 * se:
        return "≈"
    return ">" if ma > mb else "<"


def rank_order(pairs) -> list:
    """Names ordered best first by value: pairs of (name, value)."""
    return [n for n, _ in sorted(pairs, key=lambda p: -p[1])]


def kendall_tau(xs, ys) -> float:
    """Kendall's tau-a of two equally long score lists (1: same order, -1: reversed)."""
    n = len(xs)
    if n < 2:
        return float("nan")
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            a, b = xs[i] - xs[j], ys[i] - ys[j]
            s += (a > 0) - (a < 0) if b > 0 else ((a < 0) - (a > 0) if b < 0 else 0)
    return s / (n * (n - 1) / 2)


def markdown_table(header, rows, align=None) -> list:
    """Lines of a Markdown table; ``align``: per column 'l' or 'r' (default: first l, rest r)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def replace_section(text: str, name: str, body: str, before: str | None = None) -> str:
    """``text`` with the block between ``<!-- name:begin -->`` and ``<!-- name:end -->`` set to
    ``body``; a new block goes before the ``<!-- before:begin -->`` marker when there is one, else at
    the end. Everything outside the block is kept byte for byte."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n\n{body.strip()}\n\n{end}\n"
    i = text.find(begin)
    if i >= 0:
        j = text.find(end, i)
        if j < 0:
            raise ValueError(f"{begin} without {end}")
        j += len(end)
        if text[j:j + 1] == "\n":
            j += 1
        return text[:i] + block + text[j:]
    if before:
        k = text.find(f"<!-- {before}:begin -->")
        if k >= 0:
            return text[:k] + block + "\n" + text[k:]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block
