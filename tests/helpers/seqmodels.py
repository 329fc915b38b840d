"""Random sequence models (SeqDPN / DINHeter; DIEN / DIENHeter with kind "dien" / "dien_heter" and
an "order") and behaviour batches for parity tests.

As in helpers/models.py, a model is a plain dict ("spec"): ``seq_model_specs`` draws one, ``build``
makes the torch module (randomized weights, eval mode), ``make_batch`` draws a batch in which some rows
have an empty history, some one item and some a full one (every column valid), padding (-1) stands
anywhere in a row, and (hash / oov_bucket) some ids are out of range."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

BATCH_SIZES = [1, 2, 3, 5, 7, 31, 64, 255, 257, 300]


@st.composite
def seq_model_specs(draw, kind=None):
    kind = kind or draw(st.sampled_from(["seqdpn", "seqdpn", "seqdpn", "din_heter"]))
    T = draw(st.sampled_from([1, 2, 3, 5, 8, 13, 50]))
    truncate = draw(st.booleans())
    Tin = draw(st.sampled_from([0, 1, T, T + 3] if truncate else [0, 1, T, max(1, T // 2)]))
    Tin = min(Tin, T) if not truncate else Tin
    n_seq = draw(st.integers(1, 2))
    seqs = []
    for i in range(n_seq):
        seqs.append({"name": ["hist item", "hist.cat"][i], "cand": ["item", "cat"][i],
                     "vocab": draw(st.sampled_from([1, 7, 40, 1000])),
                     "dim": draw(st.integers(1, 9)),
                     "policy": draw(st.sampled_from(["hash", "oov_bucket", "error"])),
                     "share": draw(st.booleans())})
    d = sum(s["dim"] for s in seqs)
    encoder = draw(st.sampled_from([[], ["self_attention"], ["homo_dpo"], ["self_attention", "homo_dpo"],
                                    ["conv1d"], ["self_attention", "conv1d"]]))
    decoder = draw(st.sampled_from([[], ["target_attention"], ["hetero_dpo"],
                                    ["target_attention", "hetero_dpo"]]))
    if kind == "din_heter":
        encoder, decoder = [], ["target_attention", "hetero_dpo"]
    profile = draw(st.lists(st.sampled_from(["user", "age", "tags"]), unique=True, max_size=3))
    extra_cand = "target_attention" not in decoder and draw(st.booleans())
    heads = draw(st.sampled_from([h for h in range(1, d + 1) if d % h == 0]))
    spec = {"kind": kind, "T": T, "Tin": Tin, "truncate": truncate, "seqs": seqs, "profile": profile,
            "extra_cand": extra_cand, "encoder": encoder, "decoder": decoder,
            "residual": draw(st.booleans()), "heads": heads,
            "kernel_size": draw(st.sampled_from([1, 3, 5, 7])),
            "homo_generator": draw(st.sampled_from(["mlp", "se", "sep"])),
            "hetero_generator": draw(st.sampled_from(["mlp", "se", "sep"])),
            "homo_hidden": draw(st.integers(1, 6)),
            "homo_sigma": draw(st.sampled_from(["identity", "sigmoid", "softmax", "relu"])),
            "se_ratio": draw(st.integers(1, 8)),
            "att_hidden": draw(st.integers(1, 12)), "att_act": draw(st.sampled_from(["sigmoid", "relu", "tanh"])),
            "hetero_out": draw(st.sampled_from([None, 1, 5])), "hetero_hidden": draw(st.integers(1, 6)),
            "hetero_sigma": draw(st.sampled_from(["identity", "sigmoid", "softmax", "relu"])),
            "layers": draw(st.lists(st.one_of(st.integers(1, 24), st.fixed_dictionaries(
                {"out": st.integers(1, 12), "dynamic": st.just(True),
                 "context": st.sampled_from(["x0", "prev"]), "hidden": st.integers(1, 4)})),
                max_size=2)),
            "activation": draw(st.sampled_from(["relu", "tanh", "sigmoid", "identity"])),
            "norm": draw(st.sampled_from([None, "layernorm", "batchnorm"])),
            "seed": draw(st.integers(0, 2 ** 31 - 1)),
            "B": draw(st.one_of(st.sampled_from(BATCH_SIZES), st.integers(1, 300)))}
    return spec


def fields_of(spec):
    """Field dicts (helpers/models.py style, for the non-sequence ones) plus the sequence fields."""
    out = []
    for s in spec["seqs"]:
        out.append({"name": s["cand"], "kind": "sparse", "dim": s["dim"], "vocab": s["vocab"],
                    "policy": s["policy"]})
    if spec["extra_cand"]:
        out.append({"name": "cand_x", "kind": "dense", "dim": 2})
    for p in spec["profile"]:
        out.append({"user": {"name": "user", "kind": "sparse", "dim": 3, "vocab": 20, "policy": "hash"},
                    "age": {"name": "age", "kind": "dense", "dim": 1, "as_1d": True},
                    "tags": {"name": "tags", "kind": "multi_hot", "dim": 2, "vocab": 9,
                             "policy": "oov_bucket", "pooling": "mean", "T": 4, "max_len": 0}}[p])
    for s in spec["seqs"]:
        out.append({"name": s["name"], "kind": "sequence", "dim": s["dim"], "vocab": s["vocab"],
                    "policy": s["policy"], "max_len": spec["T"], "truncate": spec["truncate"],
                    "table": s["cand"] if s["share"] else None, "T": spec["Tin"]})
    return out


def make_schema(fields):
    from dpn_infer import nn as dnn
    from helpers import models as HM

    out = []
    for f in fields:
        if f["kind"] == "sequence":
            out.append(dnn.SequenceField(f["name"], f["vocab"], f["dim"], f["max_len"], f["policy"],
                                         f["truncate"], f["table"]))
        else:
            out.extend(HM.make_schema([f]).fields)
    return dnn.Schema(out)


def build(spec):
    import torch
    from dpn_infer import nn as dnn
    from helpers import models as HM

    torch.manual_seed(spec["seed"])
    schema = make_schema(fields_of(spec))
    cand = [s["cand"] for s in spec["seqs"]] + (["cand_x"] if spec["extra_cand"] else [])
    kw = dict(profile=list(spec["profile"]), residual=spec["residual"], heads=spec["heads"],
              kernel_size=spec["kernel_size"], homo_hidden=spec["homo_hidden"],
              homo_sigma=spec["homo_sigma"], homo_generator=spec["homo_generator"],
              se_ratio=spec["se_ratio"], att_hidden=spec["att_hidden"], att_act=spec["att_act"],
              hetero_out=spec["hetero_out"], hetero_hidden=spec["hetero_hidden"],
              hetero_sigma=spec["hetero_sigma"], hetero_generator=spec.get("hetero_generator", "mlp"),
              layers=[dnn.LayerSpec(**l) if isinstance(l, dict) else l for l in spec["layers"]],
              activation=spec["activation"], norm=spec["norm"])
    seq = [s["name"] for s in spec["seqs"]]
    if spec["kind"] in ("dien", "dien_heter"):
        cls = dnn.DIENHeter if spec["kind"] == "dien_heter" else dnn.DIEN
        model = cls(schema, seq, cand, profile=kw["profile"], order=spec.get("order", "oldest_first"),
                    **{k: kw[k] for k in ("hetero_out", "hetero_hidden", "hetero_sigma", "layers",
                                          "activation", "norm")})
    elif spec["kind"] == "din_heter":
        model = dnn.DINHeter(schema, seq, cand, **kw)
    else:
        model = dnn.SeqDPN(schema, seq, cand, encoder=spec["encoder"], decoder=spec["decoder"], **kw)
    HM.randomize_(model, spec["seed"])
    return model.eval()


def make_batch(spec, B, seed):
    from helpers import models as HM

    rng = np.random.default_rng(seed)
    fields = fields_of(spec)
    plain = [f for f in fields if f["kind"] != "sequence"]
    batch = HM.make_batch(plain, B, seed)
    Tin = spec["Tin"]
    # one padding pattern for all sequence fields (items and their categories), with forced rows:
    # empty, exactly one valid id, every column valid
    pad = rng.random((B, Tin)) < rng.uniform(0.0, 0.6)
    for b in range(B):
        r = b % 5
        if r == 0:
            pad[b] = True
        elif r == 1 and Tin:
            pad[b] = True
            pad[b, rng.integers(Tin)] = False
        elif r == 2:
            pad[b] = False
    for f in fields:
        if f["kind"] != "sequence":
            continue
        V = f["vocab"]
        ids = rng.integers(0, V, size=(B, Tin), dtype=np.int64)
        if f["policy"] != "error":
            oob = rng.random((B, Tin)) < 0.15
            ids = np.where(oob, rng.integers(V, 3 * V + 5, size=(B, Tin)), ids)
            neg = rng.random((B, Tin)) < 0.05
            ids = np.where(neg, -rng.integers(2, 3 * V + 5, size=(B, Tin)), ids)
        batch[f["name"]] = np.ascontiguousarray(np.where(pad, -1, ids), dtype=np.int64)
    return batch
