// `seq_concat`: sequences side by side per position: inputs [s_1, …, s_k, lengths], s_i of width
// T·d_i -> [rows, T·Σd_i]; positions past the length are zero.
#include <cstring>

#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

class SeqConcat : public Op {
 public:
  SeqConcat(int64_t T, int64_t S, std::vector<int64_t> dims) : T_(T), S_(S), dims_(std::move(dims)) {
    for (int64_t d : dims_) D_ += d;
    width = S_ * T_ * D_;
  }
  // With sessions S, each session is a row of T positions (ops/session.h).
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    const size_t k = dims_.size();
    const float* len = in[k];
    for (int64_t b = 0; b < blk.rows * S_; ++b) {
      const int64_t L = seq_len(len[b], T_);
      float* o = out + b * T_ * D_;
      for (int64_t i = 0; i < L; ++i) {
        for (size_t s = 0; s < k; ++s) {
          std::memcpy(o, in[s] + (b * T_ + i) * dims_[s], sizeof(float) * size_t(dims_[s]));
          o += dims_[s];
        }
      }
      std::memset(o, 0, sizeof(float) * size_t((T_ - L) * D_));
    }
  }

 private:
  int64_t T_, S_, D_ = 0;
  std::vector<int64_t> dims_;
};

}  // namespace

std::unique_ptr<Op> make_seq_concat(const NodeBuilder& nb) {
  nb.expect_inputs(2, SIZE_MAX);
  const int64_t T = nb.attr_int("max_len", 1);
  const size_t k = nb.in_widths().size() - 1;
  const int64_t S = seq_sessions(nb, k);
  std::vector<int64_t> dims;
  for (size_t s = 0; s < k; ++s) dims.push_back(seq_dim(nb, s, T, S));
  return std::make_unique<SeqConcat>(T, S, std::move(dims));
}

}  // namespace dpn::ops
