"""Review of the sequence family (issue 5): crafted inputs and files that once crashed or were
accepted, and predict from several threads on one sequence model. Anything that could crash runs in
a child process so a regression fails a test instead of killing pytest."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpn_infer import nn as dnn  # noqa: E402
from dpn_infer.converters import torch_export  # noqa: E402
from dpn_infer.engine import InputError, load  # noqa: E402
from helpers import models as HM  # noqa: E402

T = 6
I64_MIN = int(np.iinfo(np.int64).min)
I64_MAX = int(np.iinfo(np.int64).max)


def _model(truncate=True, policy="hash"):
    torch.manual_seed(0)
    schema = dnn.Schema([dnn.SparseField("item", 30, 4, policy=policy),
                         dnn.SparseField("user", 9, 3),
                         dnn.SequenceField("hist", 30, 4, T, policy=policy, truncate=truncate,
                                           table="item")])
    m = dnn.SeqDPN(schema, ["hist"], ["item"], encoder=["self_attention", "homo_dpo"],
                   decoder=["target_attention", "hetero_dpo"], heads=2, layers=[8])
    HM.randomize_(m, 3)
    return m.eval()


@pytest.fixture(scope="module")
def seq_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("review_seq") / "seq.bin"
    torch_export.save(_model(), p)
    return str(p)


def _batch(B, Tin, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 30, (B, Tin))
    h[rng.random((B, Tin)) < 0.3] = -1
    return {"item": rng.integers(0, 30, B), "user": rng.integers(0, 9, B), "hist": h}


def _in_child(path, cases):
    """Runs predict on `path` with each case's ragged hist (values, offsets) in a child process;
    returns {case id: exception type name or 'ok'}; a crash fails the test with its output."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from dpn_infer.engine import load
        m = load(sys.argv[1])
        for c in json.loads(sys.argv[2]):
            print("START", c["id"], flush=True)
            B = len(c["offsets"]) - 1
            b = {"item": np.zeros(B, np.int64), "user": np.zeros(B, np.int64),
                 "hist": (np.asarray(c["values"], np.int64), np.asarray(c["offsets"], np.int64))}
            try:
                m.predict(b)
                r = "ok"
            except Exception as e:
                r = type(e).__name__ + ": " + str(e)
            print("RESULT", json.dumps([c["id"], r]), flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", script, path, json.dumps(cases)], capture_output=True,
                       text=True, timeout=120)
    out = dict(json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT "))
    assert p.returncode == 0 and len(out) == len(cases), (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return out


def test_ragged_offsets_that_wrap_are_refused(seq_file):
    """Offsets whose differences overflow int64 (a row from 1 to INT64_MIN "has" INT64_MAX ids)
    passed the monotonic check under truncate=true and made seq_embedding read far outside the
    values (a crash). Every such case must be an InputError naming the field."""
    vals = [1, 2, 3]
    cases = [
        {"id": "wrap-then-jump", "values": vals, "offsets": [0, 1, I64_MIN, I64_MIN + 10, 3]},
        {"id": "wrap-at-end", "values": vals, "offsets": [0, 1, 2, I64_MIN, 3]},
        {"id": "min-first", "values": vals, "offsets": [0, I64_MIN, I64_MIN + 5, 3, 3]},
        {"id": "max-first", "values": vals, "offsets": [0, I64_MAX, 3, 3, 3]},
        {"id": "negative", "values": vals, "offsets": [0, -1, 3, 3, 3]},
    ]
    for cid, r in _in_child(seq_file, cases).items():
        assert r.startswith("InputError") and "'hist'" in r and "offsets" in r, (cid, r)


def test_ragged_with_zero_rows(seq_file):
    m = load(seq_file)
    empty = np.zeros(0, np.int64)
    out = m.predict({"item": empty, "user": empty, "hist": (empty, np.zeros(1, np.int64))})
    assert out.shape == (0,)
    with pytest.raises(InputError, match="field 'hist'.*offsets"):
        m.predict({"item": empty, "user": empty, "hist": (np.arange(2), np.zeros(1, np.int64))})


def test_predict_from_threads_is_identical(seq_file):
    """One sequence model shared by 6 threads (intra-op threads 1 and 2, padded and ragged input,
    batch sizes that make one block, several blocks and row-split lanes) gives exactly the
    single-threaded answer every time."""
    m = load(seq_file)
    batches = [_batch(B, Tin, seed=B) for B, Tin in ((1, T), (7, 0), (300, T + 4), (77, 3))]
    for b in batches[:2]:
        b["hist"][0] = -1
    ragged = []
    for b in batches:
        rows = [r[r != -1] for r in b["hist"]]
        offs = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        ragged.append(dict(b, hist=(np.concatenate(rows + [np.zeros(0, np.int64)]), offs)))
    batches += ragged
    want = [m.predict(b, threads=1) for b in batches]
    errors = []

    def work(k):
        try:
            for rep in range(3):
                for i, b in enumerate(batches):
                    got = m.predict(b, threads=1 + (k + rep) % 2)
                    if not np.array_equal(got, want[i]):
                        errors.append((k, rep, i, float(np.abs(got - want[i]).max())))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((k, repr(e)))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:5]


def test_random_ragged_offsets_never_crash(seq_file):
    """200 offset arrays drawn from boundary values (0, cols, ±1, INT64 extremes, random): each is
    refused with an InputError naming the field exactly when it is not a valid ragged layout
    (starts at 0, non-decreasing, ends at len(values)); valid ones predict (the file truncates)."""
    rng = np.random.default_rng(7)
    cases = []
    for i in range(200):
        n = int(rng.integers(0, 12))
        B = int(rng.integers(1, 5))
        pool = [0, 1, n, n - 1, n + 1, -1, I64_MIN, I64_MIN + 1, I64_MAX, I64_MAX - 1, 1 << 62]
        offs = sorted(int(v) for v in rng.integers(0, n + 1, B + 1))
        offs[0], offs[-1] = 0, n
        for _ in range(int(rng.integers(0, 3))):
            offs[int(rng.integers(0, B + 1))] = int(rng.choice(pool))
        valid = offs[0] == 0 and offs[-1] == n and all(a <= b for a, b in zip(offs, offs[1:]))
        cases.append({"id": f"{i}:{valid}", "values": [int(v) for v in rng.integers(-1, 30, n)],
                      "offsets": offs})
    for cid, r in _in_child(seq_file, cases).items():
        if cid.endswith("True"):
            assert r == "ok", (cid, r)
        else:
            assert r.startswith("InputError") and "'hist'" in r, (cid, r)
