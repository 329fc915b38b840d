"""Add the session / recurrent models to tests/golden/checkpoints/ (DIEN, DIENHeter, DyJoint), the
way make_checkpoints.py made the others: a small checkpoint, a batch and its PyTorch logits each.

Run by hand, once:  python tests/golden/make_checkpoints_sessions.py
Never again for these files (it refuses to overwrite them): they pin that checkpoint.pt files of
these classes keep loading (state_dict keys, config) and computing the same logits. The batches hold
an empty history, gaps exactly at the session threshold and histories longer than the caps.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoints import SEED, _randomize, write  # noqa: E402


def _schema():
    from dpn_infer import nn as dnn

    return dnn.Schema([
        dnn.SparseField("user", vocab=30, dim=4, policy="hash"),
        dnn.SparseField("item", vocab=20, dim=4, policy="oov_bucket"),
        dnn.SequenceField("hist", vocab=20, dim=4, max_len=12, policy="oov_bucket", truncate=True,
                          table="item"),
        dnn.TimestampField("hist_time", "hist", gap=60, max_sessions=3, session_len=3),
        dnn.DenseField("visual", dim=2),
    ])


def batch_for(name, n=9):
    rng = np.random.default_rng(SEED + 7)
    hist = rng.integers(0, 20, (n, 12))
    steps = rng.choice([1, 60, 61, 1000], (n, 12))        # 60: exactly the gap, same session
    times = 10_000 + np.cumsum(steps, 1)
    lengths = rng.integers(0, 13, n)
    lengths[0] = 0
    pad = np.arange(12)[None, :] >= lengths[:, None]
    hist[pad], times[pad] = -1, -1
    b = {"user": rng.integers(0, 30, n), "item": rng.integers(0, 20, n), "hist": hist, "hist_time": times,
         "visual": rng.standard_normal((n, 2)).astype(np.float32)}
    if name != "dyjoint":
        del b["hist_time"], b["visual"]
    return {k: v.astype(np.int64) if v.dtype.kind == "i" else v for k, v in b.items()}


def build_models():
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(SEED)
    sch = _schema()
    plain = dnn.Schema([f for f in sch if f.name not in ("hist_time", "visual")])
    models = {
        "dien": dnn.DIEN(plain, ["hist"], ["item"], order="newest_first", layers=[6]),
        "dien_heter": dnn.DIENHeter(plain, ["hist"], ["item"], hetero_out=3, layers=[5]),
        "dyjoint": dnn.DyJoint(sch, ["hist"], ["item"], field_layers=[{"out": 3}],
                               layers=[{"out": 6, "dynamic": True}, 5], heads=2,
                               homo_generator="sep", hetero_generator="sep", se_ratio=2),
    }
    return {k: _randomize(m, SEED + i) for i, (k, m) in enumerate(models.items())}


if __name__ == "__main__":
    write(build_models(), batch_for, "--force" in sys.argv[1:])
