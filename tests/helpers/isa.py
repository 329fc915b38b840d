"""Run predictions under each kernel ISA (DPN_ISA=ref|avx2|avx512|avx512bf16, chosen once per process) in child
processes, so one test session can check every kernel path the machine has."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = str(Path(__file__).with_name("isaworker.py"))
ALL_ISAS = ("ref", "avx2", "avx512", "avx512bf16")


def available_isas():
    from dpn_infer.engine import cpu_info

    avail = cpu_info().get("available", [])
    return [i for i in ALL_ISAS if i in avail]


def run_under_isa(isa, jobs, workdir, worker=WORKER, timeout=300):
    """Runs ``worker JOBS.json OUT.npz`` with DPN_ISA=isa; returns the loaded npz's arrays (a dict)."""
    listing = os.path.join(workdir, f"jobs_{isa}.json")
    out = os.path.join(workdir, f"out_{isa}.npz")
    with open(listing, "w") as f:
        json.dump(jobs, f)
    env = dict(os.environ, DPN_ISA=isa)
    p = subprocess.run([sys.executable, worker, listing, out], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"DPN_ISA={isa} worker exited with {p.returncode}:\n{p.stderr[-3000:]}")
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def predict_under_isa(isa, jobs, workdir, timeout=300):
    """jobs: list of {"id", "model", "batch"} (paths). Returns (selected_isa, {id: (logits, probs,
    logits_with_threads=3)})."""
    z = run_under_isa(isa, jobs, workdir, timeout=timeout)
    res = {j["id"]: (z[j["id"] + "/logits"], z[j["id"] + "/probs"], z[j["id"] + "/logits_t3"])
           for j in jobs}
    return str(z["__isa__"]), res
