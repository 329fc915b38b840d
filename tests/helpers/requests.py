"""Ranking requests for tests: a batch of users and a batch of candidates split into the request
form (candidates, shared, groups) and the broadcast batch it must score as (each user's shared
values repeated on its candidates' rows, here in numpy: the reference)."""
from __future__ import annotations

import numpy as np


def make_request(users: dict, cands: dict, shared_names, counts):
    """users: a batch of U rows, cands: a batch of sum(counts) rows (the same fields, padded arrays);
    user u owns counts[u] candidates. Returns {"cands", "shared", "groups", "broadcast"}."""
    counts = np.asarray(counts, np.int64)
    groups = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    shared = {n: users[n] for n in shared_names}
    rest = {n: v for n, v in cands.items() if n not in shared}
    broadcast = dict(rest)
    broadcast.update({n: np.repeat(v, counts, axis=0) for n, v in shared.items()})
    return {"cands": rest, "shared": shared, "groups": groups, "broadcast": broadcast}


def save_request(path, r):
    arrays = {"groups": r["groups"]}
    for part in ("cands", "shared", "broadcast"):
        arrays.update({f"{part}/{k}": v for k, v in r[part].items()})
    np.savez(path, **arrays)


def load_request(path):
    r = {"cands": {}, "shared": {}, "broadcast": {}}
    with np.load(path) as z:
        for k in z.files:
            if k == "groups":
                r["groups"] = z[k]
            else:
                part, name = k.split("/", 1)
                r[part][name] = z[k]
    return r
