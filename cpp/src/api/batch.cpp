// dpn::Batch: per-request views of caller-owned arrays, placed in schema order by field name.
#include <cstddef>
#include <stdexcept>

#include "dpn/dpn.h"

namespace dpn {

namespace {
// An unset field holds 0 rows (predict names it when rows > 0) and a valid width, so that an empty
// batch needs no field set.
FieldInput unset(const FieldInfo& f) {
  FieldInput in;
  in.cols = f.kind == FieldKind::Sparse ? 1 : f.kind == FieldKind::Dense ? f.dim : 0;
  return in;
}
}  // namespace

Batch::Batch(const Model& model, int64_t rows)
    : fields_(&model.fields()), rows_(rows), inputs_(model.fields().size()) {
  if (rows < 0) throw std::invalid_argument("Batch: rows must be >= 0");
  for (size_t i = 0; i < inputs_.size(); ++i) inputs_[i] = unset((*fields_)[i]);
}

int64_t Batch::index_of(const std::string& name) const {
  for (size_t i = 0; i < fields_->size(); ++i)
    if ((*fields_)[i].name == name) return static_cast<int64_t>(i);
  std::string names;
  for (const auto& f : *fields_) names += (names.empty() ? "'" : ", '") + f.name + "'";
  throw InputError(name, "is not a field of this model (its fields are " + names + ")");
}

// The index of field `name` after checking that it takes ids (ragged: a sequence) or values.
int64_t Batch::checked(const std::string& name, bool ids, bool ragged) const {
  const int64_t i = index_of(name);
  const FieldKind k = (*fields_)[size_t(i)].kind;
  if (ragged && k != FieldKind::Sequence && k != FieldKind::Timestamps)
    throw InputError(name,
                     "is not a sequence field: ragged rows are only read for sequences "
                     "(and their timestamps)");
  if (ids && k == FieldKind::Dense)
    throw InputError(name, "is a dense field: use set_values (float32), not set_ids");
  if (!ids && k != FieldKind::Dense)
    throw InputError(name, "is an id field: use set_ids (int64), not set_values");
  return i;
}

Batch& Batch::set_ids(const std::string& name, const int64_t* ids, int64_t cols) {
  return set(checked(name, true, false), FieldInput{ids, nullptr, rows_, cols});
}

Batch& Batch::set_ragged(const std::string& name, const int64_t* ids, const int64_t* offsets,
                         int64_t total) {
  FieldInput in{ids, nullptr, rows_, total};
  in.offsets = offsets;
  return set(checked(name, true, true), in);
}

Batch& Batch::set_values(const std::string& name, const float* values, int64_t cols) {
  return set(checked(name, false, false), FieldInput{nullptr, values, rows_, cols});
}

Batch& Batch::set(int64_t field_index, const FieldInput& input) {
  if (field_index < 0 || field_index >= static_cast<int64_t>(inputs_.size()))
    throw std::out_of_range("Batch::set: field index " + std::to_string(field_index) + " out of range");
  unshare(field_index);
  inputs_[size_t(field_index)] = input;
  return *this;
}

Batch& Batch::set_shared_ids(const std::string& name, const int64_t* ids, int64_t cols) {
  return set_shared(checked(name, true, false), FieldInput{ids, nullptr, shared_.users, cols});
}

Batch& Batch::set_shared_ragged(const std::string& name, const int64_t* ids, const int64_t* offsets,
                                int64_t total) {
  FieldInput in{ids, nullptr, shared_.users, total};
  in.offsets = offsets;
  return set_shared(checked(name, true, true), in);
}

Batch& Batch::set_shared_values(const std::string& name, const float* values, int64_t cols) {
  return set_shared(checked(name, false, false), FieldInput{nullptr, values, shared_.users, cols});
}

Batch& Batch::set_shared(int64_t field_index, const FieldInput& input) {
  if (field_index < 0 || field_index >= static_cast<int64_t>(inputs_.size()))
    throw std::out_of_range("Batch::set_shared: field index " + std::to_string(field_index) +
                            " out of range");
  unshare(field_index);
  // The candidate side is left unset, as predict expects of a shared field.
  inputs_[size_t(field_index)] = unset((*fields_)[size_t(field_index)]);
  shared_.fields.push_back(SharedInput{field_index, input});
  return *this;
}

Batch& Batch::set_groups(const int64_t* offsets, int64_t users) {
  shared_.groups = offsets;
  shared_.users = users;
  for (SharedInput& s : shared_.fields) s.input.rows = users;  // one row per user, set in any order
  return *this;
}

void Batch::unshare(int64_t field_index) {
  auto& v = shared_.fields;
  for (size_t k = 0; k < v.size(); ++k)
    if (v[k].field == field_index) {
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(k));
      return;
    }
}

}  // namespace dpn
