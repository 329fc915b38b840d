// Batch validation (docs/architecture.md, "Contracts"): the one place every API's request is
// checked against the schema, once per call, before any work.
#include "schema/validate.h"

#include <cmath>
#include <cstddef>

#include "schema/id_policy.h"

namespace dpn::schema {

namespace {
// How many elements a caller's [rows, cols] array holds. The sizes come from the caller (the C ABI
// passes them as given): a product that wraps, or whose bytes could not be addressed, is refused
// before anything uses it (a wrapped 0 once skipped the "no ids given" check).
int64_t elements(const std::string& name, int64_t rows, int64_t cols, size_t elem_size) {
  int64_t n;
  if (__builtin_mul_overflow(rows, cols, &n) || n > PTRDIFF_MAX / int64_t(elem_size))
    throw InputError(name, std::to_string(rows) + " rows x " + std::to_string(cols) +
                               " columns is more elements than memory can hold");
  return n;
}
}  // namespace

void validate_inputs(const std::vector<Field>& fields, const std::vector<FieldInput>& inputs,
                     int64_t batch) {
  if (batch < 0) throw Error("batch must be >= 0");
  if (inputs.size() != fields.size())
    throw Error("predict needs " + std::to_string(fields.size()) + " field inputs, got " +
                std::to_string(inputs.size()));
  for (size_t i = 0; i < fields.size(); ++i) validate_field(fields[i], inputs[i], batch);
}

void validate_field(const Field& f, const FieldInput& in, int64_t batch) {
  {
    const std::string& name = f.info.name;
    if (in.rows != batch)
      throw InputError(name,
                       "has " + std::to_string(in.rows) + " rows, expected " + std::to_string(batch));
    if (in.cols < 0) throw InputError(name, "negative column count");
    switch (f.info.kind) {
      case FieldKind::Sparse:
      case FieldKind::MultiHot:
      case FieldKind::Sequence: {
        if (f.info.kind == FieldKind::Sparse && in.cols != 1)
          throw InputError(name, "expected one id per row");
        if (f.info.kind == FieldKind::MultiHot && f.info.max_len > 0 && in.cols > f.info.max_len)
          throw InputError(name, "got " + std::to_string(in.cols) + " ids per row, more than max_len " +
                                     std::to_string(f.info.max_len));
        if (in.offsets && f.info.kind != FieldKind::Sequence)
          throw InputError(name, "ragged offsets are only read for sequence fields");
        if (in.offsets) {
          if (in.offsets[0] != 0) throw InputError(name, "ragged offsets must start at 0");
          for (int64_t b = 0; b < batch; ++b) {
            // Compared, not subtracted first: a wrapped difference (offsets near INT64_MIN) could
            // pass as a long row; by induction every offset then lies in [0, cols].
            if (in.offsets[b + 1] < in.offsets[b] || in.offsets[b + 1] > in.cols)
              throw InputError(name,
                               "ragged offsets must be non-decreasing and at most the number of "
                               "values (" +
                                   std::to_string(in.cols) + "); row " + std::to_string(b));
            const int64_t n = in.offsets[b + 1] - in.offsets[b];
            if (!f.truncate && n > f.info.max_len)
              throw InputError(name, "row " + std::to_string(b) + " has " + std::to_string(n) +
                                         " ids, more than max_len " + std::to_string(f.info.max_len) +
                                         " (the schema does not truncate)");
          }
          if (in.offsets[batch] != in.cols)
            throw InputError(name, "ragged offsets end at " + std::to_string(in.offsets[batch]) +
                                       ", but " + std::to_string(in.cols) + " values were given");
        }
        if (f.info.kind == FieldKind::Sequence && !in.offsets && !f.truncate && in.cols > f.info.max_len)
          throw InputError(name, "got " + std::to_string(in.cols) + " ids per row, more than max_len " +
                                     std::to_string(f.info.max_len) + " (the schema does not truncate)");
        const int64_t n = in.offsets ? elements(name, 1, in.cols, sizeof(int64_t))
                                     : elements(name, batch, in.cols, sizeof(int64_t));
        if (n > 0 && !in.ids) throw InputError(name, "no ids given");
        if (f.policy == Policy::Error) {
          const bool multi = f.info.kind != FieldKind::Sparse;
          for (int64_t k = 0; k < n; ++k) {
            const int64_t id = in.ids[k];
            if ((id < 0 || id >= f.info.vocab) && !(multi && id == -1))
              schema::resolve_id(f, id);  // throws
          }
        }
        break;
      }
      case FieldKind::Dense: {
        if (in.cols != f.info.dim)
          throw InputError(name, "expected " + std::to_string(f.info.dim) + " values per row, got " +
                                     std::to_string(in.cols));
        const int64_t n = elements(name, batch, in.cols, sizeof(float));
        if (n > 0 && !in.values) throw InputError(name, "no values given");
        for (int64_t k = 0; k < n; ++k)
          if (!std::isfinite(in.values[k]))
            throw InputError(name, std::string(std::isnan(in.values[k]) ? "NaN" : "infinite") +
                                       " value at row " + std::to_string(k / in.cols) +
                                       "; dense values must be finite");
        break;
      }
    }
  }
}

}  // namespace dpn::schema
