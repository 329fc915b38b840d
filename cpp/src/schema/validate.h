// Checks a request against the model's schema before any work: the one place every API (C++,
// C ABI, Python) validates a batch, so each check and its message exist once.
#pragma once

#include <vector>

#include "dpn/dpn.h"
#include "schema/schema.h"

namespace dpn::schema {

// Shapes and sizes (every product of caller sizes checked), ragged offsets, ids under policy
// "error", finite dense values. Throws InputError naming the field.
void validate_inputs(const std::vector<Field>& fields, const std::vector<FieldInput>& inputs,
                     int64_t batch);

// The same checks for one field's input of `rows` rows (a request's shared fields have one row
// per user).
void validate_field(const Field& f, const FieldInput& in, int64_t rows);

// Each timestamps field against the fields its sessions lay out (after validate_field on each):
// the same shape and offsets, every valid behaviour's timestamp in [0, 2^62). is_shared (a
// request's, or empty for a batch): such fields must be shared alike (RequestError).
void validate_sessions(const std::vector<Field>& fields, const std::vector<FieldInput>& inputs,
                       const std::vector<char>& is_shared);

}  // namespace dpn::schema
