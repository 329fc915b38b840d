"""Build tests/golden/checkpoints/: small training checkpoints (``dpn_infer.nn.save_checkpoint``) of
every model class, a batch each, and the PyTorch logits for it.

Run by hand, once:  python tests/golden/make_checkpoints.py
Never by the tests, and never again for these files: they were written by dpn_infer 0.1.0 before the
layer code of dpn_infer.nn was shared between the models, and pin that users' checkpoint.pt files
(state_dict keys and config) keep loading and computing the same logits. It refuses to overwrite
existing files unless given --force.

Per model NAME: ``NAME.pt`` (the checkpoint) and ``NAME.npz`` (``batch/<field>`` arrays and
``logits``, float32, PyTorch eval-mode forward). The models cover every submodule kind the
checkpoints can hold: static / dynamic (full, decomp, field-list context, prev) feature layers,
BatchNorm (running statistics) and LayerNorm, field layers with projections and named contexts in
both combines, CrossNet with and without a deep tower, SeqDPN and DINHeter.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
SEED = 20261201


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
        for name, b in model.named_buffers():     # BatchNorm running statistics
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                b.fill_(7)
        model.classifier.weight.mul_(4.0)
    return model.eval()


def _flat_schema():
    from dpn_infer import nn as dnn

    return dnn.Schema([
        dnn.SparseField("user", vocab=30, dim=4, policy="hash"),
        dnn.SparseField("item", vocab=20, dim=4, policy="oov_bucket"),
        dnn.MultiHotField("genre", vocab=9, dim=4, pooling="mean", max_len=5, policy="hash"),
        dnn.DenseField("price", dim=1),
        dnn.DenseField("ctx", dim=3),
    ])


def _flat_batch(n=11):
    rng = np.random.default_rng(SEED)
    user = rng.integers(0, 30, n)
    user[[1, 4]] = [-3, 31]
    item = rng.integers(0, 20, n)
    item[[2, 5]] = [20, -1]
    genre = rng.integers(0, 9, (n, 5))
    genre[rng.random((n, 5)) < 0.4] = -1
    genre[3] = -1
    return {"user": user.astype(np.int64), "item": item.astype(np.int64),
            "genre": genre.astype(np.int64), "price": rng.standard_normal(n).astype(np.float32),
            "ctx": rng.standard_normal((n, 3)).astype(np.float32)}


def build_models():
    import torch
    from dpn_infer import nn as dnn

    L = dnn.LayerSpec
    torch.manual_seed(SEED)
    out = {}
    out["feature_dpn"] = dnn.FeatureDPN(_flat_schema(), [
        L(8, dynamic=True, context="x0", hidden=3, sigma="relu", heads=2),
        L(6, dynamic=True, context=["genre", "price"], hidden=2, sigma="softmax", form="decomp",
          rank=2, w0=True),
        L(5, dynamic=True, context="prev", generator="linear"),
        L(4),
    ], activation="tanh", norm="batchnorm")
    out["dnn"] = dnn.DNN(_flat_schema(), [7, 5], activation="relu", norm="layernorm")
    out["crossnet"] = dnn.CrossNet(_flat_schema(), num_cross=2, hidden=[6], norm="batchnorm")
    out["crossnet_shallow"] = dnn.CrossNet(_flat_schema(), num_cross=1)
    F = dnn.FieldLayerSpec
    out["field_dpn_stacked"] = dnn.FieldDPN(_flat_schema(), [
        F(4, aggregation="attention", hidden=3, heads=2, attention_hidden=5),
        F(3, aggregation="summation", context=["genre", "user"], generator="linear", shared=True),
        F(3, aggregation="self", context="prev", implicit=True, dynamic=False),
    ], [L(6, dynamic=True, context=["item"], hidden=2), L(4)], combine="stacked",
        activation="relu", norm="layernorm", residual=True, feature_norm="batchnorm")
    out["field_dpn_parallel"] = dnn.FieldDPN(_flat_schema(), [
        F(4, aggregation="concat", hidden=2, sigma="sigmoid"),
        F(4, aggregation="summation", exclude_self=True, implicit=True),
    ], [L(5, dynamic=True, context="x0", hidden=3)], combine="parallel", residual=True)

    seq_schema = dnn.Schema([
        dnn.SparseField("item", vocab=40, dim=4, policy="hash"),
        dnn.SparseField("cat", vocab=7, dim=4, policy="oov_bucket"),
        dnn.SparseField("user", vocab=25, dim=3, policy="hash"),
        dnn.SequenceField("hist_item", vocab=40, dim=4, max_len=6, table="item"),
        dnn.SequenceField("hist_cat", vocab=7, dim=4, max_len=6, policy="hash", truncate=True),
    ])
    out["seq_dpn"] = dnn.SeqDPN(seq_schema, sequence=["hist_item", "hist_cat"],
                                candidate=["item", "cat"], heads=2, kernel_size=3, att_hidden=6,
                                homo_generator="se", se_ratio=2,
                                layers=[L(6, dynamic=True, context="x0", hidden=2), 5],
                                norm="layernorm")
    out["din_heter"] = dnn.DINHeter(seq_schema, ["hist_item", "hist_cat"], ["item", "cat"],
                                    profile=["user"], att_hidden=5, hetero_out=3, layers=[6])
    return {k: _randomize(m, SEED + i) for i, (k, m) in enumerate(out.items())}


def batch_for(name):
    if not name.startswith(("seq", "din")):
        return _flat_batch()
    n = 9
    rng = np.random.default_rng(SEED + 4)
    lengths = rng.integers(0, 7, n)
    lengths[[0, 1]] = [0, 6]                                   # an empty and a full history
    pos = np.arange(6)[None, :] < lengths[:, None]
    hist_item = np.where(pos, rng.integers(0, 40, (n, 6)), -1)
    hist_cat = np.concatenate([np.where(pos, hist_item % 7, -1), rng.integers(0, 7, (n, 2))], axis=1)
    return {"item": rng.integers(0, 40, n).astype(np.int64),
            "cat": rng.integers(-2, 9, n).astype(np.int64),
            "user": rng.integers(0, 25, n).astype(np.int64),
            "hist_item": hist_item.astype(np.int64), "hist_cat": hist_cat.astype(np.int64)}


def write(models, batch_for, force=False):
    """NAME.pt and NAME.npz for each model (refusing to overwrite unless ``force``)."""
    import torch
    from dpn_infer import nn as dnn

    os.makedirs(HERE, exist_ok=True)
    for name, model in models.items():
        ck = os.path.join(HERE, f"{name}.pt")
        if os.path.exists(ck) and not force:
            sys.exit(f"{ck} exists; golden checkpoints are never regenerated")
        batch = batch_for(name)
        with torch.no_grad():
            logits = model(batch).numpy().astype(np.float32)
        assert np.ptp(logits) > 0.3, f"{name}: logits too flat to be a useful golden test"
        dnn.save_checkpoint(model, ck)
        np.savez(os.path.join(HERE, f"{name}.npz"), logits=logits,
                 **{f"batch/{k}": v for k, v in batch.items()})
        print(f"{name}: {os.path.getsize(ck)} bytes, logits {np.round(logits[:4], 3)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite existing golden files (don't)")
    args = ap.parse_args(argv)
    write(build_models(), batch_for, args.force)


if __name__ == "__main__":
    main()
