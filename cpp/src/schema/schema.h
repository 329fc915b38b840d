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
};

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
