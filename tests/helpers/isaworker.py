"""Subprocess worker: predict with every (model, batch) job under the ISA chosen by $DPN_ISA.

    DPN_ISA=avx2 python isaworker.py JOBS.json OUT.npz

JOBS.json: list of {"id", "model", "batch"} (and "bf16_gemm", "int8_gemm": load's options, default None: as the file records); OUT.npz gets "<id>/logits" and "<id>/probs" for each job
and "__isa__" (the ISA the engine actually selected)."""
import json
import sys


def main(argv):
    import numpy as np
    from dpn_infer.engine import cpu_info, load

    with open(argv[1]) as f:
        jobs = json.load(f)
    out = {"__isa__": np.array(cpu_info()["selected"])}
    for job in jobs:
        with np.load(job["batch"]) as z:
            batch = {k: z[k] for k in z.files}
        m = load(job["model"], bf16_gemm=job.get("bf16_gemm"), int8_gemm=job.get("int8_gemm"))
        out[job["id"] + "/logits"] = m.predict(batch, logits=True)
        out[job["id"] + "/probs"] = m.predict(batch)
        out[job["id"] + "/logits_t3"] = m.predict(batch, logits=True, threads=3)
    np.savez(argv[2], **out)


if __name__ == "__main__":
    main(sys.argv)
