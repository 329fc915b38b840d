"""Build tests/golden/v1/: a small model.bin of format version 1, a batch, and the engine's outputs.

Run by hand, once, when format version 1 is released:  python tests/golden/make_v1.py
Never by the tests, and never again for v1: the committed files are the compatibility promise of
docs/format.md §6 (every later dpn_infer must load this file and give these numbers). It refuses to
overwrite existing files unless given --force.

The model: a FeatureDPN over sparse (hash, oov_bucket), multi_hot (error/mean, hash/sum) and dense
(dim 1 given as [B], dim 3) fields; two dynamic layers (full with heads=2 and context x0; decomp rank 3
with W0 and a field-list context, softmax generator) and a static layer, each followed by LayerNorm.
The outputs are recorded only after the engine has been checked against the PyTorch reference.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1")
SEED = 20240601


def build_model():
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(SEED)
    schema = dnn.Schema([
        dnn.SparseField("user", vocab=50, dim=6, policy="hash"),
        dnn.SparseField("item", vocab=40, dim=5, policy="oov_bucket"),
        dnn.MultiHotField("genre", vocab=19, dim=4, pooling="mean", max_len=6, policy="error"),
        dnn.MultiHotField("tags", vocab=30, dim=3, pooling="sum", max_len=0, policy="hash"),
        dnn.DenseField("age", dim=1),
        dnn.DenseField("feat", dim=3),
    ])                                                      # x0 width 22
    model = dnn.FeatureDPN(schema, [
        dnn.LayerSpec(12, dynamic=True, context="x0", hidden=4, sigma="relu", form="full", heads=2),
        dnn.LayerSpec(8, dynamic=True, context=["genre", "age"], hidden=3, sigma="softmax",
                      form="decomp", rank=3, w0=True),
        dnn.LayerSpec(6),
    ], activation="relu", norm="layernorm")
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
            elif name.startswith("norms.") and name.endswith(".weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif ".g2.weight" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g) * 2.0)
        model.classifier.bias.fill_(5.3)                 # centre the logits (probabilities not all ~0)
    return model.eval()


def make_batch(n=20):
    rng = np.random.default_rng(SEED)
    user = rng.integers(0, 50, n)
    user[[1, 5, 9]] = [-1, 50, -(1 << 62)]                       # hash: out of range wraps
    item = rng.integers(0, 40, n)
    item[[2, 6, 10]] = [40, -7, (1 << 62)]                       # oov_bucket: extra row
    genre = rng.integers(0, 19, (n, 6))
    genre[rng.random((n, 6)) < 0.4] = -1                          # padding anywhere
    genre[3] = -1                                                 # a row with no genre
    tags = rng.integers(-40, 60, (n, 4))
    tags[rng.random((n, 4)) < 0.3] = -1
    tags[7] = -1
    return {"user": user.astype(np.int64), "item": item.astype(np.int64),
            "genre": genre.astype(np.int64), "tags": tags.astype(np.int64),
            "age": rng.standard_normal(n).astype(np.float32),
            "feat": rng.standard_normal((n, 3)).astype(np.float32)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite existing golden files (don't)")
    args = ap.parse_args(argv)
    import torch
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import load

    os.makedirs(HERE, exist_ok=True)
    out_bin = os.path.join(HERE, "model.bin")
    if os.path.exists(out_bin) and not args.force:
        sys.exit(f"{out_bin} exists; golden files of a released version are never regenerated")
    model = build_model()
    batch = make_batch()
    tmp_bin = out_bin + ".tmp"
    torch_export.save(model, tmp_bin)
    engine = load(tmp_bin)
    with torch.no_grad():
        ref = model(batch).numpy()
    logits = engine.predict(batch, logits=True)
    probs = engine.predict(batch)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-ref.astype(np.float64))), rtol=1e-4, atol=1e-5)
    assert np.ptp(logits) > 1.0, "logits too flat to be a useful golden test"
    with open(tmp_bin, "rb") as f:
        head = f.read(12)
    assert head[:8] == b"DPNINFER" and struct.unpack("<I", head[8:12])[0] == 1
    os.replace(tmp_bin, out_bin)
    np.savez(os.path.join(HERE, "batch.npz"), **batch)
    np.save(os.path.join(HERE, "expected.npy"), probs)
    np.save(os.path.join(HERE, "expected_logits.npy"), logits)
    print(json.dumps({"model.bin bytes": os.path.getsize(out_bin), "rows": len(probs),
                      "logits": [round(float(x), 4) for x in logits]}, indent=1))


if __name__ == "__main__":
    main()
