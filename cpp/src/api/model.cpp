// dpn::Model, the public C++ API's implementation: load (map or take the bytes, validate container,
// parse metadata, build graph) and predict.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>

#include "api/request.h"
#include "dpn/dpn.h"
#include "format/json.h"
#include "format/mapped_file.h"
#include "format/reader.h"
#include "graph/executor.h"
#include "graph/graph.h"
#include "graph/shared_plan.h"
#include "schema/validate.h"
#include "schema/schema.h"
#include "runtime/load_budget.h"

namespace dpn {

#define DPN_STR_(x) #x
#define DPN_STR(x) DPN_STR_(x)
// From dpn.h's macros, which CMake checks against pyproject.toml (the one version string).
const char* version() {
  return DPN_STR(DPN_VERSION_MAJOR) "." DPN_STR(DPN_VERSION_MINOR) "." DPN_STR(DPN_VERSION_PATCH);
}

namespace {

// An owned copy of a model file, 64-byte aligned like a mapping so tensors can be read in place.
struct AlignedBytes {
  uint8_t* p = nullptr;
  explicit AlignedBytes(const void* src, size_t n) {
    const size_t alloc = (n + 63) / 64 * 64;
    p = static_cast<uint8_t*>(std::aligned_alloc(64, alloc ? alloc : 64));
    if (!p) throw std::bad_alloc();
    if (n) std::memcpy(p, src, n);
  }
  ~AlignedBytes() { std::free(p); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
};

}  // namespace

struct Model::Impl {
  // Exactly one of these holds the bytes; embedding tables and small params are read in place.
  std::optional<format::MappedFile> file;
  std::unique_ptr<AlignedBytes> owned;
  const uint8_t* data = nullptr;
  size_t size = 0;
  format::Container container;
  std::vector<schema::Field> fields;
  std::vector<FieldInfo> infos;
  graph::Graph graph;
  int64_t opset = 0;
  graph::PlanCache plans;  // ranking requests: one plan per distinct set of shared fields
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

namespace {

// The default of LoadOptions::max_alloc_bytes: packed weights are about the size of their tensors
// (a few times more for thin layers padded to a panel), so this only stops files that ask for far
// more memory than they hold. `f` is the file's size with every float16/bfloat16/int8 tensor counted
// at its float32 size (they are widened or packed as float32, or kept as they are).
uint64_t alloc_limit(const LoadOptions& o, uint64_t f) {
  if (o.max_alloc_bytes) return o.max_alloc_bytes;
  return (uint64_t(64) << 20) + (f > (UINT64_MAX >> 3) ? UINT64_MAX >> 1 : 4 * f);
}

uint64_t float32_size(const format::Container& c, size_t file_size) {
  uint64_t f = file_size;
  for (const auto& t : c.tensors)
    if (format::is_param_dtype(t.dtype) && t.dtype != format::DType::F32) {
      const uint64_t grow = t.nbytes * (4 / format::elem_size(t.dtype) - 1);  // nbytes <= file size
      f = grow > UINT64_MAX / 2 - f ? UINT64_MAX / 2 : f + grow;
    }
  return f;
}

// Reduced-precision tensors need the opset that introduced them (docs/format.md §3.1, §3.2), also
// when no node names them (a node's params are checked as they are read).
void check_tensor_opsets(const format::Container& c, int64_t opset) {
  for (const auto& t : c.tensors) {
    const int64_t need = t.dtype == format::DType::I8                                        ? 4
                         : (t.dtype == format::DType::F16 || t.dtype == format::DType::BF16) ? 3
                                                                                             : 1;
    if (opset < need)
      throw FormatError("tensor '" + t.name + "' is " + format::dtype_name(t.dtype) +
                        ", which needs opset " + std::to_string(need) + " (the file says " +
                        std::to_string(opset) + ")");
  }
}

// The metadata's optional "arithmetic" (docs/format.md §4): "bf16" asks for bfloat16 GEMMs, "int8"
// for int8 ones; absent means "float32".
std::string recorded_arithmetic(const format::Json& meta) {
  const format::Json* a = meta.find("arithmetic");
  if (!a) return "float32";
  if (!a->is_string() ||
      (a->as_string() != "float32" && a->as_string() != "bf16" && a->as_string() != "int8"))
    throw FormatError("invalid model metadata: 'arithmetic' must be \"float32\", \"bf16\" or \"int8\"");
  return a->as_string();
}

std::shared_ptr<const Model> finish(std::unique_ptr<Model::Impl> impl, const LoadOptions& options,
                                    std::shared_ptr<const Model> (*make)(std::unique_ptr<Model::Impl>)) {
  runtime::LoadScope budget(0, impl->data, impl->size);
  impl->container = format::read_container(impl->data, impl->size);
  budget.set_limit(alloc_limit(options, float32_size(impl->container, impl->size)));
  const std::string& text = impl->container.metadata;
  const format::Json meta = format::Json::parse(text.data(), text.size());
  if (!meta.is_object()) throw FormatError("invalid model metadata: the JSON must be an object");
  graph::check_opset(meta);
  impl->opset = meta.find("opset")->as_int();
  const std::string recorded = recorded_arithmetic(meta);  // checked even when the caller overrides it
  budget.set_bf16_gemm(options.bf16_gemm == Bf16Gemm::Recorded ? recorded == "bf16"
                                                               : options.bf16_gemm == Bf16Gemm::On);
  budget.set_int8_gemm(options.int8_gemm == Int8Gemm::Recorded ? recorded == "int8"
                                                               : options.int8_gemm == Int8Gemm::On);
  impl->fields = schema::parse_schema(meta);
  for (const auto& f : impl->fields) impl->infos.push_back(f.info);
  impl->graph = graph::build_graph(meta, impl->fields, impl->container);
  graph::mark_session_fields(impl->graph, impl->fields);
  check_tensor_opsets(impl->container, impl->opset);  // after the nodes, which name the node at fault
  return make(std::move(impl));
}

}  // namespace

// Model's constructor is private: a captureless lambda here may call it (member scope).
std::shared_ptr<const Model> Model::load(const std::string& path) { return load(path, LoadOptions{}); }

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->file.emplace(path, options.mode == LoadMode::Copy);
  impl->data = impl->file->data();
  impl->size = impl->file->size();
  return finish(std::move(impl), options, [](std::unique_ptr<Impl> i) {
    return std::shared_ptr<const Model>(new Model(std::move(i)));
  });
}

std::shared_ptr<const Model> Model::load_from_memory(const void* data, size_t size, BufferMode mode) {
  return load_from_memory(data, size, mode, LoadOptions{});
}

std::shared_ptr<const Model> Model::load_from_memory(const void* data, size_t size, BufferMode mode,
                                                     const LoadOptions& options) {
  if (!data && size > 0) throw std::invalid_argument("load_from_memory: data is null");
  auto impl = std::make_unique<Impl>();
  if (mode == BufferMode::Copy) {
    impl->owned = std::make_unique<AlignedBytes>(data, size);
    impl->data = impl->owned->p;
  } else {
    if (reinterpret_cast<uintptr_t>(data) % 64 != 0)
      throw std::invalid_argument(
          "load_from_memory: a borrowed buffer must be 64-byte aligned (tensors are read in place); "
          "use BufferMode::Copy");
    impl->data = static_cast<const uint8_t*>(data);
  }
  impl->size = size;
  return finish(std::move(impl), options, [](std::unique_ptr<Impl> i) {
    return std::shared_ptr<const Model>(new Model(std::move(i)));
  });
}

int64_t Model::num_fields() const { return static_cast<int64_t>(impl_->fields.size()); }
const std::vector<FieldInfo>& Model::fields() const { return impl_->infos; }
const std::string& Model::metadata_json() const { return impl_->container.metadata; }
int64_t Model::opset() const { return impl_->opset; }
const uint8_t* Model::file_data() const { return impl_->data; }
size_t Model::file_size() const { return impl_->size; }

int64_t Model::field_index(const std::string& name) const {
  for (size_t i = 0; i < impl_->infos.size(); ++i)
    if (impl_->infos[i].name == name) return static_cast<int64_t>(i);
  return -1;
}

NonFiniteScoreError::NonFiniteScoreError(std::vector<int64_t> rows, int64_t num_rows)
    : InputError(
          Whole{},
          [&] {
            std::string s = "the score of " + std::to_string(num_rows) +
                            (num_rows == 1 ? " row" : " rows") + " is NaN (row";
            s += rows.size() == 1 ? " " : "s ";
            for (size_t i = 0; i < rows.size(); ++i) s += (i ? ", " : "") + std::to_string(rows[i]);
            if (int64_t(rows.size()) < num_rows) s += ", ...";
            return s +
                   "): a value overflowed float32 inside the model (e.g. a huge dense input), where "
                   "PyTorch gives NaN too; pass allow_nan to get NaN scores instead of this error";
          }()),
      rows_(std::move(rows)),
      num_rows_(num_rows) {}

namespace {
// A NaN score is never returned as if it were one (a finite one never is where PyTorch has NaN:
// every activation propagates NaN). ±inf logits are returned: PyTorch gives them too.
void check_scores(const float* out, int64_t batch, const PredictOptions& options) {
  if (options.allow_nan) return;
  int64_t bad = 0;
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < batch; ++b)
    if (std::isnan(out[b]) && bad++ < 10) rows.push_back(b);
  if (bad) throw NonFiniteScoreError(std::move(rows), bad);
}
}  // namespace

void Model::predict(const std::vector<FieldInput>& inputs, int64_t batch, float* out, bool logits,
                    int threads) const {
  PredictOptions o;
  o.logits = logits;
  o.threads = threads;
  predict(inputs, batch, out, o);
}

void Model::predict(const std::vector<FieldInput>& inputs, int64_t batch, float* out,
                    const PredictOptions& options) const {
  if (options.threads < 1) throw std::invalid_argument("threads must be >= 1");
  schema::validate_inputs(impl_->fields, inputs, batch);
  if (batch > 0 && !out) throw std::invalid_argument("out is null");
  graph::execute(impl_->graph, inputs, batch, out, options.logits, options.threads);
  check_scores(out, batch, options);
}

void Model::predict(const std::vector<FieldInput>& inputs, int64_t batch, const SharedInputs& shared,
                    float* out, const PredictOptions& options) const {
  if (options.threads < 1) throw std::invalid_argument("threads must be >= 1");
  const auto& fields = impl_->fields;
  if (batch < 0) throw Error("batch must be >= 0");
  // Before any field is validated against it (a ragged field reads offsets[users]).
  if (shared.users < 0)
    throw RequestError("request: users must be >= 0, got " + std::to_string(shared.users));
  if (inputs.size() != fields.size())
    throw Error("predict needs " + std::to_string(fields.size()) + " field inputs, got " +
                std::to_string(inputs.size()));
  std::vector<char> is_shared(fields.size(), 0);
  std::vector<FieldInput> user(fields.size());
  for (const SharedInput& s : shared.fields) {
    if (s.field < 0 || s.field >= static_cast<int64_t>(fields.size()))
      throw std::invalid_argument("SharedInput.field " + std::to_string(s.field) + " out of range");
    const size_t i = size_t(s.field);
    const std::string& name = impl_->infos[i].name;
    if (is_shared[i]) throw RequestError("request: field '" + name + "' is shared twice");
    const FieldInput& c = inputs[i];
    if (c.rows || c.ids || c.values || c.offsets)
      throw RequestError("request: field '" + name +
                         "' is given both per candidate and shared; pass it one way");
    if (s.input.rows != shared.users)
      throw InputError(name, "is shared with " + std::to_string(s.input.rows) +
                                 " rows, but the request has " + std::to_string(shared.users) +
                                 (shared.users == 1 ? " user" : " users") + " (one row per user)");
    is_shared[i] = 1;
    user[i] = s.input;
  }
  std::vector<FieldInput> given(fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    given[i] = is_shared[i] ? user[i] : inputs[i];
    schema::validate_field(fields[i], given[i], is_shared[i] ? shared.users : batch);
  }
  schema::validate_sessions(fields, given, is_shared);
  const std::vector<int64_t> user_of_row = api::users_of_rows(shared, batch);
  if (batch > 0 && !out) throw std::invalid_argument("out is null");
  if (batch == 0) return;
  // The split runs the user-only nodes on `users` rows instead of `batch`: it pays when what it
  // saves on the other batch - users rows outweighs its fixed cost, a second pass over the blocks
  // (~1 µs, about what kMinSavedPerCall floats of embedding rows cost); otherwise the broadcast
  // batch costs no more (docs/performance.md, "Ranking requests").
  // The values it keeps per user are bounded too (kMaxKeptFloats, as a block's scratch is): a
  // request of very many users takes the broadcast path's bounded blocks instead.
  constexpr int64_t kMinSavedPerCall = 4096, kMaxKeptFloats = int64_t(1) << 26;
  const auto plan = impl_->plans.get(impl_->graph, is_shared);  // null: too many shared sets
  int64_t saved = 0, kept = 0;
  if (plan && shared.users < batch &&
      __builtin_mul_overflow(batch - shared.users, plan->saved_per_row, &saved))
    saved = INT64_MAX;
  if (plan && __builtin_mul_overflow(shared.users, plan->kept_per_user, &kept)) kept = INT64_MAX;
  if (plan && saved >= kMinSavedPerCall && kept <= kMaxKeptFloats) {
    graph::execute_request(impl_->graph, *plan, inputs, user, user_of_row.data(), batch, shared.users,
                           out, options.logits, options.threads);
  } else {
    const api::Broadcast b = api::broadcast(fields, inputs, batch, user, is_shared, user_of_row);
    graph::execute(impl_->graph, b.inputs, batch, out, options.logits, options.threads);
  }
  check_scores(out, batch, options);
}

void Model::predict(const FieldInput* inputs, size_t num_inputs, int64_t batch, float* out,
                    const PredictOptions& options) const {
  if (!inputs && num_inputs > 0) throw std::invalid_argument("inputs is null");
  const std::vector<FieldInput> v(inputs, inputs + num_inputs);
  predict(v, batch, out, options);
}

void Model::predict(const Batch& batch, float* out, const PredictOptions& options) const {
  const auto& in = batch.inputs();
  if (in.size() != impl_->fields.size())
    throw std::invalid_argument("the batch was made for a model with a different schema");
  const SharedInputs& shared = batch.shared();
  std::vector<char> is_shared(in.size(), 0);
  for (const SharedInput& s : shared.fields)
    if (s.field >= 0 && s.field < static_cast<int64_t>(in.size())) is_shared[size_t(s.field)] = 1;
  if (batch.rows() > 0)
    for (size_t i = 0; i < in.size(); ++i)
      if (!is_shared[i] && in[i].rows != batch.rows())
        throw InputError(impl_->infos[i].name, "was not set in the batch");
  if (shared.fields.empty() && !shared.groups)
    predict(in, batch.rows(), out, options);
  else
    predict(in, batch.rows(), shared, out, options);
}

}  // namespace dpn
