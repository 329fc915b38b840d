"""Run predictions under each kernel ISA (DPN_ISA=ref|avx2|avx512|avx512bf16|avx512amx, chosen once per process) in child
processes, so one test session can check every kernel path the machine has."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = str(Path(__file__).with_name("isaworker.py"))
ALL_ISAS = ("ref", "avx2", "avx512", "avx512bf16", "avx512amx")


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


def check_models_every_isa(cases, judge, workdir):
    """cases: (label, model, batch, torch logits, truth_fn) per model. Saves each model and batch
    under ``workdir``, predicts them under every ISA the machine has (child processes), and checks
    each with ``judge(z, p, ref, truth_fn, batch, what)`` and threads=3 against threads=1."""
    from dpn_infer.converters import torch_export

    jobs, refs = [], {}
    for k, (label, model, batch, ref, truth_fn) in enumerate(cases):
        jid = f"job{k}"
        mp, bp = os.path.join(workdir, jid + ".bin"), os.path.join(workdir, jid + ".npz")
        torch_export.save(model, mp)
        np.savez(bp, **batch)
        refs[jid] = (label, batch, ref, truth_fn)
        jobs.append({"id": jid, "model": mp, "batch": bp})
    for isa in available_isas():
        selected, res = predict_under_isa(isa, jobs, workdir)
        assert selected == isa
        for jid, (z, p, z3) in res.items():
            label, batch, ref, truth_fn = refs[jid]
            what = f"under DPN_ISA={isa} for {label}"
            judge(z, p, ref, truth_fn, batch, what)
            np.testing.assert_allclose(z3, z, rtol=1e-5, atol=1e-6, err_msg=f"threads=3 {what}")
