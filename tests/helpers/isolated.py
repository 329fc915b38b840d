"""Run engine loads in a child process so that a crash (segfault, abort) fails a test instead of
killing pytest. ``run_cases`` restarts the child after a crash and carries on with the next case."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = str(Path(__file__).with_name("loadworker.py"))


def _describe_rc(rc):
    if rc is None:
        return "timeout"
    if rc < 0:
        try:
            return f"crashed with {signal.Signals(-rc).name}"
        except ValueError:
            return f"crashed with signal {-rc}"
    return f"exited with status {rc}"


CONTROL = "__control: an undamaged model__"


class HarnessError(AssertionError):
    """The harness could not test anything (the control model did not load and predict in the
    child), or a child hung: either way the cases' results say nothing."""


def _control_case(d):
    """An undamaged model and batch that must load and predict in the same child setting: a child
    that imports the source tree (no compiled engine) would otherwise 'refuse' every file."""
    import numpy as np

    from helpers import files as HF

    path = os.path.join(d, "control.bin")
    with open(path, "wb") as f:
        f.write(bytes(HF.tiny_bytes(0)))
    batch = os.path.join(d, "control.npz")
    np.savez(batch, **HF.tiny_batch())
    return {"id": CONTROL, "path": path, "batch": batch}


def run_cases(cases, timeout=300.0) -> dict:
    """cases: list of {"id", "path", ["batch"]}. Returns id -> result dict. A case during which the
    child died gets {"load": "CRASH", "msg": ...}; the remaining cases run in a fresh child.
    Children run in an empty folder (so they import the installed package, never the checkout's
    source tree), and every child first loads and predicts a control model: if that fails, or a
    case hangs past the timeout, HarnessError is raised instead of results."""
    results = {}
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="dpn_iso_") as d:
        control = _control_case(d)
        pending = [control] + list(cases)
        while pending:
            listing = os.path.join(d, "cases.json")
            with open(listing, "w") as f:
                json.dump(pending, f)
            left = max(5.0, deadline - time.monotonic())
            try:
                p = subprocess.run([sys.executable, WORKER, listing], capture_output=True, text=True,
                                   timeout=left, cwd=d)
                out, err, rc = p.stdout, p.stderr, p.returncode
            except subprocess.TimeoutExpired as e:
                out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
                rc = None
            current = None
            started = False
            for line in out.splitlines():
                if line.startswith("START "):
                    current = line[6:]
                    started = True
                elif line.startswith("RESULT "):
                    r = json.loads(line[7:])
                    results[r["id"]] = r
                    current = None
            done = set(results)
            if rc == 0 and all(c["id"] in done for c in pending):
                break
            if not started:
                # died before its first case (import error...): nothing will run, report it on all
                for c in pending:
                    results[c["id"]] = {"id": c["id"], "load": "WORKER FAILED",
                                        "msg": f"worker {_describe_rc(rc)}; stderr tail: {err[-2000:]}"}
                break
            if current is None:
                # died between cases
                first = next((c for c in pending if c["id"] not in done), None)
                if first is None:
                    break
                current = first["id"]
            if rc is None:  # a hang is a failure of the case, never a pass
                raise HarnessError(f"case {current!r} hung: no result within {timeout:.0f} s")
            if current == CONTROL:
                raise HarnessError(f"the control model crashed the child: {_describe_rc(rc)}; {err[-2000:]}")
            results[current] = {"id": current, "load": "CRASH",
                                "msg": f"worker {_describe_rc(rc)}; stderr tail: {err[-2000:]}"}
            pending = [c for c in pending if c["id"] not in results]
            if pending and pending[0]["id"] != CONTROL:
                pending.insert(0, control)  # every fresh child proves itself first
                results.pop(CONTROL, None)
    ctl = results.pop(CONTROL, None)
    if not ctl or ctl.get("load") != "ok" or ctl.get("predict") != "ok":
        raise HarnessError(f"the control model did not load and predict in the child: {ctl}")
    return results


def run_edited(meta, tensors, cases, batch, timeout=240.0) -> dict:
    """Hand-edited files: for each case id -> (edit, expect, node) of ``cases``, ``edit(meta,
    tensors)`` changes copies of the exported model in place; each result is written and loaded in
    the child (run_cases) with ``batch``. Returns id -> result dict."""
    import copy

    import numpy as np
    from dpn_infer.converters import format as F

    with tempfile.TemporaryDirectory(prefix="dpn_edit_") as d:
        bp = os.path.join(d, "batch.npz")
        np.savez(bp, **batch)
        listed = []
        for i, (cid, (edit, _, _)) in enumerate(cases.items()):
            mt, t = copy.deepcopy(meta), {k: np.array(v) for k, v in tensors.items()}
            edit(mt, t)
            p = os.path.join(d, f"{i:03d}.bin")
            F.write(p, mt, t)
            listed.append({"id": cid, "path": p, "batch": bp})
        return run_cases(listed, timeout=timeout)


def check_edited(case, expect, result, node_pattern) -> None:
    """A run_edited result: no crash; an "ok" case loads and predicts; any other is refused with
    ModelFormatError whose message matches ``node_pattern`` (names the node)."""
    import re

    r = result
    assert r["load"] not in ("CRASH", "WORKER FAILED", "NOT RUN"), f"{case}: {r['msg']}"
    if expect == "ok":
        assert r["load"] == "ok", f"{case}: valid file refused: {r.get('msg')}"
        assert r.get("predict") == "ok", f"{case}: {r}"
    else:
        assert r["load"] == "ModelFormatError", f"{case}: expected ModelFormatError, got {r}"
        assert re.search(node_pattern, r["msg"]), f"{case}: message does not name the node: {r['msg']!r}"
