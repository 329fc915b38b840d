// `seq_sepconv_pool`: the mean over the valid positions of a depthwise-separable convolution (a
// depthwise k-tap convolution + bias, then a pointwise Linear), the context of the separable-
// convolution generators (docs/format.md §5b, opset 5). The mean is linear, so no position's
// convolution is formed: kernels::dwconv_mean gives each row's mean depthwise output in O(L·n), and
// one GEMM over the block applies the pointwise weight to the means.
#include <cstring>

#include "kernels/dwconv.h"
#include "kernels/gemm.h"
#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

class SeqSepconvPool : public Op {
 public:
  SeqSepconvPool(int64_t T, int64_t n, int64_t k, const float* dww, const float* dwb, const float* pww,
                 const float* pwb)
      : T_(T), n_(n), k_(k), taps_(size_t(k * n)), dwb_(dwb, dwb + n), pwb_(pwb, pwb + n) {
    width = n;
    for (int64_t j = 0; j < n; ++j)  // torch [n, k] -> the kernels' [k, n]
      for (int64_t t = 0; t < k; ++t) taps_[size_t(t * n + j)] = dww[j * k + t];
    pw_.pack(pww, n, n, 1, n);  // torch Linear layout [out, in]
  }

  size_t scratch_floats(int64_t rows) const override { return size_t(rows * n_); }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows;
    float* u = scratch;  // [R, n]: each row's mean depthwise output plus its bias
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(in[1][b], T_);
      float* ub = u + b * n_;
      kernels::dwconv_mean(in[0] + b * T_ * n_, L, n_, taps_.data(), k_, ub);
      if (L > 0)
        for (int64_t j = 0; j < n_; ++j) ub[j] += dwb_[size_t(j)];
    }
    kernels::gemm(u, n_, R, pw_, pwb_.data(), kernels::Act::Identity, out, n_, blk.threads);
    for (int64_t b = 0; b < R; ++b)  // an empty row's mean is zero, not the pointwise bias
      if (seq_len(in[1][b], T_) == 0) std::memset(out + b * n_, 0, sizeof(float) * size_t(n_));
  }

 private:
  int64_t T_, n_, k_;
  std::vector<float> taps_, dwb_, pwb_;
  kernels::PackedMatrix pw_;
};

}  // namespace

std::unique_ptr<Op> make_seq_sepconv_pool(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const auto [T, n, k] = seq_conv_attrs(nb);
  const float* dww = nb.param("dw_weight", {n, k});
  const float* dwb = nb.param("dw_bias", {n});
  const float* pww = nb.param("pw_weight", {n, n});
  const float* pwb = nb.param("pw_bias", {n});
  return std::make_unique<SeqSepconvPool>(T, n, k, dww, dwb, pww, pwb);
}

}  // namespace dpn::ops
