"""Training-step cost of FeatureDPN with full DyLinear layers against the DNN of the same widths.

    python bench/train_step.py [--configs criteo10,criteo16,ml-tag] [--batches 512,4096]
                               [--impls kron,paper] [--threads 1] [--seconds 10] [--json PATH]

One step = forward, BCE loss, backward and an Adam step, in train mode. Every point (config x batch x
model) runs in its own child process, so its peak memory (getrusage maxrss) is its own: the table
gives ms/step (the fastest timed step: on a shared machine a neighbour's burst lands on some
steps, and the JSON keeps the median too), the ratio to the DNN of the same config and batch, the
ratio of their layers' multiply-adds (what a form as efficient per FLOP as the DNN would reach:
a dynamic layer costs (l+1)·m·c per row in both forms, a Linear m·c), the child's peak RSS and
the part of it the steps added (peak minus RSS after building model, optimizer and batch).

Configs (every field sparse, 1,000-row tables, context x0, generator hidden l = 4, relu, BatchNorm
as in the paper's §3.1 setting, no dropout):
- criteo10 / criteo16: 39 fields x 10 (the paper's §3.1 embedding size) or x 16 (the shipped
  criteo config's), layers DyLinear 400 - DyLinear 400 - Linear 400; DNN 400-400-400;
- ml-tag: 3 fields (user, movie, tag) x 16, DyLinear 64 - DyLinear 64 (the shipped ml-tag
  config's widths); DNN 64-64.
Paper-form points whose per-row weights would exceed --paper-max-gib per layer are skipped.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # name: (fields, embedding dim, widths, how many leading layers are dynamic)
    "criteo10": (39, 10, [400, 400, 400], 2),
    "criteo16": (39, 16, [400, 400, 400], 2),
    "ml-tag": (3, 16, [64, 64], 2),
}
VOCAB, HIDDEN = 1000, 4


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # KiB on Linux


def _layers(config: str):
    """(m, c, dynamic) per hidden layer, the classifier left out (the same in both models)."""
    fields, dim, widths, ndyn = CONFIGS[config]
    ins = [fields * dim] + widths[:-1]
    return [(m, c, i < ndyn) for i, (m, c) in enumerate(zip(ins, widths))]


def flop_ratio(config: str) -> float:
    """FeatureDPN's hidden-layer multiply-adds per row over the DNN's (forward; backward scales the
    same): a dynamic layer adds its generator (n·l, then l·c for the dynamic bias; n = x0)."""
    n = CONFIGS[config][0] * CONFIGS[config][1]
    dpn = sum((HIDDEN + 1) * m * c + n * HIDDEN + HIDDEN * c if dyn else m * c
              for m, c, dyn in _layers(config))
    return dpn / sum(m * c for m, c, _ in _layers(config))


def paper_weight_gib(config: str, batch: int) -> float:
    """The largest B x m x c weight the paper form materializes for one layer."""
    return max(batch * m * c for m, c, dyn in _layers(config) if dyn) * 4 / 2 ** 30


def child(point: dict) -> dict:
    """Build the model of ``point``, time its training steps, report ms/step and memory."""
    import torch

    from dpn_infer.nn import DNN, FeatureDPN, Schema, SparseField, set_impl

    torch.set_num_threads(point["threads"])
    torch.manual_seed(0)
    fields, dim, widths, ndyn = CONFIGS[point["config"]]
    schema = Schema([SparseField(f"f{i}", vocab=VOCAB, dim=dim) for i in range(fields)])
    if point["model"] == "dnn":
        model = DNN(schema, widths, norm="batchnorm")
    else:
        layers = [{"out": w, "dynamic": i < ndyn, "context": "x0", "hidden": HIDDEN}
                  for i, w in enumerate(widths)]
        model = FeatureDPN(schema, layers, norm="batchnorm")
        set_impl(model, point["model"].split("-")[1])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    B = point["batch"]
    batch = {f.name: torch.randint(0, VOCAB, (B,), generator=g) for f in schema}
    labels = torch.randint(0, 2, (B,), generator=g).float()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), labels)
        loss.backward()
        opt.step()

    before = _maxrss_mib()
    step()                                            # warm-up: allocator, Adam state
    times = []
    t_end = time.perf_counter() + point["seconds"]
    while len(times) < 2 or (time.perf_counter() < t_end and len(times) < point["max_steps"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = _maxrss_mib()
    return {**point, "ms_per_step": min(times) * 1e3, "median_ms": statistics.median(times) * 1e3,
            "steps": len(times),
            "peak_rss_mib": peak, "step_rss_mib": peak - before}


def run_point(point: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(point)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {**point, "error": out.stderr.strip().splitlines()[-1] if out.stderr else
                f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--batches", default="512,4096")
    ap.add_argument("--impls", default="kron,paper")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per point (>= 2 steps)")
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--paper-max-gib", type=float, default=1.0,
                    help="skip paper-form points whose per-row weights exceed this per layer")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return 0
    rows = []
    print("| config | batch | model | ms/step | x DNN | FLOP x DNN | peak RSS MiB | added by steps MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for config in a.configs.split(","):
        if config not in CONFIGS:
            ap.error(f"unknown config {config!r} (expected one of {sorted(CONFIGS)})")
        for batch in (int(b) for b in a.batches.split(",")):
            base = None
            for model in ["dnn"] + [f"dpn-{i}" for i in a.impls.split(",")]:
                point = {"config": config, "batch": batch, "model": model, "threads": a.threads,
                         "seconds": a.seconds, "max_steps": a.max_steps}
                if model == "dpn-paper" and paper_weight_gib(config, batch) > a.paper_max_gib:
                    r = {**point, "skipped": f"W(z) {paper_weight_gib(config, batch):.1f} GiB per layer"}
                    print(f"| {config} | {batch} | {model} | skipped ({r['skipped']}) | | | | |")
                else:
                    r = run_point(point)
                    if "error" in r:
                        print(f"| {config} | {batch} | {model} | failed: {r['error']} | | | | |")
                    else:
                        base = r["ms_per_step"] if model == "dnn" else base
                        r["ratio_to_dnn"] = r["ms_per_step"] / base if base else None
                        ratio = f"{r['ratio_to_dnn']:.2f}" if base else "-"
                        flops = "1.00" if model == "dnn" else f"{flop_ratio(config):.2f}"
                        print(f"| {config} | {batch} | {model} | {r['ms_per_step']:.1f} | {ratio} | "
                              f"{flops} | {r['peak_rss_mib']:.0f} | {r['step_rss_mib']:.0f} |", flush=True)
                rows.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
