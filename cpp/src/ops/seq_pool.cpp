// `seq_pool`: the mean of a sequence's valid positions: inputs [x (T·d), lengths] -> [rows, d];
// zeros for an empty row.
#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class SeqPool : public Op {
 public:
  SeqPool(int64_t T, int64_t d) : T_(T), d_(d) { width = d; }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    for (int64_t b = 0; b < blk.rows; ++b) {
      const int64_t L = seq_len(in[1][b], T_);
      const float* x = in[0] + b * T_ * d_;
      float* o = out + b * d_;
      for (int64_t j = 0; j < d_; ++j) o[j] = 0.0f;
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < d_; ++j) o[j] += x[i * d_ + j];
      if (L > 1) {
        const float inv = 1.0f / static_cast<float>(L);
        for (int64_t j = 0; j < d_; ++j) o[j] *= inv;
      }
    }
  }

 private:
  int64_t T_, d_;
};

}  // namespace

std::unique_ptr<Op> make_seq_pool(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const int64_t T = nb.attr_int("max_len", 1);
  seq_len_input(nb, 1);
  return std::make_unique<SeqPool>(T, seq_dim(nb, 0, T));
}

}  // namespace dpn::ops
