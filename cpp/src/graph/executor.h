// Runs a graph over a batch (already validated: schema/validate.h), one block of rows at a time, so
// scratch memory is bounded by the block size and the model's widths, never by the batch size.
#pragma once

#include <vector>

#include "dpn/dpn.h"
#include "graph/graph.h"
#include "graph/shared_plan.h"

namespace dpn::graph {

constexpr int64_t kBlockRows = 256;

// out[b] = logit or sigmoid(logit) of row b. threads ≥ 1: blocks are shared among that many
// threads (the calling one included); each has its own scratch.
void execute(const Graph& g, const std::vector<FieldInput>& inputs, int64_t batch, float* out,
             bool logits, int threads);

// A ranking request split by `plan` (graph/shared_plan.h): the user-only nodes run on the
// `users` rows of `shared` (an entry per schema field; only the shared fields' are read), the
// rest on the `batch` candidate rows of `inputs`, which read user values through user_of_row
// (batch entries in [0, users)). Gives what execute() gives for the broadcast batch.
void execute_request(const Graph& g, const SharedPlan& plan, const std::vector<FieldInput>& inputs,
                     const std::vector<FieldInput>& shared, const int64_t* user_of_row, int64_t batch,
                     int64_t users, float* out, bool logits, int threads);

}  // namespace dpn::graph
