"""Ranking requests: one user (or 16) and N candidates per call, measured in one run.

    python bench/run.py --request [--quick] [--json PATH] [--markdown PATH] [--configs ml1m,criteo,seq]
                                  [--shapes 1x10,1x100,1x500,1x2000,16x100] [--threads 2]

Runners: engine-broadcast (the engine on the batch that repeats each user's fields on its
candidates' rows, as a caller without the request form does), engine-shared
(predict(cands, shared=users, groups=offsets): the user's part once per user) and
ort-kron-broadcast (ONNX Runtime on the Kronecker-form export, broadcast batch). Records add
`users`, `candidates` (per user) and `requests_per_s` (users x calls / s); p50/p99 are per call
(every request of a call waits for the whole call).

Configs (bench/run.py's shapes, with fields split into a user side and an item side):
ml1m (6 fields: 3 user, 3 item; DyLinear 64-64 on x0), criteo (39 fields: 13 user, 26 item;
DyLinear 400-400-400, the first one's context the 13 user fields, the others x0) and seq (SeqDPN:
4 profile fields and the 50-item history user-side, the candidate item and category item-side) and
dien (DIEN at bench/run.py's shape, the same sides). DyJoint's requests: bench/dyjoint.py --request.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import run as R

USER = {"ml1m": [f"f{i}" for i in range(3)], "criteo": [f"f{i}" for i in range(13)],
        "seq": [f"p{i}" for i in range(4)] + ["hist_item", "hist_cat"],
        "dien": [f"p{i}" for i in range(4)] + ["hist_item", "hist_cat"]}
SHAPES = "1x10,1x100,1x500,1x2000,16x100"
RUNNERS = ["engine-broadcast", "engine-shared", "ort-kron-broadcast"]


def build(config):
    """bench/run.py's model; criteo's first DyLinear reads the user fields as its context."""
    if config != "criteo":
        return R.build(config)
    import torch

    from dpn_infer.nn import FeatureDPN, LayerSpec, Schema, SparseField

    n_fields, dim, widths, l = R.CONFIGS[config]
    torch.manual_seed(0)
    schema = Schema([SparseField(f"f{i}", vocab=R.VOCAB, dim=dim, policy="hash") for i in range(n_fields)])
    layers = [LayerSpec(w, dynamic=True, context=USER[config] if k == 0 else "x0", hidden=l, sigma="relu")
              for k, w in enumerate(widths)]
    return FeatureDPN(schema, layers, activation="relu").eval()


def make_request(config, users, per_user, seed):
    rng = np.random.default_rng(seed)
    u = R.make_batch(config, users, rng)
    c = R.make_batch(config, users * per_user, rng)
    shared = {k: v for k, v in u.items() if k in USER[config]}
    cands = {k: v for k, v in c.items() if k not in USER[config]}
    groups = np.arange(users + 1, dtype=np.int64) * per_user
    broadcast = dict(cands, **{k: np.repeat(v, per_user, axis=0) for k, v in shared.items()})
    return cands, shared, groups, broadcast


def measure_config(config, shapes, threads_list, seconds, min_calls, max_calls, runners):
    import dpn_infer
    from dpn_infer.converters.onnx_export import export_onnx

    records = []
    model = build(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{config}.bin"
        dpn_infer.save(model, path)
        engine = dpn_infer.load(path)
        sessions = {}
        if "ort-kron-broadcast" in runners:
            import onnxruntime as ort

            onnx_path = Path(tmp) / f"{config}.kron.onnx"
            export_onnx(model, onnx_path, R.make_batch(config, 2, np.random.default_rng(1)), form="kron")
            for t in threads_list:
                so = ort.SessionOptions()
                so.intra_op_num_threads = t
                so.inter_op_num_threads = 1
                sessions[t] = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        for threads in threads_list:
            for users, per_user in shapes:
                cands, shared, groups, broadcast = make_request(config, users, per_user, per_user)
                fns = {
                    "engine-broadcast": lambda b: engine.predict(broadcast, threads=threads),
                    "engine-shared": lambda b: engine.predict(cands, shared=shared, groups=groups,
                                                              threads=threads),
                    "ort-kron-broadcast": lambda b: sessions[threads].run(None, broadcast),
                }
                for r in runners:
                    time.sleep(0.05)
                    rec = {"config": config, "users": users, "candidates": per_user,
                           "batch": users * per_user, "threads": threads, "runner": r}
                    rec.update(R.measure(fns[r], broadcast, seconds, min_calls, max_calls,
                                         rows=users * per_user))
                    rec["requests_per_s"] = rec["samples_per_s"] / per_user
                    records.append(rec)
                    print(f"{config:<8}{users:>4} x{per_user:<6}{threads:>4}  {r:<20}"
                          f"{rec['requests_per_s']:>12,.0f}{rec['p50_ms']:>10.3f}{rec['p99_ms']:>10.3f}")
                    sys.stdout.flush()
        sessions.clear()  # ONNX Runtime's workers go before the next config's engine runs
    return records


def summarize(records):
    by = {(r["config"], r["users"], r["candidates"], r["threads"], r["runner"]): r for r in records}
    # × broadcast p50: the ratio of median call times, steadier than req/s on a shared machine.
    head = ("| config | users × candidates | threads | shared req/s | p50 ms | p99 ms | "
            "× engine-broadcast | × broadcast p50 | × ort-kron-broadcast | broadcast p99 ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (config, users, cands, threads, runner), r in by.items():
        if runner != "engine-shared":
            continue
        b = by.get((config, users, cands, threads, "engine-broadcast"))
        o = by.get((config, users, cands, threads, "ort-kron-broadcast"))
        ratio = lambda q: f"{r['requests_per_s'] / q['requests_per_s']:.2f}" if q else "-"  # noqa: E731
        lines.append(f"| {config} | {users} × {cands} | {threads} | {r['requests_per_s']:,.0f} | "
                     f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {ratio(b)} | "
                     f"{b['p50_ms'] / r['p50_ms']:.2f} | {ratio(o)} | "
                     f"{b['p99_ms']:.3f} |" if b else "")
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--configs", default=",".join(USER))
    ap.add_argument("--shapes", default=SHAPES, help="USERSxCANDIDATES, comma-separated")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--runners", default=",".join(RUNNERS))
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args(argv)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    threads_list = [int(t) for t in args.threads.split(",")]
    runners = R.checked_names(args.runners, RUNNERS, "runner")
    configs = R.checked_names(args.configs, list(USER), "config")
    seconds, min_calls, max_calls = R.call_budget(args)
    print(f"{'config':<8}{'users x cands':>13}{'thr':>4}  {'runner':<20}{'requests/s':>12}{'p50 ms':>10}"
          f"{'p99 ms':>10}")
    records = []
    for config in configs:
        records += measure_config(config, shapes, threads_list, seconds, min_calls, max_calls, runners)
    summary = summarize(records)
    print()
    print(summary)
    if args.json:
        import dpn_infer

        machine = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                   "date": datetime.now(timezone.utc).isoformat(), "dpn_cpu_info": dpn_infer.cpu_info()}
        Path(args.json).write_text(json.dumps({"machine": machine, "records": records}, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(summary + "\n")
        print(f"wrote {args.markdown}")
