"""DyJoint (the paper's production model) in the engine against PyTorch eager, one run.

    python bench/dyjoint.py [--config dyjoint|dyjoint-small] [--batches 1,16,256] [--threads 2]
                            [--runners engine,ort-kron,torch] [--seconds 1.0] [--torch-max-batch 256]
                            [--request 1x500] [--json PATH]

Config "dyjoint" is issue 17's production shape: 96 fields x 16 (two of them the candidate item and
category) through one field layer (summation aggregation, generator hidden l = 4) and the DyMLP
1024-512-256 (the first layer dynamic on x0, l = 4), 10 sessions x 25 behaviours of width 32 (item +
category histories, 16 each; a new session after a 30-minute gap), encoder self-attention (2 heads) +
HomoDPO (k = 3) per session, decoder KFAtt-freq + HeteroDPO, SE generators (down ratio 1/4), the
interest (32) and a 150-d dense vector joined after the first feature layer. "dyjoint-small" is the
same with 24 fields, DyMLP 256-128-64 and 4 sessions x 10 behaviours (a quick check).
Histories: 0..300 behaviours per row (uniform), gaps of 1 minute or 2 hours, so rows fill 0..10
sessions. Runners: the engine (fp32 file, [B, T] ids and timestamps: it segments), ort-kron (ONNX
Runtime on the Kronecker-form export, `threads` intra-op threads, one inter-op) and PyTorch eager
on the dpn_infer.nn module; samples/s and p50 latency of one call; ratios within one run are what to
quote (the machine may be shared: the load average is printed). The export takes sessions already
built ([B, S, L] ids, converters/onnx_export.py: segmentation is data-dependent), made here by
segment_sessions outside the timed call: a favour to ONNX Runtime, which neither sorts nor cuts.

--request USERSxCANDIDATES[,...] adds ranking requests: each user's profile fields and histories
once, its candidates' item, category and visual vector (`predict(cands, shared=users, groups=...)`,
engine-shared) against the same rows broadcast to one batch (engine-broadcast, and ort-kron on it
when that runner is on); the logits of the two engine forms must agree.

GFLOP/s (the engine's, and its share of the FMA probe's peak, dpn_infer._testing.probe_fma_gflops)
count each batch's useful arithmetic (flops_per_row): the sessions its rows actually fill, not the
S x L slots.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

VOCAB = 10_000
CONFIGS = {
    "dyjoint": {"fields": 96, "dim": 16, "mlp": [1024, 512, 256], "S": 10, "L": 25, "T": 300,
                "dense": 150, "heads": 2, "l": 4},
    "dyjoint-small": {"fields": 24, "dim": 16, "mlp": [256, 128, 64], "S": 4, "L": 10, "T": 60,
                      "dense": 150, "heads": 2, "l": 4},
}


def build(config, seed=0):
    import torch

    from dpn_infer.nn import (DenseField, DyJoint, Schema, SequenceField, SparseField,
                              TimestampField)

    c = CONFIGS[config]
    d = c["dim"]
    torch.manual_seed(seed)
    fields = [SparseField("item", VOCAB, d), SparseField("cat", 100, d)]
    fields += [SparseField(f"p{i}", VOCAB, d) for i in range(c["fields"] - 2)]
    fields += [SequenceField("hist_item", VOCAB, d, c["T"], table="item", truncate=True),
               SequenceField("hist_cat", 100, d, c["T"], table="cat", truncate=True),
               TimestampField("hist_time", "hist_item", gap=1800, max_sessions=c["S"],
                              session_len=c["L"]),
               DenseField("visual", c["dense"])]
    layers = [{"out": c["mlp"][0], "dynamic": True, "context": "x0", "hidden": c["l"]}] + c["mlp"][1:]
    return DyJoint(Schema(fields), ["hist_item", "hist_cat"], ["item", "cat"],
                   field_layers=[{"out": d, "aggregation": "summation", "hidden": c["l"], "shared": True}],
                   layers=layers, heads=c["heads"], kernel_size=3, homo_generator="se",
                   hetero_generator="se", se_ratio=4, kfatt_mode="freq").eval()


def make_batch(config, B, rng):
    c = CONFIGS[config]
    T = c["T"]
    out = {"item": rng.integers(0, VOCAB, B), "cat": rng.integers(0, 100, B)}
    out.update({f"p{i}": rng.integers(0, VOCAB, B) for i in range(c["fields"] - 2)})
    hist = rng.integers(0, VOCAB, (B, T))
    n = rng.integers(0, T + 1, B)
    pad = np.arange(T)[None, :] >= n[:, None]
    times = np.cumsum(rng.choice(np.array([60, 7200]), (B, T), p=[0.9, 0.1]), 1)
    out["hist_item"] = np.where(pad, -1, hist)
    out["hist_cat"] = np.where(pad, -1, hist % 100)
    out["hist_time"] = np.where(pad, -1, times)
    out["visual"] = rng.standard_normal((B, c["dense"])).astype(np.float32)
    return {k: np.ascontiguousarray(v) if v.dtype == np.float32 else v.astype(np.int64)
            for k, v in out.items()}


CANDIDATE_SIDE = ("item", "cat", "visual")


def make_request(config, users, per_user, rng):
    """(cands, shared, groups, broadcast): `users` users with `per_user` candidates each."""
    u = make_batch(config, users, rng)
    c = make_batch(config, users * per_user, rng)
    shared = {k: v for k, v in u.items() if k not in CANDIDATE_SIDE}
    cands = {k: v for k, v in c.items() if k in CANDIDATE_SIDE}
    groups = np.arange(users + 1, dtype=np.int64) * per_user
    broadcast = dict(cands, **{k: np.ascontiguousarray(np.repeat(v, per_user, axis=0))
                               for k, v in shared.items()})
    return cands, shared, groups, broadcast


def run_requests(a, model, eng, sess, shapes, rng):
    rows = []
    for users, per_user in shapes:
        cands, shared, groups, broadcast = make_request(a.config, users, per_user, rng)
        z_b = eng.predict(broadcast, logits=True, threads=a.threads)
        z_s = eng.predict(cands, shared=shared, groups=groups, logits=True, threads=a.threads)
        p50_b, _ = timed(lambda: eng.predict(broadcast, threads=a.threads), a.seconds)
        p50_s, _ = timed(lambda: eng.predict(cands, shared=shared, groups=groups, threads=a.threads),
                         a.seconds)
        row = {"users": users, "candidates": per_user, "shared_p50_ms": 1e3 * p50_s,
               "shared_requests_s": users / p50_s, "broadcast_p50_ms": 1e3 * p50_b,
               "x_broadcast": p50_b / p50_s, "max_abs_shared_vs_broadcast": float(np.max(np.abs(z_s - z_b)))}
        if sess is not None:
            pre, _ = presegment(model, broadcast)
            p50_o, _ = timed(lambda: sess.run(["logit"], pre), a.seconds)
            row.update(ort_broadcast_p50_ms=1e3 * p50_o, x_ort=p50_o / p50_s)
        rows.append(row)
        print("  request " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in row.items()))
    return rows


def flops_per_row(config, lengths):
    """FLOP per row by part, {part: FLOP}, for session lengths [B, S] (numpy): multiply-adds count
    2, activations and softmax exponentials are left out. The encoder and decoder count only the
    kept behaviours (and the sessions holding any); the rest is per row."""
    c = CONFIGS[config]
    d, l, H, k = c["dim"], c["l"], c["heads"], 3
    D = dq = 2 * d                                   # behaviours: item + category; query likewise
    x0 = c["fields"] * d
    n = lengths.sum(1).mean()                        # kept behaviours per row
    n2 = (lengths.astype(np.float64) ** 2).sum(1).mean()
    active = (lengths > 0).sum(1).mean()             # sessions holding a behaviour
    h = D // 4                                       # SE bottleneck, se_ratio 4
    attn = 8 * D * D * n + 4 * D * n2                # Q, K, V, O projections; scores and A·V per session
    homo = active * (2 * D * h + 2 * h * k * D) + 2 * k * D * n   # kernels per session, conv
    kfatt = 4 * dq * D + 2 * dq * H + 4 * D * D * n + 4 * D * n + active * 2 * D * H + 2 * D * D
    hetero = 2 * D * h + 2 * dq * D * (h + 1) + 2 * h * D
    field = c["fields"] * (2 * d * d * (l + 1) + 2 * d * l + 2 * l * d)
    m0 = c["mlp"][0]
    mlp = 2 * x0 * m0 * (l + 1) + 2 * x0 * l + 2 * l * m0          # the dynamic first layer
    w = m0 + D + c["dense"]
    for m in c["mlp"][1:]:
        mlp += 2 * w * m
        w = m
    return {"encoder": float(attn + homo), "decoder": float(kfatt + hetero), "field": float(field),
            "dymlp": float(mlp + 2 * w)}


def presegment(model, batch):
    """`batch` as the ONNX graph takes it: the sequence fields as sessions [B, S, L], no timestamps."""
    import torch

    from dpn_infer.nn.sessions import field_sessions

    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    s = field_sessions(model.timestamps, tb[model.sequence[0]], tb[model.timestamps.name])
    out = {k: v for k, v in batch.items() if k != model.timestamps.name}
    out[model.sequence[0]] = s.ids.numpy()
    for n in model.sequence[1:]:
        out[n] = s.take(tb[n]).numpy()
    return out, s.lengths.numpy()


def ort_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def timed(fn, seconds):
    fn()                                  # warm up
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="dyjoint", choices=sorted(CONFIGS))
    ap.add_argument("--batches", default="1,16,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runners", default="engine,ort-kron,torch")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--torch-max-batch", type=int, default=256)
    ap.add_argument("--request", default="", help="USERSxCANDIDATES, comma-separated (e.g. 1x500)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.request.split(",") if s]
        assert all(len(s) == 2 and min(s) > 0 for s in shapes)
    except (ValueError, AssertionError):
        ap.error(f"--request: USERSxCANDIDATES[,...], e.g. 1x500; got {a.request!r}")
    runners = a.runners.split(",")
    bad = sorted(set(runners) - {"engine", "ort-kron", "torch"})
    if bad or "engine" not in runners:
        ap.error(f"--runners: engine and any of ort-kron, torch; got {a.runners!r}")

    import torch

    import dpn_infer
    from dpn_infer._testing import probe_fma_gflops
    from dpn_infer.converters.onnx_export import export_onnx

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = build(a.config)
    rng = np.random.default_rng(0)
    rows = []
    peak = probe_fma_gflops(a.threads)
    with tempfile.TemporaryDirectory(prefix="dpn_bench_dyj_") as d:
        path = os.path.join(d, "model.bin")
        dpn_infer.save(model, path)
        size = os.path.getsize(path)
        eng = dpn_infer.load(path, max_alloc_bytes=1 << 34)
        print(f"{a.config}: built and saved in {time.perf_counter() - t0:.1f} s, model.bin "
              f"{size / 2 ** 20:.1f} MiB; FMA probe {peak:.1f} GFLOP/s ({a.threads} threads); "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        sess = None
        if "ort-kron" in runners:
            t0 = time.perf_counter()
            onnx_path = os.path.join(d, "model.onnx")
            export_onnx(model, onnx_path)
            sess = ort_session(onnx_path, a.threads)
            print(f"  ort-kron: exported and loaded in {time.perf_counter() - t0:.1f} s, model.onnx "
                  f"{os.path.getsize(onnx_path) / 2 ** 20:.1f} MiB")
        for B in [int(b) for b in a.batches.split(",")]:
            batch = make_batch(a.config, B, rng)
            pre, lengths = presegment(model, batch)
            parts = flops_per_row(a.config, lengths)
            fpr = sum(parts.values())
            z = eng.predict(batch, logits=True, threads=a.threads)
            p50_e, _ = timed(lambda: eng.predict(batch, threads=a.threads), a.seconds)
            row = {"batch": B, "behaviours_per_row": float(lengths.sum(1).mean()),
                   "mflop_per_row": fpr / 1e6, "engine_p50_ms": 1e3 * p50_e, "engine_samples_s": B / p50_e,
                   "engine_gflops": B * fpr / p50_e / 1e9, "pct_fma_peak": 100 * B * fpr / p50_e / 1e9 / peak}
            if sess is not None:
                (got,) = sess.run(["logit"], pre)
                p50_o, _ = timed(lambda: sess.run(["logit"], pre), a.seconds)
                row.update(ort_p50_ms=1e3 * p50_o, ort_samples_s=B / p50_o, x_ort=p50_o / p50_e,
                           ort_max_abs_logit_diff=float(np.max(np.abs(z - got))))
            if "torch" in runners and B <= a.torch_max_batch:
                tb = {k: torch.from_numpy(v) for k, v in batch.items()}
                with torch.no_grad():
                    ref = model(tb).numpy()
                    p50_t, _ = timed(lambda: model(tb), a.seconds)
                row.update(torch_p50_ms=1e3 * p50_t, torch_samples_s=B / p50_t, speedup=p50_t / p50_e,
                           max_abs_logit_diff=float(np.max(np.abs(z - ref))))
            row["mflop_by_part"] = {k: v / 1e6 for k, v in parts.items()}
            rows.append(row)
            print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else
                                   f"{k} {' '.join(f'{p}={x:.3g}' for p, x in v.items())}"
                                   if isinstance(v, dict) else f"{k} {v}" for k, v in row.items()))
        requests = run_requests(a, model, eng, sess, shapes, rng)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": a.config, "threads": a.threads, "fma_peak_gflops": peak, "rows": rows,
                       "requests": requests, "loadavg": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
    main()
