// `seq_pool`: the mean of a sequence's valid positions: inputs [x (T·d), lengths] -> [rows, d];
// zeros for an empty row.
#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

class SeqPool : public Op {
 public:
  SeqPool(int64_t T, int64_t S, int64_t d) : T_(T), S_(S), d_(d) { width = d; }
  // With sessions S: the mean over every valid position of every session.
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    for (int64_t b = 0; b < blk.rows; ++b) {
      float* o = out + b * d_;
      for (int64_t j = 0; j < d_; ++j) o[j] = 0.0f;
      int64_t L = 0;
      for (int64_t s = 0; s < S_; ++s) {
        const int64_t Ls = seq_len(in[1][b * S_ + s], T_);
        const float* x = in[0] + (b * S_ + s) * T_ * d_;
        for (int64_t i = 0; i < Ls; ++i)
          for (int64_t j = 0; j < d_; ++j) o[j] += x[i * d_ + j];
        L += Ls;
      }
      if (L > 1) {
        const float inv = 1.0f / static_cast<float>(L);
        for (int64_t j = 0; j < d_; ++j) o[j] *= inv;
      }
    }
  }

 private:
  int64_t T_, S_, d_;
};

}  // namespace

std::unique_ptr<Op> make_seq_pool(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const int64_t T = nb.attr_int("max_len", 1);
  const int64_t S = seq_sessions(nb, 1);
  return std::make_unique<SeqPool>(T, S, seq_dim(nb, 0, T, S));
}

}  // namespace dpn::ops
