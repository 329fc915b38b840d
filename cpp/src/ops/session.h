// Sessions of a timed behaviour sequence (docs/format.md §4.1 `timestamps`, §4.4): the layout the
// session operators share. A session value holds S sessions of L positions each, [rows, S·L·d]
// (session s, position i at columns [(s·L + i)·d, (s·L + i + 1)·d)), zeros past each session's
// length; the lengths travel as a [rows, S] value (from `session_length`). Because [rows, S·L·d]
// is [rows·S, L·d] in memory, a sequence op given `sessions` S runs its per-row code on rows·S
// rows of L positions: each session is a row of its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

// An op that lays values out by a timestamps field's sessions (graph::mark_session_fields reads
// which fields it lays out).
class SessionOp : public Op {
 public:
  int64_t timestamps = -1;  // schema index of the timestamps field
};

// One row's sessions: src[s·L + i] is the input position (within the row) of the behaviour at
// session slot s, position i, or -1; len[s] each slot's length. The row's valid behaviours
// (ids != -1) are stably sorted by time; behaviour j opens a session when t_j − t_{j−1} > gap; the
// last S sessions are kept, oldest in slot 0, each with its last L behaviours in time order.
// (Timestamps are validated to lie in [0, 2^62), so the differences cannot overflow.)
// work: reused scratch (no allocation once grown).
inline void segment_row(const int64_t* ids, const int64_t* times, int64_t cols, int64_t gap, int64_t S,
                        int64_t L, std::vector<int64_t>& work, int64_t* src, int64_t* len) {
  work.clear();
  for (int64_t t = 0; t < cols; ++t)
    if (ids[t] != -1) work.push_back(t);
  std::stable_sort(work.begin(), work.end(),
                   [times](int64_t a, int64_t b) { return times[a] < times[b]; });
  std::fill(src, src + S * L, int64_t(-1));
  std::fill(len, len + S, int64_t(0));
  const int64_t n = static_cast<int64_t>(work.size());
  if (n == 0) return;
  // Walk the sessions from the most recent back, filling slots from S − 1 down, then shift the
  // kept ones to start at slot 0.
  int64_t end = n, slot = S - 1;
  while (end > 0 && slot >= 0) {
    int64_t begin = end - 1;
    while (begin > 0 && times[work[size_t(begin)]] - times[work[size_t(begin - 1)]] <= gap) --begin;
    const int64_t keep = std::min(L, end - begin);
    for (int64_t i = 0; i < keep; ++i) src[slot * L + i] = work[size_t(end - keep + i)];
    len[slot] = keep;
    end = begin;
    --slot;
  }
  const int64_t first = slot + 1;  // slots [first, S) hold the kept sessions
  if (first > 0) {
    std::copy(src + first * L, src + S * L, src);
    std::fill(src + (S - first) * L, src + S * L, int64_t(-1));
    std::copy(len + first, len + S, len);
    std::fill(len + (S - first), len + S, int64_t(0));
  }
}

// The timestamps field named by attr "timestamps" (index into fields()).
inline size_t timestamps_field(const NodeBuilder& nb) {
  const size_t ti = nb.attr_field_named("timestamps");
  if (nb.fields()[ti].info.kind != FieldKind::Timestamps)
    nb.fail("field '" + nb.fields()[ti].info.name + "' is not a timestamps field");
  return ti;
}

// attr "sessions" (S, default 1) of a sequence op with `len` its lengths input: S·T positions in
// S sessions of T; the lengths input must have width S. Returns S.
inline int64_t seq_sessions(const NodeBuilder& nb, size_t len) {
  const int64_t S = nb.attr_int("sessions", 1, 1);
  if (S > schema::kMaxSessionPositions) nb.fail("attribute 'sessions' too large");
  if (S == 1) {
    seq_len_input(nb, len);
    return 1;
  }
  if (nb.in_widths()[len] != S)
    nb.fail("input " + std::to_string(len) + " (the lengths) has width " +
            std::to_string(nb.in_widths()[len]) + ", expected sessions=" + std::to_string(S));
  return S;
}

}  // namespace dpn::ops
