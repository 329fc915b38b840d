// Runs a graph over a batch (already validated: schema/validate.h), one block of rows at a time, so
// scratch memory is bounded by the block size and the model's widths, never by the batch size.
#pragma once

#include <vector>

#include "dpn/dpn.h"
#include "graph/graph.h"

namespace dpn::graph {

constexpr int64_t kBlockRows = 256;

// out[b] = logit or sigmoid(logit) of row b. threads ≥ 1: blocks are shared among that many
// threads (the calling one included); each has its own scratch.
void execute(const Graph& g, const std::vector<FieldInput>& inputs, int64_t batch, float* out,
             bool logits, int threads);

}  // namespace dpn::graph
