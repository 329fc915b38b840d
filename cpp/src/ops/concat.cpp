// `concat`: inputs side by side, in order.
#include <cstring>

#include "ops/op.h"

namespace dpn::ops {

namespace {

class Concat : public Op {
 public:
  explicit Concat(std::vector<int64_t> widths) : widths_(std::move(widths)) {
    for (int64_t w : widths_) width += w;
  }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    for (int64_t b = 0; b < blk.rows; ++b) {
      float* o = out + b * width;
      for (size_t k = 0; k < widths_.size(); ++k) {
        std::memcpy(o, in[k] + b * widths_[k], sizeof(float) * size_t(widths_[k]));
        o += widths_[k];
      }
    }
  }

 private:
  std::vector<int64_t> widths_;
};

}  // namespace

std::unique_ptr<Op> make_concat(const NodeBuilder& nb) {
  nb.expect_inputs(1, SIZE_MAX);
  return std::make_unique<Concat>(nb.in_widths());
}

}  // namespace dpn::ops
