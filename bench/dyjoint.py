"""DyJoint (the paper's production model) in the engine against PyTorch eager, one run.

    python bench/dyjoint.py [--config dyjoint|dyjoint-small] [--batches 1,16,256] [--threads 2]
                            [--seconds 1.0] [--torch-max-batch 256] [--json PATH]

Config "dyjoint" is issue 17's production shape: 96 fields x 16 (two of them the candidate item and
category) through one field layer (summation aggregation, generator hidden l = 4) and the DyMLP
1024-512-256 (the first layer dynamic on x0, l = 4), 10 sessions x 25 behaviours of width 32 (item +
category histories, 16 each; a new session after a 30-minute gap), encoder self-attention (2 heads) +
HomoDPO (k = 3) per session, decoder KFAtt-freq + HeteroDPO, SE generators (down ratio 1/4), the
interest (32) and a 150-d dense vector joined after the first feature layer. "dyjoint-small" is the
same with 24 fields, DyMLP 256-128-64 and 4 sessions x 10 behaviours (a quick check).
Histories: 0..300 behaviours per row (uniform), gaps of 1 minute or 2 hours, so rows fill 0..10
sessions. Runners: the engine (fp32 file) and PyTorch eager on the dpn_infer.nn module, samples/s
and p50 latency of one call; ratios within one run are what to quote (the machine may be shared:
the load average is printed). No ONNX peer yet (converters/onnx_export.py has no DyJoint export).
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
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--torch-max-batch", type=int, default=256)
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import torch

    import dpn_infer

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = build(a.config)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dpn_bench_dyj_") as d:
        path = os.path.join(d, "model.bin")
        dpn_infer.save(model, path)
        size = os.path.getsize(path)
        eng = dpn_infer.load(path, max_alloc_bytes=1 << 34)
        print(f"{a.config}: built and saved in {time.perf_counter() - t0:.1f} s, model.bin "
              f"{size / 2 ** 20:.1f} MiB; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        for B in [int(b) for b in a.batches.split(",")]:
            batch = make_batch(a.config, B, rng)
            tb = {k: torch.from_numpy(v) for k, v in batch.items()}
            z = eng.predict(batch, logits=True, threads=a.threads)
            p50_e, n_e = timed(lambda: eng.predict(batch, threads=a.threads), a.seconds)
            row = {"batch": B, "engine_p50_ms": 1e3 * p50_e, "engine_samples_s": B / p50_e}
            if B <= a.torch_max_batch:
                with torch.no_grad():
                    ref = model(tb).numpy()
                    p50_t, _ = timed(lambda: model(tb), a.seconds)
                row.update(torch_p50_ms=1e3 * p50_t, torch_samples_s=B / p50_t, speedup=p50_t / p50_e,
                           max_abs_logit_diff=float(np.max(np.abs(z - ref))))
            rows.append(row)
            print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in row.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": a.config, "threads": a.threads, "rows": rows,
                       "loadavg": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
    main()
