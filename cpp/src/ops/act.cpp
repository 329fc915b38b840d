// `act`: an elementwise activation.
#include <cstring>

#include "ops/op.h"

namespace dpn::ops {

namespace {

class ActOp : public Op {
 public:
  ActOp(int64_t d, kernels::Act act) : act_(act) { width = d; }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    const int64_t n = blk.rows * width;
    std::memcpy(out, in[0], sizeof(float) * size_t(n));
    kernels::act_inplace(out, n, act_);
  }

 private:
  kernels::Act act_;
};

}  // namespace

std::unique_ptr<Op> make_act(const NodeBuilder& nb) {
  nb.expect_inputs(1, 1);
  if (!nb.has_attr("act")) nb.fail("missing required attribute 'act'");
  return std::make_unique<ActOp>(nb.in_widths()[0], nb.attr_act());
}

}  // namespace dpn::ops
