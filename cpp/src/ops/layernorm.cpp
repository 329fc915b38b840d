// `layernorm`: per-row normalization with population variance, then weight, bias and act.
#include "kernels/rows.h"
#include "ops/op.h"

namespace dpn::ops {

namespace {

class LayerNorm : public Op {
 public:
  LayerNorm(int64_t d, const float* w, const float* b, float eps, kernels::Act act)
      : w_(w), b_(b), eps_(eps), act_(act) {
    width = d;
  }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    kernels::layernorm_rows(in[0], blk.rows, width, w_, b_, eps_, out);
    kernels::act_inplace(out, blk.rows * width, act_);
  }

 private:
  const float* w_;
  const float* b_;
  float eps_;
  kernels::Act act_;
};

}  // namespace

std::unique_ptr<Op> make_layernorm(const NodeBuilder& nb) {
  nb.expect_inputs(1, 1);
  const double eps = nb.attr_number("eps");
  if (!(eps > 0.0) || !(eps < 1e30)) nb.fail("attribute 'eps' must be a finite float > 0");
  const kernels::Act act = nb.attr_act();
  const int64_t d = nb.in_widths()[0];
  const float* w = nb.param("weight", {d});
  const float* b = nb.param("bias", {d});
  return std::make_unique<LayerNorm>(d, w, b, static_cast<float>(eps), act);
}

}  // namespace dpn::ops
