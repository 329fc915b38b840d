"""Build tests/golden/v1/opset2-field/ and v1/opset2-seq/: small opset-2 model.bin files (format
version 1), a batch each, and the engine's outputs.

Run by hand, once, when opset 2 is released:  DPN_ISA=ref python tests/golden/make_v1_opset2.py
Never by the tests, and never again: like v1/, these files pin what opset 2 means (docs/format.md §6).
Outputs are recorded with the reference kernels, after the engine has been checked against PyTorch.

field: a FieldDPN over sparse, multi_hot and dense fields (one dense field projected to the field
width) with an attention-aggregated layer (per-field generators, 2 heads) and a self-aggregated
layer with the implicit Field-DNN part (shared generator), per-field LayerNorm and residual, and a
parallel dynamic feature layer.
seq: a SeqDPN with two sequence fields (one sharing the candidate's table, one truncating), encoder
self-attention + HomoDPO, decoder target attention + HeteroDPO, a profile field; the batch has
empty, full and over-long histories.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
SEED = 20261127


def _randomize(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
        model.classifier.weight.mul_(4.0)
    return model.eval()


def build_field():
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(SEED)
    schema = dnn.Schema([
        dnn.SparseField("user", vocab=30, dim=4, policy="hash"),
        dnn.SparseField("item", vocab=20, dim=4, policy="oov_bucket"),
        dnn.MultiHotField("genre", vocab=9, dim=4, pooling="mean", max_len=5, policy="hash"),
        dnn.DenseField("price", dim=1),
    ])
    model = dnn.FieldDPN(schema, [
        dnn.FieldLayerSpec(4, aggregation="attention", hidden=3, sigma="relu", heads=2,
                           attention_hidden=5),
        dnn.FieldLayerSpec(4, aggregation="self", context="prev", hidden=2, sigma="sigmoid",
                           shared=True, implicit=True),
    ], [dnn.LayerSpec(6, dynamic=True, context="x0", hidden=3, sigma="softmax")],
        combine="parallel", activation="relu", norm="layernorm", residual=True)
    return _randomize(model, SEED + 1)


def batch_field(n=17):
    rng = np.random.default_rng(SEED)
    user = rng.integers(0, 30, n)
    user[[1, 4]] = [-3, 31]
    item = rng.integers(0, 20, n)
    item[[2, 5]] = [20, -1]
    genre = rng.integers(0, 9, (n, 5))
    genre[rng.random((n, 5)) < 0.4] = -1
    genre[3] = -1
    return {"user": user.astype(np.int64), "item": item.astype(np.int64),
            "genre": genre.astype(np.int64), "price": rng.standard_normal(n).astype(np.float32)}


def build_seq():
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(SEED + 2)
    schema = dnn.Schema([
        dnn.SparseField("item", vocab=40, dim=4, policy="hash"),
        dnn.SparseField("cat", vocab=7, dim=4, policy="oov_bucket"),
        dnn.SparseField("user", vocab=25, dim=3, policy="hash"),
        dnn.SequenceField("hist_item", vocab=40, dim=4, max_len=6, table="item"),
        dnn.SequenceField("hist_cat", vocab=7, dim=4, max_len=6, policy="hash", truncate=True),
    ])
    model = dnn.SeqDPN(schema, sequence=["hist_item", "hist_cat"], candidate=["item", "cat"],
                       encoder=["self_attention", "homo_dpo"],
                       decoder=["target_attention", "hetero_dpo"], heads=2, kernel_size=3,
                       att_hidden=6, layers=[8, 5])
    model = _randomize(model, SEED + 3)
    with torch.no_grad():
        model.classifier.weight.mul_(6.0)                      # spread the logits
    return model


def batch_seq(n=13):
    rng = np.random.default_rng(SEED + 4)
    lengths = rng.integers(0, 7, n)
    lengths[[0, 1]] = [0, 6]                                   # an empty and a full history
    pos = np.arange(6)[None, :] < lengths[:, None]
    hist = rng.integers(0, 40, (n, 6))
    hist_item = np.where(pos, hist, -1)
    hist_cat = np.concatenate([np.where(pos, hist % 7, -1), rng.integers(0, 7, (n, 2))], axis=1)
    hist_cat[4, :] = -1                                        # over-long input truncated; an empty row
    return {"item": rng.integers(0, 40, n).astype(np.int64),
            "cat": rng.integers(-2, 9, n).astype(np.int64),
            "user": rng.integers(0, 25, n).astype(np.int64),
            "hist_item": hist_item.astype(np.int64), "hist_cat": hist_cat.astype(np.int64)}


def write(name, model, batch, force, opset=2):
    import torch
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import load

    here = os.path.join(ROOT, name)
    os.makedirs(here, exist_ok=True)
    out_bin = os.path.join(here, "model.bin")
    if os.path.exists(out_bin) and not force:
        sys.exit(f"{out_bin} exists; golden files are never regenerated")
    tmp_bin = out_bin + ".tmp"
    torch_export.save(model, tmp_bin)
    engine = load(tmp_bin)
    with torch.no_grad():
        ref = model(batch).numpy()
    logits = engine.predict(batch, logits=True)
    probs = engine.predict(batch)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    assert np.ptp(logits) > 1.0, "logits too flat to be a useful golden test"
    with open(tmp_bin, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"DPNINFER" and struct.unpack_from("<I", raw, 8)[0] == 1
    n = struct.unpack_from("<Q", raw, 32)[0]
    assert json.loads(raw[128:128 + n])["opset"] == opset
    save_outputs(name, tmp_bin, batch, probs, logits)


def save_outputs(name, tmp_bin, batch, probs, logits, **extra):
    """Move the checked model into ROOT/name/model.bin and record its batch and outputs."""
    here = os.path.join(ROOT, name)
    out_bin = os.path.join(here, "model.bin")
    os.replace(tmp_bin, out_bin)
    np.savez(os.path.join(here, "batch.npz"), **batch)
    np.save(os.path.join(here, "expected.npy"), probs)
    np.save(os.path.join(here, "expected_logits.npy"), logits)
    print(name, json.dumps({"model.bin bytes": os.path.getsize(out_bin), "rows": len(probs), **extra,
                            "logits": [round(float(x), 4) for x in logits]}))


def parse_args(argv, doc):
    """--force, after checking that the reference kernels run (golden outputs are theirs)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite existing golden files (don't)")
    args = ap.parse_args(argv)
    from dpn_infer.engine import cpu_info

    if cpu_info()["selected"] != "ref":
        sys.exit("run with DPN_ISA=ref: golden outputs are recorded with the reference kernels")
    return args


def main(argv=None):
    args = parse_args(argv, __doc__)
    write("v1/opset2-field", build_field(), batch_field(), args.force)
    write("v1/opset2-seq", build_seq(), batch_seq(), args.force)


if __name__ == "__main__":
    main()
