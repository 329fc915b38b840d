// `linear`: y = act(weight · x + bias); weight packed once at load for the GEMM kernel (a bfloat16
// weight for the bfloat16 GEMM, an int8 one for the int8 GEMM, kernels/gemm.h).
#include "kernels/gemm.h"
#include "ops/op.h"

namespace dpn::ops {

namespace {

// y = act(W_u·x_u + b + W_i·x_i): the user columns' product and the bias once per user.
class LinearSplit : public SplitOp {
 public:
  LinearSplit(const float* w, kernels::Weights kind, int64_t in, int64_t out, const float* bias,
              kernels::Act act, const std::vector<char>& user_cols)
      : out_(out), act_(act), bias_(bias) {
    part_width = out;
    std::vector<int64_t> u, i;
    for (int64_t k = 0; k < in; ++k) (user_cols[size_t(k)] ? u : i).push_back(k);
    // torch layout [out, in]: B(k, n) = w[n*in + k]
    wu_.pack_as(kind, take_rows(w, u, out, 1, in).data(), int64_t(u.size()), out, out, 1);
    wi_.pack_as(kind, take_rows(w, i, out, 1, in).data(), int64_t(i.size()), out, out, 1);
  }
  size_t scratch_floats(int64_t) const override { return 0; }
  void run_user(const Block& blk, const float* xu, const float* const*, float* part,
                float*) const override {
    kernels::gemm(xu, wu_.K, blk.rows, wu_, bias_, kernels::Act::Identity, part, out_, blk.threads);
  }
  void run_candidate(const Block& blk, const float* xi, const float* const*, UserRows part, float* out,
                     float*) const override {
    kernels::gemm(xi, wi_.K, blk.rows, wi_, nullptr, kernels::Act::Identity, out, out_, blk.threads);
    add_part_and_act(out, part, blk.rows, out_, act_);
  }

 private:
  int64_t out_;
  kernels::Act act_;
  const float* bias_;
  kernels::PackedMatrix wu_, wi_;
};

class Linear : public Op {
 public:
  Linear(const float* w, kernels::Weights kind, const float* bias, int64_t in, int64_t out,
         kernels::Act act)
      : in_(in),
        act_(act),
        bias_(bias ? std::vector<float>(bias, bias + out) : std::vector<float>()),
        raw_(w) {
    width = out;
    w_.pack_as(kind, w, in, out, 1, in);  // torch layout [out, in]: B(k, n) = w[n*in + k]
  }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    kernels::gemm(in[0], in_, blk.rows, w_, bias_.empty() ? nullptr : bias_.data(), act_, out, width,
                  blk.threads);
  }
  std::unique_ptr<SplitOp> split(const std::vector<char>& user_cols,
                                 const std::vector<char>&) const override {
    if (count_user(user_cols) < kMinSplitColumns) return nullptr;
    return std::make_unique<LinearSplit>(raw_, w_.weights(), in_, width,
                                         bias_.empty() ? nullptr : bias_.data(), act_, user_cols);
  }

 private:
  int64_t in_;
  kernels::Act act_;
  std::vector<float> bias_;
  kernels::PackedMatrix w_;
  const float* raw_;  // the weight in the file (alive as long as the model): what a split repacks
};

}  // namespace

std::unique_ptr<Op> make_linear(const NodeBuilder& nb) {
  nb.expect_inputs(1, 1);
  const int64_t in = nb.attr_int("in", 1), out = nb.attr_int("out", 1);
  if (nb.in_widths()[0] != in)
    nb.fail("input width " + std::to_string(nb.in_widths()[0]) +
            " does not match attribute in=" + std::to_string(in));
  const kernels::Act act = nb.attr_act();
  const float* w = nb.param("weight", {out, in});
  const float* b = nb.param_opt("bias", {out});
  return std::make_unique<Linear>(w, nb.gemm_weights("weight"), b, in, out, act);
}

}  // namespace dpn::ops
