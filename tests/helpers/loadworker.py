"""Subprocess worker: load (and optionally predict with) a list of model files, one result line each.

    python loadworker.py CASES.json

CASES.json is a list of {"id": str, "path": str, "batch": optional .npz path}. For every case it prints
``START <id>`` before touching the file and ``RESULT <json>`` after, flushing each line, so that if the
engine crashes the parent knows exactly which case did it (see ``isolated.run_cases``)."""
import json
import sys
import traceback


def main(argv):
    import numpy as np
    from dpn_infer.engine import InputError, ModelFormatError, load

    with open(argv[1]) as f:
        cases = json.load(f)
    batches = {}
    for case in cases:
        print("START", case["id"], flush=True)
        res = {"id": case["id"]}
        try:
            model = load(case["path"])
            res["load"] = "ok"
        except ModelFormatError as e:
            res["load"] = "ModelFormatError"
            res["msg"] = str(e)
        except BaseException as e:  # noqa: BLE001 - we report whatever escapes
            res["load"] = type(e).__name__
            res["msg"] = str(e)
            res["tb"] = traceback.format_exc(limit=3)
        if res["load"] == "ok" and case.get("batch"):
            bp = case["batch"]
            if bp not in batches:
                with np.load(bp) as z:
                    batches[bp] = {k: z[k] for k in z.files}
            try:
                out = model.predict(batches[bp])
                res["predict"] = "ok"
                res["shape"] = list(out.shape)
                res["dtype"] = str(out.dtype)
            except InputError as e:
                res["predict"] = "InputError"
                res["msg"] = str(e)
            except BaseException as e:  # noqa: BLE001
                res["predict"] = type(e).__name__
                res["msg"] = str(e)
        print("RESULT", json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv)
