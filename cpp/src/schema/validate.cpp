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
  validate_sessions(fields, inputs, {});
}

void validate_sessions(const std::vector<Field>& fields, const std::vector<FieldInput>& inputs,
                       const std::vector<char>& is_shared) {
  for (size_t t = 0; t < fields.size(); ++t) {
    const Field& ts = fields[t];
    if (ts.info.kind != FieldKind::Timestamps) continue;
    const FieldInput& tin = inputs[t];
    for (size_t i = 0; i < fields.size(); ++i) {
      // The timestamps' sequence, and every sequence field laid out by its sessions, must hold the
      // ids at the same positions as the timestamps.
      if (int(i) != ts.sequence && fields[i].sessions != int(t)) continue;
      const FieldInput& in = inputs[i];
      const std::string& name = fields[i].info.name;
      if (!is_shared.empty() && is_shared[i] != is_shared[t])
        throw RequestError("request: field '" + name + "' and its timestamps field '" + ts.info.name +
                           "' must be both shared or both per candidate");
      if (in.cols != tin.cols || (in.offsets == nullptr) != (tin.offsets == nullptr))
        throw InputError(ts.info.name,
                         "must have the shape of '" + name + "' (one timestamp per id): " + "got " +
                             std::to_string(tin.cols) + " columns" + (tin.offsets ? " (ragged)" : "") +
                             " for " + std::to_string(in.cols) + (in.offsets ? " (ragged)" : ""));
      if (in.offsets)
        for (int64_t b = 0; b <= in.rows; ++b)
          if (in.offsets[b] != tin.offsets[b])
            throw InputError(ts.info.name, "ragged offsets differ from those of '" + name + "' at row " +
                                               std::to_string(b));
    }
    // Every valid behaviour's timestamp in [0, 2^62): sorting and gaps then never overflow (a
    // padded position's timestamp is ignored).
    const FieldInput& sin = inputs[size_t(ts.sequence)];
    const int64_t n = sin.offsets ? sin.cols : sin.rows * sin.cols;
    for (int64_t k = 0; k < n; ++k)
      if (sin.ids[k] != -1 && (tin.ids[k] < 0 || tin.ids[k] >= kMaxTimestamp))
        throw InputError(ts.info.name, "timestamp " + std::to_string(tin.ids[k]) +
                                           " of a behaviour (value " + std::to_string(k) +
                                           ") is outside [0, 2^62) seconds");
  }
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
      case FieldKind::Sequence:
      case FieldKind::Timestamps: {
        if (f.info.kind == FieldKind::Sparse && in.cols != 1)
          throw InputError(name, "expected one id per row");
        if (f.info.kind == FieldKind::MultiHot && f.info.max_len > 0 && in.cols > f.info.max_len)
          throw InputError(name, "got " + std::to_string(in.cols) + " ids per row, more than max_len " +
                                     std::to_string(f.info.max_len));
        // A sequence laid out by sessions keeps any number of ids (the session caps bound it).
        const bool capped = f.info.kind == FieldKind::Sequence && !f.truncate && f.sessions < 0;
        if (in.offsets && f.info.kind != FieldKind::Sequence && f.info.kind != FieldKind::Timestamps)
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
            if (capped && n > f.info.max_len)
              throw InputError(name, "row " + std::to_string(b) + " has " + std::to_string(n) +
                                         " ids, more than max_len " + std::to_string(f.info.max_len) +
                                         " (the schema does not truncate)");
          }
          if (in.offsets[batch] != in.cols)
            throw InputError(name, "ragged offsets end at " + std::to_string(in.offsets[batch]) +
                                       ", but " + std::to_string(in.cols) + " values were given");
        }
        if (capped && !in.offsets && in.cols > f.info.max_len)
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
