// Ranking requests (Model::predict with SharedInputs): the checks on a request's shape, and the
// broadcast batch the planner falls back to.
#pragma once

#include <memory>
#include <vector>

#include "dpn/dpn.h"
#include "schema/schema.h"

namespace dpn::api {

// The user of each candidate row, from shared.groups (RequestError when they do not cover
// [0, batch) exactly, or users does not match them).
std::vector<int64_t> users_of_rows(const SharedInputs& shared, int64_t batch);

// The batch that repeats each user's shared values on every one of its rows (a gather by group,
// done here so that callers never repeat them): what execute() reads when a split would not pay.
// A truncating sequence field's user row may hold any number of ids: only the ids the model keeps
// (at most max_len) are repeated, so memory is batch x max_len, never batch x the row's length.
struct Broadcast {
  std::vector<FieldInput> inputs;
  std::vector<std::unique_ptr<int64_t[]>> ids;  // the gathered arrays, alive as long as inputs
  std::vector<std::unique_ptr<float[]>> values;
};
Broadcast broadcast(const std::vector<schema::Field>& fields, const std::vector<FieldInput>& inputs,
                    int64_t batch, const std::vector<FieldInput>& user,
                    const std::vector<char>& is_shared, const std::vector<int64_t>& user_of_row);

}  // namespace dpn::api
