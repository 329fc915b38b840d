// `cross`: a DCN cross layer, y = x0 · (xlᵀ weight) + bias + xl.
#include "kernels/rows.h"
#include "ops/op.h"

namespace dpn::ops {

namespace {

class Cross : public Op {
 public:
  Cross(int64_t d, const float* w, const float* b) : w_(w), b_(b) { width = d; }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    kernels::cross_rows(in[0], in[1], blk.rows, width, w_, b_, out);
  }

 private:
  const float* w_;
  const float* b_;
};

}  // namespace

std::unique_ptr<Op> make_cross(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const int64_t d = nb.in_widths()[0];
  if (nb.in_widths()[1] != d)
    nb.fail("inputs x0 and xl must have the same width, got " + std::to_string(d) + " and " +
            std::to_string(nb.in_widths()[1]));
  const float* w = nb.param("weight", {d});
  const float* b = nb.param("bias", {d});
  return std::make_unique<Cross>(d, w, b);
}

}  // namespace dpn::ops
