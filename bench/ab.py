"""A/B of two engine builds on the same models and batches, alternating, in one run.

    python bench/ab.py OLD_PKG NEW_PKG [--configs criteo,prod] [--batches 1,256] [--threads 1,2]
                       [--rounds 5] [--seconds 0.4] [--json PATH]

OLD_PKG and NEW_PKG are folders that each hold a staged `dpn_infer` package with its compiled
extension (e.g. a checkout's dpn_infer/ plus converters/ copied in as dpn_infer/converters, and the
built _engine*.so). Two long-lived worker processes, one per build, load the same model.bin files
(written once by this process, format v1) and score the same batches; for every point they take
turns `--rounds` times (the order alternates), each turn reporting bench/run.py's best-of-3-windows
samples/s. The ratio quoted is NEW/OLD of the median turns. On a shared VM single turns swing by
10% or more: re-run a point that looks slower with more rounds before believing it."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

WORKER = r"""
import json, sys
# An editable install's import hook would win over PYTHONPATH: drop it, so the staged build is used.
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[2])
import numpy as np
import dpn_infer
import dpn_infer._engine as engine
from run import measure
if not engine.__file__.startswith(sys.argv[1]):
    sys.exit(f"staged build not imported: {engine.__file__}")
print(json.dumps(engine.__file__), flush=True)
models = {}
for line in sys.stdin:
    cmd = json.loads(line)
    m = models.get(cmd["model"]) or models.setdefault(cmd["model"], dpn_infer.load(cmd["model"]))
    b = dict(np.load(cmd["batch"]))
    r = measure(lambda x: m.predict(x, threads=cmd["threads"]), b, cmd["seconds"], 3, 10**6)
    print(json.dumps(r["samples_per_s"]), flush=True)
"""


def main(argv=None):
    sys.path.insert(0, str(HERE))
    from run import CONFIGS, SEQ_CONFIGS, build, make_batch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--configs", default=",".join(list(CONFIGS) + list(SEQ_CONFIGS)))
    ap.add_argument("--batches", default="1,16,256,2048")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import dpn_infer

    tmp = tempfile.mkdtemp(prefix="dpn_ab_")
    points = []
    for c in args.configs.split(","):
        path = os.path.join(tmp, f"{c}.bin")
        dpn_infer.save(build(c), path)
        for batch in map(int, args.batches.split(",")):
            bp = os.path.join(tmp, f"{c}.{batch}.npz")
            np.savez(bp, **make_batch(c, batch, np.random.default_rng(batch)))
            points += [(c, batch, int(t), path, bp) for t in args.threads.split(",")]
    workers = {}
    for side in ("old", "new"):
        pkg = os.path.abspath(getattr(args, side))
        workers[side] = subprocess.Popen([sys.executable, "-c", WORKER, pkg, str(HERE)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, cwd=tmp)
        print(f"{side}: {json.loads(workers[side].stdout.readline())}", flush=True)
    out = []
    for c, batch, t, path, bp in points:
        turns = {"old": [], "new": []}
        for r in range(args.rounds):
            for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                w = workers[side]
                w.stdin.write(json.dumps({"model": path, "batch": bp, "threads": t,
                                          "seconds": args.seconds}) + "\n")
                w.stdin.flush()
                turns[side].append(json.loads(w.stdout.readline()))
        o, n = float(np.median(turns["old"])), float(np.median(turns["new"]))
        out.append({"config": c, "batch": batch, "threads": t, "old": o, "new": n, "ratio": n / o})
        print(f"{c:<14}{batch:>6}{t:>3}  old {o:>12,.0f}  new {n:>12,.0f}  new/old {n / o:.3f}", flush=True)
    for w in workers.values():
        w.stdin.close()
        w.wait()
    ratios = [x["ratio"] for x in out]
    print(f"geomean {np.exp(np.mean(np.log(ratios))):.3f}  min {min(ratios):.3f}  max {max(ratios):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
