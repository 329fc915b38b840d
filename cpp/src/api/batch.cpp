// dpn::Batch: per-request views of caller-owned arrays, placed in schema order by field name.
#include <stdexcept>

#include "dpn/dpn.h"

namespace dpn {

Batch::Batch(const Model& model, int64_t rows)
    : fields_(&model.fields()), rows_(rows), inputs_(model.fields().size()) {
  if (rows < 0) throw std::invalid_argument("Batch: rows must be >= 0");
  // Unset fields hold 0 rows (predict names them when rows > 0) and a valid width, so that an empty
  // batch needs no field set.
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const FieldInfo& f = (*fields_)[i];
    inputs_[i].cols = f.kind == FieldKind::Sparse ? 1 : f.kind == FieldKind::Dense ? f.dim : 0;
  }
}

int64_t Batch::index_of(const std::string& name) const {
  for (size_t i = 0; i < fields_->size(); ++i)
    if ((*fields_)[i].name == name) return static_cast<int64_t>(i);
  std::string names;
  for (const auto& f : *fields_) names += (names.empty() ? "'" : ", '") + f.name + "'";
  throw InputError(name, "is not a field of this model (its fields are " + names + ")");
}

Batch& Batch::set_ids(const std::string& name, const int64_t* ids, int64_t cols) {
  const int64_t i = index_of(name);
  if ((*fields_)[size_t(i)].kind == FieldKind::Dense)
    throw InputError(name, "is a dense field: use set_values (float32), not set_ids");
  return set(i, FieldInput{ids, nullptr, rows_, cols});
}

Batch& Batch::set_ragged(const std::string& name, const int64_t* ids, const int64_t* offsets,
                         int64_t total) {
  const int64_t i = index_of(name);
  if ((*fields_)[size_t(i)].kind != FieldKind::Sequence)
    throw InputError(name, "is not a sequence field: ragged rows are only read for sequences");
  FieldInput in{ids, nullptr, rows_, total};
  in.offsets = offsets;
  return set(i, in);
}

Batch& Batch::set_values(const std::string& name, const float* values, int64_t cols) {
  const int64_t i = index_of(name);
  if ((*fields_)[size_t(i)].kind != FieldKind::Dense)
    throw InputError(name, "is an id field: use set_ids (int64), not set_values");
  return set(i, FieldInput{nullptr, values, rows_, cols});
}

Batch& Batch::set(int64_t field_index, const FieldInput& input) {
  if (field_index < 0 || field_index >= static_cast<int64_t>(inputs_.size()))
    throw std::out_of_range("Batch::set: field index " + std::to_string(field_index) + " out of range");
  inputs_[size_t(field_index)] = input;
  return *this;
}

}  // namespace dpn
