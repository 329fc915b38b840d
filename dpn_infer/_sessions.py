"""Pre-segmented session batches for the engine (docs/dyjoint.md, "Serving DyJoint").

The engine builds sessions from ids and timestamps ``[B, T]`` (docs/format.md §4.1). A batch that
gives a session model's sequence fields pre-segmented, int64 ``[B, S', L']`` (session slot s is
session s, oldest first, as dpn_infer.nn.sessions reads it), is rewritten here into that form: the
last S slots (the model's max_sessions) are kept, flattened to ``[B, S·L']``, and the timestamps are
made up so that each slot is one session (slot k's behaviours all at time k·(gap + 1), in their
order). The scores equal PyTorch's on the pre-segmented batch: a session's kept behaviours (its last
L valid ones, in order) are the same, and an empty slot, which the engine leaves out, adds nothing
to the encoder (per session) or the decoder (KFAtt gives it no weight; HeteroDPO averages over
behaviours).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def session_layouts(metadata: Mapping) -> list:
    """[(timestamps field, its gap and max_sessions, the sequence fields it lays out)] of a model."""
    fields = {f["name"]: f for f in metadata["schema"]["fields"]}
    laid = {}
    for n in metadata["graph"]["nodes"]:
        if n.get("op") == "session_embedding":
            laid.setdefault(n["attrs"]["timestamps"], []).append(n["attrs"]["field"])
    return [(ts, fields[ts]["gap"], fields[ts]["max_sessions"], names) for ts, names in laid.items()]


def flatten_presegmented(batch: dict, layouts: list) -> dict:
    """``batch`` with pre-segmented [B, S', L'] session fields as [B, T] ids + timestamps (module
    docstring); the batch itself when none is pre-segmented."""
    out = None
    for ts, gap, S, names in layouts:
        given = [n for n in names if isinstance(batch.get(n), np.ndarray) and batch[n].ndim == 3]
        if not given:
            continue
        out = dict(batch) if out is None else out
        B, S_in, L_in = batch[given[0]].shape
        keep = slice(max(S_in - S, 0), S_in)
        for n in given:
            a = batch[n]
            if a.shape != (B, S_in, L_in):
                return batch            # shapes disagree: the engine names the field at fault
            out[n] = np.ascontiguousarray(a[:, keep].reshape(B, -1))
        kept = min(S_in, S)
        slot = np.arange(kept, dtype=np.int64) * (np.int64(gap) + 1)
        out[ts] = np.ascontiguousarray(np.broadcast_to(slot[None, :, None], (B, kept, L_in)).reshape(B, -1))
    return batch if out is None else out
