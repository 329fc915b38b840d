// The model's input schema (docs/format.md §4.1), parsed and checked at load.
#pragma once

#include <string>
#include <vector>

#include "dpn/dpn.h"
#include "format/json.h"

namespace dpn::schema {

enum class Policy { Hash, OovBucket, Error };
enum class Pooling { Sum, Mean };

struct Field {
  FieldInfo info;
  Policy policy = Policy::Hash;    // sparse / multi_hot
  Pooling pooling = Pooling::Sum;  // multi_hot
  bool truncate = false;           // sequence: keep the last max_len ids of a longer row
  int table = -1;                  // sequence: index of the sparse field whose table it shares
  // timestamps (opset 5): the sequence field it times, and the session rules (docs/format.md §4.1)
  int sequence = -1;
  int64_t gap = 0, max_sessions = 0, session_len = 0;
  // sequence: the timestamps field whose sessions lay it out (set from the graph's
  // session_embedding nodes, graph::mark_session_fields); -1: read as an ordinary sequence.
  int sessions = -1;
};

// The most a timestamps field's max_sessions x session_len may keep (an op's per-row scratch).
constexpr int64_t kMaxSessionPositions = int64_t(1) << 16;
// Timestamps of valid behaviours lie in [0, kMaxTimestamp): differences never overflow.
constexpr int64_t kMaxTimestamp = int64_t(1) << 62;

// The engine's opset; files with a higher one are refused (docs/format.md §6).
constexpr int64_t kOpset = 5;
// Size bounds of a field (docs/format.md, "Size bounds").
constexpr int64_t kMaxVocab = int64_t(1) << 48;
constexpr int64_t kMaxDim = int64_t(1) << 20;

// The advice every "too new" error ends with.
std::string upgrade_advice();

// Parses metadata["schema"]["fields"]; throws FormatError naming the field and key at fault.
std::vector<Field> parse_schema(const format::Json& meta);

}  // namespace dpn::schema
