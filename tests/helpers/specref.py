"""A plain numpy (float64) interpreter of model.bin's metadata graph, written from docs/format.md §4-§5.

It is a third oracle next to the engine and the PyTorch reference: when the engine and ``dpn_infer.nn``
disagree, running this on the converted file says whether the converter or the engine is off.
It trusts its input (no validation beyond what the math needs)."""
from __future__ import annotations

from typing import Mapping

import numpy as np


def _act(name, x):
    if name in (None, "identity"):
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    raise ValueError(f"unknown act {name!r}")


def _rows(field, ids):
    v = int(field["vocab"])
    ids = np.asarray(ids, dtype=np.int64)
    pol = field.get("policy", "hash")
    if pol == "hash":
        return np.remainder(ids, v)
    bad = (ids < 0) | (ids >= v)
    if pol == "oov_bucket":
        return np.where(bad, v, ids)
    if bad.any():
        raise ValueError(f"field '{field['name']}': id out of range")
    return ids


def field_value(field, table, value):
    kind = field["kind"]
    if kind == "dense":
        x = np.asarray(value, dtype=np.float64)
        return x.reshape(x.shape[0], -1)
    table = np.asarray(table, dtype=np.float64)
    ids = np.asarray(value, dtype=np.int64)
    if kind == "sparse":
        return table[_rows(field, ids)]
    valid = ids != -1
    rows = _rows(field, np.where(valid, ids, 0))
    vecs = table[rows] * valid[..., None]
    out = vecs.sum(1)
    if field.get("pooling", "mean") == "mean":
        out = out / np.maximum(valid.sum(1, keepdims=True), 1)
    return out


def _dylinear(a, p, x, z):
    m, c = int(a["in"]), int(a["out"])
    gen = a.get("generator", "mlp")
    if gen == "mlp":
        h = z @ p["g1_weight"].T + p["g1_bias"]
        sig = a.get("sigma", "identity")
        if sig == "softmax":
            h = h - h.max(1, keepdims=True)
            h = np.exp(h)
            h = h / h.sum(1, keepdims=True)
        else:
            h = _act(sig, h)
    else:
        h = z
    t = h @ p["g2_weight"].T + p["g2_bias"]          # [B, P]
    bias = t[:, -c:]
    wpart = t[:, :-c]
    B = x.shape[0]
    if a.get("form", "full") == "full":
        H = int(a.get("heads", 1))
        mh, ch = m // H, c // H
        y = np.zeros((B, c))
        for g in range(H):
            Wg = wpart[:, g * mh * ch:(g + 1) * mh * ch].reshape(B, mh, ch)
            y[:, g * ch:(g + 1) * ch] = np.einsum("bi,bij->bj", x[:, g * mh:(g + 1) * mh], Wg)
    else:
        r = int(a["rank"])
        phi = wpart.reshape(B, r, r)
        u = x @ p["P"]                                   # Pᵀ x    [B, r]
        u = np.einsum("bi,bij->bj", u, phi)              # phiᵀ Pᵀ x
        y = u @ p["Q"]                                   # Qᵀ ...  [B, c]
        if a.get("w0", False):
            y = y + x @ p["W0"]
    return _act(a.get("act"), y + bias)


def _sigma(name, x):
    if name == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return _act(name, x)


def _field_dylinear(a, p, x, z):
    """docs/format.md §5 `field_dylinear`, materializing W_i per (row, field)."""
    t1, m, c, t2, n = (int(a[k]) for k in ("fields", "in", "out", "context_fields", "context"))
    B = x.shape[0]
    X, Z = x.reshape(B, t1, m), z.reshape(B, t2, n)
    y = np.zeros((B, t1, c))
    if a.get("dynamic", True):
        agg = a["aggregation"]
        if agg == "summation" and a.get("exclude_self", False):
            C = (Z.sum(1, keepdims=True) - Z) / (t2 - 1)
        elif agg == "summation":
            C = np.repeat(Z.mean(1, keepdims=True), t1, 1)
        elif agg == "self":
            C = Z
        elif agg == "concat":
            C = np.repeat(Z.reshape(B, 1, t2 * n), t1, 1)
        else:
            u = np.tanh(Z @ p["att_weight"].T + p["att_bias"])          # [B, t2, da]
            w = _sigma("softmax", np.einsum("bjd,id->bij", u, p["att_query"]))
            C = np.einsum("bij,bjn->bin", w, Z)
        G = p["g2_weight"].shape[0]
        grp = (lambda q: np.repeat(q, t1, 0)) if G == 1 else (lambda q: q)
        if a.get("generator", "mlp") == "mlp":
            h = _sigma(a["sigma"], np.einsum("bin,iln->bil", C, grp(p["g1_weight"])) + grp(p["g1_bias"]))
        else:
            h = C
        t = np.einsum("bil,ipl->bip", h, grp(p["g2_weight"])) + grp(p["g2_bias"])
        H = int(a.get("heads", 1))
        ws = H * (m // H) * (c // H)
        W = t[..., :ws].reshape(B, t1, H, m // H, c // H)
        y = np.einsum("bihk,bihkc->bihc", X.reshape(B, t1, H, m // H), W).reshape(B, t1, c) + t[..., ws:]
    if a.get("implicit", False):
        y = y + np.einsum("ik,bkm,mc->bic", p["field_weight"], X, p["feature_weight"])
        if not a.get("dynamic", True):
            y = y + p["bias"]
    if a.get("norm", "none") == "layernorm":
        mu = y.mean(-1, keepdims=True)
        var = ((y - mu) ** 2).mean(-1, keepdims=True)
        y = (y - mu) / np.sqrt(var + float(a["eps"])) * p["ln_weight"] + p["ln_bias"]
    y = _act(a.get("act"), y)
    if a.get("residual", False):
        y = y + X
    return y.reshape(B, t1 * c)


def run(meta: Mapping, tensors: Mapping[str, np.ndarray], batch: Mapping, logits=True) -> np.ndarray:
    """Evaluate the graph of ``meta`` on ``batch``; returns float64 ``[B]`` logits (or probabilities)."""
    fields = {f["name"]: f for f in meta["schema"]["fields"]}
    vals = {}
    for node in meta["graph"]["nodes"]:
        op = node["op"]
        a = node.get("attrs", {})
        p = {k: np.asarray(tensors[v], dtype=np.float64) for k, v in node.get("params", {}).items()}
        ins = [vals[i] for i in node.get("inputs", [])]
        if op == "embedding":
            f = fields[a["field"]]
            y = field_value(f, p["table"], batch[f["name"]])
        elif op == "dense_input":
            f = fields[a["field"]]
            y = field_value(f, None, batch[f["name"]])
        elif op == "concat":
            y = np.concatenate(ins, axis=1)
        elif op == "linear":
            y = ins[0] @ p["weight"].T
            if "bias" in p:
                y = y + p["bias"]
            y = _act(a.get("act"), y)
        elif op == "dylinear":
            y = _dylinear(a, p, ins[0], ins[1])
        elif op == "layernorm":
            x = ins[0]
            mu = x.mean(1, keepdims=True)
            var = ((x - mu) ** 2).mean(1, keepdims=True)
            y = _act(a.get("act"), (x - mu) / np.sqrt(var + float(a["eps"])) * p["weight"] + p["bias"])
        elif op == "cross":
            x0, xl = ins
            y = x0 * (xl @ p["weight"])[:, None] + p["bias"] + xl
        elif op == "act":
            y = _act(a.get("act"), ins[0])
        elif op == "field_dylinear":
            y = _field_dylinear(a, p, ins[0], ins[1])
        else:
            raise ValueError(f"specref: unknown op {op!r}")
        vals[node["output"]] = y
    out = vals[meta["graph"]["output"]][:, 0]
    return out if logits else 1.0 / (1.0 + np.exp(-out))
