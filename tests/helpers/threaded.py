"""Predictions from many Python threads at once must equal the single-threaded ones, bit for bit."""
from __future__ import annotations

import threading

import numpy as np


def mismatches_from_threads(model, batches, threads=6, reps=2):
    """Runs every batch `reps` times from `threads` Python threads (alternating 1 and 2 intra-op
    threads) and returns what differed from model.predict(batch, threads=1), or raised."""
    want = [model.predict(b, threads=1) for b in batches]
    errors = []

    def work(k):
        try:
            for rep in range(reps):
                for i, b in enumerate(batches):
                    got = model.predict(b, threads=1 + (k + rep) % 2)
                    if not np.array_equal(got, want[i]):
                        errors.append((k, rep, i, float(np.abs(got - want[i]).max())))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append((k, repr(e)))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors
