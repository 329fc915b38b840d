// `linear`: y = act(weight · x + bias); weight packed once at load for the GEMM kernel.
#include "kernels/gemm.h"
#include "ops/op.h"

namespace dpn::ops {

namespace {

class Linear : public Op {
 public:
  Linear(const float* w, const float* bias, int64_t in, int64_t out, kernels::Act act)
      : in_(in), act_(act), bias_(bias ? std::vector<float>(bias, bias + out) : std::vector<float>()) {
    width = out;
    w_.pack(w, in, out, 1, in);  // torch layout [out, in]: B(k, n) = w[n*in + k]
  }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    kernels::gemm(in[0], in_, blk.rows, w_, bias_.empty() ? nullptr : bias_.data(), act_, out, width,
                  blk.threads);
  }

 private:
  int64_t in_;
  kernels::Act act_;
  std::vector<float> bias_;
  kernels::PackedMatrix w_;
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
  return std::make_unique<Linear>(w, b, in, out, act);
}

}  // namespace dpn::ops
