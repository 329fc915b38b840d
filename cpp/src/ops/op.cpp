#include "ops/op.h"

#include <cstring>

#include "kernels/half.h"
#include "runtime/load_budget.h"

namespace dpn::ops {

using format::Json;

NodeBuilder::NodeBuilder(const Json& node, std::string label, std::vector<int64_t> in_widths,
                         const std::vector<schema::Field>& fields, const format::Container& tensors,
                         int64_t opset)
    : node_(node),
      label_(std::move(label)),
      in_widths_(std::move(in_widths)),
      fields_(fields),
      tensors_(tensors),
      opset_(opset) {
  attrs_ = node_.find("attrs");
  if (attrs_ && !attrs_->is_object()) fail("'attrs' must be an object");
  params_ = node_.find("params");
  if (params_ && !params_->is_object()) fail("'params' must be an object");
}

void NodeBuilder::fail(const std::string& msg) const {
  throw FormatError("invalid model graph: " + label_ + ": " + msg);
}

void NodeBuilder::expect_inputs(size_t min, size_t max) const {
  const size_t n = in_widths_.size();
  if (n < min || n > max) {
    std::string want = min == max ? std::to_string(min) : std::to_string(min) + " or more";
    fail("expects " + want + " input(s), got " + std::to_string(n));
  }
}

const Json* NodeBuilder::attr(const char* key) const { return attrs_ ? attrs_->find(key) : nullptr; }

bool NodeBuilder::has_attr(const char* key) const { return attr(key) != nullptr; }

int64_t NodeBuilder::attr_int(const char* key, int64_t min) const {
  const Json* v = attr(key);
  if (!v) fail(std::string("missing required attribute '") + key + "'");
  if (!v->is_integer())
    fail(std::string("attribute '") + key + "' must be an integer, got " + Json::type_name(v->type()));
  if (v->as_int() < min)
    fail(std::string("attribute '") + key + "' must be >= " + std::to_string(min) + ", got " +
         std::to_string(v->as_int()));
  return v->as_int();
}

int64_t NodeBuilder::attr_int(const char* key, int64_t min, int64_t def) const {
  return attr(key) ? attr_int(key, min) : def;
}

double NodeBuilder::attr_number(const char* key) const {
  const Json* v = attr(key);
  if (!v) fail(std::string("missing required attribute '") + key + "'");
  if (!v->is_number())
    fail(std::string("attribute '") + key + "' must be a number, got " + Json::type_name(v->type()));
  return v->as_double();
}

bool NodeBuilder::attr_bool(const char* key, bool def) const {
  const Json* v = attr(key);
  if (!v) return def;
  if (!v->is_bool())
    fail(std::string("attribute '") + key + "' must be a boolean, got " + Json::type_name(v->type()));
  return v->as_bool();
}

std::string NodeBuilder::attr_enum(const char* key, std::initializer_list<const char*> allowed,
                                   const char* def) const {
  const Json* v = attr(key);
  if (!v) {
    if (def) return def;
    fail(std::string("missing required attribute '") + key + "'");
  }
  if (!v->is_string())
    fail(std::string("attribute '") + key + "' must be a string, got " + Json::type_name(v->type()));
  std::string list;
  for (const char* a : allowed) {
    if (v->as_string() == a) return a;
    list += list.empty() ? a : std::string(", ") + a;
  }
  fail(std::string("attribute '") + key + "' has unknown value '" + v->as_string() +
       "' (expected one of: " + list + ")");
}

kernels::Act NodeBuilder::attr_act() const {
  const std::string a = attr_enum("act", {"identity", "relu", "sigmoid", "tanh"}, "identity");
  if (a == "relu") return kernels::Act::Relu;
  if (a == "sigmoid") return kernels::Act::Sigmoid;
  if (a == "tanh") return kernels::Act::Tanh;
  return kernels::Act::Identity;
}

Sigma NodeBuilder::attr_sigma() const {
  const std::string s = attr_enum("sigma", {"identity", "sigmoid", "softmax", "relu"});
  if (s == "sigmoid") return Sigma::Sigmoid;
  if (s == "softmax") return Sigma::Softmax;
  if (s == "relu") return Sigma::Relu;
  return Sigma::Identity;
}

size_t NodeBuilder::attr_field() const { return attr_field_named("field"); }

size_t NodeBuilder::attr_field_named(const char* key) const {
  const Json* v = attr(key);
  if (!v) fail(std::string("missing required attribute '") + key + "'");
  if (!v->is_string()) fail(std::string("attribute '") + key + "' must be a string");
  for (size_t i = 0; i < fields_.size(); ++i)
    if (fields_[i].info.name == v->as_string()) return i;
  fail(std::string("attribute '") + key + "' names '" + v->as_string() +
       "', which is not in the schema");
}

const format::TensorInfo* NodeBuilder::tensor(const char* role, std::initializer_list<int64_t> dims,
                                              bool table) const {
  const Json* v = params_ ? params_->find(role) : nullptr;
  if (!v) return nullptr;
  if (!v->is_string()) fail(std::string("param '") + role + "' must name a tensor (a string)");
  const format::TensorInfo* t = tensors_.find(v->as_string());
  if (!t)
    fail(std::string("param '") + role + "' names tensor '" + v->as_string() +
         "', which is not in the file");
  auto shape = [](const std::vector<int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
  };
  const std::vector<int64_t> want(dims);
  if (!format::is_param_dtype(t->dtype))
    fail(std::string("param '") + role + "' (tensor '" + t->name + "') is " +
         format::dtype_name(t->dtype) +
         "; this engine reads float32, float16 or bfloat16 parameters (or int8 ones with scales)");
  // float16/bfloat16 came with opset 3 (docs/format.md §3.1), int8 with opset 4 (§3.2): no earlier
  // writer emits them.
  const int64_t need = t->dtype == format::DType::I8 ? 4 : t->dtype != format::DType::F32 ? 3 : 1;
  if (opset_ < need)
    fail(std::string("param '") + role + "' (tensor '" + t->name + "') is " +
         format::dtype_name(t->dtype) + ", which needs opset " + std::to_string(need) +
         " (the file says " + std::to_string(opset_) + ")");
  // int8 is for tables and weight matrices (§3.2): a bias enters the float32 epilogue as is.
  const std::string r(role);
  if (t->dtype == format::DType::I8 && r.size() >= 4 && r.compare(r.size() - 4, 4, "bias") == 0)
    fail("param '" + r + "' (tensor '" + t->name + "') is int8; a bias must be float32, float16 " +
         "or bfloat16");
  // float16 scales save 2 bytes per table row (§3.2); a weight's scales stay float32.
  if (t->half_scales && !table)
    fail("param '" + r + "': int8 tensor '" + t->name + "': its scales '" + t->name +
         ".scale' are float16, not float32 (float16 scales are for embedding tables only)");
  if (t->dims != want)
    fail(std::string("param '") + role + "' (tensor '" + t->name + "') has shape " + shape(t->dims) +
         ", expected " + shape(want));
  return t;
}

const float* NodeBuilder::param_opt(const char* role, std::initializer_list<int64_t> dims) const {
  const format::TensorInfo* t = tensor(role, dims);
  if (!t) return nullptr;
  // Data are 64-byte aligned inside a page-aligned mapping, so reading floats in place is safe.
  if (t->dtype == format::DType::F32) return reinterpret_cast<const float*>(t->data);
  // Ops without a reduced-precision kernel compute in float32: widen (exactly) once, shared by every
  // node that names the tensor, charged to the load's bound. int8 (no int8 GEMM yet): dequantized,
  // scale · q per element.
  auto it = tensors_.widened.find(t->name);
  if (it == tensors_.widened.end()) {
    runtime::charge_copy(uint64_t(t->nbytes / format::elem_size(t->dtype)) * sizeof(float));
    std::vector<float> w;
    if (t->dtype == format::DType::I8) {
      w.resize(t->nbytes);
      const auto* q = reinterpret_cast<const int8_t*>(t->data);
      const size_t cols = size_t(t->dims.back()), rows = cols ? t->nbytes / cols : 0;
      const size_t inner = size_t(t->dims[t->dims.size() - 2]);  // rows per matrix, for per-column
      for (size_t r = 0; r < rows; ++r)
        for (size_t j = 0; j < cols; ++j) {
          const float s = t->per_column ? t->scales[(r / inner) * cols + j] : t->scales[r];
          w[r * cols + j] = s * float(q[r * cols + j]);
        }
    } else {
      const size_t n = t->nbytes / 2;
      w.resize(n);
      const auto* h = reinterpret_cast<const uint16_t*>(t->data);
      const bool bf16 = t->dtype == format::DType::BF16;
      for (size_t i = 0; i < n; ++i) w[i] = kernels::half_to_f32(h[i], bf16);
    }
    it = tensors_.widened.emplace(t->name, std::move(w)).first;
    runtime::LoadScope::note_copy(it->second.data(), t->data);
  }
  return it->second.data();
}

bool NodeBuilder::param_is_bf16(const char* role) const {
  if (!runtime::LoadScope::bf16_gemm()) return false;
  const format::Json* v = params_ ? params_->find(role) : nullptr;
  if (!v || !v->is_string()) return false;
  const format::TensorInfo* t = tensors_.find(v->as_string());
  return t && t->dtype == format::DType::BF16;
}

kernels::Weights NodeBuilder::gemm_weights(const char* role) const {
  if (param_is_bf16(role)) return kernels::Weights::Bf16;
  if (!runtime::LoadScope::int8_gemm()) return kernels::Weights::F32;
  const format::Json* v = params_ ? params_->find(role) : nullptr;
  if (!v || !v->is_string()) return kernels::Weights::F32;
  const format::TensorInfo* t = tensors_.find(v->as_string());
  return t && t->dtype == format::DType::I8 ? kernels::Weights::Int8 : kernels::Weights::F32;
}

Table NodeBuilder::table_param(const char* role, std::initializer_list<int64_t> dims) const {
  const format::TensorInfo* t = tensor(role, dims, true);
  if (!t) fail(std::string("missing required param '") + role + "'");
  // Rows are dequantized as they are gathered, each with its own scale (§3.2).
  if (t->dtype == format::DType::I8 && t->per_column)
    fail(std::string("param '") + role + "' (tensor '" + t->name +
         "') is an int8 table with per-column scales; a table needs one scale per row");
  return Table{t->data, t->dtype, t->scales};
}

const float* NodeBuilder::param(const char* role, std::initializer_list<int64_t> dims) const {
  const float* p = param_opt(role, dims);
  if (!p) fail(std::string("missing required param '") + role + "'");
  return p;
}

int64_t count_user(const std::vector<char>& user_cols) {
  int64_t n = 0;
  for (char c : user_cols) n += c != 0;
  return n;
}

void add_part_and_act(float* out, UserRows part, int64_t rows, int64_t n, kernels::Act act) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* p = part.row(b);
    for (int64_t j = 0; j < n; ++j) out[b * n + j] += p[j];
  }
  kernels::act_inplace(out, rows * n, act);
}

std::vector<float> take_rows(const float* src, const std::vector<int64_t>& cols, int64_t N, int64_t rs,
                             int64_t cs) {
  std::vector<float> out(cols.size() * size_t(N));
  for (size_t k = 0; k < cols.size(); ++k)
    for (int64_t n = 0; n < N; ++n) out[k * size_t(N) + size_t(n)] = src[cols[k] * rs + n * cs];
  return out;
}

Factory find_factory(const std::string& op) {
  struct Entry {
    const char* name;
    Factory f;
  };
  static const Entry table[] = {
      {"embedding", make_embedding},
      {"dense_input", make_dense_input},
      {"concat", make_concat},
      {"linear", make_linear},
      {"dylinear", make_dylinear},
      {"layernorm", make_layernorm},
      {"cross", make_cross},
      {"act", make_act},
      {"field_dylinear", make_field_dylinear},  // opset 2
      {"seq_embedding", make_seq_embedding},
      {"seq_length", make_seq_length},
      {"seq_concat", make_seq_concat},
      {"seq_pool", make_seq_pool},
      {"seq_add", make_seq_add},
      {"homo_dpo", make_homo_dpo},
      {"self_attention", make_self_attention},
      {"target_attention", make_target_attention},
      {"seq_sepconv_pool", make_seq_sepconv_pool},  // opset 5
      {"conv1d", make_conv1d},                      // opset 5
      {"gru", make_gru},                            // opset 5
      {"dien_attention", make_dien_attention},
      {"augru", make_augru},
      {"session_embedding", make_session_embedding},  // opset 5
      {"session_length", make_session_length},
      {"kfatt", make_kfatt},
  };
  for (const Entry& e : table)
    if (op == e.name) return e.f;
  return nullptr;
}

}  // namespace dpn::ops
