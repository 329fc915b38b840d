// `seq_add`: the elementwise sum of sequences of one width: inputs [s_1, …, s_k, lengths], k ≥ 2;
// only positions < length are added, the rest is zero.
#include <cstring>

#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class SeqAdd : public Op {
 public:
  SeqAdd(int64_t T, int64_t d, size_t k) : T_(T), d_(d), k_(k) { width = T * d; }
  void run(const Block& blk, const float* const* in, float* out, float*) const override {
    for (int64_t b = 0; b < blk.rows; ++b) {
      const int64_t n = seq_len(in[k_][b], T_) * d_;
      float* o = out + b * width;
      const float* a = in[0] + b * width;
      for (int64_t j = 0; j < n; ++j) o[j] = a[j];
      for (size_t s = 1; s < k_; ++s) {
        const float* x = in[s] + b * width;
        for (int64_t j = 0; j < n; ++j) o[j] += x[j];
      }
      std::memset(o + n, 0, sizeof(float) * size_t(width - n));
    }
  }

 private:
  int64_t T_, d_;
  size_t k_;
};

}  // namespace

std::unique_ptr<Op> make_seq_add(const NodeBuilder& nb) {
  nb.expect_inputs(3, SIZE_MAX);
  const int64_t T = nb.attr_int("max_len", 1);
  const size_t k = nb.in_widths().size() - 1;
  seq_len_input(nb, k);
  const int64_t d = seq_dim(nb, 0, T);
  for (size_t s = 1; s < k; ++s)
    if (nb.in_widths()[s] != nb.in_widths()[0])
      nb.fail("input " + std::to_string(s) + " has width " + std::to_string(nb.in_widths()[s]) +
              ", input 0 has " + std::to_string(nb.in_widths()[0]));
  return std::make_unique<SeqAdd>(T, d, k);
}

}  // namespace dpn::ops
