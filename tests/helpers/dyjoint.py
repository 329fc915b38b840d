"""Random DyJoint models and session batches for the engine parity tests (tests/test_dyjoint_parity.py).

A spec is a plain dict (printable in a failure): the session caps S x L and gap, the behaviour and
query fields' dims, the encoder / decoder parts, heads, KFAtt mode, generators ("mlp" / "se" / "sep"), the Conv1D encoder, the
DyMLP's field and feature layers, a dense field or none, and the batch (B rows of T columns, the
gaps drawn from {0, gap - 1, gap, gap + 1, a long one} so session boundaries fall exactly at the
threshold, rows with no history, unsorted timestamps and -1 padding anywhere)."""
from __future__ import annotations

import copy

import numpy as np
import torch
from hypothesis import strategies as st

from dpn_infer.nn import (DenseField, DyJoint, Schema, SequenceField, SparseField,
                          TimestampField)


def schema(spec):
    d, S, L = spec["dim"], spec["S"], spec["L"]
    f = [SparseField("user", 9, d), SparseField("item", 23, d),
         SequenceField("hist", 23, d, 4, truncate=True, table="item",
                       policy="hash")]
    if spec["two_seqs"]:
        f += [SparseField("cat", 6, d, policy="oov_bucket"),
              SequenceField("hist_cat", 6, d, 4, truncate=True, policy="oov_bucket")]
    f.append(TimestampField("hist_time", "hist", gap=spec["gap"], max_sessions=S, session_len=L))
    if spec["dense"]:
        f.append(DenseField("visual", spec["dense"]))
    return Schema(f)


def build(spec):
    torch.manual_seed(spec["seed"])
    seqs = ["hist", "hist_cat"] if spec["two_seqs"] else ["hist"]
    cand = ["item", "cat"] if spec["two_seqs"] else ["item"]
    m = DyJoint(schema(spec), seqs, cand, field_layers=spec["field_layers"], layers=spec["layers"],
                encoder=spec["encoder"], decoder=spec["decoder"],
                encoder_residual=spec["residual"], heads=spec["heads"],
                kernel_size=spec["kernel_size"], homo_generator=spec["gen"], hetero_generator=spec["gen"],
                se_ratio=2, kfatt_mode=spec["mode"], interest_dim=spec["interest_dim"])
    with torch.no_grad():   # larger attention scores than the default init gives
        for mod in (m.decoder.kfatt, m.encoder.self_attention):
            if mod is not None:
                for lin in (mod.q, mod.k):
                    lin.weight.mul_(spec.get("score_scale", 3.0))
    return m.eval()


def make_batch(spec, B, seed):
    rng = np.random.default_rng(seed)
    T, gap = spec["T"], spec["gap"]
    steps = np.array([0, max(gap - 1, 0), gap, gap + 1, 10 * gap + 7], dtype=np.int64)
    times = np.cumsum(rng.choice(steps, size=(B, T)), axis=1) + rng.integers(0, 1000, (B, 1))
    if spec["shuffle"]:     # unsorted timestamps: the engine sorts them as torch does
        times = np.take_along_axis(times, rng.permuted(np.tile(np.arange(T), (B, 1)), axis=1), 1)
    hist = rng.integers(-3, 30, (B, T))        # hash policy: ids outside [0, vocab) too
    pad = rng.random((B, T)) < spec["pad"]
    if B > 1:
        pad[0] = True                           # an empty history
    hist[pad] = -1
    times = np.where(pad, -1, times).astype(np.int64)
    b = {"user": rng.integers(0, 9, B), "item": rng.integers(0, 23, B), "hist": hist.astype(np.int64),
         "hist_time": times}
    if spec["two_seqs"]:
        cat = rng.integers(-1, 8, (B, T))       # a -1 at a kept behaviour: a zero embedding
        b["cat"] = rng.integers(0, 8, B)
        b["hist_cat"] = np.where(pad, -1, cat).astype(np.int64)
    if spec["dense"]:
        b["visual"] = rng.standard_normal((B, spec["dense"])).astype(np.float32)
    return {k: np.ascontiguousarray(v, dtype=v.dtype if v.dtype == np.float32 else np.int64)
            for k, v in b.items()}


def torch_batch(batch, dtype=torch.float32):
    return {k: torch.from_numpy(v).to(dtype) if v.dtype == np.float32 else torch.from_numpy(v)
            for k, v in batch.items()}


def reference(model, batch):
    with torch.no_grad():
        return model(torch_batch(batch)).numpy()


def truth(model, batch, trials=3, rel=2.0 ** -20):
    """(float64 logits, per-row spread under parameter perturbations of relative size ``rel``)."""
    b64 = torch_batch(batch, torch.float64)
    with torch.no_grad():
        t = copy.deepcopy(model).double()(b64).numpy()
    g = torch.Generator().manual_seed(12345)
    spread = np.zeros_like(t)
    for _ in range(trials):
        m = copy.deepcopy(model).double()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 + rel * (2 * torch.rand(p.shape, generator=g, dtype=p.dtype) - 1))
            spread = np.maximum(spread, np.abs(m(b64).numpy() - t))
    return t, spread


ENCODERS = [["self_attention", "homo_dpo"], ["self_attention"], ["homo_dpo"], ["self_attention", "conv1d"],
            ["homo_dpo", "conv1d"], ["self_attention", "homo_dpo", "conv1d"]]
DECODERS = [["kfatt", "hetero_dpo"], ["kfatt"], ["hetero_dpo"]]


@st.composite
def specs(draw, max_S=10, max_L=25):
    dim = draw(st.sampled_from([2, 4, 6]))
    two = draw(st.booleans())
    heads = draw(st.sampled_from([h for h in (1, 2, 3) if (dim * (2 if two else 1)) % h == 0]))
    enc = draw(st.sampled_from(ENCODERS + [[]]))
    fl = draw(st.sampled_from([[], [{"out": 3, "aggregation": "summation"}],
                               [{"out": dim, "aggregation": "attention", "attention_hidden": 4}]]))
    layers = draw(st.sampled_from([[8], [{"out": 8, "dynamic": True}, 5], [6, {"out": 4, "dynamic": True,
                                                                             "context": "prev"}]]))
    return {"seed": draw(st.integers(0, 2 ** 16)), "S": draw(st.integers(1, max_S)),
            "L": draw(st.integers(1, max_L)), "gap": draw(st.sampled_from([0, 1, 30, 1800])),
            "dim": dim, "two_seqs": two, "heads": heads, "encoder": enc, "residual": not enc or
            draw(st.booleans()), "decoder": draw(st.sampled_from(DECODERS)),
            "mode": draw(st.sampled_from(["base", "freq"])), "gen": draw(st.sampled_from(["mlp", "se", "sep"])),
            "kernel_size": draw(st.sampled_from([1, 3, 5])), "field_layers": fl, "layers": layers,
            "interest_dim": draw(st.sampled_from([None, 5])), "dense": draw(st.sampled_from([0, 3])),
            "T": draw(st.integers(0, 60)), "pad": draw(st.sampled_from([0.0, 0.3])),
            "shuffle": draw(st.booleans()), "B": draw(st.sampled_from([1, 7, 33]))}
