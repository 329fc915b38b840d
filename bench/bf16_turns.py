"""engine-bf16 (or engine-int8) ÷ engine (fp32) samples/s, in alternating turns in one process: the
ratio on a busy shared machine, where bench/run.py's runner-after-runner order lets a neighbour's
burst land on one runner only.

    python bench/bf16_turns.py [--precision bf16|int8] [--configs criteo,prod] [--batches 1,256,2048]
                               [--threads 2] [--turns 12]

Each config (bench/run.py's models) is saved as float32 and as bench/run.py's reduced-precision
runner saves it (bf16: precision="bf16", embeddings="bf16", loaded with bf16_gemm=True; int8:
precision="int8", embeddings="int8", loaded with int8_gemm=True). Per batch, the two models take
turns of ~0.25 s each (the order alternating per turn); the ratio of each pair of turns is taken and
the median quoted, with the range. The 1-minute load average (os.getloadavg, what `uptime` prints) is
printed before and after each config.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def turn(model, batch, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        model.predict(batch)
    return calls * len(next(iter(batch.values()))) / (time.perf_counter() - t0)


def main(argv=None):
    import dpn_infer
    import run as R

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="criteo,prod")
    ap.add_argument("--batches", default="1,256,2048")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turns", type=int, default=12)
    ap.add_argument("--precision", choices=("bf16", "int8"), default="bf16")
    args = ap.parse_args(argv)
    prec = args.precision
    info = dpn_infer.cpu_info()["reduced_precision"]
    print(f"FMA peak probe, {args.threads} thread(s): {R.probe_fma_peak(args.threads)[0]:.1f} GFLOP/s")
    print(f"ISA {dpn_infer.cpu_info()['selected']}; {prec} weights: "
          f"{info['weights'] if prec == 'bf16' else info['int8']}")
    with tempfile.TemporaryDirectory() as d:
        for config in args.configs.split(","):
            model = R.build(config)
            p32, p16 = os.path.join(d, config + ".fp32.bin"), os.path.join(d, f"{config}.{prec}.bin")
            dpn_infer.save(model, p32)
            dpn_infer.save(model, p16, **R.ENGINE_FILES["engine-" + prec])
            fp32 = dpn_infer.load(p32, threads=args.threads)
            bf16 = dpn_infer.load(p16, threads=args.threads, **{prec + "_gemm": True})
            print(f"{config}: load average {os.getloadavg()[0]:.2f} (1 min)", flush=True)
            for B in (int(b) for b in args.batches.split(",")):
                batch = R.make_batch(config, B, np.random.default_rng(1))
                t0 = time.perf_counter()
                fp32.predict(batch)
                calls = max(1, int(0.25 / max(time.perf_counter() - t0, 1e-6)))
                r32, r16 = [], []
                for t in range(args.turns):
                    pair = [(r32, fp32), (r16, bf16)]
                    for out, m in pair if t % 2 == 0 else pair[::-1]:
                        out.append(turn(m, batch, calls))
                ratios = np.array(r16) / np.array(r32)
                print(f"{config:8s} batch {B:5d}: fp32 {np.median(r32):10,.0f}/s  {prec} {np.median(r16):10,.0f}/s"
                      f"  {prec} ÷ fp32 {np.median(ratios):.2f} (turns {ratios.min():.2f}-{ratios.max():.2f}, "
                      f"{args.turns} × {calls} calls)", flush=True)
            print(f"{config}: load average {os.getloadavg()[0]:.2f} (1 min)", flush=True)


if __name__ == "__main__":
    main()
