// `dien_attention`: DIEN's attention scores, softmax over a row's valid positions of h_tᵀ W q
// (docs/format.md §5c). Computed as h_t · (Wᵀ q): one GEMM per block for Wᵀ q, then a dot product
// per valid position (cheaper than W h_t at every position).
#include <algorithm>
#include <memory>
#include <string>

#include "kernels/gemm.h"
#include "kernels/softmax.h"
#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

constexpr int64_t kPassRows = 256;

class DienAttention : public Op {
 public:
  DienAttention(int64_t T, int64_t d, int64_t dq, const float* w) : T_(T), d_(d), dq_(dq) {
    width = T;
    w_.pack(w, dq, d, d, 1);  // weight [dq, d] is Wᵀ's [K = dq, N = d] row-major
  }

  size_t scratch_floats(int64_t rows) const override { return size_t(std::min(rows, kPassRows) * d_); }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    for (int64_t b0 = 0; b0 < blk.rows; b0 += kPassRows) {
      const int64_t R = std::min(kPassRows, blk.rows - b0);
      const float* x = in[1] + b0 * T_ * d_;
      const float* len = in[2] + b0;
      float* o = out + b0 * T_;
      kernels::gemm(in[0] + b0 * dq_, dq_, R, w_, nullptr, kernels::Act::Identity, scratch, d_,
                    blk.threads);
      for (int64_t b = 0; b < R; ++b) {
        const int64_t L = seq_len(len[b], T_);
        const float* v = scratch + b * d_;
        float* s = o + b * T_;
        for (int64_t t = 0; t < L; ++t) {
          const float* xt = x + (b * T_ + t) * d_;
          float acc = 0.0f;
          for (int64_t j = 0; j < d_; ++j) acc += xt[j] * v[j];
          s[t] = acc;
        }
        kernels::softmax_rows(s, 1, L, T_);  // nothing when L = 0
        std::fill(s + L, s + T_, 0.0f);
      }
    }
  }

 private:
  int64_t T_, d_, dq_;
  kernels::PackedMatrix w_;
};

}  // namespace

std::unique_ptr<Op> make_dien_attention(const NodeBuilder& nb) {
  nb.expect_inputs(3, 3);
  const int64_t T = nb.attr_int("max_len", 1), d = nb.attr_int("dim", 1);
  const int64_t dq = nb.attr_int("query", 1);
  const int64_t lim = int64_t(1) << 16;
  if (T > lim || d > lim || dq > lim || T * d > (int64_t(1) << 24)) nb.fail("attribute too large");
  if (nb.in_widths()[0] != dq)
    nb.fail("input q has width " + std::to_string(nb.in_widths()[0]) +
            ", expected query=" + std::to_string(dq));
  if (nb.in_widths()[1] != T * d)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[1]) +
            ", expected max_len*dim=" + std::to_string(T * d));
  seq_len_input(nb, 2);
  return std::make_unique<DienAttention>(T, d, dq, nb.param("weight", {dq, d}));
}

}  // namespace dpn::ops
