"""Subprocess worker for ranking requests under the ISA chosen by $DPN_ISA.

    DPN_ISA=avx2 python requestworker.py JOBS.json OUT.npz

JOBS.json: list of {"id", "model", "request"}; the request npz (helpers/requests.py: save) holds the
candidates, the shared fields, the groups and the broadcast batch. OUT.npz gets "<id>/broadcast",
"<id>/request" and "<id>/request_t3" (logits) and "__isa__"."""
import json
import os
import sys


def main(argv):
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dpn_infer.engine import cpu_info, load
    from helpers.requests import load_request

    with open(argv[1]) as f:
        jobs = json.load(f)
    out = {"__isa__": np.array(cpu_info()["selected"])}
    for job in jobs:
        m = load(job["model"])
        r = load_request(job["request"])
        out[job["id"] + "/broadcast"] = m.predict(r["broadcast"], logits=True)
        out[job["id"] + "/request"] = m.predict(r["cands"], shared=r["shared"], groups=r["groups"],
                                                logits=True)
        out[job["id"] + "/request_t3"] = m.predict(r["cands"], shared=r["shared"], groups=r["groups"],
                                                   logits=True, threads=3)
    np.savez(argv[2], **out)


if __name__ == "__main__":
    main(sys.argv)
