// The model graph (docs/format.md §4.2): nodes in execution order, every value's width known and
// checked at load.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "format/json.h"
#include "format/reader.h"
#include "schema/schema.h"
#include "ops/op.h"

namespace dpn::graph {

struct Node {
  std::unique_ptr<ops::Op> op;
  std::string kind;         // the operator's name in the file ("concat", "linear", ...)
  std::vector<int> inputs;  // value ids
  int output = -1;          // value id
};

struct Graph {
  std::vector<Node> nodes;
  std::vector<int64_t> widths;  // per value id
  int output = -1;
  int64_t row_floats = 0;  // Σ widths: the floats one row of a block holds
};

// Bound on Σ widths (floats per row of a block), checked at load: every op caps its own width, but
// a chain of wide nodes (long sequences) could otherwise add up to gigabytes for a tiny file.
constexpr int64_t kMaxRowFloats = int64_t(1) << 26;

// Refuses metadata whose opset is newer than schema::kOpset, naming the first unknown kind or operator.
void check_opset(const format::Json& meta);

// Builds and validates the graph; throws FormatError naming the node at fault.
Graph build_graph(const format::Json& meta, const std::vector<schema::Field>& fields,
                  const format::Container& tensors);

// Records in `fields` which sequence fields the graph's session_embedding nodes lay out by a
// timestamps field's sessions (schema::Field::sessions), so that validation checks them against
// it; a field laid out by two timestamps fields is refused (FormatError).
void mark_session_fields(const Graph& g, std::vector<schema::Field>& fields);

}  // namespace dpn::graph
