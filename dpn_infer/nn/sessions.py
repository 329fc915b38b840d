"""Session segmentation of behaviour sequences (paper App. B.5: a new session after a 30-minute gap,
at most 10 sessions x 25 behaviours per instance), vectorised over the batch.

Input: behaviour ids int64 ``[B, T]`` and their timestamps int64 ``[B, T]`` (seconds), -1 padding
in the ids (a padded position's timestamp is ignored). A row's valid behaviours are sorted by time
(stable: equal times keep their input order, so "most recent first" and "oldest first" histories
give the same sessions); behaviour ``i`` opens a new session when ``t_i - t_{i-1} > gap`` (strictly:
a gap of exactly ``gap`` seconds stays in the session). The most recent ``S`` sessions are kept, each
with its most recent ``L`` behaviours.

Output (:class:`Sessions`): ``ids`` ``[B, S, L]`` (-1 padded), ``times`` ``[B, S, L]`` (-1 padded),
``lengths`` ``[B, S]`` (behaviours per session), ``count`` ``[B]`` (sessions per row), ``source``
``[B, S, L]`` (where each behaviour was in the input; :meth:`Sessions.take` lays out another
field aligned with the ids the same way). Sessions
are in time order, oldest kept first, filled from slot 0; a session's behaviours are in time order
from position 0. Empty histories give ``count == 0`` and all-empty sessions.

Pre-segmented input ``[B, S', L']`` (ids, timestamps optional) is accepted as is: session slot ``s``
is session ``s`` (oldest first); within each session the valid ids are compacted to the front in
order, the last ``L`` kept; the last ``S`` slots are kept when ``S' > S``. Empty sessions stay empty
(and count: ``count`` is the number of slots up to the last non-empty one).

Everything is tensor arithmetic of fixed shapes (sort, cumsum, scatter): no Python loop over rows.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .checks import positive_int

INT64_MAX = torch.iinfo(torch.int64).max


class Sessions(NamedTuple):
    ids: torch.Tensor        # [B, S, L] int64, -1 padded
    times: torch.Tensor      # [B, S, L] int64, -1 padded
    lengths: torch.Tensor    # [B, S] int64
    count: torch.Tensor      # [B] int64
    source: torch.Tensor     # [B, S, L] int64: the input position (flattened per row) or -1

    def take(self, values: torch.Tensor) -> torch.Tensor:
        """Another input aligned with the ids (int64 [B, T] or [B, S', L'], e.g. a second
        behaviour field) laid out as these sessions, -1 padded."""
        flat = values.reshape(values.shape[0], -1)
        if flat.shape[1] == 0:
            return torch.full_like(self.ids, -1)
        src = self.source.reshape(self.source.shape[0], -1)
        out = flat.gather(1, src.clamp(min=0))
        return torch.where(src >= 0, out, torch.full_like(out, -1)).view_as(self.ids)


def _check(ids, what):
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64:
        raise ValueError(f"{what} must be an int64 tensor, got {getattr(ids, 'dtype', type(ids))}")


def segment_sessions(ids: torch.Tensor, times: Optional[torch.Tensor], gap: int = 1800,
                     max_sessions: int = 10, session_len: int = 25) -> Sessions:
    """Sessions of ``ids`` [B, T] with ``times`` [B, T] (module docstring), or of pre-segmented
    ``ids`` [B, S', L'] (``times`` then optional)."""
    positive_int("segment_sessions", "max_sessions", max_sessions)
    positive_int("segment_sessions", "session_len", session_len)
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"segment_sessions: gap must be an integer >= 0, got {gap!r}")
    _check(ids, "segment_sessions: ids")
    if ids.dim() == 3:
        if times is not None:
            _check(times, "segment_sessions: times")
            if times.shape != ids.shape:
                raise ValueError(f"segment_sessions: times {list(times.shape)} must match ids "
                                 f"{list(ids.shape)}")
        return _presegmented(ids, times, max_sessions, session_len)
    if ids.dim() != 2:
        raise ValueError(f"segment_sessions: ids must be [B, T] or [B, S, L], got {list(ids.shape)}")
    if times is None:
        raise ValueError("segment_sessions: [B, T] ids need their timestamps")
    _check(times, "segment_sessions: times")
    if times.shape != ids.shape:
        raise ValueError(f"segment_sessions: times {list(times.shape)} must match ids {list(ids.shape)}")
    return _segment(ids, times, gap, max_sessions, session_len)


def _segment(ids, times, gap, S, L):
    B, T = ids.shape
    dev = ids.device
    if T == 0:      # no behaviours at all: every session empty
        e = torch.full((B, S, L), -1, dtype=torch.int64, device=dev)
        return Sessions(e, e.clone(), torch.zeros(B, S, dtype=torch.int64, device=dev),
                        torch.zeros(B, dtype=torch.int64, device=dev), e.clone())
    valid = ids != -1
    # valid behaviours first, by time (stable: ties keep their input order)
    key = torch.where(valid, times, torch.full_like(times, INT64_MAX))
    key, order = torch.sort(key, dim=1, stable=True)
    sid_ids = ids.gather(1, order)
    n = valid.to(torch.int64).sum(1, keepdim=True)                         # [B, 1]
    pos = torch.arange(T, device=dev).unsqueeze(0).expand(B, T)
    ok = pos < n
    prev = torch.cat([key[:, :1], key[:, :-1]], dim=1)
    new = ok & (pos > 0) & (key - prev > gap)                              # opens a session
    sid = new.to(torch.int64).cumsum(1)                                    # 0-based session index
    count = torch.where(n > 0, sid.gather(1, (n - 1).clamp(min=0)) + 1, torch.zeros_like(n))
    start = torch.where(new | (pos == 0), pos, torch.zeros_like(pos)).cummax(1).values
    within = pos - start
    seglen = torch.zeros(B, T + 1, dtype=torch.int64, device=dev).scatter_add(
        1, torch.where(ok, sid, torch.full_like(sid, T)), ok.to(torch.int64))[:, :T]
    my_len = seglen.gather(1, sid.clamp(max=T - 1))
    first_kept = (count - S).clamp(min=0)                                   # [B, 1]
    slot = sid - first_kept
    drop_b = (my_len - L).clamp(min=0)                                      # oldest behaviours cut
    col = within - drop_b
    keep = ok & (slot >= 0) & (col >= 0)
    flat = torch.where(keep, slot * L + col, torch.full_like(slot, S * L))
    out_ids = torch.full((B, S * L + 1), -1, dtype=torch.int64, device=dev)
    out_ids = out_ids.scatter(1, flat, torch.where(keep, sid_ids, torch.full_like(sid_ids, -1)))
    out_t = torch.full((B, S * L + 1), -1, dtype=torch.int64, device=dev)
    out_t = out_t.scatter(1, flat, torch.where(keep, key, torch.full_like(key, -1)))
    out_src = torch.full((B, S * L + 1), -1, dtype=torch.int64, device=dev)
    out_src = out_src.scatter(1, flat, torch.where(keep, order, torch.full_like(order, -1)))
    out_ids = out_ids[:, :S * L].view(B, S, L)
    out_t = out_t[:, :S * L].view(B, S, L)
    lengths = (out_ids != -1).to(torch.int64).sum(2)
    return Sessions(out_ids, out_t, lengths, count.squeeze(1).clamp(max=S),
                    out_src[:, :S * L].view(B, S, L))


def _compact(ids, L, others=()):
    """Valid entries of each row of ids [R, T] moved to the front in order, the last L kept; the
    ``others`` ([R, T] each) moved alike (-1 where nothing lands)."""
    R, T = ids.shape
    valid = ids != -1
    vi = valid.to(torch.int64)
    n = vi.sum(1, keepdim=True)
    kept = n.clamp(max=L)
    target = vi.cumsum(1) - 1 - (n - kept)
    keep = valid & (target >= 0)
    target = torch.where(keep, target, torch.full_like(target, L))

    def move(v):
        out = torch.full((R, L + 1), -1, dtype=torch.int64, device=ids.device)
        return out.scatter(1, target, torch.where(keep, v, torch.full_like(v, -1)))[:, :L]

    return [move(ids)] + [move(o) for o in others]


def _presegmented(ids, times, S, L):
    B, S_in, L_in = ids.shape
    src = torch.arange(S_in * L_in, device=ids.device).view(1, S_in, L_in).expand(B, S_in, L_in)
    times = torch.full_like(ids, -1) if times is None else times
    if S_in > S:                       # the most recent S slots
        ids, times, src = ids[:, S_in - S:], times[:, S_in - S:], src[:, S_in - S:]
    elif S_in < S:
        pad = ids.new_full((B, S - S_in, L_in), -1)
        ids, times, src = (torch.cat([a, pad], 1) for a in (ids, times, src))
    out_ids, out_t, out_src = (a.view(B, S, L) for a in _compact(
        ids.reshape(B * S, L_in), L, (times.reshape(B * S, L_in), src.reshape(B * S, L_in))))
    lengths = (out_ids != -1).to(torch.int64).sum(2)
    slots = torch.arange(1, S + 1, device=ids.device).unsqueeze(0)
    count = torch.where(lengths > 0, slots, torch.zeros_like(slots)).max(1).values
    return Sessions(out_ids, out_t, lengths, count, out_src)


def session_mask(lengths: torch.Tensor, L: int) -> torch.Tensor:
    """bool [B, S, L]: position l of session s of row b holds a behaviour."""
    return torch.arange(L, device=lengths.device) < lengths.unsqueeze(-1)


def field_sessions(field, ids: torch.Tensor, times: Optional[torch.Tensor]) -> Sessions:
    """Sessions of a schema's :class:`~dpn_infer.nn.schema.TimestampField` ``field``."""
    return segment_sessions(ids, times, field.gap, field.max_sessions, field.session_len)
