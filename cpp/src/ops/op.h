// The operator interface: an Op is built once at load (validating attrs and params, packing
// weights) and run per row block. Ops are immutable; all per-call memory comes in `scratch`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "dpn/dpn.h"
#include "format/json.h"
#include "format/reader.h"
#include "schema/schema.h"
#include "kernels/act.h"
#include "kernels/gemm.h"

namespace dpn::ops {

// σ of a generator's hidden layer (dylinear, field_dylinear, homo_dpo): h = σ(W1ᵀz + b1).
enum class Sigma { Identity, Sigmoid, Softmax, Relu };

struct UserWeights;

// One row block of a predict call: rows [row0, row0 + rows) of every field input.
struct Block {
  const std::vector<FieldInput>& inputs;
  int64_t row0;
  int64_t rows;
  int threads = 1;  // intra-op threads for this block's GEMMs (column split); 1 = calling thread
  const UserWeights* weights = nullptr;  // a request's split: its per-user weights (SplitOp)
};

// A ranking request's per-user weights of one split (SplitOp::user_weight_floats each): user u's at
// base + slot[u] * stride, or none when slot[u] < 0 (too few candidates to pay for building it, or
// past the request's budget). u indexes the request's users (a run_user block's row0 + b, or
// UserRows::user[b] on the candidate rows).
struct UserWeights {
  float* base = nullptr;
  int64_t stride = 0;
  const int64_t* slot = nullptr;
  float* of(int64_t u) const { return slot[u] < 0 ? nullptr : base + slot[u] * stride; }
};

// Per candidate row, its user's row of a split's user part: base + user[b] * stride for row b of
// the block (user already offset to the block's first row).
struct UserRows {
  const float* base = nullptr;
  int64_t stride = 0;
  const int64_t* user = nullptr;
  const float* row(int64_t b) const { return base + user[b] * stride; }
};

// A ranking request's split of one op (graph/shared_plan.h): what the op computes from user-only
// inputs is computed once per user. run_user runs on the users' rows and writes each user's part;
// run_candidate runs on the candidate rows, each reading its user's part. Made per shared-field
// set, immutable, shared by every thread like the op.
// by_columns: the op's input 0 concatenates user-only and candidate columns, and the split takes
// the user columns' share of its product (xu, xi below are those columns); otherwise xu and xi
// are null and the op reads its inputs as they are (user-only ones in run_user only).
class SplitOp {
 public:
  virtual ~SplitOp() = default;
  virtual size_t scratch_floats(int64_t rows) const = 0;
  // xu: [rows, mu], the user columns of input 0 in order; in: the op's inputs, of which only the
  // user-only ones (other than a split input 0) may be read. part: [rows, part_width].
  virtual void run_user(const Block& blk, const float* xu, const float* const* in, float* part,
                        float* scratch) const = 0;
  // xi: [rows, mi], the other columns in order; in: the op's inputs, of which only the candidate
  // ones may be read.
  virtual void run_candidate(const Block& blk, const float* xi, const float* const* in, UserRows part,
                             float* out, float* scratch) const = 0;
  int64_t part_width = 0;
  bool by_columns = true;
  // A weight the split can build per user (floats; 0: none), worth it for a user with at least
  // user_weight_min_rows candidates: the executor then gives run_user and run_candidate a
  // UserWeights in Block::weights, run_user fills the users that have a slot.
  int64_t user_weight_floats = 0;
  int64_t user_weight_min_rows = 0;
};

class Op {
 public:
  virtual ~Op() = default;
  // Floats of scratch run() needs for a block of `rows` rows.
  virtual size_t scratch_floats(int64_t rows) const {
    (void)rows;
    return 0;
  }
  // in[k]: input k, row-major [rows, in_width[k]]; out: [rows, width].
  virtual void run(const Block& blk, const float* const* in, float* out, float* scratch) const = 0;

  int64_t width = 0;  // output width, set by the factory
  // The schema field an input op (no graph inputs) reads, set by its factory; -1 for every other
  // op. The request planner (graph/shared_plan.h) knows from it which nodes read a shared field.
  int64_t field = -1;
  // The split of this op for a request (SplitOp), or nullptr when it has none or it would not pay.
  // user_cols: per column of input 0, 1 for a user-only one, when input 0 is a concat with some of
  // each kind (else empty); user_inputs: per input, 1 for a user-only one.
  virtual std::unique_ptr<SplitOp> split(const std::vector<char>& user_cols,
                                         const std::vector<char>& user_inputs) const {
    (void)user_cols;
    (void)user_inputs;
    return nullptr;
  }
};

// An embedding table read in place from the mapping: float32, float16, bfloat16 or int8 rows (the
// last with one float32 scale per row, also in the mapping).
struct Table {
  const void* data = nullptr;
  format::DType dtype = format::DType::F32;
  const float* scales = nullptr;  // int8 only
  bool is_f32() const { return dtype == format::DType::F32; }
  bool is_i8() const { return dtype == format::DType::I8; }
  bool bf16() const { return dtype == format::DType::BF16; }
  const float* f32() const { return static_cast<const float*>(data); }
  const uint16_t* half() const { return static_cast<const uint16_t*>(data); }
  const int8_t* i8() const { return static_cast<const int8_t*>(data); }
  size_t elem_size() const { return is_f32() ? 4 : is_i8() ? 1 : 2; }
};

// A split pays when the user columns' share is at least this many columns (fewer save less than
// the extra pass over the output costs).
constexpr int64_t kMinSplitColumns = 8;

// How many columns user_cols marks user-only.
int64_t count_user(const std::vector<char>& user_cols);

// out[b][j] = act(out[b][j] + part.row(b)[j]) for rows b < rows, j < n: a split's candidate share
// plus its user's.
void add_part_and_act(float* out, UserRows part, int64_t rows, int64_t n, kernels::Act act);

// The rows `cols` (ascending indices into K rows) of a [K, N] matrix given as B(k, n) = src[k*rs +
// n*cs], as a row-major [cols.size(), N] matrix: what a split packs.
std::vector<float> take_rows(const float* src, const std::vector<int64_t>& cols, int64_t N, int64_t rs,
                             int64_t cs);

// What an op factory sees at load, with helpers that validate and fail with the node named.
class NodeBuilder {
 public:
  NodeBuilder(const format::Json& node, std::string label, std::vector<int64_t> in_widths,
              const std::vector<schema::Field>& fields, const format::Container& tensors, int64_t opset);

  const std::vector<int64_t>& in_widths() const { return in_widths_; }
  const std::vector<schema::Field>& fields() const { return fields_; }

  [[noreturn]] void fail(const std::string& msg) const;
  void expect_inputs(size_t min, size_t max) const;

  // Attributes: a missing one with no default, a wrong type or a value out of range fails.
  int64_t attr_int(const char* key, int64_t min) const;
  int64_t attr_int(const char* key, int64_t min, int64_t def) const;
  double attr_number(const char* key) const;
  bool attr_bool(const char* key, bool def) const;
  bool has_attr(const char* key) const;
  std::string attr_enum(const char* key, std::initializer_list<const char*> allowed,
                        const char* def = nullptr) const;
  kernels::Act attr_act() const;  // "act", default identity
  Sigma attr_sigma() const;       // "sigma": identity | sigmoid | softmax | relu (required)
  // The schema field named by attr "field" (index into fields()); attr_field_named: by attr `key`.
  size_t attr_field() const;
  size_t attr_field_named(const char* key) const;

  // Params: a tensor of exactly `dims`, as float32 (a float16/bfloat16 tensor is widened, an int8 one
  // dequantized, once, at load, into a copy the container keeps); param_opt returns nullptr when the
  // role is absent.
  const float* param(const char* role, std::initializer_list<int64_t> dims) const;
  const float* param_opt(const char* role, std::initializer_list<int64_t> dims) const;
  // Whether the file stored the param `role` as bfloat16 and the load asked for bfloat16 GEMMs
  // (LoadOptions::bf16_gemm; false when absent): an op with bfloat16 GEMMs then packs that weight
  // for them (kernels/gemm.h PackedMatrix::pack_bf16).
  bool param_is_bf16(const char* role) const;
  // How a linear / dylinear GEMM packs the weight of param `role`: Bf16 as param_is_bf16, Int8 when
  // the file stored it as int8 and the load asked for int8 GEMMs (LoadOptions::int8_gemm), else F32.
  kernels::Weights gemm_weights(const char* role) const;
  // An embedding table of exactly `dims`, read in place in its own dtype (required).
  Table table_param(const char* role, std::initializer_list<int64_t> dims) const;

 private:
  const format::Json* attr(const char* key) const;
  // `table`: the param is an embedding table, the one place int8 may have float16 scales (§3.2).
  const format::TensorInfo* tensor(const char* role, std::initializer_list<int64_t> dims,
                                   bool table = false) const;
  const format::Json& node_;
  std::string label_;
  std::vector<int64_t> in_widths_;
  const std::vector<schema::Field>& fields_;
  const format::Container& tensors_;
  int64_t opset_;  // the file's: float16/bfloat16 params need 3
  const format::Json* attrs_ = nullptr;
  const format::Json* params_ = nullptr;
};

using Factory = std::unique_ptr<Op> (*)(const NodeBuilder&);

// nullptr for an operator this engine does not know.
Factory find_factory(const std::string& op);

std::unique_ptr<Op> make_embedding(const NodeBuilder&);
std::unique_ptr<Op> make_dense_input(const NodeBuilder&);
std::unique_ptr<Op> make_concat(const NodeBuilder&);
std::unique_ptr<Op> make_linear(const NodeBuilder&);
std::unique_ptr<Op> make_dylinear(const NodeBuilder&);
std::unique_ptr<Op> make_layernorm(const NodeBuilder&);
std::unique_ptr<Op> make_cross(const NodeBuilder&);
std::unique_ptr<Op> make_act(const NodeBuilder&);
std::unique_ptr<Op> make_field_dylinear(const NodeBuilder&);  // opset 2
// Sequence ops (opset 2; ops/seq.h describes the sequence layout).
std::unique_ptr<Op> make_seq_embedding(const NodeBuilder&);
std::unique_ptr<Op> make_seq_length(const NodeBuilder&);
std::unique_ptr<Op> make_seq_concat(const NodeBuilder&);
std::unique_ptr<Op> make_seq_pool(const NodeBuilder&);
std::unique_ptr<Op> make_seq_add(const NodeBuilder&);
std::unique_ptr<Op> make_homo_dpo(const NodeBuilder&);
std::unique_ptr<Op> make_self_attention(const NodeBuilder&);
std::unique_ptr<Op> make_target_attention(const NodeBuilder&);
// Opset 5: the separable-convolution generator's context and the Conv1D encoder.
std::unique_ptr<Op> make_seq_sepconv_pool(const NodeBuilder&);
std::unique_ptr<Op> make_conv1d(const NodeBuilder&);
// DIEN's recurrent ops (opset 5; docs/format.md §5c).
std::unique_ptr<Op> make_gru(const NodeBuilder&);
std::unique_ptr<Op> make_dien_attention(const NodeBuilder&);
std::unique_ptr<Op> make_augru(const NodeBuilder&);
// Session ops (opset 5; ops/session.h describes the session layout).
std::unique_ptr<Op> make_session_embedding(const NodeBuilder&);
std::unique_ptr<Op> make_session_length(const NodeBuilder&);
std::unique_ptr<Op> make_kfatt(const NodeBuilder&);

}  // namespace dpn::ops
