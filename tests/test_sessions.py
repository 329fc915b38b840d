"""Session segmentation (dpn_infer.nn.sessions) against a per-row Python transcription of its rule:
sort by time (stable), a new session where the gap is strictly greater than the threshold, the most
recent S sessions with their most recent L behaviours. Hypothesis draws 0..10 sessions of 0..25
behaviours with gaps exactly at the threshold, one second either side and far past it, and caps
both below and above what a row holds; plus the timestamps field's schema (validation, JSON)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer.nn import Schema, SequenceField, SparseField, TimestampField  # noqa: E402
from dpn_infer.nn.sessions import segment_sessions  # noqa: E402


def reference(ids, times, gap, S, L):
    """Per row: (sessions as lists of (id, time), oldest first) after the caps."""
    out = []
    for row_ids, row_t in zip(ids, times):
        beh = [(t, k, i) for k, (i, t) in enumerate(zip(row_ids, row_t)) if i != -1]
        beh.sort(key=lambda b: (b[0], b[1]))
        sessions = []
        for t, _, i in beh:
            if not sessions or t - sessions[-1][-1][1] > gap:
                sessions.append([])
            sessions[-1].append((i, t))
        out.append([s[-L:] for s in sessions[-S:]])
    return out


def check(ids, times, gap, S, L):
    got = segment_sessions(torch.tensor(ids, dtype=torch.int64).reshape(len(ids), -1),
                           torch.tensor(times, dtype=torch.int64).reshape(len(ids), -1), gap, S, L)
    ref = reference(ids, times, gap, S, L)
    assert got.ids.shape == (len(ids), S, L)
    for b, sessions in enumerate(ref):
        assert int(got.count[b]) == len(sessions)
        for s in range(S):
            want = sessions[s] if s < len(sessions) else []
            n = len(want)
            assert int(got.lengths[b, s]) == n
            assert got.ids[b, s, :n].tolist() == [i for i, _ in want]
            assert got.times[b, s, :n].tolist() == [t for _, t in want]
            assert (got.ids[b, s, n:] == -1).all() and (got.times[b, s, n:] == -1).all()
    # another field aligned with the ids (here: ids + 1000) follows the same layout
    other = torch.where(torch.tensor(ids) == -1, -1, torch.tensor(ids) + 1000)
    taken = got.take(other.reshape(len(ids), -1))
    torch.testing.assert_close(taken, torch.where(got.ids == -1, -1, got.ids + 1000))


GAP = 1800


@st.composite
def rows(draw):
    """One history: 0..10 sessions of 0..25 behaviours, gaps around the threshold, shuffled order
    (most-recent-first or random) and -1 padding anywhere."""
    n_sess = draw(st.integers(0, 10))
    t, ids, times, next_id = draw(st.integers(0, 10 ** 6)), [], [], 0
    for s in range(n_sess):
        if s:
            t += draw(st.sampled_from([GAP + 1, GAP + 2, 10 * GAP, 10 ** 6]))
        for j in range(draw(st.integers(0, 25))):
            if j:
                t += draw(st.sampled_from([0, 1, GAP - 1, GAP]))   # GAP exactly: same session
            ids.append(next_id)
            times.append(t)
            next_id += 1
    perm = draw(st.sampled_from(["asis", "reversed", "shuffled"]))
    pairs = list(zip(ids, times))
    if perm == "reversed":
        pairs = pairs[::-1]
    elif perm == "shuffled":
        pairs = draw(st.permutations(pairs))
    for _ in range(draw(st.integers(0, 3))):           # padding anywhere
        k = draw(st.integers(0, len(pairs)))
        pairs.insert(k, (-1, draw(st.sampled_from([-1, 0, 5]))))
    return pairs


@settings(max_examples=60, deadline=None)
@given(st.lists(rows(), min_size=1, max_size=5), st.integers(1, 12), st.integers(1, 27))
def test_segmentation_matches_reference(batch, S, L):
    T = max(1, max(len(r) for r in batch))
    ids = [[i for i, _ in r] + [-1] * (T - len(r)) for r in batch]
    times = [[t for _, t in r] + [-1] * (T - len(r)) for r in batch]
    check(ids, times, GAP, S, L)


def test_gap_exactly_at_threshold_stays_in_session():
    # 0 -> 1800: exactly the gap (same session); 1800 -> 3601: 1801 > 1800 (new session)
    check([[1, 2, 3]], [[0, 1800, 3601]], 1800, 10, 25)
    s = segment_sessions(torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1800, 3601]]), 1800, 10, 25)
    assert s.lengths[0, :2].tolist() == [2, 1] and int(s.count[0]) == 2
    s = segment_sessions(torch.tensor([[1, 2]]), torch.tensor([[0, 1801]]), 1800, 10, 25)
    assert s.lengths[0, :2].tolist() == [1, 1]


def test_caps_keep_the_most_recent():
    # 3 sessions of 3; keep 2 sessions x 2 behaviours: the last two sessions, their last two each
    times = [0, 1, 2, 10000, 10001, 10002, 20000, 20001, 20002]
    s = segment_sessions(torch.arange(9).unsqueeze(0), torch.tensor([times]), 1800, 2, 2)
    assert s.ids[0].tolist() == [[4, 5], [7, 8]]


def test_empty_histories_and_empty_batch_rows():
    s = segment_sessions(torch.full((3, 4), -1), torch.full((3, 4), -1), 1800, 2, 3)
    assert s.count.tolist() == [0, 0, 0] and (s.ids == -1).all() and (s.lengths == 0).all()
    s = segment_sessions(torch.zeros((2, 0), dtype=torch.int64), torch.zeros((2, 0), dtype=torch.int64))
    assert s.ids.shape == (2, 10, 25) and s.count.tolist() == [0, 0]


def test_presegmented_input():
    ids = torch.tensor([[[3, -1, 4], [-1, -1, -1], [5, 6, 7]]])
    s = segment_sessions(ids, None, 1800, 3, 2)
    assert s.ids[0].tolist() == [[3, 4], [-1, -1], [6, 7]]       # compacted, the last 2 kept
    assert s.lengths[0].tolist() == [2, 0, 2] and s.count.tolist() == [3]   # an empty session is valid
    s = segment_sessions(ids, None, 1800, 2, 3)                      # the last 2 slots kept
    assert s.ids[0].tolist() == [[-1, -1, -1], [5, 6, 7]] and s.count.tolist() == [2]
    assert s.take(ids * 10)[0].tolist() == [[-1, -1, -1], [50, 60, 70]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="timestamps"):
        segment_sessions(torch.zeros((1, 2), dtype=torch.int64), None)
    with pytest.raises(ValueError, match="match"):
        segment_sessions(torch.zeros((1, 2), dtype=torch.int64), torch.zeros((1, 3), dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        segment_sessions(torch.zeros((1, 2)), torch.zeros((1, 2), dtype=torch.int64))


def test_timestamps_field_schema():
    fields = [SparseField("movie", 10, 4), SequenceField("hist", 10, 4, 8, truncate=True),
              TimestampField("hist_time", "hist", gap=60, max_sessions=3, session_len=4)]
    sch = Schema(fields)
    assert Schema.from_json(sch.to_json()) == sch
    assert sch["hist_time"].to_json() == {"name": "hist_time", "kind": "timestamps", "sequence": "hist",
                                          "gap": 60, "max_sessions": 3, "session_len": 4}
    assert sch.width() == 8                              # timestamps are not part of x0
    with pytest.raises(ValueError, match="sequence field"):
        Schema([SparseField("movie", 10, 4), TimestampField("t", "movie")])
    with pytest.raises(ValueError, match="already has timestamps"):
        Schema(fields + [TimestampField("t2", "hist")])
    with pytest.raises(ValueError, match="gap"):
        TimestampField("t", "hist", gap=-1)
    with pytest.raises(ValueError, match="max_sessions"):
        TimestampField("t", "hist", max_sessions=0)
    with pytest.raises(ValueError, match="unexpected keys"):
        Schema.from_json([f.to_json() for f in fields[:2]] + [{**fields[2].to_json(), "dim": 1}])
