// `seq_add`: the elementwise sum of sequences of one width: inputs [s_1, …, s_k, lengths], k ≥ 2;
// only positions < length are added, the rest is zero.
#include <cstring>

#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

class SeqAdd : public Op {
 public:
  SeqAdd(int64_t T, int64_t S, int64_t d, size_t k) : T_(T), S_(S), d_(d), k_(k) { width = S * T * d; }
  // With sessions S, each session is a row of T positions (ops/session.h).
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    const int64_t rw = T_ * d_;
    for (int64_t b = 0; b < blk.rows * S_; ++b) {
      const int64_t n = seq_len(in[k_][b], T_) * d_;
      float* o = out + b * rw;
      const float* a = in[0] + b * rw;
      for (int64_t j = 0; j < n; ++j) o[j] = a[j];
      for (size_t s = 1; s < k_; ++s) {
        const float* x = in[s] + b * rw;
        for (int64_t j = 0; j < n; ++j) o[j] += x[j];
      }
      std::memset(o + n, 0, sizeof(float) * size_t(rw - n));
    }
  }

 private:
  int64_t T_, S_, d_;
  size_t k_;
};

}  // namespace

std::unique_ptr<Op> make_seq_add(const NodeBuilder& nb) {
  nb.expect_inputs(3, SIZE_MAX);
  const int64_t T = nb.attr_int("max_len", 1);
  const size_t k = nb.in_widths().size() - 1;
  const int64_t S = seq_sessions(nb, k);
  const int64_t d = seq_dim(nb, 0, T, S);
  for (size_t s = 1; s < k; ++s)
    if (nb.in_widths()[s] != nb.in_widths()[0])
      nb.fail("input " + std::to_string(s) + " has width " + std::to_string(nb.in_widths()[s]) +
              ", input 0 has " + std::to_string(nb.in_widths()[0]));
  return std::make_unique<SeqAdd>(T, S, d, k);
}

}  // namespace dpn::ops
