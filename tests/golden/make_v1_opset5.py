"""Build tests/golden/v1/opset5-dien/: a small opset-5 model.bin (format version 1) with DIEN's
recurrent operators, a batch, and the engine's outputs.

Run by hand, once, when opset 5 is released:  DPN_ISA=ref python tests/golden/make_v1_opset5.py
Never by the tests, and never again: these files pin what `gru`, `dien_attention` and `augru` mean
(docs/format.md §5c, §6). Outputs are recorded with the reference kernels, after the engine has been
checked against the PyTorch model.

dien: a DIEN + Heter (so every DIEN node plus the heterogeneous DPO over the extractor's states)
over two sequence fields (one sharing the candidate's table, one truncating), read newest first
(`gru` with reverse), a profile field; the batch has empty, one-item, full and over-long histories.
"""
from __future__ import annotations

import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT]

import make_v1_opset2 as M2  # noqa: E402

SEED = 20261202


def build_dien():
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(SEED)
    schema = dnn.Schema([
        dnn.SparseField("item", vocab=40, dim=4, policy="hash"),
        dnn.SparseField("cat", vocab=7, dim=3, policy="oov_bucket"),
        dnn.SparseField("user", vocab=25, dim=3, policy="hash"),
        dnn.SequenceField("hist_item", vocab=40, dim=4, max_len=6, table="item"),
        dnn.SequenceField("hist_cat", vocab=7, dim=3, max_len=6, policy="hash", truncate=True),
    ])
    model = dnn.DIENHeter(schema, ["hist_item", "hist_cat"], ["item", "cat"], profile=["user"],
                          order="newest_first", hetero_out=5, hetero_hidden=3, layers=[8, 5])
    model = M2._randomize(model, SEED + 1)
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for rnn in (model.extractor, model.evolution):          # gates away from 1/2
            for n in ("weight_ih", "weight_hh"):
                getattr(rnn, n).copy_(torch.randn(getattr(rnn, n).shape, generator=g) * 0.5)
        model.att.weight.mul_(3.0)                              # peaked attention
        model.classifier.weight.mul_(6.0)                       # spread the logits
    return model


def batch_dien(n=13):
    rng = np.random.default_rng(SEED + 3)
    lengths = rng.integers(0, 7, n)
    lengths[[0, 1, 2]] = [0, 6, 1]                             # empty, full and one-item histories
    pos = np.arange(6)[None, :] < lengths[:, None]
    hist = rng.integers(0, 40, (n, 6))
    hist_item = np.where(pos, hist, -1)
    hist_cat = np.concatenate([np.where(pos, hist % 7, -1), rng.integers(0, 7, (n, 2))], axis=1)
    return {"item": rng.integers(0, 40, n).astype(np.int64),
            "cat": rng.integers(-2, 9, n).astype(np.int64),
            "user": rng.integers(0, 25, n).astype(np.int64),
            "hist_item": hist_item.astype(np.int64), "hist_cat": hist_cat.astype(np.int64)}


def main(argv=None):
    import torch
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import load

    args = M2.parse_args(argv, __doc__)
    name = "v1/opset5-dien"
    here = os.path.join(ROOT, name)
    os.makedirs(here, exist_ok=True)
    out_bin = os.path.join(here, "model.bin")
    if os.path.exists(out_bin) and not args.force:
        sys.exit(f"{out_bin} exists; golden files are never regenerated")
    model, batch = build_dien(), batch_dien()
    tmp_bin = out_bin + ".tmp"
    torch_export.save(model, tmp_bin)
    engine = load(tmp_bin)
    with torch.no_grad():
        ref = model(batch).numpy()
    logits, probs = engine.predict(batch, logits=True), engine.predict(batch)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    assert np.ptp(logits) > 1.0, "logits too flat to be a useful golden test"
    with open(tmp_bin, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"DPNINFER" and struct.unpack_from("<I", raw, 8)[0] == 1
    assert json.loads(raw[128:128 + struct.unpack_from("<Q", raw, 32)[0]])["opset"] == 5
    M2.save_outputs(name, tmp_bin, batch, probs, logits)


if __name__ == "__main__":
    main()
