// Mapping a raw id to a table row under the field's policy (docs/format.md §4.1).
#pragma once

#include <cstdint>
#include <string>

#include "schema/schema.h"

namespace dpn::schema {

// Table row for `id`; never outside [0, vocab] (vocab only for oov_bucket).
// Throws InputError for an out-of-range id under policy "error".
inline int64_t resolve_id(const Field& f, int64_t id) {
  const int64_t v = f.info.vocab;
  if (id >= 0 && id < v) return id;
  switch (f.policy) {
    case Policy::Hash: {
      const int64_t r = id % v;  // C++ remainder keeps the sign of id; torch.remainder does not
      return r < 0 ? r + v : r;
    }
    case Policy::OovBucket: return v;
    case Policy::Error: break;
  }
  throw InputError(f.info.name,
                   "id " + std::to_string(id) + " out of range [0, " + std::to_string(v) + ")");
}

}  // namespace dpn::schema
