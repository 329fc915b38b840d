// `concat`: inputs side by side, in order.
#include <cstring>

#include "ops/op.h"

namespace dpn::ops {

namespace {

template <int N>
inline void copy_n(const float* s, float* d) {
  std::memcpy(d, s, sizeof(float) * N);  // constant size: inlined as a few vector moves
}

class Concat : public Op {
 public:
  explicit Concat(std::vector<int64_t> widths) : widths_(std::move(widths)) {
    for (int64_t w : widths_) width += w;
  }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    // Rows of a few floats (16-wide embeddings): a constant-size copy is inlined as vector moves,
    // where a memcpy call per piece cost several times the copy.
    for (int64_t b = 0; b < blk.rows; ++b) {
      float* o = out + b * width;
      for (size_t k = 0; k < widths_.size(); ++k) {
        const int64_t w = widths_[k];
        const float* src = in[k] + b * w;
        if (w == 16)
          copy_n<16>(src, o);
        else
          std::memcpy(o, src, sizeof(float) * size_t(w));
        o += w;
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
