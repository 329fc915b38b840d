"""What a crafted file can make one call take: small files whose attributes once made predict
allocate gigabytes (wide sequence values x 256 rows, field scratch in chunks of 16 huge rows,
unbounded hidden sizes) are bounded or refused at load, naming the node. Each runs in a child
process under an address-space limit, so a regression fails a test instead of the machine."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dpn_infer.converters import format as F
from dpn_infer.engine import load

LIMIT = 1 << 30  # address space of the child (bytes): far above what these calls need once bounded


def _write(path, fields, nodes, tensors, opset=2):
    meta = {"producer": "dpn_infer review tests", "opset": opset, "model_type": "custom",
            "schema": {"fields": fields}, "graph": {"nodes": nodes, "output": nodes[-1]["output"]},
            "extra": {}}
    F.write(path, meta, {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()})
    return str(path)


def _linear(name, inp, width):
    return ({"op": "linear", "name": name, "inputs": [inp], "output": "logit",
             "attrs": {"in": width, "out": 1, "act": "identity"},
             "params": {"weight": name + ".w", "bias": name + ".b"}},
            {name + ".w": np.full((1, width), 0.01), name + ".b": np.zeros(1)})


def _run_limited(path, batch_npz):
    """Loads and predicts in a child limited to LIMIT bytes of address space; returns its verdict."""
    script = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
        import numpy as np
        from dpn_infer.engine import ModelFormatError, load
        try:
            m = load(sys.argv[1])
        except ModelFormatError as e:
            print("RESULT load-refused", e); sys.exit(0)
        with np.load(sys.argv[2]) as z:
            b = {k: z[k] for k in z.files}
        try:
            out = m.predict(b)
            print("RESULT ok", out.shape, bool(np.isfinite(out).all()))
        except BaseException as e:
            print("RESULT", type(e).__name__, e)
    """)
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1",
           "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-c", script, path, batch_npz, str(LIMIT)],
                       capture_output=True, text=True, timeout=120, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, (p.returncode, p.stdout[-1500:], p.stderr[-1500:])
    return lines[-1][7:]


def test_wide_sequence_values_are_bounded_per_call(tmp_path):
    """A 256-byte table with max_len 65536 x dim 64 makes a 4M-float value per row: 256-row blocks
    needed 4 GB (16 GB at dim 256) for any batch of >= 256 rows, whatever the ids. Blocks now shrink
    with the rows' width, so the call fits in a small fraction of the limit."""
    T, d = 1 << 16, 64
    fields = [{"name": "hist", "kind": "sequence", "dim": d, "vocab": 1, "policy": "hash",
               "max_len": T, "truncate": True}]
    head, ht = _linear("head", "pooled", d)
    nodes = [{"op": "seq_embedding", "name": "emb", "inputs": [], "output": "E",
              "attrs": {"field": "hist"}, "params": {"table": "emb.table"}},
             {"op": "seq_length", "name": "len", "inputs": [], "output": "len",
              "attrs": {"field": "hist"}, "params": {}},
             {"op": "seq_pool", "name": "pool", "inputs": ["E", "len"], "output": "pooled",
              "attrs": {"max_len": T}, "params": {}}, head]
    path = _write(tmp_path / "wide.bin", fields, nodes, {"emb.table": np.ones((1, d)), **ht})
    B = 100
    h = np.full((B, 3), -1, np.int64)
    h[1:, 0] = 0
    np.savez(tmp_path / "b.npz", hist=h)
    r = _run_limited(path, str(tmp_path / "b.npz"))
    assert r == "ok (100,) True", r
    out = load(path).predict({"hist": h}, logits=True)        # and the answer is still right
    np.testing.assert_allclose(out, np.where(np.arange(B) > 0, 0.01 * d, 0.0), rtol=1e-5, atol=1e-6)


def test_row_floats_bound_is_checked_at_load(tmp_path):
    """A chain of full-width seq_add nodes: each op's width is legal, their sum per row is not."""
    T, d = 1 << 16, 256
    fields = [{"name": "hist", "kind": "sequence", "dim": d, "vocab": 1, "policy": "hash",
               "max_len": T}]
    nodes = [{"op": "seq_embedding", "name": "emb", "inputs": [], "output": "v0",
              "attrs": {"field": "hist"}, "params": {"table": "emb.table"}},
             {"op": "seq_length", "name": "len", "inputs": [], "output": "len",
              "attrs": {"field": "hist"}, "params": {}}]
    for i in range(1, 6):
        nodes.append({"op": "seq_add", "name": f"add{i}", "inputs": [f"v{i - 1}", f"v{i - 1}", "len"],
                      "output": f"v{i}", "attrs": {"max_len": T}, "params": {}})
    head, ht = _linear("head", "len", 1)
    nodes.append(head)
    path = _write(tmp_path / "chain.bin", fields, nodes, {"emb.table": np.ones((1, d)), **ht})
    from dpn_infer.engine import ModelFormatError
    with pytest.raises(ModelFormatError, match=r"seq_add 'add3'.*floats per row"):
        load(path)


def test_field_scratch_is_bounded(tmp_path):
    """field_dylinear with attention over 2^16 context fields of width 1 and attention_hidden 254
    (a 3 KB file): about 2^24 floats of scratch per row, which the op took in chunks of 16 rows
    (1 GB a call). Now a row that large goes alone (and a layer whose one row needs more than the
    bound is refused at load, naming the node)."""
    t2, da = 1 << 16, 254
    fields = [{"name": "x", "kind": "dense", "dim": 1}, {"name": "z", "kind": "dense", "dim": t2}]
    fd = {"op": "field_dylinear", "name": "fd", "inputs": ["x", "z"], "output": "y",
          "attrs": {"fields": 1, "in": 1, "out": 1, "context_fields": t2, "context": 1,
                    "aggregation": "attention", "attention_hidden": da, "generator": "mlp",
                    "hidden": 1, "sigma": "identity"},
          "params": {"g1_weight": "g1w", "g1_bias": "g1b", "g2_weight": "g2w", "g2_bias": "g2b",
                     "att_weight": "aw", "att_bias": "ab", "att_query": "aq"}}
    rng = np.random.default_rng(0)
    tens = {"g1w": rng.standard_normal((1, 1, 1)), "g1b": np.zeros((1, 1)),
            "g2w": rng.standard_normal((1, 2, 1)), "g2b": np.zeros((1, 2)),
            "aw": rng.standard_normal((da, 1)), "ab": np.zeros(da), "aq": rng.standard_normal((1, da))}
    head, ht = _linear("head", "y", 1)
    nodes = [{"op": "dense_input", "name": "in.x", "inputs": [], "output": "x",
              "attrs": {"field": "x"}, "params": {}},
             {"op": "dense_input", "name": "in.z", "inputs": [], "output": "z",
              "attrs": {"field": "z"}, "params": {}}, fd, head]
    path = _write(tmp_path / "fd.bin", fields, nodes, {**tens, **ht})
    np.savez(tmp_path / "b.npz", x=np.ones((16, 1), np.float32),
             z=rng.standard_normal((16, t2)).astype(np.float32))
    r = _run_limited(path, str(tmp_path / "b.npz"))
    assert r == "ok (16,) True" or (r.startswith("load-refused") and "field_dylinear 'fd'" in r
                                    and "scratch" in r), r


def test_homo_dpo_hidden_is_bounded(tmp_path):
    """homo_dpo's hidden is not tied to any input width: 2^20 made 256 rows of scratch 1 GB."""
    T, n, l = 4, 1, 1 << 20
    fields = [{"name": "hist", "kind": "sequence", "dim": n, "vocab": 3, "policy": "hash", "max_len": T}]
    head, ht = _linear("head", "pooled", n)
    nodes = [{"op": "seq_embedding", "name": "emb", "inputs": [], "output": "E",
              "attrs": {"field": "hist"}, "params": {"table": "emb.table"}},
             {"op": "seq_length", "name": "len", "inputs": [], "output": "len",
              "attrs": {"field": "hist"}, "params": {}},
             {"op": "homo_dpo", "name": "homo", "inputs": ["E", "len"], "output": "H",
              "attrs": {"max_len": T, "dim": n, "kernel": 1, "hidden": l, "sigma": "relu"},
              "params": {"g1_weight": "g1w", "g1_bias": "g1b", "g2_weight": "g2w", "g2_bias": "g2b"}},
             {"op": "seq_pool", "name": "pool", "inputs": ["H", "len"], "output": "pooled",
              "attrs": {"max_len": T}, "params": {}}, head]
    path = _write(tmp_path / "homo.bin", fields, nodes,
                  {"emb.table": np.ones((3, n)), "g1w": np.zeros((l, n)), "g1b": np.zeros(l),
                   "g2w": np.zeros((n, l)), "g2b": np.zeros(n), **ht})
    np.savez(tmp_path / "b.npz", hist=np.zeros((300, T), np.int64))
    r = _run_limited(path, str(tmp_path / "b.npz"))
    assert r.startswith("load-refused") and "homo_dpo 'homo'" in r, r


def test_target_attention_scratch_is_bounded(tmp_path):
    """target_attention with d = 1 and hidden 2^16 over 2048 positions: a 1 MB file whose pass
    scratch was 2048 x 2^16 floats (512 MB); refused at load now, naming the node."""
    T, d, u = 2048, 1, 1 << 16
    fields = [{"name": "item", "kind": "sparse", "dim": d, "vocab": 3, "policy": "hash"},
              {"name": "hist", "kind": "sequence", "dim": d, "vocab": 3, "policy": "hash", "max_len": T}]
    head, ht = _linear("head", "A", d)
    nodes = [{"op": "embedding", "name": "q", "inputs": [], "output": "q",
              "attrs": {"field": "item"}, "params": {"table": "q.table"}},
             {"op": "seq_embedding", "name": "emb", "inputs": [], "output": "E",
              "attrs": {"field": "hist"}, "params": {"table": "emb.table"}},
             {"op": "seq_length", "name": "len", "inputs": [], "output": "len",
              "attrs": {"field": "hist"}, "params": {}},
             {"op": "target_attention", "name": "ta", "inputs": ["q", "E", "len"], "output": "A",
              "attrs": {"max_len": T, "dim": d, "hidden": u, "act": "sigmoid"},
              "params": {"fc1_weight": "w1", "fc1_bias": "b1", "fc2_weight": "w2", "fc2_bias": "b2"}},
             head]
    path = _write(tmp_path / "ta.bin", fields, nodes,
                  {"q.table": np.ones((3, d)), "emb.table": np.ones((3, d)), "w1": np.zeros((u, 4 * d)),
                   "b1": np.zeros(u), "w2": np.zeros((1, u)), "b2": np.zeros(1), **ht})
    np.savez(tmp_path / "b.npz", item=np.zeros(4, np.int64), hist=np.zeros((4, T), np.int64))
    r = _run_limited(path, str(tmp_path / "b.npz"))
    assert r.startswith("load-refused") and "target_attention 'ta'" in r, r
